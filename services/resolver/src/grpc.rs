//! IdentityService, the resolver's gRPC edge: the one module that converts
//! between the contract's generated types and the resolver's own, and maps
//! [`ResolverError`] to `tonic::Status` with google.rpc details.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tessera_matching::{
    Address, Candidate, Decision, Demographics, FieldViolation, FieldWeight, MatchGrade, Sex,
    SourceKey,
};
use tessera_proto::error::{self, EdgeError, ServiceError, Violation};
use tessera_proto::v1::{self as pb, identity_service_server::IdentityService};
use tonic::{Code, Request, Response, Status};

use crate::golden::SurvivorshipRule;
use crate::resolver::{MasterView, Mutation, Resolver, ResolverError, ReviewDecision, UpsertInput};
use crate::store::{
    EventType, LinkFilter, LinkSource, LinkWithKey, MasterState, Micros, Page, ReviewItem,
    ReviewOutcome, ReviewState,
};

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 1000;
const DEFAULT_CANDIDATES: usize = 10;
const MAX_CANDIDATES: usize = 100;
/// The actor recorded on manual decisions until callers are authenticated.
const UNAUTHENTICATED: &str = "unauthenticated";

/// IdentityService over a [`Resolver`], which may still be loading: until it is
/// set, every call answers UNAVAILABLE (and health says NOT_SERVING).
#[derive(Debug, Clone, Default)]
pub struct IdentityGrpc {
    resolver: Arc<OnceLock<Arc<Resolver>>>,
}

impl IdentityGrpc {
    /// Serves a loaded `resolver`.
    pub fn new(resolver: Arc<Resolver>) -> Self {
        let service = Self::pending();
        service.set_ready(resolver);
        service
    }

    /// A service whose resolver is still loading; see [`IdentityGrpc::set_ready`].
    pub fn pending() -> Self {
        Self::default()
    }

    /// Starts serving `resolver`. Returns false if one was already set.
    pub fn set_ready(&self, resolver: Arc<Resolver>) -> bool {
        self.resolver.set(resolver).is_ok()
    }

    fn resolver(&self) -> Result<&Resolver, Status> {
        self.resolver.get().map(AsRef::as_ref).ok_or_else(|| {
            EdgeError::NotReady {
                reason: "INDEX_LOADING",
                message: "the identity index is still loading",
            }
            .into()
        })
    }
}

impl ServiceError for ResolverError {
    fn code(&self) -> Code {
        match self {
            Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::NotFound { .. } => Code::NotFound,
            Self::FailedPrecondition { .. } => Code::FailedPrecondition,
            Self::Store(_) => Code::Unavailable,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Self::InvalidArgument(_) => "INVALID_ARGUMENT",
            Self::NotFound { .. } => "NOT_FOUND",
            Self::FailedPrecondition { reason, .. } => reason,
            Self::Store(_) => "STORE_UNAVAILABLE",
        }
    }

    /// The store's own error stays in the log: callers learn only that the
    /// store is unavailable.
    fn message(&self) -> String {
        match self {
            Self::Store(_) => "the identity store is unavailable".to_owned(),
            other => other.to_string(),
        }
    }

    fn metadata(&self) -> HashMap<String, String> {
        match self {
            Self::NotFound { what } => HashMap::from([("resource".to_owned(), (*what).to_owned())]),
            _ => HashMap::new(),
        }
    }

    fn violations(&self) -> Vec<Violation> {
        match self {
            Self::InvalidArgument(violations) => violations
                .iter()
                .map(|v| Violation::new(v.field.clone(), v.description.clone()))
                .collect(),
            _ => Vec::new(),
        }
    }
}

impl From<ResolverError> for Status {
    fn from(err: ResolverError) -> Self {
        if let ResolverError::Store(e) = &err {
            tracing::error!(error = %e, "identity store failure");
        }
        error::status(&err)
    }
}

fn invalid(field: &str, description: &str) -> Status {
    ResolverError::InvalidArgument(vec![FieldViolation::new(field, description)]).into()
}

// ---- resource names -------------------------------------------------------

fn master_name(id: u64) -> String {
    format!("masters/{id}")
}

fn parse_id(name: &str, prefix: &str, field: &str) -> Result<u64, Status> {
    name.strip_prefix(prefix)
        .and_then(|id| id.parse::<u64>().ok())
        .filter(|id| *id > 0)
        .ok_or_else(|| invalid(field, &format!("must be a resource name `{prefix}{{id}}`")))
}

fn parse_master(name: &str, field: &str) -> Result<u64, Status> {
    if name.is_empty() {
        return Err(invalid(field, "is required"));
    }
    parse_id(name, "masters/", field)
}

/// `systems/{system}/records/{record}`, the local ID percent-encoded.
fn record_name(key: &SourceKey) -> String {
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

fn key_from(proto: Option<pb::SourceRecordKey>, field: &str) -> Result<SourceKey, Status> {
    let key = proto.ok_or_else(|| invalid(field, "is required"))?;
    Ok(SourceKey::new(key.system, key.local_id))
}

fn key_to(key: &SourceKey) -> pb::SourceRecordKey {
    pb::SourceRecordKey {
        system: key.system.clone(),
        local_id: key.local_id.clone(),
    }
}

// ---- pages ------------------------------------------------------------------

/// A page token: the last id of the previous page, bound to the request's
/// filter so a token cannot be replayed against another query.
fn page(size: i32, token: &str, scope: &str) -> Result<Page, Status> {
    let limit = match size {
        s if s < 0 => return Err(invalid("page_size", "must not be negative")),
        0 => DEFAULT_PAGE,
        s => u32::try_from(s).unwrap_or(MAX_PAGE).min(MAX_PAGE),
    };
    if token.is_empty() {
        return Ok(Page { after: None, limit });
    }
    let decoded = URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| invalid("page_token", "is not a token this service issued"))?;
    let (after, token_scope) = decoded
        .split_once(':')
        .ok_or_else(|| invalid("page_token", "is not a token this service issued"))?;
    if token_scope != scope {
        return Err(invalid(
            "page_token",
            "belongs to a request with other parameters",
        ));
    }
    let after = after
        .parse()
        .map_err(|_| invalid("page_token", "is not a token this service issued"))?;
    Ok(Page {
        after: Some(after),
        limit,
    })
}

fn next_token(last: Option<u64>, full: bool, scope: &str) -> String {
    match last {
        Some(last) if full => URL_SAFE_NO_PAD.encode(format!("{last}:{scope}")),
        _ => String::new(),
    }
}

// ---- filters ----------------------------------------------------------------

/// Parses an AIP-160 conjunction of equalities: `a = x AND b = "y"`.
fn equalities(filter: &str) -> Result<Vec<(String, String)>, Status> {
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

fn link_filter(filter: &str, master: Option<u64>) -> Result<LinkFilter, Status> {
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

fn demographics_from(d: pb::Demographics, field: &str) -> Result<Demographics, Status> {
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

fn timestamp(micros: Micros) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: i32::try_from(micros.rem_euclid(1_000_000) * 1000).unwrap_or(0),
    }
}

fn micros_from(ts: &prost_types::Timestamp) -> Micros {
    ts.seconds
        .saturating_mul(1_000_000)
        .saturating_add(i64::from(ts.nanos) / 1000)
}

fn decision_to(d: Decision) -> pb::MatchDecision {
    match d {
        Decision::Match => pb::MatchDecision::Match,
        Decision::PossibleMatch => pb::MatchDecision::PossibleMatch,
        Decision::NoMatch => pb::MatchDecision::NoMatch,
    }
}

fn source_to(s: LinkSource) -> pb::LinkSource {
    match s {
        LinkSource::Auto => pb::LinkSource::Auto,
        LinkSource::Manual => pb::LinkSource::Manual,
    }
}

fn weights_to(weights: &[FieldWeight]) -> Vec<pb::FieldWeight> {
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

fn grade_from(value: i32) -> Result<MatchGrade, Status> {
    Ok(match pb::MatchGrade::try_from(value) {
        Ok(pb::MatchGrade::Unspecified | pb::MatchGrade::Possible) => MatchGrade::Possible,
        Ok(pb::MatchGrade::Probable) => MatchGrade::Probable,
        Ok(pb::MatchGrade::Certain) => MatchGrade::Certain,
        Ok(pb::MatchGrade::CertainlyNot) => MatchGrade::CertainlyNot,
        Err(_) => return Err(invalid("min_grade", "is not a known value")),
    })
}

fn candidate_to(c: &Candidate) -> pb::MatchCandidate {
    pb::MatchCandidate {
        master: master_name(c.master),
        score: c.score,
        match_probability: c.probability,
        grade: grade_to(c.grade).into(),
        field_weights: weights_to(&c.field_weights),
    }
}

fn master_to(view: &MasterView) -> pb::Master {
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

fn link_to(l: &LinkWithKey) -> pb::Link {
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

fn review_to(r: &ReviewItem) -> pb::ReviewItem {
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

fn mutation(request_id: String) -> Mutation {
    Mutation {
        actor: UNAUTHENTICATED.to_owned(),
        request_id,
    }
}

fn validate_request_id(request_id: &str) -> Result<(), Status> {
    if request_id.len() > 128 || request_id.chars().any(char::is_control) {
        return Err(invalid(
            "request_id",
            "must be at most 128 printable characters",
        ));
    }
    Ok(())
}

#[tonic::async_trait]
impl IdentityService for IdentityGrpc {
    async fn resolve_record(
        &self,
        request: Request<pb::ResolveRecordRequest>,
    ) -> Result<Response<pb::ResolveRecordResponse>, Status> {
        let key = key_from(request.into_inner().source_record, "source_record")?;
        let resolution = self.resolver()?.resolve(&key).await?;
        Ok(Response::new(pb::ResolveRecordResponse {
            master: master_name(resolution.master),
            linked_records: resolution
                .records
                .iter()
                .map(|r| pb::LinkedRecord {
                    source_record: Some(key_to(&r.key)),
                    link_source: r
                        .link
                        .as_ref()
                        .map_or(pb::LinkSource::Unspecified, |l| source_to(l.link_source))
                        .into(),
                    score: r.link.as_ref().map_or(0.0, |l| l.score),
                })
                .collect(),
        }))
    }

    async fn upsert_source_record(
        &self,
        request: Request<pb::UpsertSourceRecordRequest>,
    ) -> Result<Response<pb::UpsertSourceRecordResponse>, Status> {
        let request = request.into_inner();
        validate_request_id(&request.request_id)?;
        let record = request
            .source_record
            .ok_or_else(|| invalid("source_record", "is required"))?;
        let key = key_from(record.key, "source_record.key")?;
        let demographics = demographics_from(
            record.demographics.unwrap_or_default(),
            "source_record.demographics",
        )?;
        let input = UpsertInput {
            key,
            demographics,
            source_updated_at: record.source_update_time.as_ref().map(micros_from),
            validate_only: request.validate_only,
        };
        let outcome = self
            .resolver()?
            .upsert(input, &mutation(request.request_id))
            .await?;
        Ok(Response::new(pb::UpsertSourceRecordResponse {
            source_record: Some(pb::SourceRecord {
                name: record_name(&outcome.key),
                key: Some(key_to(&outcome.key)),
                demographics: Some(demographics_to(&outcome.demographics)),
                source_update_time: record.source_update_time,
                create_time: (outcome.created_at > 0).then(|| timestamp(outcome.created_at)),
                update_time: (outcome.updated_at > 0).then(|| timestamp(outcome.updated_at)),
            }),
            decision: decision_to(outcome.decision).into(),
            master: outcome.master.map(master_name).unwrap_or_default(),
            score: outcome.score,
            field_weights: weights_to(&outcome.field_weights),
            review_item: outcome
                .review_item
                .map(|id| format!("reviewItems/{id}"))
                .unwrap_or_default(),
            manual_link_kept: outcome.manual_link_kept,
        }))
    }

    async fn match_demographics(
        &self,
        request: Request<pb::MatchDemographicsRequest>,
    ) -> Result<Response<pb::MatchDemographicsResponse>, Status> {
        let request = request.into_inner();
        let demographics = demographics_from(
            request
                .demographics
                .ok_or_else(|| invalid("demographics", "is required"))?,
            "demographics",
        )?;
        let max = match request.max_candidates {
            n if n < 0 => return Err(invalid("max_candidates", "must not be negative")),
            0 => DEFAULT_CANDIDATES,
            n => usize::try_from(n)
                .unwrap_or(MAX_CANDIDATES)
                .min(MAX_CANDIDATES),
        };
        let min_grade = grade_from(request.min_grade)?;
        let candidates = self
            .resolver()?
            .match_demographics(&demographics, max, min_grade)?;
        Ok(Response::new(pb::MatchDemographicsResponse {
            candidates: candidates.iter().map(candidate_to).collect(),
        }))
    }

    async fn get_master(
        &self,
        request: Request<pb::GetMasterRequest>,
    ) -> Result<Response<pb::Master>, Status> {
        let id = parse_master(&request.into_inner().name, "name")?;
        Ok(Response::new(master_to(
            &self.resolver()?.master(id).await?,
        )))
    }

    async fn list_links(
        &self,
        request: Request<pb::ListLinksRequest>,
    ) -> Result<Response<pb::ListLinksResponse>, Status> {
        let request = request.into_inner();
        let master = match request.parent.as_str() {
            "masters/-" => None,
            parent => Some(parse_master(parent, "parent")?),
        };
        let filter = link_filter(&request.filter, master)?;
        let scope = format!("links|{}|{}", request.parent, request.filter);
        let page = page(request.page_size, &request.page_token, &scope)?;
        let links = self.resolver()?.list_links(&filter, page).await?;
        let full = links.len() == page.limit as usize;
        Ok(Response::new(pb::ListLinksResponse {
            next_page_token: next_token(links.last().map(|l| l.link.record), full, &scope),
            links: links.iter().map(link_to).collect(),
        }))
    }

    async fn list_review_items(
        &self,
        request: Request<pb::ListReviewItemsRequest>,
    ) -> Result<Response<pb::ListReviewItemsResponse>, Status> {
        let request = request.into_inner();
        let mut state = Some(ReviewState::Open);
        for (field, value) in equalities(&request.filter)? {
            state = match (field.as_str(), value.as_str()) {
                ("state", "OPEN") => Some(ReviewState::Open),
                ("state", "RESOLVED") => Some(ReviewState::Resolved),
                ("state", "*") => None,
                _ => {
                    return Err(invalid(
                        "filter",
                        "supports `state = OPEN`, `RESOLVED` or `*`",
                    ));
                }
            };
        }
        let scope = format!("reviews|{}", request.filter);
        let page = page(request.page_size, &request.page_token, &scope)?;
        let (items, total) = self.resolver()?.list_review_items(state, page).await?;
        let full = items.len() == page.limit as usize;
        Ok(Response::new(pb::ListReviewItemsResponse {
            next_page_token: next_token(items.last().map(|i| i.id), full, &scope),
            review_items: items.iter().map(review_to).collect(),
            total_size: i32::try_from(total).unwrap_or(i32::MAX),
        }))
    }

    async fn resolve_review_item(
        &self,
        request: Request<pb::ResolveReviewItemRequest>,
    ) -> Result<Response<pb::ReviewItem>, Status> {
        let request = request.into_inner();
        validate_request_id(&request.request_id)?;
        let id = parse_id(&request.name, "reviewItems/", "name")?;
        let decision = match pb::ReviewOutcome::try_from(request.outcome) {
            Ok(pb::ReviewOutcome::Linked) => {
                ReviewDecision::Link(parse_master(&request.master, "master")?)
            }
            Ok(pb::ReviewOutcome::NewMaster) => ReviewDecision::NewMaster,
            _ => return Err(invalid("outcome", "must be LINKED or NEW_MASTER")),
        };
        let item = self
            .resolver()?
            .resolve_review(id, decision, &mutation(request.request_id))
            .await?;
        Ok(Response::new(review_to(&item)))
    }

    async fn link_source_record(
        &self,
        request: Request<pb::LinkSourceRecordRequest>,
    ) -> Result<Response<pb::Link>, Status> {
        let request = request.into_inner();
        validate_request_id(&request.request_id)?;
        let key = key_from(request.source_record, "source_record")?;
        let master = parse_master(&request.master, "master")?;
        let linked = self
            .resolver()?
            .link_record(&key, master, &mutation(request.request_id))
            .await?;
        Ok(Response::new(link_to(&LinkWithKey {
            link: linked.link,
            key: linked.key,
        })))
    }

    async fn merge_masters(
        &self,
        request: Request<pb::MergeMastersRequest>,
    ) -> Result<Response<pb::Master>, Status> {
        let request = request.into_inner();
        validate_request_id(&request.request_id)?;
        let winner = parse_master(&request.master, "master")?;
        let loser = parse_master(&request.source_master, "source_master")?;
        let view = self
            .resolver()?
            .merge(winner, loser, &mutation(request.request_id))
            .await?;
        Ok(Response::new(master_to(&view)))
    }

    async fn unmerge_source_record(
        &self,
        request: Request<pb::UnmergeSourceRecordRequest>,
    ) -> Result<Response<pb::UnmergeSourceRecordResponse>, Status> {
        let request = request.into_inner();
        validate_request_id(&request.request_id)?;
        let key = key_from(request.source_record, "source_record")?;
        let outcome = self
            .resolver()?
            .unmerge(&key, &mutation(request.request_id))
            .await?;
        Ok(Response::new(pb::UnmergeSourceRecordResponse {
            previous_master: Some(master_to(&outcome.previous)),
            new_master: Some(master_to(&outcome.new)),
        }))
    }

    async fn list_link_events(
        &self,
        request: Request<pb::ListLinkEventsRequest>,
    ) -> Result<Response<pb::ListLinkEventsResponse>, Status> {
        let request = request.into_inner();
        let master = parse_master(&request.parent, "parent")?;
        let scope = format!("events|{}", request.parent);
        let page = page(request.page_size, &request.page_token, &scope)?;
        let events = self.resolver()?.list_link_events(master, page).await?;
        let full = events.len() == page.limit as usize;
        Ok(Response::new(pb::ListLinkEventsResponse {
            next_page_token: next_token(events.last().map(|e| e.id), full, &scope),
            link_events: events
                .iter()
                .map(|e| pb::LinkEvent {
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
                })
                .collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use tonic_types::StatusExt;

    use super::*;

    #[test]
    fn record_names_percent_encode_local_ids() {
        let key = SourceKey::new("ehr", "MRN/00 12");
        assert_eq!(record_name(&key), "systems/ehr/records/MRN%2F00%2012");
    }

    #[test]
    fn page_tokens_round_trip_and_are_bound_to_their_query() {
        let token = next_token(Some(42), true, "links|masters/-|");
        let page = page(10, &token, "links|masters/-|").unwrap();
        assert_eq!((page.after, page.limit), (Some(42), 10));
        let err = super::page(10, &token, "links|masters/7|").unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert_eq!(
            super::page(10, "garbage!", "x").unwrap_err().code(),
            Code::InvalidArgument
        );
        assert_eq!(next_token(Some(42), false, "x"), "");
        assert_eq!(super::page(5000, "", "x").unwrap().limit, MAX_PAGE);
    }

    #[test]
    fn filters_accept_known_fields_and_reject_others() {
        let f = link_filter(
            "link_source = MANUAL AND source_record.system = \"ehr\"",
            None,
        )
        .unwrap();
        assert_eq!(f.link_source, Some(LinkSource::Manual));
        assert_eq!(f.system.as_deref(), Some("ehr"));
        let err = link_filter("family_name = \"Smith\"", None).unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(
            !err.message().contains("Smith"),
            "filter values must not echo back"
        );
    }

    #[test]
    fn invalid_argument_carries_field_violations() {
        let status = Status::from(ResolverError::InvalidArgument(vec![FieldViolation::new(
            "source_record.key.system",
            "is required",
        )]));
        assert_eq!(status.code(), Code::InvalidArgument);
        let bad = status.get_details_bad_request().unwrap();
        assert_eq!(bad.field_violations[0].field, "source_record.key.system");
        let info = status.get_details_error_info().unwrap();
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            ("INVALID_ARGUMENT", tessera_proto::ERROR_DOMAIN)
        );
        assert!(status.get_details_retry_info().is_none());
    }

    #[test]
    fn a_loading_index_is_unavailable_and_retryable() {
        let err = IdentityGrpc::pending().resolver().unwrap_err();
        assert_eq!(err.code(), Code::Unavailable);
        assert_eq!(
            err.get_details_error_info().unwrap().reason,
            "INDEX_LOADING"
        );
        assert!(err.get_details_retry_info().is_some());
    }

    #[test]
    fn timestamps_round_trip() {
        for micros in [0, 1, 1_700_000_000_123_456, -5] {
            assert_eq!(micros_from(&timestamp(micros)), micros);
        }
    }
}
