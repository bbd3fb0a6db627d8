//! The adapter over a small export written by the test.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tessera_adapter_core::conformance::{self, Fixture, MalformedUpstream};
use tessera_adapter_core::{
    Adapter, BuildContext, FetchError, FetchRequest, HealthCheck, HealthState,
};
use tessera_types::Sex;
use tokio::time::Instant;

use crate::{NdjsonAdapter, NdjsonConfig};

const PATIENTS: &str = r#"{"resourceType":"Patient","id":"MRN001","meta":{"lastUpdated":"2026-10-01T09:00:00Z"},"name":[{"use":"official","family":"Thistlewood","given":["Marguerite","A"]},{"use":"maiden","family":"Pennock"}],"gender":"female","birthDate":"1948-05-17","telecom":[{"system":"phone","value":"(262) 555-0117"},{"system":"email","value":"mthistle@example.net"}],"address":[{"line":["12 Orchard Ln"],"city":"Racine","state":"WI","postalCode":"53402"}],"identifier":[{"system":"http://hospital.example.org/mrn","value":"MRN001"},{"system":"http://hl7.org/fhir/sid/us-ssn","value":"321-54-9876"}]}
{"resourceType":"Patient","id":"MRN002","name":[{"family":"Obi","given":["Chidi"]}],"gender":"male","birthDate":"1990-01-02"}
"#;

const ENCOUNTERS: &str = r#"{"resourceType":"Encounter","id":"e1","status":"finished","subject":{"reference":"Patient/MRN001"},"meta":{"lastUpdated":"2026-09-14T10:00:00Z"}}
{"resourceType":"Encounter","id":"e2","status":"finished","subject":{"reference":"Patient/MRN001"}}
this line is not json
{"resourceType":"Encounter","id":"e3","status":"finished"}
{"resourceType":"Observation","id":"wrong-file","subject":{"reference":"Patient/MRN001"}}
{"resourceType":"Encounter","id":"e4","status":"finished","subject":{"reference":"https://ehr.example.org/fhir/Patient/MRN002"}}
"#;

const APPOINTMENTS: &str = r#"{"resourceType":"Appointment","id":"a1","status":"booked","participant":[{"actor":{"reference":"Practitioner/p9"}},{"actor":{"reference":"Patient/MRN002"}}]}
"#;

fn export(dir: &Path) {
    for (name, text) in [
        ("Patient", PATIENTS),
        ("Encounter", ENCOUNTERS),
        ("Appointment", APPOINTMENTS),
    ] {
        std::fs::write(dir.join(format!("{name}.ndjson")), text).unwrap();
    }
}

async fn open(dir: &Path) -> NdjsonAdapter {
    let context = BuildContext {
        name: "ehr".to_owned(),
        base_dir: dir.parent().unwrap().to_owned(),
    };
    let config: NdjsonConfig = serde_json::from_value(serde_json::json!({
        "dir": dir.file_name().unwrap().to_str().unwrap(),
        "system": "ehr",
    }))
    .unwrap();
    NdjsonAdapter::open(&context, config).await.unwrap()
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

#[tokio::test]
async fn serves_a_patients_resources_from_the_files_in_place() {
    let dir = tempfile::tempdir().unwrap();
    export(dir.path());
    let adapter = open(dir.path()).await;
    let request = FetchRequest {
        local_ids: vec!["MRN001".to_owned(), "MRN002".to_owned()],
        sections: vec![
            "encounters".to_owned(),
            "appointments".to_owned(),
            "conditions".to_owned(),
        ],
        deadline: soon(),
    };
    let results = adapter.fetch(request).await.unwrap();
    let ids = |local: &str, section: &str| -> Vec<String> {
        let r = results
            .iter()
            .find(|r| r.local_id == local && r.section == section)
            .unwrap();
        r.records
            .as_ref()
            .unwrap()
            .iter()
            .map(|x| x.record_id.clone().unwrap())
            .collect()
    };
    assert_eq!(ids("MRN001", "encounters"), ["e1", "e2"]);
    assert_eq!(
        ids("MRN002", "encounters"),
        ["e4"],
        "absolute references count"
    );
    assert_eq!(
        ids("MRN002", "appointments"),
        ["a1"],
        "found through a participant"
    );
    assert!(
        ids("MRN001", "conditions").is_empty(),
        "no Condition file: none"
    );
    let e1 = &results[0].records.as_ref().unwrap()[0];
    assert!(
        e1.json
            .starts_with(r#"{"resourceType":"Encounter","id":"e1""#),
        "served as stored"
    );
    assert!(e1.update_time.is_some());
    assert_eq!(
        adapter
            .fetch(FetchRequest::one("MRN404", "encounters", soon()))
            .await
            .unwrap()[0]
            .records,
        Err(FetchError::NotFound)
    );
    assert_eq!(adapter.check().await.state, HealthState::Serving);
}

#[tokio::test]
async fn the_identity_feed_streams_every_patients_demographics() {
    let dir = tempfile::tempdir().unwrap();
    export(dir.path());
    let adapter = open(dir.path()).await;
    let feed: Vec<_> = adapter.identity_feed(None).collect().await;
    assert_eq!(feed.len(), 2);
    let first = feed[0].as_ref().unwrap();
    assert_eq!(first.local_id, "MRN001");
    let d = &first.demographics;
    assert_eq!(d.given_names, ["Marguerite", "A"]);
    assert_eq!(d.family_name, "Thistlewood");
    assert_eq!(d.previous_family_names, ["Pennock"]);
    assert_eq!(d.sex, Sex::Female);
    assert_eq!(d.birth_date, "1948-05-17");
    assert_eq!(d.phones, ["(262) 555-0117"]);
    assert_eq!(d.emails, ["mthistle@example.net"]);
    assert_eq!(d.addresses[0].postal_code, "53402");
    assert_eq!(d.national_id, "321-54-9876");
}

#[tokio::test]
async fn passes_the_conformance_kit() {
    let dir = tempfile::tempdir().unwrap();
    export(dir.path());
    let adapter: Arc<dyn Adapter> = Arc::new(open(dir.path()).await);

    // The malformed fixture: an export rewritten under the adapter after it was
    // indexed, one line now garbage of the same length.
    let bad_dir = tempfile::tempdir().unwrap();
    export(bad_dir.path());
    let bad = open(bad_dir.path()).await;
    let path = bad_dir.path().join("Encounter.ndjson");
    let text = std::fs::read_to_string(&path).unwrap();
    let first = text.lines().next().unwrap().len();
    let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all(&vec![b'#'; first]).unwrap();

    let fixture = Fixture {
        known_local_id: "MRN001".to_owned(),
        unknown_local_id: "MRN404".to_owned(),
        sensitive: vec![
            "Thistlewood".to_owned(),
            "Marguerite".to_owned(),
            "1948-05-17".to_owned(),
            "321-54-9876".to_owned(),
        ],
        // Local files have no upstream that could stall.
        slow: None,
        malformed: Some(MalformedUpstream {
            adapter: Arc::new(bad),
            local_id: "MRN001".to_owned(),
            section: "encounters".to_owned(),
        }),
    };
    let report = conformance::run(adapter, &fixture).await;
    report.assert_passed();
    assert_eq!(
        report.skipped(),
        2,
        "only the stalled-silo checks:\n{report}"
    );
}

#[tokio::test]
async fn a_missing_patient_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let context = BuildContext {
        name: "ehr".to_owned(),
        base_dir: dir.path().to_owned(),
    };
    let config: NdjsonConfig =
        serde_json::from_value(serde_json::json!({"dir": "nowhere", "system": "ehr"})).unwrap();
    let err = NdjsonAdapter::open(&context, config).await.unwrap_err();
    assert!(
        err.to_string().contains("Patient.ndjson: cannot open"),
        "{err}"
    );
}
