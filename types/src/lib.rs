//! The types every Tessera layer shares, with no Tessera dependency of its own.
//!
//! [`record`] holds a source record's key ([`SourceKey`]), a person's
//! [`Demographics`] as a silo sends them (with [`Address`] and [`Sex`]), their
//! validation into [`FieldViolation`]s, and [`Sex::from_code`], the one parser of
//! the sex and gender spellings silos use. [`Secret`] is every secret in
//! configuration: hidden from `Debug` and `Display`, optionally a reference to an
//! environment variable or a file read by an explicit resolve step
//! ([`SecretError`] when that fails).

mod error;
pub mod record;
mod secret;

pub use error::SecretError;
pub use record::{
    Address, Demographics, FieldViolation, MAX_LOCAL_ID_LEN, MAX_SYSTEM_LEN, RecordLimits, Sex,
    SourceKey, is_iso_date,
};
pub use secret::Secret;

#[cfg(test)]
mod tests;
