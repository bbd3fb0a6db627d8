//! IdentityService, the resolver's gRPC edge: the one module that converts between the
//! contract's generated types and the resolver's own (`convert`), maps
//! [`ResolverError`] to `tonic::Status` with google.rpc details, signs page tokens
//! (`paging`) and applies the caller's grant (`visibility`).
//!
//! Every handler starts from the [`Grant`] the auth layer put in the request (deny by
//! default: without one, PERMISSION_DENIED), before it validates or looks anything up.
//! It then returns only what the grant lets the caller see, notes in the request's
//! access log the masters it read or changed, and records the caller's principal as the
//! actor of what it changes.

mod convert;
mod paging;
mod visibility;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use tessera_auth::page_token::PageTokens;
use tessera_auth::{AccessLog, Grant, access};
use tessera_proto::error::{self, EdgeError, ServiceError, Violation};
use tessera_proto::v1::{self as pb, identity_service_server::IdentityService};
use tonic::{Code, Request, Response, Status};

pub use convert::demographics_to;
use convert::{
    candidate_to, demographics_from, equalities, grade_from, invalid, key_from, key_to,
    link_filter, link_to, master_name, micros_from, parse_id, parse_master, record_name, review_to,
    source_to, timestamp, weights_to,
};
pub use paging::random_page_tokens;
pub use visibility::AccessError;
use visibility::{
    filter_identifiers, master_for, note_sources, require_national_id_grant, require_system, sees,
};

use crate::resolver::{Mutation, Resolver, ResolverError, ReviewDecision, UpsertInput};
use crate::store::{LinkWithKey, ReviewState};

const DEFAULT_CANDIDATES: usize = 10;
const MAX_CANDIDATES: usize = 100;

/// IdentityService over a [`Resolver`], which may still be loading: until it is
/// set, every admitted call answers UNAVAILABLE (and health says NOT_SERVING).
#[derive(Debug, Clone)]
pub struct IdentityGrpc {
    resolver: Arc<OnceLock<Arc<Resolver>>>,
    tokens: Arc<PageTokens>,
}

impl Default for IdentityGrpc {
    fn default() -> Self {
        Self {
            resolver: Arc::default(),
            tokens: Arc::new(random_page_tokens()),
        }
    }
}

impl IdentityGrpc {
    /// Serves a loaded `resolver`, with page tokens signed by a random key (see
    /// [`IdentityGrpc::with_page_tokens`]).
    pub fn new(resolver: Arc<Resolver>) -> Self {
        let service = Self::pending();
        service.set_ready(resolver);
        service
    }

    /// A service whose resolver is still loading; see [`IdentityGrpc::set_ready`]. Its
    /// page tokens are signed with a random key made now ([`random_page_tokens`]): they
    /// do not survive a restart or cross replicas, so a deployment sets configured keys
    /// with [`IdentityGrpc::with_page_tokens`].
    pub fn pending() -> Self {
        Self::default()
    }

    /// Signs and checks page tokens with `tokens` (configured keys, rotation, expiry).
    pub fn with_page_tokens(mut self, tokens: PageTokens) -> Self {
        self.tokens = Arc::new(tokens);
        self
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

    /// A master as the caller sees it, noted in the access log.
    async fn master_seen(
        &self,
        id: u64,
        grant: &Grant,
        log: &AccessLog,
    ) -> Result<pb::Master, Status> {
        let (view, keys) = self
            .resolver()?
            .master_visible(id, |k| sees(grant, k))
            .await?;
        Ok(master_for(&view, &keys, grant, log))
    }

    /// Whether any record of master `id` is of a system the caller sees.
    async fn master_has_visible_record(&self, id: u64, grant: &Grant) -> Result<bool, Status> {
        if grant.systems.iter().any(|s| s == "*") {
            return Ok(true);
        }
        let (_, keys) = self.resolver()?.master_records(id).await?;
        Ok(keys.iter().any(|k| sees(grant, k)))
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

/// The admitted caller's principal: the authenticated caller's, else the grant's.
fn principal<T>(request: &Request<T>, grant: &Grant) -> String {
    access::caller(request).map_or_else(|| grant.principal.clone(), |c| c.principal.clone())
}

/// A mutation by the caller: its principal is recorded as the actor.
fn mutation(actor: String, request_id: String) -> Mutation {
    Mutation { actor, request_id }
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

/// The grant, access log and principal of an admitted request, and its message.
fn admit<T>(request: Request<T>) -> Result<(Arc<Grant>, AccessLog, String, T), Status> {
    let grant = access::grant(&request)?;
    let log = access::access_log(&request);
    let principal = principal(&request, &grant);
    Ok((grant, log, principal, request.into_inner()))
}

#[tonic::async_trait]
impl IdentityService for IdentityGrpc {
    async fn resolve_record(
        &self,
        request: Request<pb::ResolveRecordRequest>,
    ) -> Result<Response<pb::ResolveRecordResponse>, Status> {
        let (grant, log, _, request) = admit(request)?;
        let key = key_from(request.source_record, "source_record")?;
        require_system(&grant, &key)?;
        let resolution = self.resolver()?.resolve(&key).await?;
        log.master(resolution.master);
        note_sources(&log, &grant, resolution.records.iter().map(|r| &r.key));
        Ok(Response::new(pb::ResolveRecordResponse {
            master: master_name(resolution.master),
            linked_records: resolution
                .records
                .iter()
                .filter(|r| sees(&grant, &r.key))
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
        let (grant, log, principal, request) = admit(request)?;
        validate_request_id(&request.request_id)?;
        let record = request
            .source_record
            .ok_or_else(|| invalid("source_record", "is required"))?;
        let key = key_from(record.key, "source_record.key")?;
        require_system(&grant, &key)?;
        let demographics = record.demographics.unwrap_or_default();
        require_national_id_grant(&demographics, &grant)?;
        let demographics = demographics_from(demographics, "source_record.demographics")?;
        let input = UpsertInput {
            key,
            demographics,
            source_updated_at: record.source_update_time.as_ref().map(micros_from),
            validate_only: request.validate_only,
        };
        let outcome = self
            .resolver()?
            .upsert(input, &mutation(principal, request.request_id))
            .await?;
        if let Some(master) = outcome.master {
            log.master(master);
        }
        let mut demographics = demographics_to(&outcome.demographics);
        filter_identifiers(&mut demographics, &grant);
        Ok(Response::new(pb::UpsertSourceRecordResponse {
            source_record: Some(pb::SourceRecord {
                name: record_name(&outcome.key),
                key: Some(key_to(&outcome.key)),
                demographics: Some(demographics),
                source_update_time: record.source_update_time,
                create_time: (outcome.created_at > 0).then(|| timestamp(outcome.created_at)),
                update_time: (outcome.updated_at > 0).then(|| timestamp(outcome.updated_at)),
            }),
            decision: convert::decision_to(outcome.decision).into(),
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
        let (grant, log, _, request) = admit(request)?;
        let mut demographics = demographics_from(
            request
                .demographics
                .ok_or_else(|| invalid("demographics", "is required"))?,
            "demographics",
        )?;
        // A caller that may not see national IDs may not use the index to check one.
        if !grant.sees_national_id() {
            demographics.national_id.clear();
        }
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
        // A candidate whose records are all of unseen systems is not the caller's to know.
        let mut visible = Vec::with_capacity(candidates.len());
        for c in &candidates {
            if self.master_has_visible_record(c.master, &grant).await? {
                log.master(c.master);
                visible.push(candidate_to(c));
            }
        }
        Ok(Response::new(pb::MatchDemographicsResponse {
            candidates: visible,
        }))
    }

    async fn get_master(
        &self,
        request: Request<pb::GetMasterRequest>,
    ) -> Result<Response<pb::Master>, Status> {
        let (grant, log, _, request) = admit(request)?;
        let id = parse_master(&request.name, "name")?;
        log.master(id);
        let (view, keys) = self
            .resolver()?
            .master_visible(id, |k| sees(&grant, k))
            .await?;
        if view.record_count == 0 && !keys.is_empty() {
            // Only records the caller may not see: the same answer as a missing master.
            note_sources(&log, &grant, &keys);
            return Err(ResolverError::NotFound { what: "master" }.into());
        }
        Ok(Response::new(master_for(&view, &keys, &grant, &log)))
    }

    async fn list_links(
        &self,
        request: Request<pb::ListLinksRequest>,
    ) -> Result<Response<pb::ListLinksResponse>, Status> {
        let (grant, log, principal, request) = admit(request)?;
        let master = match request.parent.as_str() {
            "masters/-" => None,
            parent => Some(parse_master(parent, "parent")?),
        };
        let filter = link_filter(&request.filter, master)?;
        let query = paging::query("ListLinks", &[&request.parent, &request.filter]);
        let page = paging::page(
            &self.tokens,
            &principal,
            &query,
            request.page_size,
            &request.page_token,
        )?;
        let links = self.resolver()?.list_links(&filter, page).await?;
        let full = links.len() == page.limit as usize;
        let last = links.last().map(|l| l.link.record);
        let links: Vec<pb::Link> = links
            .iter()
            .filter(|l| sees(&grant, &l.key))
            .inspect(|l| log.master(l.link.master))
            .map(link_to)
            .collect();
        Ok(Response::new(pb::ListLinksResponse {
            next_page_token: paging::next_token(&self.tokens, &principal, &query, last, full),
            links,
        }))
    }

    async fn list_review_items(
        &self,
        request: Request<pb::ListReviewItemsRequest>,
    ) -> Result<Response<pb::ListReviewItemsResponse>, Status> {
        let (grant, log, principal, request) = admit(request)?;
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
        let query = paging::query("ListReviewItems", &[&request.filter]);
        let page = paging::page(
            &self.tokens,
            &principal,
            &query,
            request.page_size,
            &request.page_token,
        )?;
        let (items, total) = self.resolver()?.list_review_items(state, page).await?;
        let full = items.len() == page.limit as usize;
        let last = items.last().map(|i| i.id);
        let review_items = items
            .iter()
            .filter(|i| sees(&grant, &i.key))
            .inspect(|i| {
                log.master(i.master);
                i.candidates.iter().for_each(|c| log.master(c.master));
            })
            .map(review_to)
            .collect();
        Ok(Response::new(pb::ListReviewItemsResponse {
            next_page_token: paging::next_token(&self.tokens, &principal, &query, last, full),
            review_items,
            // Counting only what the caller sees would mean reading the whole queue.
            total_size: if grant.sees_every_system() {
                i32::try_from(total).unwrap_or(i32::MAX)
            } else {
                0
            },
        }))
    }

    async fn resolve_review_item(
        &self,
        request: Request<pb::ResolveReviewItemRequest>,
    ) -> Result<Response<pb::ReviewItem>, Status> {
        let (grant, log, principal, request) = admit(request)?;
        validate_request_id(&request.request_id)?;
        let id = parse_id(&request.name, "reviewItems/", "name")?;
        let decision = match pb::ReviewOutcome::try_from(request.outcome) {
            Ok(pb::ReviewOutcome::Linked) => {
                ReviewDecision::Link(parse_master(&request.master, "master")?)
            }
            Ok(pb::ReviewOutcome::NewMaster) => ReviewDecision::NewMaster,
            _ => return Err(invalid("outcome", "must be LINKED or NEW_MASTER")),
        };
        // An item of a system the caller does not see answers as a missing one would.
        if !sees(&grant, &self.resolver()?.review_item(id).await?.key) {
            return Err(ResolverError::NotFound {
                what: "review item",
            }
            .into());
        }
        let item = self
            .resolver()?
            .resolve_review(id, decision, &mutation(principal, request.request_id))
            .await?;
        log.master(item.master);
        if let Some(m) = item.resolved_master {
            log.master(m);
        }
        Ok(Response::new(review_to(&item)))
    }

    async fn link_source_record(
        &self,
        request: Request<pb::LinkSourceRecordRequest>,
    ) -> Result<Response<pb::Link>, Status> {
        let (grant, log, principal, request) = admit(request)?;
        validate_request_id(&request.request_id)?;
        let key = key_from(request.source_record, "source_record")?;
        require_system(&grant, &key)?;
        let master = parse_master(&request.master, "master")?;
        log.master(master);
        let linked = self
            .resolver()?
            .link_record(&key, master, &mutation(principal, request.request_id))
            .await?;
        log.master(linked.link.master);
        Ok(Response::new(link_to(&LinkWithKey {
            link: linked.link,
            key: linked.key,
        })))
    }

    async fn merge_masters(
        &self,
        request: Request<pb::MergeMastersRequest>,
    ) -> Result<Response<pb::Master>, Status> {
        let (grant, log, principal, request) = admit(request)?;
        validate_request_id(&request.request_id)?;
        let winner = parse_master(&request.master, "master")?;
        let loser = parse_master(&request.source_master, "source_master")?;
        log.master(winner);
        log.master(loser);
        let view = self
            .resolver()?
            .merge(winner, loser, &mutation(principal, request.request_id))
            .await?;
        Ok(Response::new(
            self.master_seen(view.master.id, &grant, &log).await?,
        ))
    }

    async fn unmerge_source_record(
        &self,
        request: Request<pb::UnmergeSourceRecordRequest>,
    ) -> Result<Response<pb::UnmergeSourceRecordResponse>, Status> {
        let (grant, log, principal, request) = admit(request)?;
        validate_request_id(&request.request_id)?;
        let key = key_from(request.source_record, "source_record")?;
        require_system(&grant, &key)?;
        let outcome = self
            .resolver()?
            .unmerge(&key, &mutation(principal, request.request_id))
            .await?;
        let previous = self
            .master_seen(outcome.previous.master.id, &grant, &log)
            .await?;
        let new = self
            .master_seen(outcome.new.master.id, &grant, &log)
            .await?;
        Ok(Response::new(pb::UnmergeSourceRecordResponse {
            previous_master: Some(previous),
            new_master: Some(new),
        }))
    }

    async fn list_link_events(
        &self,
        request: Request<pb::ListLinkEventsRequest>,
    ) -> Result<Response<pb::ListLinkEventsResponse>, Status> {
        let (grant, log, principal, request) = admit(request)?;
        let master = parse_master(&request.parent, "parent")?;
        log.master(master);
        if !self.master_has_visible_record(master, &grant).await? {
            // Only records the caller may not see: the same answer as a missing master.
            return Err(ResolverError::NotFound { what: "master" }.into());
        }
        let query = paging::query("ListLinkEvents", &[&request.parent]);
        let page = paging::page(
            &self.tokens,
            &principal,
            &query,
            request.page_size,
            &request.page_token,
        )?;
        let events = self.resolver()?.list_link_events(master, page).await?;
        let full = events.len() == page.limit as usize;
        let last = events.last().map(|e| e.id);
        let link_events = events
            .iter()
            .filter(|e| e.key.as_ref().is_none_or(|k| sees(&grant, k)))
            .inspect(|e| {
                if let Some(other) = e.event.other_master {
                    log.master(other);
                }
            })
            .map(convert::event_to)
            .collect();
        Ok(Response::new(pb::ListLinkEventsResponse {
            next_page_token: paging::next_token(&self.tokens, &principal, &query, last, full),
            link_events,
        }))
    }
}

#[cfg(test)]
mod tests;
