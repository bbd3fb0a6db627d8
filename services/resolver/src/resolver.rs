//! [`Resolver`]: the identity workflow over the store and the in-memory matching
//! index. Reads go to the store (or the index, for matching; or the directory,
//! for a view's identity lookup when this process is the store's one writer);
//! every mutation is one store transaction, serialized by a writer lock, and the
//! index and directory follow only after the transaction commits, so a failed
//! write never leaves them ahead of the store. At start both are rebuilt from
//! the store.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tessera_matching::{
    Candidate, Decision, Demographics, FieldViolation, FieldWeight, Index, MatchConfig, MatchGrade,
    Model, RecordLimits, SourceKey,
};
use tokio::sync::Mutex;

use crate::directory::{Directory, DirectoryMiss};
use crate::golden::{self, GoldenRecord};
use crate::store::{
    IdentityStore, LinkEvent, LinkFilter, LinkWithKey, MasterId, MasterRow, MasterState, Micros,
    Page, RecordId, ReviewId, ReviewItem, ReviewState, StoreError, StoreTx, StoredRecord,
    StoredResponse,
};

mod manual;
mod upsert;

pub use manual::{ManualLink, ReviewDecision, Unmerged};
pub use upsert::{UpsertInput, UpsertOutcome};

/// Longest chain of merge redirects followed before giving up.
const MAX_REDIRECTS: usize = 64;

/// How the resolver decides and builds golden records.
#[derive(Debug, Clone, Default)]
pub struct ResolverConfig {
    /// Matching thresholds and bounds.
    pub matching: MatchConfig,
    /// Source systems by trust, most trusted first, for golden-record survivorship.
    pub source_priority: Vec<String>,
    /// How much one record may hold; a record over a limit is refused.
    pub limits: RecordLimits,
}

/// Why a resolver operation failed. Messages carry no patient data.
#[derive(Debug, thiserror::Error)]
pub enum ResolverError {
    /// The request is malformed; each violation names a field.
    #[error("invalid request: {}", describe(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// The named thing does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked up (`source record`, `master`, `review item`).
        what: &'static str,
    },
    /// The operation does not apply to the current state.
    #[error("{message}")]
    FailedPrecondition {
        /// A stable UPPER_SNAKE_CASE reason.
        reason: &'static str,
        /// What is wrong.
        message: &'static str,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn describe(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{} {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A record's master and every record linked to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution {
    /// The master.
    pub master: MasterId,
    /// Every linked record, the resolved one included.
    pub records: Vec<StoredRecord>,
}

/// A master with its linked records and golden record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MasterView {
    /// The master (after following merge redirects).
    pub master: MasterRow,
    /// How many records are linked to it.
    pub record_count: usize,
    /// The golden record with provenance.
    pub golden: GoldenRecord,
}

/// Who asks for a mutation, and its idempotency key.
#[derive(Debug, Clone, Default)]
pub struct Mutation {
    /// The authenticated caller (recorded on manual decisions).
    pub actor: String,
    /// The idempotency key; empty means none.
    pub request_id: String,
}

/// A change the store has committed, for the in-memory structures to follow.
enum Committed<'a> {
    /// A record was written and linked to `master` (new, or moved by an upsert).
    Placed {
        record: RecordId,
        key: &'a SourceKey,
        master: MasterId,
        demographics: &'a Demographics,
    },
    /// A record's link moved to `master`.
    Moved { record: RecordId, master: MasterId },
    /// `loser` was merged into `winner`, whose new records are `moved`.
    Merged {
        loser: MasterId,
        winner: MasterId,
        moved: &'a [RecordId],
    },
}

fn miss_error(miss: DirectoryMiss, what: &'static str) -> ResolverError {
    match miss {
        DirectoryMiss::NotFound => ResolverError::NotFound { what },
        DirectoryMiss::LongChain => StoreError::Corrupt {
            what: "merge chain",
        }
        .into(),
    }
}

/// The identity workflow.
pub struct Resolver {
    store: Arc<dyn IdentityStore>,
    index: RwLock<Index>,
    /// Masters' records in memory, when the store has no other writer.
    directory: Option<RwLock<Directory>>,
    writer: Mutex<()>,
    config: ResolverConfig,
    /// Bumped after every committed change to links, so readers can tell
    /// whether what they cached is still current.
    generation: AtomicU64,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver").finish_non_exhaustive()
    }
}

impl Resolver {
    /// Opens the resolver: rebuilds the matching index from the store.
    pub async fn open(
        store: Arc<dyn IdentityStore>,
        model: Arc<Model>,
        config: ResolverConfig,
    ) -> Result<Self, ResolverError> {
        let entries = store.load_index().await?;
        let mut index = Index::new(model, config.matching.clone());
        for entry in &entries {
            index.upsert(entry.record, entry.master, &entry.demographics);
        }
        let directory = if store.shared() {
            None
        } else {
            let masters = store.load_masters().await?;
            Some(RwLock::new(Directory::load(&entries, &masters)))
        };
        tracing::info!(records = entries.len(), "identity index loaded");
        Ok(Self {
            store,
            index: RwLock::new(index),
            directory,
            writer: Mutex::new(()),
            config,
            generation: AtomicU64::new(0),
        })
    }

    /// How many records the matching index holds, and the approximate size of
    /// the index and the directory together.
    pub fn index_stats(&self) -> (usize, usize) {
        let directory = self
            .with_directory(Directory::approx_memory_bytes)
            .unwrap_or(0);
        self.with_index(|index| (index.len(), index.approx_memory_bytes() + directory))
    }

    /// Whether identity lookups ([`Self::master_records`], [`Self::cluster_keys`])
    /// are answered from memory, current with every committed change; when not,
    /// they query a store other processes may also change.
    pub fn lookups_in_memory(&self) -> bool {
        self.directory.is_some()
    }

    /// Blocking and scoring against the in-memory index, as one span
    /// (`resolver.candidates`, with how many blocks were oversized and how many
    /// candidates came back; never the demographics).
    fn candidates(
        &self,
        demographics: &Demographics,
        exclude: Option<tessera_matching::RecordId>,
    ) -> tessera_matching::Candidates {
        let span = tracing::info_span!(
            target: "tessera::resolver",
            "resolver.candidates",
            tessera.candidates = tracing::field::Empty,
        );
        let _entered = span.enter();
        let candidates = self.with_index(|index| index.candidates(demographics, exclude));
        span.record("tessera.candidates", candidates.ranked.len());
        candidates
    }

    fn with_index<T>(&self, f: impl FnOnce(&Index) -> T) -> T {
        // A poisoned lock means a panic mid-update elsewhere; the index data is
        // still usable for reads.
        let guard = self
            .index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&guard)
    }

    /// Applies a committed change to the index and the directory, and bumps
    /// the generation.
    fn apply(&self, change: Committed<'_>) {
        {
            let mut index = self
                .index
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match &change {
                Committed::Placed {
                    record,
                    master,
                    demographics,
                    ..
                } => index.upsert(*record, *master, demographics),
                Committed::Moved { record, master } => index.set_master(*record, *master),
                Committed::Merged { winner, moved, .. } => {
                    for record in *moved {
                        index.set_master(*record, *winner);
                    }
                }
            }
        }
        if let Some(directory) = &self.directory {
            let mut directory = directory
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match change {
                Committed::Placed {
                    record,
                    key,
                    master,
                    ..
                } => directory.place(record, key, master),
                Committed::Moved { record, master } => directory.move_record(record, master),
                Committed::Merged { loser, winner, .. } => directory.merge(loser, winner),
            }
        }
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn with_directory<T>(&self, f: impl FnOnce(&Directory) -> T) -> Option<T> {
        self.directory
            .as_ref()
            .map(|d| f(&d.read().unwrap_or_else(std::sync::PoisonError::into_inner)))
    }

    /// A counter bumped after every committed change to records and links in
    /// this process. Read it before reading identities to cache them; the cache
    /// entry is current while the counter has not moved.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Resolves a source record to its master and every record linked to it.
    pub async fn resolve(&self, key: &SourceKey) -> Result<Resolution, ResolverError> {
        invalid_if(key.validate("source_record"))?;
        let records = self.store.cluster_of(key).await?;
        let master = records
            .iter()
            .find(|r| r.key == *key)
            .ok_or(ResolverError::NotFound {
                what: "source record",
            })?
            .link
            .as_ref()
            .map(|l| l.master)
            .ok_or(StoreError::Corrupt { what: "link" })?;
        Ok(Resolution { master, records })
    }

    /// Scores demographics against the index without writing: ranked candidate
    /// masters graded at least `min_grade`, at most `max`.
    pub fn match_demographics(
        &self,
        demographics: &Demographics,
        max: usize,
        min_grade: MatchGrade,
    ) -> Result<Vec<Candidate>, ResolverError> {
        invalid_if(demographics.validate_within(&self.config.limits, "demographics"))?;
        let candidates = self.candidates(demographics, None);
        Ok(candidates
            .ranked
            .into_iter()
            .filter(|c| grade_rank(c.grade) >= grade_rank(min_grade))
            .take(max)
            .collect())
    }

    /// A master with its golden record, following merge redirects.
    pub async fn master(&self, id: MasterId) -> Result<MasterView, ResolverError> {
        let row = self.active_master(id).await?;
        self.master_view(row).await
    }

    async fn master_view(&self, row: MasterRow) -> Result<MasterView, ResolverError> {
        let records = self.store.master_records(row.id).await?;
        Ok(MasterView {
            master: row,
            record_count: records.len(),
            golden: golden::build(&records, &self.config.source_priority),
        })
    }

    /// A master as one caller may see it, following merge redirects: the golden record
    /// and the record count derived only from the linked records whose keys `visible`
    /// admits, and the keys of every linked record (to tell what was left out).
    pub async fn master_visible(
        &self,
        id: MasterId,
        visible: impl Fn(&SourceKey) -> bool + Send,
    ) -> Result<(MasterView, Vec<SourceKey>), ResolverError> {
        let row = self.active_master(id).await?;
        let records = self.store.master_records(row.id).await?;
        let keys = records.iter().map(|r| r.key.clone()).collect();
        let seen: Vec<StoredRecord> = records.into_iter().filter(|r| visible(&r.key)).collect();
        let view = MasterView {
            master: row,
            record_count: seen.len(),
            golden: golden::build(&seen, &self.config.source_priority),
        };
        Ok((view, keys))
    }

    /// The keys of a master's records, following merge redirects: the active
    /// master and its records' keys.
    pub async fn master_records(
        &self,
        id: MasterId,
    ) -> Result<(MasterId, Vec<SourceKey>), ResolverError> {
        if let Some(found) = self.with_directory(|d| d.master_keys(id, MAX_REDIRECTS)) {
            return found.map_err(|miss| miss_error(miss, "master"));
        }
        // One query per hop: usually the master is active and there is one.
        let mut current = id;
        for _ in 0..MAX_REDIRECTS {
            let (row, keys) = self
                .store
                .master_keys(current)
                .await?
                .ok_or(ResolverError::NotFound { what: "master" })?;
            match (row.state, row.merged_into) {
                (MasterState::Merged, Some(next)) => current = next,
                _ => return Ok((row.id, keys)),
            }
        }
        Err(StoreError::Corrupt {
            what: "merge chain",
        }
        .into())
    }

    /// The master of a source record and the keys of every record linked to
    /// it, in one query.
    pub async fn cluster_keys(
        &self,
        key: &SourceKey,
    ) -> Result<(MasterId, Vec<SourceKey>), ResolverError> {
        invalid_if(key.validate("source_record"))?;
        if let Some(found) = self.with_directory(|d| d.cluster_keys(key)) {
            return found.map_err(|miss| miss_error(miss, "source record"));
        }
        self.store
            .cluster_keys(key)
            .await?
            .ok_or(ResolverError::NotFound {
                what: "source record",
            })
    }

    /// The active master `id` is or was merged into.
    async fn active_master(&self, id: MasterId) -> Result<MasterRow, ResolverError> {
        let mut current = id;
        for _ in 0..MAX_REDIRECTS {
            let row = self
                .store
                .master(current)
                .await?
                .ok_or(ResolverError::NotFound { what: "master" })?;
            match (row.state, row.merged_into) {
                (MasterState::Merged, Some(next)) => current = next,
                _ => return Ok(row),
            }
        }
        Err(StoreError::Corrupt {
            what: "merge chain",
        }
        .into())
    }

    /// Links matching `filter`, one page.
    pub async fn list_links(
        &self,
        filter: &LinkFilter,
        page: Page,
    ) -> Result<Vec<LinkWithKey>, ResolverError> {
        Ok(self.store.list_links(filter, page).await?)
    }

    /// One review item.
    pub async fn review_item(&self, id: ReviewId) -> Result<ReviewItem, ResolverError> {
        self.store
            .review_item(id)
            .await?
            .ok_or(ResolverError::NotFound {
                what: "review item",
            })
    }

    /// Review items in a state, one page, with the total in that state.
    pub async fn list_review_items(
        &self,
        state: Option<ReviewState>,
        page: Page,
    ) -> Result<(Vec<ReviewItem>, u64), ResolverError> {
        Ok(self.store.list_review_items(state, page).await?)
    }

    /// A master's link history, newest first, one page.
    pub async fn list_link_events(
        &self,
        master: MasterId,
        page: Page,
    ) -> Result<Vec<LinkEvent>, ResolverError> {
        if self.store.master(master).await?.is_none() {
            return Err(ResolverError::NotFound { what: "master" });
        }
        Ok(self.store.list_link_events(master, page).await?)
    }

    /// How many review items are open (the review queue).
    pub async fn open_review_count(&self) -> Result<u64, ResolverError> {
        Ok(self.store.open_review_count().await?)
    }

    /// How many records and active masters the store holds.
    pub async fn counts(&self) -> Result<(u64, u64), ResolverError> {
        Ok(self.store.counts().await?)
    }

    /// The stored outcome of an earlier call with this idempotency key, if any.
    /// A key reused for a different request is an error.
    async fn replay<T: DeserializeOwned>(
        &self,
        method: &str,
        mutation: &Mutation,
        fingerprint: &str,
    ) -> Result<Option<T>, ResolverError> {
        if mutation.request_id.is_empty() {
            return Ok(None);
        }
        let Some(stored) = self.store.stored_response(&mutation.request_id).await? else {
            return Ok(None);
        };
        if stored.method != method || stored.fingerprint != fingerprint {
            return Err(ResolverError::InvalidArgument(vec![FieldViolation::new(
                "request_id",
                "was already used for a different request",
            )]));
        }
        serde_json::from_str(&stored.response)
            .map(Some)
            .map_err(|_| {
                StoreError::Corrupt {
                    what: "stored response",
                }
                .into()
            })
    }

    /// Saves an outcome under its idempotency key, in the mutation's transaction.
    async fn remember<T: Serialize>(
        tx: &mut dyn StoreTx,
        method: &str,
        mutation: &Mutation,
        fingerprint: &str,
        outcome: &T,
    ) -> Result<(), ResolverError> {
        if mutation.request_id.is_empty() {
            return Ok(());
        }
        let response = StoredResponse {
            method: method.to_owned(),
            fingerprint: fingerprint.to_owned(),
            response: serde_json::to_string(outcome)
                .map_err(|_| StoreError::Corrupt { what: "response" })?,
        };
        tx.save_response(&mutation.request_id, &response).await?;
        Ok(())
    }
}

/// Ranks grades for filtering: higher is better.
fn grade_rank(grade: MatchGrade) -> u8 {
    match grade {
        MatchGrade::CertainlyNot => 0,
        MatchGrade::Possible => 1,
        MatchGrade::Probable => 2,
        MatchGrade::Certain => 3,
    }
}

fn invalid_if(violations: Vec<FieldViolation>) -> Result<(), ResolverError> {
    if violations.is_empty() {
        Ok(())
    } else {
        Err(ResolverError::InvalidArgument(violations))
    }
}

/// A stable fingerprint of a request (FNV-1a over its JSON), to tell a replay
/// from a reused idempotency key. Stable across builds, unlike std's hasher.
fn fingerprint<T: Serialize>(request: &T) -> String {
    let bytes = serde_json::to_vec(request).unwrap_or_default();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// The best candidate a record may be automatically linked to: ranked candidates
/// minus the masters a person said it is not.
fn allowed(candidates: Vec<Candidate>, forbidden: &HashSet<MasterId>) -> Vec<Candidate> {
    candidates
        .into_iter()
        .filter(|c| !forbidden.contains(&c.master))
        .collect()
}

/// Score and weights of the best candidate, or zero and none.
fn best_score(candidates: &[Candidate]) -> (f64, Vec<FieldWeight>) {
    candidates
        .first()
        .map_or((0.0, Vec::new()), |c| (c.score, c.field_weights.clone()))
}

/// The decision for the best candidate, NO_MATCH without one.
fn best_decision(candidates: &[Candidate]) -> Decision {
    candidates.first().map_or(Decision::NoMatch, |c| c.decision)
}

/// A timestamp for links created now.
fn now() -> Micros {
    crate::store::now_micros()
}

#[cfg(test)]
mod tests;
