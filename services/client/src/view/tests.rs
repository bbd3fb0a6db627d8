//! `tessera view` over a hand-built view: the tables and the JSON a person gets
//! (insta snapshots), and the arguments turned into requests.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use clap::Parser;
use serde_json::json;
use tessera_proto::v1 as pb;
use tessera_proto::v1::stream_patient_view_response::Event;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

use super::client::RpcError;
use super::{ViewArgs, json, render, table};

/// 2026-11-23T16:00:00Z.
const ASSEMBLED: i64 = 1_795_449_600;

fn ts(seconds: i64, nanos: i32) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos })
}

fn ms(millis: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: millis / 1000,
        nanos: i32::try_from(millis % 1000 * 1_000_000).unwrap(),
    })
}

fn key(system: &str, local_id: &str) -> pb::SourceRecordKey {
    pb::SourceRecordKey {
        system: system.to_owned(),
        local_id: local_id.to_owned(),
    }
}

/// A record from `source`'s `local_id`, `age_ms` old when the view was assembled.
fn record(
    source: &str,
    local_id: &str,
    record_id: &str,
    media_type: &str,
    payload: &serde_json::Value,
    age_ms: i64,
    cache_hit: bool,
) -> pb::ViewRecord {
    pb::ViewRecord {
        json: payload.to_string(),
        media_type: media_type.to_owned(),
        provenance: Some(pb::RecordProvenance {
            source: format!("sources/{source}"),
            source_record: Some(key(source, local_id)),
            record_id: record_id.to_owned(),
            fetch_time: ts(ASSEMBLED - age_ms / 1000, 0),
            cache_hit,
            age: ms(age_ms),
            source_update_time: None,
        }),
    }
}

fn status(
    source: &str,
    section: &str,
    state: pb::SourceState,
    records: i32,
    latency_ms: i64,
    message: &str,
) -> pb::SourceStatus {
    pb::SourceStatus {
        source: format!("sources/{source}"),
        section: section.to_owned(),
        state: state.into(),
        message: message.to_owned(),
        record_count: records,
        latency: ms(latency_ms),
    }
}

const FHIR: &str = "application/fhir+json";
const JSON: &str = "application/json";

fn patient() -> pb::ViewRecord {
    let payload = json!({
        "resourceType": "Patient",
        "id": "pat-1",
        "meta": {"lastUpdated": "2026-11-20T09:30:00Z"},
        "name": [{"given": ["Ana", "María"], "family": "Díaz"}],
        "gender": "female",
        "birthDate": "1980-04-02",
        "address": [{"city": "Springfield", "state": "IL"}]
    });
    record("ehr", "MRN-1", "pat-1", FHIR, &payload, 1_200, false)
}

fn crm_contact() -> pb::ViewRecord {
    let payload = json!({
        "email": "ana.diaz@example.org",
        "segment": "gold",
        "consents": {"sms": true, "email": false},
        "tags": ["vip", "spanish"],
        "preferred_name": "Ana",
        "notes": "Prefers morning calls; interpreter not needed; moved from the north clinic in 2024 \
                  and asked for paper invoices",
        "referrer": null
    });
    record("crm", "C-9", "", JSON, &payload, 35_000, true)
}

fn encounter() -> pb::ViewRecord {
    let payload = json!({
        "resourceType": "Encounter",
        "id": "enc-7",
        "status": "finished",
        "class": {"code": "AMB"},
        "type": [{"text": "Office visit"}],
        "period": {"start": "2026-11-02T10:15:00Z", "end": "2026-11-02T10:40:00Z"}
    });
    record("ehr", "MRN-1", "enc-7", FHIR, &payload, 48, false)
}

fn observation() -> pb::ViewRecord {
    let payload = json!({
        "resourceType": "Observation",
        "id": "obs-3",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6",
                             "display": "Systolic blood pressure"}]},
        "valueQuantity": {"value": 128, "unit": "mmHg"},
        "effectiveDateTime": "2026-11-02T10:20:00Z"
    });
    record("ehr", "MRN-1", "obs-3", FHIR, &payload, 48, false)
}

fn invoice() -> pb::ViewRecord {
    let payload = json!({
        "invoice_id": "INV-2026-0042",
        "amount": 125.5,
        "currency": "USD",
        "status": "open",
        "due": "2026-12-01",
        "lines": [{"code": "99213", "amount": 100}, {"code": "36415", "amount": 25.5}]
    });
    record(
        "billing",
        "B-77",
        "INV-2026-0042",
        JSON,
        &payload,
        185_000,
        true,
    )
}

/// A view of one master over four sources: FHIR and plain JSON records, a cache
/// hit, a STALE source, a DENIED section and a source that timed out.
fn fixture() -> pb::PatientView {
    use pb::SourceState::{Denied, Ok, Stale, Timeout};
    let section = |records: Vec<pb::ViewRecord>| pb::Section { records };
    pb::PatientView {
        name: "masters/123/view".to_owned(),
        identities: Some(pb::PatientIdentities {
            master: "masters/123".to_owned(),
            source_records: vec![
                key("ehr", "MRN-1"),
                key("crm", "C-9"),
                key("billing", "B-77"),
                key("lab", "L-5"),
            ],
        }),
        sections: HashMap::from([
            (
                "demographics".to_owned(),
                section(vec![patient(), crm_contact()]),
            ),
            (
                "encounters".to_owned(),
                section(vec![encounter(), observation()]),
            ),
            ("invoices".to_owned(), section(vec![invoice()])),
        ]),
        source_statuses: vec![
            status("ehr", "demographics", Ok, 1, 12, ""),
            status("crm", "demographics", Ok, 1, 0, ""),
            status("ehr", "encounters", Ok, 2, 48, ""),
            status(
                "lab",
                "results",
                Timeout,
                0,
                95,
                "deadline exceeded after 95ms",
            ),
            status(
                "billing",
                "invoices",
                Stale,
                1,
                95,
                "HTTP 503 from upstream; cached records served",
            ),
            pb::SourceStatus {
                latency: None,
                ..status(
                    "crm",
                    "marketing",
                    Denied,
                    0,
                    0,
                    "purpose TREATMENT may not see this section",
                )
            },
        ],
        unreachable: vec!["sources/lab".to_owned()],
        assemble_time: ts(ASSEMBLED, 250_000_000),
    }
}

#[test]
fn human_view_has_a_table_per_section_and_the_statuses() {
    let text = render::view(&fixture());
    insta::assert_snapshot!(text);
    for line in text.lines() {
        assert!(table::chars(line) <= 120, "line too long: {line}");
    }
    // The timed-out source's section is shown, empty, and the source is unreachable.
    assert!(
        text.contains("\nresults (0 records; lab: TIMEOUT)\n"),
        "{text}"
    );
    assert!(text.contains("Unreachable  lab"), "{text}");
}

#[test]
fn json_view_nests_each_records_payload() {
    let value = json::view(&fixture());
    insta::assert_snapshot!(serde_json::to_string_pretty(&value).unwrap());
    let encounter = &value["sections"]["encounters"]["records"][0];
    assert_eq!(encounter["json"]["resourceType"], "Encounter");
    assert_eq!(encounter["json"]["period"]["start"], "2026-11-02T10:15:00Z");
    assert_eq!(encounter["provenance"]["age"], "0.048s");
    assert_eq!(value["unreachable"], json!(["sources/lab"]));
    assert_eq!(value["sourceStatuses"][3]["state"], "SOURCE_STATE_TIMEOUT");
    assert_eq!(value["assembleTime"], "2026-11-23T16:00:00.250Z");
}

#[test]
fn json_keeps_a_payload_that_is_not_json_as_a_string() {
    let mut view = fixture();
    let broken = pb::ViewRecord {
        json: "{not json".to_owned(),
        media_type: JSON.to_owned(),
        provenance: None,
    };
    view.sections.insert(
        "notes".to_owned(),
        pb::Section {
            records: vec![broken],
        },
    );
    let value = json::view(&view);
    assert_eq!(
        value["sections"]["notes"]["records"][0]["json"],
        "{not json"
    );
    let text = render::view(&view);
    assert!(
        text.contains("(not JSON: 9 bytes of application/json)"),
        "{text}"
    );
}

/// The messages of a streamed view, in the order the contract sends them.
fn stream_messages() -> Vec<pb::StreamPatientViewResponse> {
    let view = fixture();
    let chunk = |section: &str, source: &str, records: Vec<pb::ViewRecord>, state, ms, msg| {
        Event::Section(pb::SectionChunk {
            section: section.to_owned(),
            source: format!("sources/{source}"),
            status: Some(status(
                source,
                section,
                state,
                i32::try_from(records.len()).unwrap(),
                ms,
                msg,
            )),
            records,
        })
    };
    let events = vec![
        Event::Identities(view.identities.clone().unwrap()),
        chunk(
            "encounters",
            "ehr",
            vec![encounter(), observation()],
            pb::SourceState::Ok,
            48,
            "",
        ),
        chunk(
            "results",
            "lab",
            vec![],
            pb::SourceState::Timeout,
            95,
            "deadline exceeded after 95ms",
        ),
        Event::Summary(pb::ViewSummary {
            source_statuses: view.source_statuses[2..4].to_vec(),
            unreachable: view.unreachable.clone(),
            assemble_time: view.assemble_time,
        }),
    ];
    events
        .into_iter()
        .map(|event| pb::StreamPatientViewResponse { event: Some(event) })
        .collect()
}

#[test]
fn streamed_sections_print_as_they_arrive() {
    let text: Vec<String> = stream_messages()
        .iter()
        .map(render::stream_message)
        .collect();
    insta::assert_snapshot!(text.join("\n"));
    assert!(text[2].contains("results from lab: TIMEOUT, 0 records in 95ms"));
}

#[test]
fn streamed_json_is_one_object_per_message() {
    let lines: Vec<String> = stream_messages()
        .iter()
        .map(|m| serde_json::to_string(&json::stream_message(m)).unwrap())
        .collect();
    insta::assert_snapshot!(lines.join("\n"));
    let last: serde_json::Value = serde_json::from_str(&lines[3]).unwrap();
    assert_eq!(last["summary"]["unreachable"], json!(["sources/lab"]));
}

#[test]
fn an_empty_view_says_so() {
    let text = render::view(&pb::PatientView::default());
    insta::assert_snapshot!(text);
    assert_eq!(json::view(&pb::PatientView::default()), json!({}));
}

/// `tessera view ARGS`, parsed.
fn parse(args: &[&str]) -> Result<ViewArgs, clap::Error> {
    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        view: ViewArgs,
    }
    let argv = ["view", "--addr", "127.0.0.1:50051"].iter().chain(args);
    Cli::try_parse_from(argv).map(|cli| cli.view)
}

fn subject(args: &[&str]) -> pb::patient_subject::Subject {
    parse(args)
        .unwrap()
        .get_request()
        .unwrap()
        .subject
        .unwrap()
        .subject
        .unwrap()
}

#[test]
fn master_takes_an_id_or_a_resource_name() {
    use pb::patient_subject::Subject;
    for arg in ["123", "masters/123"] {
        assert_eq!(
            subject(&["--master", arg]),
            Subject::Master("masters/123".to_owned())
        );
    }
    for bad in ["", "masters/", "masters/1/view", "1 2"] {
        let err = parse(&["--master", bad]).unwrap_err();
        assert!(
            err.to_string()
                .contains("expected a master ID such as `123` or `masters/123`"),
            "{bad:?}: {err}"
        );
    }
}

#[test]
fn ref_splits_at_the_first_slash() {
    use pb::patient_subject::Subject;
    assert_eq!(
        subject(&["--ref", "ehr/MRN-1"]),
        Subject::SourceRecord(key("ehr", "MRN-1"))
    );
    assert_eq!(
        subject(&["--ref", "fhir/Patient/42"]),
        Subject::SourceRecord(key("fhir", "Patient/42"))
    );
}

#[test]
fn ref_without_a_slash_is_a_clear_error() {
    let err = parse(&["--ref", "MRN-1"]).unwrap_err();
    assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
    insta::assert_snapshot!(err.to_string());
    for bad in ["/MRN-1", "ehr/"] {
        assert!(parse(&["--ref", bad]).is_err(), "{bad}");
    }
}

#[test]
fn exactly_one_of_master_and_ref() {
    let none = parse(&[]).unwrap_err();
    assert_eq!(none.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    let both = parse(&["--master", "1", "--ref", "ehr/1"]).unwrap_err();
    assert_eq!(both.kind(), clap::error::ErrorKind::ArgumentConflict);
}

#[test]
fn sections_become_the_read_mask() {
    let request = parse(&["--master", "1", "--sections", "demographics,encounters"])
        .unwrap()
        .get_request()
        .unwrap();
    assert_eq!(
        request.read_mask.unwrap().paths,
        ["sections.demographics", "sections.encounters"]
    );
    // Repeated flags add up, duplicates go, and a key that is not an identifier
    // is quoted as AIP-161 asks.
    let request = parse(&[
        "--master",
        "1",
        "--sections",
        "lab-results, demographics",
        "--sections=demographics",
    ])
    .unwrap()
    .stream_request()
    .unwrap();
    assert_eq!(
        request.read_mask.unwrap().paths,
        ["sections.`lab-results`", "sections.demographics"]
    );
    // No --sections: no mask, so every section the caller may see.
    let request = parse(&["--master", "1"]).unwrap().get_request().unwrap();
    assert_eq!(request.read_mask, None);
    for bad in ["a,,b", "a.b", "a b"] {
        assert!(
            parse(&["--master", "1", "--sections", bad]).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn purpose_defaults_to_treatment() {
    let request = parse(&["--master", "1"]).unwrap().get_request().unwrap();
    assert_eq!(request.purpose(), pb::PurposeOfUse::Treatment);
    assert_eq!(request.max_staleness, None);
    let request = parse(&[
        "--master",
        "1",
        "--purpose",
        "emergency-treatment",
        "--max-staleness",
        "90s",
    ])
    .unwrap()
    .get_request()
    .unwrap();
    assert_eq!(request.purpose(), pb::PurposeOfUse::EmergencyTreatment);
    assert_eq!(
        request.max_staleness,
        Some(prost_types::Duration {
            seconds: 90,
            nanos: 0
        })
    );
    assert!(parse(&["--master", "1", "--purpose", "curiosity"]).is_err());
}

#[test]
fn timeout_is_a_positive_duration() {
    let args = parse(&["--master", "1"]).unwrap();
    assert_eq!(args.timeout, std::time::Duration::from_secs(2));
    let args = parse(&["--master", "1", "--timeout", "250ms"]).unwrap();
    assert_eq!(args.timeout, std::time::Duration::from_millis(250));
    let err = parse(&["--master", "1", "--timeout", "0s"]).unwrap_err();
    assert!(err.to_string().contains("longer than zero"), "{err}");
    assert!(parse(&["--master", "1", "--timeout", "soon"]).is_err());
}

#[test]
fn a_grpc_error_prints_its_code_reason_and_field_violations() {
    let mut details = ErrorDetails::with_bad_request(vec![
        FieldViolation::new("subject.source_record.system", "must match [a-z0-9-]{1,63}"),
        FieldViolation::new(
            "read_mask.paths[1]",
            "no section `bogus`; known: demographics",
        ),
    ]);
    details.set_error_info(
        "INVALID_SUBJECT",
        tessera_proto::ERROR_DOMAIN,
        HashMap::new(),
    );
    let status =
        Status::with_error_details(Code::InvalidArgument, "the request is invalid", details);
    insta::assert_snapshot!(RpcError::from_status(&status).to_string(), @r"
    INVALID_ARGUMENT: the request is invalid
      reason: INVALID_SUBJECT (tessera.dev)
      subject.source_record.system: must match [a-z0-9-]{1,63}
      read_mask.paths[1]: no section `bogus`; known: demographics
    ");
    let plain = Status::not_found("no master masters/9\n\u{1b}[31m");
    assert_eq!(
        RpcError::from_status(&plain).to_string(),
        "NOT_FOUND: no master masters/9  [31m"
    );
}
