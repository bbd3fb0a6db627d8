//! Opening the resolver a deployment describes: the store (creating an embedded
//! SQLite file's directory if needed), the model, the thresholds; loading an
//! empty store from the sources' identity feeds in one batch
//! ([`OpenOptions::load_if_empty`]), or one feed record by record
//! ([`upsert_feed`]). It takes plain values ([`OpenOptions`], [`Feed`]);
//! reading a config file is the caller's business.

use std::collections::HashSet;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use tessera_matching::{Decision, Demographics, MatchConfig, Model, SourceKey};

use crate::resolver::{Mutation, UpsertInput};
use crate::store::{BulkLoadError, IdentityStore, SqlStore, StoreError};
use crate::{Resolver, ResolverConfig, ResolverError};

/// How to open the resolver. Relative paths are resolved against `base_dir`.
#[derive(Clone)]
pub struct OpenOptions {
    /// The identity store: `sqlite://PATH[?QUERY]` or a PostgreSQL URL. It may
    /// hold a password, so `Debug` does not show it.
    pub store_url: String,
    /// A model file written by `tessera resolver train`; the built-in model
    /// when `None`.
    pub model: Option<PathBuf>,
    /// The matcher's settings (thresholds, deduplicated sources).
    pub matching: MatchConfig,
    /// Source systems by trust, most trusted first, for golden records.
    pub source_priority: Vec<String>,
    /// How much one record may hold.
    pub limits: tessera_matching::RecordLimits,
    /// Where relative paths start (the config file's directory).
    pub base_dir: PathBuf,
}

impl std::fmt::Debug for OpenOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenOptions")
            .field("model", &self.model)
            .field("base_dir", &self.base_dir)
            .finish_non_exhaustive()
    }
}

/// Why the resolver could not be opened or loaded.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The model file could not be read.
    #[error("{path}: cannot read the model: {source}")]
    ReadModel {
        /// The model file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The model file is not a model.
    #[error("{path}: not a tessera model: {message}")]
    ParseModel {
        /// The model file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The embedded store's directory could not be created.
    #[error("cannot create the identity store directory: {0}")]
    StoreDir(std::io::Error),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The index could not be loaded.
    #[error(transparent)]
    Resolver(#[from] ResolverError),
    /// A source's identity feed failed.
    #[error("identity feed of source {source_name}")]
    Feed {
        /// The source's name.
        source_name: String,
        /// What failed.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The linked records could not be stored.
    #[error(transparent)]
    BulkLoad(#[from] BulkLoadError),
    /// The batch link task panicked or was cancelled.
    #[error("the batch link did not finish: {0}")]
    Link(#[from] tokio::task::JoinError),
    /// The feed being upserted failed.
    #[error("the identity feed failed")]
    UpsertFeed(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The store failed while upserting a feed.
    #[error("the identity store failed")]
    Upsert(#[source] ResolverError),
}

/// What [`upsert_feed`] did with the records it read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeedCounts {
    /// Linked to an existing master (MATCH).
    pub matched: u64,
    /// Sent to review (POSSIBLE_MATCH).
    pub review: u64,
    /// Given a master of their own (NO_MATCH).
    pub new_masters: u64,
    /// Refused as invalid (an unparsable date, say).
    pub rejected: u64,
}

impl FeedCounts {
    /// Every record read.
    pub fn read(&self) -> u64 {
        self.matched + self.review + self.new_masters + self.rejected
    }
}

/// Upserts every record of `records` into `resolver` as it arrives, matching
/// each one (MATCH links, POSSIBLE_MATCH opens a review item, NO_MATCH starts a
/// master). A record the resolver refuses is counted, never reported: it is
/// patient data.
pub async fn upsert_feed(
    resolver: &Resolver,
    mut records: BoxStream<'_, Result<UpsertInput, Box<dyn std::error::Error + Send + Sync>>>,
    mutation: &Mutation,
) -> Result<FeedCounts, OpenError> {
    let mut counts = FeedCounts::default();
    while let Some(input) = records.next().await {
        let input = input.map_err(OpenError::UpsertFeed)?;
        match resolver.upsert(input, mutation).await {
            Ok(outcome) => match outcome.decision {
                Decision::Match => counts.matched += 1,
                Decision::PossibleMatch => counts.review += 1,
                Decision::NoMatch => counts.new_masters += 1,
            },
            Err(ResolverError::InvalidArgument(_)) => counts.rejected += 1,
            Err(e) => return Err(OpenError::Upsert(e)),
        }
    }
    Ok(counts)
}

/// One source's identity feed: `(local_id, demographics)` records of `system`.
pub struct Feed<'a> {
    /// The source's name, for logs and errors.
    pub source: String,
    /// The system its records belong to.
    pub system: String,
    /// The records, read only when the store is empty.
    pub records:
        BoxStream<'a, Result<(String, Demographics), Box<dyn std::error::Error + Send + Sync>>>,
}

impl std::fmt::Debug for Feed<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("source", &self.source)
            .field("system", &self.system)
            .finish_non_exhaustive()
    }
}

impl OpenOptions {
    /// `path` resolved against [`Self::base_dir`].
    fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.base_dir.join(path)
        }
    }

    /// The store URL with a relative SQLite path resolved (and its directory
    /// created).
    pub fn store_url(&self) -> Result<String, OpenError> {
        let url = &self.store_url;
        let Some(path) = url.strip_prefix("sqlite://") else {
            return Ok(url.clone());
        };
        let (file, query) = path
            .split_once('?')
            .map_or((path, None), |(f, q)| (f, Some(q)));
        let file = self.resolve(Path::new(file));
        if let Some(dir) = file.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(OpenError::StoreDir)?;
        }
        Ok(match query {
            Some(q) => format!("sqlite://{}?{q}", file.display()),
            None => format!("sqlite://{}", file.display()),
        })
    }

    /// The configured model, or the built-in one.
    pub fn load_model(&self) -> Result<Model, OpenError> {
        let Some(model) = &self.model else {
            return Ok(Model::builtin());
        };
        let path = self.resolve(model);
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|source| OpenError::ReadModel {
            path: shown.clone(),
            source,
        })?;
        Model::from_json(&text).map_err(|e| OpenError::ParseModel {
            path: shown,
            message: e.to_string(),
        })
    }

    /// Opens the identity store.
    pub async fn open_store(&self) -> Result<SqlStore, OpenError> {
        Ok(SqlStore::open(&self.store_url()?).await?)
    }

    /// Opens the resolver over `store`: the model and thresholds, the index
    /// rebuilt from the store.
    pub async fn open_resolver(&self, store: SqlStore) -> Result<Arc<Resolver>, OpenError> {
        let model = Arc::new(self.load_model()?);
        let config = ResolverConfig {
            matching: self.matching.clone(),
            source_priority: self.source_priority.clone(),
            limits: self.limits,
        };
        let store: Arc<dyn IdentityStore> = Arc::new(store);
        Ok(Arc::new(Resolver::open(store, model, config).await?))
    }

    /// Loads an empty store from `feeds`: every record read, linked in one
    /// batch, stored. A store that holds records is left alone, its feeds
    /// unread.
    pub async fn load_if_empty(
        &self,
        store: &SqlStore,
        feeds: Vec<Feed<'_>>,
    ) -> Result<(), OpenError> {
        let (records, _) = store.counts().await?;
        if records > 0 {
            tracing::info!(records, "identity store already loaded");
            return Ok(());
        }
        let started = Instant::now();
        let mut all: Vec<(SourceKey, Demographics)> = Vec::new();
        for mut feed in feeds {
            let mut count = 0usize;
            while let Some(record) = feed.records.next().await {
                let (local_id, demographics) = record.map_err(|source| OpenError::Feed {
                    source_name: feed.source.clone(),
                    source,
                })?;
                all.push((SourceKey::new(feed.system.clone(), local_id), demographics));
                count += 1;
            }
            tracing::info!(source = %feed.source, records = count, "identity feed read");
        }
        // Two sources can serve one system: keep each key once.
        let mut seen = HashSet::new();
        all.retain(|(key, _)| seen.insert(key.clone()));
        // A record over the limits is left out, counted, never named: it is patient data.
        let before = all.len();
        all.retain(|(_, d)| d.limit_violations(&self.limits, "").is_empty());
        if all.len() < before {
            tracing::warn!(
                records = before - all.len(),
                "identity feed records over the record limits left out"
            );
        }
        let model = self.load_model()?;
        let matching = self.matching.clone();
        let (all, clusters) = tokio::task::spawn_blocking(move || {
            let demographics: Vec<Demographics> = all.iter().map(|(_, d)| d.clone()).collect();
            let sources: Vec<&str> = all.iter().map(|(k, _)| k.system.as_str()).collect();
            let clusters =
                tessera_matching::link_batch_sources(&demographics, &sources, &model, &matching)
                    .clusters;
            (all, clusters)
        })
        .await?;
        let masters = crate::store::bulk_load(store, &all, &clusters).await?;
        let distinct: HashSet<_> = masters.iter().collect();
        tracing::info!(
            records = all.len(),
            masters = distinct.len(),
            seconds = started.elapsed().as_secs_f64(),
            "identity store loaded from the sources"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use futures_util::stream;

    use super::*;

    fn feed(records: &[&str]) -> Feed<'static> {
        let records: Vec<_> = records
            .iter()
            .map(|id| {
                let demographics = Demographics {
                    given_names: vec![format!("Given{id}")],
                    family_name: format!("Family{id}"),
                    birth_date: "1950-03-04".to_owned(),
                    ..Demographics::default()
                };
                Ok(((*id).to_owned(), demographics))
            })
            .collect();
        Feed {
            source: "ehr-bulk".to_owned(),
            system: "ehr".to_owned(),
            records: stream::iter(records).boxed(),
        }
    }

    /// A relative SQLite store lands next to the config; an empty store is
    /// loaded from the feeds (a key two sources share kept once), and a loaded
    /// one is left alone without reading its feeds.
    #[tokio::test]
    async fn an_empty_store_is_loaded_from_the_feeds_once() {
        let dir = tempfile::tempdir().unwrap();
        let options = OpenOptions {
            store_url: "sqlite://data/identity.db".to_owned(),
            model: None,
            matching: MatchConfig::default(),
            source_priority: Vec::new(),
            limits: tessera_matching::RecordLimits::default(),
            base_dir: dir.path().to_owned(),
        };
        let store = options.open_store().await.unwrap();
        assert!(dir.path().join("data/identity.db").exists());

        options
            .load_if_empty(&store, vec![feed(&["E1", "E2"]), feed(&["E2", "E3"])])
            .await
            .unwrap();
        assert_eq!(store.counts().await.unwrap().0, 3);

        let failing = Feed {
            records: stream::iter([Err("the silo is down".into())]).boxed(),
            ..feed(&[])
        };
        options.load_if_empty(&store, vec![failing]).await.unwrap();
        let resolver = options.open_resolver(store).await.unwrap();
        assert_eq!(resolver.index_stats().0, 3);
    }

    /// A record over the limits is left out of the load; the rest are loaded.
    #[tokio::test]
    async fn a_record_over_the_limits_is_left_out_of_the_load() {
        let dir = tempfile::tempdir().unwrap();
        let options = OpenOptions {
            store_url: "sqlite://identity.db".to_owned(),
            model: None,
            matching: MatchConfig::default(),
            source_priority: Vec::new(),
            limits: tessera_matching::RecordLimits {
                phones: 2,
                ..tessera_matching::RecordLimits::default()
            },
            base_dir: dir.path().to_owned(),
        };
        let store = options.open_store().await.unwrap();
        let mut flood = feed(&["E1", "E2", "E3"]);
        let records: Vec<_> = futures_util::StreamExt::collect(flood.records).await;
        let records = records.into_iter().enumerate().map(|(i, r)| {
            r.map(|(id, mut d)| {
                if i == 1 {
                    d.phones = vec!["+1 217 555 0100".to_owned(); 3];
                }
                (id, d)
            })
        });
        flood.records = stream::iter(records).boxed();
        options.load_if_empty(&store, vec![flood]).await.unwrap();
        assert_eq!(store.counts().await.unwrap().0, 2);
        let resolver = options.open_resolver(store).await.unwrap();
        let e2 = SourceKey::new(feed(&[]).system, "E2");
        assert!(resolver.resolve(&e2).await.is_err(), "E2 left out");
    }

    /// Each record is counted by its outcome; one the resolver refuses is
    /// counted as rejected, and a failing feed stops the load.
    #[tokio::test]
    async fn a_feed_is_upserted_record_by_record_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("identity.db").display());
        let store: Arc<dyn IdentityStore> = Arc::new(SqlStore::open(&url).await.unwrap());
        let resolver = Resolver::open(store, Arc::new(Model::builtin()), ResolverConfig::default())
            .await
            .unwrap();
        let input = |id: &str, birth_date: &str| UpsertInput {
            key: SourceKey::new("crm", id),
            demographics: Demographics {
                given_names: vec![format!("Given{id}")],
                family_name: format!("Family{id}"),
                birth_date: birth_date.to_owned(),
                ..Demographics::default()
            },
            source_updated_at: None,
            validate_only: false,
        };
        let records = vec![
            Ok(input("C1", "1950-03-04")),
            Ok(input("C2", "1988-11-30")),
            Ok(input("C3", "not a date")),
        ];
        let counts = upsert_feed(
            &resolver,
            stream::iter(records).boxed(),
            &Mutation::default(),
        )
        .await
        .unwrap();
        assert_eq!(counts.new_masters, 2);
        assert_eq!(counts.rejected, 1);
        assert_eq!(counts.read(), 3);

        let failing = stream::iter([Err("the silo is down".into())]).boxed();
        let err = upsert_feed(&resolver, failing, &Mutation::default())
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "the identity feed failed");
    }

    #[tokio::test]
    async fn a_model_file_that_is_not_a_model_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("model.json"), "{}").unwrap();
        let options = OpenOptions {
            store_url: String::new(),
            model: Some(PathBuf::from("model.json")),
            matching: MatchConfig::default(),
            source_priority: Vec::new(),
            limits: tessera_matching::RecordLimits::default(),
            base_dir: dir.path().to_owned(),
        };
        let err = options.load_model().unwrap_err().to_string();
        assert!(err.contains("model.json: not a tessera model"), "{err}");
    }
}
