//! The aggregator: resolve, plan, fan out, assemble.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures_util::stream::{BoxStream, FuturesUnordered};
use futures_util::{FutureExt, StreamExt};
use opentelemetry::KeyValue;
use tessera_adapter_core::{FetchError, Record};
use thiserror::Error;
use tokio::time::Instant;
use tracing::Instrument;

use crate::authz::{Authorizer, Caller, Purpose};
use crate::cache::{CacheStats, Entry, Key, SectionCache};
use crate::policy::ViewPolicy;
use crate::source::{Failure, Source};
use crate::telemetry::{instruments, section_label, span};

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
    /// Denied (source, section) pairs, known before any call.
    pub denied: Vec<SourceOutcome>,
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

struct Inner {
    sources: Vec<Arc<Source>>,
    /// Every section some source serves.
    known_sections: BTreeSet<String>,
    cache: Arc<SectionCache>,
    identity: Arc<dyn IdentityLookup>,
    authorizer: Arc<dyn Authorizer>,
    policy: ViewPolicy,
}

impl std::fmt::Debug for Aggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregator")
            .field("sources", &self.inner.sources)
            .finish_non_exhaustive()
    }
}

/// One planned (source, section) over the source's local IDs.
struct Task {
    source: usize,
    section: Arc<str>,
    local_ids: Vec<Arc<str>>,
}

/// One pair's result.
struct PairOutcome {
    records: Vec<ViewRecord>,
    state: SourceState,
    message: String,
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
            policy,
        });
        crate::telemetry::observe(Arc::downgrade(&inner.cache), &inner.sources);
        Ok(Self { inner })
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

    /// Starts a view: identities and denied sections now, each source's chunk
    /// as it completes. Dropping the stream cancels the calls still running.
    pub async fn stream(&self, request: ViewRequest) -> Result<ViewStream, ViewError> {
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
        let (tasks, denied) = self.plan(&identities, &request)?;
        let chunks: FuturesUnordered<_> = tasks
            .into_iter()
            .map(|task| {
                let inner = self.inner.clone();
                let section = tracing::info_span!(
                    target: "tessera::view",
                    span::SECTION,
                    tessera.source = inner.sources[task.source].name(),
                    tessera.section = &*task.section,
                    tessera.state = tracing::field::Empty,
                    tessera.records = tracing::field::Empty,
                );
                run(inner, task, request.deadline, request.max_staleness)
                    .instrument(section)
                    .boxed()
            })
            .collect();
        Ok(ViewStream {
            identities,
            denied,
            chunks: chunks.boxed(),
        })
    }

    /// Plans the calls: requested sections the caller may see, from the
    /// sources that serve them, for the master's local IDs in their systems.
    fn plan(
        &self,
        identities: &Identities,
        request: &ViewRequest,
    ) -> Result<(Vec<Task>, Vec<SourceOutcome>), ViewError> {
        for (index, section) in request.sections.iter().enumerate() {
            if !self.inner.known_sections.contains(section) {
                return Err(ViewError::UnknownSection {
                    section: section.clone(),
                    index,
                });
            }
        }
        let wanted = |section: &str| {
            request.sections.is_empty() || request.sections.iter().any(|s| s == section)
        };
        let (mut tasks, mut denied) = (Vec::new(), Vec::new());
        for (index, source) in self.inner.sources.iter().enumerate() {
            let local_ids: Vec<Arc<str>> = identities
                .records
                .iter()
                .filter(|r| r.system == source.system())
                .map(|r| Arc::from(r.local_id.as_str()))
                .collect();
            if local_ids.is_empty() {
                continue;
            }
            for section in source.sections().filter(|s| wanted(s)) {
                if self.inner.authorizer.allows(
                    &request.caller,
                    request.purpose,
                    source.name(),
                    section,
                ) {
                    tasks.push(Task {
                        source: index,
                        section: Arc::from(section),
                        local_ids: local_ids.clone(),
                    });
                } else {
                    denied.push(SourceOutcome {
                        source: source.name().to_owned(),
                        section: section.to_owned(),
                        state: SourceState::Denied,
                        message: "not allowed for this caller and purpose".to_owned(),
                        record_count: 0,
                        latency: Duration::ZERO,
                    });
                }
            }
        }
        if tasks.is_empty() && !denied.is_empty() {
            return Err(ViewError::AllDenied);
        }
        Ok((tasks, denied))
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

/// Runs one task: every local ID of the source for the section, concurrently.
async fn run(
    inner: Arc<Inner>,
    task: Task,
    deadline: Instant,
    max_staleness: Option<Duration>,
) -> SectionChunk {
    let start = Instant::now();
    let source = &inner.sources[task.source];
    let pairs = task.local_ids.iter().map(|local_id| {
        pair(
            &inner,
            Key {
                source: task.source,
                local_id: local_id.clone(),
                section: task.section.clone(),
            },
            deadline,
            max_staleness,
        )
    });
    let outcomes = futures_util::future::join_all(pairs).await;
    let worst = outcomes
        .iter()
        .max_by_key(|o| o.state)
        .map(|o| (o.state, o.message.clone()))
        .unwrap_or((SourceState::Ok, String::new()));
    let records: Vec<ViewRecord> = outcomes.into_iter().flat_map(|o| o.records).collect();
    let current = tracing::Span::current();
    current.record("tessera.state", worst.0.name());
    current.record("tessera.records", records.len());
    if worst.0.is_unreachable() {
        instruments().unreachable.add(
            1,
            &[
                source.source_label(),
                KeyValue::new("status", worst.0.name()),
            ],
        );
    }
    SectionChunk {
        section: task.section.to_string(),
        source: source.name().to_owned(),
        status: SourceOutcome {
            source: source.name().to_owned(),
            section: task.section.to_string(),
            state: worst.0,
            message: worst.1,
            record_count: records.len(),
            latency: start.elapsed(),
        },
        records,
    }
}

/// One (source, local ID, section): the cache, or one coalesced fetch.
async fn pair(
    inner: &Arc<Inner>,
    key: Key,
    deadline: Instant,
    max_staleness: Option<Duration>,
) -> PairOutcome {
    let source = &inner.sources[key.source];
    let lookup = tracing::info_span!(
        target: "tessera::view",
        span::CACHE_LOOKUP,
        tessera.source = source.name(),
        tessera.section = &*key.section,
        tessera.cache.result = tracing::field::Empty,
    );
    let labels = [source.source_label(), section_label(&key.section)];
    let (outcome, result) = lookup_or_fetch(inner, key, deadline, max_staleness)
        .instrument(lookup.clone())
        .await;
    lookup.record("tessera.cache.result", result);
    let [source_label, section_label] = labels;
    instruments().cache_lookups.add(
        1,
        &[source_label, section_label, KeyValue::new("result", result)],
    );
    outcome
}

/// The cache, or a fetch (started or joined); the outcome and the lookup's
/// result word (`hit`, `miss`, `coalesced`, `stale`).
async fn lookup_or_fetch(
    inner: &Arc<Inner>,
    key: Key,
    deadline: Instant,
    max_staleness: Option<Duration>,
) -> (PairOutcome, &'static str) {
    let source = &inner.sources[key.source];
    let ttl = source.ttl(&key.section);
    let fresh_for = max_staleness.filter(|d| !d.is_zero()).unwrap_or(ttl);
    let cached = inner.cache.get(&key).await;
    if let Some(entry) = cached.as_ref().filter(|e| e.age() <= fresh_for) {
        inner.cache.hit();
        let outcome = served(source, &key, entry, true, SourceState::Ok, String::new());
        return (outcome, "hit");
    }
    let keep_for = ttl + source.stale_if_error();
    let mut result = "miss";
    let failure = loop {
        let (shared, joined) = inner.cache.fetch(&key, || {
            let (source, key) = (source.clone(), key.clone());
            async move {
                let fetched = source.fetch(&key.local_id, &key.section, deadline).await?;
                Ok(Entry::new(fetched, keep_for))
            }
            .boxed()
        });
        if joined {
            result = "coalesced";
        }
        match tokio::time::timeout_at(deadline, shared).await {
            Ok(Ok(entry)) => {
                let outcome = served(source, &key, &entry, false, SourceState::Ok, String::new());
                return (outcome, result);
            }
            // A fetch joined from a caller with an earlier deadline timed out:
            // start one with ours if there is time left.
            Ok(Err(Failure::Timeout)) if Instant::now() < deadline => continue,
            Ok(Err(failure)) => break failure,
            Err(_) => break Failure::Timeout,
        }
    };
    let message = describe(&failure);
    if let Some(entry) = &cached {
        let outcome = served(
            source,
            &key,
            entry,
            true,
            SourceState::Stale,
            format!("served from cache: {message}"),
        );
        return (outcome, "stale");
    }
    let state = match failure {
        Failure::Timeout => SourceState::Timeout,
        Failure::CircuitOpen => SourceState::CircuitOpen,
        Failure::Fetch(FetchError::NotFound) => SourceState::Ok,
        Failure::Fetch(_) => SourceState::Unavailable,
    };
    let outcome = PairOutcome {
        records: Vec::new(),
        state,
        message,
    };
    (outcome, result)
}

fn describe(failure: &Failure) -> String {
    match failure {
        Failure::Timeout => "no answer within the deadline".to_owned(),
        Failure::CircuitOpen => "circuit breaker open".to_owned(),
        Failure::Fetch(e) => e.to_string(),
    }
}

fn served(
    source: &Source,
    key: &Key,
    entry: &Entry,
    cache_hit: bool,
    state: SourceState,
    message: String,
) -> PairOutcome {
    let age = entry.age();
    let source_record = SourceRef {
        system: source.system().to_owned(),
        local_id: key.local_id.to_string(),
    };
    let media_type = source.media_type(&key.section).to_owned();
    let records = entry
        .records
        .iter()
        .map(|record| ViewRecord {
            record: record.clone(),
            media_type: media_type.clone(),
            source: source.name().to_owned(),
            source_record: source_record.clone(),
            fetched_at: entry.fetched_at,
            cache_hit,
            age,
        })
        .collect();
    let message = if message.is_empty() && entry.skipped_malformed > 0 {
        format!("{} malformed records skipped", entry.skipped_malformed)
    } else {
        message
    };
    PairOutcome {
        records,
        state,
        message,
    }
}

/// Assembles chunks into a view, in the planned order.
fn assemble(
    identities: Identities,
    denied: Vec<SourceOutcome>,
    mut chunks: Vec<SectionChunk>,
    sources: &[Arc<Source>],
) -> Result<View, ViewError> {
    let order = |name: &str| sources.iter().position(|s| s.name() == name);
    chunks.sort_by(|a, b| (order(&a.source), &a.section).cmp(&(order(&b.source), &b.section)));
    let any_served = chunks
        .iter()
        .any(|c| matches!(c.status.state, SourceState::Ok | SourceState::Stale));
    if !chunks.is_empty() && !any_served {
        return Err(ViewError::AllFailed {
            statuses: chunks.into_iter().map(|c| c.status).collect(),
        });
    }
    let mut sections: BTreeMap<String, Vec<ViewRecord>> = BTreeMap::new();
    let mut statuses = Vec::with_capacity(chunks.len() + denied.len());
    let mut unreachable: Vec<String> = Vec::new();
    for chunk in chunks {
        if chunk.status.state.is_unreachable() && !unreachable.contains(&chunk.source) {
            unreachable.push(chunk.source.clone());
        }
        // A section appears when a source answered it, even with no records
        // (the person has none); not when its only source failed.
        if matches!(chunk.status.state, SourceState::Ok | SourceState::Stale) {
            sections
                .entry(chunk.section)
                .or_default()
                .extend(chunk.records);
        }
        statuses.push(chunk.status);
    }
    statuses.extend(denied);
    Ok(View {
        identities,
        sections,
        statuses,
        unreachable,
        assembled_at: SystemTime::now(),
    })
}

/// Folds a stream's chunks into the closing summary: statuses and unreachable.
pub fn summarize(
    chunks: &[SourceOutcome],
    denied: &[SourceOutcome],
) -> (Vec<SourceOutcome>, Vec<String>) {
    let mut unreachable: Vec<String> = Vec::new();
    for status in chunks {
        if status.state.is_unreachable() && !unreachable.contains(&status.source) {
            unreachable.push(status.source.clone());
        }
    }
    let statuses = chunks.iter().chain(denied).cloned().collect();
    (statuses, unreachable)
}
