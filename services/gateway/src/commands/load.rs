//! `tessera resolver load`: reads one configured source's identity feed and
//! upserts every record into the identity store, matching each as it arrives
//! (MATCH links, POSSIBLE_MATCH opens a review item, NO_MATCH starts a master).

use std::io::Write;
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use anyhow::Context;
use clap::Args;
use futures_util::StreamExt;
use tessera_matching::{Decision, SourceKey};
use tessera_resolver::ResolverError;
use tessera_resolver::resolver::{Mutation, UpsertInput};

use crate::config::Config;
use crate::{adapters, identity};

/// `tessera resolver load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The configuration file naming the source and the identity store.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The source (`sources[].name`) whose identity feed to read.
    #[arg(long, value_name = "NAME")]
    adapter: String,
    /// Only records changed at or after this time (RFC 3339), when the adapter's
    /// feed is incremental.
    #[arg(long, value_name = "TIME")]
    since: Option<humantime::Timestamp>,
}

/// Runs `tessera resolver load` and prints a JSON summary.
pub fn run(args: &LoadArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let summary = runtime.block_on(load(args))?;
    writeln!(std::io::stdout().lock(), "{summary}")?;
    Ok(())
}

async fn load(args: &LoadArgs) -> anyhow::Result<serde_json::Value> {
    let config = Config::load(&args.config)?;
    let identity_config = config
        .identity
        .as_ref()
        .context("the config has no identity section")?;
    let index = config
        .sources
        .iter()
        .position(|s| s.name == args.adapter)
        .with_context(|| {
            let known: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
            format!(
                "no source named {:?}; sources: {}",
                args.adapter,
                known.join(", ")
            )
        })?;
    let mut only = config.clone();
    only.sources = vec![config.sources[index].clone()];
    let built = adapters::build_sources(&only, &args.config)
        .await?
        .pop()
        .context("the source was not built")?;
    let description = built.adapter.describe();
    anyhow::ensure!(
        description.capabilities.identity_feed,
        "source {:?} has no identity feed",
        args.adapter
    );
    let system = description.system.clone();

    let open = identity::options(identity_config, &args.config);
    let resolver = open.open_resolver(open.open_store().await?).await?;
    let mutation = Mutation {
        actor: format!("tessera resolver load --adapter {}", args.adapter),
        request_id: String::new(),
    };

    let started = Instant::now();
    let since: Option<SystemTime> = args.since.map(Into::into);
    let mut feed = built.adapter.identity_feed(since);
    let (mut matched, mut review, mut new, mut rejected) = (0u64, 0u64, 0u64, 0u64);
    while let Some(record) = feed.next().await {
        let record = record.context("the identity feed failed")?;
        let input = UpsertInput {
            key: SourceKey::new(system.clone(), record.local_id),
            demographics: record.demographics,
            source_updated_at: record.update_time.and_then(|t| {
                let micros = t.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_micros();
                i64::try_from(micros).ok()
            }),
            validate_only: false,
        };
        match resolver.upsert(input, &mutation).await {
            Ok(outcome) => match outcome.decision {
                Decision::Match => matched += 1,
                Decision::PossibleMatch => review += 1,
                Decision::NoMatch => new += 1,
            },
            // A record the resolver refuses (an unparsable date, say) is
            // counted, never printed: it is patient data.
            Err(ResolverError::InvalidArgument(_)) => rejected += 1,
            Err(e) => return Err(e).context("the identity store failed"),
        }
    }
    let (records, masters) = resolver.counts().await?;
    Ok(serde_json::json!({
        "source": args.adapter,
        "read": matched + review + new + rejected,
        "matched": matched,
        "review": review,
        "new_masters": new,
        "rejected": rejected,
        "seconds": started.elapsed().as_secs_f64(),
        "store_records": records,
        "store_masters": masters,
    }))
}
