//! The crate's one error type.

use std::io;
use std::sync::Arc;

/// Why a test server could not be started, asked whether it is ready, or stopped.
///
/// `Clone` because a harness's shared server hands its one startup failure to every test
/// of the process. Each harness wraps it in its own error, which names its server.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// Running as root, but the user the server must run as does not exist.
    #[error(
        "running as root, which database servers refuse to run as, but there is no \
         `{user}` system user to run the server as; run {install_script}"
    )]
    NoSystemUser {
        /// [`Spec::system_user`](crate::Spec::system_user).
        user: &'static str,
        /// [`Spec::install_script`](crate::Spec::install_script).
        install_script: &'static str,
    },
    /// A file system or process operation failed.
    #[error("{action}: {source}")]
    Io {
        /// What was being done, e.g. "creating the server's temporary directory".
        action: String,
        /// The underlying error.
        #[source]
        source: Arc<io::Error>,
    },
    /// A client tool exited unsuccessfully.
    #[error("`{command}` failed ({status}):\n{output}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed on standard output and standard error.
        output: String,
    },
    /// The server exited before it accepted connections.
    #[error("the server exited during startup ({status}); its log:\n{log}")]
    Exited {
        /// The server's exit status, as the guard recorded it.
        status: String,
        /// The server's log.
        log: String,
    },
    /// The server did not initialise and accept connections in time.
    #[error("the server did not accept connections within {seconds} s; its log:\n{log}")]
    NotReady {
        /// How long we waited.
        seconds: u64,
        /// The server's log.
        log: String,
    },
    /// The server did not shut down cleanly when stopped.
    #[error("the server did not shut down cleanly: the guard exited with {status}")]
    Shutdown {
        /// The guard's exit status, which is the server's.
        status: String,
    },
}

impl Error {
    /// An [`Error::Io`]: `action` failed with `source`.
    pub fn io(action: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            action: action.into(),
            source: Arc::new(source),
        }
    }
}
