//! [`SqlStore`]: the identity store on SQLite or PostgreSQL through sqlx's `Any`
//! driver. Both backends run the same SQL (numbered `$n` parameters, `RETURNING`,
//! `ON CONFLICT`); only the migrations differ.
//!
//! `schema` opens the pool and applies the migrations; `read` answers the
//! store's queries outside a transaction; `tx` is the write path, one
//! transaction at a time; `decode` turns rows and enum columns into the
//! store's types.

mod decode;
mod read;
mod schema;
mod tx;

use schema::Checkpointer;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::{Any, AnyPool, Transaction};

use super::{Micros, Page, StoreError};

/// Columns of a record joined with its link, in the order `record_from_row` reads.
const RECORD_COLUMNS: &str = "r.id, r.system, r.local_id, r.demographics, r.source_updated_at, \
     r.created_at, r.updated_at, l.master_id, l.decision, l.link_source, l.score, \
     l.field_weights, l.created_at AS link_created_at, l.updated_at AS link_updated_at";

const REVIEW_COLUMNS: &str = "v.id, v.record_id, r.system, r.local_id, v.master_id, v.candidates, \
     v.state, v.outcome, v.resolved_master, v.created_at, v.resolved_at";

const EVENT_COLUMNS: &str = "e.id, e.master_id, e.event_type, e.record_id, r.system, r.local_id, \
     e.other_master, e.decision, e.link_source, e.score, e.field_weights, e.actor, e.request_id, \
     e.created_at";

/// The identity store on SQLite (embedded, a file) or PostgreSQL.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pub(super) pool: AnyPool,
    pub(super) sqlite: bool,
    /// SQLite only: the background WAL checkpointer, stopped with the last clone.
    _checkpointer: Option<Arc<Checkpointer>>,
}

/// Now, in microseconds since the epoch.
pub(crate) fn now_micros() -> Micros {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

pub(super) fn id(v: u64) -> i64 {
    // Store ids come from the database's own i64 sequences.
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) fn uid(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(super) fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

fn from_json<T: serde::de::DeserializeOwned>(
    text: &str,
    what: &'static str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|_| StoreError::Corrupt { what })
}

fn limit(page: Page) -> i64 {
    i64::from(page.limit.max(1))
}

/// A transaction on either backend.
struct SqlTx {
    tx: Transaction<'static, Any>,
}
