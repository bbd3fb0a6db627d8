//! `tessera bench view`: PatientViewService over real loopback gRPC, with fake
//! silos of set latencies, against a bare tonic server returning a response of
//! the same size — side by side in one run, on one machine.
//!
//! Phases: (1) cold views at a constant rate, every request for a master never
//! asked before, latency measured from each request's scheduled send time (no
//! coordinated omission); (2) cached views, closed loop, against (3) the bare
//! server, closed loop, with the same client; (4) cached views at a constant
//! half of (2)'s rate (or `--cached-rate`), alternating with the bare server
//! open-loop at that same rate; (5) N identical concurrent cold requests for one master,
//! counting adapter calls per key.
//!
//! By default the servers and the load generator share one runtime and every
//! CPU. With `--split-cores` the servers get a runtime pinned to half the
//! CPUs and the generator one pinned to the other half, as a generator on
//! another machine would be; the generator then paces by spinning (it has its
//! CPUs to itself) and the report adds the servers' own CPU per view.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tessera_adapter_core::BuiltAdapter;
use tessera_adapter_core::fake::{FakeAdapter, FakeConfig, FakeStats};
use tessera_aggregator::{
    Aggregator, PatientViewGrpc, PurposePolicy, Source, SourcePolicy, ViewPolicy,
};
use tessera_matching::{Demographics, Model, SourceKey};
use tessera_proto::v1::{
    self as pb,
    patient_view_service_server::{PatientViewService, PatientViewServiceServer},
};
use tessera_resolver::store::SqlStore;
use tessera_resolver::{Resolver, ResolverConfig};
use tokio::sync::oneshot;

use crate::load::{Clients, OpenLoop, closed_loop, micros, ms, open_loop, request};
use crate::placement::{Placement, cpu_between};
use tessera_telemetry::rpc::RpcLayer;

use crate::{Gateway, Services};

/// `tessera bench view`.
#[derive(Debug, Args)]
pub struct ViewBenchArgs {
    /// How many fake silos (adapters), one section each.
    #[arg(long, default_value_t = 4)]
    adapters: usize,
    /// Each adapter's latency in milliseconds, comma-separated; cycled when
    /// shorter than `--adapters`.
    #[arg(long, value_delimiter = ',', default_value = "5,10,20,40")]
    latency_ms: Vec<u64>,
    /// Cold views per second.
    #[arg(long, default_value_t = 2000)]
    rate: u64,
    /// Seconds of each timed phase.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Records per (adapter, person).
    #[arg(long, default_value_t = 2)]
    records: u32,
    /// Padding bytes per record.
    #[arg(long, default_value_t = 200)]
    record_bytes: usize,
    /// Concurrent callers in the closed-loop phases.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Identical concurrent cold requests in the coalescing phase.
    #[arg(long, default_value_t = 1000)]
    coalesce: usize,
    /// gRPC connections the client spreads calls over.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Each source's limit on calls in flight (`sources[].max_concurrency`).
    /// Default: what the cold phase needs by Little's law (rate × slowest
    /// latency) twice over, at least the policy's default of 64 — with 64, a
    /// 40 ms silo takes at most ~1,550 calls/s, and the cold phase at 2,000/s
    /// measured that queue rather than the gateway.
    #[arg(long)]
    max_concurrency: Option<usize>,
    /// Cached views per second in the open-loop cached phase. Default: half
    /// the closed-loop cached maximum measured just before.
    #[arg(long)]
    cached_rate: Option<u64>,
    /// Run the servers and the load generator on disjoint halves of this
    /// process's CPUs (the servers on the first half), each on a runtime of
    /// its own, as a load generator on another machine would; the report then
    /// adds the servers' own CPU time per view. Needs at least 2 CPUs.
    #[arg(long)]
    split_cores: bool,
    /// Also measure cached views through a second server over the same aggregator
    /// with mutual TLS, a JWT bearer token, the caller policy and an audit trail on
    /// file, alternating with the plain server (ABBA), and report secured ÷ plain.
    #[arg(long)]
    secure: bool,
}

/// Masters for the cached phases.
const WARM_MASTERS: usize = 100;
/// Stretches the open-loop cached phase is cut into, alternating between the
/// view server and the bare one; a multiple of 4 (ABBA order).
const OPEN_LOOP_STRETCHES: usize = 8;

/// A PatientViewService that returns one fixed view: the floor of what any
/// view server can do over the same transport.
struct BareView(pb::PatientView);

#[tonic::async_trait]
impl PatientViewService for BareView {
    async fn get_patient_view(
        &self,
        _request: tonic::Request<pb::GetPatientViewRequest>,
    ) -> Result<tonic::Response<pb::PatientView>, tonic::Status> {
        Ok(tonic::Response::new(self.0.clone()))
    }

    type StreamPatientViewStream =
        futures_util::stream::Empty<Result<pb::StreamPatientViewResponse, tonic::Status>>;

    async fn stream_patient_view(
        &self,
        _request: tonic::Request<pb::StreamPatientViewRequest>,
    ) -> Result<tonic::Response<Self::StreamPatientViewStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("bare server"))
    }

    async fn batch_get_patient_views(
        &self,
        _request: tonic::Request<pb::BatchGetPatientViewsRequest>,
    ) -> Result<tonic::Response<pb::BatchGetPatientViewsResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("bare server"))
    }
}

/// Runs the benchmark on runtimes of its own and returns its report.
pub(super) fn run(
    args: &ViewBenchArgs,
    gateway: Arc<dyn Gateway>,
) -> anyhow::Result<serde_json::Value> {
    let (generator, placement) = Placement::new(args.split_cores)?;
    let report = generator.block_on(measure(args, &placement, gateway));
    placement.shutdown();
    report
}

/// Persons, each with one record in every silo, bulk-loaded as masters.
pub(super) async fn seed_identities(
    store: &SqlStore,
    persons: usize,
    adapters: usize,
) -> anyhow::Result<Vec<String>> {
    let mut records = Vec::with_capacity(persons * adapters);
    let mut clusters = Vec::with_capacity(persons * adapters);
    for p in 0..persons {
        for a in 0..adapters {
            let demographics = Demographics {
                given_names: vec![format!("P{p}")],
                family_name: format!("F{p}"),
                ..Demographics::default()
            };
            records.push((
                SourceKey::new(format!("silo{a}"), format!("L{a}-{p}")),
                demographics,
            ));
            clusters.push(u32::try_from(p)?);
        }
    }
    let masters = tessera_resolver::store::bulk_load(store, &records, &clusters).await?;
    Ok(masters
        .chunks(adapters)
        .map(|m| format!("masters/{}", m[0]))
        .collect())
}

/// Serves `service` on 127.0.0.1:0 until `stop` fires.
async fn serve_bare(
    view: pb::PatientView,
) -> anyhow::Result<(std::net::SocketAddr, oneshot::Sender<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(PatientViewServiceServer::new(BareView(view)))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            }),
    );
    Ok((addr, stop))
}

/// The view server the benchmarks drive: PatientViewService over fake silos
/// (one section each, at the given latencies) and an embedded identity store
/// of `persons` masters, each with a record in every silo, on 127.0.0.1:0.
pub(super) struct ViewServer {
    pub(super) addr: std::net::SocketAddr,
    pub(super) stop: oneshot::Sender<()>,
    pub(super) server: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub(super) aggregator: Aggregator,
    pub(super) masters: Vec<String>,
    pub(super) stats: Vec<Arc<FakeStats>>,
    pub(super) _dir: tempfile::TempDir,
}

impl ViewServer {
    pub(super) async fn start(
        latencies: &[u64],
        records: u32,
        record_bytes: usize,
        persons: usize,
        policy: &SourcePolicy,
        rpc: RpcLayer,
        gateway: &dyn Gateway,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("identity.db").display());
        let store = SqlStore::open(&url).await?;
        let masters = seed_identities(&store, persons, latencies.len()).await?;
        let resolver = Arc::new(
            Resolver::open(
                Arc::new(store),
                Arc::new(Model::builtin()),
                ResolverConfig::default(),
            )
            .await?,
        );

        let mut stats: Vec<Arc<FakeStats>> = Vec::new();
        let mut sources = Vec::new();
        for (i, latency) in latencies.iter().enumerate() {
            let section = format!("section{i}");
            let fake = Arc::new(FakeAdapter::new(FakeConfig {
                records,
                record_bytes,
                ..FakeConfig::new(
                    &format!("silo{i}"),
                    &[section.as_str()],
                    Duration::from_millis(*latency),
                )
            })?);
            stats.push(fake.stats());
            let built = BuiltAdapter {
                health: fake.clone(),
                adapter: fake,
            };
            sources.push(Source::new(format!("silo{i}"), built, policy.clone()));
        }
        let aggregator = Aggregator::new(
            sources,
            gateway.lookup(resolver),
            Arc::new(PurposePolicy::default()),
            ViewPolicy::default(),
        )?;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let services = Services {
            identity: None,
            patient_view: Some(PatientViewGrpc::new(aggregator.clone())),
        };
        let shutdown = Box::pin(async {
            let _ = stopped.await;
        });
        let server = tokio::spawn(gateway.serve(listener, services, rpc, shutdown));
        Ok(Self {
            addr,
            stop,
            server,
            aggregator,
            masters,
            stats,
            _dir: dir,
        })
    }
}

/// The benchmark's phases, the servers placed by `placement`.
async fn measure(
    args: &ViewBenchArgs,
    placement: &Placement,
    gateway: Arc<dyn Gateway>,
) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(
        args.adapters > 0 && !args.latency_ms.is_empty(),
        "need adapters and latencies"
    );
    let cold_total = usize::try_from(args.rate * args.duration)?;
    let persons = cold_total + WARM_MASTERS + 1;

    let latencies: Vec<u64> = (0..args.adapters)
        .map(|i| args.latency_ms[i % args.latency_ms.len()])
        .collect();
    let slowest = *latencies.iter().max().unwrap_or(&0);
    let defaults = SourcePolicy::default();
    let max_concurrency = args.max_concurrency.unwrap_or_else(|| {
        let in_flight = args.rate.saturating_mul(slowest).div_ceil(1000);
        usize::try_from(in_flight.saturating_mul(2))
            .unwrap_or(usize::MAX)
            .max(defaults.max_concurrency)
    });
    let policy = SourcePolicy {
        max_concurrency,
        ..defaults
    };
    let ViewServer {
        addr,
        stop,
        server,
        aggregator,
        masters,
        stats,
        _dir,
    } = {
        let (latencies, records, record_bytes) =
            (latencies.clone(), args.records, args.record_bytes);
        let gateway = gateway.clone();
        placement
            .spawn(async move {
                ViewServer::start(
                    &latencies,
                    records,
                    record_bytes,
                    persons,
                    &policy,
                    RpcLayer::default(),
                    &*gateway,
                )
                .await
            })
            .await??
    };
    let clients = Clients::connect(addr, args.connections).await?;

    // Cached masters: the tail of the population.
    let warm: Arc<Vec<String>> = Arc::new(masters[cold_total..cold_total + WARM_MASTERS].to_vec());
    let mut warming = tokio::task::JoinSet::new();
    for master in warm.iter() {
        let mut client = clients.get();
        let request = request(master, None);
        warming.spawn(async move { client.get_patient_view(request).await });
    }
    let mut sample = None;
    while let Some(view) = warming.join_next().await {
        sample = Some(view??.into_inner());
    }
    let sample = sample.context("no warm-up view")?;
    let response_bytes = prost::Message::encoded_len(&sample);

    // (1) Cold views at a constant rate.
    let cpu_before = crate::cpu_seconds()?;
    let server_cpu_before = placement.server_cpu()?;
    let pacing = placement.pacing();
    let cold = open_loop(
        &clients,
        pacing,
        args.rate,
        cold_total,
        Arc::new(masters[..cold_total].to_vec()),
        None,
    )
    .await?;
    // Client, server and fake silos together: what one cold view costs this
    // machine, steadier than any latency figure on a shared VM.
    let cold_cpu = crate::cpu_seconds()? - cpu_before;
    let cold_server_cpu = cpu_between(server_cpu_before.as_ref(), placement.server_cpu()?.as_ref());
    // The slowest source's own p99, timed around the adapter call: what the
    // view cannot beat. tokio's timer wheel rounds the fakes' sleeps up to the
    // next millisecond, so this sits a little above the nominal latency.
    let slowest_measured_p99 = aggregator
        .sources()
        .iter()
        .filter_map(|s| s.latency_quantile(0.99))
        .max()
        .unwrap_or_default();

    // (2) and (3): cached vs bare, closed loop, same client shape.
    let phase = Duration::from_secs(args.duration.clamp(1, 5));
    let (cached_rps, cached_errors) =
        closed_loop(&clients, args.concurrency, phase, warm.clone()).await?;
    let (bare_addr, bare_stop) = placement.spawn(serve_bare(sample.clone())).await??;
    let bare_clients = Clients::connect(bare_addr, args.connections).await?;
    let (bare_rps, _) = closed_loop(&bare_clients, args.concurrency, phase, warm.clone()).await?;

    // (4) Cached views at half the maximum rate, and the bare server at the
    // same rate: the floor of open-loop latency on this machine — the same
    // client, transport and cores with no view work at all. The two alternate
    // in short stretches (cached, bare, bare, cached, ...), so that whatever
    // the machine or the allocator is doing meanwhile (the closed loops just
    // before leave work behind) falls on both alike.
    let half = args
        .cached_rate
        .unwrap_or(((cached_rps / 2.0) as u64).max(1));
    // Each side gets `duration` seconds in all.
    let stretch = (args.duration * 2000).div_ceil(OPEN_LOOP_STRETCHES as u64);
    let stretch_total = usize::try_from(half * stretch / 1000)?.max(1);
    // Settle first, unrecorded: the first second after the closed loops ran
    // slow for whichever server came first.
    let settle = usize::try_from(half / 2)?.max(1);
    open_loop(&bare_clients, pacing, half, settle, warm.clone(), None).await?;
    open_loop(&clients, pacing, half, settle, warm.clone(), None).await?;
    let (mut cached, mut bare) = (OpenLoop::new()?, OpenLoop::new()?);
    let (mut cached_cpu, mut bare_cpu) = (0.0, 0.0);
    let (mut cached_server_cpu, mut bare_server_cpu) = (Some(0.0), Some(0.0));
    for i in 0..OPEN_LOOP_STRETCHES {
        let cached_turn = matches!(i % 4, 0 | 3);
        let (target, totals, cpu, server_cpu) = if cached_turn {
            (
                &clients,
                &mut cached,
                &mut cached_cpu,
                &mut cached_server_cpu,
            )
        } else {
            (
                &bare_clients,
                &mut bare,
                &mut bare_cpu,
                &mut bare_server_cpu,
            )
        };
        let cpu_before = crate::cpu_seconds()?;
        let server_cpu_before = placement.server_cpu()?;
        let run = open_loop(target, pacing, half, stretch_total, warm.clone(), None).await?;
        *cpu += crate::cpu_seconds()? - cpu_before;
        let spent = cpu_between(server_cpu_before.as_ref(), placement.server_cpu()?.as_ref());
        *server_cpu = server_cpu.zip(spent).map(|(sum, spent)| sum + spent);
        totals.absorb(&run)?;
    }
    let _ = bare_stop.send(());

    // (5) Identical concurrent cold requests for one master.
    let fresh = masters[persons - 1].clone();
    let pairs_before: u64 = stats.iter().map(|s| s.pairs()).sum();
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..args.coalesce {
        let mut client = clients.get();
        let request = request(&fresh, None);
        calls.spawn(async move { client.get_patient_view(request).await.is_ok() });
    }
    let mut coalesce_ok = 0;
    while let Some(ok) = calls.join_next().await {
        coalesce_ok += usize::from(ok?);
    }
    let pairs_after: u64 = stats.iter().map(|s| s.pairs()).sum();
    let keys = args.adapters as f64;
    let coalescing_ratio = (pairs_after - pairs_before) as f64 / keys;

    let hedges: u64 = aggregator
        .sources()
        .iter()
        .map(|s| s.stats().hedges())
        .sum();
    let retries: u64 = aggregator
        .sources()
        .iter()
        .map(|s| s.stats().retries())
        .sum();
    let cache_bytes = aggregator.cache_bytes().await;
    // (6) With --secure: the cached views again, plain and secured, alternating.
    let secured = if args.secure {
        Some(measure_secure(args, placement, &gateway, &aggregator, &clients, &warm).await?)
    } else {
        None
    };
    let _ = stop.send(());
    let _ = server.await;

    // Server CPU per view, when the servers run on CPUs of their own.
    let per_view = |cpu: Option<f64>, run: &OpenLoop| {
        cpu.map(|cpu| cpu * 1e6 / (run.completed + run.errors).max(1) as f64)
    };
    let c = &cold.latency;
    let w = &cached.latency;
    let b = &bare.latency;
    let mut report = serde_json::json!({
        "adapters": args.adapters,
        "latency_ms": latencies,
        "rate": args.rate,
        "duration_s": args.duration,
        "response_bytes": response_bytes,
        "max_concurrency": max_concurrency,
        "achieved_rate": cold.completed as f64 / cold.elapsed.as_secs_f64(),
        "errors": cold.errors,
        "partial_views": cold.partial,
        "cpu_us_per_cold_view": cold_cpu * 1e6 / (cold.completed + cold.errors).max(1) as f64,
        "p50_ms": ms(c.value_at_quantile(0.50)),
        "p99_ms": ms(c.value_at_quantile(0.99)),
        "p999_ms": ms(c.value_at_quantile(0.999)),
        "max_ms": ms(c.max()),
        "overhead_p99_ms": ms(c.value_at_quantile(0.99)) - ms(micros(slowest_measured_p99)),
        "slowest_adapter_p99_ms": ms(micros(slowest_measured_p99)),
        "overhead_p99_over_nominal_ms": ms(c.value_at_quantile(0.99)) - slowest as f64,
        "cached_rps": cached_rps,
        "cached_errors": cached_errors,
        "bare_rps": bare_rps,
        "cached_ratio": cached_rps / bare_rps.max(f64::MIN_POSITIVE),
        "cached_half_rate": half,
        "cached_achieved_rate": cached.completed as f64 / cached.elapsed.as_secs_f64(),
        "cached_p50_ms": ms(w.value_at_quantile(0.50)),
        "cached_p99_ms": ms(w.value_at_quantile(0.99)),
        "cached_p999_ms": ms(w.value_at_quantile(0.999)),
        "cached_send_lag_p99_ms": ms(cached.send_lag.value_at_quantile(0.99)),
        "cpu_us_per_cached_view": cached_cpu * 1e6 / (cached.completed + cached.errors).max(1) as f64,
        "bare_open_achieved_rate": bare.completed as f64 / bare.elapsed.as_secs_f64(),
        "bare_open_p50_ms": ms(b.value_at_quantile(0.50)),
        "bare_open_p99_ms": ms(b.value_at_quantile(0.99)),
        "bare_open_send_lag_p99_ms": ms(bare.send_lag.value_at_quantile(0.99)),
        "cpu_us_per_bare_view": bare_cpu * 1e6 / (bare.completed + bare.errors).max(1) as f64,
        "coalesce_requests": args.coalesce,
        "coalesce_ok": coalesce_ok,
        "coalescing_ratio": coalescing_ratio,
        "hedges_sent": hedges,
        "retries_sent": retries,
        "cache_bytes": cache_bytes,
    });
    // Past what one `json!` can expand.
    if let Some(fields) = report.as_object_mut() {
        fields.insert("split_cores".into(), args.split_cores.into());
        for (name, cpu, run) in [
            ("server_cpu_us_per_cold_view", cold_server_cpu, &cold),
            ("server_cpu_us_per_cached_view", cached_server_cpu, &cached),
            ("server_cpu_us_per_bare_view", bare_server_cpu, &bare),
        ] {
            fields.insert(name.into(), per_view(cpu, run).into());
        }
        if args.split_cores {
            // The process's CPU time then includes the generator spinning
            // between sends: not a cost of any view.
            for name in [
                "cpu_us_per_cold_view",
                "cpu_us_per_cached_view",
                "cpu_us_per_bare_view",
            ] {
                fields.insert(name.into(), serde_json::Value::Null);
            }
        }
    }
    if let (Some(secured), Some(fields)) = (secured, report.as_object_mut()) {
        fields.insert("secure".into(), secured);
    }
    Ok(report)
}

/// The cached closed loop against the plain server and a secured one over the same
/// aggregator, in ABBA order, and their ratio.
async fn measure_secure(
    args: &ViewBenchArgs,
    placement: &Placement,
    gateway: &Arc<dyn Gateway>,
    aggregator: &Aggregator,
    plain: &Clients,
    warm: &Arc<Vec<String>>,
) -> anyhow::Result<serde_json::Value> {
    let mut servers = Vec::new();
    let mut clients = Vec::new();
    for audit in [true, false] {
        let server = placement
            .spawn(crate::secure::start(
                aggregator.clone(),
                gateway.clone(),
                RpcLayer::default(),
                audit,
            ))
            .await??;
        let target = server.addr.to_string();
        let secured = Clients::connect_with(&target, &server.options, args.connections).await?;
        // Warm the TLS sessions and the token cache, unrecorded.
        closed_loop(
            &secured,
            args.concurrency,
            Duration::from_secs(1),
            warm.clone(),
        )
        .await?;
        servers.push(server);
        clients.push(secured);
    }
    let phase = Duration::from_secs(args.duration.clamp(1, 5));
    // plain, no audit, full, full, no audit, plain: each side twice, in mirrored order.
    let mut rps = [0.0f64; 3];
    let mut errors = [0u64; 3];
    for side in [0usize, 2, 1, 1, 2, 0] {
        let target = match side {
            0 => plain,
            full_or_bare => &clients[full_or_bare - 1],
        };
        let (r, e) = closed_loop(target, args.concurrency, phase, warm.clone()).await?;
        rps[side] += r / 2.0;
        errors[side] += e;
    }
    let records = crate::secure::trail_records(&servers[0])?;
    for server in servers {
        let _ = server.stop.send(());
    }
    let ratio = |r: f64| r / rps[0].max(f64::MIN_POSITIVE);
    Ok(serde_json::json!({
        "plain_cached_rps": rps[0],
        "secure_cached_rps": rps[1],
        "secure_errors": errors[1],
        "secure_ratio": ratio(rps[1]),
        "secure_without_audit_cached_rps": rps[2],
        "secure_without_audit_errors": errors[2],
        "secure_without_audit_ratio": ratio(rps[2]),
        "audit_records": records,
        "what": "mTLS + JWT (ES256, JWKS) + caller policy + JSONL audit trail (fsync), and the \
                 same without the trail, vs plaintext with the anonymous loopback grant",
    }))
}
