//! The adapter kinds this binary knows, and building the configured sources
//! into an aggregator over the resolver.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use tessera_adapter_core::fake::FakeKind;
use tessera_adapter_core::{BuildContext, BuildError, Registry};
use tessera_aggregator::{
    Aggregator, Identities, IdentityLookup, LookupError, Source, SourceRef, Subject,
};
use tessera_matching::SourceKey;
use tessera_resolver::{Resolver, ResolverError};

use crate::config::Config;

/// Every adapter kind of this build. Fakes are ordinary kinds: for tests, the
/// load harness and trying a config without silos.
pub fn registry() -> Registry {
    Registry::new()
        .with(FakeKind)
        .with(tessera_adapter_fhir::FhirKind)
}

/// Why the sources could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SourcesError {
    /// One source's adapter could not be built.
    #[error("sources[{index}] ({name}): {source}")]
    Build {
        /// Its position in the config.
        index: usize,
        /// Its name.
        name: String,
        /// Why.
        source: BuildError,
    },
    /// Two sources share a name (the config check catches this first).
    #[error(transparent)]
    Duplicate(#[from] tessera_aggregator::DuplicateSource),
    /// The access policy names an unknown purpose (caught by the config check).
    #[error("view.access.{0}: is not a purpose of use")]
    Purpose(String),
}

/// Builds every configured source and the aggregator over `resolver`.
pub async fn build_aggregator(
    config: &Config,
    config_path: &Path,
    resolver: Arc<Resolver>,
) -> Result<Aggregator, SourcesError> {
    let registry = registry();
    let base_dir = config_path.parent().unwrap_or(Path::new(".")).to_owned();
    let mut sources = Vec::with_capacity(config.sources.len());
    for (index, source) in config.sources.iter().enumerate() {
        let context = BuildContext {
            name: source.name.clone(),
            base_dir: base_dir.clone(),
        };
        let adapter_config = if source.config.is_null() {
            serde_json::Value::Object(serde_json::Map::new())
        } else {
            source.config.clone()
        };
        let built = registry
            .build(&source.kind, &context, adapter_config)
            .await
            .map_err(|e| SourcesError::Build {
                index,
                name: source.name.clone(),
                source: e,
            })?;
        tracing::info!(source = %source.name, kind = %source.kind, "source ready");
        sources.push(Source::new(source.name.clone(), built, source.policy()));
    }
    let access = config.view.access_policy().map_err(SourcesError::Purpose)?;
    Ok(Aggregator::new(
        sources,
        Arc::new(ResolverLookup(resolver)),
        Arc::new(access),
        config.view.policy(),
    )?)
}

/// The aggregator's view of the resolver.
#[derive(Debug)]
pub struct ResolverLookup(pub Arc<Resolver>);

fn lookup_error(e: ResolverError) -> LookupError {
    match e {
        ResolverError::NotFound { what } => LookupError::NotFound { what },
        ResolverError::InvalidArgument(violations) => {
            let first = violations.into_iter().next();
            LookupError::Invalid {
                field: first
                    .as_ref()
                    .map_or_else(|| "subject".to_owned(), |v| format!("subject.{}", v.field)),
                description: first.map_or_else(|| "is invalid".to_owned(), |v| v.description),
            }
        }
        other => {
            tracing::error!(error = %other, "identity lookup failed");
            LookupError::Unavailable("identity store".to_owned())
        }
    }
}

#[async_trait]
impl IdentityLookup for ResolverLookup {
    async fn identities(&self, subject: &Subject) -> Result<Identities, LookupError> {
        let (master, keys) = match subject {
            Subject::Master(id) => {
                let id: u64 = id.parse().map_err(|_| LookupError::Invalid {
                    field: "subject.master".to_owned(),
                    description: "must be `masters/{id}` with a numeric id".to_owned(),
                })?;
                self.0.master_records(id).await.map_err(lookup_error)?
            }
            Subject::SourceRecord(r) => {
                let key = SourceKey::new(r.system.clone(), r.local_id.clone());
                let resolution = self.0.resolve(&key).await.map_err(lookup_error)?;
                let keys = resolution.records.into_iter().map(|r| r.key).collect();
                (resolution.master, keys)
            }
        };
        Ok(Identities {
            master: master.to_string(),
            records: keys
                .into_iter()
                .map(|k| SourceRef {
                    system: k.system,
                    local_id: k.local_id,
                })
                .collect(),
        })
    }
}
