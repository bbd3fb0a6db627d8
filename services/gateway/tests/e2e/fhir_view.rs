//! End to end: the real `tessera` binary with a `fhir` source pointed at the real
//! FHIR server; a master linked (through IdentityService) to the EHR patient's MRN
//! gets a view with the configured sections, every record's provenance, and more
//! than three pages of observations.

use std::time::Duration;

use tessera_e2e::Tessera;
use tessera_proto::v1::{
    self as pb, identity_service_client::IdentityServiceClient,
    patient_view_service_client::PatientViewServiceClient,
};
use tessera_test_fhir_server::FhirServer;

use crate::logs;
use crate::seed::{MRN_SYSTEM, PEOPLE, RICH_OBSERVATIONS, SENSITIVE, seed};

fn config(base_url: &str) -> String {
    format!(
        r#"
server:
  listen: 127.0.0.1:0
  shutdown_grace_period: 2s
logging:
  format: json
  level: debug
identity:
  store: sqlite://data/identity.db
sources:
  - name: ehr
    kind: fhir
    config:
      system: ehr
      base_url: {base_url}
      page_size: 5
      search_via_post: true
      patient_id: {{type: identifier, system: "{MRN_SYSTEM}"}}
      sections: [demographics, observations, conditions, documents]
"#
    )
}

fn key(local_id: &str) -> pb::SourceRecordKey {
    pb::SourceRecordKey {
        system: "ehr".to_owned(),
        local_id: local_id.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_of_a_master_linked_to_an_ehr_patient_pages_through_its_observations() {
    logs::init();
    let server = FhirServer::start().expect("server");
    seed(&server).await;
    let tessera = Tessera::start(crate::tessera_bin(), &config(&server.base_url()))
        .await
        .expect("tessera");
    let channel = tessera.connect().await.expect("channel");
    let person = &PEOPLE[0];
    let master = IdentityServiceClient::new(channel.clone())
        .upsert_source_record(pb::UpsertSourceRecordRequest {
            source_record: Some(pb::SourceRecord {
                key: Some(key(person.mrn)),
                demographics: Some(pb::Demographics {
                    given_names: vec![person.given.to_owned()],
                    family_name: person.family.to_owned(),
                    birth_date: person.birth_date.to_owned(),
                    ..pb::Demographics::default()
                }),
                ..pb::SourceRecord::default()
            }),
            ..pb::UpsertSourceRecordRequest::default()
        })
        .await
        .expect("upsert")
        .into_inner()
        .master;

    let mut request = tonic::Request::new(pb::GetPatientViewRequest {
        subject: Some(pb::PatientSubject {
            subject: Some(pb::patient_subject::Subject::Master(master.clone())),
        }),
        purpose: pb::PurposeOfUse::Treatment.into(),
        ..pb::GetPatientViewRequest::default()
    });
    request.set_timeout(Duration::from_secs(10));
    let view = PatientViewServiceClient::new(channel)
        .get_patient_view(request)
        .await
        .expect("a view")
        .into_inner();

    let mut sections: Vec<&str> = view.sections.keys().map(String::as_str).collect();
    sections.sort_unstable();
    assert_eq!(
        sections,
        ["conditions", "demographics", "documents", "observations"]
    );
    for status in &view.source_statuses {
        assert_eq!(status.state(), pb::SourceState::Ok, "{status:?}");
    }
    let observations = &view.sections["observations"].records;
    assert_eq!(observations.len(), RICH_OBSERVATIONS, "four pages of five");
    for (name, section) in &view.sections {
        for record in &section.records {
            assert_eq!(record.media_type, "application/fhir+json", "{name}");
            let provenance = record.provenance.as_ref().expect("provenance");
            assert_eq!(provenance.source, "sources/ehr");
            assert_eq!(provenance.source_record, Some(key(person.mrn)));
            let json: serde_json::Value = serde_json::from_str(&record.json).expect("json");
            assert_eq!(
                json["id"].as_str(),
                Some(provenance.record_id.as_str()),
                "{name}"
            );
            assert!(
                provenance.source_update_time.is_some(),
                "{name}: meta.lastUpdated"
            );
        }
    }
    // The gateway's own logs, at debug, name no patient either.
    let gateway_logs = tessera.logs().to_lowercase();
    for needle in SENSITIVE {
        assert!(
            !gateway_logs.contains(&needle.to_lowercase()),
            "the gateway logged patient data"
        );
    }
    logs::assert_no_patient_data();
}
