//! What adapters describe, receive and return.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::FetchError;

/// The media type of plain JSON records.
pub const MEDIA_TYPE_JSON: &str = "application/json";
/// The media type of FHIR resources.
pub const MEDIA_TYPE_FHIR_JSON: &str = "application/fhir+json";

/// An adapter's description of itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Description {
    /// The source system whose local IDs it serves (`ehr`, `billing`).
    pub system: String,
    /// The sections it serves.
    pub sections: Vec<SectionDescriptor>,
    /// What it can do beyond the basics.
    pub capabilities: Capabilities,
    /// The adapter's name and version, for diagnostics (`fhir/0.1.0`).
    pub version: String,
}

impl Description {
    /// The section named `name`, if the adapter serves it.
    pub fn section(&self, name: &str) -> Option<&SectionDescriptor> {
        self.sections.iter().find(|s| s.name == name)
    }
}

/// A section an adapter serves.
#[derive(Debug, Clone, PartialEq)]
pub struct SectionDescriptor {
    /// Lowercase letters, digits and `_` (`encounters`, `invoices`).
    pub name: String,
    /// The media type of its records' JSON ([`MEDIA_TYPE_JSON`] or
    /// [`MEDIA_TYPE_FHIR_JSON`]).
    pub media_type: String,
    /// One line on what it holds.
    pub description: String,
    /// How long its records may be cached; `None` leaves it to Tessera's config.
    pub suggested_ttl: Option<Duration>,
}

impl SectionDescriptor {
    /// A JSON section with a description and no suggested TTL.
    pub fn json(name: &str, description: &str) -> Self {
        Self {
            name: name.to_owned(),
            media_type: MEDIA_TYPE_JSON.to_owned(),
            description: description.to_owned(),
            suggested_ttl: None,
        }
    }
}

/// Whether `name` is a valid section name: 1–63 of `[a-z0-9_]`, starting with a
/// letter.
pub fn valid_section_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// What an adapter can do beyond the basics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// `fetch` accepts more than one local ID per call.
    pub batch_fetch: bool,
    /// The most local IDs per call when `batch_fetch` is set.
    pub max_batch_size: usize,
    /// The adapter streams the silo's demographics ([`crate::Adapter::identity_feed`]).
    pub identity_feed: bool,
    /// The identity feed honours `updated_since`.
    pub incremental_identity_feed: bool,
}

/// One record from a silo. Cheap to clone: the payload is shared.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The record's own ID in the silo, if it has one (a FHIR resource id).
    pub record_id: Option<String>,
    /// The record as JSON.
    pub json: Arc<str>,
    /// When the silo last changed it, if known.
    pub update_time: Option<SystemTime>,
}

impl Record {
    /// Bytes this record holds, for the cache's weigher.
    pub fn weight(&self) -> usize {
        self.json.len() + self.record_id.as_ref().map_or(0, String::len) + 64
    }
}

/// A request for records: every (local ID, section) pair of the two lists.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchRequest {
    /// Local patient IDs in the silo; more than one only with `batch_fetch`.
    pub local_ids: Vec<String>,
    /// Section names.
    pub sections: Vec<String>,
    /// When the answer is no longer useful; an adapter stops by then.
    pub deadline: Instant,
}

impl FetchRequest {
    /// A request for one local ID and one section.
    pub fn one(local_id: &str, section: &str, deadline: Instant) -> Self {
        Self {
            local_ids: vec![local_id.to_owned()],
            sections: vec![section.to_owned()],
            deadline,
        }
    }
}

/// The records for one (local ID, section) pair, or why there are none.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchResult {
    /// The local ID.
    pub local_id: String,
    /// The section.
    pub section: String,
    /// The records (empty is a valid answer), or this pair's failure.
    pub records: Result<Vec<Record>, FetchError>,
    /// Records skipped because the silo's data was malformed.
    pub skipped_malformed: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_names_are_lowercase_identifiers() {
        for ok in ["demographics", "lab_results", "v2"] {
            assert!(valid_section_name(ok), "{ok}");
        }
        for bad in ["", "Encounters", "2x", "a-b", "a b", &"x".repeat(64)] {
            assert!(!valid_section_name(bad), "{bad}");
        }
    }
}
