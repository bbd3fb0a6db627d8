//! Upsert: store a source record's demographics and match it.
//!
//! A new record is linked to the best candidate master on MATCH, put on a master
//! of its own with a review item on POSSIBLE_MATCH (or when two masters both
//! match), or given a new master on NO_MATCH. An update keeps a MANUAL link whatever the score; an AUTO link moves
//! only when another master now matches and the current one no longer does, and
//! a record that no longer matches the rest of its cluster is detached.

use std::collections::HashSet;

use opentelemetry::KeyValue;
use serde::{Deserialize, Serialize};
use tessera_matching::{Candidate, Decision, Demographics, FieldWeight, SourceKey};
use tracing::Instrument;

use super::{
    Committed, Mutation, Resolver, ResolverError, allowed, best_decision, best_score, fingerprint,
    invalid_if, now,
};
use crate::store::{
    EventType, Link, LinkSource, MasterId, Micros, NewEvent, RecordId, ReviewCandidate, ReviewId,
    StoreTx, StoredRecord,
};

const METHOD: &str = "UpsertSourceRecord";
/// Most candidates kept on a review item.
const REVIEW_CANDIDATES: usize = 5;

/// A source record to create or update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpsertInput {
    /// The record's key.
    pub key: SourceKey,
    /// Its demographics.
    pub demographics: Demographics,
    /// When the silo last changed it, if it says.
    pub source_updated_at: Option<Micros>,
    /// Score and decide, but write nothing.
    pub validate_only: bool,
}

/// What an upsert did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpsertOutcome {
    /// The record as stored (id 0 when `validate_only`).
    pub record: RecordId,
    /// The record's key.
    pub key: SourceKey,
    /// The demographics as stored.
    pub demographics: Demographics,
    /// When first stored.
    pub created_at: Micros,
    /// When last changed.
    pub updated_at: Micros,
    /// The match decision.
    pub decision: Decision,
    /// The master the record is linked to afterwards (for `validate_only`, the
    /// master it would join on MATCH, else none).
    pub master: Option<MasterId>,
    /// The best candidate's score.
    pub score: f64,
    /// The weights behind the score.
    pub field_weights: Vec<FieldWeight>,
    /// The review item opened for a POSSIBLE_MATCH.
    pub review_item: Option<ReviewId>,
    /// The record's MANUAL link was kept as a person decided it.
    pub manual_link_kept: bool,
}

/// The link a record ends with, and the events that say how it got there.
struct Placement {
    master: MasterId,
    decision: Decision,
    source: LinkSource,
    score: f64,
    weights: Vec<FieldWeight>,
    events: Vec<NewEvent>,
    review: Option<Vec<ReviewCandidate>>,
}

impl Resolver {
    /// Creates or updates a source record and matches it. Traced as
    /// `resolver.upsert` (its decision and link kind), with the candidate search
    /// and the store's commit as child spans.
    #[tracing::instrument(
        name = "resolver.upsert",
        target = "tessera::resolver",
        skip_all,
        fields(tessera.decision = tracing::field::Empty, tessera.link = tracing::field::Empty)
    )]
    pub async fn upsert(
        &self,
        input: UpsertInput,
        mutation: &Mutation,
    ) -> Result<UpsertOutcome, ResolverError> {
        let mut violations = input.key.validate("source_record.key");
        violations.extend(
            input
                .demographics
                .validate_within(&self.config.limits, "source_record.demographics"),
        );
        invalid_if(violations)?;
        let print = fingerprint(&input);
        if let Some(replayed) = self.replay(METHOD, mutation, &print).await? {
            return Ok(replayed);
        }
        if input.validate_only {
            return self.dry_run(&input).await;
        }

        let _writer = self.writer.lock().await;
        // A concurrent call with the same key may have finished while we waited.
        if let Some(replayed) = self.replay(METHOD, mutation, &print).await? {
            return Ok(replayed);
        }
        let mut tx = self.store.begin().await?;
        let existing = tx.record_by_key(&input.key).await?;
        let forbidden: HashSet<MasterId> = match &existing {
            Some(record) => tx.no_match_masters(record.id).await?.into_iter().collect(),
            None => HashSet::new(),
        };
        let exclude = existing.as_ref().map(|r| r.id);
        let ranked = self.candidates(&input.demographics, exclude).ranked;
        let candidates = allowed(ranked, &forbidden);

        let record = match &existing {
            Some(record) => {
                tx.update_record(record.id, &input.demographics, input.source_updated_at)
                    .await?;
                record.id
            }
            None => {
                tx.insert_record(&input.key, &input.demographics, input.source_updated_at)
                    .await?
            }
        };
        let mut placement = self
            .place(
                &mut *tx,
                existing.as_ref(),
                record,
                &input.demographics,
                &candidates,
                mutation,
            )
            .await?;
        let now = now();
        let review_item =
            write_placement(&mut *tx, existing.as_ref(), record, &mut placement, now).await?;
        let (score, field_weights) = best_score(&candidates);
        let outcome = UpsertOutcome {
            record,
            key: input.key.clone(),
            demographics: input.demographics.clone(),
            created_at: existing.as_ref().map_or(now, |r| r.created_at),
            updated_at: now,
            decision: placement.decision,
            master: Some(placement.master),
            score: if placement.source == LinkSource::Manual {
                placement.score
            } else {
                score
            },
            field_weights: if placement.source == LinkSource::Manual {
                placement.weights.clone()
            } else {
                field_weights
            },
            review_item,
            manual_link_kept: placement.source == LinkSource::Manual && existing.is_some(),
        };
        Self::remember(&mut *tx, METHOD, mutation, &print, &outcome).await?;
        tx.commit()
            .instrument(tracing::info_span!(
                target: "tessera::resolver",
                "resolver.commit"
            ))
            .await?;
        self.apply(Committed::Placed {
            record,
            key: &input.key,
            master: placement.master,
            demographics: &input.demographics,
        });
        record_decision(outcome.decision, placement.source);
        tracing::debug!(decision = ?outcome.decision, "source record upserted");
        Ok(outcome)
    }

    /// Where an upserted record goes: a MANUAL link stays as a person decided
    /// it, an automatic one is re-decided, a new record is placed.
    async fn place(
        &self,
        tx: &mut dyn StoreTx,
        existing: Option<&StoredRecord>,
        record: RecordId,
        demographics: &Demographics,
        candidates: &[Candidate],
        mutation: &Mutation,
    ) -> Result<Placement, ResolverError> {
        Ok(
            match existing.and_then(|r| r.link.as_ref().map(|l| (r, l))) {
                Some((_, link)) if link.link_source == LinkSource::Manual => Placement {
                    master: link.master,
                    decision: link.decision,
                    source: LinkSource::Manual,
                    score: link.score,
                    weights: link.field_weights.clone(),
                    events: vec![event(
                        link.master,
                        EventType::RecordUpdated,
                        record,
                        None,
                        mutation,
                    )],
                    review: None,
                },
                Some((stored, link)) => {
                    self.replace_auto(tx, stored, demographics, link, candidates, mutation)
                        .await?
                }
                None => place_new(tx, record, candidates, mutation).await?,
            },
        )
    }

    /// Scores without writing: the decision an upsert would make for a new record
    /// (an existing record is not scored against itself).
    async fn dry_run(&self, input: &UpsertInput) -> Result<UpsertOutcome, ResolverError> {
        let existing = self.store.record_by_key(&input.key).await?.map(|r| r.id);
        let ranked = self.candidates(&input.demographics, existing).ranked;
        let (score, field_weights) = best_score(&ranked);
        let matches = ranked
            .iter()
            .filter(|c| c.decision == Decision::Match)
            .count();
        let (decision, master) = match ranked.first() {
            Some(best) if matches == 1 && best.decision == Decision::Match => {
                (Decision::Match, Some(best.master))
            }
            Some(_) if matches > 1 => (Decision::PossibleMatch, None),
            _ => (best_decision(&ranked), None),
        };
        Ok(UpsertOutcome {
            record: existing.unwrap_or(0),
            key: input.key.clone(),
            demographics: input.demographics.clone(),
            created_at: 0,
            updated_at: 0,
            decision,
            master,
            score,
            field_weights,
            review_item: None,
            manual_link_kept: false,
        })
    }

    /// Whether any record of `target` was manually declared not to be the person
    /// of `master`.
    async fn kept_apart(
        &self,
        tx: &mut dyn StoreTx,
        target: MasterId,
        master: MasterId,
    ) -> Result<bool, ResolverError> {
        for record in tx.master_record_ids(target).await? {
            if tx.no_match_masters(record).await?.contains(&master) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Re-evaluates an AUTO-linked record sent again. Unchanged demographics keep
    /// their link; changed ones may move it or detach it.
    async fn replace_auto(
        &self,
        tx: &mut dyn StoreTx,
        stored: &StoredRecord,
        demographics: &Demographics,
        link: &Link,
        candidates: &[Candidate],
        mutation: &Mutation,
    ) -> Result<Placement, ResolverError> {
        let current = link.master;
        let against_current = candidates.iter().find(|c| c.master == current);
        let cluster_size = tx.master_record_ids(current).await?.len();
        let unchanged = stored.demographics == *demographics;
        let best = candidates
            .first()
            .filter(|b| !unchanged && b.decision == Decision::Match && b.master != current);
        let best = match best {
            // A person said the target's records are not the current master's
            // person: moving there would undo that decision.
            Some(b) if self.kept_apart(tx, b.master, current).await? => None,
            other => other,
        };

        // Another master matches and the current cluster no longer does: move.
        if let Some(best) =
            best.filter(|_| against_current.is_none_or(|c| c.decision != Decision::Match))
        {
            return Ok(Placement {
                master: best.master,
                decision: Decision::Match,
                source: LinkSource::Auto,
                score: best.score,
                weights: best.field_weights.clone(),
                events: vec![
                    event(
                        current,
                        EventType::Unlinked,
                        stored.id,
                        Some(best.master),
                        mutation,
                    ),
                    event(
                        best.master,
                        EventType::Linked,
                        stored.id,
                        Some(current),
                        mutation,
                    ),
                ],
                review: None,
            });
        }
        // It shares its master with others but no longer matches them: detach.
        if !unchanged
            && cluster_size > 1
            && against_current.is_none_or(|c| c.decision == Decision::NoMatch)
        {
            let master = tx.create_master().await?;
            return Ok(Placement {
                master,
                decision: Decision::NoMatch,
                source: LinkSource::Auto,
                score: against_current.map_or(0.0, |c| c.score),
                weights: against_current
                    .map(|c| c.field_weights.clone())
                    .unwrap_or_default(),
                events: vec![
                    event(
                        current,
                        EventType::Unlinked,
                        stored.id,
                        Some(master),
                        mutation,
                    ),
                    event(
                        master,
                        EventType::Linked,
                        stored.id,
                        Some(current),
                        mutation,
                    ),
                ],
                review: None,
            });
        }
        // Otherwise it stays where it is, with a fresh score.
        let (score, weights) = against_current
            .map_or((link.score, link.field_weights.clone()), |c| {
                (c.score, c.field_weights.clone())
            });
        Ok(Placement {
            master: current,
            decision: link.decision,
            source: LinkSource::Auto,
            score,
            weights,
            events: vec![event(
                current,
                EventType::RecordUpdated,
                stored.id,
                None,
                mutation,
            )],
            review: None,
        })
    }
}

/// Places a record the index has never seen.
/// Writes a placement: the record's link, its review item if one opens, and
/// its events. Returns the review item.
async fn write_placement(
    tx: &mut dyn StoreTx,
    existing: Option<&StoredRecord>,
    record: RecordId,
    placement: &mut Placement,
    now: Micros,
) -> Result<Option<ReviewId>, ResolverError> {
    let created_at = existing
        .and_then(|r| r.link.as_ref())
        .map_or(now, |l| l.created_at);
    tx.set_link(&Link {
        record,
        master: placement.master,
        decision: placement.decision,
        link_source: placement.source,
        score: placement.score,
        field_weights: placement.weights.clone(),
        created_at,
        updated_at: now,
    })
    .await?;
    let review = match &placement.review {
        Some(review) => Some(tx.open_review(record, placement.master, review).await?),
        None => None,
    };
    for mut e in std::mem::take(&mut placement.events) {
        e.record = Some(record);
        e.decision = Some(placement.decision);
        e.link_source = Some(placement.source);
        e.score = placement.score;
        e.field_weights.clone_from(&placement.weights);
        tx.add_event(&e).await?;
    }
    Ok(review)
}

/// Records an upsert's decision on its span and in the decisions metric.
fn record_decision(decision: Decision, source: LinkSource) {
    let decision = match decision {
        Decision::Match => "match",
        Decision::PossibleMatch => "possible_match",
        Decision::NoMatch => "no_match",
    };
    let link = if source == LinkSource::Manual {
        "manual"
    } else {
        "auto"
    };
    let span = tracing::Span::current();
    span.record("tessera.decision", decision);
    span.record("tessera.link", link);
    decisions().add(
        1,
        &[
            KeyValue::new("outcome", decision),
            KeyValue::new("link", link),
        ],
    );
}

async fn place_new(
    tx: &mut dyn StoreTx,
    record: RecordId,
    candidates: &[Candidate],
    mutation: &Mutation,
) -> Result<Placement, ResolverError> {
    let (score, weights) = best_score(candidates);
    // Two masters that both match are an ambiguity (often two records a person
    // kept apart): a person decides, rather than the matcher picking one.
    let ambiguous = candidates
        .iter()
        .filter(|c| c.decision == Decision::Match)
        .count()
        > 1;
    match candidates.first() {
        Some(best) if best.decision == Decision::Match && !ambiguous => Ok(Placement {
            master: best.master,
            decision: Decision::Match,
            source: LinkSource::Auto,
            score,
            weights,
            events: vec![event(
                best.master,
                EventType::Linked,
                record,
                None,
                mutation,
            )],
            review: None,
        }),
        Some(best) if best.decision != Decision::NoMatch => {
            let master = tx.create_master().await?;
            let review = candidates
                .iter()
                .filter(|c| c.decision != Decision::NoMatch)
                .take(REVIEW_CANDIDATES)
                .map(|c| ReviewCandidate {
                    master: c.master,
                    score: c.score,
                    probability: c.probability,
                    field_weights: c.field_weights.clone(),
                })
                .collect();
            Ok(Placement {
                master,
                decision: Decision::PossibleMatch,
                source: LinkSource::Auto,
                score,
                weights,
                events: vec![
                    event(master, EventType::Linked, record, None, mutation),
                    event(
                        master,
                        EventType::ReviewOpened,
                        record,
                        Some(best.master),
                        mutation,
                    ),
                ],
                review: Some(review),
            })
        }
        _ => {
            let master = tx.create_master().await?;
            Ok(Placement {
                master,
                decision: Decision::NoMatch,
                source: LinkSource::Auto,
                score,
                weights,
                events: vec![event(master, EventType::Linked, record, None, mutation)],
                review: None,
            })
        }
    }
}

/// An automatic link event; score and weights are filled in by the caller.
fn event(
    master: MasterId,
    event_type: EventType,
    record: RecordId,
    other_master: Option<MasterId>,
    mutation: &Mutation,
) -> NewEvent {
    NewEvent {
        master,
        event_type,
        record: Some(record),
        other_master,
        decision: None,
        link_source: Some(LinkSource::Auto),
        score: 0.0,
        field_weights: Vec::new(),
        actor: mutation.actor.clone(),
        request_id: mutation.request_id.clone(),
    }
}

/// `tessera.resolver.decisions`: upserts by match outcome and link source.
fn decisions() -> &'static opentelemetry::metrics::Counter<u64> {
    static COUNTER: std::sync::OnceLock<opentelemetry::metrics::Counter<u64>> =
        std::sync::OnceLock::new();
    COUNTER.get_or_init(|| {
        opentelemetry::global::meter("tessera")
            .u64_counter("tessera.resolver.decisions")
            .with_description("Source records placed, by match outcome and link source")
            .build()
    })
}
