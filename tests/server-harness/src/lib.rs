//! What Tessera's test database servers (`tessera-test-postgres`, `tessera-test-mariadb`)
//! have in common: a private directory per server, a guard process that ends the server
//! with the test process (see the `guard` module), and the wait until it is ready.
//!
//! A harness describes its server in a [`Spec`], creates a [`ServerDir`], adds the
//! arguments of its init-and-run script to [`ServerDir::command`] and
//! [spawns](ServerDir::spawn) it; the [`Guard`] it gets back owns the server from then on.
//! Binaries, settings, the readiness probe, databases, URLs and the error messages users
//! see stay in the harness.

mod error;
mod guard;

use std::fs;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::unistd::{User, geteuid};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use tempfile::TempDir;

pub use error::Error;
pub use guard::Guard;

/// What differs between servers, as far as starting and stopping them goes.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// The start of the server directory's name, e.g. `tessera-pg-`.
    pub dir_prefix: &'static str,
    /// The guard's `$0`, which names it in `ps`.
    pub guard_name: &'static str,
    /// The server's log file, in its directory.
    pub log_file: &'static str,
    /// The user that runs the server when the tests run as root, which database servers
    /// refuse to run as.
    pub system_user: &'static str,
    /// The script that installs the server (and creates its system user), named in
    /// errors that only installing mends.
    pub install_script: &'static str,
    /// The signal that shuts the server down, as `kill` and `setpriv` name it, e.g. `INT`.
    pub shutdown_signal: &'static str,
    /// How long the server may take to initialise and accept connections.
    pub ready_timeout: Duration,
    /// How often to ask whether it does.
    pub ready_poll: Duration,
}

/// A server's private temporary directory, until [`ServerDir::spawn`] hands it to the
/// guard; dropped before that, it is removed.
#[derive(Debug)]
pub struct ServerDir {
    dir: TempDir,
    /// Who runs the server: ourselves, or as root the [`Spec::system_user`].
    user: Option<User>,
    spec: Spec,
}

impl ServerDir {
    /// Creates the directory: traversable by anyone, so that clients running as other
    /// users reach the server's socket, and owned by the user that runs the server.
    pub fn create(spec: Spec) -> Result<ServerDir, Error> {
        let user = if geteuid().is_root() {
            let name = spec.system_user;
            let user = User::from_name(name)
                .map_err(|errno| Error::io(format!("looking up the {name} user"), errno.into()))?
                .ok_or(Error::NoSystemUser {
                    user: name,
                    install_script: spec.install_script,
                })?;
            Some(user)
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix(spec.dir_prefix)
            .tempdir_in(temp_parent())
            .map_err(|e| Error::io("creating the server's temporary directory", e))?;
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o711))
            .map_err(|e| Error::io("opening up the server's temporary directory", e))?;
        let server_dir = ServerDir { dir, user, spec };
        server_dir.give(server_dir.path())?;
        Ok(server_dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Creates the subdirectory `name`, owned by the user that runs the server.
    pub fn create_dir(&self, name: &str) -> Result<PathBuf, Error> {
        let path = self.path().join(name);
        fs::create_dir(&path)
            .map_err(|e| Error::io(format!("creating the server's {name} directory"), e))?;
        self.give(&path)?;
        Ok(path)
    }

    /// `sh -c SCRIPT` as the user that runs the server; add the script's arguments and
    /// [spawn](ServerDir::spawn) it. The script ends by `exec`ing the server, so that the
    /// server is the process the guard signals. `setpriv` execs too, and its
    /// `--pdeathsig` has the kernel send the shutdown signal if the guard dies.
    pub fn command(&self, script: &str) -> Command {
        let mut command = Command::new("setpriv");
        if let Some(user) = &self.user {
            command
                .arg(format!("--reuid={}", user.uid))
                .arg(format!("--regid={}", user.gid))
                .arg("--init-groups");
        }
        command
            .arg(format!("--pdeathsig={}", self.spec.shutdown_signal))
            .args(["--", "sh", "-c", script, "init"]);
        command
    }

    /// Starts `server` under a guard, which owns the directory from here on.
    pub fn spawn(self, server: &Command) -> Result<Guard, Error> {
        let guard = Guard::spawn(self.path().to_owned(), self.spec, server)?;
        // From here on the guard removes the directory.
        let _ = self.dir.keep();
        Ok(guard)
    }

    fn give(&self, path: &Path) -> Result<(), Error> {
        let Some(user) = &self.user else {
            return Ok(());
        };
        chown(path, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
            .map_err(|e| Error::io(format!("giving {} to {}", path.display(), user.name), e))
    }
}

/// Runs a client tool to completion, with its output in the error if it fails.
pub fn run(command: &mut Command) -> Result<(), Error> {
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

/// What a URL component keeps as it is: ASCII letters, digits and `-._~`.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// The same, and `/`: a file path in a URL.
const PATH: &AsciiSet = &UNRESERVED.remove(b'/');

/// `text` percent-encoded as one URL component (a database name).
pub fn percent_encode_component(text: &str) -> String {
    utf8_percent_encode(text, UNRESERVED).to_string()
}

/// `path` percent-encoded for a URL, its slashes kept (a socket's directory).
pub fn percent_encode_path(path: &str) -> String {
    utf8_percent_encode(path, PATH).to_string()
}

/// Where to put servers: the system's temporary directory unless its path is so long
/// that the socket's path would pass the 107-byte limit of Unix socket addresses.
pub fn temp_parent() -> PathBuf {
    let temp = std::env::temp_dir();
    if temp.as_os_str().len() <= 60 {
        temp
    } else {
        PathBuf::from("/tmp")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_escape_what_a_url_cannot_hold() {
        assert_eq!(
            percent_encode_path("/tmp/tessera-mariadb-Ab1/mysqld.sock"),
            "/tmp/tessera-mariadb-Ab1/mysqld.sock"
        );
        assert_eq!(percent_encode_path("/tmp/my dir?x"), "/tmp/my%20dir%3Fx");
        assert_eq!(percent_encode_component("a/b"), "a%2Fb");
    }
}
