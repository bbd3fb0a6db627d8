//! Filing a batch's answers under the patients they belong to: which Patient
//! each local ID names, and which patients a clinical resource references
//! (a search for several patients returns their resources mixed).

use std::collections::HashMap;

use fhir_sdk::r4b::resources::Patient;
use tessera_adapter_core::FetchError;

use crate::config::PatientIdConfig;
use crate::mapping::Checked;

/// Each wanted local ID's Patient among a Patient search's `resources`: none
/// is not found (or malformed, when the search skipped resources), two are an
/// ambiguous local ID.
pub(crate) fn file_patients(
    patient_id: &PatientIdConfig,
    wanted: &[&str],
    resources: Vec<Checked>,
    skipped: u32,
) -> Vec<(String, Result<Checked, FetchError>)> {
    let mut matches: HashMap<&str, Vec<Checked>> = HashMap::new();
    for checked in resources {
        let fhir_sdk::r4b::resources::Resource::Patient(patient) = &checked.resource else {
            continue;
        };
        let names: Vec<&str> = match patient_id {
            PatientIdConfig::LogicalId => wanted
                .iter()
                .copied()
                .filter(|id| patient.id.as_deref() == Some(*id))
                .collect(),
            PatientIdConfig::Identifier { system } => wanted
                .iter()
                .copied()
                .filter(|id| has_identifier(patient, system, id))
                .collect(),
        };
        match names.as_slice() {
            [] => {}
            [one] => matches.entry(one).or_default().push(checked),
            many => {
                for name in many {
                    matches.entry(name).or_default().push(Checked {
                        resource: checked.resource.clone(),
                        json: checked.json.clone(),
                    });
                }
            }
        }
    }
    let mut results = Vec::with_capacity(wanted.len());
    for &local_id in wanted {
        let mut found = matches.remove(local_id).unwrap_or_default();
        let result = match (found.pop(), found.is_empty()) {
            (Some(patient), true) => Ok(patient),
            (None, _) if skipped > 0 => Err(FetchError::Malformed {
                message: "the patient resource is malformed".to_owned(),
            }),
            (None, _) => Err(FetchError::NotFound),
            (Some(_), false) => Err(FetchError::Malformed {
                message: "the local ID matches more than one patient".to_owned(),
            }),
        };
        results.push((local_id.to_owned(), result));
    }
    results
}

/// Whether `patient` has `value` as an identifier in `system`.
fn has_identifier(patient: &Patient, system: &str, value: &str) -> bool {
    patient
        .identifier
        .iter()
        .flatten()
        .any(|i| i.system.as_deref() == Some(system) && i.value.as_deref() == Some(value))
}

/// The logical ids of the patients a resource belongs to: the references in
/// `subject`, `patient`, `beneficiary` and `participant[].actor` that name a
/// Patient (`Patient/1`, `Patient/1/_history/2`, or an absolute URL).
pub(crate) fn patient_references(json: &str) -> Vec<String> {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(json) else {
        return Vec::new();
    };
    let mut references: Vec<&str> = ["subject", "patient", "beneficiary"]
        .iter()
        .filter_map(|field| value.get(field)?.get("reference")?.as_str())
        .collect();
    if let Some(participants) = value.get("participant").and_then(|p| p.as_array()) {
        references.extend(
            participants
                .iter()
                .filter_map(|p| p.get("actor")?.get("reference")?.as_str()),
        );
    }
    let mut ids: Vec<String> = Vec::new();
    for reference in references {
        let mut segments = reference.split('/');
        while let Some(segment) = segments.next() {
            if segment == "Patient" {
                if let Some(id) = segments.next().filter(|id| !id.is_empty())
                    && !ids.iter().any(|x| x == id)
                {
                    ids.push(id.to_owned());
                }
                break;
            }
        }
    }
    ids
}

/// The patients each malformed resource of a search page references (see
/// [`patient_references`]), one list per resource `parse_bundle` skipped.
pub(crate) fn malformed_owners(body: &[u8]) -> Vec<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Bundle {
        #[serde(default)]
        entry: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        resource: Option<Box<serde_json::value::RawValue>>,
    }
    let Ok(bundle) = serde_json::from_slice::<Bundle>(body) else {
        return Vec::new();
    };
    bundle
        .entry
        .into_iter()
        .filter_map(|e| e.resource)
        .filter(|json| {
            serde_json::from_str::<fhir_sdk::r4b::resources::Resource>(json.get()).is_err()
        })
        .map(|json| patient_references(json.get()))
        .collect()
}
