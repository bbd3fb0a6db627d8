//! Real PostgreSQL for Tessera's tests: a throwaway server per test process, and a fresh
//! database per test.
//!
//! [`TestPostgres::shared`] starts one server for the whole test process the first time
//! a test asks for it; [`TestPostgres::create_database`] then gives each test its own
//! empty database, so tests that run in parallel never see each other's data.
//! [`TestPostgres::start`] starts a private server for a test that needs one to itself;
//! [`TestPostgres::start_tls`] starts one that also listens on TCP (127.0.0.1, a free
//! port) with TLS on and `hostssl` only, for tests of encrypted connections
//! ([`TestPostgres::tcp_url`]).
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

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
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
/// (`.s.PGSQL.5432`), which lives in the server's private directory. A server with
/// TLS listens on a free TCP port instead, which then names its socket too.
const PORT: u16 = 5432;
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

/// `pg_hba.conf` of a server with TLS: the Unix socket trusted, TCP only over TLS.
const HBA_TLS_ONLY: &str = "\
local   all all              trust
hostssl all all 127.0.0.1/32 trust
";

/// A server certificate for [`TestPostgres::start_tls`].
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// The server's certificate chain, leaf first (PEM); its names should cover
    /// `127.0.0.1` (or `localhost`) for clients that verify the host name.
    pub cert: PathBuf,
    /// The certificate's private key (PEM).
    pub key: PathBuf,
}

impl ServerTls {
    /// Writes a throwaway CA and a server certificate for `localhost`, `127.0.0.1` and
    /// `::1` into `dir` ([`tessera_tls::dev_certs`]); returns the server's files and
    /// the CA certificate that clients trust (`sslrootcert=`).
    pub fn generate(dir: &Path) -> Result<(ServerTls, PathBuf), Error> {
        let certs =
            tessera_tls::dev_certs(dir, false).map_err(|e| Error::Certificates(e.to_string()))?;
        let tls = ServerTls {
            cert: certs.server_cert,
            key: certs.server_key,
        };
        Ok((tls, certs.ca_cert))
    }
}

/// A running PostgreSQL server for tests. Dropping it stops the server and removes its
/// directory.
#[derive(Debug)]
pub struct TestPostgres {
    bin_dir: PathBuf,
    socket_dir: PathBuf,
    /// The port: [`PORT`], or the TCP port of a server with TLS.
    port: u16,
    /// Whether the server listens on TCP (127.0.0.1) with TLS.
    tls: bool,
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
        Self::start_with(None)
    }

    /// Starts a private server that also listens on 127.0.0.1, on a free port, with
    /// TLS on (`ssl = on`, the given certificate) and a `pg_hba.conf` that admits TCP
    /// connections over TLS only (`hostssl`): a client with `sslmode=disable` is
    /// refused. The Unix socket stays open for [`TestPostgres::create_database`].
    ///
    /// The port is found free by binding and releasing it just before the server
    /// starts (PostgreSQL cannot bind port 0), so another process could take it in
    /// between; the start then fails, and says so.
    pub fn start_tls(tls: &ServerTls) -> Result<TestPostgres, Error> {
        Self::start_with(Some(tls))
    }

    fn start_with(tls: Option<&ServerTls>) -> Result<TestPostgres, Error> {
        let bin_dir = install::find_bin_dir()?;
        let dir = ServerDir::create(SPEC)?;
        let data_dir = dir.path().join("data");
        let socket_dir = dir.create_dir("socket")?;
        let port = match tls {
            Some(_) => free_port()?,
            None => PORT,
        };

        // The guard runs initdb, then postgres: it owns the directory from the start.
        let mut server = dir.command(INIT_AND_RUN);
        server
            .args([bin_dir.join("initdb"), bin_dir.join("postgres"), data_dir])
            .arg(&socket_dir)
            .arg(SUPERUSER)
            .arg("-p")
            .arg(port.to_string())
            .args(["-c", "fsync=off"])
            .args(["-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off"])
            // Parallel tests, each with its own pool.
            .args(["-c", "max_connections=300"]);
        match tls {
            None => {
                server.args(["-c", "listen_addresses="]);
            }
            Some(tls) => {
                let tls_dir = dir.create_dir("tls")?;
                let files = install_tls(&tls_dir, tls)?;
                server
                    .args(["-c", "listen_addresses=127.0.0.1", "-c", "ssl=on"])
                    .arg("-c")
                    .arg(format!("ssl_cert_file={}", files.cert.display()))
                    .arg("-c")
                    .arg(format!("ssl_key_file={}", files.key.display()))
                    .arg("-c")
                    .arg(format!("hba_file={}", files.hba.display()));
            }
        }
        let guard = dir.spawn(&server)?;

        let postgres = TestPostgres {
            bin_dir,
            socket_dir,
            port,
            tls: tls.is_some(),
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
        createdb
            .arg("--host")
            .arg(&self.socket_dir)
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--username", SUPERUSER, &name]);
        run(&mut createdb)?;
        Ok(self.url(&name))
    }

    /// The connection URL of database `db` on this server, for sqlx (`PgPool::connect`)
    /// and libpq (`psql`): `postgres://postgres@localhost:5432/DB?host=SOCKET_DIR`. Both
    /// read a `host` that starts with `/` as the directory of the server's socket.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{SUPERUSER}@localhost:{}/{}?host={}",
            self.port,
            percent_encode_component(db),
            percent_encode_path(&self.socket_dir.to_string_lossy()),
        )
    }

    /// The TCP connection URL of database `db` on a server started with
    /// [`TestPostgres::start_tls`], without TLS parameters (append `?sslmode=...`):
    /// `postgres://postgres@127.0.0.1:PORT/DB`. `None` for a server on a Unix socket
    /// only.
    pub fn tcp_url(&self, db: &str) -> Option<String> {
        self.tls.then(|| {
            format!(
                "postgres://{SUPERUSER}@127.0.0.1:{}/{}",
                self.port,
                percent_encode_component(db),
            )
        })
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
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--username", SUPERUSER, "--dbname=postgres"])
            .args(["--timeout", "1"])
            .status()
            .map_err(|e| tessera_test_server::Error::io("running pg_isready", e))?;
        Ok(status.success())
    }
}

/// Where [`install_tls`] put a server's TLS files.
struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    hba: PathBuf,
}

/// Copies the certificate and key into `tls_dir` (owned by the server's user), the
/// key readable by that user only, as PostgreSQL demands, and writes the
/// `pg_hba.conf` that admits TCP over TLS only.
fn install_tls(tls_dir: &Path, tls: &ServerTls) -> Result<TlsFiles, Error> {
    let io = |what: &str, e| Error::Server(tessera_test_server::Error::io(what.to_owned(), e));
    let owner = fs::metadata(tls_dir).map_err(|e| io("reading the tls directory", e))?;
    let files = TlsFiles {
        cert: tls_dir.join("server.crt"),
        key: tls_dir.join("server.key"),
        hba: tls_dir.join("pg_hba.conf"),
    };
    fs::copy(&tls.cert, &files.cert).map_err(|e| io("copying the server certificate", e))?;
    fs::copy(&tls.key, &files.key).map_err(|e| io("copying the server key", e))?;
    fs::write(&files.hba, HBA_TLS_ONLY).map_err(|e| io("writing pg_hba.conf", e))?;
    for path in [&files.cert, &files.key, &files.hba] {
        std::os::unix::fs::chown(path, Some(owner.uid()), Some(owner.gid()))
            .map_err(|e| io("giving the tls files to the server's user", e))?;
    }
    fs::set_permissions(&files.key, fs::Permissions::from_mode(0o600))
        .map_err(|e| io("making the server key private", e))?;
    Ok(files)
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<u16, Error> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| {
            Error::Server(tessera_test_server::Error::io(
                "finding a free port".to_owned(),
                e,
            ))
        })?;
    Ok(listener.port())
}
