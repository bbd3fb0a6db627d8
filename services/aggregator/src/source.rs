//! One configured source: an adapter with its policy, and the resilience
//! around every call to it — the per-call timeout cap, a concurrency limit,
//! retries within a budget, hedging past the live p95 within a budget, and a
//! circuit breaker.
//!
//! tower's `Hedge` is not `Clone` (sharing it means a `Buffer` and a channel hop
//! per call) and measures whole milliseconds, so hedging is done here over a
//! microsecond histogram; the retry and hedge budgets are tower's `TpsBudget`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::FutureExt;
use opentelemetry::KeyValue;
use tessera_adapter_core::{Adapter, BuiltAdapter, FetchError, HealthCheck, Record};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::retry::budget::{Budget, TpsBudget};
use tracing::Instrument;

use crate::batch::{self, Pair, PairResults};
use crate::breaker::{Breaker, BreakerState};
use crate::latency::LatencyTracker;
use crate::policy::SourcePolicy;
use crate::telemetry::{instruments, span};

/// Why a source gave no records for a pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The source answered with an error.
    Fetch(FetchError),
    /// No answer before the deadline.
    Timeout,
    /// The circuit breaker is open; the source was not called.
    CircuitOpen,
}

impl Failure {
    /// The outcome's word for spans and metric labels.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::CircuitOpen => "circuit_open",
            Self::Fetch(e) => match e {
                FetchError::NotFound => "not_found",
                FetchError::Unavailable { .. } => "unavailable",
                FetchError::RateLimited { .. } => "rate_limited",
                FetchError::Denied { .. } => "denied",
                FetchError::Malformed { .. } => "malformed",
                FetchError::UnknownSection { .. } => "unknown_section",
                FetchError::DeadlineExceeded => "timeout",
                _ => "error",
            },
        }
    }

    pub(crate) fn from_fetch(e: FetchError) -> Self {
        match e {
            FetchError::DeadlineExceeded => Self::Timeout,
            other => Self::Fetch(other),
        }
    }

    /// Whether the breaker counts it against the source.
    fn is_source_failure(&self) -> bool {
        match self {
            Self::Timeout => true,
            Self::Fetch(e) => e.is_retryable(),
            Self::CircuitOpen => false,
        }
    }
}

/// The records of one pair.
#[derive(Debug, Clone)]
pub(crate) struct Fetched {
    pub(crate) records: Arc<[Record]>,
    pub(crate) skipped_malformed: u32,
}

/// Counters of what the resilience layer did.
#[derive(Debug, Default)]
pub struct SourceStats {
    calls: AtomicU64,
    retries: AtomicU64,
    hedges: AtomicU64,
    hedges_won: AtomicU64,
}

impl SourceStats {
    /// Calls made to the adapter, hedges and retries included.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
    /// Retries sent.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }
    /// Hedges sent.
    pub fn hedges(&self) -> u64 {
        self.hedges.load(Ordering::Relaxed)
    }
    /// Hedges that answered first.
    pub fn hedges_won(&self) -> u64 {
        self.hedges_won.load(Ordering::Relaxed)
    }
}

/// A configured source.
pub struct Source {
    name: String,
    label: opentelemetry::StringValue,
    adapter: Arc<dyn Adapter>,
    health: Arc<dyn HealthCheck>,
    policy: SourcePolicy,
    limit: Semaphore,
    breaker: Breaker,
    latency: LatencyTracker,
    retry_budget: TpsBudget,
    hedge_budget: TpsBudget,
    stats: SourceStats,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("name", &self.name)
            .field("system", &self.system())
            .finish_non_exhaustive()
    }
}

impl Source {
    /// A source named `name` (its `sources/{name}`) over a built adapter.
    pub fn new(name: impl Into<String>, built: BuiltAdapter, policy: SourcePolicy) -> Self {
        let budget = |ratio: f32, min: u32| TpsBudget::new(Duration::from_secs(10), min, ratio);
        let name = name.into();
        Self {
            label: opentelemetry::StringValue::from(Arc::<str>::from(name.as_str())),
            name,
            adapter: built.adapter,
            health: built.health,
            limit: Semaphore::new(policy.max_concurrency.max(1)),
            breaker: Breaker::new(policy.breaker.clone()),
            latency: LatencyTracker::new(),
            retry_budget: budget(policy.retry.budget_ratio, policy.retry.min_per_second),
            hedge_budget: budget(policy.hedge.budget_ratio, 0),
            stats: SourceStats::default(),
            policy,
        }
    }

    /// The source's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `source` metric label.
    pub(crate) fn source_label(&self) -> KeyValue {
        KeyValue::new("source", self.label.clone())
    }

    /// The system whose local IDs it serves.
    pub fn system(&self) -> &str {
        &self.adapter.describe().system
    }

    /// Whether it serves `section`.
    pub fn serves(&self, section: &str) -> bool {
        self.adapter.describe().section(section).is_some()
    }

    /// The sections it serves.
    pub fn sections(&self) -> impl Iterator<Item = &str> {
        self.adapter
            .describe()
            .sections
            .iter()
            .map(|s| s.name.as_str())
    }

    /// The media type of a section's records.
    pub(crate) fn media_type(&self, section: &str) -> &str {
        self.adapter
            .describe()
            .section(section)
            .map_or(tessera_adapter_core::MEDIA_TYPE_JSON, |s| {
                s.media_type.as_str()
            })
    }

    /// The adapter's batch capabilities.
    pub(crate) fn batch_fetch(&self) -> &tessera_adapter_core::Capabilities {
        &self.adapter.describe().capabilities
    }

    /// The adapter.
    pub fn adapter(&self) -> &Arc<dyn Adapter> {
        &self.adapter
    }

    /// The adapter's health check.
    pub fn health(&self) -> &Arc<dyn HealthCheck> {
        &self.health
    }

    /// What the resilience layer did.
    pub fn stats(&self) -> &SourceStats {
        &self.stats
    }

    /// A quantile of the source's recent call latency (successful calls, after
    /// the concurrency slot was acquired), once it has any samples.
    pub fn latency_quantile(&self, q: f64) -> Option<Duration> {
        self.latency.quantile(q, 1)
    }

    /// The circuit breaker's state.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }

    /// How long a section's records stay fresh: the config's section TTL, else
    /// the adapter's suggestion, else the source's TTL.
    pub(crate) fn ttl(&self, section: &str) -> Duration {
        self.policy
            .section_ttl
            .get(section)
            .copied()
            .or_else(|| {
                self.adapter
                    .describe()
                    .section(section)
                    .and_then(|s| s.suggested_ttl)
            })
            .unwrap_or(self.policy.ttl)
    }

    pub(crate) fn stale_if_error(&self) -> Duration {
        self.policy.stale_if_error
    }

    /// Fetches `pairs` under `deadline` (capped by the source's timeout), as
    /// few adapter calls as the adapter's batch capabilities allow, with
    /// retries of the pairs that failed retryably and hedging. Every pair gets
    /// a result.
    pub(crate) async fn fetch(&self, pairs: Vec<Pair>, deadline: Instant) -> PairResults {
        let call = tracing::info_span!(
            target: "tessera::view",
            span::ADAPTER_CALL,
            tessera.source = %self.name,
            tessera.batch.pairs = pairs.len(),
            tessera.attempts = tracing::field::Empty,
            error.type = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let results = self.call(pairs, deadline).instrument(call.clone()).await;
        // The call failed when no pair was served; a partial answer is not an
        // error of the call (each pair's status says what happened to it).
        if let Some(failure) = all_failed(&results) {
            call.record("error.type", failure.kind());
            call.record("otel.status_code", "ERROR");
        }
        results
    }

    async fn call(&self, pairs: Vec<Pair>, deadline: Instant) -> PairResults {
        // Held for the whole call: a probe that ends unheard gives its turn back.
        let Some(_admission) = self.breaker.allow() else {
            return every(&pairs, &Failure::CircuitOpen);
        };
        let deadline = deadline.min(Instant::now() + self.policy.timeout);
        self.retry_budget.deposit();
        let mut results = PairResults::with_capacity(pairs.len());
        let mut pending = pairs;
        let mut attempt = 1;
        loop {
            let kind = if attempt == 1 { "first" } else { "retry" };
            let requests = batch::requests(&pending, &self.adapter.describe().capabilities);
            let answers = futures_util::future::join_all(
                requests
                    .into_iter()
                    .map(|request| self.hedged(request, deadline, kind)),
            )
            .await;
            tracing::Span::current().record("tessera.attempts", attempt);
            let mut retry = Vec::new();
            let mut wait = None::<Duration>;
            for (pair, result) in answers.into_iter().flatten() {
                if let Err(Failure::Fetch(e)) = &result
                    && e.is_retryable()
                {
                    let after = e.retry_after().unwrap_or(self.policy.retry.backoff);
                    wait = Some(wait.map_or(after, |w| w.max(after)));
                    retry.push(pair.clone());
                }
                results.insert(pair, result);
            }
            let Some(wait) = wait else {
                return results;
            };
            if attempt >= self.policy.retry.max_attempts
                || Instant::now() + wait >= deadline
                || !self.retry_budget.withdraw()
            {
                return results;
            }
            tokio::time::sleep(wait).await;
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            instruments().retries.add(1, &[self.source_label()]);
            attempt += 1;
            pending = retry;
        }
    }

    /// One request, hedged once it outlives the live latency percentile; a
    /// result for every pair of the request.
    async fn hedged(
        &self,
        request: Vec<Pair>,
        deadline: Instant,
        kind: &'static str,
    ) -> PairResults {
        match self.hedged_call(&request, deadline, kind).await {
            Ok(results) => results,
            Err(failure) => every(&request, &failure),
        }
    }

    async fn hedged_call(
        &self,
        request: &[Pair],
        deadline: Instant,
        kind: &'static str,
    ) -> Result<PairResults, Failure> {
        let hedge = &self.policy.hedge;
        self.hedge_budget.deposit();
        let delay = hedge
            .enabled
            .then(|| self.latency.quantile(hedge.percentile, hedge.min_samples))
            .flatten()
            .map(|d| d.max(hedge.min_delay));
        let primary = self.attempt(request, deadline, kind);
        let Some(delay) = delay.filter(|d| Instant::now() + *d < deadline) else {
            return primary.await;
        };
        let mut primary = std::pin::pin!(primary.fuse());
        tokio::select! {
            biased;
            result = &mut primary => return result,
            () = tokio::time::sleep(delay) => {}
        }
        if !self.hedge_budget.withdraw() {
            return primary.await;
        }
        self.stats.hedges.fetch_add(1, Ordering::Relaxed);
        instruments()
            .hedges
            .add(1, &[self.source_label(), KeyValue::new("result", "sent")]);
        let mut hedge = std::pin::pin!(self.attempt(request, deadline, "hedge").fuse());
        // The first answer wins and the other call is dropped (cancelled); a
        // failed call waits for the other one.
        tokio::select! {
            result = &mut primary => match result {
                Ok(ok) => Ok(ok),
                Err(_) => self.won(hedge.await),
            },
            result = &mut hedge => match result {
                Ok(ok) => self.won(Ok(ok)),
                Err(_) => primary.await,
            },
        }
    }

    fn won(&self, result: Result<PairResults, Failure>) -> Result<PairResults, Failure> {
        if result.is_ok() {
            self.stats.hedges_won.fetch_add(1, Ordering::Relaxed);
            instruments()
                .hedges
                .add(1, &[self.source_label(), KeyValue::new("result", "won")]);
        }
        result
    }

    /// One call to the adapter: a concurrency slot, then the call, both within
    /// the deadline. `Err` when the call as a whole failed.
    async fn attempt(
        &self,
        request: &[Pair],
        deadline: Instant,
        kind: &'static str,
    ) -> Result<PairResults, Failure> {
        let span = tracing::info_span!(
            target: "tessera::view",
            span::ADAPTER_ATTEMPT,
            tessera.source = %self.name,
            tessera.attempt.kind = kind,
            error.type = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let start = Instant::now();
        let result = self
            .attempt_inner(request, deadline)
            .instrument(span.clone())
            .await;
        let outcome = match result
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|r| all_failed(r).map_or(Ok(()), |f| Err(f.clone())))
        {
            Ok(()) => "ok",
            Err(failure) => {
                span.record("error.type", failure.kind());
                span.record("otel.status_code", "ERROR");
                failure.kind()
            }
        };
        instruments().attempt_duration.record(
            start.elapsed().as_secs_f64(),
            &[self.source_label(), KeyValue::new("outcome", outcome)],
        );
        result
    }

    async fn attempt_inner(
        &self,
        request: &[Pair],
        deadline: Instant,
    ) -> Result<PairResults, Failure> {
        let Ok(Ok(_permit)) = tokio::time::timeout_at(deadline, self.limit.acquire()).await else {
            return Err(Failure::Timeout);
        };
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let start = Instant::now();
        let fetch = batch::fetch_request(request, deadline);
        let result = match tokio::time::timeout_at(deadline, self.adapter.fetch(fetch)).await {
            Err(_) => Err(Failure::Timeout),
            Ok(Err(e)) => Err(Failure::from_fetch(e)),
            Ok(Ok(results)) => Ok(batch::by_pair(request, results)),
        };
        let failed = match &result {
            Err(failure) => failure.is_source_failure(),
            Ok(results) => all_failed(results).is_some_and(Failure::is_source_failure),
        };
        self.breaker.record(failed);
        if !failed {
            self.latency.record(start.elapsed());
        }
        result
    }
}

/// The same failure for every pair.
fn every(pairs: &[Pair], failure: &Failure) -> PairResults {
    pairs
        .iter()
        .map(|pair| (pair.clone(), Err(failure.clone())))
        .collect()
}

/// The first failure when no pair was served.
fn all_failed(results: &PairResults) -> Option<&Failure> {
    let mut first = None;
    for result in results.values() {
        match result {
            Ok(_) => return None,
            Err(failure) => first = first.or(Some(failure)),
        }
    }
    first
}
