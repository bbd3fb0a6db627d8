//! Faults a real server cannot be made to produce, from wiremock: 429 and 503 with
//! `Retry-After`, slow answers, 500s, a malformed Bundle, a cross-origin next link.
//! Each yields its documented error within the deadline, and the other sections
//! of the same fetch are unaffected.

use std::time::Duration;

use serde_json::{Value, json};
use tessera_adapter_core::FetchError;
use tessera_adapter_fhir::{PatientIdConfig, RetryConfig, Section, SectionOptions};
use tokio::time::Instant;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::logs;
use crate::medplum::{build, fetch, records};
use crate::seed::{MRN_SYSTEM, PEOPLE};

const PATIENT_ID: &str = "pat-1";

fn bundle(resources: Vec<Value>, next: Option<String>) -> Value {
    let mut b = json!({"resourceType": "Bundle", "type": "searchset", "total": resources.len(),
        "entry": resources.into_iter().map(|r| json!({"resource": r})).collect::<Vec<_>>()});
    if let Some(next) = next {
        b["link"] = json!([{"relation": "next", "url": next}]);
    }
    b
}

fn fhir(status: u16, body: &Value) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("content-type", "application/fhir+json")
        .set_body_string(body.to_string())
}

fn resource(kind: &str, id: &str) -> Value {
    let mut r = json!({"resourceType": kind, "id": id, "meta": {"lastUpdated": "2026-01-01T00:00:00Z"}, "status": "final"});
    match kind {
        "Patient" => {
            r = json!({"resourceType": "Patient", "id": id, "identifier": [{"system": MRN_SYSTEM, "value": PEOPLE[0].mrn}],
                "name": [{"family": PEOPLE[0].family, "given": [PEOPLE[0].given]}], "birthDate": PEOPLE[0].birth_date});
        }
        "Observation" => r["code"] = json!({"text": "x"}),
        "Encounter" => {
            r["status"] = "finished".into();
            r["class"] = json!({"code": "AMB"});
        }
        _ => {}
    }
    r
}

/// A fake EHR whose Patient and Encounter searches work.
async fn ehr() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/fhir/Patient"))
        .respond_with(fhir(
            200,
            &bundle(vec![resource("Patient", PATIENT_ID)], None),
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/fhir/Encounter"))
        .respond_with(fhir(
            200,
            &bundle(vec![resource("Encounter", "enc-1")], None),
        ))
        .mount(&server)
        .await;
    server
}

fn base(server: &MockServer) -> String {
    format!("{}/fhir/", server.uri())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_retried_when_its_retry_after_fits_the_deadline() {
    logs::init();
    let server = ehr().await;
    Mock::given(method("GET"))
        .and(path("/fhir/Observation"))
        .respond_with(fhir(429, &json!({})).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/fhir/Observation"))
        .respond_with(fhir(
            200,
            &bundle(vec![resource("Observation", "obs-1")], None),
        ))
        .mount(&server)
        .await;
    let adapter = build(&base(&server), |_| {});
    let start = Instant::now();
    let results = fetch(
        &*adapter,
        PATIENT_ID,
        &["observations", "encounters"],
        Duration::from_secs(5),
    )
    .await;
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "waited out Retry-After"
    );
    assert_eq!(records(&results, "observations").len(), 1);
    assert_eq!(records(&results, "encounters").len(), 1);

    // Every request carried a W3C traceparent; one trace id for the whole fetch.
    let requests = server.received_requests().await.expect("recording");
    assert_eq!(requests.len(), 4, "patient, encounters, observations twice");
    let mut trace_ids = Vec::new();
    for request in &requests {
        let tp = request
            .headers
            .get("traceparent")
            .expect("traceparent")
            .to_str()
            .expect("ascii");
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(
            (parts.len(), parts[0], parts[1].len(), parts[2].len()),
            (4, "00", 32, 16),
            "{tp}"
        );
        trace_ids.push(parts[1].to_owned());
    }
    trace_ids.dedup();
    assert_eq!(trace_ids.len(), 1);
    logs::assert_no_patient_data();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_past_the_deadline_returns_rate_limited_with_the_hint_at_once() {
    logs::init();
    let server = ehr().await;
    Mock::given(method("GET"))
        .and(path("/fhir/Observation"))
        .respond_with(fhir(429, &json!({})).insert_header("retry-after", "30"))
        .mount(&server)
        .await;
    let adapter = build(&base(&server), |_| {});
    let start = Instant::now();
    let results = fetch(
        &*adapter,
        PATIENT_ID,
        &["observations", "encounters"],
        Duration::from_secs(2),
    )
    .await;
    assert!(
        start.elapsed() < Duration::from_millis(1000),
        "{:?}",
        start.elapsed()
    );
    let observations = results
        .iter()
        .find(|r| r.section == "observations")
        .expect("result");
    assert_eq!(
        observations.records,
        Err(FetchError::RateLimited {
            retry_after: Some(Duration::from_secs(30))
        })
    );
    assert_eq!(records(&results, "encounters").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_is_retried_then_unavailable_with_retry_info() {
    logs::init();
    let server = ehr().await;
    Mock::given(method("GET"))
        .and(path("/fhir/Observation"))
        .respond_with(
            fhir(503, &json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "transient"}]}))
                .insert_header("retry-after", "0"),
        )
        .mount(&server)
        .await;
    let adapter = build(&base(&server), |c| {
        c.retry = RetryConfig {
            max_attempts: 3,
            ..RetryConfig::default()
        }
    });
    let results = fetch(
        &*adapter,
        PATIENT_ID,
        &["observations", "encounters"],
        Duration::from_secs(2),
    )
    .await;
    let observations = results
        .iter()
        .find(|r| r.section == "observations")
        .expect("result");
    assert_eq!(
        observations.records,
        Err(FetchError::Unavailable {
            message: "upstream failed (HTTP 503, issue transient)".to_owned(),
            retry_after: Some(Duration::ZERO),
        })
    );
    let tries = server
        .received_requests()
        .await
        .expect("recording")
        .iter()
        .filter(|r| r.url.path() == "/fhir/Observation")
        .count();
    assert_eq!(tries, 3, "max_attempts");
    assert_eq!(records(&results, "encounters").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_section_stops_at_the_deadline_and_the_others_arrive() {
    logs::init();
    let server = ehr().await;
    Mock::given(method("GET"))
        .and(path("/fhir/Observation"))
        .respond_with(fhir(200, &bundle(vec![], None)).set_delay(Duration::from_secs(5)))
        .mount(&server)
        .await;
    let adapter = build(&base(&server), |_| {});
    let start = Instant::now();
    let results = fetch(
        &*adapter,
        PATIENT_ID,
        &["observations", "encounters"],
        Duration::from_millis(500),
    )
    .await;
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(450) && elapsed < Duration::from_millis(600),
        "{elapsed:?}"
    );
    let observations = results
        .iter()
        .find(|r| r.section == "observations")
        .expect("result");
    assert_eq!(observations.records, Err(FetchError::DeadlineExceeded));
    assert_eq!(records(&results, "encounters").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_next_link_on_another_origin_is_refused_and_reported() {
    logs::init();
    let server = ehr().await;
    let elsewhere = MockServer::start().await;
    let foreign = format!(
        "{}/fhir/Observation?patient={PATIENT_ID}&page=2",
        elsewhere.uri()
    );
    Mock::given(method("GET"))
        .and(path("/fhir/Observation"))
        .respond_with(fhir(
            200,
            &bundle(vec![resource("Observation", "obs-1")], Some(foreign)),
        ))
        .mount(&server)
        .await;
    let adapter = build(&base(&server), |_| {});
    let results = fetch(
        &*adapter,
        PATIENT_ID,
        &["observations", "encounters"],
        Duration::from_secs(2),
    )
    .await;
    let observations = results
        .iter()
        .find(|r| r.section == "observations")
        .expect("result");
    assert!(
        matches!(&observations.records, Err(FetchError::Malformed { message }) if message.contains("another origin")),
        "{:?}",
        observations.records
    );
    assert_eq!(
        elsewhere
            .received_requests()
            .await
            .expect("recording")
            .len(),
        0,
        "never followed"
    );
    assert_eq!(records(&results, "encounters").len(), 1);
    assert!(logs::text().contains("refused a next link on another origin"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bundles_500s_and_refusals_are_typed_and_carry_no_patient_data() {
    logs::init();
    let server = ehr().await;
    Mock::given(method("GET"))
        .and(path("/fhir/Observation"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>not fhir</html>"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/fhir/Condition"))
        .respond_with(fhir(500, &json!({"resourceType": "OperationOutcome", "issue": [{"severity": "fatal", "code": "exception",
            "diagnostics": format!("NullPointerException for {} {}", PEOPLE[0].given, PEOPLE[0].family)}]})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/fhir/Immunization"))
        .respond_with(fhir(403, &json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "forbidden",
            "diagnostics": format!("no consent from patient {} (MRN {})", PEOPLE[0].family, PEOPLE[0].mrn)}]})))
        .mount(&server)
        .await;
    let adapter = build(&base(&server), |_| {});
    let results = fetch(
        &*adapter,
        PATIENT_ID,
        &["observations", "conditions", "immunizations", "encounters"],
        Duration::from_secs(2),
    )
    .await;
    let error = |section: &str| {
        results
            .iter()
            .find(|r| r.section == section)
            .expect("result")
            .records
            .clone()
            .expect_err("an error")
    };
    assert!(matches!(
        error("observations"),
        FetchError::Malformed { .. }
    ));
    assert_eq!(
        error("conditions"),
        FetchError::unavailable("upstream failed (HTTP 500, issue exception)")
    );
    assert_eq!(
        error("immunizations").to_string(),
        "source denied access: upstream refused the adapter's credentials (HTTP 403, issue forbidden)"
    );
    assert_eq!(records(&results, "encounters").len(), 1);
    for r in &results {
        if let Err(e) = &r.records {
            let text = format!("{e} {e:?}");
            for needle in crate::seed::SENSITIVE {
                assert!(!text.contains(needle), "an error carries patient data");
            }
        }
    }
    logs::assert_no_patient_data();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_search_keeps_identifiers_out_of_urls() {
    logs::init();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/fhir/Patient/_search"))
        .respond_with(fhir(
            200,
            &bundle(vec![resource("Patient", PATIENT_ID)], None),
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/fhir/Encounter/_search"))
        .respond_with(fhir(
            200,
            &bundle(vec![resource("Encounter", "enc-1")], None),
        ))
        .mount(&server)
        .await;
    let adapter = build(&base(&server), |c| {
        c.search_via_post = true;
        c.patient_id = PatientIdConfig::Identifier {
            system: MRN_SYSTEM.to_owned(),
        };
    });
    let results = fetch(
        &*adapter,
        PEOPLE[0].mrn,
        &["demographics", "encounters"],
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(records(&results, "encounters").len(), 1);
    let requests = server.received_requests().await.expect("recording");
    assert_eq!(requests.len(), 2);
    for request in &requests {
        let url = request.url.as_str();
        assert!(
            !url.contains(PEOPLE[0].mrn) && !url.contains(PATIENT_ID),
            "an id in a URL"
        );
        assert_eq!(
            request
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/x-www-form-urlencoded")
        );
    }
    let bodies: Vec<String> = requests
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert!(bodies[0].contains("identifier=") && bodies[0].contains(PEOPLE[0].mrn));
    assert!(
        bodies
            .iter()
            .any(|b| b.contains(&format!("patient={PATIENT_ID}")))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_updated_windows_and_includes_are_sent_as_configured() {
    logs::init();
    let server = ehr().await;
    Mock::given(method("GET"))
        .and(path("/fhir/MedicationRequest"))
        .respond_with(fhir(200, &bundle(vec![], None)))
        .mount(&server)
        .await;
    let adapter = build(&base(&server), |c| {
        c.section_options.insert(
            Section::Medications,
            SectionOptions {
                include: vec!["MedicationRequest:medication".to_owned()],
                last_updated_within: Some(Duration::from_secs(86_400)),
            },
        );
    });
    let results = fetch(
        &*adapter,
        PATIENT_ID,
        &["medications"],
        Duration::from_secs(2),
    )
    .await;
    assert!(records(&results, "medications").is_empty());
    let requests = server.received_requests().await.expect("recording");
    let search = requests
        .iter()
        .find(|r| r.url.path() == "/fhir/MedicationRequest")
        .expect("searched");
    let query: Vec<(String, String)> = search.url.query_pairs().into_owned().collect();
    let get = |k: &str| {
        query
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get("patient").as_deref(), Some(PATIENT_ID));
    assert_eq!(get("_count").as_deref(), Some("50"));
    assert_eq!(
        get("_include").as_deref(),
        Some("MedicationRequest:medication")
    );
    let since = get("_lastUpdated").expect("_lastUpdated");
    let at = since.strip_prefix("ge").expect("a ge prefix");
    let at = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
        .expect("an RFC 3339 instant");
    let a_day_ago = time::OffsetDateTime::now_utc() - Duration::from_secs(86_400);
    assert!(
        (at - a_day_ago).abs() < time::Duration::seconds(60),
        "{since}"
    );
}
