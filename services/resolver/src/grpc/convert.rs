//! Conversions between the contract's generated types and the resolver's own:
//! resource names, filters, demographics, masters, links, review items and events.

use tessera_matching::{
    Address, Candidate, Decision, Demographics, FieldViolation, FieldWeight, MatchGrade, Sex,
    SourceKey,
};
use tessera_proto::v1 as pb;
use tonic::Status;

use crate::golden::SurvivorshipRule;
use crate::resolver::{MasterView, ResolverError};
use crate::store::{
    EventType, LinkEvent, LinkFilter, LinkSource, LinkWithKey, MasterState, Micros, ReviewItem,
    ReviewOutcome, ReviewState,
};

pub(super) fn invalid(field: &str, description: &str) -> Status {
    ResolverError::InvalidArgument(vec![FieldViolation::new(field, description)]).into()
}

// ---- resource names -------------------------------------------------------

pub(super) fn master_name(id: u64) -> String {
    format!("masters/{id}")
}

pub(super) fn parse_id(name: &str, prefix: &str, field: &str) -> Result<u64, Status> {
    name.strip_prefix(prefix)
        .and_then(|id| id.parse::<u64>().ok())
        .filter(|id| *id > 0)
        .ok_or_else(|| invalid(field, &format!("must be a resource name `{prefix}{{id}}`")))
}

pub(super) fn parse_master(name: &str, field: &str) -> Result<u64, Status> {
    if name.is_empty() {
        return Err(invalid(field, "is required"));
    }
    parse_id(name, "masters/", field)
}

/// `systems/{system}/records/{record}`, the local ID percent-encoded.
pub(super) fn record_name(key: &SourceKey) -> String {
    let mut encoded = String::with_capacity(key.local_id.len());
    for b in key.local_id.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("systems/{}/records/{encoded}", key.system)
}

pub(super) fn key_from(
    proto: Option<pb::SourceRecordKey>,
    field: &str,
) -> Result<SourceKey, Status> {
    let key = proto.ok_or_else(|| invalid(field, "is required"))?;
    Ok(SourceKey::new(key.system, key.local_id))
}

pub(super) fn key_to(key: &SourceKey) -> pb::SourceRecordKey {
    pb::SourceRecordKey {
        system: key.system.clone(),
        local_id: key.local_id.clone(),
    }
}

// ---- filters ----------------------------------------------------------------

/// Parses an AIP-160 conjunction of equalities: `a = x AND b = "y"`.
pub(super) fn equalities(filter: &str) -> Result<Vec<(String, String)>, Status> {
    if filter.trim().is_empty() {
        return Ok(Vec::new());
    }
    filter
        .split(" AND ")
        .map(|term| {
            let (field, value) = term.split_once('=').ok_or_else(|| {
                invalid(
                    "filter",
                    "supports only `field = value` terms joined by AND",
                )
            })?;
            let value = value.trim().trim_matches('"').to_owned();
            Ok((field.trim().to_owned(), value))
        })
        .collect()
}

pub(super) fn link_filter(filter: &str, master: Option<u64>) -> Result<LinkFilter, Status> {
    let mut out = LinkFilter {
        master,
        ..LinkFilter::default()
    };
    for (field, value) in equalities(filter)? {
        match field.as_str() {
            "decision" => {
                out.decision = Some(match value.as_str() {
                    "MATCH" => Decision::Match,
                    "POSSIBLE_MATCH" => Decision::PossibleMatch,
                    "NO_MATCH" => Decision::NoMatch,
                    _ => {
                        return Err(invalid(
                            "filter",
                            "decision must be MATCH, POSSIBLE_MATCH or NO_MATCH",
                        ));
                    }
                });
            }
            "link_source" => {
                out.link_source = Some(match value.as_str() {
                    "AUTO" => LinkSource::Auto,
                    "MANUAL" => LinkSource::Manual,
                    _ => return Err(invalid("filter", "link_source must be AUTO or MANUAL")),
                });
            }
            "source_record.system" => out.system = Some(value),
            _ => {
                return Err(invalid(
                    "filter",
                    "supports decision, link_source and source_record.system",
                ));
            }
        }
    }
    Ok(out)
}

// ---- demographics -------------------------------------------------------------

fn sex_from(value: i32) -> Result<Sex, Status> {
    Ok(match pb::AdministrativeSex::try_from(value) {
        Ok(pb::AdministrativeSex::Unspecified) => Sex::Unspecified,
        Ok(pb::AdministrativeSex::Male) => Sex::Male,
        Ok(pb::AdministrativeSex::Female) => Sex::Female,
        Ok(pb::AdministrativeSex::Other) => Sex::Other,
        Ok(pb::AdministrativeSex::Unknown) => Sex::Unknown,
        Err(_) => return Err(invalid("demographics.sex", "is not a known value")),
    })
}

fn sex_to(sex: Sex) -> pb::AdministrativeSex {
    match sex {
        Sex::Unspecified => pb::AdministrativeSex::Unspecified,
        Sex::Male => pb::AdministrativeSex::Male,
        Sex::Female => pb::AdministrativeSex::Female,
        Sex::Other => pb::AdministrativeSex::Other,
        Sex::Unknown => pb::AdministrativeSex::Unknown,
    }
}

pub(super) fn demographics_from(d: pb::Demographics, field: &str) -> Result<Demographics, Status> {
    let mut national_id = String::new();
    for (i, id) in d.identifiers.into_iter().enumerate() {
        match pb::PersonIdentifierType::try_from(id.r#type) {
            Ok(pb::PersonIdentifierType::NationalId) if national_id.is_empty() => {
                national_id = id.value
            }
            Ok(pb::PersonIdentifierType::NationalId) => {
                return Err(invalid(
                    &format!("{field}.identifiers[{i}]"),
                    "only one NATIONAL_ID is accepted",
                ));
            }
            _ => {
                return Err(invalid(
                    &format!("{field}.identifiers[{i}].type"),
                    "only NATIONAL_ID identifiers are used for matching in this release",
                ));
            }
        }
    }
    Ok(Demographics {
        given_names: d.given_names,
        family_name: d.family_name,
        name_suffix: d.name_suffix,
        previous_family_names: d.previous_family_names,
        birth_date: d.birth_date,
        sex: sex_from(d.sex)
            .map_err(|_| invalid(&format!("{field}.sex"), "is not a known value"))?,
        addresses: d
            .addresses
            .into_iter()
            .map(|a| Address {
                lines: a.lines,
                city: a.city,
                state: a.state,
                postal_code: a.postal_code,
                country: a.country,
            })
            .collect(),
        phones: d.phones,
        emails: d.emails,
        national_id,
    })
}

/// Converts demographics to the contract's message.
pub fn demographics_to(d: &Demographics) -> pb::Demographics {
    pb::Demographics {
        given_names: d.given_names.clone(),
        family_name: d.family_name.clone(),
        name_suffix: d.name_suffix.clone(),
        previous_family_names: d.previous_family_names.clone(),
        birth_date: d.birth_date.clone(),
        sex: sex_to(d.sex).into(),
        addresses: d
            .addresses
            .iter()
            .map(|a| pb::PostalAddress {
                lines: a.lines.clone(),
                city: a.city.clone(),
                state: a.state.clone(),
                postal_code: a.postal_code.clone(),
                country: a.country.clone(),
            })
            .collect(),
        phones: d.phones.clone(),
        emails: d.emails.clone(),
        identifiers: if d.national_id.is_empty() {
            Vec::new()
        } else {
            vec![pb::PersonIdentifier {
                r#type: pb::PersonIdentifierType::NationalId.into(),
                system: String::new(),
                value: d.national_id.clone(),
            }]
        },
    }
}

// ---- other conversions ----------------------------------------------------------

pub(super) fn timestamp(micros: Micros) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: i32::try_from(micros.rem_euclid(1_000_000) * 1000).unwrap_or(0),
    }
}

pub(super) fn micros_from(ts: &prost_types::Timestamp) -> Micros {
    ts.seconds
        .saturating_mul(1_000_000)
        .saturating_add(i64::from(ts.nanos) / 1000)
}

pub(super) fn decision_to(d: Decision) -> pb::MatchDecision {
    match d {
        Decision::Match => pb::MatchDecision::Match,
        Decision::PossibleMatch => pb::MatchDecision::PossibleMatch,
        Decision::NoMatch => pb::MatchDecision::NoMatch,
    }
}

pub(super) fn source_to(s: LinkSource) -> pb::LinkSource {
    match s {
        LinkSource::Auto => pb::LinkSource::Auto,
        LinkSource::Manual => pb::LinkSource::Manual,
    }
}

pub(super) fn weights_to(weights: &[FieldWeight]) -> Vec<pb::FieldWeight> {
    weights
        .iter()
        .map(|w| pb::FieldWeight {
            field: w.field.clone(),
            level: w.level.clone(),
            weight: w.weight,
            term_frequency_adjustment: w.term_frequency_adjustment,
        })
        .collect()
}

fn grade_to(g: MatchGrade) -> pb::MatchGrade {
    match g {
        MatchGrade::Certain => pb::MatchGrade::Certain,
        MatchGrade::Probable => pb::MatchGrade::Probable,
        MatchGrade::Possible => pb::MatchGrade::Possible,
        MatchGrade::CertainlyNot => pb::MatchGrade::CertainlyNot,
    }
}

pub(super) fn grade_from(value: i32) -> Result<MatchGrade, Status> {
    Ok(match pb::MatchGrade::try_from(value) {
        Ok(pb::MatchGrade::Unspecified | pb::MatchGrade::Possible) => MatchGrade::Possible,
        Ok(pb::MatchGrade::Probable) => MatchGrade::Probable,
        Ok(pb::MatchGrade::Certain) => MatchGrade::Certain,
        Ok(pb::MatchGrade::CertainlyNot) => MatchGrade::CertainlyNot,
        Err(_) => return Err(invalid("min_grade", "is not a known value")),
    })
}

pub(super) fn candidate_to(c: &Candidate) -> pb::MatchCandidate {
    pb::MatchCandidate {
        master: master_name(c.master),
        score: c.score,
        match_probability: c.probability,
        grade: grade_to(c.grade).into(),
        field_weights: weights_to(&c.field_weights),
    }
}

pub(super) fn master_to(view: &MasterView) -> pb::Master {
    pb::Master {
        name: master_name(view.master.id),
        state: match view.master.state {
            MasterState::Active => pb::MasterState::Active,
            MasterState::Merged => pb::MasterState::Merged,
        }
        .into(),
        merged_into: view.master.merged_into.map(master_name).unwrap_or_default(),
        golden_record: Some(demographics_to(&view.golden.demographics)),
        field_provenance: view
            .golden
            .provenance
            .iter()
            .map(|p| pb::FieldProvenance {
                field: p.field.clone(),
                source_record: record_name(&p.source),
                rule: match p.rule {
                    SurvivorshipRule::SourcePriority => pb::SurvivorshipRule::SourcePriority,
                    SurvivorshipRule::MostRecent => pb::SurvivorshipRule::MostRecent,
                    SurvivorshipRule::OnlySource => pb::SurvivorshipRule::OnlySource,
                }
                .into(),
                source_update_time: p.source_updated_at.map(timestamp),
            })
            .collect(),
        source_record_count: i32::try_from(view.record_count).unwrap_or(i32::MAX),
        create_time: Some(timestamp(view.master.created_at)),
        update_time: Some(timestamp(view.master.updated_at)),
    }
}

pub(super) fn link_to(l: &LinkWithKey) -> pb::Link {
    pb::Link {
        name: format!("masters/{}/links/{}", l.link.master, l.link.record),
        source_record: Some(key_to(&l.key)),
        decision: decision_to(l.link.decision).into(),
        link_source: source_to(l.link.link_source).into(),
        score: l.link.score,
        field_weights: weights_to(&l.link.field_weights),
        create_time: Some(timestamp(l.link.created_at)),
        update_time: Some(timestamp(l.link.updated_at)),
    }
}

pub(super) fn review_to(r: &ReviewItem) -> pb::ReviewItem {
    pb::ReviewItem {
        name: format!("reviewItems/{}", r.id),
        source_record: Some(key_to(&r.key)),
        master: master_name(r.master),
        candidates: r
            .candidates
            .iter()
            .map(|c| pb::MatchCandidate {
                master: master_name(c.master),
                score: c.score,
                match_probability: c.probability,
                grade: pb::MatchGrade::Possible.into(),
                field_weights: weights_to(&c.field_weights),
            })
            .collect(),
        state: match r.state {
            ReviewState::Open => pb::ReviewItemState::Open,
            ReviewState::Resolved => pb::ReviewItemState::Resolved,
        }
        .into(),
        outcome: match r.outcome {
            None => pb::ReviewOutcome::Unspecified,
            Some(ReviewOutcome::Linked) => pb::ReviewOutcome::Linked,
            Some(ReviewOutcome::NewMaster) => pb::ReviewOutcome::NewMaster,
        }
        .into(),
        resolved_master: r.resolved_master.map(master_name).unwrap_or_default(),
        create_time: Some(timestamp(r.created_at)),
        resolve_time: r.resolved_at.map(timestamp),
    }
}

fn event_type_to(t: EventType) -> pb::LinkEventType {
    match t {
        EventType::Linked => pb::LinkEventType::Linked,
        EventType::Unlinked => pb::LinkEventType::Unlinked,
        EventType::Merged => pb::LinkEventType::Merged,
        EventType::Unmerged => pb::LinkEventType::Unmerged,
        EventType::ReviewOpened => pb::LinkEventType::ReviewOpened,
        EventType::ReviewResolved => pb::LinkEventType::ReviewResolved,
        EventType::RecordUpdated => pb::LinkEventType::RecordUpdated,
    }
}

pub(super) fn event_to(e: &LinkEvent) -> pb::LinkEvent {
    pb::LinkEvent {
        name: format!("masters/{}/linkEvents/{}", e.event.master, e.id),
        r#type: event_type_to(e.event.event_type).into(),
        source_record: e.key.as_ref().map(key_to),
        other_master: e.event.other_master.map(master_name).unwrap_or_default(),
        decision: e
            .event
            .decision
            .map_or(pb::MatchDecision::Unspecified, decision_to)
            .into(),
        link_source: e
            .event
            .link_source
            .map_or(pb::LinkSource::Unspecified, source_to)
            .into(),
        score: e.event.score,
        field_weights: weights_to(&e.event.field_weights),
        actor: e.event.actor.clone(),
        request_id: e.event.request_id.clone(),
        create_time: Some(timestamp(e.created_at)),
    }
}
