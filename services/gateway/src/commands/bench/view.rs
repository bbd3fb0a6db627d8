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

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use hdrhistogram::Histogram;
use tessera_adapter_core::BuiltAdapter;
use tessera_adapter_core::fake::{FakeAdapter, FakeConfig, FakeStats};
use tessera_aggregator::{
    Aggregator, PatientViewGrpc, PurposePolicy, Source, SourcePolicy, ViewPolicy,
};
use tessera_matching::{Demographics, Model, SourceKey};
use tessera_proto::v1::{
    self as pb,
    patient_view_service_client::PatientViewServiceClient,
    patient_view_service_server::{PatientViewService, PatientViewServiceServer},
};
use tessera_resolver::store::SqlStore;
use tessera_resolver::{Resolver, ResolverConfig};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::adapters::ResolverLookup;
use crate::server::{self, ServeOptions, Services};

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
}

const DEADLINE: Duration = Duration::from_secs(2);
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

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

pub(super) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

pub(super) fn ms(v: u64) -> f64 {
    v as f64 / 1000.0
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

pub(super) fn request(
    master: &str,
    max_staleness: Option<Duration>,
) -> tonic::Request<pb::GetPatientViewRequest> {
    let mut request = tonic::Request::new(pb::GetPatientViewRequest {
        subject: Some(pb::PatientSubject {
            subject: Some(pb::patient_subject::Subject::Master(master.to_owned())),
        }),
        purpose: pb::PurposeOfUse::Treatment.into(),
        max_staleness: max_staleness.and_then(|d| prost_types::Duration::try_from(d).ok()),
        ..pb::GetPatientViewRequest::default()
    });
    request.set_timeout(DEADLINE);
    request
}

/// Clients over several connections, handed out round-robin.
#[derive(Clone)]
pub(super) struct Clients {
    clients: Arc<Vec<PatientViewServiceClient<Channel>>>,
    next: Arc<AtomicU64>,
}

impl Clients {
    pub(super) async fn connect(
        addr: std::net::SocketAddr,
        connections: usize,
    ) -> anyhow::Result<Self> {
        let mut clients = Vec::new();
        for _ in 0..connections.max(1) {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
                .tcp_nodelay(true)
                .connect()
                .await
                .context("cannot connect to the in-process server")?;
            clients.push(PatientViewServiceClient::new(channel));
        }
        Ok(Self {
            clients: Arc::new(clients),
            next: Arc::default(),
        })
    }

    pub(super) fn get(&self) -> PatientViewServiceClient<Channel> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) as usize % self.clients.len();
        self.clients[i].clone()
    }
}

/// Results of an open-loop phase.
struct OpenLoop {
    latency: Histogram<u64>,
    completed: u64,
    errors: u64,
    partial: u64,
    elapsed: Duration,
    /// From each request's scheduled time to its handing to the runtime: how
    /// well the generator kept its schedule.
    send_lag: Histogram<u64>,
}

impl OpenLoop {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            latency: histogram()?,
            completed: 0,
            errors: 0,
            partial: 0,
            elapsed: Duration::ZERO,
            send_lag: histogram()?,
        })
    }

    /// Adds another run's counts and times to these.
    fn absorb(&mut self, other: &OpenLoop) -> anyhow::Result<()> {
        self.latency.add(&other.latency)?;
        self.send_lag.add(&other.send_lag)?;
        self.completed += other.completed;
        self.errors += other.errors;
        self.partial += other.partial;
        self.elapsed += other.elapsed;
        Ok(())
    }
}

/// Sends `total` requests at `rate` per second, each at its scheduled time
/// whatever the previous ones did, timing each from that scheduled time.
/// Request `i` asks for `masters[i % masters.len()]`.
///
/// The schedule is kept by an OS thread sleeping on the kernel's timer, not by
/// a task on tokio's. tokio's timer fires on whole-millisecond ticks, and only
/// when a worker gets round to it: requests left about 1 ms after their time
/// (2 ms at p99), and that delay was counted as the server's latency. The
/// thread hands each call to the runtime as a task, so the calls themselves
/// run where they did before.
async fn open_loop(
    clients: &Clients,
    rate: u64,
    total: usize,
    masters: Arc<Vec<String>>,
    max_staleness: Option<Duration>,
) -> anyhow::Result<OpenLoop> {
    anyhow::ensure!(total == 0 || !masters.is_empty(), "no masters to ask for");
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let runtime = tokio::runtime::Handle::current();
    let clients = clients.clone();
    let start = std::time::Instant::now();
    let mut calls = tokio::task::spawn_blocking(move || {
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..total {
            let scheduled = start + interval.mul_f64(i as f64);
            let now = std::time::Instant::now();
            if scheduled > now {
                std::thread::sleep(scheduled - now);
            }
            let mut client = clients.get();
            let request = request(&masters[i % masters.len()], max_staleness);
            let send_lag = scheduled.elapsed();
            calls.spawn_on(
                async move {
                    let result = client.get_patient_view(request).await;
                    let latency = scheduled.elapsed();
                    let partial = result
                        .as_ref()
                        .is_ok_and(|v| !v.get_ref().unreachable.is_empty());
                    (result.is_ok(), partial, latency, send_lag)
                },
                &runtime,
            );
        }
        calls
    })
    .await?;
    let mut out = OpenLoop::new()?;
    while let Some(joined) = calls.join_next().await {
        let (ok, partial, latency, send_lag) = joined?;
        out.send_lag.record(micros(send_lag))?;
        out.latency.record(micros(latency))?;
        out.completed += u64::from(ok);
        out.errors += u64::from(!ok);
        out.partial += u64::from(partial);
    }
    out.elapsed = start.elapsed();
    Ok(out)
}

/// Calls per second with `concurrency` callers in a closed loop for `duration`.
pub(super) async fn closed_loop(
    clients: &Clients,
    concurrency: usize,
    duration: Duration,
    masters: Arc<Vec<String>>,
) -> anyhow::Result<(f64, u64)> {
    let stop = Instant::now() + duration;
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..concurrency {
        let mut client = clients.get();
        let masters = masters.clone();
        workers.spawn(async move {
            let (mut done, mut errors, mut i) = (0u64, 0u64, w);
            while Instant::now() < stop {
                match client
                    .get_patient_view(request(&masters[i % masters.len()], None))
                    .await
                {
                    Ok(_) => done += 1,
                    Err(_) => errors += 1,
                }
                i += concurrency;
            }
            (done, errors)
        });
    }
    let start = Instant::now();
    let (mut done, mut errors) = (0, 0);
    while let Some(joined) = workers.join_next().await {
        let (d, e) = joined?;
        done += d;
        errors += e;
    }
    Ok((done as f64 / start.elapsed().as_secs_f64(), errors))
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
    pub(super) server: tokio::task::JoinHandle<Result<server::Shutdown, server::ServeError>>,
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
        rpc: crate::telemetry::rpc::RpcLayer,
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
            Arc::new(ResolverLookup::new(resolver)),
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
        let options = ServeOptions {
            grace_period: Duration::from_secs(5),
            rpc,
        };
        let server = tokio::spawn(server::serve(
            listener,
            services,
            options,
            async { Ok(()) },
            async {
                let _ = stopped.await;
            },
            || {},
        ));
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

/// Runs the benchmark and returns its report.
pub(super) async fn run(args: &ViewBenchArgs) -> anyhow::Result<serde_json::Value> {
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
    } = ViewServer::start(
        &latencies,
        args.records,
        args.record_bytes,
        persons,
        &policy,
        crate::telemetry::rpc::RpcLayer::default(),
    )
    .await?;
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
    let cpu_before = super::cpu_seconds()?;
    let cold = open_loop(
        &clients,
        args.rate,
        cold_total,
        Arc::new(masters[..cold_total].to_vec()),
        None,
    )
    .await?;
    // Client, server and fake silos together: what one cold view costs this
    // machine, steadier than any latency figure on a shared VM.
    let cold_cpu = super::cpu_seconds()? - cpu_before;
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
    let (bare_addr, bare_stop) = serve_bare(sample.clone()).await?;
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
    open_loop(&bare_clients, half, settle, warm.clone(), None).await?;
    open_loop(&clients, half, settle, warm.clone(), None).await?;
    let (mut cached, mut bare) = (OpenLoop::new()?, OpenLoop::new()?);
    let (mut cached_cpu, mut bare_cpu) = (0.0, 0.0);
    for i in 0..OPEN_LOOP_STRETCHES {
        let cached_turn = matches!(i % 4, 0 | 3);
        let (target, totals, cpu) = if cached_turn {
            (&clients, &mut cached, &mut cached_cpu)
        } else {
            (&bare_clients, &mut bare, &mut bare_cpu)
        };
        let cpu_before = super::cpu_seconds()?;
        let run = open_loop(target, half, stretch_total, warm.clone(), None).await?;
        *cpu += super::cpu_seconds()? - cpu_before;
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
    let _ = stop.send(());
    let _ = server.await;

    let c = &cold.latency;
    let w = &cached.latency;
    let b = &bare.latency;
    Ok(serde_json::json!({
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
    }))
}
