//! `tessera bench resolver`: the resolver over real loopback gRPC with an index
//! of synthetic records, measured with HDR histograms.
//!
//! It generates records with `tessera-synth`, links them with `link_batch`, loads
//! them into a fresh embedded store, opens the resolver (rebuilding its index from
//! the store, as a restart does), serves IdentityService on 127.0.0.1:0 and
//! drives it from a tonic client: ResolveRecord for random indexed keys, then
//! single UpsertSourceRecord calls for new records. It prints one JSON object.

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use hdrhistogram::Histogram;
use tessera_matching::{Demographics, MatchConfig, Model, SourceKey};
use tessera_proto::v1 as pb;
use tessera_proto::v1::identity_service_client::IdentityServiceClient;
use tessera_resolver::store::{IdentityStore, SqlStore};
use tessera_resolver::{IdentityGrpc, Resolver, ResolverConfig};
use tokio::sync::oneshot;

use crate::server::{self, ServeOptions, Services};

mod load;
mod placement;
mod telemetry;
mod view;

pub use telemetry::TelemetryBenchArgs;
pub use view::ViewBenchArgs;

/// Benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// IdentityService latency over loopback gRPC with a large index.
    Resolver(ResolverBenchArgs),
    /// PatientViewService over loopback gRPC with fake silos, against a bare
    /// tonic server: cold and cached latency, throughput, coalescing.
    View(ViewBenchArgs),
    /// What tracing costs: cached-view throughput with tracing off, at 1 % and
    /// at 100 % sampling, in one run.
    Telemetry(TelemetryBenchArgs),
}

/// `tessera bench resolver`.
#[derive(Debug, Args)]
pub struct ResolverBenchArgs {
    /// How many synthetic records to index.
    #[arg(long, default_value_t = 1_000_000)]
    records: usize,
    /// How many ResolveRecord calls to time.
    #[arg(long, default_value_t = 20_000)]
    lookups: usize,
    /// How many UpsertSourceRecord calls to time.
    #[arg(long, default_value_t = 2_000)]
    upserts: usize,
    /// Random seed for the population and the key choice.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

/// Runs a benchmark.
pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    };
    let report = match command {
        BenchCommand::Resolver(args) => runtime()?.block_on(resolver(&args))?,
        BenchCommand::View(args) => view::run(&args)?,
        BenchCommand::Telemetry(args) => runtime()?.block_on(telemetry::run(&args))?,
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{report}")?;
    Ok(())
}

/// Picks an index below `n` (0 when `n` is 0) from the seeded generator.
fn below(rng: &mut ChaCha8Rng, n: usize) -> usize {
    rng.random_range(0..n.max(1))
}

fn summary(h: &Histogram<u64>, elapsed: Duration) -> serde_json::Value {
    let ms = |v: u64| v as f64 / 1000.0;
    serde_json::json!({
        "calls": h.len(),
        "p50_ms": ms(h.value_at_quantile(0.50)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "p999_ms": ms(h.value_at_quantile(0.999)),
        "max_ms": ms(h.max()),
        "calls_per_second": h.len() as f64 / elapsed.as_secs_f64(),
    })
}

/// Synthetic records, parsed by the same CSV reader `link-batch` uses.
fn population(records: usize, seed: u64) -> anyhow::Result<Vec<(SourceKey, Demographics)>> {
    // People appear in about 2.7 silos on average; ask for enough of them.
    let config = tessera_synth::SynthConfig {
        people: records * 10 / 25 + 10,
        seed,
        ..tessera_synth::SynthConfig::default()
    };
    let mut csv = Vec::new();
    tessera_synth::write_csv(&config, &mut csv, std::io::sink())?;
    let mut all = tessera_matching::read_records_csv(csv.as_slice())?;
    all.truncate(records);
    Ok(all)
}

async fn resolver(args: &ResolverBenchArgs) -> anyhow::Result<serde_json::Value> {
    let started = Instant::now();
    let all = population(args.records + args.upserts, args.seed)?;
    let (indexed, fresh) = all.split_at(all.len().saturating_sub(args.upserts));
    let generated = started.elapsed();

    let model = Model::builtin();
    let demographics: Vec<Demographics> = indexed.iter().map(|(_, d)| d.clone()).collect();
    let t = Instant::now();
    let clusters = tessera_matching::link_batch(&demographics, &model, &MatchConfig::default());
    let link_seconds = t.elapsed().as_secs_f64();

    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("identity.db").display());
    let store = SqlStore::open(&url).await?;
    let t = Instant::now();
    tessera_resolver::store::bulk_load(&store, indexed, &clusters).await?;
    let store_load_seconds = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let store: Arc<dyn IdentityStore> = Arc::new(store);
    let resolver =
        Arc::new(Resolver::open(store, Arc::new(model), ResolverConfig::default()).await?);
    let index_load_seconds = t.elapsed().as_secs_f64();
    let (index_records, index_bytes) = resolver.index_stats();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let services = Services {
        identity: Some(IdentityGrpc::new(Arc::clone(&resolver))),
        patient_view: None,
    };
    let options = ServeOptions {
        grace_period: Duration::from_secs(5),
        rpc: crate::telemetry::rpc::RpcLayer::default(),
        tls: None,
        reflection: false,
        guard: None,
    };
    let shutdown = async {
        let _ = stopped.await;
    };
    let server = tokio::spawn(server::serve(
        listener,
        services,
        options,
        async { Ok(()) },
        shutdown,
        || {},
    ));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await
        .context("cannot connect to the in-process server")?;
    let mut client = IdentityServiceClient::new(channel);

    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let resolve = |key: &SourceKey| pb::ResolveRecordRequest {
        source_record: Some(pb::SourceRecordKey {
            system: key.system.clone(),
            local_id: key.local_id.clone(),
        }),
    };
    for _ in 0..500 {
        client
            .resolve_record(resolve(&indexed[below(&mut rng, indexed.len())].0))
            .await?;
    }
    let mut lookups = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let t = Instant::now();
    for _ in 0..args.lookups {
        let key = &indexed[below(&mut rng, indexed.len())].0;
        let call = Instant::now();
        client.resolve_record(resolve(key)).await?;
        lookups.record(
            u64::try_from(call.elapsed().as_micros())
                .unwrap_or(u64::MAX)
                .max(1),
        )?;
    }
    let lookup_elapsed = t.elapsed();

    let mut upserts = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let t = Instant::now();
    for (i, (key, demographics)) in fresh.iter().enumerate() {
        let request = pb::UpsertSourceRecordRequest {
            source_record: Some(pb::SourceRecord {
                key: Some(pb::SourceRecordKey {
                    system: key.system.clone(),
                    local_id: format!("bench-{i}-{}", key.local_id),
                }),
                demographics: Some(tessera_resolver::grpc::demographics_to(demographics)),
                ..pb::SourceRecord::default()
            }),
            request_id: format!("bench-{}-{i}", args.seed),
            validate_only: false,
        };
        let call = Instant::now();
        client.upsert_source_record(request).await?;
        upserts.record(
            u64::try_from(call.elapsed().as_micros())
                .unwrap_or(u64::MAX)
                .max(1),
        )?;
    }
    let upsert_elapsed = t.elapsed();
    let _ = stop.send(());
    let _ = server.await;

    Ok(serde_json::json!({
        "records": index_records,
        "generate_seconds": generated.as_secs_f64(),
        "link_batch_seconds": link_seconds,
        "store_load_seconds": store_load_seconds,
        "index_load_seconds": index_load_seconds,
        "index_bytes_per_record": index_bytes as f64 / index_records.max(1) as f64,
        "resolve_record": summary(&lookups, lookup_elapsed),
        "upsert_source_record": summary(&upserts, upsert_elapsed),
    }))
}

/// CPU time (user and system) this process has used, in seconds.
pub(super) fn cpu_seconds() -> anyhow::Result<f64> {
    cpu_seconds_in("/proc/self/stat")
}

/// CPU time (user and system) of each of these threads of this process that
/// is still running, in seconds.
pub(super) fn thread_cpu_seconds(
    threads: &[nix::unistd::Pid],
) -> anyhow::Result<std::collections::HashMap<nix::unistd::Pid, f64>> {
    let mut seconds = std::collections::HashMap::new();
    for &tid in threads {
        let path = format!("/proc/self/task/{tid}/stat");
        if std::path::Path::new(&path).exists() {
            seconds.insert(tid, cpu_seconds_in(&path)?);
        }
    }
    Ok(seconds)
}

/// The CPU time in a `/proc` `stat` file, in seconds.
fn cpu_seconds_in(path: &str) -> anyhow::Result<f64> {
    // Linux's clock ticks for these fields: USER_HZ, 100 on every architecture.
    const TICKS_PER_SECOND: f64 = 100.0;
    let stat = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {path} for the CPU time"))?;
    // After the command name (in parentheses), fields 3 onwards: utime is 14,
    // stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |index: usize| -> anyhow::Result<f64> {
        let value = fields
            .get(index)
            .with_context(|| format!("{path} has too few fields"))?;
        Ok(value
            .parse::<u64>()
            .with_context(|| format!("{path} is not numeric"))? as f64)
    };
    Ok((ticks(11)? + ticks(12)?) / TICKS_PER_SECOND)
}
