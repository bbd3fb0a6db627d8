//! Real PostgreSQL for Tessera's tests: a throwaway server per test process, and a fresh
//! database per test.
//!
//! [`TestPostgres::shared`] starts one server for the whole test process the first time
//! a test asks for it; [`TestPostgres::create_database`] then gives each test its own
//! empty database, so tests that run in parallel never see each other's data.
//! [`TestPostgres::start`] starts a private server for a test that needs one to itself.
//!
//! A server is Debian's PostgreSQL (the newest under `/usr/lib/postgresql/*/bin`;
//! `scripts/install-postgres` installs it), initialised by `initdb` into a temporary
//! directory and listening only on a Unix socket in that directory: no TCP port, so
//! nothing to collide with. Durability is traded for speed (`fsync`, `synchronous_commit`
//! and `full_page_writes` are off). PostgreSQL refuses to run as root, so when the tests
//! run as root the server runs as the `postgres` system user.
//!
//! No server outlives its test process: each runs under a guard (from
//! [`tessera_test_server`], which the MariaDB harness shares) that stops it and removes
//! its directory when the test process lets go of it — by dropping the [`TestPostgres`],
//! or by exiting in any way at all, which matters because the shared server lives in a
//! static and is never dropped. After an exit the guard finishes on its own, a moment
//! later (a fast shutdown, well under a second).
//!
//! ```no_run
//! use sqlx::PgPool;
//! use tessera_test_postgres::TestPostgres;
//!
//! #[tokio::test]
//! async fn stores_a_record() -> anyhow::Result<()> {
//!     let url = TestPostgres::shared()?.create_database()?;
//!     let pool = PgPool::connect(&url).await?;
//!     sqlx::query("CREATE TABLE record (id TEXT PRIMARY KEY)").execute(&pool).await?;
//!     Ok(())
//! }
//! ```

mod error;
mod install;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tessera_test_server::{
    Guard, ServerDir, Spec, percent_encode_component, percent_encode_path, run,
};

pub use error::Error;

/// The server's port: with no TCP listener it only names the socket file
/// (`.s.PGSQL.5432`), which lives in the server's private directory.
const PORT: &str = "5432";
/// The superuser `initdb` creates; local connections are trusted.
const SUPERUSER: &str = "postgres";

/// PostgreSQL, as the shared harness starts and stops it.
const SPEC: Spec = Spec {
    dir_prefix: "tessera-pg-",
    guard_name: "tessera-test-postgres-guard",
    log_file: "postgres.log",
    system_user: "postgres",
    install_script: "scripts/install-postgres",
    // A fast shutdown: open transactions are rolled back, no waiting for clients.
    shutdown_signal: "INT",
    ready_timeout: Duration::from_secs(30),
    ready_poll: Duration::from_millis(20),
};

/// `sh -c INIT_AND_RUN init INITDB POSTGRES DATA_DIR SOCKET_DIR SUPERUSER SETTINGS...`:
/// the server, as the guard runs it. `exec` makes the postmaster the process the guard
/// signals.
const INIT_AND_RUN: &str = r#"
set -eu
initdb=$1 postgres=$2 data=$3 socket=$4 superuser=$5
shift 5
"$initdb" --pgdata="$data" --username="$superuser" --auth=trust \
    --encoding=UTF8 --locale=C --no-sync --no-instructions >/dev/null
exec "$postgres" -D "$data" -k "$socket" "$@"
"#;

/// A running PostgreSQL server for tests. Dropping it stops the server and removes its
/// directory.
#[derive(Debug)]
pub struct TestPostgres {
    bin_dir: PathBuf,
    socket_dir: PathBuf,
    /// Owns the server and its directory (`data/`, `socket/`, `postgres.log`).
    guard: Guard,
    next_database: AtomicU64,
}

impl TestPostgres {
    /// The test process's shared server, started on first use (by whichever test gets
    /// there first; the others wait for it). If it failed to start, every caller gets
    /// that error.
    pub fn shared() -> Result<&'static TestPostgres, Error> {
        static SHARED: OnceLock<Result<TestPostgres, Error>> = OnceLock::new();
        SHARED
            .get_or_init(TestPostgres::start)
            .as_ref()
            .map_err(Error::clone)
    }

    /// Starts a private server (`initdb`, then `postgres`) and waits until it accepts
    /// connections.
    pub fn start() -> Result<TestPostgres, Error> {
        let bin_dir = install::find_bin_dir()?;
        let dir = ServerDir::create(SPEC)?;
        let data_dir = dir.path().join("data");
        let socket_dir = dir.create_dir("socket")?;

        // The guard runs initdb, then postgres: it owns the directory from the start.
        let mut server = dir.command(INIT_AND_RUN);
        server
            .args([bin_dir.join("initdb"), bin_dir.join("postgres"), data_dir])
            .arg(&socket_dir)
            .arg(SUPERUSER)
            .args(["-p", PORT, "-c", "listen_addresses="])
            .args(["-c", "fsync=off"])
            .args(["-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off"])
            // Parallel tests, each with its own pool.
            .args(["-c", "max_connections=300"]);
        let guard = dir.spawn(&server)?;

        let postgres = TestPostgres {
            bin_dir,
            socket_dir,
            guard,
            next_database: AtomicU64::new(0),
        };
        postgres
            .guard
            .wait_until_ready(|| postgres.accepts_connections())?;
        Ok(postgres)
    }

    /// Creates a fresh, empty database with a name unique to this server and returns
    /// its connection URL. Blocks while `createdb` runs (tens of milliseconds).
    pub fn create_database(&self) -> Result<String, Error> {
        let n = self.next_database.fetch_add(1, Ordering::Relaxed);
        let name = format!("test_{n}");
        let mut createdb = Command::new(self.bin_dir.join("createdb"));
        createdb.arg("--host").arg(&self.socket_dir).args([
            "--port",
            PORT,
            "--username",
            SUPERUSER,
            &name,
        ]);
        run(&mut createdb)?;
        Ok(self.url(&name))
    }

    /// The connection URL of database `db` on this server, for sqlx (`PgPool::connect`)
    /// and libpq (`psql`): `postgres://postgres@localhost:5432/DB?host=SOCKET_DIR`. Both
    /// read a `host` that starts with `/` as the directory of the server's socket.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{SUPERUSER}@localhost:{PORT}/{}?host={}",
            percent_encode_component(db),
            percent_encode_path(&self.socket_dir.to_string_lossy()),
        )
    }

    /// The directory of the server's Unix socket (`.s.PGSQL.5432`).
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// Stops the server and removes its directory, reporting whether the server shut
    /// down cleanly. Dropping does the same, silently.
    pub fn stop(self) -> Result<(), Error> {
        Ok(self.guard.stop()?)
    }

    fn accepts_connections(&self) -> Result<bool, tessera_test_server::Error> {
        let status = Command::new(self.bin_dir.join("pg_isready"))
            .arg("--quiet")
            .arg("--host")
            .arg(&self.socket_dir)
            .args(["--port", PORT, "--username", SUPERUSER, "--dbname=postgres"])
            .args(["--timeout", "1"])
            .status()
            .map_err(|e| tessera_test_server::Error::io("running pg_isready", e))?;
        Ok(status.success())
    }
}
