//! Manual decisions: link a record to a master, merge two masters, unmerge a
//! record, and resolve a review item. Each is MANUAL, so automatic matching never
//! overrides it, and each is recorded in the link history with its actor.

use serde::{Deserialize, Serialize};
use tessera_matching::{Decision, FieldWeight, SourceKey};

use super::{Committed, MasterView, Mutation, Resolver, ResolverError, fingerprint, now};
use crate::store::{
    EventType, Link, LinkSource, MasterId, MasterState, NewEvent, RecordId, ReviewId, ReviewItem,
    ReviewOutcome, ReviewState, StoreError, StoreTx, StoredRecord,
};

/// The outcome of a manual link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManualLink {
    /// The link as stored.
    pub link: Link,
    /// The linked record's key.
    pub key: SourceKey,
}

/// The outcome of an unmerge: both masters, golden records rebuilt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unmerged {
    /// The master the record left.
    pub previous: MasterView,
    /// The record's new master.
    pub new: MasterView,
}

/// A review decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReviewDecision {
    /// Link the record to this master.
    Link(MasterId),
    /// The record is a person of its own.
    NewMaster,
}

impl Resolver {
    /// Links a record to a master by hand.
    pub async fn link_record(
        &self,
        key: &SourceKey,
        master: MasterId,
        mutation: &Mutation,
    ) -> Result<ManualLink, ResolverError> {
        const METHOD: &str = "LinkSourceRecord";
        super::invalid_if(key.validate("source_record"))?;
        let print = fingerprint(&(key, master));
        if let Some(replayed) = self.replay(METHOD, mutation, &print).await? {
            return Ok(replayed);
        }
        let _writer = self.writer.lock().await;
        let target = self.active_master(master).await?.id;
        let mut tx = self.store.begin().await?;
        let (record, current) = linked_record(&mut *tx, key).await?;
        let link = Link {
            record: record.id,
            master: target,
            decision: Decision::Match,
            link_source: LinkSource::Manual,
            score: current.score,
            field_weights: current.field_weights.clone(),
            created_at: current.created_at,
            updated_at: now(),
        };
        tx.set_link(&link).await?;
        tx.remove_no_match(record.id, target).await?;
        tx.resolve_reviews(record.id, ReviewOutcome::Linked, target)
            .await?;
        if current.master == target {
            tx.add_event(&manual(
                target,
                EventType::Linked,
                Some(record.id),
                None,
                mutation,
            ))
            .await?;
        } else {
            record_move(&mut *tx, record.id, current.master, target, mutation).await?;
        }
        let outcome = ManualLink {
            link,
            key: key.clone(),
        };
        Self::remember(&mut *tx, METHOD, mutation, &print, &outcome).await?;
        tx.commit().await?;
        self.apply(Committed::Moved {
            record: record.id,
            master: target,
        });
        Ok(outcome)
    }

    /// Merges `loser` into `winner`: every record moves, `loser` redirects.
    pub async fn merge(
        &self,
        winner: MasterId,
        loser: MasterId,
        mutation: &Mutation,
    ) -> Result<MasterView, ResolverError> {
        const METHOD: &str = "MergeMasters";
        let print = fingerprint(&(winner, loser));
        if let Some(replayed) = self.replay(METHOD, mutation, &print).await? {
            return Ok(replayed);
        }
        let _writer = self.writer.lock().await;
        let winner_row = self.store.master(winner).await?;
        let loser_row = self.store.master(loser).await?;
        let (Some(winner_row), Some(loser_row)) = (winner_row, loser_row) else {
            return Err(ResolverError::NotFound { what: "master" });
        };
        if winner == loser {
            return Err(ResolverError::FailedPrecondition {
                reason: "SAME_MASTER",
                message: "a master cannot be merged into itself",
            });
        }
        if winner_row.state != MasterState::Active || loser_row.state != MasterState::Active {
            return Err(ResolverError::FailedPrecondition {
                reason: "MASTER_MERGED",
                message: "both masters must be active; one was already merged",
            });
        }
        let mut tx = self.store.begin().await?;
        let moved = tx.move_links(loser, winner).await?;
        tx.mark_merged(loser, winner).await?;
        tx.add_event(&manual(
            winner,
            EventType::Merged,
            None,
            Some(loser),
            mutation,
        ))
        .await?;
        tx.add_event(&manual(
            loser,
            EventType::Merged,
            None,
            Some(winner),
            mutation,
        ))
        .await?;
        tx.commit().await?;
        self.apply(Committed::Merged {
            loser,
            winner,
            moved: &moved,
        });
        let view = self.master(winner).await?;
        self.remember_after(METHOD, mutation, &print, &view).await?;
        Ok(view)
    }

    /// Detaches a record onto a master of its own, and records that it is not
    /// the person of the master it left.
    pub async fn unmerge(
        &self,
        key: &SourceKey,
        mutation: &Mutation,
    ) -> Result<Unmerged, ResolverError> {
        const METHOD: &str = "UnmergeSourceRecord";
        super::invalid_if(key.validate("source_record"))?;
        let print = fingerprint(key);
        if let Some(replayed) = self.replay(METHOD, mutation, &print).await? {
            return Ok(replayed);
        }
        let _writer = self.writer.lock().await;
        let mut tx = self.store.begin().await?;
        let (record, current) = linked_record(&mut *tx, key).await?;
        if tx.master_record_ids(current.master).await?.len() < 2 {
            return Err(ResolverError::FailedPrecondition {
                reason: "ONLY_RECORD",
                message: "the record is its master's only record; there is nothing to unmerge",
            });
        }
        let new_master = tx.create_master().await?;
        tx.set_link(&Link {
            record: record.id,
            master: new_master,
            decision: Decision::Match,
            link_source: LinkSource::Manual,
            score: 0.0,
            field_weights: Vec::new(),
            created_at: now(),
            updated_at: now(),
        })
        .await?;
        tx.add_no_match(record.id, current.master).await?;
        tx.resolve_reviews(record.id, ReviewOutcome::NewMaster, new_master)
            .await?;
        tx.touch_master(current.master).await?;
        tx.add_event(&manual(
            current.master,
            EventType::Unmerged,
            Some(record.id),
            Some(new_master),
            mutation,
        ))
        .await?;
        tx.add_event(&manual(
            new_master,
            EventType::Linked,
            Some(record.id),
            Some(current.master),
            mutation,
        ))
        .await?;
        tx.commit().await?;
        self.apply(Committed::Moved {
            record: record.id,
            master: new_master,
        });
        let outcome = Unmerged {
            previous: self.master(current.master).await?,
            new: self.master(new_master).await?,
        };
        self.remember_after(METHOD, mutation, &print, &outcome)
            .await?;
        Ok(outcome)
    }

    /// Decides a review item.
    pub async fn resolve_review(
        &self,
        id: ReviewId,
        decision: ReviewDecision,
        mutation: &Mutation,
    ) -> Result<ReviewItem, ResolverError> {
        const METHOD: &str = "ResolveReviewItem";
        let print = fingerprint(&(id, decision));
        if let Some(replayed) = self.replay(METHOD, mutation, &print).await? {
            return Ok(replayed);
        }
        let _writer = self.writer.lock().await;
        let item = self
            .store
            .review_item(id)
            .await?
            .ok_or(ResolverError::NotFound {
                what: "review item",
            })?;
        if item.state == ReviewState::Resolved {
            return Err(ResolverError::FailedPrecondition {
                reason: "REVIEW_RESOLVED",
                message: "the review item is already resolved",
            });
        }
        let mut tx = self.store.begin().await?;
        let record = tx
            .record_by_key(&item.key)
            .await?
            .ok_or(StoreError::Corrupt {
                what: "review record",
            })?;
        let current = record
            .link
            .as_ref()
            .ok_or(StoreError::Corrupt { what: "link" })?;
        let (target, outcome) = match decision {
            ReviewDecision::Link(master) => {
                (self.active_master(master).await?.id, ReviewOutcome::Linked)
            }
            ReviewDecision::NewMaster => (current.master, ReviewOutcome::NewMaster),
        };
        let chosen = item.candidates.iter().find(|c| c.master == target);
        tx.set_link(&Link {
            record: record.id,
            master: target,
            decision: Decision::Match,
            link_source: LinkSource::Manual,
            score: chosen.map_or(current.score, |c| c.score),
            field_weights: chosen.map_or_else(
                || current.field_weights.clone(),
                |c| c.field_weights.clone(),
            ),
            created_at: current.created_at,
            updated_at: now(),
        })
        .await?;
        match decision {
            ReviewDecision::Link(_) => {
                tx.remove_no_match(record.id, target).await?;
                if current.master != target {
                    record_move(&mut *tx, record.id, current.master, target, mutation).await?;
                }
            }
            ReviewDecision::NewMaster => {
                for candidate in &item.candidates {
                    tx.add_no_match(record.id, candidate.master).await?;
                }
            }
        }
        tx.resolve_reviews(record.id, outcome, target).await?;
        tx.add_event(&manual(
            target,
            EventType::ReviewResolved,
            Some(record.id),
            None,
            mutation,
        ))
        .await?;
        tx.commit().await?;
        self.apply(Committed::Moved {
            record: record.id,
            master: target,
        });
        let resolved = self
            .store
            .review_item(id)
            .await?
            .ok_or(StoreError::Corrupt {
                what: "review item",
            })?;
        self.remember_after(METHOD, mutation, &print, &resolved)
            .await?;
        Ok(resolved)
    }

    /// Saves an outcome computed after its transaction committed. The mutation is
    /// already durable; a crash before this only loses the replay record, so a
    /// retry fails its precondition check instead of acting twice.
    async fn remember_after<T: Serialize>(
        &self,
        method: &str,
        mutation: &Mutation,
        print: &str,
        outcome: &T,
    ) -> Result<(), ResolverError> {
        if mutation.request_id.is_empty() {
            return Ok(());
        }
        let mut tx = self.store.begin().await?;
        Self::remember(&mut *tx, method, mutation, print, outcome).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// A stored record and its link, as the transaction sees them.
async fn linked_record(
    tx: &mut dyn StoreTx,
    key: &SourceKey,
) -> Result<(StoredRecord, Link), ResolverError> {
    let record = tx
        .record_by_key(key)
        .await?
        .ok_or(ResolverError::NotFound {
            what: "source record",
        })?;
    let link = record
        .link
        .clone()
        .ok_or(StoreError::Corrupt { what: "link" })?;
    Ok((record, link))
}

/// Records a manual move of `record` from one master to another in both
/// masters' histories.
async fn record_move(
    tx: &mut dyn StoreTx,
    record: RecordId,
    from: MasterId,
    to: MasterId,
    mutation: &Mutation,
) -> Result<(), ResolverError> {
    tx.add_event(&manual(
        from,
        EventType::Unlinked,
        Some(record),
        Some(to),
        mutation,
    ))
    .await?;
    tx.add_event(&manual(
        to,
        EventType::Linked,
        Some(record),
        Some(from),
        mutation,
    ))
    .await?;
    Ok(())
}

/// A manual link event.
fn manual(
    master: MasterId,
    event_type: EventType,
    record: Option<RecordId>,
    other_master: Option<MasterId>,
    mutation: &Mutation,
) -> NewEvent {
    NewEvent {
        master,
        event_type,
        record,
        other_master,
        decision: Some(Decision::Match),
        link_source: Some(LinkSource::Manual),
        score: 0.0,
        field_weights: Vec::<FieldWeight>::new(),
        actor: mutation.actor.clone(),
        request_id: mutation.request_id.clone(),
    }
}
