//! The crate's one error type.

use std::path::PathBuf;

/// Why a [`Secret`](crate::Secret) reference could not be resolved. Messages name
/// the variable or path, never the secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The environment variable a secret refers to is not set (or not Unicode).
    #[error("environment variable {name} is not set")]
    EnvNotSet {
        /// The variable's name.
        name: String,
    },
    /// The file a secret refers to could not be read.
    #[error("cannot read secret file {}: {kind}", path.display())]
    File {
        /// The file's path, resolved.
        path: PathBuf,
        /// What went wrong.
        kind: std::io::ErrorKind,
    },
    /// The reference resolved to an empty secret.
    #[error("the secret from {reference} is empty")]
    Empty {
        /// The variable or file it came from (`environment variable TOKEN`).
        reference: String,
    },
}
