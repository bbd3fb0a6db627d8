//! The `consent:` configuration: the source, which sections it gates, the default decision
//! and the time it may take.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use tessera_types::Secret;

use crate::ConsentError;
use crate::rules::{Decision, SectionPattern};

/// Patient consent: where decisions come from and what they gate.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentConfig {
    /// The consent source.
    pub source: ConsentSourceConfig,
    /// Consent-gated sections: `*`, `SOURCE.*` or `SOURCE.SECTION` (`marketing.*`). Other
    /// sections are served without asking.
    pub gated: Vec<String>,
    /// The decision for a gated section the person has no rule for: `permit` (opt-out
    /// model) or `deny` (opt-in model).
    #[serde(default = "ConsentConfig::default_decision")]
    pub default: Decision,
    /// The longest the consent source may take for one view.
    #[serde(default = "ConsentConfig::default_timeout", with = "humantime_serde")]
    #[schemars(with = "String", example = &"250ms")]
    pub timeout: Duration,
    /// The share (0 to 1) of the view's remaining deadline the consent source may take,
    /// when that is shorter than `timeout`.
    #[serde(default = "ConsentConfig::default_share")]
    pub deadline_share: f64,
}

/// A consent source, by kind.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ConsentSourceConfig {
    /// A table of rules in PostgreSQL or SQLite.
    Sql(SqlConsentConfig),
    /// FHIR R4 `Consent` resources, searched per patient.
    Fhir(FhirConsentConfig),
}

/// The `sql` consent source: one row per rule.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlConsentConfig {
    /// The database URL: `postgres://...` or `sqlite://PATH` (relative to the config file);
    /// may be `env:NAME` or `file:PATH`.
    pub url: Secret,
    /// The table with columns `system`, `local_id`, `purpose`, `section`, `decision`.
    #[serde(default = "SqlConsentConfig::default_table")]
    pub table: String,
    /// Connections in the pool.
    #[serde(default = "SqlConsentConfig::default_connections")]
    pub max_connections: u32,
}

/// The `fhir` consent source: `GET {base_url}/Consent?patient=Patient/{id}&status=active`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FhirConsentConfig {
    /// The FHIR R4 server's base URL.
    pub base_url: String,
    /// The identifier system whose local IDs are the server's Patient IDs (`ehr`).
    pub system: String,
    /// The coding system of section codes in `provision.class` and `provision.code`.
    #[serde(default = "FhirConsentConfig::default_section_system")]
    pub section_system: String,
    /// A bearer token sent with each search; may be `env:NAME` or `file:PATH`.
    #[serde(default)]
    pub bearer_token: Option<Secret>,
}

/// The default coding system of section codes in FHIR `Consent` provisions.
pub const SECTION_SYSTEM: &str = "https://tessera.dev/fhir/CodeSystem/section";

impl ConsentConfig {
    fn default_decision() -> Decision {
        Decision::Permit
    }

    fn default_timeout() -> Duration {
        Duration::from_millis(250)
    }

    fn default_share() -> f64 {
        0.5
    }

    /// Checks the configuration without I/O; the error names the first bad field.
    pub fn validate(&self) -> Result<(), ConsentError> {
        self.gated_patterns()?;
        self.check_timing()?;
        match &self.source {
            ConsentSourceConfig::Sql(sql) => sql.check_table(),
            ConsentSourceConfig::Fhir(fhir) => fhir.base().map(drop),
        }
    }

    pub(crate) fn gated_patterns(&self) -> Result<Vec<SectionPattern>, ConsentError> {
        self.gated
            .iter()
            .enumerate()
            .map(|(i, g)| {
                SectionPattern::parse(g).ok_or_else(|| {
                    invalid(
                        format!("gated[{i}]"),
                        "must be `*`, `SOURCE.*` or `SOURCE.SECTION`",
                    )
                })
            })
            .collect()
    }

    pub(crate) fn check_timing(&self) -> Result<(), ConsentError> {
        if self.timeout.is_zero() {
            return Err(invalid("timeout", "must be positive"));
        }
        if !(self.deadline_share > 0.0 && self.deadline_share <= 1.0) {
            return Err(invalid("deadline_share", "must be above 0 and at most 1"));
        }
        Ok(())
    }
}

impl SqlConsentConfig {
    fn default_table() -> String {
        "tessera_consent".to_owned()
    }

    fn default_connections() -> u32 {
        4
    }

    /// The table name is written into SQL: letters, digits, `_`, and one `.` for a schema.
    pub(crate) fn check_table(&self) -> Result<(), ConsentError> {
        let ok = !self.table.is_empty()
            && self.table.split('.').count() <= 2
            && self.table.split('.').all(|part| {
                part.chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            });
        if ok {
            Ok(())
        } else {
            Err(invalid(
                "source.table",
                "must be an SQL identifier (`schema.table` at most)",
            ))
        }
    }
}

impl FhirConsentConfig {
    fn default_section_system() -> String {
        SECTION_SYSTEM.to_owned()
    }

    pub(crate) fn base(&self) -> Result<url::Url, ConsentError> {
        let mut url = url::Url::parse(&self.base_url)
            .map_err(|_| invalid("source.base_url", "is not a URL"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("source.base_url", "must be http or https"));
        }
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        if self.system.trim().is_empty() {
            return Err(invalid("source.system", "must not be empty"));
        }
        Ok(url)
    }
}

pub(crate) fn invalid(field: impl Into<String>, problem: impl Into<String>) -> ConsentError {
    ConsentError::InvalidConfig {
        field: field.into(),
        problem: problem.into(),
    }
}
