//! Where the MariaDB binaries are, and which user runs them.

use std::path::{Path, PathBuf};
use std::process::Command;

use nix::unistd::{Gid, Uid, User, geteuid};

use crate::Error;

/// The tools this crate runs, and where Debian's `mariadb-server` puts them.
#[derive(Debug, Clone)]
pub(crate) struct Tools {
    pub(crate) mariadbd: PathBuf,
    pub(crate) install_db: PathBuf,
    pub(crate) client: PathBuf,
    pub(crate) admin: PathBuf,
}

impl Tools {
    /// The tools, from `/usr/sbin` and `/usr/bin` (Debian's layout) or `PATH`.
    pub(crate) fn find() -> Result<Self, Error> {
        Ok(Self {
            mariadbd: find("mariadbd")?,
            install_db: find("mariadb-install-db")?,
            client: find("mariadb")?,
            admin: find("mariadb-admin")?,
        })
    }
}

fn find(tool: &str) -> Result<PathBuf, Error> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    [PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")]
        .into_iter()
        .chain(std::env::split_paths(&path))
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| Error::NotInstalled {
            missing: tool.to_owned(),
        })
}

/// Who runs mariadb-install-db and mariadbd: the current user, or — because
/// mariadbd refuses to run as root without `--user=root` — the `mysql` system user
/// when we are root.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RunAs {
    /// Not root: run everything as ourselves.
    CurrentUser,
    /// Root: hand the directories to this user and switch to it with `setpriv`.
    User { uid: Uid, gid: Gid },
}

impl RunAs {
    pub(crate) fn detect() -> Result<Self, Error> {
        if !geteuid().is_root() {
            return Ok(Self::CurrentUser);
        }
        let user = User::from_name("mysql")
            .map_err(|errno| Error::io("looking up the mysql user", errno.into()))?
            .ok_or(Error::NoMysqlUser)?;
        Ok(Self::User {
            uid: user.uid,
            gid: user.gid,
        })
    }

    /// Makes `path` belong to the user that runs the server.
    pub(crate) fn give(&self, path: &Path) -> Result<(), Error> {
        match self {
            Self::CurrentUser => Ok(()),
            Self::User { uid, gid } => {
                std::os::unix::fs::chown(path, Some(uid.as_raw()), Some(gid.as_raw()))
                    .map_err(|e| Error::io(format!("giving {} to mysql", path.display()), e))
            }
        }
    }

    /// A command that runs `program` as that user. `setpriv` execs the program in its
    /// own process; `--pdeathsig TERM` asks the kernel to send it SIGTERM (mariadbd's
    /// shutdown) if its parent dies.
    pub(crate) fn command(&self, program: &Path) -> Command {
        let mut command = Command::new("setpriv");
        if let Self::User { uid, gid } = self {
            command
                .arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg("--init-groups");
        }
        command.args(["--pdeathsig=TERM", "--"]).arg(program);
        command
    }
}
