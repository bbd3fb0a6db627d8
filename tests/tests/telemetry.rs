//! Observability end to end: the real binary exporting to a real OTLP receiver
//! (built from `opentelemetry-proto`), its Prometheus endpoint read by the
//! Python Prometheus client's parser, and its JSON logs.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::collections::BTreeMap;
use std::time::Duration;

use tessera_e2e::otlp::{OtlpReceiver, ReceivedSpan};
use tessera_e2e::Tessera;
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
        request.metadata_mut().insert("traceparent", tp.parse().unwrap());
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
        let by_id = spans.iter().map(|s| (s.span_id.clone(), s.clone())).collect();
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
    let tessera = Tessera::start_with_env(tempfile::tempdir().unwrap(), &config(""), &env)
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
            spans.iter().any(|s| s.trace_id == CALLER_TRACE && s.name == GET_VIEW)
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
    // Each section: one cache lookup (a miss), one call, one attempt, nested.
    for attempt in tree.named("adapter.attempt") {
        assert_eq!(
            tree.path(attempt),
            ["adapter.call", "cache.lookup", "view.section", GET_VIEW],
        );
        assert_eq!(attempt.attributes["tessera.attempt.kind"], "first");
    }
    assert_eq!(tree.named("adapter.attempt").len(), 3);
    for lookup in tree.named("cache.lookup") {
        assert_eq!(lookup.attributes["tessera.cache.result"], "miss");
    }
    // Nothing names the patient: no local IDs, no master ID (not configured).
    for span in &tree.spans {
        for value in span.attributes.values() {
            assert!(!value.contains("MRN-5521") && !value.contains(&master), "{span:?}");
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
            spans.iter().any(|s| s.trace_id == again && s.name == GET_VIEW)
        })
        .await;
    let tree = Tree::of(&spans, again);
    assert_eq!(tree.named("cache.lookup").len(), 3);
    assert!(tree.named("cache.lookup").iter().all(|s| s.attributes["tessera.cache.result"] == "hit"));
    assert!(tree.named("adapter.call").is_empty());

    // The log lines of a traced call carry its trace ID.
    let logs = tessera.logs();
    assert!(
        logs.lines().any(|l| l.contains(&format!("\"trace_id\":\"{CALLER_TRACE}\""))),
        "no log line carries the trace id:\n{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsampled_views_are_dropped_unless_slow_or_failed_whose_server_span_is_kept() {
    let otlp = OtlpReceiver::start().await.unwrap();
    let mut env = FAST_EXPORT.to_vec();
    env.push(("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp.endpoint));
    let tessera = Tessera::start_with_env(tempfile::tempdir().unwrap(), &config(""), &env)
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
    let spans: Vec<ReceivedSpan> = otlp.spans().into_iter().chain(spans).collect();
    let servers: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.name == GET_VIEW).collect();
    let mut trace_ids: Vec<&str> = servers.iter().map(|s| s.trace_id.as_str()).collect();
    trace_ids.dedup();
    assert_eq!(trace_ids.len(), 1, "only the slow view: {servers:#?}");
    assert_eq!(servers[0].attributes["tessera.sampling"], "tail");
    assert!(
        spans.iter().all(|s| s.name == GET_VIEW || s.name.starts_with("tessera.v1.IdentityService")),
        "no child spans of unsampled views: {spans:#?}"
    );
}
