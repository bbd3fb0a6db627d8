//! The config's `identity` section as [`tessera_resolver::open`] takes it:
//! plain values, relative paths resolved against the config file.

use std::path::Path;

use tessera_matching::MatchConfig;
use tessera_resolver::open::OpenOptions;

use crate::config::IdentityConfig;

/// How to open the configured resolver (the config file at `config_path`).
pub fn options(identity: &IdentityConfig, config_path: &Path) -> OpenOptions {
    OpenOptions {
        store_url: identity.store.0.clone(),
        model: identity.model.clone(),
        matching: match_config(identity),
        source_priority: identity.source_priority.clone(),
        limits: identity.limits,
        base_dir: config_path.parent().unwrap_or(Path::new(".")).to_owned(),
    }
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
