//! FHIR R4 Patient to the resolver's demographics.

use serde_json::Value;
use tessera_adapter_core::FeedRecord;
use tessera_matching::{Address, Demographics, Sex};

/// The US SSN identifier system.
const SSN_SYSTEM: &str = "http://hl7.org/fhir/sid/us-ssn";

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn text(v: Option<&Value>) -> String {
    v.and_then(Value::as_str).unwrap_or_default().to_owned()
}

/// A Patient's demographics: the official (else first) name, maiden names,
/// gender, birth date, addresses, phones, emails and a US SSN identifier.
pub fn demographics(patient: &Value) -> Demographics {
    let names = patient.get("name").and_then(Value::as_array);
    let official = names.and_then(|n| {
        n.iter()
            .find(|x| x.get("use").and_then(Value::as_str) == Some("official"))
            .or_else(|| n.first())
    });
    let previous_family_names = names
        .map(|n| {
            n.iter()
                .filter(|x| x.get("use").and_then(Value::as_str) == Some("maiden"))
                .map(|x| text(x.get("family")))
                .filter(|f| !f.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let sex = match patient.get("gender").and_then(Value::as_str) {
        Some("male") => Sex::Male,
        Some("female") => Sex::Female,
        Some("other") => Sex::Other,
        Some("unknown") => Sex::Unknown,
        _ => Sex::Unspecified,
    };
    let telecom = |system: &str| -> Vec<String> {
        patient
            .get("telecom")
            .and_then(Value::as_array)
            .map(|t| {
                t.iter()
                    .filter(|c| c.get("system").and_then(Value::as_str) == Some(system))
                    .map(|c| text(c.get("value")))
                    .filter(|v| !v.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    };
    let addresses = patient
        .get("address")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|x| Address {
                    lines: strings(x.get("line")),
                    city: text(x.get("city")),
                    state: text(x.get("state")),
                    postal_code: text(x.get("postalCode")),
                    country: text(x.get("country")),
                })
                .collect()
        })
        .unwrap_or_default();
    let national_id = patient
        .get("identifier")
        .and_then(Value::as_array)
        .and_then(|ids| {
            ids.iter()
                .find(|i| i.get("system").and_then(Value::as_str) == Some(SSN_SYSTEM))
        })
        .map(|i| text(i.get("value")))
        .unwrap_or_default();
    Demographics {
        given_names: strings(official.and_then(|n| n.get("given"))),
        family_name: text(official.and_then(|n| n.get("family"))),
        name_suffix: strings(official.and_then(|n| n.get("suffix")))
            .into_iter()
            .next()
            .unwrap_or_default(),
        previous_family_names,
        birth_date: text(patient.get("birthDate")),
        sex,
        addresses,
        phones: telecom("phone"),
        emails: telecom("email"),
        national_id,
    }
}

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
