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
//! No server outlives its test process: each runs under a guard (see the `guard`
//! module) that stops it and removes its directory when the test process lets go of
//! it — by dropping the [`TestMariaDb`], or by exiting in any way at all.
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
mod guard;
mod install;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

pub use error::Error;
use install::{RunAs, Tools};

/// The user `mariadb-install-db` creates with no password (socket connections only).
const SUPERUSER: &str = "root";
/// How long a server may take to initialise and accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How often to ask whether it does.
const READY_POLL: Duration = Duration::from_millis(50);

/// A running MariaDB server for tests. Dropping it stops the server and removes its
/// directory.
#[derive(Debug)]
pub struct TestMariaDb {
    tools: Tools,
    /// The server's directory: `data/`, `mysqld.sock`, `mariadbd.log`.
    base: PathBuf,
    socket: PathBuf,
    /// The guard process; closing its stdin stops the server.
    guard: Child,
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
        let run_as = RunAs::detect()?;

        let dir = tempfile::Builder::new()
            .prefix("tessera-mariadb-")
            .tempdir_in(temp_parent())
            .map_err(|e| Error::io("creating the server's temporary directory", e))?;
        // Traversable by anyone, so that clients running as other users reach the socket.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o711))
            .map_err(|e| Error::io("opening up the server's temporary directory", e))?;
        run_as.give(dir.path())?;
        let data_dir = dir.path().join("data");
        let socket = dir.path().join("mysqld.sock");
        let log = dir.path().join("mariadbd.log");

        // The guard runs mariadb-install-db, then mariadbd: it owns the directory
        // from the start.
        let mut server = run_as.command(Path::new("sh"));
        server
            .args(["-c", guard::INIT_AND_RUN, "init"])
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
        let guard = guard::spawn(dir.path(), &log, &server)?;
        // From here on the guard removes the directory.
        let base = dir.keep();

        let mariadb = TestMariaDb {
            tools,
            base,
            socket,
            guard,
            next_database: AtomicU64::new(0),
        };
        mariadb.wait_until_ready()?;
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
        run(&mut client)
    }

    /// The connection URL of database `db` on this server, for sqlx
    /// (`MySqlPool::connect`) and Tessera's `sql` adapter:
    /// `mysql://root@localhost/DB?socket=SOCKET`.
    pub fn url(&self, db: &str) -> String {
        format!(
            "mysql://{SUPERUSER}@localhost/{}?socket={}",
            percent_encode(db, b""),
            percent_encode(&self.socket.to_string_lossy(), b"/"),
        )
    }

    /// The server's Unix socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Stops the server and removes its directory, reporting whether the server shut
    /// down cleanly. Dropping does the same, silently.
    pub fn stop(mut self) -> Result<(), Error> {
        match self.shut_down() {
            Ok(status) if status.success() => Ok(()),
            Ok(status) => Err(Error::Shutdown {
                status: status.to_string(),
            }),
            Err(e) => Err(Error::io("waiting for the server's guard", e)),
        }
    }

    fn shut_down(&mut self) -> std::io::Result<std::process::ExitStatus> {
        // Closing the guard's stdin is the stop signal; it exits once mariadbd has and
        // its directory is gone.
        drop(self.guard.stdin.take());
        self.guard.wait()
    }

    fn wait_until_ready(&self) -> Result<(), Error> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(status) = fs::read_to_string(self.base.join("exited")) {
                return Err(Error::Exited {
                    status: format!("exit status {}", status.trim()),
                    log: self.log(),
                });
            }
            if self.accepts_connections()? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::NotReady {
                    seconds: READY_TIMEOUT.as_secs(),
                    log: self.log(),
                });
            }
            thread::sleep(READY_POLL);
        }
    }

    fn accepts_connections(&self) -> Result<bool, Error> {
        if !self.socket.exists() {
            return Ok(false);
        }
        let output = Command::new(&self.tools.admin)
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket.display()))
            .args(["--user", SUPERUSER, "--connect-timeout=1", "ping"])
            .output()
            .map_err(|e| Error::io("running mariadb-admin ping", e))?;
        Ok(output.status.success())
    }

    fn log(&self) -> String {
        let path = self.base.join("mariadbd.log");
        fs::read_to_string(&path)
            .unwrap_or_else(|e| format!("(could not read {}: {e})", path.display()))
    }
}

impl Drop for TestMariaDb {
    fn drop(&mut self) {
        // Nothing useful to do with a failure here; `stop` reports it.
        let _ = self.shut_down();
    }
}

/// Where to put servers: the system's temporary directory unless its path is so long
/// that the socket's path would pass the 107-byte limit of Unix socket addresses.
fn temp_parent() -> PathBuf {
    let temp = std::env::temp_dir();
    if temp.as_os_str().len() <= 60 {
        temp
    } else {
        PathBuf::from("/tmp")
    }
}

/// Runs a client tool to completion, with its output in the error if it fails.
fn run(command: &mut Command) -> Result<(), Error> {
    let line = format!("{command:?}");
    let output = command
        .output()
        .map_err(|e| Error::io(format!("running {line}"), e))?;
    if output.status.success() {
        return Ok(());
    }
    Err(Error::Command {
        command: line,
        status: output.status.to_string(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    })
}

/// Percent-encodes everything in `text` but ASCII letters, digits, `-._~` and `keep`.
fn percent_encode(text: &str, keep: &[u8]) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) || keep.contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_escape_what_a_url_cannot_hold() {
        assert_eq!(
            percent_encode("/tmp/tessera-mariadb-Ab1/mysqld.sock", b"/"),
            "/tmp/tessera-mariadb-Ab1/mysqld.sock"
        );
        assert_eq!(percent_encode("/tmp/my dir?x", b"/"), "/tmp/my%20dir%3Fx");
    }
}
