//! The aggregator and its view types: resolve the subject, then plan
//! ([`crate::plan`]), fan out ([`crate::fanout`]) and assemble
//! ([`crate::assemble`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use tessera_adapter_core::Record;
use tessera_consent::Consent;
use thiserror::Error;
use tokio::time::Instant;
use tracing::Instrument;

use crate::assemble::assemble;
pub use crate::assemble::summarize;
use crate::authz::{Authorizer, Caller, Purpose};
use crate::cache::{CacheStats, Key, SectionCache};
use crate::fanout::fan_out;
use crate::policy::ViewPolicy;
use crate::source::Source;
use crate::telemetry::span;

/// Whose view.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A master, by ID.
    Master(String),
    /// A source record, resolved to its master first.
    SourceRecord(SourceRef),
}

/// A source record's key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceRef {
    /// The source system.
    pub system: String,
    /// The record's ID in it.
    pub local_id: String,
}

/// A subject's master and every source record linked to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identities {
    /// The master's ID (after any merge redirect).
    pub master: String,
    /// The linked records.
    pub records: Vec<SourceRef>,
}

/// How the aggregator finds a subject's identities: the resolver, in the
/// gateway.
#[async_trait]
pub trait IdentityLookup: Send + Sync + 'static {
    /// The subject's master and linked records.
    async fn identities(&self, subject: &Subject) -> Result<Identities, LookupError>;
}

/// Why a subject's identities could not be found.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LookupError {
    /// The subject is not in the index.
    #[error("{what} not found")]
    NotFound {
        /// `master` or `source record`.
        what: &'static str,
    },
    /// The subject is malformed.
    #[error("{field}: {description}")]
    Invalid {
        /// The request field.
        field: String,
        /// What is wrong, without patient data.
        description: String,
    },
    /// The identity store failed.
    #[error("identity store unavailable: {0}")]
    Unavailable(String),
}

/// A view request, in domain terms.
#[derive(Debug, Clone)]
pub struct ViewRequest {
    /// Whose view.
    pub subject: Subject,
    /// Sections asked for; empty means every section the caller may see.
    pub sections: Vec<String>,
    /// Why the caller asks.
    pub purpose: Purpose,
    /// Accept cached records up to this old; `None` leaves it to the TTLs.
    pub max_staleness: Option<Duration>,
    /// When the view must be assembled (see [`Aggregator::deadline`]).
    pub deadline: Instant,
    /// Who asks.
    pub caller: Caller,
}

/// How one source fared for one section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SourceState {
    /// Answered in time (from the source or the cache).
    Ok,
    /// The source failed; older cached records were served.
    Stale,
    /// No answer within the deadline.
    Timeout,
    /// The source failed or could not be reached.
    Unavailable,
    /// The circuit breaker is open; the source was not called.
    CircuitOpen,
    /// The caller may not see the section; the source was not called.
    Denied,
    /// The patient's consent withholds the section (or could not be had in
    /// time); the source was not called.
    Withheld,
}

impl SourceState {
    /// The state's name, as the contract spells it (`TIMEOUT`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Stale => "STALE",
            Self::Timeout => "TIMEOUT",
            Self::Unavailable => "UNAVAILABLE",
            Self::CircuitOpen => "CIRCUIT_OPEN",
            Self::Denied => "DENIED",
            Self::Withheld => "WITHHELD",
        }
    }

    /// Whether the source is listed in `unreachable`.
    pub fn is_unreachable(self) -> bool {
        matches!(
            self,
            Self::Stale | Self::Timeout | Self::Unavailable | Self::CircuitOpen
        )
    }
}

/// The outcome for one (source, section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceOutcome {
    /// The source's name.
    pub source: String,
    /// The section.
    pub section: String,
    /// The state.
    pub state: SourceState,
    /// A short explanation without patient data.
    pub message: String,
    /// Records served.
    pub record_count: usize,
    /// Time spent, cache lookups included.
    pub latency: Duration,
}

/// One record of a view, with its provenance.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewRecord {
    /// The record.
    pub record: Record,
    /// Its media type.
    pub media_type: String,
    /// The source's name.
    pub source: String,
    /// The source record it belongs to.
    pub source_record: SourceRef,
    /// When it was fetched from the source.
    pub fetched_at: SystemTime,
    /// Whether it came from the cache.
    pub cache_hit: bool,
    /// Its age when the view was assembled.
    pub age: Duration,
}

/// One source's contribution to one section.
#[derive(Debug, Clone, PartialEq)]
pub struct SectionChunk {
    /// The section.
    pub section: String,
    /// The source's name.
    pub source: String,
    /// The records.
    pub records: Vec<ViewRecord>,
    /// How the source fared.
    pub status: SourceOutcome,
}

/// A whole view.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    /// The master and its records.
    pub identities: Identities,
    /// Records by section, grouped by source in `statuses` order.
    pub sections: BTreeMap<String, Vec<ViewRecord>>,
    /// Every planned (source, section), denied ones included.
    pub statuses: Vec<SourceOutcome>,
    /// Sources that could not be reached in time, by name.
    pub unreachable: Vec<String>,
    /// When assembly finished.
    pub assembled_at: SystemTime,
}

/// A view as it arrives: identities now, chunks as each source answers.
pub struct ViewStream {
    /// The master and its records.
    pub identities: Identities,
    /// Denied and withheld (source, section) pairs, known before any call.
    pub denied: Vec<SourceOutcome>,
    /// The (source, section) pairs being fetched: what the stream may send.
    pub planned: Vec<(String, String)>,
    /// Chunks in completion order; ends by the deadline.
    pub chunks: BoxStream<'static, SectionChunk>,
}

impl std::fmt::Debug for ViewStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewStream")
            .field("identities", &self.identities)
            .finish_non_exhaustive()
    }
}

/// Why there is no view.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ViewError {
    /// The subject could not be resolved.
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// A requested section is served by no source.
    #[error("no source serves section {section:?}")]
    UnknownSection {
        /// The section.
        section: String,
        /// Its position in the request.
        index: usize,
    },
    /// The caller may see none of the requested sections.
    #[error("the caller may see none of the requested sections")]
    AllDenied,
    /// Every source asked failed.
    #[error("every requested source failed")]
    AllFailed {
        /// What each source did.
        statuses: Vec<SourceOutcome>,
    },
}

/// Something changed in a silo: the records of one local ID, in some sections
/// or all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeEvent {
    /// The record that changed.
    pub record: SourceRef,
    /// The sections that changed; empty means all.
    pub sections: Vec<String>,
}

/// The aggregator. Cheap to clone.
#[derive(Clone)]
pub struct Aggregator {
    inner: Arc<Inner>,
}

/// The aggregator's state, shared by its clones and the views in flight.
pub(crate) struct Inner {
    pub(crate) sources: Vec<Arc<Source>>,
    /// Every section some source serves.
    pub(crate) known_sections: BTreeSet<String>,
    pub(crate) cache: Arc<SectionCache>,
    identity: Arc<dyn IdentityLookup>,
    pub(crate) authorizer: Arc<dyn Authorizer>,
    consent: Option<Consent>,
    policy: ViewPolicy,
}

impl std::fmt::Debug for Aggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregator")
            .field("sources", &self.inner.sources)
            .finish_non_exhaustive()
    }
}

impl Aggregator {
    /// An aggregator over `sources` (names must be unique).
    pub fn new(
        sources: Vec<Source>,
        identity: Arc<dyn IdentityLookup>,
        authorizer: Arc<dyn Authorizer>,
        policy: ViewPolicy,
    ) -> Result<Self, DuplicateSource> {
        let mut names = BTreeSet::new();
        if let Some(dup) = sources.iter().find(|s| !names.insert(s.name().to_owned())) {
            return Err(DuplicateSource(dup.name().to_owned()));
        }
        let known_sections = sources
            .iter()
            .flat_map(|s| s.sections().map(str::to_owned))
            .collect();
        let inner = Arc::new(Inner {
            sources: sources.into_iter().map(Arc::new).collect(),
            known_sections,
            cache: Arc::new(SectionCache::new(policy.cache_max_bytes)),
            identity,
            authorizer,
            consent: None,
            policy,
        });
        crate::telemetry::observe(Arc::downgrade(&inner.cache), &inner.sources);
        Ok(Self { inner })
    }

    /// The same aggregator, asking `consent` before every view (see
    /// [`tessera_consent::Consent`]). Its cache and counters are shared with
    /// `self`'s other clones.
    pub fn with_consent(self, consent: Consent) -> Self {
        let inner = &self.inner;
        Self {
            inner: Arc::new(Inner {
                sources: inner.sources.clone(),
                known_sections: inner.known_sections.clone(),
                cache: inner.cache.clone(),
                identity: inner.identity.clone(),
                authorizer: inner.authorizer.clone(),
                consent: Some(consent),
                policy: inner.policy.clone(),
            }),
        }
    }

    /// The configured sources.
    pub fn sources(&self) -> &[Arc<Source>] {
        &self.inner.sources
    }

    /// The cache's counters.
    pub fn cache_stats(&self) -> &CacheStats {
        self.inner.cache.stats()
    }

    /// Bytes the cache holds.
    pub async fn cache_bytes(&self) -> u64 {
        self.inner.cache.weighted_size().await
    }

    /// The deadline for a view whose caller allows `timeout` (none: the
    /// default), capped, minus the reserve for assembly.
    pub fn deadline(&self, timeout: Option<Duration>) -> Instant {
        let policy = &self.inner.policy;
        let timeout = timeout
            .unwrap_or(policy.default_timeout)
            .min(policy.max_timeout);
        Instant::now() + timeout.saturating_sub(policy.deadline_reserve)
    }

    /// Every section some source serves.
    pub fn known_sections(&self) -> BTreeSet<&str> {
        self.inner
            .sources
            .iter()
            .flat_map(|s| s.sections())
            .collect()
    }

    /// Assembles a view: every source's sections, or what arrived by the
    /// deadline with the rest named.
    pub async fn view(&self, request: ViewRequest) -> Result<View, ViewError> {
        let stream = self.stream(request).await?;
        let chunks: Vec<SectionChunk> = stream.chunks.collect().await;
        let _assemble = tracing::info_span!(target: "tessera::view", span::ASSEMBLE).entered();
        assemble(
            stream.identities,
            stream.denied,
            chunks,
            &self.inner.sources,
        )
    }

    /// Starts a view: identities and denied or withheld sections now, each
    /// source's chunk as it completes. Dropping the stream cancels the calls
    /// still running. Consent, when configured, is asked here, before any
    /// fetch. The identities, and the source records in the records'
    /// provenance, are limited to the systems the caller may see (a hidden
    /// record's `local_id` is empty).
    pub async fn stream(&self, request: ViewRequest) -> Result<ViewStream, ViewError> {
        crate::plan::precheck(&self.inner, &request)?;
        let resolve = tracing::info_span!(
            target: "tessera::view",
            span::RESOLVE,
            tessera.identity.records = tracing::field::Empty,
            tessera.master_id = tracing::field::Empty,
        );
        let identities = self
            .inner
            .identity
            .identities(&request.subject)
            .instrument(resolve.clone())
            .await?;
        resolve.record("tessera.identity.records", identities.records.len());
        if crate::telemetry::recording_master_ids() {
            resolve.record("tessera.master_id", identities.master.as_str());
        }
        drop(resolve);
        let (mut plans, mut denied) = crate::plan::plan(&self.inner, &identities, &request)?;
        if let Some(consent) = &self.inner.consent {
            let span = tracing::info_span!(target: "tessera::view", span::CONSENT);
            let withheld =
                crate::consent::withhold(&self.inner, consent, &identities, &request, &mut plans)
                    .instrument(span)
                    .await;
            denied.extend(withheld);
        }
        let planned = plans
            .iter()
            .flat_map(|p| {
                let source = self.inner.sources[p.source].name();
                p.sections
                    .iter()
                    .map(move |s| (source.to_owned(), s.to_string()))
            })
            .collect();
        let chunks = fan_out(&self.inner, plans, request.deadline, request.max_staleness);
        let mut identities = identities;
        let caller = request.caller;
        identities.records.retain(|r| caller.sees_system(&r.system));
        let chunks = if caller.grant.is_some() {
            chunks
                .map(move |mut chunk| {
                    for record in &mut chunk.records {
                        if !caller.sees_system(&record.source_record.system) {
                            record.source_record.local_id.clear();
                        }
                    }
                    chunk
                })
                .boxed()
        } else {
            chunks
        };
        Ok(ViewStream {
            identities,
            denied,
            planned,
            chunks,
        })
    }

    /// Drops the cached records of one source record, in every section.
    pub async fn invalidate_record(&self, record: &SourceRef) {
        self.invalidate(record, &[]).await;
    }

    /// Drops the cached records of every source record of a master.
    pub async fn invalidate_master(&self, master: &str) -> Result<(), LookupError> {
        let identities = self
            .inner
            .identity
            .identities(&Subject::Master(master.to_owned()))
            .await?;
        for record in &identities.records {
            self.invalidate(record, &[]).await;
        }
        Ok(())
    }

    /// The hook for change events from the silos.
    pub async fn on_change(&self, event: &ChangeEvent) {
        self.invalidate(&event.record, &event.sections).await;
    }

    async fn invalidate(&self, record: &SourceRef, sections: &[String]) {
        let local_id: Arc<str> = Arc::from(record.local_id.as_str());
        let keys: Vec<Key> = self
            .inner
            .sources
            .iter()
            .enumerate()
            .filter(|(_, s)| s.system() == record.system)
            .flat_map(|(index, source)| {
                let local_id = local_id.clone();
                source
                    .sections()
                    .filter(|s| sections.is_empty() || sections.iter().any(|x| x == s))
                    .map(move |section| Key {
                        source: index,
                        local_id: local_id.clone(),
                        section: Arc::from(section),
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        self.inner.cache.invalidate(keys).await;
    }
}

/// Two sources share a name.
#[derive(Debug, Clone, Error)]
#[error("two sources are named {0:?}")]
pub struct DuplicateSource(pub String);
