/// Errors of the audit sinks. Messages carry no patient data.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The trail cannot be written now (disk full, unwritable, missing); callers fail closed.
    #[error("audit trail unavailable: {0}")]
    Unavailable(String),
    /// An existing trail's tail failed verification; it is not continued.
    #[error("existing audit trail fails verification: {0}")]
    Corrupt(#[from] VerifyError),
    /// The record could not be serialized.
    #[error("audit record serialization failed")]
    Serialize,
}

/// A broken audit trail, naming the first broken line.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    /// The file could not be read.
    #[error("audit trail unreadable: {0}")]
    Io(String),
    /// Line `line` (1-based, expected sequence `sequence`) is broken.
    #[error("audit trail broken at line {line} (sequence {sequence}): {what}")]
    Broken {
        /// 1-based line number.
        line: u64,
        /// The sequence number the line should carry.
        sequence: u64,
        /// What is wrong.
        what: &'static str,
    },
}
