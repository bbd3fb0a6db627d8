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
//! No server outlives its test process: each runs under a guard (see the `guard` module)
//! that stops it and removes its directory when the test process lets go of it — by
//! dropping the [`TestPostgres`], or by exiting in any way at all, which matters because
//! the shared server lives in a static and is never dropped. After an exit the guard
//! finishes on its own, a moment later (a fast shutdown, well under a second).
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
use install::RunAs;

/// The server's port: with no TCP listener it only names the socket file
/// (`.s.PGSQL.5432`), which lives in the server's private directory.
const PORT: &str = "5432";
/// The superuser `initdb` creates; local connections are trusted.
const SUPERUSER: &str = "postgres";
/// How long a server may take to initialise and accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often to ask whether it does.
const READY_POLL: Duration = Duration::from_millis(20);

/// A running PostgreSQL server for tests. Dropping it stops the server and removes its
/// directory.
#[derive(Debug)]
pub struct TestPostgres {
    bin_dir: PathBuf,
    /// The server's directory: `data/`, `socket/`, `postgres.log`.
    base: PathBuf,
    socket_dir: PathBuf,
    /// The guard process; closing its stdin stops the server.
    guard: Child,
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
        let run_as = RunAs::detect()?;

        let dir = tempfile::Builder::new()
            .prefix("tessera-pg-")
            .tempdir_in(temp_parent())
            .map_err(|e| Error::io("creating the server's temporary directory", e))?;
        // Traversable by anyone, so that clients running as other users reach the socket.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o711))
            .map_err(|e| Error::io("opening up the server's temporary directory", e))?;
        run_as.give(dir.path())?;
        let data_dir = dir.path().join("data");
        let socket_dir = dir.path().join("socket");
        let log = dir.path().join("postgres.log");
        fs::create_dir(&socket_dir)
            .map_err(|e| Error::io("creating the server's socket directory", e))?;
        run_as.give(&socket_dir)?;

        // The guard runs initdb, then postgres: it owns the directory from the start.
        let mut server = run_as.command(Path::new("sh"));
        server
            .args(["-c", guard::INIT_AND_RUN, "init"])
            .args([bin_dir.join("initdb"), bin_dir.join("postgres"), data_dir])
            .arg(&socket_dir)
            .arg(SUPERUSER)
            .args(["-p", PORT, "-c", "listen_addresses="])
            .args(["-c", "fsync=off"])
            .args(["-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off"])
            // Parallel tests, each with its own pool.
            .args(["-c", "max_connections=300"]);
        let guard = guard::spawn(dir.path(), &log, &server)?;
        // From here on the guard removes the directory.
        let base = dir.keep();

        let postgres = TestPostgres {
            bin_dir,
            base,
            socket_dir,
            guard,
            next_database: AtomicU64::new(0),
        };
        postgres.wait_until_ready()?;
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
            percent_encode(db, b""),
            percent_encode(&self.socket_dir.to_string_lossy(), b"/"),
        )
    }

    /// The directory of the server's Unix socket (`.s.PGSQL.5432`).
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
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
        // Closing the guard's stdin is the stop signal; it exits once postgres has and
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
        let status = Command::new(self.bin_dir.join("pg_isready"))
            .arg("--quiet")
            .arg("--host")
            .arg(&self.socket_dir)
            .args(["--port", PORT, "--username", SUPERUSER, "--dbname=postgres"])
            .args(["--timeout", "1"])
            .status()
            .map_err(|e| Error::io("running pg_isready", e))?;
        Ok(status.success())
    }

    fn log(&self) -> String {
        let path = self.base.join("postgres.log");
        fs::read_to_string(&path)
            .unwrap_or_else(|e| format!("(could not read {}: {e})", path.display()))
    }
}

impl Drop for TestPostgres {
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

/// Runs a PostgreSQL tool to completion, with its output in the error if it fails.
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
            percent_encode("/tmp/tessera-pg-Ab1", b"/"),
            "/tmp/tessera-pg-Ab1"
        );
        assert_eq!(percent_encode("/tmp/my dir?x", b"/"), "/tmp/my%20dir%3Fx");
        assert_eq!(percent_encode("a/b", b""), "a%2Fb");
    }
}
