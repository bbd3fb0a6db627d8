//! Where the PostgreSQL binaries are, and which user runs them.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::unistd::{Gid, Uid, User, geteuid};

use crate::Error;

/// Debian installs each major version's server under `/usr/lib/postgresql/<version>/bin`.
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";

/// The tools this crate runs; a version directory must have them all.
const TOOLS: [&str; 4] = ["initdb", "postgres", "pg_isready", "createdb"];

/// The newest installed PostgreSQL's `bin` directory.
pub(crate) fn find_bin_dir() -> Result<PathBuf, Error> {
    newest_bin_dir(Path::new(DEBIAN_ROOT)).ok_or_else(|| Error::NotInstalled {
        searched: PathBuf::from(DEBIAN_ROOT),
    })
}

fn newest_bin_dir(root: &Path) -> Option<PathBuf> {
    let entries = fs::read_dir(root).ok()?;
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = parse_version(&entry.file_name())?;
            let bin = entry.path().join("bin");
            TOOLS
                .iter()
                .all(|tool| bin.join(tool).is_file())
                .then_some((version, bin))
        })
        .max_by(|(a, _), (b, _)| a.cmp(b))
        .map(|(_, bin)| bin)
}

/// `"15"` -> `[15]`, `"9.6"` -> `[9, 6]`, so that 15 sorts above 9.6.
fn parse_version(name: &OsStr) -> Option<Vec<u32>> {
    name.to_str()?
        .split('.')
        .map(|part| part.parse().ok())
        .collect()
}

/// Who runs initdb and postgres: the current user, or — because PostgreSQL refuses to
/// run as root — the `postgres` system user when we are root.
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
        let user = User::from_name("postgres")
            .map_err(|errno| Error::io("looking up the postgres user", errno.into()))?
            .ok_or(Error::NoPostgresUser)?;
        Ok(Self::User {
            uid: user.uid,
            gid: user.gid,
        })
    }

    /// Makes `path` belong to the user that runs the server.
    pub(crate) fn give(&self, path: &Path) -> Result<(), Error> {
        match self {
            Self::CurrentUser => Ok(()),
            Self::User { uid, gid } => chown(path, Some(uid.as_raw()), Some(gid.as_raw()))
                .map_err(|e| Error::io(format!("giving {} to postgres", path.display()), e)),
        }
    }

    /// A command that runs `program` as that user. `setpriv` execs the program in its
    /// own process, so the child's pid is the program's; `--pdeathsig INT` asks the
    /// kernel to send the program SIGINT (PostgreSQL's fast shutdown) if its parent
    /// dies.
    pub(crate) fn command(&self, program: &Path) -> Command {
        let mut command = Command::new("setpriv");
        if let Self::User { uid, gid } = self {
            command
                .arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg("--init-groups");
        }
        command.args(["--pdeathsig=INT", "--"]).arg(program);
        command
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_numerically() {
        let mut versions: Vec<_> = ["9.6", "15", "10", "abc"]
            .iter()
            .filter_map(|v| parse_version(OsStr::new(v)))
            .collect();
        versions.sort();
        assert_eq!(versions, vec![vec![9, 6], vec![10], vec![15]]);
    }

    #[test]
    fn the_newest_complete_version_wins() {
        let root = tempfile::tempdir().expect("temp dir");
        for (version, tools) in [("9.6", &TOOLS[..]), ("15", &TOOLS[..]), ("16", &TOOLS[..1])] {
            let bin = root.path().join(version).join("bin");
            fs::create_dir_all(&bin).expect("bin dir");
            for tool in tools {
                fs::write(bin.join(tool), "").expect("tool");
            }
        }
        assert_eq!(
            newest_bin_dir(root.path()),
            Some(root.path().join("15").join("bin")),
            "16 lacks postgres, so 15 is the newest usable version"
        );
        assert_eq!(newest_bin_dir(&root.path().join("missing")), None);
    }
}
