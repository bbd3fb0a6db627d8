//! `tessera bench telemetry`: what tracing costs a view, in one run.
//!
//! Each measurement runs in a process of its own, set up exactly as `tessera
//! serve` sets itself up ([`Telemetry::init`] and its RPC layer), with metrics
//! on (a Prometheus reader) in every mode: the view server of `tessera bench
//! view` (fake silos, embedded identity store, real loopback gRPC) and its
//! client, driving cached views in a closed loop — the cheapest view, so
//! tracing's share of it is the largest. Three modes: tracing off (no OTLP
//! endpoint, as in production without one), 1 % and 100 % sampling, exporting
//! over OTLP/gRPC to a receiver in the parent process that counts spans.
//! Modes alternate round by round (forward, then backward) so drift on a
//! shared machine hits them alike; the report gives each mode's median
//! throughput and its cost against off, the median of each round's cost
//! against that round's off (`paired_cost_vs_off`), and the same for the CPU
//! time the process spent per view (user and system, from `/proc/self/stat`).

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
    trace_service_server::{TraceService, TraceServiceServer},
};
use tessera_telemetry::{Env, LogSettings, Settings, Telemetry};
use tokio::sync::oneshot;

use crate::Gateway;
use crate::load::{Clients, closed_loop, request};
use crate::view::ViewServer;

/// `tessera bench telemetry`.
#[derive(Debug, Args)]
pub struct TelemetryBenchArgs {
    /// Seconds of each mode in each round.
    #[arg(long, default_value_t = 5)]
    duration: u64,
    /// Rounds; each runs every mode once.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Concurrent callers.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// gRPC connections the client spreads calls over.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// How many fake silos (adapters), one section each.
    #[arg(long, default_value_t = 4)]
    adapters: usize,
    /// Internal: measure this one mode in this process and report it.
    #[arg(long, hide = true)]
    mode: Option<String>,
    /// Internal: where the measuring process exports spans.
    #[arg(long, hide = true)]
    otlp: Option<String>,
}

/// The modes and their sampling ratios (`None`: tracing off).
const MODES: [(&str, Option<f64>); 3] = [("off", None), ("1%", Some(0.01)), ("100%", Some(1.0))];

/// Masters the cached views cycle over.
const MASTERS: usize = 100;

/// Counts the spans exported to it.
#[derive(Clone, Default)]
struct CountingReceiver(Arc<AtomicU64>);

#[tonic::async_trait]
impl TraceService for CountingReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans: usize = request
            .get_ref()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.0.fetch_add(spans as u64, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Starts the receiver on 127.0.0.1:0.
async fn receiver() -> anyhow::Result<(String, Arc<AtomicU64>, oneshot::Sender<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let counter = CountingReceiver::default();
    let spans = Arc::clone(&counter.0);
    let (stop, stopped) = oneshot::channel::<()>();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(counter))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            }),
    );
    Ok((format!("http://{addr}"), spans, stop))
}

/// Runs the benchmark and returns its report (or, in a measuring process, that
/// process's measurement).
pub(super) async fn run(
    args: &TelemetryBenchArgs,
    gateway: Arc<dyn Gateway>,
) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(
        args.adapters > 0 && args.rounds > 0,
        "need adapters and rounds"
    );
    if let Some(mode) = &args.mode {
        return measure(args, mode, &*gateway).await;
    }
    let (endpoint, exported, stop_receiver) = receiver().await?;
    let exe = std::env::current_exe().context("cannot find this program to run the modes")?;
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); MODES.len()];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); MODES.len()];
    let mut spans: Vec<u64> = vec![0; MODES.len()];
    let mut errors = 0;
    for round in 0..args.rounds {
        // Forward in even rounds, backward in odd ones (A B C C B A ...), so a
        // steady drift weighs on every mode alike.
        let order: Vec<usize> = if round % 2 == 0 {
            (0..MODES.len()).collect()
        } else {
            (0..MODES.len()).rev().collect()
        };
        for m in order {
            let name = MODES[m].0;
            let before = exported.load(Ordering::Relaxed);
            let mut command = std::process::Command::new(&exe);
            command
                .args(["bench", "telemetry", "--mode", name, "--otlp", &endpoint])
                .args(["--duration", &args.duration.to_string()])
                .args(["--concurrency", &args.concurrency.to_string()])
                .args(["--connections", &args.connections.to_string()])
                .args(["--adapters", &args.adapters.to_string()])
                .stdin(Stdio::null())
                .stderr(Stdio::inherit());
            // Waited for off the runtime: the receiver keeps running on it.
            let output = tokio::task::spawn_blocking(move || command.output()).await??;
            anyhow::ensure!(
                output.status.success(),
                "the {name} measurement failed: {}",
                output.status
            );
            let measured: serde_json::Value = serde_json::from_slice(&output.stdout)
                .with_context(|| format!("the {name} measurement printed no report"))?;
            let rps = measured["rps"]
                .as_f64()
                .with_context(|| format!("the {name} measurement has no rate"))?;
            errors += measured["errors"].as_u64().unwrap_or(0);
            samples[m].push(rps);
            cpu[m].push(
                measured["cpu_us_per_view"]
                    .as_f64()
                    .with_context(|| format!("the {name} measurement has no CPU time"))?,
            );
            // The measuring process flushed its spans before exiting.
            spans[m] += exported.load(Ordering::Relaxed) - before;
        }
    }
    let _ = stop_receiver.send(());

    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let off = median(&samples[0]);
    let off_cpu = median(&cpu[0]);
    let mut report = serde_json::Map::new();
    report.insert("duration_s".into(), args.duration.into());
    report.insert("rounds".into(), args.rounds.into());
    report.insert("concurrency".into(), args.concurrency.into());
    report.insert("adapters".into(), args.adapters.into());
    report.insert("errors".into(), errors.into());
    for (m, (name, _)) in MODES.iter().enumerate() {
        let rps = median(&samples[m]);
        // Each round's cost against the same round's off: the machine's
        // slower swings (other tenants) cancel within a round.
        let paired: Vec<f64> = samples[m]
            .iter()
            .zip(&samples[0])
            .map(|(rps, off)| 1.0 - rps / off)
            .collect();
        let paired_cpu: Vec<f64> = cpu[m]
            .iter()
            .zip(&cpu[0])
            .map(|(cpu, off)| cpu / off - 1.0)
            .collect();
        report.insert(
            (*name).into(),
            serde_json::json!({
                "median_rps": rps,
                "rps_per_round": samples[m],
                "cost_vs_off": 1.0 - rps / off,
                "paired_cost_vs_off": median(&paired),
                "paired_cpu_cost_vs_off": median(&paired_cpu),
                "cpu_us_per_view": median(&cpu[m]),
                "cpu_us_per_view_per_round": cpu[m],
                "cpu_cost_vs_off": median(&cpu[m]) / off_cpu - 1.0,
                "spans_exported": spans[m],
            }),
        );
    }
    Ok(serde_json::Value::Object(report))
}

/// One mode in this process, set up as `tessera serve` would be.
async fn measure(
    args: &TelemetryBenchArgs,
    mode: &str,
    gateway: &dyn Gateway,
) -> anyhow::Result<serde_json::Value> {
    let (_, ratio) = MODES
        .iter()
        .find(|(name, _)| *name == mode)
        .with_context(|| format!("unknown mode {mode}"))?;
    let settings = Settings {
        // Metrics on in every mode, as in production: a Prometheus reader.
        prometheus: true,
        ..Settings::default()
    };
    let env = Env {
        endpoint: ratio.and(args.otlp.clone()),
        sampler_arg: *ratio,
        metrics_off: true,
        ..Env::default()
    };
    let telemetry = Telemetry::init(settings, LogSettings::default(), &env)?;
    anyhow::ensure!(
        telemetry.tracing() == ratio.is_some(),
        "tracing is not set up as the mode says"
    );

    let latencies = vec![1; args.adapters];
    let server = ViewServer::start(
        &latencies,
        2,
        200,
        MASTERS,
        &tessera_aggregator::SourcePolicy::default(),
        telemetry.rpc_layer(),
        gateway,
    )
    .await?;
    let clients = Clients::connect(server.addr, args.connections).await?;
    let masters = Arc::new(server.masters.clone());
    for master in masters.iter() {
        clients
            .get()
            .get_patient_view(request(master, None))
            .await?;
    }
    // Warm up (connections, allocator, caches), then measure.
    closed_loop(
        &clients,
        args.concurrency,
        Duration::from_secs(1),
        masters.clone(),
    )
    .await?;
    let cpu_before = crate::cpu_seconds()?;
    let (rps, errors) = closed_loop(
        &clients,
        args.concurrency,
        Duration::from_secs(args.duration.max(1)),
        masters,
    )
    .await?;
    let cpu = crate::cpu_seconds()? - cpu_before;
    #[allow(clippy::cast_precision_loss)]
    let views = rps * args.duration.max(1) as f64;
    let _ = server.stop.send(());
    let _ = server.server.await;
    telemetry.shutdown();
    Ok(serde_json::json!({
        "mode": mode,
        "rps": rps,
        "errors": errors,
        "cpu_us_per_view": cpu / views.max(1.0) * 1e6,
    }))
}
