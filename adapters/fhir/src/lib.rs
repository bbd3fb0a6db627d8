//! The `fhir` adapter kind: an EHR over FHIR R4 REST.
//!
//! [`FhirKind`] is the typed factory ([`FhirConfig`], checked without I/O, then
//! built into a [`FhirAdapter`] and its health check). A fetch finds the patient —
//! by logical id or by an identifier such as an MRN (`Patient?identifier=system|value`),
//! optionally by `POST _search` so ids never appear in URLs — and then searches
//! each requested section (`[Type]?patient=ID&_count=N`, with `_lastUpdated` and
//! `_include` where configured) in parallel, following `Bundle.link[next]` on the
//! server's own origin only, everything under the caller's deadline. Records are the
//! resources' JSON as served; each resource is first checked against fhir-sdk's R4B
//! model, and a malformed one is skipped and counted. The identity feed streams
//! every Patient, paged, as demographics for the resolver.
//!
//! The parts: `config` (the serde types), `client` (HTTP through fhir-sdk's client
//! with its retries off: deadline-bounded retries of 429/502/503/504 honouring
//! `Retry-After`, a W3C `traceparent` on every request, fixed error messages),
//! `auth` (none, bearer, SMART Backend Services with a cached token), `mapping`
//! (Bundles, OperationOutcomes and Patients to the SDK's types) and `adapter`.
//!
//! A source in Tessera's config:
//!
//! ```yaml
//! sources:
//!   - name: ehr
//!     kind: fhir
//!     config:
//!       system: ehr
//!       base_url: https://ehr.example.org/fhir/R4
//!       patient_id: {type: identifier, system: "urn:oid:1.2.36.146.595.217.0.1"}
//!       sections: [demographics, encounters, observations, medications]
//!       section_options:
//!         observations: {last_updated_within: 730d}
//!         medications: {include: ["MedicationRequest:medication"]}
//!       search_via_post: true
//!       auth:
//!         type: smart_backend
//!         token_url: https://ehr.example.org/oauth2/token
//!         client_id: tessera
//!         private_key_file: secrets/tessera-es384.pem
//!         algorithm: ES384
//!         key_id: tessera-2026
//!         scope: system/Patient.rs system/Observation.rs system/Encounter.rs system/MedicationRequest.rs
//! ```
//!
//! Nothing here logs or returns patient data: spans carry the section, resource
//! type and counts, never a URL, id, identifier or name; fhir-sdk's own logging
//! (which prints full URLs) is silenced around each request; errors name an HTTP
//! status and an OperationOutcome issue code, never the server's diagnostics.

mod adapter;
mod auth;
mod client;
pub mod config;
mod filing;
mod mapping;

#[cfg(test)]
mod tests;

use std::time::Duration;

use async_trait::async_trait;
use std::sync::Arc;
use tessera_adapter_core::{
    AdapterKind, BuildContext, BuildError, BuiltAdapter, Capabilities, Description,
    MEDIA_TYPE_FHIR_JSON, SectionDescriptor,
};

pub use adapter::FhirAdapter;
pub use config::{
    AuthConfig, FhirConfig, PatientIdConfig, RetryConfig, Secret, Section, SectionOptions,
    SigningAlgorithm,
};

use auth::{Auth, SmartBackend, SmartSettings};
use client::FhirHttp;

/// How many local IDs one fetch may carry.
const MAX_BATCH: usize = 10;
/// How long connecting to the server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The `fhir` adapter kind.
#[derive(Debug, Default)]
pub struct FhirKind;

#[async_trait]
impl AdapterKind for FhirKind {
    type Config = FhirConfig;

    fn kind(&self) -> &'static str {
        "fhir"
    }

    fn validate(&self, config: &FhirConfig) -> Result<(), BuildError> {
        config.check().map(drop)
    }

    async fn build(
        &self,
        context: &BuildContext,
        config: FhirConfig,
    ) -> Result<BuiltAdapter, BuildError> {
        let adapter = Arc::new(FhirAdapter::build(context, config)?);
        Ok(BuiltAdapter {
            health: Arc::new(adapter.health_check()),
            adapter,
        })
    }
}

impl FhirAdapter {
    /// Builds an adapter from its configuration (reading the SMART private key, if
    /// any); it connects only when first used.
    pub fn build(context: &BuildContext, config: FhirConfig) -> Result<Self, BuildError> {
        let base = config.check()?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("tessera-adapter-fhir/", env!("CARGO_PKG_VERSION")))
            .redirect(client::redirect_policy())
            .build()
            .map_err(|_| BuildError::Setup("cannot build the HTTP client".to_owned()))?;
        let auth = match &config.auth {
            AuthConfig::None => Auth::None,
            AuthConfig::Bearer { token } => {
                let token = token
                    .resolve_in(&context.base_dir)
                    .map_err(|e| BuildError::config("auth.token", e.to_string()))?;
                Auth::bearer(token.expose()).map_err(|m| BuildError::config("auth.token", m))?
            }
            AuthConfig::SmartBackend {
                token_url,
                client_id,
                private_key_file,
                algorithm,
                key_id,
                scope,
                refresh_before,
            } => {
                let path = context.resolve_path(private_key_file);
                let pem = std::fs::read(&path).map_err(|e| {
                    BuildError::config(
                        "auth.private_key_file",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                let smart = SmartBackend::new(SmartSettings {
                    http: http.clone(),
                    token_url,
                    client_id,
                    scope,
                    private_key_pem: &pem,
                    algorithm: *algorithm,
                    key_id: key_id.as_deref(),
                    refresh_before: *refresh_before,
                })
                .map_err(|m| BuildError::config("auth.private_key_file", m))?;
                Auth::Smart(Arc::new(smart))
            }
        };
        let client = FhirHttp::new(
            http,
            base,
            auth,
            config.retry.clone(),
            config.request_timeout,
        )
        .map_err(BuildError::Setup)?;
        let description = Description {
            system: config.system.clone(),
            sections: config
                .sections
                .iter()
                .map(|s| SectionDescriptor {
                    name: s.name().to_owned(),
                    media_type: MEDIA_TYPE_FHIR_JSON.to_owned(),
                    description: s.description().to_owned(),
                    suggested_ttl: None,
                })
                .collect(),
            capabilities: Capabilities {
                batch_fetch: true,
                max_batch_size: MAX_BATCH,
                identity_feed: true,
                incremental_identity_feed: true,
            },
            version: concat!("fhir/", env!("CARGO_PKG_VERSION")).to_owned(),
        };
        Ok(FhirAdapter::new(client, config, description))
    }
}
