//! The `fhir-ndjson` adapter kind: an EHR served from FHIR R4 Bulk Data export
//! files, one NDJSON file per resource type (`Patient.ndjson`,
//! `Encounter.ndjson`, ...), as `$export` writes them and as many organisations
//! already hold their EHR data.
//!
//! At build, each configured section's file is scanned once and indexed by
//! patient: for every line, its byte range under the patient it references
//! (`subject`, `patient`, or an Appointment participant). The files are read in
//! place, never copied: a fetch reads the patient's lines at their offsets and
//! returns them as FHIR JSON. Lines that do not parse, or reference no patient,
//! are counted and skipped (without their content in any log). The identity
//! feed streams every Patient's demographics for loading the resolver.
//!
//! [`config`] holds the kind's configuration, `index` the file index,
//! [`mapping`] FHIR Patient to demographics.

pub mod config;
mod index;
pub mod mapping;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use futures_util::StreamExt;
use tessera_adapter_core::{
    Adapter, AdapterKind, BoxFeed, BuildContext, BuildError, BuiltAdapter, Capabilities,
    Description, FetchError, FetchRequest, FetchResult, Health, HealthCheck, MEDIA_TYPE_FHIR_JSON,
    Record, SectionDescriptor,
};

pub use config::NdjsonConfig;
use index::FileIndex;

/// The `fhir-ndjson` kind.
#[derive(Debug, Default)]
pub struct NdjsonKind;

#[async_trait]
impl AdapterKind for NdjsonKind {
    type Config = NdjsonConfig;

    fn kind(&self) -> &'static str {
        "fhir-ndjson"
    }

    fn validate(&self, config: &NdjsonConfig) -> Result<(), BuildError> {
        config.check()
    }

    async fn build(
        &self,
        context: &BuildContext,
        config: NdjsonConfig,
    ) -> Result<BuiltAdapter, BuildError> {
        let adapter = Arc::new(NdjsonAdapter::open(context, config).await?);
        Ok(BuiltAdapter {
            health: adapter.clone(),
            adapter,
        })
    }
}

/// An EHR in NDJSON files.
#[derive(Debug)]
pub struct NdjsonAdapter {
    description: Description,
    /// Section name to its file's index.
    sections: HashMap<String, Arc<FileIndex>>,
    patients: Arc<FileIndex>,
}

impl NdjsonAdapter {
    /// Indexes the configured files (on a blocking thread).
    pub async fn open(context: &BuildContext, config: NdjsonConfig) -> Result<Self, BuildError> {
        config.check()?;
        let dir = context.resolve_path(&config.dir);
        let sections = config.sections();
        let files: Vec<(String, String)> = sections
            .iter()
            .map(|(name, resource)| (name.clone(), resource.clone()))
            .chain([("\u{0}patients".to_owned(), "Patient".to_owned())])
            .collect();
        let indexed = tokio::task::spawn_blocking(move || {
            let mut by_type: HashMap<String, Arc<FileIndex>> = HashMap::new();
            let mut out = HashMap::new();
            for (section, resource) in files {
                let index = match by_type.get(&resource) {
                    Some(index) => index.clone(),
                    None => {
                        let index = Arc::new(FileIndex::build(&dir, &resource)?);
                        by_type.insert(resource, index.clone());
                        index
                    }
                };
                out.insert(section, index);
            }
            Ok::<_, BuildError>(out)
        })
        .await
        .map_err(|e| BuildError::Setup(format!("indexing failed: {e}")))??;
        let mut sections_index = indexed;
        let patients = sections_index
            .remove("\u{0}patients")
            .ok_or_else(|| BuildError::Setup("no Patient index".to_owned()))?;
        let description = Description {
            system: config.system.clone(),
            sections: sections
                .iter()
                .map(|(name, resource)| SectionDescriptor {
                    name: name.clone(),
                    media_type: MEDIA_TYPE_FHIR_JSON.to_owned(),
                    description: format!("FHIR {resource} resources of the patient"),
                    suggested_ttl: None,
                })
                .collect(),
            capabilities: Capabilities {
                batch_fetch: true,
                max_batch_size: 100,
                identity_feed: true,
                incremental_identity_feed: false,
            },
            version: concat!("fhir-ndjson/", env!("CARGO_PKG_VERSION")).to_owned(),
        };
        for (name, index) in &sections_index {
            tracing::info!(
                section = %name,
                resources = index.lines(),
                skipped = index.skipped(),
                "fhir-ndjson section indexed"
            );
        }
        Ok(Self {
            description,
            sections: sections_index,
            patients,
        })
    }

    fn fetch_pair(&self, local_id: &str, section: &str) -> FetchResult {
        let result = |records, skipped| FetchResult {
            local_id: local_id.to_owned(),
            section: section.to_owned(),
            records,
            skipped_malformed: skipped,
        };
        let Some(index) = self.sections.get(section) else {
            return result(
                Err(FetchError::UnknownSection {
                    section: section.to_owned(),
                }),
                0,
            );
        };
        if !self.patients.has_patient(local_id) {
            return result(Err(FetchError::NotFound), 0);
        }
        match index.read_patient(local_id) {
            Err(e) => result(Err(e), 0),
            Ok((lines, skipped)) => {
                let records = lines
                    .into_iter()
                    .map(|(line, resource)| Record {
                        record_id: resource
                            .get("id")
                            .and_then(|v| v.as_str())
                            .map(str::to_owned),
                        update_time: resource
                            .pointer("/meta/lastUpdated")
                            .and_then(|v| v.as_str())
                            .and_then(|t| humantime::parse_rfc3339_weak(t).ok()),
                        json: line.into(),
                    })
                    .collect();
                result(Ok(records), skipped)
            }
        }
    }
}

#[async_trait]
impl Adapter for NdjsonAdapter {
    fn describe(&self) -> &Description {
        &self.description
    }

    async fn fetch(&self, request: FetchRequest) -> Result<Vec<FetchResult>, FetchError> {
        if tokio::time::Instant::now() >= request.deadline {
            return Err(FetchError::DeadlineExceeded);
        }
        // Positioned reads of a few lines: small enough to run inline.
        Ok(request
            .local_ids
            .iter()
            .flat_map(|id| request.sections.iter().map(|s| self.fetch_pair(id, s)))
            .collect())
    }

    fn identity_feed(&self, updated_since: Option<SystemTime>) -> BoxFeed<'_> {
        let _ = updated_since; // files carry no change feed: always everything
        let patients = self.patients.clone();
        let stream = futures_util::stream::iter(patients.all_lines()).filter_map(move |line| {
            let patients = patients.clone();
            async move {
                match patients.read_line(line) {
                    Ok(resource) => mapping::feed_record(&resource).map(Ok),
                    Err(e) => Some(Err(e)),
                }
            }
        });
        Box::pin(stream)
    }
}

#[async_trait]
impl HealthCheck for NdjsonAdapter {
    async fn check(&self) -> Health {
        match self.patients.check_readable() {
            Ok(()) => Health::serving(),
            Err(message) => Health::not_serving(message),
        }
    }
}
