//! Observability end to end: the real binary exporting to a real OTLP receiver
//! (built from `opentelemetry-proto`), its Prometheus endpoint read by the
//! Python Prometheus client's parser, and its JSON logs.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::collections::BTreeMap;
use std::time::Duration;

use tessera_e2e::Tessera;
use tessera_e2e::otlp::{OtlpReceiver, ReceivedSpan};
use tessera_proto::v1::{
    self as pb, identity_service_client::IdentityServiceClient,
    patient_view_service_client::PatientViewServiceClient,
};

/// Exports every 100 ms so tests wait little.
const FAST_EXPORT: [(&str, &str); 2] = [
    ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ("OTEL_METRIC_EXPORT_INTERVAL", "200"),
];

fn config(extra_telemetry: &str) -> String {
    format!(
        r#"
server:
  listen: 127.0.0.1:0
  shutdown_grace_period: 2s
logging:
  format: json
  level: debug
telemetry:
  sampling_ratio: 0.0
  keep_slower_than: 700ms
{extra_telemetry}
identity:
  store: sqlite://data/identity.db
view:
  deadline_reserve: 50ms
sources:
  - name: ehr
    kind: fake
    config: {{system: ehr, sections: [encounters, conditions], latency: 10ms}}
  - name: billing
    kind: fake
    config: {{system: billing, sections: [invoices], latency: 20ms}}
  - name: marketing
    kind: fake
    config: {{system: marketing, sections: [consents], hang: true}}
"#
    )
}

fn key(system: &str, local_id: &str) -> pb::SourceRecordKey {
    pb::SourceRecordKey {
        system: system.to_owned(),
        local_id: local_id.to_owned(),
    }
}

fn person() -> pb::Demographics {
    pb::Demographics {
        given_names: vec!["Aurelio".to_owned()],
        family_name: "Quintanilla".to_owned(),
        birth_date: "1961-02-17".to_owned(),
        sex: pb::AdministrativeSex::Male.into(),
        ..pb::Demographics::default()
    }
}

/// Files one person under each silo's local ID; returns the master.
async fn seed(tessera: &Tessera, records: &[(&str, &str)]) -> String {
    let mut identity = IdentityServiceClient::new(tessera.connect().await.unwrap());
    let mut master = String::new();
    for (system, local_id) in records {
        let response = identity
            .upsert_source_record(pb::UpsertSourceRecordRequest {
                source_record: Some(pb::SourceRecord {
                    key: Some(key(system, local_id)),
                    demographics: Some(person()),
                    ..pb::SourceRecord::default()
                }),
                ..pb::UpsertSourceRecordRequest::default()
            })
            .await
            .unwrap()
            .into_inner();
        master = response.master;
    }
    master
}

fn view_request(
    master: &str,
    sections: &[&str],
    traceparent: Option<&str>,
) -> tonic::Request<pb::GetPatientViewRequest> {
    timed_view_request(master, sections, traceparent, Duration::from_millis(400))
}

fn timed_view_request(
    master: &str,
    sections: &[&str],
    traceparent: Option<&str>,
    timeout: Duration,
) -> tonic::Request<pb::GetPatientViewRequest> {
    let mut request = tonic::Request::new(pb::GetPatientViewRequest {
        subject: Some(pb::PatientSubject {
            subject: Some(pb::patient_subject::Subject::Master(master.to_owned())),
        }),
        read_mask: Some(prost_types::FieldMask {
            paths: sections.iter().map(|s| format!("sections.{s}")).collect(),
        }),
        purpose: pb::PurposeOfUse::Treatment.into(),
        ..pb::GetPatientViewRequest::default()
    });
    request.set_timeout(timeout);
    if let Some(tp) = traceparent {
        request
            .metadata_mut()
            .insert("traceparent", tp.parse().unwrap());
    }
    request
}

/// The spans of one trace, and a lookup by span ID.
struct Tree {
    spans: Vec<ReceivedSpan>,
    by_id: BTreeMap<String, ReceivedSpan>,
}

impl Tree {
    fn of(spans: &[ReceivedSpan], trace_id: &str) -> Self {
        let spans: Vec<ReceivedSpan> = spans
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect();
        let by_id = spans
            .iter()
            .map(|s| (s.span_id.clone(), s.clone()))
            .collect();
        Self { spans, by_id }
    }

    fn named(&self, name: &str) -> Vec<&ReceivedSpan> {
        self.spans.iter().filter(|s| s.name == name).collect()
    }

    fn parent(&self, span: &ReceivedSpan) -> &ReceivedSpan {
        self.by_id
            .get(&span.parent_span_id)
            .unwrap_or_else(|| panic!("{} has no parent in the trace", span.name))
    }

    /// The span's ancestors' names, nearest first.
    fn path(&self, span: &ReceivedSpan) -> Vec<String> {
        let mut names = Vec::new();
        let mut at = span;
        while let Some(parent) = self.by_id.get(&at.parent_span_id) {
            names.push(parent.name.clone());
            at = parent;
        }
        names
    }
}

const GET_VIEW: &str = "tessera.v1.PatientViewService/GetPatientView";
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_view_is_one_trace_under_the_callers_span_with_every_step_in_it() {
    let otlp = OtlpReceiver::start().await.unwrap();
    let mut env = FAST_EXPORT.to_vec();
    env.push(("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp.endpoint));
    let tessera = Tessera::start_with_env(
        crate::tessera_bin(),
        tempfile::tempdir().unwrap(),
        &config(""),
        &env,
    )
    .await
    .unwrap();
    let master = seed(&tessera, &[("ehr", "MRN-5521"), ("billing", "ACCT-88")]).await;
    let mut views = PatientViewServiceClient::new(tessera.connect().await.unwrap());

    // The caller sampled its trace; the ratio (0) does not override it.
    let traceparent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let sections = ["encounters", "conditions", "invoices"];
    views
        .get_patient_view(view_request(&master, &sections, Some(&traceparent)))
        .await
        .unwrap();
    let spans = otlp
        .wait_for(Duration::from_secs(10), |spans| {
            spans
                .iter()
                .any(|s| s.trace_id == CALLER_TRACE && s.name == GET_VIEW)
        })
        .await;
    let tree = Tree::of(&spans, CALLER_TRACE);

    // The server span continues the caller's span.
    let server = tree.named(GET_VIEW);
    assert_eq!(server.len(), 1, "{:#?}", tree.spans);
    let server = server[0];
    assert_eq!(server.parent_span_id, CALLER_SPAN);
    assert_eq!(server.kind, 2, "SERVER");
    assert_eq!(server.attributes["rpc.system.name"], "grpc");
    assert_eq!(server.attributes["rpc.method"], GET_VIEW);
    assert_eq!(server.attributes["rpc.response.status_code"], "OK");

    // Under it: the resolver step, a section span per (source, section), the
    // assembly.
    for name in ["identity.resolve", "view.assemble"] {
        let spans = tree.named(name);
        assert_eq!(spans.len(), 1, "{name}");
        assert_eq!(tree.parent(spans[0]).span_id, server.span_id, "{name}");
    }
    let sections_seen: Vec<(String, String)> = tree
        .named("view.section")
        .iter()
        .map(|s| {
            assert_eq!(tree.parent(s).span_id, server.span_id);
            (
                s.attributes["tessera.source"].clone(),
                s.attributes["tessera.section"].clone(),
            )
        })
        .collect();
    let mut sorted = sections_seen.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            ("billing".to_owned(), "invoices".to_owned()),
            ("ehr".to_owned(), "conditions".to_owned()),
            ("ehr".to_owned(), "encounters".to_owned()),
        ]
    );
    // Each section: one cache lookup (a miss); each source: one call for all
    // its sections (a batch) with one attempt, nested under the first lookup
    // that waited for it.
    for attempt in tree.named("adapter.attempt") {
        assert_eq!(
            tree.path(attempt),
            ["adapter.call", "cache.lookup", "view.section", GET_VIEW],
        );
        assert_eq!(attempt.attributes["tessera.attempt.kind"], "first");
    }
    assert_eq!(tree.named("adapter.call").len(), 2, "ehr and billing");
    assert_eq!(tree.named("adapter.attempt").len(), 2);
    for lookup in tree.named("cache.lookup") {
        assert_eq!(lookup.attributes["tessera.cache.result"], "miss");
    }
    // Nothing names the patient: no local IDs, no master ID (not configured).
    for span in &tree.spans {
        for value in span.attributes.values() {
            assert!(
                !value.contains("MRN-5521") && !value.contains(&master),
                "{span:?}"
            );
        }
    }

    // The same view again: answered from the cache, no adapter call.
    let again = "4bf92f3577b34da6a3ce929d0e0e4737";
    views
        .get_patient_view(view_request(
            &master,
            &sections,
            Some(&format!("00-{again}-{CALLER_SPAN}-01")),
        ))
        .await
        .unwrap();
    let spans = otlp
        .wait_for(Duration::from_secs(10), |spans| {
            spans
                .iter()
                .any(|s| s.trace_id == again && s.name == GET_VIEW)
        })
        .await;
    let tree = Tree::of(&spans, again);
    assert_eq!(tree.named("cache.lookup").len(), 3);
    assert!(
        tree.named("cache.lookup")
            .iter()
            .all(|s| s.attributes["tessera.cache.result"] == "hit")
    );
    assert!(tree.named("adapter.call").is_empty());

    // An upsert's resolver steps: the candidate search and the commit under
    // the resolver's span, which records the decision (a new person here).
    let upsert_trace = "4bf92f3577b34da6a3ce929d0e0e4738";
    let mut identity = IdentityServiceClient::new(tessera.connect().await.unwrap());
    let mut upsert = tonic::Request::new(pb::UpsertSourceRecordRequest {
        source_record: Some(pb::SourceRecord {
            key: Some(key("ehr", "MRN-7730")),
            demographics: Some(pb::Demographics {
                given_names: vec!["Ottoline".to_owned()],
                family_name: "Brandvold".to_owned(),
                birth_date: "1990-09-09".to_owned(),
                ..pb::Demographics::default()
            }),
            ..pb::SourceRecord::default()
        }),
        ..pb::UpsertSourceRecordRequest::default()
    });
    upsert.metadata_mut().insert(
        "traceparent",
        format!("00-{upsert_trace}-{CALLER_SPAN}-01")
            .parse()
            .unwrap(),
    );
    identity.upsert_source_record(upsert).await.unwrap();
    let upsert_method = "tessera.v1.IdentityService/UpsertSourceRecord";
    let spans = otlp
        .wait_for(Duration::from_secs(10), |spans| {
            spans
                .iter()
                .any(|s| s.trace_id == upsert_trace && s.name == upsert_method)
        })
        .await;
    let tree = Tree::of(&spans, upsert_trace);
    let resolver = tree.named("resolver.upsert");
    assert_eq!(resolver.len(), 1, "{:#?}", tree.spans);
    assert_eq!(tree.parent(resolver[0]).name, upsert_method);
    assert_eq!(resolver[0].attributes["tessera.decision"], "no_match");
    assert_eq!(resolver[0].attributes["tessera.link"], "auto");
    for step in ["resolver.candidates", "resolver.commit"] {
        let spans = tree.named(step);
        assert_eq!(spans.len(), 1, "{step}");
        assert_eq!(tree.parent(spans[0]).span_id, resolver[0].span_id, "{step}");
    }

    // The log lines of a traced call carry its trace ID: the upsert's SQL
    // statements are logged (sqlx, at debug here). The view's identity lookup
    // no longer runs SQL on the embedded store, so it logs nothing to check.
    let logs = tessera.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains(&format!("\"trace_id\":\"{upsert_trace}\""))),
        "no log line carries the trace id:\n{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsampled_views_are_dropped_unless_slow_or_failed_whose_server_span_is_kept() {
    let otlp = OtlpReceiver::start().await.unwrap();
    let mut env = FAST_EXPORT.to_vec();
    env.push(("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp.endpoint));
    let tessera = Tessera::start_with_env(
        crate::tessera_bin(),
        tempfile::tempdir().unwrap(),
        &config(""),
        &env,
    )
    .await
    .unwrap();
    let master = seed(&tessera, &[("ehr", "MRN-5521"), ("marketing", "sub-1")]).await;
    let mut views = PatientViewServiceClient::new(tessera.connect().await.unwrap());

    // Fast, new trace, ratio 0: nothing kept.
    views
        .get_patient_view(view_request(&master, &["encounters"], None))
        .await
        .unwrap();
    // Slow (the hung silo holds it to the deadline): its server span is kept.
    views
        .get_patient_view(timed_view_request(
            &master,
            &["encounters", "consents"],
            None,
            Duration::from_secs(1),
        ))
        .await
        .unwrap();
    let spans = otlp
        .wait_for(Duration::from_secs(10), |spans| {
            spans.iter().any(|s| s.name == GET_VIEW)
        })
        .await;
    // Give a wrongly exported fast view time to show up too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(spans);
    let spans = otlp.spans();
    let servers: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.name == GET_VIEW).collect();
    let mut trace_ids: Vec<&str> = servers.iter().map(|s| s.trace_id.as_str()).collect();
    trace_ids.dedup();
    assert_eq!(
        trace_ids.len(),
        1,
        "only the slow view: {servers:#?}\nlogs:\n{}",
        tessera.logs()
    );
    assert_eq!(servers[0].attributes["tessera.sampling"], "tail");
    assert!(
        spans
            .iter()
            .all(|s| s.name == GET_VIEW || s.name.starts_with("tessera.v1.IdentityService")),
        "no child spans of unsampled views: {spans:#?}"
    );
}

/// The Python with the test requirements (see `scripts/python-env`).
fn python() -> std::path::PathBuf {
    std::env::var_os("TESSERA_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tessera_e2e::workspace_root().join(".venv/bin/python"))
}

/// `GET /metrics` over a plain HTTP/1.1 connection.
async fn scrape(addr: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    body.to_owned()
}

/// The metrics address the server printed.
fn metrics_addr(tessera: &Tessera) -> String {
    let out = tessera.stdout();
    out.lines()
        .find_map(|l| l.strip_prefix("metrics on http://"))
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("no metrics address in {out:?}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prometheus_endpoint_parses_and_shows_red_metrics_after_a_short_load() {
    let tessera = Tessera::start(
        crate::tessera_bin(),
        &config("  prometheus_listen: 127.0.0.1:0"),
    )
    .await
    .unwrap();
    let master = seed(
        &tessera,
        &[
            ("ehr", "MRN-5521"),
            ("billing", "ACCT-88"),
            ("marketing", "sub-1"),
        ],
    )
    .await;
    let mut views = PatientViewServiceClient::new(tessera.connect().await.unwrap());
    for _ in 0..20 {
        views
            .get_patient_view(view_request(&master, &["encounters", "invoices"], None))
            .await
            .unwrap();
    }
    // One view waits out the hung silo: an unreachable source.
    views
        .get_patient_view(view_request(&master, &["encounters", "consents"], None))
        .await
        .unwrap();

    let text = scrape(&metrics_addr(&tessera)).await;
    let mut parser = std::process::Command::new(python())
        .arg(tessera_e2e::workspace_root().join("tests/python/parse_metrics.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        parser
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let output = parser.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the Prometheus parser refused:\n{text}"
    );
    let families: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let family = |name: &str| {
        families
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
            .clone()
    };
    let samples = |name: &str| family(name)["samples"].as_array().unwrap().clone();
    let value_where = |name: &str, sample: &str, labels: &[(&str, &str)]| -> f64 {
        samples(name)
            .iter()
            .filter(|s| s["name"] == sample)
            .filter(|s| labels.iter().all(|(k, v)| s["labels"][*k] == *v))
            .map(|s| s["value"].as_f64().unwrap())
            .sum()
    };

    // RED per method: the server's call durations.
    assert_eq!(
        family("rpc_server_call_duration_seconds")["type"],
        "histogram"
    );
    assert_eq!(
        value_where(
            "rpc_server_call_duration_seconds",
            "rpc_server_call_duration_seconds_count",
            &[("rpc_method", GET_VIEW), ("rpc_response_status_code", "OK")]
        ),
        21.0
    );
    // Per adapter: call durations by outcome; the cache; the unreachable source.
    assert_eq!(
        family("tessera_adapter_call_duration_seconds")["type"],
        "histogram"
    );
    assert!(
        value_where(
            "tessera_adapter_call_duration_seconds",
            "tessera_adapter_call_duration_seconds_count",
            &[("source", "ehr"), ("outcome", "ok")]
        ) >= 1.0
    );
    let lookups = |result: &str| {
        value_where(
            "tessera_cache_lookups",
            "tessera_cache_lookups_total",
            &[("result", result)],
        )
    };
    assert_eq!(
        lookups("hit") + lookups("miss") + lookups("coalesced"),
        42.0,
        "21 views × 2 sections"
    );
    assert!(
        lookups("hit") >= 30.0,
        "warm views are answered from the cache"
    );
    assert_eq!(
        value_where(
            "tessera_view_unreachable",
            "tessera_view_unreachable_total",
            &[("source", "marketing"), ("status", "TIMEOUT")]
        ),
        1.0
    );
    assert_eq!(
        value_where(
            "tessera_adapter_breaker_state",
            "tessera_adapter_breaker_state",
            &[("source", "ehr")]
        ),
        0.0,
        "closed"
    );
    assert!(value_where("tessera_cache_size_bytes", "tessera_cache_size_bytes", &[]) > 0.0);
    // The resolver: decisions by outcome, the review queue.
    assert!(
        value_where(
            "tessera_resolver_decisions",
            "tessera_resolver_decisions_total",
            &[("outcome", "match")]
        ) >= 1.0
    );
    family("tessera_resolver_review_open");

    // Labels come from small fixed sets.
    let allowed = [
        "source",
        "section",
        "outcome",
        "result",
        "status",
        "cause",
        "link",
        "rpc_system_name",
        "rpc_method",
        "rpc_response_status_code",
        "le",
        "otel_scope_name",
        "otel_scope_version",
        "otel_scope_schema_url",
        "service_name",
        "service_version",
        "telemetry_sdk_language",
        "telemetry_sdk_name",
        "telemetry_sdk_version",
    ];
    for (name, family) in families.as_object().unwrap() {
        for sample in family["samples"].as_array().unwrap() {
            for label in sample["labels"].as_object().unwrap().keys() {
                assert!(
                    allowed.contains(&label.as_str()),
                    "{name} has label {label}"
                );
            }
        }
    }
}

/// A patient nobody else has: every part of it is searched for in telemetry.
const CANARY_GIVEN: &str = "Zebulonia";
const CANARY_FAMILY: &str = "Quartermaine";
const CANARY_BIRTH: &str = "1917-03-29";
const CANARY_MRN: &str = "MRN-CANARY-77123";

fn canary() -> pb::Demographics {
    pb::Demographics {
        given_names: vec![CANARY_GIVEN.to_owned()],
        family_name: CANARY_FAMILY.to_owned(),
        birth_date: CANARY_BIRTH.to_owned(),
        sex: pb::AdministrativeSex::Female.into(),
        phones: vec!["(608) 555-0177".to_owned()],
        emails: vec!["zebulonia.q@example.org".to_owned()],
        identifiers: vec![pb::PersonIdentifier {
            r#type: pb::PersonIdentifierType::NationalId.into(),
            system: String::new(),
            value: "529-71-3388".to_owned(),
        }],
        ..pb::Demographics::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_patient_appears_in_no_span_metric_or_log_line_after_every_rpc() {
    let otlp = OtlpReceiver::start().await.unwrap();
    let mut env = FAST_EXPORT.to_vec();
    env.push(("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp.endpoint));
    // Every trace kept, logs at debug: the most telemetry there can be.
    let config = config("  prometheus_listen: 127.0.0.1:0\n  sampling_ratio: 1.0")
        .replace("  sampling_ratio: 0.0\n", "");
    let mut tessera = Tessera::start_with_env(
        crate::tessera_bin(),
        tempfile::tempdir().unwrap(),
        &config,
        &env,
    )
    .await
    .unwrap();
    let channel = tessera.connect().await.unwrap();
    let mut identity = IdentityServiceClient::new(channel.clone());
    let mut views = PatientViewServiceClient::new(channel);
    let record = |system: &str, local_id: &str, demographics: pb::Demographics| {
        pb::UpsertSourceRecordRequest {
            source_record: Some(pb::SourceRecord {
                key: Some(key(system, local_id)),
                demographics: Some(demographics),
                ..pb::SourceRecord::default()
            }),
            request_id: format!("req-{local_id}"),
            ..pb::UpsertSourceRecordRequest::default()
        }
    };

    // IdentityService, every RPC (answers beside the point: what they log is).
    let first = identity
        .upsert_source_record(record("ehr", CANARY_MRN, canary()))
        .await
        .unwrap()
        .into_inner();
    let master = first.master.clone();
    identity
        .upsert_source_record(record("billing", "ACCT-CANARY-55", canary()))
        .await
        .unwrap();
    let mut other = canary();
    other.birth_date = "1917-09-03".to_owned();
    other.identifiers.clear();
    let second = identity
        .upsert_source_record(record("marketing", "SUB-CANARY-9", other))
        .await
        .unwrap()
        .into_inner();
    let mut bad = canary();
    bad.birth_date = format!("{CANARY_BIRTH}-not-a-date");
    let refused = identity
        .upsert_source_record(record("ehr", "MRN-CANARY-BAD", bad))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    identity
        .resolve_record(pb::ResolveRecordRequest {
            source_record: Some(key("ehr", CANARY_MRN)),
        })
        .await
        .unwrap();
    identity
        .match_demographics(pb::MatchDemographicsRequest {
            demographics: Some(canary()),
            ..pb::MatchDemographicsRequest::default()
        })
        .await
        .unwrap();
    identity
        .get_master(pb::GetMasterRequest {
            name: master.clone(),
        })
        .await
        .unwrap();
    identity
        .list_links(pb::ListLinksRequest {
            parent: master.clone(),
            ..pb::ListLinksRequest::default()
        })
        .await
        .unwrap();
    let reviews = identity
        .list_review_items(pb::ListReviewItemsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let review_name = reviews
        .review_items
        .first()
        .map_or_else(|| "reviewItems/999999".to_owned(), |r| r.name.clone());
    let _ = identity
        .resolve_review_item(pb::ResolveReviewItemRequest {
            name: review_name,
            outcome: pb::ReviewOutcome::NewMaster.into(),
            ..pb::ResolveReviewItemRequest::default()
        })
        .await;
    let _ = identity
        .link_source_record(pb::LinkSourceRecordRequest {
            source_record: Some(key("marketing", "SUB-CANARY-9")),
            master: master.clone(),
            request_id: "req-link".to_owned(),
        })
        .await;
    let _ = identity
        .merge_masters(pb::MergeMastersRequest {
            master: master.clone(),
            source_master: second.master.clone(),
            request_id: "req-merge".to_owned(),
        })
        .await;
    let _ = identity
        .unmerge_source_record(pb::UnmergeSourceRecordRequest {
            source_record: Some(key("marketing", "SUB-CANARY-9")),
            request_id: "req-unmerge".to_owned(),
        })
        .await;
    identity
        .list_link_events(pb::ListLinkEventsRequest {
            parent: master.clone(),
            ..pb::ListLinkEventsRequest::default()
        })
        .await
        .unwrap();

    // PatientViewService: by source record (the MRN travels), by master,
    // streamed and batched, one with the hung silo.
    let by_mrn = || {
        Some(pb::PatientSubject {
            subject: Some(pb::patient_subject::Subject::SourceRecord(key(
                "ehr", CANARY_MRN,
            ))),
        })
    };
    let mut get = view_request(&master, &["encounters", "consents"], None);
    get.get_mut().subject = by_mrn();
    views.get_patient_view(get).await.unwrap();
    views
        .get_patient_view(view_request(&master, &["encounters", "invoices"], None))
        .await
        .unwrap();
    let mut stream = views
        .stream_patient_view(pb::StreamPatientViewRequest {
            subject: by_mrn(),
            purpose: pb::PurposeOfUse::Treatment.into(),
            ..pb::StreamPatientViewRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    while stream.message().await.unwrap().is_some() {}
    views
        .batch_get_patient_views(pb::BatchGetPatientViewsRequest {
            subjects: vec![
                by_mrn().unwrap(),
                pb::PatientSubject {
                    subject: Some(pb::patient_subject::Subject::SourceRecord(key(
                        "ehr",
                        "MRN-CANARY-UNKNOWN",
                    ))),
                },
            ],
            purpose: pb::PurposeOfUse::Treatment.into(),
            ..pb::BatchGetPatientViewsRequest::default()
        })
        .await
        .unwrap();

    // Collect: spans and metrics over OTLP, the scrape, the logs (after a
    // graceful stop has flushed everything).
    let spans = otlp
        .wait_for(Duration::from_secs(10), |spans| {
            spans
                .iter()
                .any(|s| s.name == "tessera.v1.PatientViewService/BatchGetPatientViews")
        })
        .await;
    assert!(spans.len() > 20, "the traces arrived: {}", spans.len());
    let scraped = scrape(&metrics_addr(&tessera)).await;
    tessera.terminate().unwrap();
    assert!(
        tessera
            .wait(Duration::from_secs(30))
            .await
            .unwrap()
            .success()
    );
    assert!(otlp.metric_exports() > 0, "metrics arrived over OTLP");
    let logs = tessera.logs();
    assert!(logs.lines().count() > 10, "debug logs were written");
    let trail_path = tessera.dir().join("data/audit.jsonl");
    let trail = std::fs::read_to_string(&trail_path).unwrap();
    let logs_and_all = [
        ("OTLP exports", otlp.raw()),
        ("Prometheus scrape", scraped),
        ("logs", logs),
        ("audit trail", trail),
    ];

    // The haystacks are real: they hold what they should.
    assert!(
        logs_and_all[0].1.contains("view.section")
            && logs_and_all[0].1.contains("tessera.cache.lookups")
    );
    assert!(
        logs_and_all[1]
            .1
            .contains("tessera_resolver_decisions_total")
    );
    assert!(logs_and_all[2].1.contains("source record upserted"));
    // One record per call: the upserts, reads, link calls and the four views.
    let report = tessera_audit::verify(&trail_path).unwrap();
    assert!(report.records >= 10, "{} audit records", report.records);
    assert!(
        logs_and_all[3]
            .1
            .contains("tessera.v1.PatientViewService/BatchGetPatientViews")
            && logs_and_all[3].1.contains("UpsertSourceRecord")
    );
    let needles = [
        CANARY_GIVEN,
        CANARY_FAMILY,
        CANARY_BIRTH,
        "19170329",
        "1917-09-03",
        CANARY_MRN,
        "MRN-CANARY",
        "ACCT-CANARY",
        "SUB-CANARY",
        "555-0177",
        "5550177",
        "zebulonia.q",
        "529-71-3388",
        "529713388",
    ];
    for (what, text) in &logs_and_all {
        let lower = text.to_lowercase();
        for needle in needles {
            assert!(
                !lower.contains(&needle.to_lowercase()),
                "{needle} found in the {what}"
            );
        }
    }
}

/// One view over three real silos — Medplum (FHIR), PostgreSQL (SQL) and the
/// Python example adapter in a process of its own (gRPC over a Unix socket) —
/// is one trace under the caller's span: each silo call is a client span under
/// its section's attempt, and the FHIR server received that trace in the
/// `traceparent` of every request the view made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_over_fhir_sql_and_an_out_of_process_adapter_is_one_trace_the_ehr_continues() {
    use tessera_e2e::silos::{Silos, SilosOptions, link_person};

    let silos = Silos::start(SilosOptions::default()).await.unwrap();
    let otlp = OtlpReceiver::start().await.unwrap();
    let mut env = FAST_EXPORT.to_vec();
    env.push(("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp.endpoint));
    let config = silos.gateway_config(
        "logging:\n  format: json\ntelemetry:\n  sampling_ratio: 0.0\n  keep_slower_than: 60s\nview:\n  deadline_reserve: 50ms\n",
    );
    let tessera = Tessera::start_with_env(
        crate::tessera_bin(),
        tempfile::tempdir().unwrap(),
        &config,
        &env,
    )
    .await
    .unwrap();
    let channel = tessera.connect().await.unwrap();
    let master = link_person(channel.clone()).await.unwrap();
    let mut views = PatientViewServiceClient::new(channel);

    let trace = "0af7651916cd43dd8448eb211c80319c";
    let traceparent = format!("00-{trace}-{CALLER_SPAN}-01");
    let mut request = view_request(
        &master,
        &["encounters", "invoices", "consents"],
        Some(&traceparent),
    );
    request.set_timeout(Duration::from_secs(5));
    let view = views.get_patient_view(request).await.unwrap().into_inner();
    assert!(view.unreachable.is_empty(), "{:?}", view.source_statuses);
    let spans = otlp
        .wait_for(Duration::from_secs(10), |spans| {
            spans
                .iter()
                .any(|s| s.trace_id == trace && s.name == GET_VIEW)
        })
        .await;
    // Give spans of the view exported under another trace time to show up.
    drop(spans);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let spans = otlp.spans();

    // One trace: every span of the view's steps and silo calls carries its ID.
    let view_steps = [
        "identity.resolve",
        "view.section",
        "cache.lookup",
        "adapter.call",
        "adapter.attempt",
        "view.assemble",
    ];
    for span in &spans {
        if view_steps.contains(&span.name.as_str()) || span.kind == 3 {
            assert_eq!(span.trace_id, trace, "{span:#?}");
        }
    }
    let tree = Tree::of(&spans, trace);
    let server = tree.named(GET_VIEW);
    assert_eq!(server.len(), 1);
    let server = server[0];
    assert_eq!(server.parent_span_id, CALLER_SPAN);

    // Each section's attempt sits under its call, lookup and section span, and
    // holds the client spans of its silo (the FHIR adapter's own steps, such
    // as finding the patient, may sit between).
    let mut clients_by_source: BTreeMap<String, Vec<&ReceivedSpan>> = BTreeMap::new();
    for client in tree.spans.iter().filter(|s| s.kind == 3) {
        let path = tree.path(client);
        let at = path
            .iter()
            .position(|name| name == "adapter.attempt")
            .unwrap_or_else(|| panic!("{client:#?} is not under an attempt: {path:?}"));
        assert!(
            path[..at].iter().all(|name| name.starts_with("fhir.")),
            "{path:?}"
        );
        assert_eq!(
            path[at..],
            [
                "adapter.attempt",
                "adapter.call",
                "cache.lookup",
                "view.section",
                GET_VIEW
            ],
        );
        let mut section = client;
        while section.name != "view.section" {
            section = tree.parent(section);
        }
        clients_by_source
            .entry(section.attributes["tessera.source"].clone())
            .or_default()
            .push(client);
    }
    assert_eq!(
        clients_by_source.keys().collect::<Vec<_>>(),
        ["billing", "ehr", "marketing"]
    );
    // EHR: HTTP GETs to Medplum, the patient's segments and query left out.
    let ehr = &clients_by_source["ehr"];
    for call in ehr {
        assert_eq!(call.attributes["http.request.method"], "GET", "{call:#?}");
        assert_eq!(call.attributes["http.response.status_code"], "200");
        assert_eq!(call.attributes["server.address"], "127.0.0.1");
        let template = &call.attributes["url.template"];
        assert!(
            template.starts_with('/') && !template.contains('?'),
            "{template}"
        );
    }
    // Billing: one statement on PostgreSQL.
    let billing = &clients_by_source["billing"];
    assert_eq!(billing.len(), 1, "{billing:#?}");
    assert_eq!(billing[0].attributes["db.system.name"], "postgresql");
    assert_eq!(billing[0].attributes["tessera.section"], "invoices");
    // Marketing: one call to the Python process.
    let marketing = &clients_by_source["marketing"];
    assert_eq!(marketing.len(), 1, "{marketing:#?}");
    assert_eq!(
        marketing[0].attributes["rpc.method"],
        "tessera.v1.SourceAdapterService/FetchRecords"
    );
    assert_eq!(marketing[0].attributes["rpc.response.status_code"], "OK");

    // The EHR received the trace: each of the view's requests carried the
    // caller's trace ID and, as parent, the client span that made it.
    let received = silos.fhir_traceparents().await.unwrap();
    let mut parents: Vec<String> = received
        .iter()
        .filter_map(|tp| {
            let parts: Vec<&str> = tp.split('-').collect();
            (parts.len() == 4 && parts[1] == trace).then(|| {
                assert_eq!(parts[0], "00", "{tp}");
                assert_eq!(parts[3], "01", "sampled: {tp}");
                parts[2].to_owned()
            })
        })
        .collect();
    parents.sort();
    let mut http_spans: Vec<String> = ehr.iter().map(|s| s.span_id.clone()).collect();
    http_spans.sort();
    assert!(!http_spans.is_empty());
    assert_eq!(parents, http_spans, "received: {received:#?}");
}
