//! The crate's one error type.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Why a test PostgreSQL server or database could not be provided.
///
/// `Clone` so that [`TestPostgres::shared`](crate::TestPostgres::shared) can hand the
/// same startup failure to every test of the process.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// No PostgreSQL server binaries were found.
    #[error(
        "postgresql server binaries (initdb, postgres, pg_isready, createdb) not found \
         under {searched}/*/bin; run scripts/install-postgres"
    )]
    NotInstalled {
        /// The directory whose versioned subdirectories were searched.
        searched: PathBuf,
    },
    /// Running as root, but there is no `postgres` user to run the server as.
    #[error(
        "running as root, and postgresql refuses to run as root, but there is no \
         `postgres` system user to run it as; run scripts/install-postgres"
    )]
    NoPostgresUser,
    /// A file system or process operation failed.
    #[error("{action}: {source}")]
    Io {
        /// What was being done, e.g. "creating the server's temporary directory".
        action: String,
        /// The underlying error.
        #[source]
        source: Arc<io::Error>,
    },
    /// A PostgreSQL client tool (createdb) exited unsuccessfully.
    #[error("`{command}` failed ({status}):\n{output}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed on standard output and standard error.
        output: String,
    },
    /// The server exited (in initdb or postgres) before it accepted connections.
    #[error(
        "the server exited during startup ({status}); its log (initdb's errors, then postgres'):\n{log}"
    )]
    Exited {
        /// The server's exit status, as the guard recorded it.
        status: String,
        /// The server's log.
        log: String,
    },
    /// The server did not initialise and accept connections in time.
    #[error("postgres did not accept connections within {seconds} s; its log:\n{log}")]
    NotReady {
        /// How long we waited.
        seconds: u64,
        /// The server's log.
        log: String,
    },
    /// The server did not shut down cleanly when stopped.
    #[error("postgres did not shut down cleanly: the guard exited with {status}")]
    Shutdown {
        /// The guard's exit status, which is the server's.
        status: String,
    },
}

impl From<tessera_test_server::Error> for Error {
    fn from(error: tessera_test_server::Error) -> Self {
        use tessera_test_server::Error as Shared;
        match error {
            Shared::NoSystemUser { .. } => Self::NoPostgresUser,
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
            searched: PathBuf::from("/usr/lib/postgresql"),
        };
        assert_eq!(
            error.to_string(),
            "postgresql server binaries (initdb, postgres, pg_isready, createdb) not found \
             under /usr/lib/postgresql/*/bin; run scripts/install-postgres"
        );
    }
}
