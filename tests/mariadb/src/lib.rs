//! Real MariaDB for Tessera's tests: a throwaway server per test process, and a fresh
//! database per test — the MariaDB twin of `tessera-test-postgres`.
//!
//! [`TestMariaDb::shared`] starts one server for the whole test process the first time
//! a test asks for it; [`TestMariaDb::create_database`] then gives each test its own
//! empty database. [`TestMariaDb::start`] starts a private server;
//! [`TestMariaDb::start_tls`] one that also listens on 127.0.0.1 (a free port) with
//! TLS and `require_secure_transport`, for tests of encrypted connections
//! ([`TestMariaDb::tcp_url`]).
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

/// The user a server with TLS admits over TCP (from 127.0.0.1), and its password.
const TCP_USER: &str = "tessera";
const TCP_PASSWORD: &str = "tessera-test";

/// A server certificate for [`TestMariaDb::start_tls`].
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// The server's certificate chain, leaf first (PEM), naming `127.0.0.1` (or
    /// `localhost`) for clients that verify the host name.
    pub cert: PathBuf,
    /// The certificate's private key (PEM).
    pub key: PathBuf,
}

impl ServerTls {
    /// Writes a throwaway CA and a server certificate for `localhost`, `127.0.0.1` and
    /// `::1` into `dir` ([`tessera_tls::dev_certs`]); returns the server's files and
    /// the CA certificate that clients trust (`ssl-ca=`).
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

/// A running MariaDB server for tests. Dropping it stops the server and removes its
/// directory.
#[derive(Debug)]
pub struct TestMariaDb {
    tools: Tools,
    socket: PathBuf,
    /// The TCP port of a server started with TLS.
    tcp_port: Option<u16>,
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
        Self::start_with(None)
    }

    /// Starts a private server that also listens on 127.0.0.1, on a free port, with
    /// TLS (the given certificate) and `require_secure_transport`: a TCP client
    /// without TLS is refused. Over TCP the user `tessera` (password
    /// `tessera-test`) may do anything; [`TestMariaDb::tcp_url`] names it.
    ///
    /// The port is found free by binding and releasing it just before the server
    /// starts, so another process could take it in between; the start then fails.
    pub fn start_tls(tls: &ServerTls) -> Result<TestMariaDb, Error> {
        let mariadb = Self::start_with(Some(tls))?;
        mariadb.execute(&format!(
            "CREATE USER '{TCP_USER}'@'127.0.0.1' IDENTIFIED BY '{TCP_PASSWORD}'; \
             GRANT ALL PRIVILEGES ON *.* TO '{TCP_USER}'@'127.0.0.1'"
        ))?;
        Ok(mariadb)
    }

    fn start_with(tls: Option<&ServerTls>) -> Result<TestMariaDb, Error> {
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
                "--skip-name-resolve",
                "--skip-log-bin",
                "--innodb-flush-log-at-trx-commit=0",
                "--innodb-buffer-pool-size=32M",
                "--innodb-log-file-size=16M",
                // Parallel tests, each with its own pool.
                "--max-connections=300",
            ]);
        let tcp_port = match tls {
            None => {
                server.arg("--skip-networking");
                None
            }
            Some(tls) => {
                let port = free_port()?;
                let (cert, key) = install_tls(&dir.create_dir("tls")?, tls)?;
                server
                    .arg(format!("--port={port}"))
                    .arg("--bind-address=127.0.0.1")
                    .arg(format!("--ssl-cert={}", cert.display()))
                    .arg(format!("--ssl-key={}", key.display()))
                    .arg("--require-secure-transport=ON");
                Some(port)
            }
        };
        let guard = dir.spawn(&server)?;

        let mariadb = TestMariaDb {
            tools,
            socket,
            tcp_port,
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

    /// The TCP connection URL of database `db` on a server started with
    /// [`TestMariaDb::start_tls`], as the `tessera` user, without TLS parameters
    /// (append `?ssl-mode=...`): `mysql://tessera:PASSWORD@127.0.0.1:PORT/DB`. `None`
    /// for a server on a Unix socket only.
    pub fn tcp_url(&self, db: &str) -> Option<String> {
        self.tcp_port.map(|port| {
            format!(
                "mysql://{TCP_USER}:{TCP_PASSWORD}@127.0.0.1:{port}/{}",
                percent_encode_component(db)
            )
        })
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

/// Copies the certificate and key into `tls_dir` (owned by the server's user), the
/// key readable by that user only; returns their paths.
fn install_tls(tls_dir: &Path, tls: &ServerTls) -> Result<(PathBuf, PathBuf), Error> {
    let io = |what: &str, e| Error::Server(tessera_test_server::Error::io(what.to_owned(), e));
    let owner = fs::metadata(tls_dir).map_err(|e| io("reading the tls directory", e))?;
    let (cert, key) = (tls_dir.join("server.pem"), tls_dir.join("server.key"));
    fs::copy(&tls.cert, &cert).map_err(|e| io("copying the server certificate", e))?;
    fs::copy(&tls.key, &key).map_err(|e| io("copying the server key", e))?;
    for path in [&cert, &key] {
        std::os::unix::fs::chown(path, Some(owner.uid()), Some(owner.gid()))
            .map_err(|e| io("giving the tls files to the server's user", e))?;
    }
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600))
        .map_err(|e| io("making the server key private", e))?;
    Ok((cert, key))
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<u16, Error> {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| {
            Error::Server(tessera_test_server::Error::io(
                "finding a free port".to_owned(),
                e,
            ))
        })?;
    Ok(addr.port())
}
