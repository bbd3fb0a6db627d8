//! The resolver's shared input types: a source record's key, its demographics as
//! the silo sent them and their validation (all from `tessera-types`, re-exported
//! here so the resolver's callers keep one import path), and what matching answers.

use serde::{Deserialize, Serialize};

pub use tessera_types::{
    Address, Demographics, FieldViolation, MAX_LOCAL_ID_LEN, MAX_SYSTEM_LEN, RecordLimits, Sex,
    SourceKey,
};

/// The outcome of matching a record against a master's cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Decision {
    /// The same person: link automatically.
    Match,
    /// Possibly the same person: a person reviews it.
    PossibleMatch,
    /// Not the same person.
    NoMatch,
}

/// One field's contribution to a match score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldWeight {
    /// The compared field (`family_name`, `birth_date`, `phones`).
    pub field: String,
    /// The comparison level reached (`exact`, `jaro_winkler_0.92`, `nickname`,
    /// `date_transposed`, `missing`, `placeholder`).
    pub level: String,
    /// The match weight in bits (log2 m/u), term-frequency adjustment included.
    pub weight: f64,
    /// The term-frequency adjustment included in `weight`, in bits.
    pub term_frequency_adjustment: f64,
}
