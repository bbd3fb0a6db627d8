//! The crate's one error type.

use std::io;
use std::sync::Arc;

/// Why a test MariaDB server or database could not be provided.
///
/// `Clone` so that [`TestMariaDb::shared`](crate::TestMariaDb::shared) can hand the
/// same startup failure to every test of the process.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The MariaDB server or its tools were not found.
    #[error(
        "mariadb server binaries (mariadbd, mariadb-install-db, mariadb, mariadb-admin) \
         not found ({missing} is missing); run scripts/install-mariadb"
    )]
    NotInstalled {
        /// The first tool that was not found.
        missing: String,
    },
    /// Running as root, but there is no `mysql` user to run the server as.
    #[error(
        "running as root, but there is no `mysql` system user to run mariadbd as; \
         run scripts/install-mariadb"
    )]
    NoMysqlUser,
    /// A file system or process operation failed.
    #[error("{action}: {source}")]
    Io {
        /// What was being done, e.g. "creating the server's temporary directory".
        action: String,
        /// The underlying error.
        #[source]
        source: Arc<io::Error>,
    },
    /// A MariaDB client tool exited unsuccessfully.
    #[error("`{command}` failed ({status}):\n{output}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed on standard output and standard error.
        output: String,
    },
    /// The server exited (in mariadb-install-db or mariadbd) before it accepted
    /// connections.
    #[error("the server exited during startup ({status}); its log:\n{log}")]
    Exited {
        /// The server's exit status, as the guard recorded it.
        status: String,
        /// The server's log.
        log: String,
    },
    /// The server did not initialise and accept connections in time.
    #[error("mariadbd did not accept connections within {seconds} s; its log:\n{log}")]
    NotReady {
        /// How long we waited.
        seconds: u64,
        /// The server's log.
        log: String,
    },
    /// The server did not shut down cleanly when stopped.
    #[error("mariadbd did not shut down cleanly: the guard exited with {status}")]
    Shutdown {
        /// The guard's exit status, which is the server's.
        status: String,
    },
}

impl From<tessera_test_server::Error> for Error {
    fn from(error: tessera_test_server::Error) -> Self {
        use tessera_test_server::Error as Shared;
        match error {
            Shared::NoSystemUser { .. } => Self::NoMysqlUser,
            Shared::Io { action, source } => Self::Io { action, source },
            Shared::Command {
                command,
                status,
                output,
            } => Self::Command {
                command,
                status,
                output,
            },
            Shared::Exited { status, log } => Self::Exited { status, log },
            Shared::NotReady { seconds, log } => Self::NotReady { seconds, log },
            Shared::Shutdown { status } => Self::Shutdown { status },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_installation_says_how_to_install_it() {
        let error = Error::NotInstalled {
            missing: "mariadbd".to_owned(),
        };
        assert!(
            error
                .to_string()
                .ends_with("(mariadbd is missing); run scripts/install-mariadb"),
            "{error}"
        );
    }
}
