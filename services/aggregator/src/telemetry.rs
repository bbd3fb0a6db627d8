//! The aggregator's spans and metrics.
//!
//! Spans (target `tessera::view`), one per step of a view: `identity.resolve`,
//! `view.section` per (source, section), `cache.lookup` per (source, local ID,
//! section) with its result, `adapter.call` per batch call to a source (what the
//! cache waits for) and `adapter.attempt` per attempt inside it (the first, each
//! retry and each hedge), then `view.assemble`. Attributes name sources and
//! sections (from the config) and outcomes from fixed sets; never a local ID, a
//! record or a message from a silo. Attribute names follow OpenTelemetry
//! semantic conventions 1.42.0 where one exists (`error.type`), `tessera.*`
//! otherwise.
//!
//! Metrics go through the global meter provider, which the gateway installs
//! before it builds the aggregator (instruments made earlier are no-ops).
//! Labels come from small fixed sets: source and section names from the config,
//! and outcome words listed here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use opentelemetry::metrics::{Counter, Histogram};
use opentelemetry::{KeyValue, StringValue};

use crate::breaker::BreakerState;
use crate::cache::SectionCache;
use crate::source::Source;

static RECORD_MASTER_IDS: AtomicBool = AtomicBool::new(false);

/// Whether spans carry master IDs (`tessera.master_id`): only where master IDs
/// are opaque and not identifying. Off unless the gateway's config says so.
pub fn record_master_ids(on: bool) {
    RECORD_MASTER_IDS.store(on, Ordering::Relaxed);
}

/// See [`record_master_ids`].
pub(crate) fn recording_master_ids() -> bool {
    RECORD_MASTER_IDS.load(Ordering::Relaxed)
}

/// Span names: constants, so dashboards and tests can rely on them.
pub(crate) mod span {
    /// Finding the subject's master and linked records.
    pub(crate) const RESOLVE: &str = "identity.resolve";
    /// Everything for one (source, section): lookups, calls, the chunk.
    pub(crate) const SECTION: &str = "view.section";
    /// One (source, local ID, section) in the cache.
    pub(crate) const CACHE_LOOKUP: &str = "cache.lookup";
    /// One call to a source, with its retries and hedges inside.
    pub(crate) const ADAPTER_CALL: &str = "adapter.call";
    /// One attempt of a call: the first, a retry or a hedge.
    pub(crate) const ADAPTER_ATTEMPT: &str = "adapter.attempt";
    /// Putting the sections together into the answer.
    pub(crate) const ASSEMBLE: &str = "view.assemble";
    /// The patient's consent, asked once per view before fetching.
    pub(crate) const CONSENT: &str = "view.consent";
}

/// Histogram buckets for durations, in seconds: 0.5 ms to 10 s.
const DURATION_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0,
];

/// The aggregator's instruments.
pub(crate) struct Instruments {
    /// `tessera.adapter.call.duration` (s): each attempt, by source and
    /// outcome (an attempt is one batch call, over any number of sections).
    pub(crate) attempt_duration: Histogram<f64>,
    /// `tessera.adapter.retries`: retries sent, by source.
    pub(crate) retries: Counter<u64>,
    /// `tessera.adapter.hedges`: hedges sent and won, by source and `result`.
    pub(crate) hedges: Counter<u64>,
    /// `tessera.cache.lookups`: by source, section and result (`hit`, `miss`,
    /// `coalesced`, `stale`).
    pub(crate) cache_lookups: Counter<u64>,
    /// `tessera.cache.evictions`: entries removed by size or age, by `cause`.
    pub(crate) cache_evictions: Counter<u64>,
    /// `tessera.view.unreachable`: (source, section) parts of views that were
    /// not served, by source and status.
    pub(crate) unreachable: Counter<u64>,
}

/// The process's instruments, made on first use from the global meter.
pub(crate) fn instruments() -> &'static Instruments {
    static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();
    INSTRUMENTS.get_or_init(|| {
        let meter = opentelemetry::global::meter("tessera");
        Instruments {
            attempt_duration: meter
                .f64_histogram("tessera.adapter.call.duration")
                .with_unit("s")
                .with_description("Duration of each call attempt to a source's adapter")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            retries: meter
                .u64_counter("tessera.adapter.retries")
                .with_description("Retries of unavailable calls to a source")
                .build(),
            hedges: meter
                .u64_counter("tessera.adapter.hedges")
                .with_description("Hedged calls to a source: sent, and won (answered first)")
                .build(),
            cache_lookups: meter
                .u64_counter("tessera.cache.lookups")
                .with_description(
                    "Section cache lookups: hit, miss, coalesced (joined a fetch) or stale",
                )
                .build(),
            cache_evictions: meter
                .u64_counter("tessera.cache.evictions")
                .with_description("Section cache entries removed for size or age")
                .build(),
            unreachable: meter
                .u64_counter("tessera.view.unreachable")
                .with_description("Parts of views a source did not serve, by status")
                .build(),
        }
    })
}

/// A `section` label, sharing the section name's allocation.
pub(crate) fn section_label(section: &Arc<str>) -> KeyValue {
    KeyValue::new("section", StringValue::from(Arc::clone(section)))
}

/// Registers the gauges read at each collection: the cache's bytes and
/// entries, and each source's circuit breaker (0 closed, 1 half-open, 2 open).
/// They hold the cache and sources weakly and observe nothing once dropped.
pub(crate) fn observe(cache: Weak<SectionCache>, sources: &[Arc<Source>]) {
    let meter = opentelemetry::global::meter("tessera");
    let entries = cache.clone();
    meter
        .u64_observable_gauge("tessera.cache.size")
        .with_unit("By")
        .with_description("Bytes the section cache holds (its weigher's estimate)")
        .with_callback(move |observer| {
            if let Some(cache) = cache.upgrade() {
                observer.observe(cache.weighted_size_now(), &[]);
            }
        })
        .build();
    meter
        .u64_observable_gauge("tessera.cache.entries")
        .with_description("Entries the section cache holds")
        .with_callback(move |observer| {
            if let Some(cache) = entries.upgrade() {
                observer.observe(cache.entry_count(), &[]);
            }
        })
        .build();
    let sources: Vec<Weak<Source>> = sources.iter().map(Arc::downgrade).collect();
    meter
        .u64_observable_gauge("tessera.adapter.breaker.state")
        .with_description("Each source's circuit breaker: 0 closed, 1 half-open, 2 open")
        .with_callback(move |observer| {
            for source in sources.iter().filter_map(Weak::upgrade) {
                let state = match source.breaker_state() {
                    BreakerState::Closed => 0,
                    BreakerState::HalfOpen => 1,
                    BreakerState::Open => 2,
                };
                observer.observe(state, &[source.source_label()]);
            }
        })
        .build();
}
