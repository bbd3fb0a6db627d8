//! A fake adapter kind with configurable latency and faults, registered like a
//! real one: for tests, the load harness and trying configs without silos.
//!
//! Its records are synthetic and deterministic (`{"section":…,"n":…}` padded to
//! a size); latency is a base plus deterministic jitter, with an optional slow
//! tail; it can hang (ignoring its deadline, as a broken silo would), fail a
//! fraction of calls, or return malformed rows that it skips and counts.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::{
    Adapter, AdapterKind, BuildContext, BuildError, BuiltAdapter, Capabilities, Description,
    FetchError, FetchRequest, FetchResult, Health, HealthCheck, Record, SectionDescriptor,
    valid_section_name,
};

/// The `fake` adapter kind.
#[derive(Debug, Default)]
pub struct FakeKind;

/// Configuration of a `fake` adapter.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FakeConfig {
    /// The source system it pretends to be.
    pub system: String,
    /// The sections it serves.
    pub sections: Vec<String>,
    /// Latency of every call (`10ms`).
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub latency: Option<Duration>,
    /// Extra latency, spread evenly from zero to this, per call.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub jitter: Option<Duration>,
    /// The fraction of calls (0–1) that take `slow_latency` instead.
    #[serde(default)]
    pub slow_fraction: f64,
    /// Latency of the slow calls.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub slow_latency: Option<Duration>,
    /// Never answer, ignoring the deadline, like a stuck silo.
    #[serde(default)]
    pub hang: bool,
    /// The fraction of calls (0–1) that fail as unavailable.
    #[serde(default)]
    pub fail_fraction: f64,
    /// Records per (local ID, section).
    #[serde(default = "default_records")]
    pub records: u32,
    /// Bytes of padding per record.
    #[serde(default)]
    pub record_bytes: usize,
    /// Local IDs that start with this are unknown to the silo.
    #[serde(default = "default_unknown_prefix")]
    pub unknown_prefix: String,
    /// Local IDs that start with this have one extra malformed row, skipped.
    #[serde(default = "default_malformed_prefix")]
    pub malformed_prefix: String,
}

fn default_records() -> u32 {
    2
}

fn default_unknown_prefix() -> String {
    "unknown".to_owned()
}

fn default_malformed_prefix() -> String {
    "malformed".to_owned()
}

impl FakeConfig {
    /// A fake for `system` serving `sections` with a fixed latency.
    pub fn new(system: &str, sections: &[&str], latency: Duration) -> Self {
        Self {
            system: system.to_owned(),
            sections: sections.iter().map(|s| (*s).to_owned()).collect(),
            latency: Some(latency),
            jitter: None,
            slow_fraction: 0.0,
            slow_latency: None,
            hang: false,
            fail_fraction: 0.0,
            records: default_records(),
            record_bytes: 0,
            unknown_prefix: default_unknown_prefix(),
            malformed_prefix: default_malformed_prefix(),
        }
    }

    fn check(&self) -> Result<(), BuildError> {
        if self.system.is_empty() {
            return Err(BuildError::config("system", "must not be empty"));
        }
        if self.sections.is_empty() {
            return Err(BuildError::config(
                "sections",
                "must name at least one section",
            ));
        }
        let mut seen = BTreeSet::new();
        for name in &self.sections {
            if !valid_section_name(name) {
                return Err(BuildError::config(
                    "sections",
                    format!("{name:?} is not a section name ([a-z][a-z0-9_]*)"),
                ));
            }
            if !seen.insert(name) {
                return Err(BuildError::config(
                    "sections",
                    format!("{name:?} is listed twice"),
                ));
            }
        }
        for (field, value) in [
            ("slow_fraction", self.slow_fraction),
            ("fail_fraction", self.fail_fraction),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(BuildError::config(field, "must be between 0 and 1"));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl AdapterKind for FakeKind {
    type Config = FakeConfig;

    fn kind(&self) -> &'static str {
        "fake"
    }

    fn validate(&self, config: &FakeConfig) -> Result<(), BuildError> {
        config.check()
    }

    async fn build(
        &self,
        _context: &BuildContext,
        config: FakeConfig,
    ) -> Result<BuiltAdapter, BuildError> {
        let adapter = Arc::new(FakeAdapter::new(config)?);
        Ok(BuiltAdapter {
            health: adapter.clone(),
            adapter,
        })
    }
}

/// What a fake adapter has been asked to do, for tests to assert on.
#[derive(Debug, Default)]
pub struct FakeStats {
    calls: AtomicU64,
    pairs: AtomicU64,
    in_flight: AtomicU64,
    cancelled: AtomicU64,
}

impl FakeStats {
    /// Calls to `fetch` so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
    /// (local ID, section) pairs requested so far.
    pub fn pairs(&self) -> u64 {
        self.pairs.load(Ordering::SeqCst)
    }
    /// Calls started and not yet finished or dropped.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::SeqCst)
    }
    /// Calls dropped before they finished (their caller went away).
    pub fn cancelled(&self) -> u64 {
        self.cancelled.load(Ordering::SeqCst)
    }
}

/// A fake silo.
#[derive(Debug)]
pub struct FakeAdapter {
    config: FakeConfig,
    description: Description,
    stats: Arc<FakeStats>,
}

impl FakeAdapter {
    /// A fake from its configuration.
    pub fn new(config: FakeConfig) -> Result<Self, BuildError> {
        config.check()?;
        let description = Description {
            system: config.system.clone(),
            sections: config
                .sections
                .iter()
                .map(|s| SectionDescriptor::json(s, "synthetic records"))
                .collect(),
            capabilities: Capabilities {
                batch_fetch: true,
                max_batch_size: 100,
                identity_feed: false,
                incremental_identity_feed: false,
            },
            version: concat!("fake/", env!("CARGO_PKG_VERSION")).to_owned(),
        };
        Ok(Self {
            config,
            description,
            stats: Arc::default(),
        })
    }

    /// Its counters.
    pub fn stats(&self) -> Arc<FakeStats> {
        self.stats.clone()
    }

    fn latency(&self, unit: f64) -> Duration {
        if self.config.slow_fraction > 0.0 && unit < self.config.slow_fraction {
            return self.config.slow_latency.unwrap_or_default();
        }
        let jitter = self
            .config
            .jitter
            .map_or(Duration::ZERO, |j| j.mul_f64(unit));
        self.config.latency.unwrap_or_default() + jitter
    }

    fn records(&self, local_id: &str, section: &str) -> FetchResult {
        let result = |records| FetchResult {
            local_id: local_id.to_owned(),
            section: section.to_owned(),
            records,
            skipped_malformed: 0,
        };
        if self.description.section(section).is_none() {
            return result(Err(FetchError::UnknownSection {
                section: section.to_owned(),
            }));
        }
        if local_id.starts_with(&self.config.unknown_prefix) {
            return result(Err(FetchError::NotFound));
        }
        let pad = "x".repeat(self.config.record_bytes);
        let records = (0..self.config.records)
            .map(|n| Record {
                record_id: Some(format!("{section}-{n}")),
                json: body(&self.config.system, section, n, &pad).into(),
                update_time: None,
            })
            .collect();
        let mut result = result(Ok(records));
        if local_id.starts_with(&self.config.malformed_prefix) {
            result.skipped_malformed = 1;
        }
        result
    }
}

/// One fake record's JSON, written straight to a string: the benchmarks'
/// silos make thousands a second, and a `serde_json::Value` in between was
/// ~1 % of a cold view's CPU.
fn body(system: &str, section: &str, n: u32, pad: &str) -> String {
    #[derive(serde::Serialize)]
    struct Body<'a> {
        system: &'a str,
        section: &'a str,
        n: u32,
        pad: &'a str,
    }
    let body = Body {
        system,
        section,
        n,
        pad,
    };
    serde_json::to_string(&body).unwrap_or_default()
}

/// Counts a call as in flight until dropped, and as cancelled if dropped early.
struct InFlight<'a> {
    stats: &'a FakeStats,
    finished: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.stats.in_flight.fetch_sub(1, Ordering::SeqCst);
        if !self.finished {
            self.stats.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The random numbers of one call, seeded by its number: the same config gives
/// the same latencies and failures, call by call, on every run.
struct Draw {
    /// Picks the latency (slow tail, jitter), uniform in [0, 1).
    latency: f64,
    /// Picks an injected failure, uniform in [0, 1).
    fail: f64,
}

impl Draw {
    fn of_call(n: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(n);
        Self {
            latency: rng.random(),
            fail: rng.random(),
        }
    }
}

#[async_trait]
impl Adapter for FakeAdapter {
    fn describe(&self) -> &Description {
        &self.description
    }

    async fn fetch(&self, request: FetchRequest) -> Result<Vec<FetchResult>, FetchError> {
        let n = self.stats.calls.fetch_add(1, Ordering::SeqCst);
        let pairs = request.local_ids.len() * request.sections.len();
        self.stats.pairs.fetch_add(pairs as u64, Ordering::SeqCst);
        self.stats.in_flight.fetch_add(1, Ordering::SeqCst);
        let mut guard = InFlight {
            stats: &self.stats,
            finished: false,
        };
        if self.config.hang {
            std::future::pending::<()>().await;
        }
        let draw = Draw::of_call(n);
        let wait = tokio::time::sleep(self.latency(draw.latency));
        if tokio::time::timeout_at(request.deadline, wait)
            .await
            .is_err()
        {
            guard.finished = true;
            return Err(FetchError::DeadlineExceeded);
        }
        guard.finished = true;
        if draw.fail < self.config.fail_fraction {
            return Err(FetchError::unavailable("injected failure"));
        }
        Ok(request
            .local_ids
            .iter()
            .flat_map(|id| request.sections.iter().map(|s| self.records(id, s)))
            .collect())
    }
}

#[async_trait]
impl HealthCheck for FakeAdapter {
    async fn check(&self) -> Health {
        if self.config.hang {
            Health::not_serving("configured to hang")
        } else {
            Health::serving()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::time::Instant;

    use super::*;
    use crate::conformance::{self, Fixture, MalformedUpstream, SlowUpstream};

    /// A fixture whose stalled silo is `stalled`.
    fn fixture_with(stalled: FakeConfig) -> Fixture {
        let slow = Arc::new(FakeAdapter::new(stalled).expect("valid"));
        let stats = slow.stats();
        Fixture {
            known_local_id: "C-1001".to_owned(),
            unknown_local_id: "unknown-1".to_owned(),
            sensitive: vec!["C-1001".to_owned()],
            slow: Some(SlowUpstream {
                adapter: slow,
                local_id: "C-1001".to_owned(),
                section: "cases".to_owned(),
                upstream_in_flight: Arc::new(move || stats.in_flight()),
            }),
            malformed: Some(MalformedUpstream {
                adapter: Arc::new(
                    FakeAdapter::new(FakeConfig::new("crm", &["cases"], Duration::ZERO))
                        .expect("valid"),
                ),
                local_id: "malformed-7".to_owned(),
                section: "cases".to_owned(),
            }),
        }
    }

    /// A silo that takes an hour: a conformant adapter gives up at its deadline.
    fn fixture() -> Fixture {
        fixture_with(FakeConfig::new(
            "crm",
            &["cases"],
            Duration::from_secs(3600),
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn the_kit_fails_an_adapter_that_ignores_its_deadline() {
        let adapter = Arc::new(
            FakeAdapter::new(FakeConfig::new("crm", &["cases"], Duration::ZERO)).expect("valid"),
        );
        let hung = fixture_with(FakeConfig {
            hang: true,
            ..FakeConfig::new("crm", &["cases"], Duration::ZERO)
        });
        let report = conformance::run(adapter, &hung).await;
        assert_eq!(report.failed(), 1, "{report}");
        assert!(
            report
                .to_string()
                .contains("FAIL  stops at the deadline when the silo stalls"),
            "{report}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_fake_passes_the_conformance_kit() {
        let adapter = Arc::new(
            FakeAdapter::new(FakeConfig::new(
                "crm",
                &["cases", "contacts"],
                Duration::from_millis(5),
            ))
            .expect("valid"),
        );
        let report = conformance::run(adapter, &fixture()).await;
        report.assert_passed();
        assert_eq!(report.skipped(), 0, "{report}");
    }

    #[tokio::test(start_paused = true)]
    async fn records_are_json_of_the_configured_size() {
        let fake = FakeAdapter::new(FakeConfig {
            records: 2,
            record_bytes: 30,
            ..FakeConfig::new("crm", &["cases"], Duration::ZERO)
        })
        .expect("valid");
        let results = fake
            .fetch(FetchRequest::one("C-1", "cases", Instant::now()))
            .await
            .expect("answered");
        let records = results[0].records.as_ref().expect("records");
        assert_eq!(records.len(), 2);
        for (n, record) in records.iter().enumerate() {
            let json: serde_json::Value = serde_json::from_str(&record.json).expect("JSON");
            assert_eq!(json["system"], "crm");
            assert_eq!(json["section"], "cases");
            assert_eq!(json["n"], n);
            assert_eq!(json["pad"].as_str().map(str::len), Some(30));
            assert_eq!(
                record.record_id.as_deref(),
                Some(format!("cases-{n}").as_str())
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_fake_ignores_its_deadline_until_dropped() {
        let fake = Arc::new(
            FakeAdapter::new(FakeConfig {
                hang: true,
                ..FakeConfig::new("crm", &["cases"], Duration::ZERO)
            })
            .expect("valid"),
        );
        let stats = fake.stats();
        let request = FetchRequest::one("C-1", "cases", Instant::now());
        let call = tokio::spawn({
            let fake = fake.clone();
            async move { fake.fetch(request).await }
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!((stats.in_flight(), stats.cancelled()), (1, 0));
        call.abort();
        let _ = call.await;
        assert_eq!((stats.in_flight(), stats.cancelled()), (0, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn latency_has_a_slow_tail_when_configured() {
        let fake = FakeAdapter::new(FakeConfig {
            slow_fraction: 0.1,
            slow_latency: Some(Duration::from_millis(500)),
            ..FakeConfig::new("crm", &["cases"], Duration::from_millis(10))
        })
        .expect("valid");
        let slow = (0..1000)
            .filter(|n| fake.latency(Draw::of_call(*n).latency) == Duration::from_millis(500))
            .count();
        assert!((70..130).contains(&slow), "{slow} slow of 1000");
    }

    #[tokio::test(start_paused = true)]
    async fn the_same_config_fails_the_same_calls_on_every_run() {
        let failures = || async {
            let fake = FakeAdapter::new(FakeConfig {
                fail_fraction: 0.5,
                jitter: Some(Duration::from_millis(100)),
                ..FakeConfig::new("crm", &["cases"], Duration::ZERO)
            })
            .expect("valid");
            let mut failed = Vec::new();
            for _ in 0..64 {
                let request =
                    FetchRequest::one("C-1", "cases", Instant::now() + Duration::from_secs(1));
                failed.push(fake.fetch(request).await.is_err());
            }
            failed
        };
        let first = failures().await;
        assert_eq!(first, failures().await);
        let count = first.iter().filter(|f| **f).count();
        assert!((16..48).contains(&count), "{count} failed of 64");
    }
}
