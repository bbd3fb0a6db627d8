//! PatientViewService end to end: the real binary with fake silos (one of them
//! hung), the identity resolver on an embedded store, and a tonic client.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::time::{Duration, Instant};

use tessera_e2e::Tessera;
use tessera_proto::v1::{
    self as pb, identity_service_client::IdentityServiceClient,
    patient_view_service_client::PatientViewServiceClient,
};
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

const CONFIG: &str = r#"
server:
  listen: 127.0.0.1:0
  shutdown_grace_period: 2s
logging:
  format: json
identity:
  store: sqlite://data/identity.db
view:
  # The test machine is shared with parallel tests and builds: keep back enough
  # time that a scheduling hiccup does not push the answer past the deadline.
  deadline_reserve: 50ms
  access:
    marketing: [consents]
sources:
  - name: ehr
    kind: fake
    config: {system: ehr, sections: [encounters, conditions], latency: 10ms}
  - name: billing
    kind: fake
    config: {system: billing, sections: [invoices], latency: 20ms}
  - name: crm
    kind: fake
    config: {system: crm, sections: [cases], latency: 50ms}
  - name: marketing
    kind: fake
    config: {system: marketing, sections: [consents], hang: true}
"#;

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
        phones: vec!["(414) 555-0199".to_owned()],
        identifiers: vec![pb::PersonIdentifier {
            r#type: pb::PersonIdentifierType::NationalId.into(),
            system: String::new(),
            value: "219-44-8120".to_owned(),
        }],
        ..pb::Demographics::default()
    }
}

/// Starts Tessera and files one person under four silos' local IDs.
async fn start() -> (Tessera, PatientViewServiceClient<Channel>, String) {
    let tessera = Tessera::start(crate::tessera_bin(), CONFIG).await.unwrap();
    let channel = tessera.connect().await.unwrap();
    let mut identity = IdentityServiceClient::new(channel.clone());
    let mut master = String::new();
    for (system, local_id) in [
        ("ehr", "MRN-5521"),
        ("billing", "ACCT-88"),
        ("crm", "0035x7"),
        ("marketing", "sub-4410"),
    ] {
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
        if master.is_empty() {
            master.clone_from(&response.master);
        }
        assert_eq!(response.master, master, "{system} links to the same master");
    }
    (tessera, PatientViewServiceClient::new(channel), master)
}

fn subject_master(master: &str) -> Option<pb::PatientSubject> {
    Some(pb::PatientSubject {
        subject: Some(pb::patient_subject::Subject::Master(master.to_owned())),
    })
}

fn get(
    subject: Option<pb::PatientSubject>,
    timeout: Duration,
) -> tonic::Request<pb::GetPatientViewRequest> {
    let mut request = tonic::Request::new(pb::GetPatientViewRequest {
        subject,
        purpose: pb::PurposeOfUse::Treatment.into(),
        ..pb::GetPatientViewRequest::default()
    });
    request.set_timeout(timeout);
    request
}

fn state(view_statuses: &[pb::SourceStatus], source: &str) -> pb::SourceState {
    view_statuses
        .iter()
        .find(|s| s.source == source)
        .map(|s| s.state())
        .unwrap_or_else(|| panic!("no status for {source}"))
}

#[tokio::test]
async fn a_view_arrives_within_the_callers_deadline_without_the_hung_silo() {
    let (_tessera, mut views, master) = start().await;
    let started = Instant::now();
    let view = views
        .get_patient_view(get(subject_master(&master), Duration::from_millis(1000)))
        .await
        .expect("the view arrives before the client's own deadline")
        .into_inner();
    let elapsed = started.elapsed();

    assert_eq!(view.name, format!("{master}/view"));
    let mut sections: Vec<&str> = view.sections.keys().map(String::as_str).collect();
    sections.sort_unstable();
    assert_eq!(sections, ["cases", "conditions", "encounters", "invoices"]);
    for source in ["sources/ehr", "sources/billing", "sources/crm"] {
        assert_eq!(state(&view.source_statuses, source), pb::SourceState::Ok);
    }
    assert_eq!(
        state(&view.source_statuses, "sources/marketing"),
        pb::SourceState::Timeout
    );
    assert_eq!(view.unreachable, ["sources/marketing"]);
    assert!(
        elapsed >= Duration::from_millis(300),
        "waited for the hung silo until near the deadline: {elapsed:?}"
    );

    let record = &view.sections["encounters"].records[0];
    let provenance = record.provenance.as_ref().unwrap();
    assert_eq!(provenance.source, "sources/ehr");
    assert_eq!(provenance.source_record, Some(key("ehr", "MRN-5521")));
    assert!(!provenance.cache_hit);
    let json: serde_json::Value = serde_json::from_str(&record.json).unwrap();
    assert_eq!(json["section"], "encounters");

    // Asked by a source record this time, and served from the cache.
    let by_record = Some(pb::PatientSubject {
        subject: Some(pb::patient_subject::Subject::SourceRecord(key(
            "billing", "ACCT-88",
        ))),
    });
    let mut request = get(by_record, Duration::from_millis(400));
    request.get_mut().read_mask = Some(prost_types_mask(&["sections.invoices"]));
    let view = views.get_patient_view(request).await.unwrap().into_inner();
    assert_eq!(view.name, format!("{master}/view"));
    assert_eq!(view.sections.keys().collect::<Vec<_>>(), ["invoices"]);
    assert!(
        view.sections["invoices"].records[0]
            .provenance
            .as_ref()
            .unwrap()
            .cache_hit
    );
    assert_eq!(view.source_statuses.len(), 1);
}

fn prost_types_mask(paths: &[&str]) -> prost_types::FieldMask {
    prost_types::FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    }
}

#[tokio::test]
async fn the_stream_sends_identities_then_fast_sections_then_the_summary() {
    let (_tessera, mut views, master) = start().await;
    let mut request = tonic::Request::new(pb::StreamPatientViewRequest {
        subject: subject_master(&master),
        purpose: pb::PurposeOfUse::Treatment.into(),
        ..pb::StreamPatientViewRequest::default()
    });
    request.set_timeout(Duration::from_millis(1000));
    let mut stream = views
        .stream_patient_view(request)
        .await
        .unwrap()
        .into_inner();
    let mut events = Vec::new();
    while let Some(message) = stream.message().await.unwrap() {
        events.push(message.event.unwrap());
    }
    use pb::stream_patient_view_response::Event;
    let Event::Identities(identities) = &events[0] else {
        panic!("identities come first: {:?}", events[0]);
    };
    assert_eq!(identities.master, master);
    assert_eq!(identities.source_records.len(), 4);
    let chunks: Vec<(&str, pb::SourceState)> = events[1..events.len() - 1]
        .iter()
        .map(|e| match e {
            Event::Section(c) => (c.section.as_str(), c.status.as_ref().unwrap().state()),
            other => panic!("expected a section, got {other:?}"),
        })
        .collect();
    // In completion order: 10 ms, 10 ms, 20 ms, 50 ms, then the hung silo's timeout.
    assert_eq!(chunks.len(), 5);
    assert_eq!(chunks[2], ("invoices", pb::SourceState::Ok));
    assert_eq!(chunks[3], ("cases", pb::SourceState::Ok));
    assert_eq!(chunks[4], ("consents", pb::SourceState::Timeout));
    let Event::Summary(summary) = events.last().unwrap() else {
        panic!("the summary comes last");
    };
    assert_eq!(summary.unreachable, ["sources/marketing"]);
    assert_eq!(summary.source_statuses.len(), 5);
}

#[tokio::test]
async fn bad_requests_get_field_violations_and_unknown_subjects_not_found() {
    let (_tessera, mut views, master) = start().await;
    let violation = |status: tonic::Status| {
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        status.get_details_bad_request().unwrap().field_violations[0]
            .field
            .clone()
    };

    let mut no_purpose = get(subject_master(&master), Duration::from_secs(2));
    no_purpose.get_mut().purpose = 0;
    assert_eq!(
        violation(views.get_patient_view(no_purpose).await.unwrap_err()),
        "purpose"
    );

    let mut bad_mask = get(subject_master(&master), Duration::from_secs(2));
    bad_mask.get_mut().read_mask = Some(prost_types_mask(&["sections.encounters", "name"]));
    assert_eq!(
        violation(views.get_patient_view(bad_mask).await.unwrap_err()),
        "read_mask.paths[1]"
    );

    let mut unknown_section = get(subject_master(&master), Duration::from_secs(2));
    unknown_section.get_mut().read_mask = Some(prost_types_mask(&["sections.horoscope"]));
    assert_eq!(
        violation(views.get_patient_view(unknown_section).await.unwrap_err()),
        "read_mask.paths[0]"
    );

    assert_eq!(
        violation(
            views
                .get_patient_view(get(subject_master("42"), Duration::from_secs(2)))
                .await
                .unwrap_err()
        ),
        "subject.master"
    );
    assert_eq!(
        violation(
            views
                .get_patient_view(get(None, Duration::from_secs(2)))
                .await
                .unwrap_err()
        ),
        "subject"
    );

    let missing = views
        .get_patient_view(get(
            subject_master("masters/999999"),
            Duration::from_secs(2),
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
}

#[tokio::test]
async fn a_purpose_sees_only_its_sections_and_all_of_them_failing_is_unavailable() {
    let (_tessera, mut views, master) = start().await;
    // Marketing may see consents only, and the marketing silo hangs.
    let mut request = get(subject_master(&master), Duration::from_millis(300));
    request.get_mut().purpose = pb::PurposeOfUse::Marketing.into();
    let status = views.get_patient_view(request).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let info = status.get_details_error_info().unwrap();
    assert_eq!(info.reason, "ALL_SOURCES_FAILED");
    assert_eq!(info.metadata["sources/marketing/consents"], "TIMEOUT");

    // Asking a denied section explicitly is refused, and nothing else leaks.
    let mut request = get(subject_master(&master), Duration::from_millis(300));
    request.get_mut().purpose = pb::PurposeOfUse::Marketing.into();
    request.get_mut().read_mask = Some(prost_types_mask(&["sections.encounters"]));
    let status = views.get_patient_view(request).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn a_batch_returns_each_subjects_view_or_its_own_error() {
    let (_tessera, mut views, master) = start().await;
    let mut request = tonic::Request::new(pb::BatchGetPatientViewsRequest {
        subjects: vec![
            subject_master(&master).unwrap(),
            subject_master("masters/999999").unwrap(),
        ],
        read_mask: Some(prost_types_mask(&["sections.invoices"])),
        purpose: pb::PurposeOfUse::Payment.into(),
        ..pb::BatchGetPatientViewsRequest::default()
    });
    request.set_timeout(Duration::from_secs(2));
    let results = views
        .batch_get_patient_views(request)
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(results.len(), 2);
    match &results[0].result {
        Some(pb::patient_view_result::Result::PatientView(view)) => {
            assert_eq!(view.sections["invoices"].records.len(), 2);
        }
        other => panic!("expected a view, got {other:?}"),
    }
    match &results[1].result {
        Some(pb::patient_view_result::Result::Error(status)) => {
            assert_eq!(status.code, Code::NotFound as i32);
        }
        other => panic!("expected NOT_FOUND, got {other:?}"),
    }
}

/// Runs `tessera view` against the server and returns (exit code, stdout).
async fn tessera_view(args: &[&str]) -> (i32, String, String) {
    let output = tokio::process::Command::new(crate::tessera_bin())
        .arg("view")
        .args(args)
        .output()
        .await
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[tokio::test]
async fn tessera_view_prints_a_table_per_section_and_the_source_statuses() {
    let (tessera, _views, master) = start().await;
    let url = tessera.url();
    let (code, out, err) = tessera_view(&[
        "--addr",
        &url,
        "--ref",
        "billing/ACCT-88",
        "--sections",
        "encounters,consents",
        "--timeout",
        "1s",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&master), "{out}");
    assert!(out.contains("encounters (2 records)"), "{out}");
    let marketing = out
        .lines()
        .find(|l| l.trim_start().starts_with("marketing") && l.contains("consents"))
        .unwrap_or_else(|| panic!("no status line for marketing:\n{out}"));
    assert!(marketing.contains("TIMEOUT"), "{marketing}");

    let (code, out, err) = tessera_view(&[
        "--addr",
        &url,
        "--master",
        &master,
        "--json",
        "--sections",
        "invoices",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["name"], format!("{master}/view"));
    assert_eq!(
        json["sections"]["invoices"]["records"][0]["json"]["section"],
        "invoices"
    );

    let (code, _, err) = tessera_view(&["--addr", &url, "--master", "masters/999999"]).await;
    assert_eq!(code, 1);
    assert!(err.starts_with("error: NOT_FOUND"), "{err}");
}
