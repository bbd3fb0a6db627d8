//! What `tessera serve` does before it reports SERVING: generate the demo
//! silos if the config asks and they are absent ([`tessera_synth::write_silos`]),
//! build the sources' adapters, load an empty identity store from the sources'
//! identity feeds if the config asks and open the resolver, rebuilding its index
//! ([`tessera_resolver::open`]), and assemble the aggregator.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use futures_util::StreamExt;
use tessera_adapter_core::BuiltAdapter;
use tessera_aggregator::Aggregator;
use tessera_matching::SourceKey;
use tessera_resolver::Resolver;
use tessera_resolver::open::Feed;

use crate::config::{Config, IdentityConfig};
use crate::{adapters, identity};

/// The started services.
#[derive(Debug)]
pub struct Started {
    /// The resolver, its index loaded.
    pub resolver: Arc<Resolver>,
    /// The aggregator, when sources are configured.
    pub aggregator: Option<Aggregator>,
    /// For the quickstart: a master known in the most systems, and one of its
    /// records (the EHR's when it has one), to suggest `tessera view` commands.
    pub example: Option<(u64, SourceKey)>,
}

/// Starts the identity resolver and the configured sources.
pub async fn start(
    config: &Config,
    config_path: &Path,
    identity_config: &IdentityConfig,
) -> anyhow::Result<Started> {
    if let Some(generate) = &config.quickstart.generate_silos {
        let dir = Config::resolve_path(config_path, &generate.dir);
        if !dir.join("ehr").join("Patient.ndjson").exists() {
            tracing::info!(people = generate.people, "generating the quickstart silos");
            let started = Instant::now();
            let synth = tessera_synth::SynthConfig {
                people: generate.people,
                seed: generate.seed,
                ..tessera_synth::SynthConfig::default()
            };
            tessera_synth::write_silos(&synth, &dir)
                .await
                .context("cannot generate the quickstart silos")?;
            tracing::info!(
                seconds = started.elapsed().as_secs_f64(),
                "quickstart silos generated"
            );
        }
    }
    let built = adapters::build_sources(config, config_path).await?;
    let open = identity::options(identity_config, config_path);
    let store = open.open_store().await?;
    if identity_config.load_from_sources {
        open.load_if_empty(&store, identity_feeds(config, &built))
            .await?;
    }
    let resolver = open.open_resolver(store).await?;
    let (records, bytes) = resolver.index_stats();
    tracing::info!(records, index_bytes = bytes, "identity resolver ready");
    crate::telemetry::observe_review_queue(&resolver, std::time::Duration::from_secs(15));
    let aggregator = if config.sources.is_empty() {
        None
    } else {
        Some(adapters::aggregator(
            config,
            config_path,
            built,
            resolver.clone(),
        )?)
    };
    let example = if config.quickstart.generate_silos.is_some() {
        example_master(&resolver).await
    } else {
        None
    };
    Ok(Started {
        resolver,
        aggregator,
        example,
    })
}

/// A master with records in the most systems (the first found), by paging
/// through the links: fine at quickstart scale.
async fn example_master(resolver: &Resolver) -> Option<(u64, SourceKey)> {
    use std::collections::{BTreeMap, BTreeSet};
    use tessera_resolver::store::{LinkFilter, Page};
    let mut systems: BTreeMap<u64, (BTreeSet<String>, Option<SourceKey>)> = BTreeMap::new();
    let mut after = None;
    loop {
        let page = Page { after, limit: 1000 };
        let links = resolver
            .list_links(&LinkFilter::default(), page)
            .await
            .ok()?;
        let Some(last) = links.last() else { break };
        after = Some(last.link.record);
        for l in &links {
            let entry = systems.entry(l.link.master).or_default();
            entry.0.insert(l.key.system.clone());
            if entry.1.as_ref().is_none_or(|k| k.system != "ehr") {
                entry.1 = Some(l.key.clone());
            }
        }
    }
    systems
        .into_iter()
        .max_by_key(|(master, (s, _))| (s.len(), std::cmp::Reverse(*master)))
        .and_then(|(master, (_, key))| Some((master, key?)))
}

/// The identity feeds of the sources that have one, in config order.
fn identity_feeds<'a>(config: &Config, built: &'a [BuiltAdapter]) -> Vec<Feed<'a>> {
    config
        .sources
        .iter()
        .zip(built)
        .filter_map(|(source, adapter)| {
            let description = adapter.adapter.describe();
            description.capabilities.identity_feed.then(|| Feed {
                source: source.name.clone(),
                system: description.system.clone(),
                records: adapter
                    .adapter
                    .identity_feed(None)
                    .map(|record| {
                        record
                            .map(|r| (r.local_id, r.demographics))
                            .map_err(|e| e.into())
                    })
                    .boxed(),
            })
        })
        .collect()
}
