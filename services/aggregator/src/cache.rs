//! The section cache: records by (source, local ID, section), bounded in bytes,
//! with a TTL per source and section, and coalescing of concurrent misses.
//!
//! Entries are kept in moka until `ttl + stale_if_error` (so a failing source
//! can be answered from them, marked stale); whether an entry is fresh enough
//! for a request is decided here, from the entry's age on tokio's clock.
//!
//! The misses of one request start batches (one adapter call each, for many
//! keys) and one shared fetch per key fed by its batch; later misses for a key
//! join its fetch instead of asking the source again. A batch lives as long as
//! someone waits for one of its keys: when every waiter has gone (answered
//! from elsewhere, past its deadline, or disconnected), the batch is dropped
//! and the adapter call with it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared, WeakShared};
use opentelemetry::KeyValue;
use tessera_adapter_core::{FetchError, Record};
use tokio::time::Instant;

use crate::source::{Failure, Fetched};
use crate::telemetry::instruments;

/// A cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    /// The source's index in the aggregator.
    pub(crate) source: usize,
    pub(crate) local_id: Arc<str>,
    pub(crate) section: Arc<str>,
}

/// Records of one key, as fetched.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) records: Arc<[Record]>,
    pub(crate) skipped_malformed: u32,
    /// Wall-clock fetch time, for provenance.
    pub(crate) fetched_at: SystemTime,
    /// Fetch time on tokio's clock, for freshness.
    pub(crate) fetched: Instant,
    /// How long moka keeps it.
    keep_for: Duration,
    weight: u32,
}

impl Entry {
    pub(crate) fn new(fetched: Fetched, keep_for: Duration) -> Self {
        let bytes: usize = fetched.records.iter().map(Record::weight).sum();
        Self {
            records: fetched.records,
            skipped_malformed: fetched.skipped_malformed,
            fetched_at: SystemTime::now(),
            fetched: Instant::now(),
            keep_for,
            weight: u32::try_from(bytes + 128).unwrap_or(u32::MAX),
        }
    }

    pub(crate) fn age(&self) -> Duration {
        Instant::now().saturating_duration_since(self.fetched)
    }
}

type Outcome = Result<Arc<Entry>, Failure>;
/// One key's fetch, shared by every request waiting for the key.
pub(crate) type SharedFetch = Shared<BoxFuture<'static, Outcome>>;
/// What one batch fetched, by key.
pub(crate) type BatchResults = HashMap<Key, Result<Entry, Failure>>;

/// Counters, for metrics and the coalescing benchmark.
#[derive(Debug, Default)]
pub struct CacheStats {
    hits: AtomicU64,
    misses: AtomicU64,
    coalesced: AtomicU64,
}

impl CacheStats {
    /// Lookups answered from the cache.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
    /// Lookups that started a fetch.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }
    /// Lookups that joined a fetch already in flight.
    pub fn coalesced(&self) -> u64 {
        self.coalesced.load(Ordering::Relaxed)
    }
}

struct KeepFor;

impl moka::Expiry<Key, Arc<Entry>> for KeepFor {
    fn expire_after_create(
        &self,
        _key: &Key,
        value: &Arc<Entry>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.keep_for)
    }
}

/// What an entry is taken to weigh when the cache's table is sized up front.
/// moka's hash table grows by doubling, and while it grew, inserts stalled for
/// 0.1–0.5 ms: about 50 of them per doubling at 8,000 inserts/s, enough to be
/// the p99 of cold views while the cache filled. Sized for its byte bound at
/// this weight (a few records of a section), the table does not grow unless
/// entries are smaller; each entry sized for costs 16–32 bytes of table.
const PRESIZE_ENTRY_BYTES: u64 = 2 << 10;
/// Entries sized for at most, however large the bound (32 MiB of table).
const PRESIZE_MAX_ENTRIES: u64 = 1 << 20;

/// The cache.
pub(crate) struct SectionCache {
    entries: moka::future::Cache<Key, Arc<Entry>>,
    in_flight: Mutex<InFlight>,
    stats: CacheStats,
    /// Bytes inserted and removed (any cause), for a size gauge that does not
    /// wait for moka's housekeeping.
    bytes_added: AtomicU64,
    bytes_removed: Arc<AtomicU64>,
}

/// Entries the table is sized for, for a cache of `max_bytes`.
fn presized_entries(max_bytes: u64) -> usize {
    let entries = (max_bytes / PRESIZE_ENTRY_BYTES).min(PRESIZE_MAX_ENTRIES);
    usize::try_from(entries).unwrap_or(usize::MAX)
}

/// Fetches in flight by key. A fetch dropped by all its waiters leaves a dead
/// entry; they are swept whenever the map doubles.
#[derive(Default)]
struct InFlight {
    fetches: HashMap<Key, WeakShared<BoxFuture<'static, Outcome>>>,
    sweep_at: usize,
}

impl SectionCache {
    pub(crate) fn new(max_bytes: u64) -> Self {
        let removed = Arc::new(AtomicU64::new(0));
        let bytes_removed = Arc::clone(&removed);
        let entries = moka::future::Cache::builder()
            .max_capacity(max_bytes)
            .initial_capacity(presized_entries(max_bytes))
            .weigher(|_key: &Key, entry: &Arc<Entry>| entry.weight)
            .expire_after(KeepFor)
            .eviction_listener(move |_key, entry: Arc<Entry>, cause| {
                removed.fetch_add(u64::from(entry.weight), Ordering::Relaxed);
                let cause = match cause {
                    moka::notification::RemovalCause::Size => "size",
                    moka::notification::RemovalCause::Expired => "expired",
                    // Invalidated or replaced: not an eviction.
                    _ => return,
                };
                instruments()
                    .cache_evictions
                    .add(1, &[KeyValue::new("cause", cause)]);
            })
            .build();
        Self {
            entries,
            in_flight: Mutex::new(InFlight {
                fetches: HashMap::new(),
                sweep_at: 1024,
            }),
            stats: CacheStats::default(),
            bytes_added: AtomicU64::new(0),
            bytes_removed,
        }
    }

    pub(crate) fn stats(&self) -> &CacheStats {
        &self.stats
    }

    /// Bytes held, as the weigher counts them (after pending maintenance).
    pub(crate) async fn weighted_size(&self) -> u64 {
        self.entries.run_pending_tasks().await;
        self.entries.weighted_size()
    }

    /// The cached entry for `key`, fresh or not.
    /// Bytes held: inserted less removed (no waiting for housekeeping).
    pub(crate) fn weighted_size_now(&self) -> u64 {
        self.bytes_added
            .load(Ordering::Relaxed)
            .saturating_sub(self.bytes_removed.load(Ordering::Relaxed))
    }

    /// Entries held, as of the cache's last housekeeping.
    pub(crate) fn entry_count(&self) -> u64 {
        self.entries.entry_count()
    }

    pub(crate) async fn get(&self, key: &Key) -> Option<Arc<Entry>> {
        self.entries.get(key).await
    }

    pub(crate) fn hit(&self) {
        self.stats.hits.fetch_add(1, Ordering::Relaxed);
    }

    /// The in-flight fetch of each of `keys`, joined (`true`) when another
    /// request started it, else started here: `start` splits the keys nobody
    /// is fetching into batches and makes one fetch per batch (lazily; it runs
    /// while someone waits for one of its keys). A batch stores its successful
    /// results in the cache before any of its keys' fetches completes.
    pub(crate) fn fetch_many(
        self: &Arc<Self>,
        keys: &[Key],
        start: impl FnOnce(&[Key]) -> Vec<(Vec<Key>, BoxFuture<'static, BatchResults>)>,
    ) -> HashMap<Key, (SharedFetch, bool)> {
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut fetches = HashMap::with_capacity(keys.len());
        let mut new = Vec::new();
        for key in keys {
            if let Some(shared) = in_flight.fetches.get(key).and_then(WeakShared::upgrade) {
                self.stats.coalesced.fetch_add(1, Ordering::Relaxed);
                fetches.insert(key.clone(), (shared, true));
            } else {
                new.push(key.clone());
            }
        }
        if new.is_empty() {
            return fetches;
        }
        self.stats
            .misses
            .fetch_add(new.len() as u64, Ordering::Relaxed);
        for (batch_keys, fetch) in start(&new) {
            let batch = self.batch(batch_keys.clone(), fetch);
            for key in batch_keys {
                let (batch, owned_key) = (batch.clone(), key.clone());
                let shared = async move {
                    batch.await.get(&owned_key).cloned().unwrap_or_else(|| {
                        Err(Failure::Fetch(FetchError::Malformed {
                            message: "the batch had no result for the pair".to_owned(),
                        }))
                    })
                }
                .boxed()
                .shared();
                if let Some(weak) = shared.downgrade() {
                    in_flight.fetches.insert(key.clone(), weak);
                }
                fetches.insert(key, (shared, false));
            }
        }
        if in_flight.fetches.len() >= in_flight.sweep_at {
            in_flight.fetches.retain(|_, weak| weak.upgrade().is_some());
            in_flight.sweep_at = (in_flight.fetches.len() * 2).max(1024);
        }
        fetches
    }

    /// One batch's fetch, shared by its keys' fetches: stores what it got and
    /// leaves the in-flight map.
    fn batch(
        self: &Arc<Self>,
        keys: Vec<Key>,
        fetch: BoxFuture<'static, BatchResults>,
    ) -> Shared<BoxFuture<'static, Arc<HashMap<Key, Outcome>>>> {
        let cache = Arc::clone(self);
        async move {
            let results = fetch.await;
            let mut outcomes = HashMap::with_capacity(results.len());
            for (key, result) in results {
                let outcome = result.map(Arc::new);
                if let Ok(entry) = &outcome {
                    cache
                        .bytes_added
                        .fetch_add(u64::from(entry.weight), Ordering::Relaxed);
                    cache.entries.insert(key.clone(), entry.clone()).await;
                }
                outcomes.insert(key, outcome);
            }
            let mut in_flight = cache
                .in_flight
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for key in &keys {
                in_flight.fetches.remove(key);
            }
            Arc::new(outcomes)
        }
        .boxed()
        .shared()
    }

    /// Drops the given keys' entries.
    pub(crate) async fn invalidate(&self, keys: impl IntoIterator<Item = Key>) {
        for key in keys {
            self.entries.invalidate(&key).await;
        }
    }
}
