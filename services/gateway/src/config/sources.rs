//! The patient view's configuration: the view's deadlines, cache and access
//! policy, and the sources — each an adapter kind with its own config, plus how
//! Tessera calls and caches it.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};
use tessera_aggregator::{
    BreakerPolicy, HedgePolicy, Purpose, PurposePolicy, RetryPolicy, SourcePolicy, ViewPolicy,
};

/// A duration with a unit, such as `250ms`, `5s` or `10m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span(pub Duration);

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Span;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration with a unit, such as \"5s\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                humantime::parse_duration(v)
                    .map(Span)
                    .map_err(|e| E::custom(format!("invalid duration {v:?}: {e}")))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// The patient view as a whole.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ViewConfig {
    /// The deadline of a view whose caller sets none (`grpc-timeout`).
    #[schemars(with = "String", example = &"2s")]
    pub default_timeout: Span,
    /// The longest deadline a caller may ask for; longer ones are cut to it.
    #[schemars(with = "String", example = &"30s")]
    pub max_timeout: Span,
    /// Time kept back from the caller's deadline to assemble and send the view.
    #[schemars(with = "String", example = &"5ms")]
    pub deadline_reserve: Span,
    /// The section cache's bound, in mebibytes of records.
    pub cache_max_mib: u64,
    /// Sections each purpose of use may see (`treatment`, `emergency_treatment`,
    /// `payment`, `operations`, `marketing`, `patient_request`, `public_health`,
    /// `research`), `*` for all. A purpose not listed is limited by the caller's grant alone
    /// (`policy:`); a listed one by both.
    pub access: BTreeMap<String, Vec<String>>,
}

impl Default for ViewConfig {
    fn default() -> Self {
        let policy = ViewPolicy::default();
        Self {
            default_timeout: Span(policy.default_timeout),
            max_timeout: Span(policy.max_timeout),
            deadline_reserve: Span(policy.deadline_reserve),
            cache_max_mib: policy.cache_max_bytes >> 20,
            access: BTreeMap::new(),
        }
    }
}

impl ViewConfig {
    /// The aggregator's view policy.
    pub fn policy(&self) -> ViewPolicy {
        ViewPolicy {
            default_timeout: self.default_timeout.0,
            max_timeout: self.max_timeout.0,
            deadline_reserve: self.deadline_reserve.0,
            cache_max_bytes: self.cache_max_mib << 20,
        }
    }

    /// The access policy, or the name of a purpose that does not exist.
    pub fn access_policy(&self) -> Result<PurposePolicy, String> {
        let mut sections = BTreeMap::new();
        for (name, allowed) in &self.access {
            let purpose = Purpose::ALL
                .into_iter()
                .find(|p| p.as_str() == name)
                .ok_or_else(|| name.clone())?;
            sections.insert(purpose, allowed.iter().cloned().collect());
        }
        Ok(PurposePolicy { sections })
    }
}

/// One source: a silo reached through an adapter.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The source's name, unique, as in `sources/{name}`: lowercase letters,
    /// digits, `-` and `_`.
    pub name: String,
    /// The adapter kind; `tessera config schema` documents each known kind's
    /// config under `x-adapter-kinds`.
    pub kind: String,
    /// The adapter kind's own configuration.
    #[serde(default)]
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    pub config: serde_json::Value,
    /// The longest one call to the source may take, whatever the caller's deadline.
    #[serde(default = "SourceConfig::default_timeout")]
    #[schemars(with = "String", example = &"5s")]
    pub timeout: Span,
    /// Calls in flight at once; more wait for a slot within their deadline.
    #[serde(default = "SourceConfig::default_concurrency")]
    pub max_concurrency: usize,
    /// How the source's records are cached.
    #[serde(default)]
    pub cache: CacheConfig,
    /// Retries of calls that failed as unavailable or rate limited.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Hedged calls once a call outlives the source's live latency percentile.
    #[serde(default)]
    pub hedge: HedgeConfig,
    /// The circuit breaker.
    #[serde(default)]
    pub breaker: BreakerConfig,
}

impl SourceConfig {
    fn default_timeout() -> Span {
        Span(SourcePolicy::default().timeout)
    }

    fn default_concurrency() -> usize {
        SourcePolicy::default().max_concurrency
    }

    /// The aggregator's policy for this source.
    pub fn policy(&self) -> SourcePolicy {
        SourcePolicy {
            timeout: self.timeout.0,
            max_concurrency: self.max_concurrency,
            ttl: self.cache.ttl.0,
            section_ttl: self
                .cache
                .sections
                .iter()
                .map(|(k, v)| (k.clone(), v.0))
                .collect(),
            stale_if_error: self.cache.stale_if_error.0,
            retry: RetryPolicy {
                max_attempts: self.retry.max_attempts,
                backoff: self.retry.backoff.0,
                budget_ratio: self.retry.budget_ratio,
                min_per_second: self.retry.min_per_second,
            },
            hedge: HedgePolicy {
                enabled: self.hedge.enabled,
                percentile: self.hedge.percentile,
                min_samples: self.hedge.min_samples,
                budget_ratio: self.hedge.budget_ratio,
                min_delay: self.hedge.min_delay.0,
            },
            breaker: BreakerPolicy {
                enabled: self.breaker.enabled,
                failure_ratio: self.breaker.failure_ratio,
                min_calls: self.breaker.min_calls,
                window: self.breaker.window.0,
                open_for: self.breaker.open_for.0,
            },
        }
    }

    /// What is wrong with the source's settings (not its kind's config), as
    /// (field under the source, message).
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let valid_name = self.name.starts_with(|c: char| c.is_ascii_lowercase())
            && self.name.len() <= 63
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !valid_name {
            return Err((
                "name",
                "must be lowercase letters, digits, `-` and `_`, starting with a letter".into(),
            ));
        }
        if self.max_concurrency == 0 {
            return Err(("max_concurrency", "must be at least 1".into()));
        }
        if self.retry.max_attempts == 0 {
            return Err(("retry.max_attempts", "must be at least 1".into()));
        }
        for (field, ratio) in [
            ("retry.budget_ratio", f64::from(self.retry.budget_ratio)),
            ("hedge.budget_ratio", f64::from(self.hedge.budget_ratio)),
            ("breaker.failure_ratio", self.breaker.failure_ratio),
        ] {
            if !(0.0..=1.0).contains(&ratio) {
                return Err((field, "must be between 0 and 1".into()));
            }
        }
        if !(0.5..1.0).contains(&self.hedge.percentile) {
            return Err((
                "hedge.percentile",
                "must be at least 0.5 and below 1".into(),
            ));
        }
        Ok(())
    }
}

/// How a source's records are cached.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// How long records stay fresh, unless the section has its own TTL (here or
    /// suggested by the adapter).
    #[schemars(with = "String", example = &"60s")]
    pub ttl: Span,
    /// TTLs per section.
    #[schemars(with = "BTreeMap<String, String>")]
    pub sections: BTreeMap<String, Span>,
    /// How long past its TTL a record is kept, to be served marked STALE when
    /// the source fails.
    #[schemars(with = "String", example = &"5m")]
    pub stale_if_error: Span,
}

impl Default for CacheConfig {
    fn default() -> Self {
        let p = SourcePolicy::default();
        Self {
            ttl: Span(p.ttl),
            sections: BTreeMap::new(),
            stale_if_error: Span(p.stale_if_error),
        }
    }
}

/// Retries.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts per fetch, the first included; 1 disables retries.
    pub max_attempts: u32,
    /// The wait before a retry when the source sends no `Retry-After`.
    #[schemars(with = "String", example = &"10ms")]
    pub backoff: Span,
    /// Retries allowed as a fraction of calls (0.1 = 10 %).
    pub budget_ratio: f32,
    /// Retries per second allowed whatever the ratio.
    pub min_per_second: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        let p = RetryPolicy::default();
        Self {
            max_attempts: p.max_attempts,
            backoff: Span(p.backoff),
            budget_ratio: p.budget_ratio,
            min_per_second: p.min_per_second,
        }
    }
}

/// Hedging.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct HedgeConfig {
    /// Whether to hedge.
    pub enabled: bool,
    /// The live latency percentile (0.5–0.999) after which a second call is sent.
    pub percentile: f64,
    /// Latency samples needed before hedging starts.
    pub min_samples: u64,
    /// Hedges allowed as a fraction of calls: the bound on extra load.
    pub budget_ratio: f32,
    /// The shortest hedge delay.
    #[schemars(with = "String", example = &"1ms")]
    pub min_delay: Span,
}

impl Default for HedgeConfig {
    fn default() -> Self {
        let p = HedgePolicy::default();
        Self {
            enabled: p.enabled,
            percentile: p.percentile,
            min_samples: p.min_samples,
            budget_ratio: p.budget_ratio,
            min_delay: Span(p.min_delay),
        }
    }
}

/// The circuit breaker.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Whether to use it.
    pub enabled: bool,
    /// The failure ratio over a window that opens it.
    pub failure_ratio: f64,
    /// Calls in the window before the ratio counts.
    pub min_calls: u32,
    /// The window.
    #[schemars(with = "String", example = &"10s")]
    pub window: Span,
    /// How long it stays open before one probe call.
    #[schemars(with = "String", example = &"5s")]
    pub open_for: Span,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        let p = BreakerPolicy::default();
        Self {
            enabled: p.enabled,
            failure_ratio: p.failure_ratio,
            min_calls: p.min_calls,
            window: Span(p.window),
            open_for: Span(p.open_for),
        }
    }
}
