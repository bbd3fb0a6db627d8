//! The `fhir` consent source against a real FHIR R4 server (Medplum's router, started by
//! `tessera-test-fhir-server`): the Consent resources are validated against the R4
//! definitions when they are stored, then found by the source's search.

use std::path::Path;

use serde_json::json;
use tessera_consent::config::SECTION_SYSTEM;
use tessera_consent::{ConsentConfig, Decision, RecordKey, build};
use tessera_test_fhir_server::FhirServer;

fn consent(patient: &str, status: &str, purpose: &str, section: &str) -> serde_json::Value {
    json!({
        "resourceType": "Consent",
        "status": status,
        "scope": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/consentscope",
            "code": "patient-privacy"
        }]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{patient}")},
        "policyRule": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "OPTOUT"
        }]},
        "provision": {
            "type": "deny",
            "purpose": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                "code": purpose
            }],
            "class": [{"system": SECTION_SYSTEM, "code": section}]
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_consents_of_the_patient_are_found_and_decide() {
    let server = FhirServer::start().expect("the FHIR test server starts");
    let patient = server
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Test"}]}))
        .await
        .expect("a patient");
    let other = server
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Other"}]}))
        .await
        .expect("another patient");
    let (id, other_id) = (
        patient["id"].as_str().expect("an id"),
        other["id"].as_str().expect("an id"),
    );
    for resource in [
        consent(id, "active", "HMARKT", "marketing.*"),
        consent(id, "inactive", "TREAT", "ehr.*"),
        consent(other_id, "active", "HMARKT", "crm.*"),
    ] {
        server.create(&resource).await.expect("a valid R4 Consent");
    }

    let config: ConsentConfig = serde_yaml_ng::from_str(&format!(
        "source: {{ kind: fhir, base_url: '{}', system: ehr }}\ngated: ['*']\n",
        server.base_url()
    ))
    .expect("config");
    let source = build(&config, Path::new(".")).expect("source");
    let person = [RecordKey {
        system: "ehr".to_owned(),
        local_id: id.to_owned(),
    }];
    let decisions = source
        .decisions(&person, "HMARKT")
        .await
        .expect("the search answers");
    assert_eq!(
        decisions.decide("HMARKT", "marketing", "campaigns"),
        Some(Decision::Deny)
    );
    assert_eq!(decisions.decide("TREAT", "ehr", "notes"), None, "inactive");
    assert_eq!(
        decisions.decide("HMARKT", "crm", "cases"),
        None,
        "another patient's consent"
    );
}
