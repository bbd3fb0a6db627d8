//! `tessera bench resolver`: the resolver over real loopback gRPC with an index
//! of synthetic records, measured with HDR histograms.
//!
//! It generates records with `tessera-synth`, links them with `link_batch`, loads
//! them into a fresh embedded store, opens the resolver (rebuilding its index from
//! the store, as a restart does), serves IdentityService on 127.0.0.1:0 and
//! drives it from a tonic client: ResolveRecord for random indexed keys, then
//! single UpsertSourceRecord calls for new records, then UpsertSourceRecord calls
//! with a record far over the record limits (8,000 email addresses, ~300 KB), each
//! of which must be refused INVALID_ARGUMENT.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use hdrhistogram::Histogram;
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use tessera_matching::{Demographics, MatchConfig, Model, SourceKey};
use tessera_proto::v1 as pb;
use tessera_proto::v1::identity_service_client::IdentityServiceClient;
use tessera_resolver::store::{IdentityStore, SqlStore};
use tessera_resolver::{IdentityGrpc, Resolver, ResolverConfig};

use tessera_telemetry::rpc::RpcLayer;
use tokio::sync::oneshot;

use crate::{Gateway, Services};

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
    /// How many oversized UpsertSourceRecord calls (8,000 emails each) to time.
    #[arg(long, default_value_t = 200)]
    oversized: usize,
    /// Random seed for the population and the key choice.
    #[arg(long, default_value_t = 7)]
    seed: u64,
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

/// Picks an index below `n` (0 when `n` is 0) from the seeded generator.
fn below(rng: &mut ChaCha8Rng, n: usize) -> usize {
    rng.random_range(0..n.max(1))
}

/// Latency quantiles and throughput of one kind of call.
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

/// Runs the benchmark and returns its report.
pub(crate) async fn run(
    args: &ResolverBenchArgs,
    gateway: &dyn Gateway,
) -> anyhow::Result<serde_json::Value> {
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
    let shutdown = Box::pin(async {
        let _ = stopped.await;
    });
    let server = tokio::spawn(gateway.serve(listener, services, RpcLayer::default(), shutdown));
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

    let (refused, refused_elapsed) = refuse_oversized(&mut client, args.oversized).await?;
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
        "oversized_upsert_refused": summary(&refused, refused_elapsed),
    }))
}

/// Sends `calls` upserts of one record with 8,000 email addresses and times their
/// refusals; any other answer fails the benchmark.
async fn refuse_oversized(
    client: &mut IdentityServiceClient<tonic::transport::Channel>,
    calls: usize,
) -> anyhow::Result<(Histogram<u64>, Duration)> {
    let request = pb::UpsertSourceRecordRequest {
        source_record: Some(pb::SourceRecord {
            key: Some(pb::SourceRecordKey {
                system: "crm".into(),
                local_id: "bench-oversized".into(),
            }),
            demographics: Some(pb::Demographics {
                given_names: vec!["Bryan".into()],
                family_name: "Harrison".into(),
                emails: (0..8000)
                    .map(|i| format!("bryan.harrison{i}@example.org"))
                    .collect(),
                ..pb::Demographics::default()
            }),
            ..pb::SourceRecord::default()
        }),
        ..pb::UpsertSourceRecordRequest::default()
    };
    let mut refused = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let t = Instant::now();
    for _ in 0..calls {
        let call = Instant::now();
        match client.upsert_source_record(request.clone()).await {
            Err(status) if status.code() == tonic::Code::InvalidArgument => {}
            Err(status) => anyhow::bail!("an oversized record got {:?}", status.code()),
            Ok(_) => anyhow::bail!("an oversized record was accepted"),
        }
        refused.record(
            u64::try_from(call.elapsed().as_micros())
                .unwrap_or(u64::MAX)
                .max(1),
        )?;
    }
    Ok((refused, t.elapsed()))
}
