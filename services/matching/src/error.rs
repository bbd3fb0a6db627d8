//! The crate's one error type. Messages are lowercase and never carry patient data.

/// What went wrong in the matching engine.
#[derive(Debug, thiserror::Error)]
pub enum MatchError {
    /// A CSV input row (or its header) could not be read.
    #[error("csv line {line}, column {column}: {reason}")]
    Csv {
        /// 1-based line number (the header is line 1).
        line: u64,
        /// The column's header name, or its 1-based position when unnamed.
        column: String,
        /// What is wrong, without the value.
        reason: &'static str,
    },
    /// The CSV input could not be read at all.
    #[error("csv input unreadable at line {line}: {reason}")]
    CsvRead {
        /// 1-based line number where reading stopped.
        line: u64,
        /// The reader's error kind, without data.
        reason: String,
    },
    /// A model JSON document is malformed.
    #[error("model json is invalid at line {line}, column {column}: {category}")]
    ModelJson {
        /// Line of the error in the JSON text.
        line: usize,
        /// Column of the error in the JSON text.
        column: usize,
        /// serde_json's error category.
        category: &'static str,
    },
    /// A model's version is not one this engine reads.
    #[error("model version {found} is not supported (expected {expected})")]
    ModelVersion {
        /// The version in the document.
        found: u32,
        /// The version this engine reads.
        expected: u32,
    },
    /// A model does not describe the fields and levels this engine compares.
    #[error("model field {field}: {reason}")]
    ModelField {
        /// The field's name.
        field: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// Training could not run on the given records.
    #[error("training failed: {0}")]
    Training(&'static str),
}
