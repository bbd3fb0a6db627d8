//! Rows and enum columns decoded into the store's types, and back.

use sqlx::Row;
use sqlx::any::AnyRow;
use tessera_matching::{Decision, FieldWeight, SourceKey};

use crate::store::{
    EventType, Link, LinkEvent, LinkSource, MasterRow, MasterState, NewEvent, ReviewCandidate,
    ReviewItem, ReviewOutcome, ReviewState, StoreError, StoredRecord,
};

use super::{from_json, uid};

pub(super) fn decision_str(d: Decision) -> &'static str {
    match d {
        Decision::Match => "MATCH",
        Decision::PossibleMatch => "POSSIBLE_MATCH",
        Decision::NoMatch => "NO_MATCH",
    }
}

pub(super) fn parse_decision(s: &str) -> Result<Decision, StoreError> {
    match s {
        "MATCH" => Ok(Decision::Match),
        "POSSIBLE_MATCH" => Ok(Decision::PossibleMatch),
        "NO_MATCH" => Ok(Decision::NoMatch),
        _ => Err(StoreError::Corrupt { what: "decision" }),
    }
}

pub(super) fn link_source_str(s: LinkSource) -> &'static str {
    match s {
        LinkSource::Auto => "AUTO",
        LinkSource::Manual => "MANUAL",
    }
}

pub(super) fn parse_link_source(s: &str) -> Result<LinkSource, StoreError> {
    match s {
        "AUTO" => Ok(LinkSource::Auto),
        "MANUAL" => Ok(LinkSource::Manual),
        _ => Err(StoreError::Corrupt {
            what: "link source",
        }),
    }
}

pub(super) fn event_type_str(t: EventType) -> &'static str {
    match t {
        EventType::Linked => "LINKED",
        EventType::Unlinked => "UNLINKED",
        EventType::Merged => "MERGED",
        EventType::Unmerged => "UNMERGED",
        EventType::ReviewOpened => "REVIEW_OPENED",
        EventType::ReviewResolved => "REVIEW_RESOLVED",
        EventType::RecordUpdated => "RECORD_UPDATED",
    }
}

pub(super) fn parse_event_type(s: &str) -> Result<EventType, StoreError> {
    Ok(match s {
        "LINKED" => EventType::Linked,
        "UNLINKED" => EventType::Unlinked,
        "MERGED" => EventType::Merged,
        "UNMERGED" => EventType::Unmerged,
        "REVIEW_OPENED" => EventType::ReviewOpened,
        "REVIEW_RESOLVED" => EventType::ReviewResolved,
        "RECORD_UPDATED" => EventType::RecordUpdated,
        _ => return Err(StoreError::Corrupt { what: "event type" }),
    })
}

pub(super) fn review_state_str(s: ReviewState) -> &'static str {
    match s {
        ReviewState::Open => "OPEN",
        ReviewState::Resolved => "RESOLVED",
    }
}

pub(super) fn outcome_str(o: ReviewOutcome) -> &'static str {
    match o {
        ReviewOutcome::Linked => "LINKED",
        ReviewOutcome::NewMaster => "NEW_MASTER",
    }
}

/// A row's `system` and `local_id` columns as a key.
pub(super) fn key_from_row(row: &AnyRow) -> Result<SourceKey, StoreError> {
    Ok(SourceKey::new(
        row.try_get::<String, _>("system")?,
        row.try_get::<String, _>("local_id")?,
    ))
}

pub(super) fn record_from_row(row: &AnyRow) -> Result<StoredRecord, StoreError> {
    let id = uid(row.try_get("id")?);
    let master: Option<i64> = row.try_get("master_id")?;
    let link = match master {
        Some(master) => {
            let decision: String = row.try_get("decision")?;
            let source: String = row.try_get("link_source")?;
            let weights: String = row.try_get("field_weights")?;
            Some(Link {
                record: id,
                master: uid(master),
                decision: parse_decision(&decision)?,
                link_source: parse_link_source(&source)?,
                score: row.try_get("score")?,
                field_weights: from_json(&weights, "field weights")?,
                created_at: row.try_get("link_created_at")?,
                updated_at: row.try_get("link_updated_at")?,
            })
        }
        None => None,
    };
    let demographics: String = row.try_get("demographics")?;
    Ok(StoredRecord {
        id,
        key: key_from_row(row)?,
        demographics: from_json(&demographics, "demographics")?,
        source_updated_at: row.try_get("source_updated_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        link,
    })
}

pub(super) fn master_from_row(row: &AnyRow) -> Result<MasterRow, StoreError> {
    let state: String = row.try_get("state")?;
    Ok(MasterRow {
        id: uid(row.try_get("id")?),
        state: match state.as_str() {
            "ACTIVE" => MasterState::Active,
            "MERGED" => MasterState::Merged,
            _ => {
                return Err(StoreError::Corrupt {
                    what: "master state",
                });
            }
        },
        merged_into: row.try_get::<Option<i64>, _>("merged_into")?.map(uid),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub(super) fn review_from_row(row: &AnyRow) -> Result<ReviewItem, StoreError> {
    let candidates: String = row.try_get("candidates")?;
    let state: String = row.try_get("state")?;
    let outcome: Option<String> = row.try_get("outcome")?;
    Ok(ReviewItem {
        id: uid(row.try_get("id")?),
        record: uid(row.try_get("record_id")?),
        key: key_from_row(row)?,
        master: uid(row.try_get("master_id")?),
        candidates: from_json::<Vec<ReviewCandidate>>(&candidates, "review candidates")?,
        state: match state.as_str() {
            "OPEN" => ReviewState::Open,
            "RESOLVED" => ReviewState::Resolved,
            _ => {
                return Err(StoreError::Corrupt {
                    what: "review state",
                });
            }
        },
        outcome: match outcome.as_deref() {
            None => None,
            Some("LINKED") => Some(ReviewOutcome::Linked),
            Some("NEW_MASTER") => Some(ReviewOutcome::NewMaster),
            Some(_) => {
                return Err(StoreError::Corrupt {
                    what: "review outcome",
                });
            }
        },
        resolved_master: row.try_get::<Option<i64>, _>("resolved_master")?.map(uid),
        created_at: row.try_get("created_at")?,
        resolved_at: row.try_get("resolved_at")?,
    })
}

pub(super) fn event_from_row(row: &AnyRow) -> Result<LinkEvent, StoreError> {
    let event_type: String = row.try_get("event_type")?;
    let decision: Option<String> = row.try_get("decision")?;
    let link_source: Option<String> = row.try_get("link_source")?;
    let weights: String = row.try_get("field_weights")?;
    let system: Option<String> = row.try_get("system")?;
    let local_id: Option<String> = row.try_get("local_id")?;
    Ok(LinkEvent {
        id: uid(row.try_get("id")?),
        event: NewEvent {
            master: uid(row.try_get("master_id")?),
            event_type: parse_event_type(&event_type)?,
            record: row.try_get::<Option<i64>, _>("record_id")?.map(uid),
            other_master: row.try_get::<Option<i64>, _>("other_master")?.map(uid),
            decision: decision.as_deref().map(parse_decision).transpose()?,
            link_source: link_source.as_deref().map(parse_link_source).transpose()?,
            score: row.try_get("score")?,
            field_weights: from_json::<Vec<FieldWeight>>(&weights, "field weights")?,
            actor: row.try_get("actor")?,
            request_id: row.try_get("request_id")?,
        },
        key: system.zip(local_id).map(|(s, l)| SourceKey::new(s, l)),
        created_at: row.try_get("created_at")?,
    })
}
