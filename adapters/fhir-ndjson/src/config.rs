//! The `fhir-ndjson` kind's configuration.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;
use tessera_adapter_core::{BuildError, valid_section_name};

/// The default sections and the resource type each serves.
pub const DEFAULT_SECTIONS: [(&str, &str); 8] = [
    ("demographics", "Patient"),
    ("encounters", "Encounter"),
    ("conditions", "Condition"),
    ("observations", "Observation"),
    ("medications", "MedicationRequest"),
    ("allergies", "AllergyIntolerance"),
    ("immunizations", "Immunization"),
    ("appointments", "Appointment"),
];

/// An EHR served from FHIR Bulk Data NDJSON files.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NdjsonConfig {
    /// The directory of the export: one `<ResourceType>.ndjson` per type. A
    /// relative path is relative to the config file.
    pub dir: PathBuf,
    /// The source system whose local IDs are the Patients' logical ids
    /// (`ehr`).
    pub system: String,
    /// Sections and the resource type each serves (`encounters: Encounter`).
    /// Without it: demographics, encounters, conditions, observations,
    /// medications, allergies, immunizations and appointments.
    #[serde(default)]
    pub sections: BTreeMap<String, String>,
}

impl NdjsonConfig {
    /// The sections, defaults applied.
    pub fn sections(&self) -> BTreeMap<String, String> {
        if self.sections.is_empty() {
            DEFAULT_SECTIONS
                .iter()
                .map(|(s, r)| ((*s).to_owned(), (*r).to_owned()))
                .collect()
        } else {
            self.sections.clone()
        }
    }

    /// Checks what can be checked without reading the files.
    pub fn check(&self) -> Result<(), BuildError> {
        if self.system.is_empty() {
            return Err(BuildError::config("system", "must not be empty"));
        }
        for (name, resource) in &self.sections {
            if !valid_section_name(name) {
                return Err(BuildError::config(
                    format!("sections.{name}"),
                    "is not a section name ([a-z][a-z0-9_]*)",
                ));
            }
            let valid_type = resource.starts_with(|c: char| c.is_ascii_uppercase())
                && resource.chars().all(|c| c.is_ascii_alphanumeric());
            if !valid_type {
                return Err(BuildError::config(
                    format!("sections.{name}"),
                    "must be a FHIR resource type such as `Encounter`",
                ));
            }
        }
        Ok(())
    }
}
