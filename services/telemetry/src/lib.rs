//! Logs, traces and metrics for the whole `tessera` process: this crate owns
//! the `tracing` subscriber, the OTLP and Prometheus pipelines, head sampling
//! and the gRPC server layer that opens every call's span. The gateway parses
//! its config into [`Settings`] and [`LogSettings`], reads the environment into
//! an [`Env`], and calls [`Telemetry::init`].
//!
//! - **Logs**: `tracing` events to standard error, as text or JSON (one object a
//!   line, with the trace and span IDs of the span it happened in). Messages are
//!   fixed strings; fields never hold patient data.
//! - **Traces**: `tracing` spans of Tessera's own crates (targets `tessera*`)
//!   become OpenTelemetry spans through `tracing-opentelemetry`, exported over
//!   OTLP/gRPC. [`rpc::RpcLayer`] opens the server span of every call, continuing
//!   the caller's W3C trace context; adapters pass it on to the silos
//!   (`tessera_adapter_core::trace`). Sampling is parent-based with a ratio by
//!   default, chosen with the standard `OTEL_TRACES_SAMPLER` /
//!   `OTEL_TRACES_SAMPLER_ARG` ([`sampling::SamplerName`]), and failed or slow
//!   calls are kept regardless ([`sampling`]).
//! - **Metrics**: the global meter provider, read by an OTLP push exporter and
//!   by the Prometheus scrape endpoint ([`prometheus`]).
//!
//! Semantic conventions: attribute and metric names follow OpenTelemetry
//! semantic conventions **1.42.0** ([`SEMCONV_SCHEMA_URL`], the version of
//! `opentelemetry-semantic-conventions` 0.33 this build pins) for RPC
//! (`rpc.system.name`, `rpc.method`, `rpc.response.status_code`,
//! `rpc.server.call.duration` in seconds), HTTP clients (`http.request.method`,
//! `url.template`, `server.address`, `http.response.status_code`), databases
//! (`db.system.name`) and errors (`error.type`); Tessera's own are `tessera.*`.

pub mod json;
pub mod prometheus;
pub mod rpc;
pub mod sampling;

use std::io::IsTerminal;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{EnvFilter, FilterExt as _, FilterFn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

pub use sampling::{SamplerName, Sampling};

/// The semantic-conventions schema the telemetry follows.
pub const SEMCONV_SCHEMA_URL: &str = opentelemetry_semantic_conventions::SCHEMA_URL;

/// What went wrong setting telemetry up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// An exporter could not be built (`signal`: trace, metric, Prometheus).
    #[error("cannot build the {signal} exporter")]
    Exporter {
        /// Which exporter.
        signal: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Log output: the config file's `logging` section.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// Text or JSON lines.
    pub format: LogFormat,
    /// Which events to log, in `tracing` filter syntax (`RUST_LOG` wins).
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Traces and metrics: the config file's `telemetry` section (the
/// environment, [`Env`], wins where both say something).
#[derive(Debug, Clone)]
pub struct Settings {
    /// `service.name` of the traces and metrics.
    pub service_name: String,
    /// Where traces and metrics are sent over OTLP/gRPC.
    pub otlp_endpoint: Option<String>,
    /// How long one OTLP export may take.
    pub otlp_timeout: Duration,
    /// How often metrics are pushed over OTLP.
    pub metrics_interval: Duration,
    /// The share of new traces kept, 0.0 to 1.0, parent-based.
    pub sampling_ratio: f64,
    /// Calls that fail or take at least this long keep their server span.
    pub keep_slower_than: Duration,
    /// Whether a Prometheus registry is read (the endpoint is served apart,
    /// [`prometheus::serve`]).
    pub prometheus: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            service_name: "tessera".to_owned(),
            otlp_endpoint: None,
            otlp_timeout: Duration::from_secs(10),
            metrics_interval: Duration::from_secs(60),
            sampling_ratio: 0.1,
            keep_slower_than: Duration::from_millis(500),
            prometheus: false,
        }
    }
}

/// The running telemetry pipelines; [`Telemetry::shutdown`] flushes them.
#[derive(Debug, Default)]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    traces: Option<rpc::Traces>,
    meter: Option<SdkMeterProvider>,
    prometheus: Option<::prometheus::Registry>,
}

/// What the environment says, read once (tests pass their own).
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// `OTEL_SDK_DISABLED=true`.
    pub disabled: bool,
    /// `OTEL_SERVICE_NAME`.
    pub service_name: Option<String>,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: Option<String>,
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`.
    pub traces_endpoint: Option<String>,
    /// `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`.
    pub metrics_endpoint: Option<String>,
    /// `OTEL_TRACES_EXPORTER` / `OTEL_METRICS_EXPORTER` = `none`.
    pub traces_off: bool,
    /// See `traces_off`.
    pub metrics_off: bool,
    /// `OTEL_TRACES_SAMPLER` (unset: parent-based with the ratio).
    pub sampler: Option<SamplerName>,
    /// An `OTEL_TRACES_SAMPLER` value that is not one of the standard ones:
    /// ignored with a warning once logging is up, as the OpenTelemetry
    /// specification asks of unknown enum values.
    pub unknown_sampler: Option<String>,
    /// `OTEL_TRACES_SAMPLER_ARG`.
    pub sampler_arg: Option<f64>,
    /// `OTEL_EXPORTER_OTLP_TIMEOUT` (ms).
    pub timeout: Option<Duration>,
    /// `OTEL_METRIC_EXPORT_INTERVAL` (ms).
    pub metric_interval: Option<Duration>,
}

impl Env {
    /// Reads the standard `OTEL_*` variables of the process.
    pub fn from_process() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the standard `OTEL_*` variables through `lookup` (a variable's
    /// value by name; tests pass a map). Blank values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let var = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let millis = |name: &str| var(name).and_then(|v| v.trim().parse::<u64>().ok());
        let (sampler, unknown_sampler) = match var("OTEL_TRACES_SAMPLER") {
            None => (None, None),
            Some(value) => match value.parse::<SamplerName>() {
                Ok(name) => (Some(name), None),
                Err(_) => (None, Some(value.trim().to_owned())),
            },
        };
        Self {
            disabled: var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")),
            service_name: var("OTEL_SERVICE_NAME"),
            endpoint: var("OTEL_EXPORTER_OTLP_ENDPOINT"),
            traces_endpoint: var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            metrics_endpoint: var("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"),
            traces_off: var("OTEL_TRACES_EXPORTER").is_some_and(|v| v == "none"),
            metrics_off: var("OTEL_METRICS_EXPORTER").is_some_and(|v| v == "none"),
            sampler,
            unknown_sampler,
            sampler_arg: var("OTEL_TRACES_SAMPLER_ARG").and_then(|v| v.trim().parse().ok()),
            timeout: millis("OTEL_EXPORTER_OTLP_TIMEOUT").map(Duration::from_millis),
            metric_interval: millis("OTEL_METRIC_EXPORT_INTERVAL").map(Duration::from_millis),
        }
    }

    /// How new traces are sampled: `OTEL_TRACES_SAMPLER` and its argument,
    /// over the config's ratio.
    pub fn sampling(&self, config_ratio: f64) -> Sampling {
        Sampling::new(self.sampler, self.sampler_arg, config_ratio)
    }
}

impl Telemetry {
    /// Installs logging, and the trace and metric pipelines the config and the
    /// environment ask for, as the process's global subscriber and meter
    /// provider. Must run inside a Tokio runtime (the OTLP exporters' channels
    /// live on it), before anything makes instruments.
    ///
    /// `config` and `logging` are anything that converts into [`Settings`]
    /// and [`LogSettings`] (the gateway's config sections do).
    pub fn init(
        config: impl Into<Settings>,
        logging: impl Into<LogSettings>,
        env: &Env,
    ) -> Result<Self, TelemetryError> {
        let config = &config.into();
        let logging = &logging.into();
        let resource = resource(config, env);
        let mut telemetry = Self::default();
        if !env.disabled {
            telemetry.meter = meter_provider(config, env, resource.clone(), &mut telemetry)?;
            telemetry.tracer = tracer_provider(config, env, resource)?;
            telemetry.traces = telemetry.tracer.as_ref().map(|provider| {
                rpc::Traces::with_sampling(
                    provider.tracer("tessera"),
                    env.sampling(config.sampling_ratio),
                    config.keep_slower_than,
                )
            });
        }
        if let Some(meter) = &telemetry.meter {
            opentelemetry::global::set_meter_provider(meter.clone());
        }
        // Not an `Option` layer: a `None` one still enables every callsite
        // (`Interest::always`), so each span would be built in the registry
        // for nothing — what "tracing off" must not cost.
        let logs = log_filter(logging);
        let _ = match &telemetry.tracer {
            Some(provider) => Registry::default()
                .with(UnsampledGate {
                    level: Layer::<Registry>::max_level_hint(&logs)
                        .unwrap_or(tracing_subscriber::filter::LevelFilter::TRACE)
                        .max(tracing_subscriber::filter::LevelFilter::INFO),
                })
                .with(log_layer(logs, logging.format))
                .with(traced_spans(otel_layer(provider)))
                .try_init(),
            None => Registry::default()
                .with(log_layer(logs, logging.format))
                .try_init(),
        };
        if let Some(value) = &env.unknown_sampler {
            tracing::warn!(
                value = %value,
                "unknown OTEL_TRACES_SAMPLER ignored: the default sampler is used"
            );
        }
        Ok(telemetry)
    }

    /// The registry the Prometheus endpoint serves, when configured.
    pub fn prometheus_registry(&self) -> Option<::prometheus::Registry> {
        self.prometheus.clone()
    }

    /// Whether spans are recorded and exported.
    pub fn tracing(&self) -> bool {
        self.tracer.is_some()
    }

    /// The server layer that traces (and times) every gRPC call.
    pub fn rpc_layer(&self) -> rpc::RpcLayer {
        rpc::RpcLayer::new(self.traces.clone())
    }

    /// Exports what is buffered and stops the pipelines.
    pub fn shutdown(self) {
        if let Some(tracer) = self.tracer
            && let Err(err) = tracer.shutdown()
        {
            tracing::warn!(error = %err, "trace export did not finish");
        }
        if let Some(meter) = self.meter
            && let Err(err) = meter.shutdown()
        {
            tracing::warn!(error = %err, "metric export did not finish");
        }
    }
}

/// Installs logging alone (CLI commands that do not serve). `RUST_LOG`, when
/// set, overrides the config's level. Calling it twice keeps the first.
pub fn init_logging(config: impl Into<LogSettings>) {
    let config = &config.into();
    let _ = Registry::default()
        .with(log_layer(log_filter(config), config.format))
        .try_init();
}

/// `layer` (the OpenTelemetry layer) over Tessera's own spans only (at info or
/// above; events are logs, not span events; h2's and hyper's spans stay out).
pub fn traced_spans<S, L>(layer: L) -> tracing_subscriber::filter::Filtered<L, TesseraSpans, S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    L: Layer<S>,
{
    layer.with_filter(TesseraSpans)
}

/// The filter of [`traced_spans`]: Tessera's spans at info or above (whether
/// the call is sampled is [`UnsampledGate`]'s business).
#[derive(Debug, Clone, Copy)]
pub struct TesseraSpans;

impl TesseraSpans {
    fn wants(meta: &tracing::Metadata<'_>) -> bool {
        meta.is_span()
            && meta.target().starts_with("tessera")
            && *meta.level() <= tracing::Level::INFO
    }
}

impl<S> tracing_subscriber::layer::Filter<S> for TesseraSpans
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn enabled(
        &self,
        meta: &tracing::Metadata<'_>,
        _cx: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        Self::wants(meta)
    }

    fn callsite_enabled(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if Self::wants(meta) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<tracing_subscriber::filter::LevelFilter> {
        Some(tracing_subscriber::filter::LevelFilter::INFO)
    }
}

/// Keeps spans from being built at all while the thread polls a call whose
/// trace is not sampled ([`rpc::unsampled_call`]): they would be dropped at the
/// end anyway, and building them would be most of what tracing costs such a
/// call. Added next to the registry, under every other layer: a per-layer
/// filter that says no still lets the registry build the span (it only skips
/// that layer), while this global one stops it.
///
/// Its level hint is the most verbose level any layer above wants (`level`):
/// without one the process-wide hint would be "everything", and each of the
/// dependencies' `trace!` callsites would be asked about on every hit.
#[derive(Debug, Clone, Copy)]
pub struct UnsampledGate {
    /// The most verbose level the layers above it want.
    pub level: tracing_subscriber::filter::LevelFilter,
}

impl<S: tracing::Subscriber> Layer<S> for UnsampledGate {
    fn max_level_hint(&self) -> Option<tracing_subscriber::filter::LevelFilter> {
        Some(self.level)
    }

    fn register_callsite(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if TesseraSpans::wants(meta) {
            // Decided per span: it depends on the call it is in.
            tracing::subscriber::Interest::sometimes()
        } else {
            // Whatever the layers above decide.
            tracing::subscriber::Interest::always()
        }
    }

    fn enabled(
        &self,
        meta: &tracing::Metadata<'_>,
        _cx: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        !(meta.is_span() && rpc::unsampled_call().is_some())
    }
}

/// The log layer in `format`: events only (spans are for traces), those
/// `filter` ([`log_filter`]) lets through.
fn log_layer<S>(filter: EnvFilter, format: LogFormat) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
{
    // One filter, not two nested `with_filter`s: nested, the inner one's "no
    // spans" does not reach the registry, which then builds every span the
    // level allows only for this layer to ignore it. (So `RUST_LOG` selects by
    // target and level; span-scoped directives have no spans to match.)
    let events = FilterFn::new(|meta: &tracing::Metadata<'_>| meta.is_event()).and(filter);
    match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(true)
            .with_filter(events)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .event_format(json::JsonLines)
            .with_filter(events)
            .boxed(),
    }
}

/// Which events are logged: `RUST_LOG`, or the config's level.
fn log_filter(config: &LogSettings) -> EnvFilter {
    EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::builder().parse(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"))
}

fn resource(config: &Settings, env: &Env) -> Resource {
    let name = env
        .service_name
        .clone()
        .unwrap_or_else(|| config.service_name.clone());
    Resource::builder()
        .with_service_name(name)
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build()
}

fn tracer_provider(
    config: &Settings,
    env: &Env,
    resource: Resource,
) -> Result<Option<SdkTracerProvider>, TelemetryError> {
    let endpoint = env
        .traces_endpoint
        .clone()
        .or_else(|| env.endpoint.clone())
        .or_else(|| config.otlp_endpoint.clone());
    let Some(endpoint) = endpoint.filter(|_| !env.traces_off) else {
        return Ok(None);
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(env.timeout.unwrap_or(config.otlp_timeout))
        .build()
        .map_err(|err| exporter_error("OTLP trace", err))?;
    let sampling = env.sampling(config.sampling_ratio);
    Ok(Some(tracer_provider_sampled(exporter, sampling, resource)))
}

/// The trace pipeline: parent-based `ratio` sampling ([`sampling::Sampler`]),
/// batched to `exporter`.
pub fn tracer_provider_to(
    exporter: impl opentelemetry_sdk::trace::SpanExporter + 'static,
    ratio: f64,
    resource: Resource,
) -> SdkTracerProvider {
    tracer_provider_sampled(exporter, Sampling::parent_based(ratio), resource)
}

/// The trace pipeline with `sampling` ([`sampling::Sampler`]), batched to
/// `exporter`.
pub fn tracer_provider_sampled(
    exporter: impl opentelemetry_sdk::trace::SpanExporter + 'static,
    sampling: Sampling,
    resource: Resource,
) -> SdkTracerProvider {
    let batch = opentelemetry_sdk::trace::BatchSpanProcessor::builder(exporter).build();
    SdkTracerProvider::builder()
        .with_resource(resource)
        .with_sampler(sampling::Sampler::with_sampling(sampling))
        .with_span_processor(batch)
        .build()
}

/// The layer that turns `tracing` spans into OpenTelemetry spans: no code
/// locations, threads, targets or levels as attributes (they are noise), no
/// busy/idle timings, no thread-local context attached on enter.
pub fn otel_layer<S>(
    provider: &SdkTracerProvider,
) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::SdkTracer>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("tessera"))
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_level(false)
        .with_tracked_inactivity(false)
        // Nothing reads OpenTelemetry's thread-local context (trace headers
        // come from the span itself), so entering a span need not attach it.
        .with_context_activation(false)
}

fn meter_provider(
    config: &Settings,
    env: &Env,
    resource: Resource,
    telemetry: &mut Telemetry,
) -> Result<Option<SdkMeterProvider>, TelemetryError> {
    let endpoint = env
        .metrics_endpoint
        .clone()
        .or_else(|| env.endpoint.clone())
        .or_else(|| config.otlp_endpoint.clone())
        .filter(|_| !env.metrics_off);
    if endpoint.is_none() && !config.prometheus {
        return Ok(None);
    }
    let mut builder = SdkMeterProvider::builder().with_resource(resource);
    if let Some(endpoint) = endpoint {
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_timeout(env.timeout.unwrap_or(config.otlp_timeout))
            .build()
            .map_err(|err| exporter_error("OTLP metric", err))?;
        let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(exporter)
            .with_interval(env.metric_interval.unwrap_or(config.metrics_interval))
            .build();
        builder = builder.with_reader(reader);
    }
    if config.prometheus {
        let registry = ::prometheus::Registry::new();
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .build()
            .map_err(|err| exporter_error("Prometheus", err))?;
        builder = builder.with_reader(exporter);
        telemetry.prometheus = Some(registry);
    }
    Ok(Some(builder.build()))
}

fn exporter_error(
    signal: &'static str,
    err: impl std::error::Error + Send + Sync + 'static,
) -> TelemetryError {
    TelemetryError::Exporter {
        signal,
        source: Box::new(err),
    }
}

#[cfg(test)]
mod tests;
