//! The patient view: "show me this person, now".
//!
//! [`Aggregator`] resolves a subject to its master and linked source records
//! (through [`IdentityLookup`], the resolver in the gateway), plans which
//! [`Source`] serves which requested section for which local IDs (sections the
//! [`Authorizer`] denies are never fetched), fans out to all of them at once
//! under the caller's deadline, and assembles what arrived — each record with
//! its provenance and age, each (source, section) with a status, and the
//! sources that could not be reached named in `unreachable`.
//!
//! Around every source call ([`Source`]): a timeout cap, a concurrency limit,
//! retries of unavailable calls within a budget, hedging past the live p95
//! within a budget, and a circuit breaker. In front of the calls, the section
//! cache: moka bounded in bytes, a TTL per source and section,
//! `max_staleness`, stale-if-error, and one adapter call per key however many
//! requests miss at once. Each source is asked once per view: the misses of
//! its local IDs × sections go in one batch call when the adapter can batch
//! (chunked by its `max_batch_size`), else one call per local ID. [`PatientViewGrpc`] is PatientViewService, where the contract's
//! types are converted, the caller's purpose and
//! grant are checked (`tessera_auth::access::authorize`) before anything is
//! resolved, and errors become statuses.
//!
//! Who sees what: each view's [`Caller`] carries its grant, intersected with
//! the configured [`Authorizer`] per (source, section); sections not granted
//! are `DENIED` and never fetched. With [`Aggregator::with_consent`], the
//! consent-gated sections are put to the patient's consent once per view,
//! before fetching: opted-out ones, and all of them when consent cannot be
//! had in time (fail closed), are `WITHHELD` and never fetched. The view's
//! identities are filtered to the systems the caller may see.

mod access;
mod assemble;
mod authz;
mod batch;
mod breaker;
mod cache;
mod consent;
mod fanout;
mod grpc;
mod latency;
mod plan;
mod policy;
mod source;
mod telemetry;
mod view;

#[cfg(test)]
mod tests;

pub use authz::{Authorizer, Caller, Purpose, PurposePolicy};
pub use breaker::BreakerState;
pub use cache::CacheStats;
pub use grpc::PatientViewGrpc;

pub use policy::{BreakerPolicy, HedgePolicy, RetryPolicy, SourcePolicy, ViewPolicy};
pub use source::{Source, SourceStats};
pub use telemetry::record_master_ids;
pub use view::{
    Aggregator, ChangeEvent, DuplicateSource, Identities, IdentityLookup, LookupError,
    SectionChunk, SourceOutcome, SourceRef, SourceState, Subject, View, ViewError, ViewRecord,
    ViewRequest, ViewStream, summarize,
};
