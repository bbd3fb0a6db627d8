//! `tessera resolver load`: reads one configured source's identity feed and
//! upserts every record into the identity store, matching each as it arrives
//! ([`tessera_resolver::open::upsert_feed`]).

use std::io::Write;
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use anyhow::Context;
use clap::Args;
use futures_util::StreamExt;
use tessera_matching::SourceKey;
use tessera_resolver::open::upsert_feed;
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
    let records = built
        .adapter
        .identity_feed(since)
        .map(|record| {
            let record = record?;
            Ok(UpsertInput {
                key: SourceKey::new(system.clone(), record.local_id),
                demographics: record.demographics,
                source_updated_at: record.update_time.and_then(|t| {
                    let micros = t.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_micros();
                    i64::try_from(micros).ok()
                }),
                validate_only: false,
            })
        })
        .boxed();
    let counts = upsert_feed(&resolver, records, &mutation).await?;
    let (records, masters) = resolver.counts().await?;
    Ok(serde_json::json!({
        "source": args.adapter,
        "read": counts.read(),
        "matched": counts.matched,
        "review": counts.review,
        "new_masters": counts.new_masters,
        "rejected": counts.rejected,
        "seconds": started.elapsed().as_secs_f64(),
        "store_records": records,
        "store_masters": masters,
    }))
}
