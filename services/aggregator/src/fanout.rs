//! The fan-out: every planned source at once, each asked once per view.
//!
//! For each source, the keys (local ID × section) are looked up in the cache
//! first; the misses nobody is fetching yet become one batch call (or as few
//! as the adapter's batch capabilities allow, see [`crate::batch`]), and
//! misses another view is already fetching are joined. Each (source, section)
//! then waits for its keys and yields a [`SectionChunk`]; chunks stream out as
//! they complete, so one slow source never holds back the others.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{BoxFuture, Shared};
use futures_util::stream::{BoxStream, FuturesUnordered};
use futures_util::{FutureExt, StreamExt};
use opentelemetry::KeyValue;
use tessera_adapter_core::FetchError;
use tokio::time::Instant;
use tracing::Instrument;

use crate::batch::{self, Pair};
use crate::cache::{Entry, Key, SharedFetch};
use crate::plan::SourcePlan;
use crate::source::{Failure, Source};
use crate::telemetry::{instruments, section_label, span};
use crate::view::{Inner, SectionChunk, SourceOutcome, SourceRef, SourceState, ViewRecord};

/// Where each key of a source's view comes from.
enum Lookup {
    /// Fresh in the cache.
    Hit(Arc<Entry>),
    /// A fetch, started by this view or joined (`joined`); `cached` is an
    /// older entry to serve stale if the fetch fails.
    Fetch {
        fetch: SharedFetch,
        joined: bool,
        cached: Option<Arc<Entry>>,
    },
}

/// A source's lookups, shared by its sections.
type Lookups = Shared<BoxFuture<'static, Arc<HashMap<Key, Lookup>>>>;

/// One pair's result.
struct PairOutcome {
    records: Vec<ViewRecord>,
    state: SourceState,
    message: String,
}

/// Starts every planned source; the chunks in completion order. Dropping the
/// stream drops the calls nobody else waits for.
pub(crate) fn fan_out(
    inner: &Arc<Inner>,
    plans: Vec<SourcePlan>,
    deadline: Instant,
    max_staleness: Option<Duration>,
) -> BoxStream<'static, SectionChunk> {
    let chunks = FuturesUnordered::new();
    for plan in plans {
        let lookups = look_up(
            inner.clone(),
            plan.source,
            plan.local_ids.clone(),
            plan.sections.clone(),
            deadline,
            max_staleness,
        )
        .boxed()
        .shared();
        for section in plan.sections {
            let span = tracing::info_span!(
                target: "tessera::view",
                span::SECTION,
                tessera.source = inner.sources[plan.source].name(),
                tessera.section = &*section,
                tessera.state = tracing::field::Empty,
                tessera.records = tracing::field::Empty,
            );
            let local_ids = plan.local_ids.clone();
            let lookups = lookups.clone();
            let run = run(
                inner.clone(),
                lookups,
                plan.source,
                section,
                local_ids,
                deadline,
            );
            chunks.push(run.instrument(span).boxed());
        }
    }
    chunks.boxed()
}

/// Looks up every key of a source in the cache and starts (or joins) the
/// fetches of the misses: one batch for the keys nobody is fetching.
async fn look_up(
    inner: Arc<Inner>,
    source: usize,
    local_ids: Vec<Arc<str>>,
    sections: Vec<Arc<str>>,
    deadline: Instant,
    max_staleness: Option<Duration>,
) -> Arc<HashMap<Key, Lookup>> {
    let of = &inner.sources[source];
    let mut lookups = HashMap::with_capacity(local_ids.len() * sections.len());
    let mut misses = Vec::new();
    let mut stale = HashMap::new();
    for local_id in &local_ids {
        for section in &sections {
            let key = Key {
                source,
                local_id: local_id.clone(),
                section: section.clone(),
            };
            let fresh_for = max_staleness
                .filter(|d| !d.is_zero())
                .unwrap_or_else(|| of.ttl(section));
            let cached = inner.cache.get(&key).await;
            match cached {
                Some(entry) if entry.age() <= fresh_for => {
                    lookups.insert(key, Lookup::Hit(entry));
                }
                cached => {
                    misses.push(key.clone());
                    stale.insert(key, cached);
                }
            }
        }
    }
    for (key, (fetch, joined)) in start(&inner, source, &misses, deadline) {
        let cached = stale.remove(&key).flatten();
        let lookup = Lookup::Fetch {
            fetch,
            joined,
            cached,
        };
        lookups.insert(key, lookup);
    }
    Arc::new(lookups)
}

/// The fetch of each of `keys` (all of one source): joined when in flight,
/// else in batches made from the adapter's capabilities, each one call to the
/// source with its retries, hedging, breaker and concurrency limit.
fn start(
    inner: &Arc<Inner>,
    source: usize,
    keys: &[Key],
    deadline: Instant,
) -> HashMap<Key, (SharedFetch, bool)> {
    let of = inner.sources[source].clone();
    inner.cache.fetch_many(keys, |new| {
        let pairs: Vec<Pair> = new
            .iter()
            .map(|k| (k.local_id.clone(), k.section.clone()))
            .collect();
        batch::requests(&pairs, of.batch_fetch())
            .into_iter()
            .map(|request| {
                let keys = request
                    .iter()
                    .map(|(local_id, section)| Key {
                        source,
                        local_id: local_id.clone(),
                        section: section.clone(),
                    })
                    .collect();
                let of = of.clone();
                let fetch = async move {
                    let results = of.fetch(request, deadline).await;
                    results
                        .into_iter()
                        .map(|((local_id, section), result)| {
                            let keep_for = of.ttl(&section) + of.stale_if_error();
                            let entry = result.map(|fetched| Entry::new(fetched, keep_for));
                            let key = Key {
                                source,
                                local_id,
                                section,
                            };
                            (key, entry)
                        })
                        .collect()
                };
                (keys, fetch.boxed())
            })
            .collect()
    })
}

/// One (source, section): waits for its keys and makes the chunk.
async fn run(
    inner: Arc<Inner>,
    lookups: Lookups,
    source: usize,
    section: Arc<str>,
    local_ids: Vec<Arc<str>>,
    deadline: Instant,
) -> SectionChunk {
    let start = Instant::now();
    let lookups = lookups.await;
    let of = &inner.sources[source];
    let pairs = local_ids.iter().map(|local_id| {
        let key = Key {
            source,
            local_id: local_id.clone(),
            section: section.clone(),
        };
        pair(&inner, lookups.get(&key), key, deadline)
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
            &[of.source_label(), KeyValue::new("status", worst.0.name())],
        );
    }
    SectionChunk {
        section: section.to_string(),
        source: of.name().to_owned(),
        status: SourceOutcome {
            source: of.name().to_owned(),
            section: section.to_string(),
            state: worst.0,
            message: worst.1,
            record_count: records.len(),
            latency: start.elapsed(),
        },
        records,
    }
}

/// One (source, local ID, section): the cache, or its fetch, in a
/// `cache.lookup` span (the batch call's span opens under the first one that
/// waits for it).
async fn pair(
    inner: &Arc<Inner>,
    lookup: Option<&Lookup>,
    key: Key,
    deadline: Instant,
) -> PairOutcome {
    let source = &inner.sources[key.source];
    let span = tracing::info_span!(
        target: "tessera::view",
        span::CACHE_LOOKUP,
        tessera.source = source.name(),
        tessera.section = &*key.section,
        tessera.cache.result = tracing::field::Empty,
    );
    let labels = [source.source_label(), section_label(&key.section)];
    let (outcome, result) = wait(inner, lookup, key, deadline)
        .instrument(span.clone())
        .await;
    span.record("tessera.cache.result", result);
    let [source_label, section_label] = labels;
    instruments().cache_lookups.add(
        1,
        &[source_label, section_label, KeyValue::new("result", result)],
    );
    outcome
}

/// The key's records: cached, or when its fetch completes; the outcome and
/// the lookup's result word (`hit`, `miss`, `coalesced`, `stale`).
async fn wait(
    inner: &Arc<Inner>,
    lookup: Option<&Lookup>,
    key: Key,
    deadline: Instant,
) -> (PairOutcome, &'static str) {
    let source = &inner.sources[key.source];
    let (mut fetch, joined, cached) = match lookup {
        Some(Lookup::Hit(entry)) => {
            inner.cache.hit();
            let outcome = served(source, &key, entry, true, SourceState::Ok, String::new());
            return (outcome, "hit");
        }
        Some(Lookup::Fetch {
            fetch,
            joined,
            cached,
        }) => (fetch.clone(), *joined, cached.clone()),
        None => {
            // Every planned key was looked up; not reached.
            let (fetch, joined) = fetch_one(inner, &key, deadline);
            (fetch, joined, None)
        }
    };
    let mut result = if joined { "coalesced" } else { "miss" };
    let failure = loop {
        match tokio::time::timeout_at(deadline, fetch).await {
            Ok(Ok(entry)) => {
                let outcome = served(source, &key, &entry, false, SourceState::Ok, String::new());
                return (outcome, result);
            }
            // A fetch joined from a view with an earlier deadline timed out:
            // start one with ours if there is time left.
            Ok(Err(Failure::Timeout)) if Instant::now() < deadline => {
                let (again, joined) = fetch_one(inner, &key, deadline);
                if joined {
                    result = "coalesced";
                }
                fetch = again;
            }
            Ok(Err(failure)) => break failure,
            Err(_) => break Failure::Timeout,
        }
    };
    let message = describe(&failure);
    if let Some(entry) = &cached {
        let message = format!("served from cache: {message}");
        let outcome = served(source, &key, entry, true, SourceState::Stale, message);
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

/// The fetch of one key, joined or started.
fn fetch_one(inner: &Arc<Inner>, key: &Key, deadline: Instant) -> (SharedFetch, bool) {
    start(inner, key.source, std::slice::from_ref(key), deadline)
        .remove(key)
        .unwrap_or_else(|| {
            // `start` answers every key it is given; not reached.
            let failure = Failure::Fetch(FetchError::Malformed {
                message: "no fetch for the pair".to_owned(),
            });
            (
                futures_util::future::ready(Err(failure)).boxed().shared(),
                false,
            )
        })
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
