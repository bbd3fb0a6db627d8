//! The server side of every gRPC call: continue the caller's trace, open the
//! call's server span, and time it.
//!
//! [`RpcLayer`] wraps the tonic server. For each call it extracts the W3C
//! trace context (`traceparent`, `tracestate`) from the request's metadata,
//! opens the `grpc.server` span as its child (`otel.name` and `rpc.method` the
//! fully-qualified method, from a fixed set: anything else is `_OTHER`), runs
//! the handler inside it, and ends it when the response body ends — after a
//! stream's last message — with the call's `grpc-status`. The call's duration
//! goes to `rpc.server.call.duration` (seconds) by method and status. Health
//! checks and reflection are timed but not traced (probes would drown the
//! traces).

use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body, Frame, SizeHint};
use opentelemetry::KeyValue;
use opentelemetry::metrics::Histogram;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tessera_adapter_core::trace::grpc_code_name;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The name of every gRPC server span (its `otel.name` is the method).
pub const SERVER_SPAN: &str = "grpc.server";

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

/// Wraps a gRPC server with [`RpcService`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RpcLayer;

impl<S> tower::Layer<S> for RpcLayer {
    type Service = RpcService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcService { inner }
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct RpcService<S> {
    inner: S,
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
        let path = request.uri().path().trim_start_matches('/');
        let method = known_methods()
            .iter()
            .find(|m| m.as_str() == path)
            .map_or("_OTHER", String::as_str);
        let traced = method.starts_with("tessera.");
        let span = if traced {
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
            let parent = TraceContextPropagator::new().extract(&Headers(request.headers()));
            let _ = span.set_parent(parent);
            mark_if_unsampled(&span);
            span
        } else {
            tracing::Span::none()
        };
        let start = Instant::now();
        let future = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        Box::pin(async move {
            // The handler's future is polled inside the span, so the view's
            // spans are its children. The span is entered for each poll only:
            // a guard held across an await would leave it "current" on the
            // worker thread for whatever task runs next there.
            let response = {
                futures_util::pin_mut!(future);
                std::future::poll_fn(|cx| {
                    let _entered = span.enter();
                    future.as_mut().poll(cx)
                })
                .await?
            };
            // A trailers-only answer (an error) carries its status here.
            let status = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok());
            let finish = Finish {
                span,
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

/// Marks a server span whose trace is not sampled (in the registry's span
/// extensions): its children are then not built as OpenTelemetry spans at
/// all ([`super::SampledOnly`]). The span itself is still recorded, for the
/// tail decision of [`super::sampling::KeepSlowAndFailed`].
#[derive(Debug, Clone, Copy)]
pub struct Unsampled;

fn mark_if_unsampled(span: &tracing::Span) {
    use opentelemetry::trace::TraceContextExt;
    use tracing_subscriber::registry::{LookupSpan, SpanData};

    // Asking for the context makes the sampling decision now.
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if !span_context.is_valid() || span_context.is_sampled() {
        // No tracing pipeline, or a sampled trace.
        return;
    }
    span.with_subscriber(|(id, dispatch)| {
        if let Some(registry) = dispatch.downcast_ref::<tracing_subscriber::Registry>()
            && let Some(data) = registry.span_data(id)
        {
            data.extensions_mut().insert(Unsampled);
        }
    });
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
        let polled = this.inner.poll_frame(cx);
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
    span: tracing::Span,
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
        self.span.record("rpc.response.status_code", code);
        if SERVER_ERRORS.contains(&code) {
            self.span.record("error.type", code);
            self.span.record("otel.status_code", "ERROR");
        }
        call_duration().record(
            self.start.elapsed().as_secs_f64(),
            &[
                KeyValue::new("rpc.system.name", "grpc"),
                KeyValue::new("rpc.method", self.method),
                KeyValue::new("rpc.response.status_code", code),
            ],
        );
    }
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
