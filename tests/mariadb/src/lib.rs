//! Real MariaDB for Tessera's tests: a throwaway server per test process, and a fresh
//! database per test — the MariaDB twin of `tessera-test-postgres`.
//!
//! [`TestMariaDb::shared`] starts one server for the whole test process the first time
//! a test asks for it; [`TestMariaDb::create_database`] then gives each test its own
//! empty database. [`TestMariaDb::start`] starts a private server.
//!
//! A server is Debian's MariaDB (`mariadbd`; `scripts/install-mariadb` installs it),
//! initialised by `mariadb-install-db` into a temporary directory and listening only
//! on a Unix socket in that directory (`--skip-networking`): no TCP port, so nothing
//! to collide with. `root` connects over that socket without a password. Durability is
//! traded for speed (no binary log, InnoDB flushes once a second). mariadbd will not
//! run as root, so when the tests run as root the server runs as the `mysql` system
//! user.
//!
//! No server outlives its test process: each runs under a guard (from
//! [`tessera_test_server`], which the PostgreSQL harness shares) that stops it and
//! removes its directory when the test process lets go of it — by dropping the
//! [`TestMariaDb`], or by exiting in any way at all.
//!
//! ```no_run
//! use sqlx::MySqlPool;
//! use tessera_test_mariadb::TestMariaDb;
//!
//! #[tokio::test]
//! async fn stores_a_record() -> anyhow::Result<()> {
//!     let url = TestMariaDb::shared()?.create_database()?;
//!     let pool = MySqlPool::connect(&url).await?;
//!     sqlx::query("CREATE TABLE record (id VARCHAR(32) PRIMARY KEY)").execute(&pool).await?;
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
use install::Tools;

/// The user `mariadb-install-db` creates with no password (socket connections only).
const SUPERUSER: &str = "root";

/// MariaDB, as the shared harness starts and stops it.
const SPEC: Spec = Spec {
    dir_prefix: "tessera-mariadb-",
    guard_name: "tessera-test-mariadb-guard",
    log_file: "mariadbd.log",
    system_user: "mysql",
    install_script: "scripts/install-mariadb",
    shutdown_signal: "TERM",
    ready_timeout: Duration::from_secs(60),
    ready_poll: Duration::from_millis(50),
};

/// `sh -c INIT_AND_RUN init INSTALL_DB MARIADBD DATA_DIR SOCKET SETTINGS...`: the
/// server, as the guard runs it. `exec` makes mariadbd the process the guard signals.
/// Root (over the socket only) has no password.
const INIT_AND_RUN: &str = r#"
set -eu
install_db=$1 mariadbd=$2 data=$3 socket=$4
shift 4
"$install_db" --no-defaults --datadir="$data" --auth-root-authentication-method=normal \
    --skip-test-db --skip-name-resolve >/dev/null
exec "$mariadbd" --no-defaults --datadir="$data" --socket="$socket" "$@"
"#;

/// A running MariaDB server for tests. Dropping it stops the server and removes its
/// directory.
#[derive(Debug)]
pub struct TestMariaDb {
    tools: Tools,
    socket: PathBuf,
    /// Owns the server and its directory (`data/`, `mysqld.sock`, `mariadbd.log`).
    guard: Guard,
    next_database: AtomicU64,
}

impl TestMariaDb {
    /// The test process's shared server, started on first use (by whichever test gets
    /// there first; the others wait for it). If it failed to start, every caller gets
    /// that error.
    pub fn shared() -> Result<&'static TestMariaDb, Error> {
        static SHARED: OnceLock<Result<TestMariaDb, Error>> = OnceLock::new();
        SHARED
            .get_or_init(TestMariaDb::start)
            .as_ref()
            .map_err(Error::clone)
    }

    /// Starts a private server (`mariadb-install-db`, then `mariadbd`) and waits until
    /// it accepts connections.
    pub fn start() -> Result<TestMariaDb, Error> {
        let tools = Tools::find()?;
        let dir = ServerDir::create(SPEC)?;
        let data_dir = dir.path().join("data");
        let socket = dir.path().join("mysqld.sock");

        // The guard runs mariadb-install-db, then mariadbd: it owns the directory
        // from the start.
        let mut server = dir.command(INIT_AND_RUN);
        server
            .args([&tools.install_db, &tools.mariadbd, &data_dir, &socket])
            .arg(format!(
                "--pid-file={}",
                dir.path().join("mariadbd.pid").display()
            ))
            .args([
                "--skip-networking",
                "--skip-name-resolve",
                "--skip-log-bin",
                "--innodb-flush-log-at-trx-commit=0",
                "--innodb-buffer-pool-size=32M",
                "--innodb-log-file-size=16M",
                // Parallel tests, each with its own pool.
                "--max-connections=300",
            ]);
        let guard = dir.spawn(&server)?;

        let mariadb = TestMariaDb {
            tools,
            socket,
            guard,
            next_database: AtomicU64::new(0),
        };
        mariadb
            .guard
            .wait_until_ready(|| mariadb.accepts_connections())?;
        Ok(mariadb)
    }

    /// Creates a fresh, empty database with a name unique to this server and returns
    /// its connection URL. Blocks while the `mariadb` client runs.
    pub fn create_database(&self) -> Result<String, Error> {
        let n = self.next_database.fetch_add(1, Ordering::Relaxed);
        let name = format!("test_{n}");
        self.execute(&format!("CREATE DATABASE {name}"))?;
        Ok(self.url(&name))
    }

    /// Runs one SQL statement as root with the `mariadb` command-line client.
    pub fn execute(&self, sql: &str) -> Result<(), Error> {
        let mut client = Command::new(&self.tools.client);
        client
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket.display()))
            .args(["--user", SUPERUSER, "--batch", "--execute", sql]);
        Ok(run(&mut client)?)
    }

    /// The connection URL of database `db` on this server, for sqlx
    /// (`MySqlPool::connect`) and Tessera's `sql` adapter:
    /// `mysql://root@localhost/DB?socket=SOCKET`.
    pub fn url(&self, db: &str) -> String {
        format!(
            "mysql://{SUPERUSER}@localhost/{}?socket={}",
            percent_encode_component(db),
            percent_encode_path(&self.socket.to_string_lossy()),
        )
    }

    /// The server's Unix socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Stops the server and removes its directory, reporting whether the server shut
    /// down cleanly. Dropping does the same, silently.
    pub fn stop(self) -> Result<(), Error> {
        Ok(self.guard.stop()?)
    }

    fn accepts_connections(&self) -> Result<bool, tessera_test_server::Error> {
        if !self.socket.exists() {
            return Ok(false);
        }
        let output = Command::new(&self.tools.admin)
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket.display()))
            .args(["--user", SUPERUSER, "--connect-timeout=1", "ping"])
            .output()
            .map_err(|e| tessera_test_server::Error::io("running mariadb-admin ping", e))?;
        Ok(output.status.success())
    }
}
