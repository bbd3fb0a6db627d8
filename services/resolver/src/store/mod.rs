//! The identity store: the only data Tessera persists. It holds source records'
//! minimal demographics, one link per record to its master, manual no-match
//! decisions, review items, the link history, and idempotency records.
//!
//! [`IdentityStore`] is the interface; [`SqlStore`] implements it on embedded
//! SQLite (the default, a file) and on PostgreSQL, with one SQL dialect shared by
//! both and per-backend migrations. Every mutation happens in a [`StoreTx`]: a
//! crash before `commit` leaves the previous state, never a half-linked record.

mod bulk;
mod sql;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tessera_matching::{Decision, Demographics, FieldWeight, SourceKey};

pub use bulk::{BulkLoadError, bulk_load};
pub use sql::SqlStore;
pub(crate) use sql::now_micros;

/// A source record's id in the store.
pub type RecordId = u64;
/// A master's id in the store; its resource name is `masters/{id}`.
pub type MasterId = u64;
/// A review item's id; its resource name is `reviewItems/{id}`.
pub type ReviewId = u64;
/// A link event's id.
pub type EventId = u64;
/// Microseconds since the Unix epoch (UTC).
pub type Micros = i64;

/// Why a store operation failed. Messages carry no patient data.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store URL is not one the store understands.
    #[error("unsupported identity store url: expected sqlite:// or postgres://")]
    UnsupportedUrl,
    /// The SQLite database file or its directory could not be created.
    #[error("cannot create the identity store file: {0}")]
    CreateFile(std::io::Error),
    /// The database failed or could not be reached.
    #[error("identity store database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed.
    #[error("identity store migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// A stored value could not be read back.
    #[error("identity store holds a corrupt {what}")]
    Corrupt {
        /// Which kind of value.
        what: &'static str,
    },
}

/// Whether the matcher or a person made a link decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LinkSource {
    /// The matcher; may be re-evaluated.
    Auto,
    /// A person; never overridden by automatic matching.
    Manual,
}

/// A master's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MasterState {
    /// In use.
    Active,
    /// Merged into another master, which it redirects to.
    Merged,
}

/// Open or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReviewState {
    /// Awaiting a decision.
    Open,
    /// Decided.
    Resolved,
}

/// How a review item was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReviewOutcome {
    /// Linked to a candidate master.
    Linked,
    /// Confirmed as a person of its own.
    NewMaster,
}

/// What a link event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventType {
    /// A record was linked to the master.
    Linked,
    /// A record left the master.
    Unlinked,
    /// Another master was merged into this one (or this one into another).
    Merged,
    /// A record was detached onto a master of its own.
    Unmerged,
    /// A review item was opened.
    ReviewOpened,
    /// A review item was resolved.
    ReviewResolved,
    /// A linked record's demographics changed.
    RecordUpdated,
}

/// A source record as stored, with its current link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRecord {
    /// Store id.
    pub id: RecordId,
    /// The record's key.
    pub key: SourceKey,
    /// Its demographics as the silo sent them.
    pub demographics: Demographics,
    /// When the silo last changed it, if it said.
    pub source_updated_at: Option<Micros>,
    /// When first stored.
    pub created_at: Micros,
    /// When last changed.
    pub updated_at: Micros,
    /// Its link to a master; every committed record has one.
    pub link: Option<Link>,
}

/// A record's link to its master.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Link {
    /// The record.
    pub record: RecordId,
    /// The master.
    pub master: MasterId,
    /// What the link asserts.
    pub decision: Decision,
    /// Who made it.
    pub link_source: LinkSource,
    /// The match score when it was made.
    pub score: f64,
    /// The weights behind the score.
    pub field_weights: Vec<FieldWeight>,
    /// When created.
    pub created_at: Micros,
    /// When last changed.
    pub updated_at: Micros,
}

/// A link with its record's key, for listings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkWithKey {
    /// The link.
    pub link: Link,
    /// The linked record's key.
    pub key: SourceKey,
}

/// A master as stored.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MasterRow {
    /// Store id.
    pub id: MasterId,
    /// Active or merged.
    pub state: MasterState,
    /// For a merged master, the master it was merged into.
    pub merged_into: Option<MasterId>,
    /// When created.
    pub created_at: Micros,
    /// When its links last changed.
    pub updated_at: Micros,
}

/// A candidate master of a review item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewCandidate {
    /// The candidate.
    pub master: MasterId,
    /// Match score in bits.
    pub score: f64,
    /// Match probability.
    pub probability: f64,
    /// The weights behind the score.
    pub field_weights: Vec<FieldWeight>,
}

/// A review item as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewItem {
    /// Store id.
    pub id: ReviewId,
    /// The record whose match is uncertain.
    pub record: RecordId,
    /// Its key.
    pub key: SourceKey,
    /// The master the record sits on while under review.
    pub master: MasterId,
    /// Candidates, best first.
    pub candidates: Vec<ReviewCandidate>,
    /// Open or resolved.
    pub state: ReviewState,
    /// The decision, once resolved.
    pub outcome: Option<ReviewOutcome>,
    /// Where the record ended, once resolved.
    pub resolved_master: Option<MasterId>,
    /// When opened.
    pub created_at: Micros,
    /// When resolved.
    pub resolved_at: Option<Micros>,
}

/// A link event to append.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// The master whose history it belongs to.
    pub master: MasterId,
    /// What happened.
    pub event_type: EventType,
    /// The record involved.
    pub record: Option<RecordId>,
    /// The other master involved in a move or merge.
    pub other_master: Option<MasterId>,
    /// The decision recorded.
    pub decision: Option<Decision>,
    /// Who decided.
    pub link_source: Option<LinkSource>,
    /// The score, for automatic decisions.
    pub score: f64,
    /// The weights behind the score.
    pub field_weights: Vec<FieldWeight>,
    /// The authenticated caller, for manual decisions.
    pub actor: String,
    /// The mutation's idempotency key.
    pub request_id: String,
}

/// A link event as stored, with its record's key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkEvent {
    /// Store id.
    pub id: EventId,
    /// The event.
    pub event: NewEvent,
    /// The record's key, if a record was involved.
    pub key: Option<SourceKey>,
    /// When it happened.
    pub created_at: Micros,
}

/// A mutation's stored response, for idempotent replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// The method that produced it.
    pub method: String,
    /// A fingerprint of the request, to detect a reused id on another request.
    pub fingerprint: String,
    /// The response, serialized by the caller.
    pub response: String,
}

/// What a link listing selects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkFilter {
    /// Only this master's links.
    pub master: Option<MasterId>,
    /// Only links with this decision.
    pub decision: Option<Decision>,
    /// Only links made this way.
    pub link_source: Option<LinkSource>,
    /// Only records of this source system.
    pub system: Option<String>,
}

/// A page request: items after a position, at most `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Resume after this id (the previous page's last).
    pub after: Option<u64>,
    /// Most items to return.
    pub limit: u32,
}

/// A record with its master, for rebuilding the in-memory index at start.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexEntry {
    /// The record.
    pub record: RecordId,
    /// Its key.
    pub key: SourceKey,
    /// Its master.
    pub master: MasterId,
    /// Its demographics.
    pub demographics: Demographics,
}

/// Reads and transactions over the identity index.
#[async_trait]
pub trait IdentityStore: Send + Sync + 'static {
    /// Starts a transaction; nothing it writes is visible until `commit`.
    async fn begin(&self) -> Result<Box<dyn StoreTx>, StoreError>;

    /// Whether other processes may write to this store. When not, this
    /// process's resolver sees every change and may answer reads from memory.
    fn shared(&self) -> bool;

    /// Every linked record with its key and master, in record order.
    async fn load_index(&self) -> Result<Vec<IndexEntry>, StoreError>;

    /// Every master, with the master it was merged into when merged.
    async fn load_masters(&self) -> Result<Vec<(MasterId, Option<MasterId>)>, StoreError>;

    /// A record by key, with its link.
    async fn record_by_key(&self, key: &SourceKey) -> Result<Option<StoredRecord>, StoreError>;

    /// A master.
    async fn master(&self, id: MasterId) -> Result<Option<MasterRow>, StoreError>;

    /// Every record linked to a master, with its link, in record order.
    async fn master_records(&self, id: MasterId) -> Result<Vec<StoredRecord>, StoreError>;

    /// A master and the keys of its records, in record order, in one query:
    /// what a patient view needs, without demographics or link details. `None`
    /// if there is no such master; a merged master has no records.
    async fn master_keys(
        &self,
        id: MasterId,
    ) -> Result<Option<(MasterRow, Vec<SourceKey>)>, StoreError>;

    /// The master of `key` and the keys of every record linked to it (itself
    /// included), in one query; `None` if `key` is not stored or not linked.
    async fn cluster_keys(
        &self,
        key: &SourceKey,
    ) -> Result<Option<(MasterId, Vec<SourceKey>)>, StoreError>;

    /// The records linked to the same master as `key` (itself included), in one
    /// query; empty if `key` is not stored.
    async fn cluster_of(&self, key: &SourceKey) -> Result<Vec<StoredRecord>, StoreError>;

    /// Links matching `filter`, in record order, one page.
    async fn list_links(
        &self,
        filter: &LinkFilter,
        page: Page,
    ) -> Result<Vec<LinkWithKey>, StoreError>;

    /// Review items in a state (all states if `None`), oldest first, one page,
    /// with the total count in that state.
    async fn list_review_items(
        &self,
        state: Option<ReviewState>,
        page: Page,
    ) -> Result<(Vec<ReviewItem>, u64), StoreError>;

    /// A review item.
    async fn review_item(&self, id: ReviewId) -> Result<Option<ReviewItem>, StoreError>;

    /// A master's link events, newest first; `page.after` resumes below that id.
    async fn list_link_events(
        &self,
        master: MasterId,
        page: Page,
    ) -> Result<Vec<LinkEvent>, StoreError>;

    /// The stored response of a mutation's idempotency key.
    async fn stored_response(&self, request_id: &str)
    -> Result<Option<StoredResponse>, StoreError>;

    /// How many records and masters the store holds.
    async fn counts(&self) -> Result<(u64, u64), StoreError>;

    /// How many review items are open.
    async fn open_review_count(&self) -> Result<u64, StoreError>;
}

/// One transaction's writes (and the reads they depend on).
#[async_trait]
pub trait StoreTx: Send {
    /// A record by key, with its link, as this transaction sees it.
    async fn record_by_key(&mut self, key: &SourceKey) -> Result<Option<StoredRecord>, StoreError>;

    /// Stores a new record; returns its id.
    async fn insert_record(
        &mut self,
        key: &SourceKey,
        demographics: &Demographics,
        source_updated_at: Option<Micros>,
    ) -> Result<RecordId, StoreError>;

    /// Replaces a record's demographics.
    async fn update_record(
        &mut self,
        id: RecordId,
        demographics: &Demographics,
        source_updated_at: Option<Micros>,
    ) -> Result<(), StoreError>;

    /// Creates an active master; returns its id.
    async fn create_master(&mut self) -> Result<MasterId, StoreError>;

    /// Creates or replaces a record's link.
    async fn set_link(&mut self, link: &Link) -> Result<(), StoreError>;

    /// The records linked to a master, as this transaction sees them.
    async fn master_record_ids(&mut self, master: MasterId) -> Result<Vec<RecordId>, StoreError>;

    /// Moves every link of `from` to `to`, making them MANUAL (a person merged
    /// them); returns the moved records.
    async fn move_links(
        &mut self,
        from: MasterId,
        to: MasterId,
    ) -> Result<Vec<RecordId>, StoreError>;

    /// Marks `loser` as merged into `winner`.
    async fn mark_merged(&mut self, loser: MasterId, winner: MasterId) -> Result<(), StoreError>;

    /// Touches a master's update time.
    async fn touch_master(&mut self, id: MasterId) -> Result<(), StoreError>;

    /// Records that `record` is not the person of `master`.
    async fn add_no_match(&mut self, record: RecordId, master: MasterId) -> Result<(), StoreError>;

    /// Forgets a no-match decision (a person linked them after all).
    async fn remove_no_match(
        &mut self,
        record: RecordId,
        master: MasterId,
    ) -> Result<(), StoreError>;

    /// The masters `record` must never be automatically linked to.
    async fn no_match_masters(&mut self, record: RecordId) -> Result<Vec<MasterId>, StoreError>;

    /// Opens a review item; returns its id.
    async fn open_review(
        &mut self,
        record: RecordId,
        master: MasterId,
        candidates: &[ReviewCandidate],
    ) -> Result<ReviewId, StoreError>;

    /// Resolves every open review item of a record (a manual decision settles
    /// them), or one item by id.
    async fn resolve_reviews(
        &mut self,
        record: RecordId,
        outcome: ReviewOutcome,
        master: MasterId,
    ) -> Result<Vec<ReviewId>, StoreError>;

    /// Appends a link event.
    async fn add_event(&mut self, event: &NewEvent) -> Result<EventId, StoreError>;

    /// Saves a mutation's response under its idempotency key.
    async fn save_response(
        &mut self,
        request_id: &str,
        response: &StoredResponse,
    ) -> Result<(), StoreError>;

    /// Makes every write of the transaction visible, atomically.
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;
}

/// Opens the store at `url` (`sqlite://PATH` or `postgres://...`) and applies
/// its migrations.
pub async fn open(url: &str) -> Result<SqlStore, StoreError> {
    SqlStore::open(url).await
}

#[cfg(test)]
mod tests;
