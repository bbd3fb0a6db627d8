//! FHIR R4 Patient to an identity-feed record; the demographics come from the
//! shared `tessera-fhir-patient` mapping.

use serde_json::Value;
use tessera_adapter_core::FeedRecord;
use tessera_fhir_patient::demographics;

/// A Patient as an identity-feed record, keyed by its logical id.
pub fn feed_record(patient: &Value) -> Option<FeedRecord> {
    let local_id = patient.get("id")?.as_str()?.to_owned();
    let update_time = patient
        .pointer("/meta/lastUpdated")
        .and_then(Value::as_str)
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok());
    Some(FeedRecord {
        local_id,
        demographics: demographics(patient),
        update_time,
    })
}
