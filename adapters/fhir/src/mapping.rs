//! From FHIR JSON to the SDK's types: search Bundles to records (each resource
//! checked against fhir-sdk's R4B model; a malformed one is skipped and counted, its
//! JSON kept out of every log), a Patient to the resolver's demographics, and an
//! error answer (status and OperationOutcome) to a typed [`FetchError`] whose
//! message names the HTTP status and issue code only — never the server's
//! diagnostics, which may quote patient data.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fhir_sdk::r4b::resources::{Patient, Resource};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::value::RawValue;
use tessera_adapter_core::{FetchError, Record};
use tessera_types::Demographics;

/// One page of a search, its resources checked.
#[derive(Debug, Default)]
pub(crate) struct Page {
    /// The well-formed resources of the page, as served.
    pub(crate) resources: Vec<Checked>,
    /// Resources skipped because they did not parse as their type.
    pub(crate) skipped: u32,
    /// The `next` link, if any.
    pub(crate) next: Option<String>,
}

/// A resource that parsed as its type, with its JSON as served.
#[derive(Debug)]
pub(crate) struct Checked {
    /// The parsed resource.
    pub(crate) resource: Resource,
    /// Its JSON as the server sent it.
    pub(crate) json: Box<RawValue>,
}

impl Checked {
    /// The resource type's name (`Observation`).
    pub(crate) fn resource_type(&self) -> String {
        self.resource.resource_type().to_string()
    }

    /// The record of this resource.
    pub(crate) fn record(&self) -> Record {
        let base = self.resource.as_base_resource();
        Record {
            record_id: base.id().clone(),
            json: Arc::from(self.json.get()),
            update_time: base
                .meta()
                .as_ref()
                .and_then(|m| m.last_updated.as_ref())
                .map(|instant| SystemTime::from(instant.0)),
        }
    }
}

#[derive(Deserialize)]
struct RawBundle {
    #[serde(rename = "resourceType")]
    resource_type: String,
    #[serde(default)]
    link: Vec<RawLink>,
    #[serde(default)]
    entry: Vec<RawEntry>,
}

#[derive(Deserialize)]
struct RawLink {
    relation: String,
    url: String,
}

#[derive(Deserialize)]
struct RawEntry {
    #[serde(default)]
    resource: Option<Box<RawValue>>,
}

/// Parses a search Bundle. A Bundle that does not parse fails the page; a resource
/// that does not parse is skipped and counted.
pub(crate) fn parse_bundle(body: &[u8]) -> Result<Page, FetchError> {
    let bundle: RawBundle = serde_json::from_slice(body).map_err(|_| FetchError::Malformed {
        message: "a search answer is not a FHIR Bundle".to_owned(),
    })?;
    if bundle.resource_type != "Bundle" {
        return Err(FetchError::Malformed {
            message: "a search answer is not a FHIR Bundle".to_owned(),
        });
    }
    let mut page = Page {
        next: bundle
            .link
            .into_iter()
            .find(|l| l.relation == "next")
            .map(|l| l.url),
        ..Page::default()
    };
    for entry in bundle.entry {
        let Some(json) = entry.resource else { continue };
        match check_resource(json) {
            Some(checked) => page.resources.push(checked),
            None => page.skipped += 1,
        }
    }
    Ok(page)
}

/// Parses one resource as its type; `None` (and a warning naming only the type,
/// when known) if it is malformed.
pub(crate) fn check_resource(json: Box<RawValue>) -> Option<Checked> {
    match serde_json::from_str::<Resource>(json.get()) {
        Ok(resource) => Some(Checked { resource, json }),
        Err(_) => {
            #[derive(Deserialize)]
            struct TypeOnly {
                #[serde(rename = "resourceType")]
                resource_type: String,
            }
            let resource_type = serde_json::from_str::<TypeOnly>(json.get())
                .ok()
                .map(|t| t.resource_type)
                .filter(|t| t.len() <= 64 && t.chars().all(|c| c.is_ascii_alphabetic()))
                .unwrap_or_else(|| "unknown".to_owned());
            tracing::warn!(
                fhir.resource_type = %resource_type,
                "skipped a malformed resource"
            );
            None
        }
    }
}

/// A resource with its attachments' inline data removed (documents are served as
/// metadata only).
pub(crate) fn without_attachment_data(json: &RawValue) -> Option<Box<RawValue>> {
    let mut value: serde_json::Value = serde_json::from_str(json.get()).ok()?;
    if let Some(content) = value.get_mut("content").and_then(|c| c.as_array_mut()) {
        for item in content {
            if let Some(attachment) = item.get_mut("attachment").and_then(|a| a.as_object_mut()) {
                attachment.remove("data");
            }
        }
    }
    serde_json::value::to_raw_value(&value).ok()
}

#[derive(Deserialize)]
struct RawOutcome {
    #[serde(rename = "resourceType")]
    resource_type: String,
    #[serde(default)]
    issue: Vec<RawIssue>,
}

#[derive(Deserialize)]
struct RawIssue {
    #[serde(default)]
    code: String,
}

/// The first issue code of an OperationOutcome body, if it is one (codes are a
/// fixed FHIR value set; anything else is dropped).
pub(crate) fn issue_code(body: &[u8]) -> Option<String> {
    let outcome: RawOutcome = serde_json::from_slice(body).ok()?;
    if outcome.resource_type != "OperationOutcome" {
        return None;
    }
    outcome.issue.into_iter().map(|i| i.code).find(|c| {
        !c.is_empty() && c.len() <= 32 && c.chars().all(|c| c.is_ascii_lowercase() || c == '-')
    })
}

/// The typed error of a non-2xx answer.
pub(crate) fn status_error(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
) -> FetchError {
    let code = issue_code(body);
    let described = |what: &str| match &code {
        Some(code) => format!("{what} (HTTP {}, issue {code})", status.as_u16()),
        None => format!("{what} (HTTP {})", status.as_u16()),
    };
    match (status, code.as_deref()) {
        (StatusCode::TOO_MANY_REQUESTS, _) | (_, Some("throttled")) => {
            FetchError::RateLimited { retry_after }
        }
        (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, _)
        | (_, Some("security" | "login" | "forbidden" | "suppressed")) => FetchError::Denied {
            message: described("upstream refused the adapter's credentials"),
        },
        (StatusCode::NOT_FOUND | StatusCode::GONE, _) | (_, Some("not-found" | "deleted")) => {
            FetchError::NotFound
        }
        _ if status.is_server_error() => FetchError::Unavailable {
            message: described("upstream failed"),
            retry_after,
        },
        _ => FetchError::Malformed {
            message: described("upstream rejected the request"),
        },
    }
}

/// A Patient's demographics, as the resolver reads them: the shared
/// `tessera-fhir-patient` mapping of the Patient's JSON.
pub(crate) fn demographics(patient: &Patient) -> Demographics {
    serde_json::to_value(patient)
        .map(|json| tessera_fhir_patient::demographics(&json))
        .unwrap_or_default()
}

/// The value of `patient`'s identifier in `system`.
pub(crate) fn identifier_value(patient: &Patient, system: &str) -> Option<String> {
    patient
        .identifier
        .iter()
        .flatten()
        .find(|i| i.system.as_deref() == Some(system))
        .and_then(|i| i.value.clone())
}

/// Whether `id` is a FHIR logical id (`[A-Za-z0-9\-\.]{1,64}`).
pub(crate) fn is_logical_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tessera_types::Sex;

    use super::demographics;

    /// The live adapter reads a Patient through fhir-sdk's model; its demographics
    /// must be the shared mapping's answer for the JSON as served, so a person
    /// found over FHIR REST and in a Bulk export matches itself.
    #[test]
    fn a_parsed_patient_maps_as_its_json() {
        let json = json!({
            "resourceType": "Patient",
            "id": "p1",
            "name": [
                {"use": "maiden", "family": "Brown", "given": ["Mary"]},
                {"use": "official", "family": "Jones", "given": ["Mary", "Ann"],
                 "suffix": ["PhD", "Jr."]}
            ],
            "telecom": [
                {"system": "phone", "value": "555-0101", "use": "home"},
                {"system": "sms", "value": "555-0102", "use": "mobile"},
                {"system": "email", "value": "mary@example.org", "rank": 1}
            ],
            "gender": "female",
            "birthDate": "1980-02-29",
            "address": [
                {"use": "old", "line": ["9 Old Rd"], "city": "Oldtown"},
                {"line": ["1 Main St"], "city": "Springfield", "state": "IL",
                 "postalCode": "62704"}
            ],
            "identifier": [{"system": "http://hl7.org/fhir/sid/us-ssn", "value": "123-45-6789"}]
        });
        let patient: fhir_sdk::r4b::resources::Patient =
            serde_json::from_value(json.clone()).expect("a valid Patient");
        let parsed = demographics(&patient);
        assert_eq!(parsed, tessera_fhir_patient::demographics(&json));
        assert_eq!(parsed.family_name, "Jones");
        assert_eq!(parsed.name_suffix, "JR");
        assert_eq!(parsed.previous_family_names, ["Brown"]);
        assert_eq!(parsed.phones, ["555-0102", "555-0101"]);
        assert_eq!(parsed.sex, Sex::Female);
        assert_eq!(parsed.addresses[0].city, "Springfield");
    }
}
