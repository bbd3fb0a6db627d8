//! The adapter kinds end to end, against real silos (`tessera_e2e::silos`): the
//! real binary with a `fhir` source on Medplum's FHIR server, an `sql` source on
//! PostgreSQL and a `grpc` source on the Python example adapter, running as a
//! process of its own on a Unix socket. One view combines the three silos'
//! sections with their provenance; killing the Python process in the middle of a
//! fetch leaves that source UNAVAILABLE (and in `unreachable`) and the rest of the
//! view intact, within the deadline.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::time::{Duration, Instant};

use tessera_e2e::Tessera;
use tessera_e2e::silos::{self, ACCOUNT, MEMBER, MRN, Silos, SilosOptions};
use tessera_proto::v1::{self as pb, patient_view_service_client::PatientViewServiceClient};

/// Every marketing fetch takes this long, so the test can kill the process while
/// one is running.
const PYTHON_FETCH_DELAY: Duration = Duration::from_millis(300);

fn state(view: &pb::PatientView, source: &str) -> pb::SourceState {
    let states: Vec<_> = view
        .source_statuses
        .iter()
        .filter(|s| s.source == source)
        .map(pb::SourceStatus::state)
        .collect();
    assert!(!states.is_empty(), "no status for {source}");
    // One status per (source, section): they must agree.
    assert!(
        states.iter().all(|s| *s == states[0]),
        "{source}: {states:?}"
    );
    states[0]
}

fn records<'a>(view: &'a pb::PatientView, section: &str) -> &'a [pb::ViewRecord] {
    view.sections
        .get(section)
        .map(|s| s.records.as_slice())
        .unwrap_or_else(|| panic!("no {section} section"))
}

fn json(record: &pb::ViewRecord) -> serde_json::Value {
    serde_json::from_str(&record.json).unwrap()
}

fn request(master: &str, timeout: Duration) -> tonic::Request<pb::GetPatientViewRequest> {
    let mut request = tonic::Request::new(pb::GetPatientViewRequest {
        subject: Some(pb::PatientSubject {
            subject: Some(pb::patient_subject::Subject::Master(master.to_owned())),
        }),
        purpose: pb::PurposeOfUse::Treatment.into(),
        ..pb::GetPatientViewRequest::default()
    });
    request.set_timeout(timeout);
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_combines_fhir_sql_and_python_sections_and_survives_the_python_process_dying() {
    let mut silos = Silos::start(SilosOptions {
        python_fetch_delay: PYTHON_FETCH_DELAY,
    })
    .await
    .unwrap();
    let config =
        silos.gateway_config("logging:\n  format: json\nview:\n  deadline_reserve: 50ms\n");
    let tessera = Tessera::start(crate::tessera_bin(), &config).await.unwrap();
    let channel = tessera.connect().await.unwrap();
    let master = silos::link_person(channel.clone()).await.unwrap();
    let mut views = PatientViewServiceClient::new(channel);

    // One view, every section of the three silos, each record with its provenance.
    let view = views
        .get_patient_view(request(&master, Duration::from_secs(10)))
        .await
        .unwrap()
        .into_inner();
    for source in ["sources/ehr", "sources/billing", "sources/marketing"] {
        assert_eq!(state(&view, source), pb::SourceState::Ok, "{source}");
    }
    assert!(view.unreachable.is_empty(), "{:?}", view.unreachable);
    let mut sections: Vec<&str> = view.sections.keys().map(String::as_str).collect();
    sections.sort_unstable();
    assert_eq!(
        sections,
        [
            "channel_preferences",
            "conditions",
            "consents",
            "contacts",
            "demographics",
            "encounters",
            "invoices",
            "observations",
            "payments",
        ]
    );
    for (section, source, system, local_id) in [
        ("demographics", "sources/ehr", "ehr", MRN),
        ("observations", "sources/ehr", "ehr", MRN),
        ("invoices", "sources/billing", "billing", ACCOUNT),
        ("payments", "sources/billing", "billing", ACCOUNT),
        ("consents", "sources/marketing", "marketing", MEMBER),
    ] {
        for record in records(&view, section) {
            let provenance = record.provenance.as_ref().unwrap();
            assert_eq!(provenance.source, source, "{section}");
            let key = provenance.source_record.as_ref().unwrap();
            assert_eq!(
                (key.system.as_str(), key.local_id.as_str()),
                (system, local_id)
            );
            assert!(!provenance.record_id.is_empty(), "{section}");
            assert!(provenance.source_update_time.is_some(), "{section}");
        }
    }
    // The EHR's Patient, as FHIR JSON.
    let patient = &records(&view, "demographics")[0];
    assert_eq!(patient.media_type, "application/fhir+json");
    assert_eq!(json(patient)["identifier"][0]["value"], MRN);
    assert_eq!(records(&view, "observations").len(), 2);
    assert_eq!(records(&view, "encounters").len(), 1);
    // Billing's rows in PostgreSQL, only the account's own.
    let invoices: Vec<_> = records(&view, "invoices").iter().map(json).collect();
    assert_eq!(
        invoices
            .iter()
            .map(|i| (
                i["invoice_id"].as_str().unwrap(),
                i["amount_cents"].as_i64().unwrap()
            ))
            .collect::<Vec<_>>(),
        [("INV-1001", 12500), ("INV-1002", 4200)]
    );
    assert_eq!(
        records(&view, "invoices")[1]
            .provenance
            .as_ref()
            .unwrap()
            .record_id,
        "INV-1002"
    );
    assert_eq!(json(&records(&view, "payments")[0])["method"], "card");
    // Marketing's CSV rows, through the Python process.
    let consents: Vec<_> = records(&view, "consents").iter().map(json).collect();
    assert_eq!(consents.len(), 3);
    assert!(consents.iter().any(|c| c["status"] == "withdrawn"));
    assert_eq!(json(&records(&view, "contacts")[0])["city"], "Leeds");

    // Kill the Python process while it is serving this view's fetches.
    let deadline = Duration::from_secs(3);
    let started = Instant::now();
    let call = tokio::spawn({
        let mut views = views.clone();
        let master = master.clone();
        async move { views.get_patient_view(request(&master, deadline)).await }
    });
    silos
        .python()
        .wait_for_a_fetch(Duration::from_secs(5))
        .await
        .unwrap();
    silos.python_mut().kill().await.unwrap();
    let killed_at = started.elapsed();
    // What the process last reported before it died: a fetch still running.
    assert!(silos.python().in_flight() > 0, "no fetch was in progress");
    let view = call.await.unwrap().unwrap().into_inner();
    let elapsed = started.elapsed();
    assert!(elapsed < deadline, "the view took {elapsed:?}");
    assert_eq!(
        state(&view, "sources/marketing"),
        pb::SourceState::Unavailable
    );
    assert_eq!(view.unreachable, ["sources/marketing"]);
    for source in ["sources/ehr", "sources/billing"] {
        assert_eq!(state(&view, source), pb::SourceState::Ok, "{source}");
    }
    for section in ["contacts", "consents", "channel_preferences"] {
        assert!(!view.sections.contains_key(section), "{section}");
    }
    assert_eq!(records(&view, "invoices").len(), 2);
    assert_eq!(records(&view, "observations").len(), 2);
    eprintln!(
        "killed the Python adapter {killed_at:?} into the view; the view answered after {elapsed:?}"
    );
}
