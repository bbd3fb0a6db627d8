//! The adapter kinds end to end: the real binary with an SQL source (SQLite), the
//! Python example adapter as a separate process behind the `grpc` kind (over a
//! Unix socket), and a fake EHR standing in for the FHIR kind. One view combines
//! their sections; killing the Python process leaves that source UNAVAILABLE and
//! the rest of the view intact, within the deadline.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tessera_e2e::{Tessera, workspace_root};
use tessera_proto::v1::{
    self as pb, identity_service_client::IdentityServiceClient,
    patient_view_service_client::PatientViewServiceClient,
};
use tokio::io::{AsyncBufReadExt, BufReader};

const CONFIG: &str = r#"
server:
  listen: 127.0.0.1:0
  shutdown_grace_period: 2s
logging:
  format: json
identity:
  store: sqlite://data/identity.db
view:
  deadline_reserve: 50ms
sources:
  - name: ehr
    kind: fake
    config: {system: ehr, sections: [encounters], latency: 10ms}
  - name: billing
    kind: sql
    config:
      system: billing
      url: sqlite://billing.db
      sections:
        invoices:
          query: SELECT id, amount_cents, status FROM invoices WHERE patient_ref = $1
          record_id: id
  - name: marketing
    kind: grpc
    # Always live (overriding the adapter's suggested TTL), so that the second
    # view sees the process gone.
    cache:
      sections: {contacts: 0s, consents: 0s, channel_preferences: 0s}
      stale_if_error: 0s
    retry: {max_attempts: 1}
    config:
      endpoint: unix:marketing.sock
      system: marketing
"#;

fn python() -> PathBuf {
    std::env::var_os("TESSERA_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/python"))
}

fn key(system: &str, local_id: &str) -> pb::SourceRecordKey {
    pb::SourceRecordKey {
        system: system.to_owned(),
        local_id: local_id.to_owned(),
    }
}

fn state(statuses: &[pb::SourceStatus], source: &str) -> pb::SourceState {
    statuses
        .iter()
        .find(|s| s.source == source)
        .map(|s| s.state())
        .unwrap_or_else(|| panic!("no status for {source}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_combines_sql_grpc_and_fake_sources_and_survives_the_python_process_dying() {
    let python = python();
    assert!(
        python.exists(),
        "{} not found: run scripts/test",
        python.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let made = tokio::process::Command::new(&python)
        .arg("-c")
        .arg(
            "import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); \
             db.execute('CREATE TABLE invoices (id INTEGER PRIMARY KEY, patient_ref TEXT, amount_cents INTEGER, status TEXT)'); \
             db.execute(\"INSERT INTO invoices VALUES (1, 'ACCT-88', 12500, 'open')\"); db.commit()",
        )
        .arg(dir.path().join("billing.db"))
        .status()
        .await
        .unwrap();
    assert!(made.success());

    let mut marketing = tokio::process::Command::new(&python)
        .arg(workspace_root().join("examples/python-adapter/adapter.py"))
        .arg("--listen")
        .arg(format!(
            "unix:{}",
            dir.path().join("marketing.sock").display()
        ))
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = marketing.stdout.take().unwrap();
    let first = tokio::time::timeout(
        Duration::from_secs(30),
        BufReader::new(stdout).lines().next_line(),
    )
    .await
    .unwrap()
    .unwrap()
    .unwrap();
    assert!(first.starts_with("listening on unix:"), "{first}");

    let tessera = Tessera::start_in(dir, CONFIG).await.unwrap();
    let channel = tessera.connect().await.unwrap();
    let mut identity = IdentityServiceClient::new(channel.clone());
    let mut master = String::new();
    for (system, local_id) in [
        ("ehr", "MRN-5521"),
        ("billing", "ACCT-88"),
        ("marketing", "M-100"),
    ] {
        let response = identity
            .upsert_source_record(pb::UpsertSourceRecordRequest {
                source_record: Some(pb::SourceRecord {
                    key: Some(key(system, local_id)),
                    demographics: Some(pb::Demographics {
                        given_names: vec!["Adaeze".to_owned()],
                        family_name: "Okonkwo".to_owned(),
                        birth_date: "1971-04-05".to_owned(),
                        identifiers: vec![pb::PersonIdentifier {
                            r#type: pb::PersonIdentifierType::NationalId.into(),
                            system: String::new(),
                            value: "219-44-8121".to_owned(),
                        }],
                        ..pb::Demographics::default()
                    }),
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
    let mut views = PatientViewServiceClient::new(channel);
    let get = |timeout: Duration| {
        let mut request = tonic::Request::new(pb::GetPatientViewRequest {
            subject: Some(pb::PatientSubject {
                subject: Some(pb::patient_subject::Subject::Master(master.clone())),
            }),
            purpose: pb::PurposeOfUse::Treatment.into(),
            ..pb::GetPatientViewRequest::default()
        });
        request.set_timeout(timeout);
        request
    };

    let view = views
        .get_patient_view(get(Duration::from_secs(3)))
        .await
        .unwrap()
        .into_inner();
    for source in ["sources/ehr", "sources/billing", "sources/marketing"] {
        assert_eq!(
            state(&view.source_statuses, source),
            pb::SourceState::Ok,
            "{source}"
        );
    }
    let consents = &view.sections["consents"].records;
    assert_eq!(consents.len(), 3);
    let consent: serde_json::Value = serde_json::from_str(&consents[0].json).unwrap();
    assert_eq!(consent["status"], "granted");
    let invoice: serde_json::Value =
        serde_json::from_str(&view.sections["invoices"].records[0].json).unwrap();
    assert_eq!(invoice["amount_cents"], 12500);
    assert!(view.sections.contains_key("encounters"));

    marketing.start_kill().unwrap();
    marketing.wait().await.unwrap();
    let started = Instant::now();
    let view = views
        .get_patient_view(get(Duration::from_secs(2)))
        .await
        .unwrap()
        .into_inner();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        state(&view.source_statuses, "sources/marketing"),
        pb::SourceState::Unavailable
    );
    assert_eq!(view.unreachable, ["sources/marketing"]);
    for source in ["sources/ehr", "sources/billing"] {
        assert_eq!(
            state(&view.source_statuses, source),
            pb::SourceState::Ok,
            "{source}"
        );
    }
    assert!(view.sections.contains_key("invoices") && !view.sections.contains_key("consents"));
}
