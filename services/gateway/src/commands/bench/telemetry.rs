//! `tessera bench telemetry`: what tracing costs a view, in one run.
//!
//! The same view server as `tessera bench view` (fake silos, embedded identity
//! store, real loopback gRPC), with metrics on (a Prometheus reader) in every
//! mode. Cached views are driven in a closed loop — the cheapest view, so
//! tracing's share of it is the largest — under three modes: tracing off (no
//! OpenTelemetry layer), 1 % sampling and 100 % sampling, each exporting over
//! OTLP/gRPC to a receiver in this process that counts spans. Modes alternate
//! round by round so drift on a shared machine hits them alike; the report
//! gives each mode's median throughput and its cost against off.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Args;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
    trace_service_server::{TraceService, TraceServiceServer},
};
use tokio::sync::oneshot;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt;

use super::view::{Clients, ViewServer, closed_loop, request};
use crate::telemetry;

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
}

/// The subscriber under the swapped layer, and the layer.
type Base =
    tracing_subscriber::layer::Layered<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;
type OtelLayer = tracing_subscriber::filter::Filtered<
    tracing_opentelemetry::OpenTelemetryLayer<Base, opentelemetry_sdk::trace::SdkTracer>,
    telemetry::SampledOnly,
    Base,
>;

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

/// Runs the benchmark and returns its report.
pub(super) async fn run(args: &TelemetryBenchArgs) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(
        args.adapters > 0 && args.rounds > 0,
        "need adapters and rounds"
    );
    // Metrics on in every mode, as in production.
    let registry = prometheus::Registry::new();
    let meter = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
        .with_reader(
            opentelemetry_prometheus::exporter()
                .with_registry(registry.clone())
                .build()?,
        )
        .build();
    opentelemetry::global::set_meter_provider(meter.clone());

    // Tracing's layer is swapped between modes; spans of other crates stay off.
    let (layer, handle) = reload::Layer::new(None::<OtelLayer>);
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("off,tessera=info"))
        .with(layer)
        .try_init();

    let (endpoint, exported, stop_receiver) = receiver().await?;
    let latencies = vec![1; args.adapters];
    let server = ViewServer::start(&latencies, 2, 200, MASTERS).await?;
    let clients = Clients::connect(server.addr, args.connections).await?;
    let masters = Arc::new(server.masters.clone());
    for master in masters.iter() {
        clients
            .get()
            .get_patient_view(request(master, None))
            .await?;
    }

    let modes: [(&str, Option<f64>); 3] = [("off", None), ("1%", Some(0.01)), ("100%", Some(1.0))];
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    let mut spans: Vec<u64> = vec![0; modes.len()];
    let mut errors = 0;
    let phase = Duration::from_secs(args.duration.max(1));
    for _ in 0..args.rounds {
        for (m, (_, ratio)) in modes.iter().enumerate() {
            let provider = match ratio {
                None => None,
                Some(ratio) => {
                    let exporter = opentelemetry_otlp::SpanExporter::builder()
                        .with_tonic()
                        .with_endpoint(endpoint.clone())
                        .build()?;
                    Some(telemetry::tracer_provider_to(
                        exporter,
                        *ratio,
                        Duration::from_secs(3600),
                        opentelemetry_sdk::Resource::builder().build(),
                    ))
                }
            };
            handle.reload(
                provider
                    .as_ref()
                    .map(|p| telemetry::traced_spans(telemetry::otel_layer(p))),
            )?;
            let before = exported.load(Ordering::Relaxed);
            let (rps, failed) =
                closed_loop(&clients, args.concurrency, phase, masters.clone()).await?;
            handle.reload(None)?;
            if let Some(provider) = provider {
                let _ = provider.shutdown();
            }
            samples[m].push(rps);
            spans[m] += exported.load(Ordering::Relaxed) - before;
            errors += failed;
        }
    }
    let _ = stop_receiver.send(());
    let _ = server.stop.send(());
    let _ = server.server.await;
    let _ = meter.shutdown();

    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let off = median(&samples[0]);
    let mut report = serde_json::Map::new();
    report.insert("duration_s".into(), args.duration.into());
    report.insert("rounds".into(), args.rounds.into());
    report.insert("concurrency".into(), args.concurrency.into());
    report.insert("adapters".into(), args.adapters.into());
    report.insert("errors".into(), errors.into());
    for (m, (name, _)) in modes.iter().enumerate() {
        let rps = median(&samples[m]);
        report.insert(
            (*name).into(),
            serde_json::json!({
                "median_rps": rps,
                "rps_per_round": samples[m],
                "cost_vs_off": 1.0 - rps / off,
                "spans_exported": spans[m],
            }),
        );
    }
    Ok(serde_json::Value::Object(report))
}
