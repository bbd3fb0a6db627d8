//! The tamper-evident audit trail: one [`AuditRecord`] for every call that touches patient
//! data, appended to an [`AuditSink`] before the response leaves.
//!
//! [`AuditLayer`] is the tower layer a server puts outside its auth layer to write one
//! record per call.
//!
//! # Record format
//! An [`AuditRecord`] holds who called (principal and how it authenticated), on whose behalf,
//! which RPC, the purpose of use, break-the-glass, the master IDs (`masters/N`, opaque), the
//! sections and sources returned and withheld, the outcome, the request and trace IDs. It has
//! no demographics fields at all: local IDs (an MRN is an identifier) and demographics never
//! go in; master IDs only.
//!
//! # Hash chain
//! [`JsonlSink`] writes one JSON object per line: `{"prev_hash":P,"record":R,"hash":H}` in that
//! key order. `P` is the lowercase hex SHA-256 of the previous line's bytes (without its
//! newline), or [`GENESIS_HASH`] (64 zeros) for the first line. The canonical form of a line is
//! the line with its trailing `,"hash":"H"` removed, that is `{"prev_hash":P,"record":R}`, and
//! `H` is the lowercase hex SHA-256 of the canonical form's bytes. Sequence numbers start at 1
//! and grow by one per line. [`verify`] recomputes every hash, link and sequence number and
//! names the first broken line. Deleting the last line(s) leaves a valid shorter chain: keep
//! [`VerifyReport::head_hash`] elsewhere to detect that. [`PostgresSink`] keeps the same chain
//! in table `tessera_audit` (`hash` there is the SHA-256 of the row's JSONL line), guarded by
//! triggers that raise on UPDATE, DELETE and TRUNCATE.
//!
//! # Durability and the fail-closed contract
//! [`AuditSink::append`] returns `Ok` only once the record is durable (for the JSONL sink:
//! after the `fdatasync` that covers it; concurrent appends share one). A record is durable
//! before the response leaves: a caller that gets [`AuditError::Unavailable`] must refuse the
//! call rather than answer without an audit record, and the readiness probe reads
//! [`JsonlSink::healthy`].

mod chain;
mod error;
mod fhir;
mod jsonl;
pub mod layer;
mod memory;
mod postgres;
mod record;

pub use chain::{GENESIS_HASH, VerifyReport, verify};
pub use error::{AuditError, VerifyError};
pub use fhir::{export_fhir, export_fhir_ndjson};
pub use jsonl::JsonlSink;
pub use layer::AuditLayer;
pub use memory::MemorySink;
pub use postgres::PostgresSink;
pub use record::{AuditRecord, AuthMethod, Withheld};

/// Where audit records go.
#[async_trait::async_trait]
pub trait AuditSink: Send + Sync {
    /// Appends `record`, returning only once it is durable.
    async fn append(&self, record: AuditRecord) -> Result<(), AuditError>;

    /// False after a failed append, until the sink writes again.
    fn healthy(&self) -> bool {
        true
    }

    /// Checks, without appending a record, whether the sink can write now (after a
    /// failure: reopens and syncs the trail), and updates [`AuditSink::healthy`].
    async fn probe(&self) -> Result<(), AuditError> {
        Ok(())
    }
}
