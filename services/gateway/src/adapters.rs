//! The adapter kinds this binary knows, and building the configured sources
//! into an aggregator over the resolver.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use tessera_adapter_core::fake::FakeKind;
use tessera_adapter_core::{BuildContext, BuildError, BuiltAdapter, Registry};
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
        .with(tessera_adapter_fhir_ndjson::NdjsonKind)
        .with(tessera_adapter_grpc::GrpcKind)
        .with(tessera_adapter_rest::RestKind)
        .with(tessera_adapter_sql::SqlKind)
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
    /// The consent source could not be set up.
    #[error("consent: {0}")]
    Consent(#[from] tessera_consent::ConsentError),
}

/// Builds every configured source's adapter, in config order.
pub async fn build_sources(
    config: &Config,
    config_path: &Path,
) -> Result<Vec<BuiltAdapter>, SourcesError> {
    let registry = registry();
    let base_dir = config_path.parent().unwrap_or(Path::new(".")).to_owned();
    let mut built = Vec::with_capacity(config.sources.len());
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
        let adapter = registry
            .build(&source.kind, &context, adapter_config)
            .await
            .map_err(|e| SourcesError::Build {
                index,
                name: source.name.clone(),
                source: e,
            })?;
        tracing::info!(source = %source.name, kind = %source.kind, "source ready");
        built.push(adapter);
    }
    Ok(built)
}

/// The aggregator over built sources (in config order) and `resolver`.
pub fn aggregator(
    config: &Config,
    config_path: &Path,
    built: Vec<BuiltAdapter>,
    resolver: Arc<Resolver>,
) -> Result<Aggregator, SourcesError> {
    let sources = config
        .sources
        .iter()
        .zip(built)
        .map(|(source, adapter)| Source::new(source.name.clone(), adapter, source.policy()))
        .collect();
    let access = config.view.access_policy().map_err(SourcesError::Purpose)?;
    let aggregator = Aggregator::new(
        sources,
        Arc::new(ResolverLookup::new(resolver)),
        Arc::new(access),
        config.view.policy(),
    )?;
    let Some(consent) = &config.consent else {
        return Ok(aggregator);
    };
    let dir = config_path.parent().unwrap_or(Path::new("."));
    let gate = tessera_consent::Consent::new(consent, tessera_consent::build(consent, dir)?)?;
    Ok(aggregator.with_consent(gate))
}

/// The aggregator's view of the resolver. With the embedded store the resolver
/// answers from memory; with a shared store, recent lookups are cached.
///
/// A cached entry is used only while the resolver's generation has not moved
/// since it was read, so a link change in this process is seen at once; the TTL
/// bounds how long a change made by another process (replicas sharing
/// PostgreSQL) can go unseen.
pub struct ResolverLookup {
    resolver: Arc<Resolver>,
    /// `None` when the resolver answers from memory.
    cache: Option<moka::future::Cache<Subject, (u64, Identities)>>,
}

impl std::fmt::Debug for ResolverLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolverLookup").finish_non_exhaustive()
    }
}

/// Cached lookups.
const LOOKUP_CACHE_ENTRIES: u64 = 100_000;
/// How long a cached lookup may miss another process's link change.
const LOOKUP_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(5);

impl ResolverLookup {
    /// Lookups over `resolver`.
    pub fn new(resolver: Arc<Resolver>) -> Self {
        let cache = (!resolver.lookups_in_memory()).then(|| {
            moka::future::Cache::builder()
                .max_capacity(LOOKUP_CACHE_ENTRIES)
                .time_to_live(LOOKUP_CACHE_TTL)
                .build()
        });
        Self { resolver, cache }
    }

    async fn lookup(&self, subject: &Subject) -> Result<Identities, LookupError> {
        let (master, keys) = match subject {
            Subject::Master(id) => {
                let id: u64 = id.parse().map_err(|_| LookupError::Invalid {
                    field: "subject.master".to_owned(),
                    description: "must be `masters/{id}` with a numeric id".to_owned(),
                })?;
                self.resolver
                    .master_records(id)
                    .await
                    .map_err(lookup_error)?
            }
            Subject::SourceRecord(r) => {
                let key = SourceKey::new(r.system.clone(), r.local_id.clone());
                self.resolver
                    .cluster_keys(&key)
                    .await
                    .map_err(lookup_error)?
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
        let Some(cache) = &self.cache else {
            // From memory: current with every change and cheaper than a cache
            // lookup.
            return self.lookup(subject).await;
        };
        // Read the generation first: a change committed after this read makes
        // the entry stale, whichever data the lookup saw.
        let generation = self.resolver.generation();
        if let Some((cached_at, identities)) = cache.get(subject).await
            && cached_at == generation
        {
            return Ok(identities);
        }
        let identities = self.lookup(subject).await?;
        cache
            .insert(subject.clone(), (generation, identities.clone()))
            .await;
        Ok(identities)
    }
}

#[cfg(test)]
mod tests {
    use tessera_matching::{Demographics, Model};
    use tessera_resolver::ResolverConfig;
    use tessera_resolver::resolver::{Mutation, UpsertInput};
    use tessera_resolver::store::SqlStore;

    use super::*;

    fn person(given: &str, family: &str, birth: &str) -> Demographics {
        Demographics {
            given_names: vec![given.to_owned()],
            family_name: family.to_owned(),
            birth_date: birth.to_owned(),
            ..Demographics::default()
        }
    }

    /// With the embedded store the lookups come from the resolver's memory;
    /// with PostgreSQL (a store other replicas may write) from the store,
    /// through the cache. Both must see this process's link changes at once.
    #[tokio::test]
    async fn lookups_see_a_link_change_at_once_on_both_stores() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = format!("sqlite://{}", dir.path().join("identity.db").display());
        let postgres = tessera_test_postgres::TestPostgres::shared()
            .and_then(tessera_test_postgres::TestPostgres::create_database)
            .unwrap_or_else(|e| panic!("PostgreSQL for tests: {e}"));
        for (url, in_memory) in [(sqlite, true), (postgres, false)] {
            lookups_see_a_link_change_at_once(&url, in_memory).await;
        }
    }

    async fn lookups_see_a_link_change_at_once(url: &str, in_memory: bool) {
        let store = Arc::new(SqlStore::open(url).await.unwrap());
        let resolver = Arc::new(
            Resolver::open(store, Arc::new(Model::builtin()), ResolverConfig::default())
                .await
                .unwrap(),
        );
        let upsert = |system: &str, id: &str, d: Demographics| UpsertInput {
            key: SourceKey::new(system, id),
            demographics: d,
            source_updated_at: None,
            validate_only: false,
        };
        let mutation = Mutation::default();
        let a = resolver
            .upsert(
                upsert("ehr", "E1", person("Ottoline", "Barrow", "1950-03-04")),
                &mutation,
            )
            .await
            .unwrap()
            .master
            .unwrap();
        resolver
            .upsert(
                upsert("crm", "C9", person("Kwame", "Asante", "1988-11-30")),
                &mutation,
            )
            .await
            .unwrap();
        assert_eq!(resolver.lookups_in_memory(), in_memory, "{url}");
        let lookup = ResolverLookup::new(resolver.clone());
        let subject = Subject::Master(a.to_string());
        assert_eq!(lookup.identities(&subject).await.unwrap().records.len(), 1);
        assert_eq!(
            lookup.identities(&subject).await.unwrap().records.len(),
            1,
            "cached"
        );

        resolver
            .link_record(&SourceKey::new("crm", "C9"), a, &mutation)
            .await
            .unwrap();
        let after = lookup.identities(&subject).await.unwrap();
        let systems: Vec<&str> = after.records.iter().map(|r| r.system.as_str()).collect();
        assert_eq!(systems, ["ehr", "crm"], "the manual link is seen at once");

        let c = resolver
            .upsert(
                upsert("billing", "B4", person("Ines", "Zabala", "1971-07-07")),
                &mutation,
            )
            .await
            .unwrap()
            .master
            .unwrap();
        let loser = Subject::Master(c.to_string());
        assert_eq!(lookup.identities(&loser).await.unwrap().records.len(), 1);
        resolver.merge(a, c, &mutation).await.unwrap();
        let merged = lookup.identities(&loser).await.unwrap();
        assert_eq!(merged.master, a.to_string(), "a merged master redirects");
        assert_eq!(merged.records.len(), 3);
    }
}
