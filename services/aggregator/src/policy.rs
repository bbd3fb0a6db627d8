//! How the aggregator treats each source and the view as a whole. Built by the
//! gateway from its config file; defaults are what a production deployment
//! would start with.

use std::collections::BTreeMap;
use std::time::Duration;

/// The view-wide settings.
#[derive(Debug, Clone)]
pub struct ViewPolicy {
    /// The deadline of a view when the caller sets none.
    pub default_timeout: Duration,
    /// The longest deadline a caller may ask for.
    pub max_timeout: Duration,
    /// Time kept back from the caller's deadline for assembly and the response.
    pub deadline_reserve: Duration,
    /// The cache's bound, in bytes of records.
    pub cache_max_bytes: u64,
}

impl Default for ViewPolicy {
    fn default() -> Self {
        Self {
            default_timeout: Duration::from_secs(2),
            max_timeout: Duration::from_secs(30),
            deadline_reserve: Duration::from_millis(5),
            cache_max_bytes: 256 << 20,
        }
    }
}

/// How one source is called and cached.
#[derive(Debug, Clone)]
pub struct SourcePolicy {
    /// The longest a call may take, whatever the caller's deadline.
    pub timeout: Duration,
    /// Calls in flight at once; more wait for a slot within their deadline.
    pub max_concurrency: usize,
    /// How long records stay fresh in the cache, unless a section says otherwise.
    pub ttl: Duration,
    /// Per-section TTLs.
    pub section_ttl: BTreeMap<String, Duration>,
    /// How long past its TTL a record is kept to be served, marked stale, when
    /// the source fails.
    pub stale_if_error: Duration,
    /// Retries of calls that failed as unavailable.
    pub retry: RetryPolicy,
    /// Hedged calls.
    pub hedge: HedgePolicy,
    /// The circuit breaker.
    pub breaker: BreakerPolicy,
}

impl Default for SourcePolicy {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            max_concurrency: 64,
            ttl: Duration::from_secs(60),
            section_ttl: BTreeMap::new(),
            stale_if_error: Duration::from_secs(300),
            retry: RetryPolicy::default(),
            hedge: HedgePolicy::default(),
            breaker: BreakerPolicy::default(),
        }
    }
}

/// Retries: only of unavailable or rate-limited calls (fetches are reads, so
/// idempotent), only when the wait fits the deadline, within a budget.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per fetch, the first included; 1 disables retries.
    pub max_attempts: u32,
    /// The wait before a retry when the source gives no `Retry-After`.
    pub backoff: Duration,
    /// Retries allowed as a fraction of calls (0.1 = 10 %).
    pub budget_ratio: f32,
    /// Retries per second allowed whatever the ratio.
    pub min_per_second: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 2,
            backoff: Duration::from_millis(10),
            budget_ratio: 0.1,
            min_per_second: 10,
        }
    }
}

/// Hedging: a second call when the first is slower than the source's live
/// latency percentile, the first answer winning and the other cancelled.
#[derive(Debug, Clone)]
pub struct HedgePolicy {
    /// Whether to hedge at all.
    pub enabled: bool,
    /// The latency percentile (0–1) after which a hedge is sent.
    pub percentile: f64,
    /// Latency samples needed before hedging starts.
    pub min_samples: u64,
    /// Hedges allowed as a fraction of calls (0.1 = 10 %): the extra load bound.
    pub budget_ratio: f32,
    /// The shortest hedge delay.
    pub min_delay: Duration,
}

impl Default for HedgePolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            percentile: 0.95,
            min_samples: 100,
            budget_ratio: 0.1,
            min_delay: Duration::from_millis(1),
        }
    }
}

/// The circuit breaker: open after too many failures in a window, then let one
/// probe through after a pause.
#[derive(Debug, Clone)]
pub struct BreakerPolicy {
    /// Whether the breaker is used.
    pub enabled: bool,
    /// The failure ratio (0–1) over a window that opens the breaker.
    pub failure_ratio: f64,
    /// Calls in the window before the ratio counts.
    pub min_calls: u32,
    /// The window.
    pub window: Duration,
    /// How long the breaker stays open before a probe.
    pub open_for: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            failure_ratio: 0.5,
            min_calls: 20,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(5),
        }
    }
}
