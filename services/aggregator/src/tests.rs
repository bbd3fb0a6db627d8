//! The aggregator's behaviour under paused time, over fake adapters.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use tessera_adapter_core::fake::{FakeAdapter, FakeConfig, FakeStats};
use tessera_adapter_core::{
    Adapter, BuiltAdapter, Capabilities, Description, FetchError, FetchRequest, FetchResult,
    Health, HealthCheck, Record, SectionDescriptor,
};
use tokio::time::Instant;

use crate::*;

mod batch;
mod consent;

const MS: Duration = Duration::from_millis(1);

/// Identities from a fixed table: master `m1` has one record per system
/// (`ehr/E1`, `crm/C1`, ...), plus whatever a test adds.
struct Table(HashMap<String, Identities>);

#[async_trait]
impl IdentityLookup for Table {
    async fn identities(&self, subject: &Subject) -> Result<Identities, LookupError> {
        match subject {
            Subject::Master(m) => self.0.get(m).cloned(),
            Subject::SourceRecord(r) => self.0.values().find(|i| i.records.contains(r)).cloned(),
        }
        .ok_or(LookupError::NotFound { what: "master" })
    }
}

fn refs(pairs: &[(&str, &str)]) -> Vec<SourceRef> {
    pairs
        .iter()
        .map(|(system, local_id)| SourceRef {
            system: (*system).to_owned(),
            local_id: (*local_id).to_owned(),
        })
        .collect()
}

fn table(records: &[(&str, &str)]) -> Arc<Table> {
    Arc::new(Table(
        [(
            "m1".to_owned(),
            Identities {
                master: "m1".to_owned(),
                records: refs(records),
            },
        )]
        .into(),
    ))
}

fn fake(config: FakeConfig) -> (Source, Arc<FakeStats>) {
    let adapter = Arc::new(FakeAdapter::new(config).expect("valid fake"));
    let stats = adapter.stats();
    let name = adapter.describe().system.clone();
    let built = BuiltAdapter {
        health: adapter.clone(),
        adapter,
    };
    (Source::new(name, built, SourcePolicy::default()), stats)
}

fn aggregator(sources: Vec<Source>, identities: Arc<Table>) -> Aggregator {
    Aggregator::new(
        sources,
        identities,
        Arc::new(PurposePolicy::default()),
        ViewPolicy::default(),
    )
    .expect("unique names")
}

fn request(agg: &Aggregator, timeout: Duration) -> ViewRequest {
    ViewRequest {
        subject: Subject::Master("m1".to_owned()),
        sections: Vec::new(),
        purpose: Purpose::Treatment,
        max_staleness: None,
        deadline: agg.deadline(Some(timeout)),
        caller: Caller::default(),
    }
}

fn state_of(view: &View, source: &str) -> SourceState {
    view.statuses
        .iter()
        .find(|s| s.source == source)
        .map(|s| s.state)
        .unwrap_or_else(|| panic!("no status for {source}"))
}

/// Four silos: three answer in 10, 20 and 50 ms, the fourth hangs.
fn four_silos() -> (Vec<Source>, Vec<Arc<FakeStats>>) {
    let configs = [
        FakeConfig::new("ehr", &["encounters"], 10 * MS),
        FakeConfig::new("billing", &["invoices"], 20 * MS),
        FakeConfig::new("crm", &["cases"], 50 * MS),
        FakeConfig {
            hang: true,
            ..FakeConfig::new("marketing", &["consents"], MS)
        },
    ];
    configs.into_iter().map(fake).unzip()
}

const FOUR: &[(&str, &str)] = &[
    ("ehr", "E1"),
    ("billing", "B1"),
    ("crm", "C1"),
    ("marketing", "M1"),
];

#[tokio::test(start_paused = true)]
async fn a_hung_source_times_out_and_is_cancelled_while_the_rest_arrive() {
    let (sources, stats) = four_silos();
    let agg = aggregator(sources, table(FOUR));
    let start = Instant::now();
    let view = agg
        .view(request(&agg, 100 * MS))
        .await
        .expect("a partial view");
    let elapsed = start.elapsed();

    assert!(elapsed <= 105 * MS, "arrived after {elapsed:?}");
    for (source, section) in [
        ("ehr", "encounters"),
        ("billing", "invoices"),
        ("crm", "cases"),
    ] {
        assert_eq!(state_of(&view, source), SourceState::Ok);
        assert_eq!(view.sections[section].len(), 2, "{section}");
    }
    assert_eq!(state_of(&view, "marketing"), SourceState::Timeout);
    assert!(!view.sections.contains_key("consents"));
    assert_eq!(view.unreachable, vec!["marketing".to_owned()]);
    let hung = &stats[3];
    assert_eq!(
        (hung.calls(), hung.in_flight(), hung.cancelled()),
        (1, 0, 1),
        "the hung call was made once and cancelled"
    );
}

#[tokio::test(start_paused = true)]
async fn a_thousand_concurrent_cold_requests_make_one_fetch_per_key() {
    let (sources, stats): (Vec<_>, Vec<_>) = [
        FakeConfig::new("ehr", &["encounters", "conditions"], 10 * MS),
        FakeConfig::new("billing", &["invoices"], 20 * MS),
        FakeConfig::new("crm", &["cases", "contacts"], 5 * MS),
        FakeConfig::new("marketing", &["consents"], 15 * MS),
    ]
    .into_iter()
    .map(fake)
    .unzip();
    // Two EHR records for the one person: two keys per EHR section.
    let records = [FOUR, &[("ehr", "E2")]].concat();
    let agg = aggregator(sources, table(&records));
    let views = futures_util::future::join_all(
        (0..1000).map(|_| agg.view(request(&agg, Duration::from_secs(1)))),
    )
    .await;

    for view in &views {
        let view = view.as_ref().expect("a view");
        assert!(view.statuses.iter().all(|s| s.state == SourceState::Ok));
        assert_eq!(
            view.sections["encounters"].len(),
            4,
            "two records each for E1 and E2"
        );
    }
    let pairs: Vec<u64> = stats.iter().map(|s| s.pairs()).collect();
    assert_eq!(
        pairs,
        vec![4, 1, 2, 1],
        "one fetch per (adapter, local ID, section)"
    );
    let calls: Vec<u64> = stats.iter().map(|s| s.calls()).collect();
    assert_eq!(calls, vec![1, 1, 1, 1], "one call per source");
    let cache = agg.cache_stats();
    assert_eq!(cache.misses(), 8);
    assert_eq!(cache.misses() + cache.coalesced() + cache.hits(), 8 * 1000);
}

/// A caller granted `sections` (`source.section`) and every system.
fn caller(sections: &[&str]) -> Caller {
    Caller::granted(tessera_auth::Grant {
        principal: sections.join("+"),
        role: tessera_auth::Role::Reader,
        purposes: vec!["TREAT".to_owned()],
        sections: sections.iter().map(|s| (*s).to_owned()).collect(),
        systems: vec!["*".to_owned()],
        national_id: false,
        break_glass_allowed: false,
        break_glass: false,
        reason: None,
    })
}

#[tokio::test(start_paused = true)]
async fn callers_with_different_scopes_never_see_each_others_sections() {
    let (sources, stats): (Vec<_>, Vec<_>) = [
        FakeConfig::new("ehr", &["encounters"], 10 * MS),
        FakeConfig::new("billing", &["invoices"], 10 * MS),
    ]
    .into_iter()
    .map(fake)
    .unzip();
    let agg = aggregator(sources, table(FOUR));
    let clinician = caller(&["ehr.encounters"]);
    let clerk = caller(&["billing.invoices"]);
    for round in ["cold", "warm"] {
        let ask = |who: &Caller| ViewRequest {
            caller: who.clone(),
            ..request(&agg, Duration::from_secs(1))
        };
        let (a, b) = tokio::join!(agg.view(ask(&clinician)), agg.view(ask(&clerk)));
        let (a, b) = (a.expect("view"), b.expect("view"));
        let keys = |v: &View| v.sections.keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&a), ["encounters"], "{round}");
        assert_eq!(keys(&b), ["invoices"], "{round}");
        assert_eq!(state_of(&a, "billing"), SourceState::Denied, "{round}");
        assert_eq!(state_of(&b, "ehr"), SourceState::Denied, "{round}");
        assert!(a.sections["encounters"].iter().all(|r| r.source == "ehr"));
    }
    assert_eq!(
        (stats[0].pairs(), stats[1].pairs()),
        (1, 1),
        "denied sections are never fetched, and the second round was cached"
    );
    let ask_denied = ViewRequest {
        sections: vec!["invoices".to_owned()],
        caller: clinician.clone(),
        ..request(&agg, Duration::from_secs(1))
    };
    assert_eq!(agg.view(ask_denied).await, Err(ViewError::AllDenied));
}

#[tokio::test(start_paused = true)]
async fn the_stream_delivers_fast_sections_before_the_slow_one_completes() {
    let (sources, _stats): (Vec<_>, Vec<_>) = [
        FakeConfig::new("ehr", &["encounters"], 10 * MS),
        FakeConfig::new("billing", &["invoices"], 20 * MS),
        FakeConfig::new("crm", &["cases"], 300 * MS),
    ]
    .into_iter()
    .map(fake)
    .unzip();
    let agg = aggregator(sources, table(FOUR));
    let start = Instant::now();
    let stream = agg
        .stream(request(&agg, Duration::from_secs(1)))
        .await
        .expect("a stream");
    assert_eq!(stream.identities.master, "m1");
    let arrivals: Vec<(String, Duration)> = stream
        .chunks
        .map(|chunk| (chunk.section, start.elapsed()))
        .collect()
        .await;
    let sections: Vec<&str> = arrivals.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(sections, ["encounters", "invoices", "cases"]);
    assert_eq!(arrivals[0].1, 10 * MS, "the fast section did not wait");
    assert_eq!(arrivals[1].1, 20 * MS);
    assert_eq!(arrivals[2].1, 300 * MS);
}

#[tokio::test(start_paused = true)]
async fn cached_records_are_fresh_for_their_ttl_or_the_callers_max_staleness() {
    let (source, stats) = fake(FakeConfig::new("ehr", &["encounters"], 10 * MS));
    let agg = aggregator(vec![source], table(FOUR));
    let view = agg
        .view(request(&agg, Duration::from_secs(1)))
        .await
        .expect("view");
    assert!(!view.sections["encounters"][0].cache_hit);

    tokio::time::advance(Duration::from_secs(30)).await;
    let view = agg
        .view(request(&agg, Duration::from_secs(1)))
        .await
        .expect("view");
    let record = &view.sections["encounters"][0];
    assert!(record.cache_hit);
    assert_eq!(record.age, Duration::from_secs(30));
    assert_eq!(stats.pairs(), 1, "within the 60 s TTL");

    let strict = ViewRequest {
        max_staleness: Some(Duration::from_secs(10)),
        ..request(&agg, Duration::from_secs(1))
    };
    let view = agg.view(strict).await.expect("view");
    assert!(!view.sections["encounters"][0].cache_hit);
    assert_eq!(stats.pairs(), 2, "older than the caller accepts");

    tokio::time::advance(Duration::from_secs(61)).await;
    agg.view(request(&agg, Duration::from_secs(1)))
        .await
        .expect("view");
    assert_eq!(stats.pairs(), 3, "past the TTL");

    agg.invalidate_record(&refs(&[("ehr", "E1")])[0]).await;
    agg.view(request(&agg, Duration::from_secs(1)))
        .await
        .expect("view");
    assert_eq!(stats.pairs(), 4, "invalidated");
    agg.on_change(&ChangeEvent {
        record: refs(&[("ehr", "E1")])[0].clone(),
        sections: vec!["encounters".to_owned()],
    })
    .await;
    agg.view(request(&agg, Duration::from_secs(1)))
        .await
        .expect("view");
    assert_eq!(stats.pairs(), 5, "a change event evicts");
}

/// An adapter that fails while `down` is set, counting calls.
struct Switch {
    description: Description,
    down: AtomicBool,
    fail_first: AtomicU64,
    calls: AtomicU64,
}

impl Switch {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            description: Description {
                system: "crm".to_owned(),
                sections: vec![SectionDescriptor::json("cases", "cases")],
                capabilities: Capabilities::default(),
                version: "switch/1".to_owned(),
            },
            down: AtomicBool::new(false),
            fail_first: AtomicU64::new(0),
            calls: AtomicU64::new(0),
        })
    }

    fn source(self: &Arc<Self>, policy: SourcePolicy) -> Source {
        let built = BuiltAdapter {
            adapter: self.clone(),
            health: self.clone(),
        };
        Source::new("crm", built, policy)
    }
}

#[async_trait]
impl Adapter for Switch {
    fn describe(&self) -> &Description {
        &self.description
    }

    async fn fetch(&self, request: FetchRequest) -> Result<Vec<FetchResult>, FetchError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(5 * MS).await;
        if self.down.load(Ordering::SeqCst) || n < self.fail_first.load(Ordering::SeqCst) {
            return Err(FetchError::unavailable("HTTP 503 from upstream"));
        }
        Ok(vec![FetchResult {
            local_id: request.local_ids[0].clone(),
            section: request.sections[0].clone(),
            records: Ok(vec![Record {
                record_id: Some("case-1".to_owned()),
                json: Arc::from(r#"{"status":"open"}"#),
                update_time: None,
            }]),
            skipped_malformed: 0,
        }])
    }
}

#[async_trait]
impl HealthCheck for Switch {
    async fn check(&self) -> Health {
        Health::serving()
    }
}

#[tokio::test(start_paused = true)]
async fn an_unavailable_call_is_retried_within_the_deadline() {
    let switch = Switch::new();
    switch.fail_first.store(1, Ordering::SeqCst);
    let agg = aggregator(vec![switch.source(SourcePolicy::default())], table(FOUR));
    let view = agg
        .view(request(&agg, Duration::from_secs(1)))
        .await
        .expect("view");
    assert_eq!(state_of(&view, "crm"), SourceState::Ok);
    assert_eq!(switch.calls.load(Ordering::SeqCst), 2);
    assert_eq!(agg.sources()[0].stats().retries(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failing_source_is_served_stale_from_the_cache_and_then_fails_the_view() {
    let switch = Switch::new();
    let policy = SourcePolicy {
        ttl: Duration::from_secs(10),
        ..SourcePolicy::default()
    };
    let agg = aggregator(vec![switch.source(policy)], table(FOUR));
    agg.view(request(&agg, Duration::from_secs(1)))
        .await
        .expect("view");
    switch.down.store(true, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(11)).await;

    let view = agg
        .view(request(&agg, Duration::from_secs(1)))
        .await
        .expect("stale view");
    assert_eq!(state_of(&view, "crm"), SourceState::Stale);
    assert_eq!(view.sections["cases"].len(), 1);
    assert_eq!(view.unreachable, ["crm"]);
    let message = &view.statuses[0].message;
    assert!(message.contains("HTTP 503"), "{message}");

    agg.invalidate_master("m1").await.expect("known master");
    match agg.view(request(&agg, Duration::from_secs(1))).await {
        Err(ViewError::AllFailed { statuses }) => {
            assert_eq!(statuses[0].state, SourceState::Unavailable);
        }
        other => panic!("expected every source failed, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn the_circuit_breaker_stops_calls_to_a_failing_source() {
    let switch = Switch::new();
    switch.down.store(true, Ordering::SeqCst);
    let policy = SourcePolicy {
        retry: RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        },
        breaker: BreakerPolicy {
            min_calls: 5,
            ..BreakerPolicy::default()
        },
        ..SourcePolicy::default()
    };
    let (ok_source, _) = fake(FakeConfig::new("ehr", &["encounters"], MS));
    let agg = aggregator(vec![switch.source(policy), ok_source], table(FOUR));
    for _ in 0..5 {
        let view = agg
            .view(request(&agg, Duration::from_secs(1)))
            .await
            .expect("view");
        assert_eq!(state_of(&view, "crm"), SourceState::Unavailable);
        agg.invalidate_master("m1").await.expect("known");
    }
    assert_eq!(agg.sources()[0].breaker_state(), BreakerState::Open);
    let view = agg
        .view(request(&agg, Duration::from_secs(1)))
        .await
        .expect("view");
    assert_eq!(state_of(&view, "crm"), SourceState::CircuitOpen);
    assert_eq!(view.unreachable, ["crm"]);
    assert_eq!(
        switch.calls.load(Ordering::SeqCst),
        5,
        "not called while open"
    );

    switch.down.store(false, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(5)).await;
    let view = agg
        .view(request(&agg, Duration::from_secs(1)))
        .await
        .expect("view");
    assert_eq!(
        state_of(&view, "crm"),
        SourceState::Ok,
        "the probe succeeded"
    );
    assert_eq!(agg.sources()[0].breaker_state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn slow_calls_past_the_live_p95_are_hedged_within_the_budget() {
    let config = FakeConfig {
        slow_fraction: 0.03,
        jitter: Some(2 * MS),
        slow_latency: Some(Duration::from_millis(400)),
        ..FakeConfig::new("ehr", &["encounters"], 10 * MS)
    };
    let (source, stats) = fake(config);
    let patients: Vec<(String, String)> = (0..600)
        .map(|i| ("ehr".to_owned(), format!("E{i}")))
        .collect();
    let identities = Arc::new(Table(
        patients
            .iter()
            .map(|(system, id)| {
                let identities = Identities {
                    master: id.clone(),
                    records: refs(&[(system, id)]),
                };
                (id.clone(), identities)
            })
            .collect(),
    ));
    let agg = Aggregator::new(
        vec![source],
        identities,
        Arc::new(PurposePolicy::default()),
        ViewPolicy::default(),
    )
    .expect("one source");
    let mut slowest_after_warmup = Duration::ZERO;
    for (i, (_, id)) in patients.iter().enumerate() {
        let start = Instant::now();
        let view = agg
            .view(ViewRequest {
                subject: Subject::Master(id.clone()),
                ..request(&agg, Duration::from_secs(1))
            })
            .await
            .expect("view");
        assert_eq!(view.statuses[0].state, SourceState::Ok);
        if i >= 200 {
            slowest_after_warmup = slowest_after_warmup.max(start.elapsed());
        }
    }
    let s = agg.sources()[0].stats();
    assert!(s.hedges() > 0, "slow calls were hedged");
    assert!(s.hedges_won() > 0, "and hedges answered first");
    assert!(
        s.hedges() <= 60 + 10,
        "{} hedges for 600 calls exceed the 10 % budget",
        s.hedges()
    );
    assert_eq!(stats.calls(), 600 + s.hedges());
    assert!(
        slowest_after_warmup < Duration::from_millis(400),
        "a won hedge cuts the slow tail: slowest {slowest_after_warmup:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn subjects_and_sections_that_do_not_exist_are_errors() {
    let (source, _) = fake(FakeConfig::new("ehr", &["encounters"], MS));
    let agg = aggregator(vec![source], table(FOUR));
    let unknown = ViewRequest {
        subject: Subject::Master("nobody".to_owned()),
        ..request(&agg, Duration::from_secs(1))
    };
    assert_eq!(
        agg.view(unknown).await,
        Err(ViewError::Lookup(LookupError::NotFound { what: "master" }))
    );
    let bad_section = ViewRequest {
        sections: vec!["encounters".to_owned(), "horoscope".to_owned()],
        ..request(&agg, Duration::from_secs(1))
    };
    assert_eq!(
        agg.view(bad_section).await,
        Err(ViewError::UnknownSection {
            section: "horoscope".to_owned(),
            index: 1
        })
    );
    let by_record = ViewRequest {
        subject: Subject::SourceRecord(refs(&[("crm", "C1")])[0].clone()),
        ..request(&agg, Duration::from_secs(1))
    };
    let view = agg
        .view(by_record)
        .await
        .expect("resolved through a source record");
    assert_eq!(view.identities.master, "m1");
    let systems: BTreeSet<&str> = view.statuses.iter().map(|s| s.source.as_str()).collect();
    assert_eq!(systems, BTreeSet::from(["ehr"]));
}

#[tokio::test(start_paused = true)]
async fn a_caller_going_away_cancels_its_calls() {
    let (sources, stats) = four_silos();
    let agg = aggregator(sources, table(FOUR));
    let view = tokio::spawn({
        let agg = agg.clone();
        async move { agg.view(request(&agg, Duration::from_secs(10))).await }
    });
    tokio::time::sleep(30 * MS).await;
    assert_eq!(stats[3].in_flight(), 1, "the hung call is running");
    view.abort();
    let _ = view.await;
    tokio::task::yield_now().await;
    assert_eq!(
        (stats[3].in_flight(), stats[3].cancelled()),
        (0, 1),
        "dropping the request dropped the hung call"
    );
}

#[tokio::test(start_paused = true)]
async fn calls_beyond_a_sources_concurrency_limit_wait_for_a_slot() {
    let policy = SourcePolicy {
        max_concurrency: 2,
        ..SourcePolicy::default()
    };
    // One call per local ID: ten calls for the limit to queue.
    let (source, _stats) = batch::capped(
        FakeConfig::new("ehr", &["encounters"], 10 * MS),
        false,
        0,
        policy,
    );
    let records: Vec<(String, String)> = (0..10)
        .map(|i| ("ehr".to_owned(), format!("E{i}")))
        .collect();
    let pairs: Vec<(&str, &str)> = records
        .iter()
        .map(|(s, l)| (s.as_str(), l.as_str()))
        .collect();
    let agg = aggregator(vec![source], table(&pairs));
    let start = Instant::now();
    let view = agg
        .view(request(&agg, Duration::from_secs(1)))
        .await
        .expect("view");
    assert_eq!(view.sections["encounters"].len(), 20);
    assert_eq!(start.elapsed(), 50 * MS, "ten 10 ms calls, two at a time");

    let tight = ViewRequest {
        deadline: agg.deadline(Some(30 * MS)),
        max_staleness: Some(Duration::from_nanos(1)),
        ..request(&agg, Duration::from_secs(1))
    };
    let view = agg.view(tight).await.expect("a partial view");
    assert_eq!(
        view.statuses[0].state,
        SourceState::Stale,
        "no slot in time for some"
    );
    assert!(
        view.statuses[0].message.contains("deadline"),
        "{}",
        view.statuses[0].message
    );
    assert_eq!(
        view.sections["encounters"].len(),
        20,
        "the rest served stale from the cache"
    );
}

#[tokio::test]
async fn the_cache_stays_within_its_byte_bound() {
    let (source, _) = fake(FakeConfig {
        records: 4,
        record_bytes: 10_000,
        ..FakeConfig::new("ehr", &["encounters"], Duration::ZERO)
    });
    let records: Vec<(String, String)> = (0..300)
        .map(|i| ("ehr".to_owned(), format!("E{i}")))
        .collect();
    let pairs: Vec<(&str, &str)> = records
        .iter()
        .map(|(s, l)| (s.as_str(), l.as_str()))
        .collect();
    let agg = Aggregator::new(
        vec![source],
        table(&pairs),
        Arc::new(PurposePolicy::default()),
        ViewPolicy {
            cache_max_bytes: 1 << 20,
            ..ViewPolicy::default()
        },
    )
    .expect("one source");
    // 300 keys of ~40 KB: 12 MB asked of a 1 MiB cache.
    agg.view(request(&agg, Duration::from_secs(5)))
        .await
        .expect("view");
    let bytes = agg.cache_bytes().await;
    assert!(bytes <= 1 << 20, "{bytes} bytes cached");
    assert!(bytes >= 1 << 19, "the cache is used: {bytes} bytes");
}
