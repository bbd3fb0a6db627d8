//! The identity resolver's matching engine: it decides whether two records of a
//! person's demographics, from different silos, are the same person.
//!
//! [`record`] holds the input types every other part of the resolver shares:
//! source record keys, demographics as the silos send them, and their validation.
//! The engine normalizes demographics, finds candidates through blocking keys,
//! scores them with Fellegi-Sunter match weights, and decides MATCH,
//! POSSIBLE_MATCH or NO_MATCH, with the per-field weights that explain it. It does
//! no I/O of its own: storage and transport belong to the resolver service and the
//! gateway.

pub mod record;

pub use record::{Address, Decision, Demographics, FieldViolation, FieldWeight, Sex, SourceKey};
