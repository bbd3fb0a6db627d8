//! Opens the identity resolver the config describes: the store (creating an
//! embedded SQLite file's directory if needed), the model, the thresholds.

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::Arc;

use tessera_matching::{MatchConfig, Model};
use tessera_resolver::store::{IdentityStore, SqlStore, StoreError};
use tessera_resolver::{Resolver, ResolverConfig, ResolverError};

use crate::config::{Config, IdentityConfig};

/// Why the resolver could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum IdentitySetupError {
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
}

/// The store URL with a relative SQLite path resolved against the config file.
pub fn store_url(
    identity: &IdentityConfig,
    config_path: &Path,
) -> Result<String, IdentitySetupError> {
    let url = &identity.store.0;
    let Some(path) = url.strip_prefix("sqlite://") else {
        return Ok(url.clone());
    };
    let (file, query) = path
        .split_once('?')
        .map_or((path, None), |(f, q)| (f, Some(q)));
    let file = Config::resolve_path(config_path, Path::new(file));
    if let Some(dir) = file.parent() {
        // Readable by Tessera's user only: the store holds demographics.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(IdentitySetupError::StoreDir)?;
    }
    Ok(match query {
        Some(q) => format!("sqlite://{}?{q}", file.display()),
        None => format!("sqlite://{}", file.display()),
    })
}

/// Loads the configured model, or the built-in one.
pub fn load_model(
    identity: &IdentityConfig,
    config_path: &Path,
) -> Result<Model, IdentitySetupError> {
    let Some(model) = &identity.model else {
        return Ok(Model::builtin());
    };
    let path = Config::resolve_path(config_path, model);
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(&path).map_err(|source| IdentitySetupError::ReadModel {
        path: shown.clone(),
        source,
    })?;
    Model::from_json(&text).map_err(|e| IdentitySetupError::ParseModel {
        path: shown,
        message: e.to_string(),
    })
}

/// The matcher's settings: its defaults, with the config's thresholds.
pub fn match_config(identity: &IdentityConfig) -> MatchConfig {
    let mut config = MatchConfig::default();
    if let Some(t) = identity.match_threshold {
        config.match_threshold = t;
    }
    if let Some(t) = identity.review_threshold {
        config.review_threshold = t;
    }
    config
        .deduplicated_sources
        .extend(identity.deduplicated_sources.iter().cloned());
    config
}

/// Opens the configured identity store.
pub async fn open_store(
    identity: &IdentityConfig,
    config_path: &Path,
) -> Result<SqlStore, IdentitySetupError> {
    Ok(SqlStore::open(&store_url(identity, config_path)?).await?)
}

/// Opens the resolver over `store`: the configured model and thresholds, the
/// index rebuilt from the store.
pub async fn open_resolver(
    identity: &IdentityConfig,
    config_path: &Path,
    store: SqlStore,
) -> Result<Arc<Resolver>, IdentitySetupError> {
    let model = Arc::new(load_model(identity, config_path)?);
    let config = ResolverConfig {
        matching: match_config(identity),
        source_priority: identity.source_priority.clone(),
    };
    let store: Arc<dyn IdentityStore> = Arc::new(store);
    Ok(Arc::new(Resolver::open(store, model, config).await?))
}
