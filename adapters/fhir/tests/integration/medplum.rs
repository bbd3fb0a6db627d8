//! Happy paths and the conformance kit against the real server.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use tessera_adapter_core::conformance::{self, Fixture, MalformedUpstream, SlowUpstream};
use tessera_adapter_core::{
    Adapter, AdapterKind, BuildContext, FetchError, FetchRequest, FetchResult, HealthState, Record,
    Registry,
};
use tessera_adapter_fhir::{
    FhirAdapter, FhirConfig, FhirKind, PatientIdConfig, Section, SectionOptions,
};
use tessera_test_fhir_server::FhirServer;
use tessera_types::Sex;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::logs;
use crate::seed::{MRN_SYSTEM, PEOPLE, RICH_OBSERVATIONS, SENSITIVE, seed};

pub(crate) fn context() -> BuildContext {
    BuildContext {
        name: "ehr".to_owned(),
        base_dir: std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests"),
    }
}

pub(crate) fn build(base_url: &str, adjust: impl FnOnce(&mut FhirConfig)) -> Arc<dyn Adapter> {
    let mut config = FhirConfig::new("ehr", base_url);
    adjust(&mut config);
    Arc::new(FhirAdapter::build(&context(), config).expect("adapter builds"))
}

pub(crate) async fn fetch(
    adapter: &dyn Adapter,
    local_id: &str,
    sections: &[&str],
    within: Duration,
) -> Vec<FetchResult> {
    let request = FetchRequest {
        local_ids: vec![local_id.to_owned()],
        sections: sections.iter().map(|s| (*s).to_owned()).collect(),
        deadline: Instant::now() + within,
    };
    adapter.fetch(request).await.expect("fetch")
}

pub(crate) fn records<'a>(results: &'a [FetchResult], section: &str) -> &'a [Record] {
    let result = results
        .iter()
        .find(|r| r.section == section)
        .expect("a result for the section");
    match &result.records {
        Ok(records) => records,
        Err(e) => panic!("section {section} failed: {e}"),
    }
}

/// A server that accepts connections and never answers; counts open ones.
pub(crate) struct Stalled {
    pub(crate) url: String,
    pub(crate) open: Arc<AtomicU64>,
}

pub(crate) async fn stalled() -> Stalled {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/fhir/", listener.local_addr().expect("addr"));
    let open = Arc::new(AtomicU64::new(0));
    let counter = open.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counter = counter.clone();
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = socket.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
                counter.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    Stalled { url, open }
}

/// The stalled-silo adapter, returning only once the silo has seen the connection
/// its deadline dropped (hyper closes it on its connection task, a few ms later;
/// at most 50ms is waited). The kit runs its cancellation check right after the
/// stalled-silo check and snapshots the silo's count first: without this, that
/// snapshot can still count the previous check's closing connection.
struct Settled {
    inner: Arc<dyn Adapter>,
    open: Arc<AtomicU64>,
}

#[async_trait::async_trait]
impl Adapter for Settled {
    fn describe(&self) -> &tessera_adapter_core::Description {
        self.inner.describe()
    }

    async fn fetch(&self, request: FetchRequest) -> Result<Vec<FetchResult>, FetchError> {
        let result = self.inner.fetch(request).await;
        let give_up = Instant::now() + Duration::from_millis(50);
        while self.open.load(Ordering::SeqCst) > 0 && Instant::now() < give_up {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        result
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_conformance_kit_against_medplum() {
    logs::init();
    let server = FhirServer::start().expect("server");
    let seeded = seed(&server).await;
    let adapter = build(&server.base_url(), |c| c.page_size = 5);
    let stall = stalled().await;
    let open = stall.open.clone();
    let fixture = Fixture {
        known_local_id: seeded.patient_ids[0].clone(),
        unknown_local_id: "no-such-patient-4711".to_owned(),
        sensitive: SENSITIVE.iter().map(|s| (*s).to_owned()).collect(),
        slow: Some(SlowUpstream {
            adapter: Arc::new(Settled {
                inner: build(&stall.url, |_| {}),
                open: stall.open.clone(),
            }),
            local_id: seeded.patient_ids[2].clone(),
            section: "observations".to_owned(),
            upstream_in_flight: Arc::new(move || open.load(Ordering::SeqCst)),
        }),
        malformed: Some(MalformedUpstream {
            adapter: adapter.clone(),
            local_id: seeded.patient_ids[1].clone(),
            section: "observations".to_owned(),
        }),
    };
    let report = conformance::run(adapter, &fixture).await;
    println!("{report}");
    assert_eq!((report.failed(), report.skipped()), (0, 0), "{report}");
    logs::assert_no_patient_data();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_returns_every_section_paging_through_more_than_three_pages() {
    logs::init();
    let server = FhirServer::start().expect("server");
    let seeded = seed(&server).await;
    let adapter = build(&server.base_url(), |c| c.page_size = 5);
    let sections: Vec<&str> = Section::ALL.iter().map(|s| s.name()).collect();
    let results = fetch(
        &*adapter,
        &seeded.patient_ids[0],
        &sections,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(results.len(), sections.len());
    let observations = records(&results, "observations");
    assert_eq!(observations.len(), RICH_OBSERVATIONS, "4 pages of 5");
    let mut ids: Vec<_> = observations
        .iter()
        .filter_map(|r| r.record_id.clone())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), RICH_OBSERVATIONS, "every record has its own id");
    for section in &sections {
        let records = records(&results, section);
        assert!(!records.is_empty(), "{section} is empty");
        for record in records {
            let json: serde_json::Value = serde_json::from_str(&record.json).expect("JSON");
            assert_eq!(
                json["id"].as_str(),
                record.record_id.as_deref(),
                "provenance: the resource id"
            );
            assert!(record.update_time.is_some(), "provenance: meta.lastUpdated");
            let expected = Section::from_name(section).map(Section::resource_type);
            assert_eq!(json["resourceType"].as_str(), expected);
        }
    }
    let patient = &records(&results, "demographics")[0];
    assert!(
        patient.json.contains(PEOPLE[0].family),
        "demographics is the Patient as served"
    );
    let document = &records(&results, "documents")[0];
    assert!(
        !document.json.contains("\"data\""),
        "documents are metadata only"
    );
    assert!(document.json.contains("text/plain"));
    assert!(results.iter().all(|r| r.skipped_malformed == 0));
    logs::assert_no_patient_data();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finds_patients_by_mrn_by_get_and_by_post_search() {
    logs::init();
    let server = FhirServer::start().expect("server");
    let seeded = seed(&server).await;
    let by_id = build(&server.base_url(), |_| {});
    let expected = fetch(
        &*by_id,
        &seeded.patient_ids[0],
        &["demographics", "conditions"],
        Duration::from_secs(10),
    )
    .await;
    for post in [false, true] {
        let by_mrn = build(&server.base_url(), |c| {
            c.patient_id = PatientIdConfig::Identifier {
                system: MRN_SYSTEM.to_owned(),
            };
            c.search_via_post = post;
        });
        let results = fetch(
            &*by_mrn,
            PEOPLE[0].mrn,
            &["demographics", "conditions"],
            Duration::from_secs(10),
        )
        .await;
        for section in ["demographics", "conditions"] {
            assert_eq!(
                records(&results, section),
                records(&expected, section),
                "{section}, post: {post}"
            );
        }
        let missing = fetch(
            &*by_mrn,
            "MRN-0000000",
            &["demographics"],
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(missing[0].records, Err(FetchError::NotFound));
        // An MRN is not a logical id: the logical-id adapter does not find it.
        let wrong = fetch(
            &*by_id,
            PEOPLE[0].mrn,
            &["demographics"],
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(wrong[0].records, Err(FetchError::NotFound));
    }
    logs::assert_no_patient_data();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn includes_and_last_updated_windows_are_sent_and_honoured() {
    logs::init();
    let server = FhirServer::start().expect("server");
    let seeded = seed(&server).await;
    let adapter = build(&server.base_url(), |c| {
        c.section_options.insert(
            Section::Medications,
            SectionOptions {
                include: vec!["MedicationRequest:medication".to_owned()],
                last_updated_within: None,
            },
        );
        c.section_options.insert(
            Section::Observations,
            SectionOptions {
                include: vec![],
                last_updated_within: Some(Duration::from_secs(3600)),
            },
        );
    });
    let results = fetch(
        &*adapter,
        &seeded.patient_ids[0],
        &["medications", "observations"],
        Duration::from_secs(10),
    )
    .await;
    let mut types: Vec<String> = records(&results, "medications")
        .iter()
        .map(|r| {
            serde_json::from_str::<serde_json::Value>(&r.json).expect("json")["resourceType"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    types.sort();
    assert_eq!(types, ["Medication", "MedicationRequest"]);
    assert_eq!(
        records(&results, "observations").len(),
        RICH_OBSERVATIONS,
        "all changed within the hour"
    );
    logs::assert_no_patient_data();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skips_and_counts_a_malformed_observation_without_logging_it() {
    logs::init();
    let server = FhirServer::start().expect("server");
    let seeded = seed(&server).await;
    let adapter = build(&server.base_url(), |_| {});
    let results = fetch(
        &*adapter,
        &seeded.patient_ids[1],
        &["observations", "encounters"],
        Duration::from_secs(10),
    )
    .await;
    let observations = results
        .iter()
        .find(|r| r.section == "observations")
        .expect("observations");
    assert_eq!(observations.skipped_malformed, 1);
    let kept = records(&results, "observations");
    assert_eq!(kept.len(), 1);
    assert!(
        kept.iter()
            .all(|r| r.record_id.as_deref() != Some(seeded.malformed_observation.as_str()))
    );
    assert_eq!(
        records(&results, "encounters").len(),
        1,
        "other sections are unaffected"
    );
    assert!(logs::text().contains("skipped a malformed resource"));
    logs::assert_no_patient_data();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_identity_feed_streams_every_patient_paged() {
    logs::init();
    let server = FhirServer::start().expect("server");
    let seeded = seed(&server).await;
    let registry = Registry::new().with(FhirKind);
    let config = serde_json::json!({"system": "ehr", "base_url": server.base_url(), "page_size": 2,
        "patient_id": {"type": "identifier", "system": MRN_SYSTEM}});
    let built = registry
        .build("fhir", &context(), config)
        .await
        .expect("built through the registry");
    assert_eq!(built.health.check().await.state, HealthState::Serving);
    let feed: Vec<_> = built.adapter.identity_feed(None).collect().await;
    let mut feed: Vec<_> = feed.into_iter().map(|r| r.expect("feed record")).collect();
    feed.sort_by(|a, b| a.local_id.cmp(&b.local_id));
    let mut people: Vec<_> = PEOPLE.iter().collect();
    people.sort_by(|a, b| a.mrn.cmp(b.mrn));
    assert_eq!(feed.len(), PEOPLE.len(), "3 patients over 2 pages");
    for (record, person) in feed.iter().zip(people) {
        assert_eq!(record.local_id, person.mrn);
        assert_eq!(record.demographics.family_name, person.family);
        assert_eq!(record.demographics.given_names, [person.given]);
        assert_eq!(record.demographics.birth_date, person.birth_date);
        assert_eq!(
            record.demographics.sex,
            if person.gender == "male" {
                Sex::Male
            } else {
                Sex::Female
            }
        );
        assert_eq!(record.demographics.phones, ["555-0100"]);
        assert!(record.update_time.is_some());
    }
    // By logical id, and incrementally: nothing changed after an hour from now.
    let by_id = FhirKind
        .build(&context(), FhirConfig::new("ehr", &server.base_url()))
        .await
        .expect("built");
    let ids: Vec<_> = by_id
        .adapter
        .identity_feed(None)
        .map(|r| r.expect("record").local_id)
        .collect()
        .await;
    assert_eq!(ids.len(), seeded.patient_ids.len());
    assert!(seeded.patient_ids.iter().all(|id| ids.contains(id)));
    let later = SystemTime::now() + Duration::from_secs(3600);
    assert_eq!(by_id.adapter.identity_feed(Some(later)).count().await, 0);
    logs::assert_no_patient_data();
}

/// Adapter overhead per fetch over direct HTTP GETs of the same two searches (the
/// patient lookup and one page of 17 observations) against the same server, p50
/// and p90 over 200 rounds, interleaved. Reported, not asserted: run it alone,
/// `cargo test -p tessera-adapter-fhir --test integration -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run alone, with --ignored --nocapture"]
async fn benchmark_overhead_over_direct_gets() {
    logs::init();
    let server = FhirServer::start().expect("server");
    let seeded = seed(&server).await;
    let adapter = build(&server.base_url(), |c| c.page_size = 50);
    let http = reqwest::Client::new();
    let id = &seeded.patient_ids[0];
    let urls = [
        format!("{}Patient?_id={id}&_count=2", server.base_url()),
        format!("{}Observation?patient={id}&_count=50", server.base_url()),
    ];
    const WARMUP: usize = 20;
    const N: usize = 200;
    let (mut direct, mut via) = (Vec::with_capacity(N), Vec::with_capacity(N));
    for i in 0..WARMUP + N {
        let start = std::time::Instant::now();
        for url in &urls {
            let body = http
                .get(url)
                .send()
                .await
                .expect("get")
                .bytes()
                .await
                .expect("body");
            assert!(body.len() > 500);
        }
        let d = start.elapsed();
        let start = std::time::Instant::now();
        let results = fetch(&*adapter, id, &["observations"], Duration::from_secs(10)).await;
        let v = start.elapsed();
        assert_eq!(records(&results, "observations").len(), RICH_OBSERVATIONS);
        if i >= WARMUP {
            direct.push(d);
            via.push(v);
        }
    }
    direct.sort();
    via.sort();
    let at = |v: &[Duration], q: f64| v[((v.len() - 1) as f64 * q) as usize];
    println!(
        "fhir adapter benchmark, {N} fetches of 1 page of {RICH_OBSERVATIONS} observations (debug build):\n  \
         direct GETs (patient lookup + search): p50 {:?}  p90 {:?}\n  \
         adapter fetch:                         p50 {:?}  p90 {:?}\n  \
         overhead per fetch:                    p50 {:?}",
        at(&direct, 0.5),
        at(&direct, 0.9),
        at(&via, 0.5),
        at(&via, 0.9),
        at(&via, 0.5).saturating_sub(at(&direct, 0.5)),
    );
    logs::assert_no_patient_data();
}
