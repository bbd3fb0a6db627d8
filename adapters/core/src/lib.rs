//! The adapter SDK: how Tessera reaches a silo.
//!
//! An [`Adapter`] serves one source system's records, by local patient ID and
//! section, under a deadline; it describes itself ([`Description`]: system,
//! sections, capabilities) and may stream the silo's demographics as an identity
//! feed. Its [`HealthCheck`] is built beside it and kept separately, so the
//! server can probe health without going through the fetch path.
//!
//! Adapter kinds are typed factories ([`AdapterKind`]: a `Deserialize` +
//! `JsonSchema` config and a `build()`), listed in an explicit [`Registry`]; an
//! unknown kind is an error naming the known ones. [`fake`] is an ordinary kind
//! with configurable latency and faults, for tests and the load harness, and
//! [`conformance`] is the kit every adapter's tests run.
//!
//! Errors ([`FetchError`]) are typed and carry no patient data: an adapter's
//! message names what failed (`HTTP 503 from upstream`), never whose record.
//!
//! [`trace`] carries the caller's trace context onto the silo calls an adapter
//! makes, with client spans that hold no patient data, and [`retry_after`]
//! reads a silo's `Retry-After` the same way for every HTTP adapter.

mod adapter;
pub mod conformance;
mod error;
pub mod fake;
mod registry;
mod retry_after;
pub mod trace;
mod types;

pub use adapter::{Adapter, BoxFeed, FeedRecord, Health, HealthCheck, HealthState};
pub use error::{BuildError, FetchError, FetchErrorKind};
pub use registry::{AdapterFactory, AdapterKind, BuildContext, BuiltAdapter, Registry};
pub use retry_after::{MAX_RETRY_AFTER, parse_retry_after, retry_after};
pub use types::{
    Capabilities, Description, FetchRequest, FetchResult, MEDIA_TYPE_FHIR_JSON, MEDIA_TYPE_JSON,
    Record, SectionDescriptor, valid_section_name,
};
