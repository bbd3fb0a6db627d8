//! Where the MariaDB binaries are.

use std::path::PathBuf;

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
