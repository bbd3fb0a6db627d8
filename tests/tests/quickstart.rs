//! The quickstart config end to end: the silos generated on first start, the
//! identity store loaded from the sources' feeds once, views served from them,
//! and a restart that reuses the store.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use tessera_e2e::{Tessera, workspace_root};
use tessera_proto::v1::{
    self as pb, identity_service_client::IdentityServiceClient,
    patient_view_service_client::PatientViewServiceClient,
};

/// The quickstart config, smaller, logging JSON.
fn config() -> String {
    std::fs::read_to_string(workspace_root().join("examples/quickstart/tessera.yaml"))
        .unwrap()
        .replace("people: 2000", "people: 150")
        .replace("format: text", "format: json")
}

/// `(source, local_id) -> person` from the generated truth file.
fn truth(dir: &Path) -> HashMap<(String, String), String> {
    std::fs::read_to_string(dir.join("data/silos/truth.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            ((f[0].to_owned(), f[1].to_owned()), f[2].to_owned())
        })
        .collect()
}

async fn resolve(tessera: &Tessera, system: &str, local_id: &str) -> pb::ResolveRecordResponse {
    let mut identity = IdentityServiceClient::new(tessera.connect().await.unwrap());
    identity
        .resolve_record(pb::ResolveRecordRequest {
            source_record: Some(pb::SourceRecordKey {
                system: system.to_owned(),
                local_id: local_id.to_owned(),
            }),
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn the_quickstart_serves_views_from_its_silos_and_restarts_over_its_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let tessera = Tessera::start_in(dir, &config()).await.unwrap();
    let truth = truth(&path);
    let mut ehr_keys: Vec<&String> = truth
        .keys()
        .filter(|(system, _)| system == "ehr")
        .map(|(_, id)| id)
        .collect();
    ehr_keys.sort();
    let local_id = ehr_keys[0].clone();

    let resolved = resolve(&tessera, "ehr", &local_id).await;
    let master = resolved.master.clone();
    let mut views = PatientViewServiceClient::new(tessera.connect().await.unwrap());
    let mut request = tonic::Request::new(pb::GetPatientViewRequest {
        subject: Some(pb::PatientSubject {
            subject: Some(pb::patient_subject::Subject::Master(master.clone())),
        }),
        purpose: pb::PurposeOfUse::Treatment.into(),
        ..pb::GetPatientViewRequest::default()
    });
    request.set_timeout(Duration::from_secs(5));
    let view = views.get_patient_view(request).await.unwrap().into_inner();
    let demographics = &view.sections["demographics"].records;
    assert!(
        demographics
            .iter()
            .any(|r| r.json.contains(&format!("\"id\":\"{local_id}\""))),
        "the EHR's Patient resource is in the view"
    );
    assert!(view.sections.contains_key("encounters"));
    assert!(
        view.source_statuses
            .iter()
            .all(|s| s.state() == pb::SourceState::Ok)
    );
    assert!(view.unreachable.is_empty());
    assert!(
        tessera
            .logs()
            .contains("identity store loaded from the sources")
    );

    let dir = tessera.stop().await.unwrap();
    let tessera = Tessera::start_in(dir, &config()).await.unwrap();
    assert!(
        tessera.logs().contains("identity store already loaded"),
        "{}",
        tessera.logs()
    );
    let again = resolve(&tessera, "ehr", &local_id).await;
    assert_eq!(again.master, master, "the same master after a restart");
}
