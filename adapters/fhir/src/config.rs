//! The `fhir` kind's configuration: serde types with every field documented (they
//! become the JSON Schema), checked without I/O by [`FhirConfig::check`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use tessera_adapter_core::BuildError;
pub use tessera_types::Secret;
use url::Url;

/// Configuration of a `fhir` adapter: one FHIR R4 server (an EHR).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FhirConfig {
    /// The source system whose local IDs this adapter serves (`ehr`).
    pub system: String,
    /// The FHIR server's base URL (`https://ehr.example.org/fhir/R4`). With
    /// credentials configured (`auth`), it must be `https://` unless the host is
    /// loopback (`localhost`, `127.0.0.0/8`, `::1`). Redirects are followed only
    /// within its origin.
    pub base_url: String,
    /// How a local ID names a patient: its logical id, or an identifier value.
    #[serde(default)]
    pub patient_id: PatientIdConfig,
    /// The sections to serve, by name (`demographics`, `encounters`, `conditions`,
    /// `observations`, `medications`, `allergies`, `immunizations`, `appointments`,
    /// `documents`); every one by default.
    #[serde(default = "all_sections")]
    pub sections: Vec<Section>,
    /// Per-section options, keyed by section name.
    #[serde(default)]
    pub section_options: BTreeMap<Section, SectionOptions>,
    /// Resources per search page (`_count`).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// The most pages read per section; a longer section is cut short and logged.
    #[serde(default = "default_max_pages")]
    pub max_pages: u32,
    /// Search with `POST [type]/_search` (a form body), so that patient ids and
    /// identifiers never appear in URLs or server access logs.
    #[serde(default)]
    pub search_via_post: bool,
    /// How the adapter authenticates to the server.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Retries of rate-limited (429) and unavailable (502, 503, 504) answers.
    #[serde(default)]
    pub retry: RetryConfig,
    /// The longest one HTTP request may take, whatever the caller's deadline (`30s`);
    /// also bounds identity-feed pages, which have no caller deadline.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub request_timeout: Duration,
}

/// How a local ID names a patient.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum PatientIdConfig {
    /// The local ID is the Patient's logical id (`Patient/{id}`).
    #[default]
    LogicalId,
    /// The local ID is the value of a Patient identifier in `system`
    /// (`Patient?identifier=system|value`), such as an MRN.
    Identifier {
        /// The identifier's system URI (`urn:oid:1.2.36.146.595.217.0.1`).
        system: String,
    },
}

/// A section of the patient view that the adapter can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Section {
    /// The Patient resource itself.
    Demographics,
    /// Encounters.
    Encounters,
    /// Conditions (problems, diagnoses).
    Conditions,
    /// Observations: labs and vitals.
    Observations,
    /// Medication requests.
    Medications,
    /// Allergies and intolerances.
    Allergies,
    /// Immunizations.
    Immunizations,
    /// Appointments.
    Appointments,
    /// Document references, metadata only (attachment data removed).
    Documents,
}

impl Section {
    /// Every section, in view order.
    pub const ALL: [Section; 9] = [
        Section::Demographics,
        Section::Encounters,
        Section::Conditions,
        Section::Observations,
        Section::Medications,
        Section::Allergies,
        Section::Immunizations,
        Section::Appointments,
        Section::Documents,
    ];

    /// The section's name in views and configs.
    pub fn name(self) -> &'static str {
        match self {
            Section::Demographics => "demographics",
            Section::Encounters => "encounters",
            Section::Conditions => "conditions",
            Section::Observations => "observations",
            Section::Medications => "medications",
            Section::Allergies => "allergies",
            Section::Immunizations => "immunizations",
            Section::Appointments => "appointments",
            Section::Documents => "documents",
        }
    }

    /// The FHIR resource type the section holds.
    pub fn resource_type(self) -> &'static str {
        match self {
            Section::Demographics => "Patient",
            Section::Encounters => "Encounter",
            Section::Conditions => "Condition",
            Section::Observations => "Observation",
            Section::Medications => "MedicationRequest",
            Section::Allergies => "AllergyIntolerance",
            Section::Immunizations => "Immunization",
            Section::Appointments => "Appointment",
            Section::Documents => "DocumentReference",
        }
    }

    /// One line on what it holds.
    pub fn description(self) -> &'static str {
        match self {
            Section::Demographics => "the FHIR Patient resource",
            Section::Encounters => "FHIR Encounter resources",
            Section::Conditions => "FHIR Condition resources",
            Section::Observations => "FHIR Observation resources (labs, vitals)",
            Section::Medications => "FHIR MedicationRequest resources",
            Section::Allergies => "FHIR AllergyIntolerance resources",
            Section::Immunizations => "FHIR Immunization resources",
            Section::Appointments => "FHIR Appointment resources",
            Section::Documents => "FHIR DocumentReference metadata (no attachment data)",
        }
    }

    /// The section named `name`.
    pub fn from_name(name: &str) -> Option<Section> {
        Section::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Options of one section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SectionOptions {
    /// `_include` values (`MedicationRequest:medication`); included resources are
    /// returned as records of the section.
    #[serde(default)]
    pub include: Vec<String>,
    /// Only resources changed within this long (`_lastUpdated=ge…`), such as `365d`.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub last_updated_within: Option<Duration>,
}

/// How the adapter authenticates to the FHIR server.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    /// No authentication.
    #[default]
    None,
    /// A static bearer token.
    Bearer {
        /// The token (never logged or printed): the token itself, `env:NAME` or
        /// `file:PATH` (relative to the config's directory), read when the adapter
        /// is built.
        token: Secret,
    },
    /// SMART Backend Services: OAuth 2 client credentials with a `private_key_jwt`
    /// client assertion; the access token is cached and refreshed before it expires.
    SmartBackend {
        /// The authorization server's token endpoint.
        token_url: String,
        /// The client id registered with the EHR.
        client_id: String,
        /// The PEM file of the private key that signs assertions (PKCS#8, or PKCS#1
        /// for RSA); relative paths are resolved against the config's directory.
        private_key_file: PathBuf,
        /// The signing algorithm: `RS384` or `ES384`.
        algorithm: SigningAlgorithm,
        /// The key id (`kid`) the EHR knows the public key by, if any.
        #[serde(default)]
        key_id: Option<String>,
        /// The scopes to request (`system/Patient.rs system/Observation.rs`).
        scope: String,
        /// Refresh the token this long before it expires (`60s`).
        #[serde(default = "default_refresh_before", with = "humantime_serde")]
        #[schemars(with = "String")]
        refresh_before: Duration,
    },
}

/// A SMART Backend Services signing algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum SigningAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    #[serde(rename = "RS384")]
    Rs384,
    /// ECDSA on P-384 with SHA-384.
    #[serde(rename = "ES384")]
    Es384,
}

/// Retries of rate-limited and unavailable answers, always within the caller's
/// deadline.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts per request, the first included (1 turns retries off).
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// The wait before a retry when the server gives no `Retry-After`.
    #[serde(default = "default_backoff", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub backoff: Duration,
    /// The longest `Retry-After` the adapter waits out; a longer one (or one past
    /// the deadline) is returned to the caller as a retry hint instead.
    #[serde(default = "default_max_wait", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub max_wait: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: default_attempts(),
            backoff: default_backoff(),
            max_wait: default_max_wait(),
        }
    }
}

fn all_sections() -> Vec<Section> {
    Section::ALL.to_vec()
}

fn default_page_size() -> u32 {
    50
}

fn default_max_pages() -> u32 {
    20
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_refresh_before() -> Duration {
    Duration::from_secs(60)
}

fn default_attempts() -> u32 {
    3
}

fn default_backoff() -> Duration {
    Duration::from_millis(100)
}

fn default_max_wait() -> Duration {
    Duration::from_secs(5)
}

impl FhirConfig {
    /// A config for `system` at `base_url` with every default.
    pub fn new(system: &str, base_url: &str) -> Self {
        Self {
            system: system.to_owned(),
            base_url: base_url.to_owned(),
            patient_id: PatientIdConfig::default(),
            sections: all_sections(),
            section_options: BTreeMap::new(),
            page_size: default_page_size(),
            max_pages: default_max_pages(),
            search_via_post: false,
            auth: AuthConfig::default(),
            retry: RetryConfig::default(),
            request_timeout: default_request_timeout(),
        }
    }

    /// Checks what can be checked without I/O, and returns the base URL parsed,
    /// with a trailing slash so relative references join under it.
    pub fn check(&self) -> Result<Url, BuildError> {
        if self.system.is_empty() {
            return Err(BuildError::config("system", "must not be empty"));
        }
        let base = parse_http_url(&self.base_url).map_err(|m| BuildError::config("base_url", m))?;
        if self.sections.is_empty() {
            return Err(BuildError::config(
                "sections",
                "must name at least one section",
            ));
        }
        let mut seen = BTreeSet::new();
        for section in &self.sections {
            if !seen.insert(section) {
                return Err(BuildError::config(
                    "sections",
                    format!("{section:?} is listed twice"),
                ));
            }
        }
        for (section, options) in &self.section_options {
            let path = format!("section_options.{section}");
            if !seen.contains(section) {
                return Err(BuildError::config(path, "is not a configured section"));
            }
            if *section == Section::Demographics
                && (!options.include.is_empty() || options.last_updated_within.is_some())
            {
                return Err(BuildError::config(
                    path,
                    "demographics takes no search options",
                ));
            }
            if let Some(bad) = options.include.iter().find(|i| !valid_include(i)) {
                return Err(BuildError::config(
                    format!("{path}.include"),
                    format!("{bad:?} is not an _include value (Type:param[:Target])"),
                ));
            }
        }
        if !(1..=1000).contains(&self.page_size) {
            return Err(BuildError::config(
                "page_size",
                "must be between 1 and 1000",
            ));
        }
        if self.max_pages == 0 {
            return Err(BuildError::config("max_pages", "must be at least 1"));
        }
        if self.retry.max_attempts == 0 {
            return Err(BuildError::config(
                "retry.max_attempts",
                "must be at least 1",
            ));
        }
        if self.request_timeout.is_zero() {
            return Err(BuildError::config("request_timeout", "must be positive"));
        }
        if let PatientIdConfig::Identifier { system } = &self.patient_id
            && (system.is_empty() || system.contains('|'))
        {
            return Err(BuildError::config(
                "patient_id.system",
                "must be a non-empty URI without '|'",
            ));
        }
        if let Some(credential) = self.auth.credential_field() {
            refuse_plaintext(&base, "base_url", credential)?;
        }
        match &self.auth {
            AuthConfig::None => {}
            AuthConfig::Bearer { token } => {
                if token.expose().is_empty() || token.expose().chars().any(char::is_whitespace) {
                    return Err(BuildError::config(
                        "auth.token",
                        "must be a non-empty token without whitespace",
                    ));
                }
            }
            AuthConfig::SmartBackend {
                token_url,
                client_id,
                scope,
                ..
            } => {
                let token_url = parse_http_url(token_url)
                    .map_err(|m| BuildError::config("auth.token_url", m))?;
                refuse_plaintext(&token_url, "auth.token_url", "auth.private_key_file")?;
                if client_id.is_empty() {
                    return Err(BuildError::config("auth.client_id", "must not be empty"));
                }
                if scope.trim().is_empty() {
                    return Err(BuildError::config("auth.scope", "must not be empty"));
                }
            }
        }
        Ok(base)
    }

    /// The options of `section` (defaults when none are configured).
    pub fn options(&self, section: Section) -> SectionOptions {
        self.section_options
            .get(&section)
            .cloned()
            .unwrap_or_default()
    }
}

impl AuthConfig {
    /// The field holding the credential this sends, if any.
    fn credential_field(&self) -> Option<&'static str> {
        match self {
            AuthConfig::None => None,
            AuthConfig::Bearer { .. } => Some("auth.token"),
            AuthConfig::SmartBackend { .. } => Some("auth.private_key_file"),
        }
    }
}

/// Refuses an `http://` URL that credentials would travel to in plaintext,
/// unless its host is loopback.
fn refuse_plaintext(url: &Url, field: &str, credential: &str) -> Result<(), BuildError> {
    if url.scheme() == "https" || is_loopback(url) {
        return Ok(());
    }
    Err(BuildError::config(
        field,
        format!(
            "must be https:// when {credential} is set (http:// only to localhost, \
             127.0.0.0/8 or ::1): credentials are never sent in plaintext"
        ),
    ))
}

/// Whether the URL's host is this machine: `localhost`, 127.0.0.0/8 or `::1`.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn parse_http_url(s: &str) -> Result<Url, String> {
    let mut url = Url::parse(s).map_err(|e| format!("not a URL: {e}"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err("must be an http or https URL".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must have no query or fragment".to_owned());
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// `Type:param` or `Type:param:Target`, letters and digits and `-`.
fn valid_include(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    (2..=3).contains(&parts.len())
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        && parts[0].starts_with(|c: char| c.is_ascii_uppercase())
}
