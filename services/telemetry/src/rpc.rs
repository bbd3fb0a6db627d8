//! The server side of every gRPC call: continue the caller's trace, decide
//! whether the call is traced, open its server span, and time it.
//!
//! [`RpcLayer`] wraps the tonic server. For each call it reads the W3C trace
//! context (`traceparent`, `tracestate`) from the request's metadata and makes
//! the head sampling decision *before any span exists*: the caller's decision
//! when it sent one, otherwise the configured ratio ([`Traces`]).
//!
//! - A sampled call gets the `grpc.server` span (`otel.name` and `rpc.method`
//!   the fully-qualified method, from a fixed set: anything else is `_OTHER`),
//!   a child of the caller's span; the handler and the response body are
//!   polled inside it, and it ends when the body ends — after a stream's last
//!   message — with the call's `grpc-status`.
//! - An unsampled call gets no span at all. While its handler and body are
//!   polled the thread is marked ([`unsampled_call`]), so the spans the view
//!   would open are not built either ([`super::UnsampledGate`]): tracing costs
//!   such a call a header lookup, a random number and two thread-local writes
//!   per poll. When it ends failed (a server-side status) or slower than
//!   `keep_slower_than`, its server span is built after the fact, with the
//!   call's real start and end and `tessera.sampling = "tail"`, so failed and
//!   slow calls are always seen (their children are not: a whole-trace tail
//!   decision needs a collector).
//!
//! Every call's duration goes to `rpc.server.call.duration` (seconds) by
//! method and status. Health checks and reflection are timed but not traced
//! (probes would drown the traces).

use std::cell::Cell;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use http_body::{Body, Frame, SizeHint};
use opentelemetry::KeyValue;
use opentelemetry::metrics::Histogram;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanKind, Status, TraceContextExt, TraceId, Tracer as _,
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracer;
use tessera_adapter_core::trace::grpc_code_name;

use crate::sampling::Sampling;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The name of every gRPC server span (its `otel.name` is the method).
pub const SERVER_SPAN: &str = "grpc.server";

/// The attribute (and value) that marks a server span kept by the tail rule.
pub const TAIL_ATTRIBUTE: (&str, &str) = ("tessera.sampling", "tail");

/// The methods named in spans and metric labels (the contract's, from its
/// descriptors, and health's); any other path is `_OTHER`.
fn known_methods() -> &'static [String] {
    static METHODS: OnceLock<Vec<String>> = OnceLock::new();
    METHODS.get_or_init(|| {
        let mut methods = vec![
            "grpc.health.v1.Health/Check".to_owned(),
            "grpc.health.v1.Health/Watch".to_owned(),
        ];
        if let Ok(set) = <prost_types::FileDescriptorSet as prost::Message>::decode(
            tessera_proto::FILE_DESCRIPTOR_SET,
        ) {
            for file in &set.file {
                for service in &file.service {
                    for method in &service.method {
                        methods.push(format!(
                            "{}.{}/{}",
                            file.package(),
                            service.name(),
                            method.name()
                        ));
                    }
                }
            }
        }
        methods
    })
}

/// Codes that are the server's failure (OpenTelemetry's gRPC server rule);
/// the others are the caller's (NOT_FOUND, INVALID_ARGUMENT, ...).
const SERVER_ERRORS: &[&str] = &[
    "UNKNOWN",
    "DEADLINE_EXCEEDED",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
];

/// How calls are traced: the tracer, whether the caller's decision is
/// followed, the share of new traces kept, and the duration from which an
/// unsampled call's server span is kept anyway.
#[derive(Clone)]
pub struct Traces {
    tracer: SdkTracer,
    /// A call with the caller's trace context follows its decision.
    parent_based: bool,
    /// A new trace is kept when a random `u64` is below this.
    threshold: u64,
    keep_slower_than: Duration,
}

impl Traces {
    /// Parent-based: keeps `ratio` (0.0 to 1.0) of new traces, and the server
    /// span of any call slower than `keep_slower_than` or failed.
    pub fn new(tracer: SdkTracer, ratio: f64, keep_slower_than: Duration) -> Self {
        Self::with_sampling(tracer, Sampling::parent_based(ratio), keep_slower_than)
    }

    /// Samples calls as `sampling` says, and keeps the server span of any
    /// call slower than `keep_slower_than` or failed.
    pub fn with_sampling(
        tracer: SdkTracer,
        sampling: Sampling,
        keep_slower_than: Duration,
    ) -> Self {
        let ratio = Sampling::parent_based(sampling.ratio).ratio;
        // 2^64 * ratio, saturating at u64::MAX for 1.0 (checked with `<=`).
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let threshold = (ratio * 18_446_744_073_709_551_616.0) as u64;
        Self {
            tracer,
            parent_based: sampling.parent_based,
            threshold,
            keep_slower_than,
        }
    }

    /// The head decision for a call the caller did not decide for.
    fn sample_new_trace(&self) -> bool {
        match self.threshold {
            0 => false,
            u64::MAX => true,
            threshold => random_u64() < threshold,
        }
    }
}

impl std::fmt::Debug for Traces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Traces")
            .field("threshold", &self.threshold)
            .field("keep_slower_than", &self.keep_slower_than)
            .finish_non_exhaustive()
    }
}

/// A random number from a per-thread `rand` `SmallRng` (Xoshiro256++: a few
/// nanoseconds, on every call's path), seeded once per thread from the
/// standard library's per-process random keys. Not `rand::rng()`: the
/// workspace builds `rand` without `thread_rng` (and its OS entropy source),
/// and enabling it would change `rand`'s features for every crate; sampling
/// needs neither cryptographic strength nor OS entropy.
fn random_u64() -> u64 {
    use rand::{Rng as _, SeedableRng as _};
    use std::hash::BuildHasher as _;
    thread_local! {
        static RNG: std::cell::RefCell<rand::rngs::SmallRng> =
            std::cell::RefCell::new(rand::rngs::SmallRng::seed_from_u64(
                std::collections::hash_map::RandomState::new()
                    .hash_one(std::thread::current().id()),
            ));
    }
    RNG.with(|rng| rng.borrow_mut().next_u64())
}

/// Wraps a gRPC server with [`RpcService`]. Without [`Traces`] (tracing off)
/// calls are timed only.
#[derive(Debug, Clone, Default)]
pub struct RpcLayer {
    traces: Option<Traces>,
}

impl RpcLayer {
    /// Traces calls as `traces` says (`None`: no tracing).
    pub fn new(traces: Option<Traces>) -> Self {
        Self { traces }
    }
}

impl<S> tower::Layer<S> for RpcLayer {
    type Service = RpcService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcService {
            inner,
            traces: self.traces.clone(),
        }
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct RpcService<S> {
    inner: S,
    traces: Option<Traces>,
}

/// How one call is traced.
enum CallTrace {
    /// Not traced: tracing is off, or the method is not one of ours.
    Off,
    /// Sampled: the server span, entered while the call is polled.
    Sampled(tracing::Span),
    /// Not sampled: no span; the thread is marked while the call is polled, and
    /// the server span is built at the end if the call failed or was slow.
    Unsampled {
        traces: Traces,
        /// The caller's span, when it sent one (not sampled).
        parent: Option<SpanContext>,
    },
}

impl CallTrace {
    /// Runs `f` as part of the call: inside its span, or marked unsampled.
    fn within<T>(&self, f: impl FnOnce() -> T) -> T {
        match self {
            CallTrace::Off => f(),
            CallTrace::Sampled(span) => span.in_scope(f),
            CallTrace::Unsampled { parent, .. } => {
                let mark = UnsampledCall {
                    trace_id: parent.as_ref().map(SpanContext::trace_id),
                };
                let previous = UNSAMPLED.with(|cell| cell.replace(Some(mark)));
                let _restore = Restore(previous);
                f()
            }
        }
    }
}

/// The mark of a thread polling an unsampled call (see [`unsampled_call`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnsampledCall {
    /// The caller's trace ID, when the caller sent one (for log correlation).
    pub trace_id: Option<TraceId>,
}

thread_local! {
    static UNSAMPLED: Cell<Option<UnsampledCall>> = const { Cell::new(None) };
}

/// Puts the previous mark back when a poll ends (or unwinds).
struct Restore(Option<UnsampledCall>);

impl Drop for Restore {
    fn drop(&mut self) {
        UNSAMPLED.with(|cell| cell.set(self.0));
    }
}

/// Whether this thread is polling a call whose trace is not sampled, and the
/// caller's trace ID if it sent one. Spans opened meanwhile would be dropped,
/// so [`super::UnsampledGate`] does not let them be built.
pub fn unsampled_call() -> Option<UnsampledCall> {
    UNSAMPLED.with(Cell::get)
}

/// The trace ID of the call this thread is polling: its server span's when the call is
/// sampled, else the caller's from the unsampled mark; `None` outside a traced call.
pub fn current_trace_id() -> Option<String> {
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    if span_context.is_valid() {
        return Some(span_context.trace_id().to_string());
    }
    unsampled_call()
        .and_then(|mark| mark.trace_id)
        .map(|id| id.to_string())
}

impl<S, B, ResBody> tower::Service<http::Request<B>> for RpcService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body,
{
    type Response = http::Response<RpcBody<ResBody>>;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let start = Instant::now();
        let path = request.uri().path().trim_start_matches('/');
        let method = known_methods()
            .iter()
            .find(|m| m.as_str() == path)
            .map_or("_OTHER", String::as_str);
        let trace = match &self.traces {
            Some(traces) if method.starts_with("tessera.") => {
                call_trace(traces, method, request.headers())
            }
            _ => CallTrace::Off,
        };
        let future = trace.within(|| self.inner.call(request));
        Box::pin(async move {
            // The handler's future is polled as part of the call, so the
            // view's spans are the server span's children (or, unsampled, not
            // built). Only for each poll: a span entered across an await would
            // stay "current" on the worker thread for whatever task runs next.
            let response = {
                futures_util::pin_mut!(future);
                std::future::poll_fn(|cx| trace.within(|| future.as_mut().poll(cx))).await?
            };
            // A trailers-only answer (an error) carries its status here.
            let status = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok());
            let finish = Finish {
                trace,
                method,
                start,
                status,
                ended: false,
            };
            Ok(response.map(|inner| RpcBody {
                inner,
                finish: Some(finish),
            }))
        })
    }
}

/// The head decision for one call of ours.
fn call_trace(traces: &Traces, method: &'static str, headers: &http::HeaderMap) -> CallTrace {
    let parent = headers
        .contains_key("traceparent")
        .then(|| TraceContextPropagator::new().extract(&Headers(headers)))
        .map(|cx| cx.span().span_context().clone())
        .filter(SpanContext::is_valid);
    let sampled = match &parent {
        Some(parent) if traces.parent_based => parent.is_sampled(),
        _ => traces.sample_new_trace(),
    };
    if !sampled {
        return CallTrace::Unsampled {
            traces: traces.clone(),
            parent,
        };
    }
    let span = tracing::info_span!(
        target: "tessera::rpc",
        parent: None,
        SERVER_SPAN,
        otel.name = method,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        rpc.system.name = "grpc",
        rpc.method = method,
        rpc.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
    );
    if let Some(parent) = parent {
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
    }
    CallTrace::Sampled(span)
}

pin_project_lite::pin_project! {
    /// A response body that ends the call's span and records its duration when
    /// the body ends (or is dropped: the caller went away).
    pub struct RpcBody<B> {
        #[pin]
        inner: B,
        finish: Option<Finish>,
    }
}

impl<B: Body> Body for RpcBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let inner = this.inner;
        let polled = match this.finish.as_ref() {
            // A stream's sections are polled here: as part of the call.
            Some(finish) => finish.trace.within(|| inner.poll_frame(cx)),
            None => inner.poll_frame(cx),
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(trailers), Some(finish)) = (frame.trailers_ref(), this.finish.as_mut())
                {
                    finish.status = trailers
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse().ok())
                        .or(finish.status);
                    finish.ended = true;
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => {
                if let Some(mut finish) = this.finish.take() {
                    finish.ended = true;
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What is recorded when a call ends.
struct Finish {
    trace: CallTrace,
    method: &'static str,
    start: Instant,
    status: Option<i32>,
    ended: bool,
}

impl Drop for Finish {
    fn drop(&mut self) {
        let code = match (self.status, self.ended) {
            (Some(code), _) => grpc_code_name(code),
            // The body was dropped before it ended: the caller went away.
            (None, false) => "CANCELLED",
            (None, true) => "UNKNOWN",
        };
        let failed = SERVER_ERRORS.contains(&code);
        let took = self.start.elapsed();
        match &self.trace {
            CallTrace::Off => {}
            CallTrace::Sampled(span) => {
                span.record("rpc.response.status_code", code);
                if failed {
                    span.record("error.type", code);
                    span.record("otel.status_code", "ERROR");
                }
            }
            CallTrace::Unsampled { traces, parent } => {
                if failed || took >= traces.keep_slower_than {
                    tail_span(traces, parent.as_ref(), self.method, code, failed, took);
                }
            }
        }
        call_duration().record(
            took.as_secs_f64(),
            &[
                KeyValue::new("rpc.system.name", "grpc"),
                KeyValue::new("rpc.method", self.method),
                KeyValue::new("rpc.response.status_code", code),
            ],
        );
    }
}

/// The server span of an unsampled call that failed or was slow, built after
/// the fact with its real start and end. [`super::sampling::Sampler`] keeps
/// it by its [`TAIL_ATTRIBUTE`].
fn tail_span(
    traces: &Traces,
    parent: Option<&SpanContext>,
    method: &'static str,
    code: &'static str,
    failed: bool,
    took: Duration,
) {
    let end = SystemTime::now();
    let mut attributes = vec![
        KeyValue::new(TAIL_ATTRIBUTE.0, TAIL_ATTRIBUTE.1),
        KeyValue::new("rpc.system.name", "grpc"),
        KeyValue::new("rpc.method", method),
        KeyValue::new("rpc.response.status_code", code),
    ];
    if failed {
        attributes.push(KeyValue::new("error.type", code));
    }
    let cx = match parent {
        Some(parent) => opentelemetry::Context::new().with_remote_span_context(parent.clone()),
        None => opentelemetry::Context::new(),
    };
    let mut span = traces
        .tracer
        .span_builder(method)
        .with_kind(SpanKind::Server)
        .with_start_time(end.checked_sub(took).unwrap_or(end))
        .with_attributes(attributes)
        .start_with_context(&traces.tracer, &cx);
    if failed {
        span.set_status(Status::error(""));
    }
    span.end_with_timestamp(end);
}

fn call_duration() -> &'static Histogram<f64> {
    static HISTOGRAM: OnceLock<Histogram<f64>> = OnceLock::new();
    HISTOGRAM.get_or_init(|| {
        opentelemetry::global::meter("tessera")
            .f64_histogram(opentelemetry_semantic_conventions::metric::RPC_SERVER_CALL_DURATION)
            .with_unit("s")
            .with_description("Duration of each gRPC call this server answered")
            .with_boundaries(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
            ])
            .build()
    })
}

/// Request headers as the propagator reads them.
struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
    use tower::{Layer as _, Service as _};
    use tracing::Instrument as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    /// Keeps what is exported.
    #[derive(Debug, Clone, Default)]
    struct Exported(Arc<Mutex<Vec<SpanData>>>);

    impl SpanExporter for Exported {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.0.lock().unwrap().extend(batch);
            Ok(())
        }
    }

    /// A handler that opens a child span, waits `delay` and answers `status`.
    async fn handler(
        status: i32,
        delay: Duration,
    ) -> Result<http::Response<String>, std::convert::Infallible> {
        let child = tracing::info_span!(target: "tessera::test", "child");
        BUILT.with(|built| built.set(built.get() + usize::from(!child.is_disabled())));
        async {
            // Opened while the handler is polled again, after a wait.
            tokio::time::sleep(delay).await;
            let _late = tracing::info_span!(target: "tessera::test", "late");
        }
        .instrument(child)
        .await;
        let mut response = http::Response::new(String::new());
        response
            .headers_mut()
            .insert("grpc-status", http::HeaderValue::from(status));
        Ok(response)
    }

    thread_local! {
        /// Child spans the handler found built (not disabled) on this thread.
        static BUILT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    const METHOD: &str = "/tessera.v1.PatientViewService/GetPatientView";

    /// Runs one call through the layer (ratio, tail threshold) with a
    /// subscriber set up as in production, and returns the exported spans.
    async fn call(
        ratio: f64,
        traceparent: Option<&str>,
        status: i32,
        delay: Duration,
    ) -> Vec<SpanData> {
        let exported = Exported::default();
        let provider = SdkTracerProvider::builder()
            .with_sampler(super::super::sampling::Sampler::new(ratio))
            .with_simple_exporter(exported.clone())
            .build();
        // As `Telemetry::init` sets it up: logs, then traces.
        let subscriber = tracing_subscriber::Registry::default()
            .with(super::super::UnsampledGate {
                level: tracing_subscriber::filter::LevelFilter::INFO,
            })
            .with(super::super::log_layer(
                super::super::log_filter(&crate::LogSettings::default()),
                crate::LogFormat::Text,
            ))
            .with(super::super::traced_spans(super::super::otel_layer(
                &provider,
            )));
        let _default = tracing::subscriber::set_default(subscriber);
        let traces = Traces::new(provider.tracer("test"), ratio, Duration::from_millis(100));
        let mut service =
            RpcLayer::new(Some(traces)).layer(tower::service_fn(move |_: http::Request<()>| {
                handler(status, delay)
            }));
        let mut request = http::Request::builder().uri(METHOD);
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        let response = service.call(request.body(()).unwrap()).await.unwrap();
        let body = response.into_body();
        drop(http_body_util::BodyExt::collect(body).await);
        let _ = provider.force_flush();
        exported.0.lock().unwrap().clone()
    }

    fn names(spans: &[SpanData]) -> Vec<&str> {
        let mut names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
        names.sort_unstable();
        names
    }

    const SAMPLED: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const DROPPED: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
    const GET_VIEW: &str = "tessera.v1.PatientViewService/GetPatientView";

    #[tokio::test(flavor = "current_thread")]
    async fn a_sampled_call_is_one_tree_under_the_callers_span() {
        let spans = call(0.0, Some(SAMPLED), 0, Duration::ZERO).await;
        assert_eq!(names(&spans), ["child", "late", GET_VIEW]);
        let server = spans.iter().find(|s| s.name == GET_VIEW).unwrap();
        assert_eq!(
            server.span_context.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(server.parent_span_id.to_string(), "b7ad6b7169203331");
        let child = spans.iter().find(|s| s.name == "child").unwrap();
        let late = spans.iter().find(|s| s.name == "late").unwrap();
        assert_eq!(child.parent_span_id, server.span_context.span_id());
        assert_eq!(late.parent_span_id, child.span_context.span_id());
        assert!(
            !server
                .attributes
                .iter()
                .any(|kv| kv.key.as_str() == TAIL_ATTRIBUTE.0)
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn new_traces_follow_the_ratio() {
        assert_eq!(call(1.0, None, 0, Duration::ZERO).await.len(), 3);
        assert!(call(0.0, None, 0, Duration::ZERO).await.is_empty());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_unsampled_fast_call_builds_no_span_at_all() {
        // The caller dropped it; our ratio would keep it: the caller wins.
        BUILT.with(|built| built.set(0));
        assert!(call(1.0, Some(DROPPED), 0, Duration::ZERO).await.is_empty());
        // Not even built in the registry (not just dropped at export).
        assert_eq!(BUILT.with(std::cell::Cell::get), 0);
        // The control: a sampled call builds it.
        assert_eq!(call(1.0, None, 0, Duration::ZERO).await.len(), 3);
        assert_eq!(BUILT.with(std::cell::Cell::get), 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_unsampled_slow_or_failed_call_keeps_its_server_span_only() {
        for (status, delay, failed) in [
            (0, Duration::from_millis(150), false),
            (14, Duration::ZERO, true),
        ] {
            for traceparent in [None, Some(DROPPED)] {
                let spans = call(0.0, traceparent, status, delay).await;
                assert_eq!(names(&spans), [GET_VIEW], "{status} {traceparent:?}");
                let server = &spans[0];
                let attribute = |key: &str| {
                    server
                        .attributes
                        .iter()
                        .find(|kv| kv.key.as_str() == key)
                        .map(|kv| kv.value.to_string())
                };
                assert_eq!(attribute(TAIL_ATTRIBUTE.0).as_deref(), Some("tail"));
                assert_eq!(attribute("rpc.method").as_deref(), Some(GET_VIEW));
                assert_eq!(server.span_kind, SpanKind::Server);
                assert!(server.span_context.is_sampled());
                let took = server.end_time.duration_since(server.start_time).unwrap();
                assert!(took >= delay, "{took:?}");
                if failed {
                    assert_eq!(
                        attribute("rpc.response.status_code").as_deref(),
                        Some("UNAVAILABLE")
                    );
                    assert_eq!(attribute("error.type").as_deref(), Some("UNAVAILABLE"));
                    assert!(matches!(server.status, Status::Error { .. }));
                }
                if traceparent.is_some() {
                    assert_eq!(
                        server.span_context.trace_id().to_string(),
                        "0af7651916cd43dd8448eb211c80319c"
                    );
                    assert_eq!(server.parent_span_id.to_string(), "b7ad6b7169203331");
                }
            }
        }
    }

    #[test]
    fn the_unsampled_mark_holds_only_while_the_call_is_polled() {
        let provider = SdkTracerProvider::builder().build();
        let traces = Traces::new(provider.tracer("test"), 0.0, Duration::from_secs(1));
        let trace_id = TraceId::from(7);
        let parent = SpanContext::new(
            trace_id,
            opentelemetry::trace::SpanId::from(9),
            opentelemetry::trace::TraceFlags::default(),
            true,
            opentelemetry::trace::TraceState::default(),
        );
        let call = CallTrace::Unsampled {
            traces,
            parent: Some(parent),
        };
        assert_eq!(unsampled_call(), None);
        let inside = call.within(|| {
            // Nested (a call polled inside a call) restores the outer mark.
            CallTrace::Off.within(|| ());
            unsampled_call()
        });
        assert_eq!(
            inside,
            Some(UnsampledCall {
                trace_id: Some(trace_id)
            })
        );
        assert_eq!(unsampled_call(), None);
    }

    #[test]
    fn ratio_thresholds() {
        let provider = SdkTracerProvider::builder().build();
        let traces = |ratio| Traces::new(provider.tracer("test"), ratio, Duration::ZERO);
        assert!((0..1000).all(|_| traces(1.0).sample_new_trace()));
        assert!((0..1000).all(|_| !traces(0.0).sample_new_trace()));
        assert!((0..1000).all(|_| !traces(f64::NAN).sample_new_trace()));
        let one_percent = traces(0.01);
        let kept = (0..100_000)
            .filter(|_| one_percent.sample_new_trace())
            .count();
        // 1,000 expected; a standard deviation is about 31.
        assert!((700..1300).contains(&kept), "{kept}");
    }
}
