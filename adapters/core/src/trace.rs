//! Trace context for the calls an adapter makes to its silo.
//!
//! The aggregator runs every adapter call inside its `adapter.attempt` span; an
//! adapter opens a client span per upstream request inside it (with
//! [`http_client_span`], or its own for SQL and gRPC) and puts [`headers`] on the
//! request, so the silo continues the caller's trace (W3C Trace Context:
//! `traceparent`, `tracestate`). Without a tracing pipeline (no OpenTelemetry
//! layer installed) there is no context and [`headers`] is `None`.
//!
//! Attribute names follow OpenTelemetry semantic conventions 1.42.0 (the version
//! the gateway pins). Nothing here records a URL's query or a patient's path
//! segment: [`redact_path`] replaces them before a URL reaches a span.

use opentelemetry::propagation::{Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The name of every HTTP client span (its `otel.name` is the method).
pub const HTTP_CLIENT_SPAN: &str = "http.client";

/// The name of every gRPC client span (its `otel.name` is the method).
pub const GRPC_CLIENT_SPAN: &str = "grpc.client";

/// The W3C headers that carry a span's context to a silo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceHeaders {
    /// `traceparent`: version 00, trace ID, the client span's ID, flags.
    pub traceparent: String,
    /// `tracestate`, when the trace carries vendor state.
    pub tracestate: Option<String>,
}

/// The headers for a request made inside `span`, or `None` when the span has no
/// OpenTelemetry context (tracing is off, or the span is disabled). OpenTelemetry's
/// W3C propagator writes them, so they are what every other OpenTelemetry
/// client would send.
pub fn headers(span: &tracing::Span) -> Option<TraceHeaders> {
    if span.is_disabled() {
        return None;
    }
    from_context(&span.context())
}

/// The headers for a request that starts a trace of its own (the caller sent
/// none): span `span_id` of trace `trace_id`, sampled. `None` when either ID is
/// zero, which W3C Trace Context forbids.
pub fn root_headers(trace_id: u128, span_id: u64) -> Option<TraceHeaders> {
    let span_context = SpanContext::new(
        TraceId::from(trace_id),
        SpanId::from(span_id),
        TraceFlags::SAMPLED,
        false,
        TraceState::default(),
    );
    from_context(&opentelemetry::Context::new().with_remote_span_context(span_context))
}

/// The W3C headers for an OpenTelemetry context, if it holds a valid span.
fn from_context(context: &opentelemetry::Context) -> Option<TraceHeaders> {
    let mut collected = Collected::default();
    TraceContextPropagator::new().inject_context(context, &mut collected);
    Some(TraceHeaders {
        traceparent: collected.traceparent?,
        tracestate: collected.tracestate.filter(|state| !state.is_empty()),
    })
}

/// The outgoing W3C headers, as the propagator sets them.
#[derive(Default)]
struct Collected {
    traceparent: Option<String>,
    tracestate: Option<String>,
}

impl Injector for Collected {
    fn set(&mut self, key: &str, value: String) {
        match key {
            "traceparent" => self.traceparent = Some(value),
            "tracestate" => self.tracestate = Some(value),
            _ => {}
        }
    }
}

/// A client span for one HTTP request: `otel.name` is the method, and the URL is
/// recorded as `url.template` (path only, patient segments replaced by the
/// caller with [`redact_path`]) with the server's address and port. Record
/// `http.response.status_code` and `error.type` on it when the answer comes.
pub fn http_client_span(method: &str, url: &url::Url, template: &str) -> tracing::Span {
    tracing::info_span!(
        target: "tessera::adapter",
        HTTP_CLIENT_SPAN,
        otel.name = method,
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        http.request.method = method,
        server.address = url.host_str().unwrap_or_default(),
        server.port = url.port_or_known_default().unwrap_or_default(),
        url.template = template,
        http.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
    )
}

/// A client span for one gRPC call to an out-of-process adapter: `rpc.method` is
/// the fully-qualified method (`tessera.v1.SourceAdapterService/FetchRecords`).
/// Record the answer with [`record_grpc_status`].
pub fn grpc_client_span(method: &'static str) -> tracing::Span {
    tracing::info_span!(
        target: "tessera::adapter",
        GRPC_CLIENT_SPAN,
        otel.name = method,
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        rpc.system.name = "grpc",
        rpc.method = method,
        rpc.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
    )
}

/// The name of every database client span (its `otel.name` is the
/// database system).
pub const DB_CLIENT_SPAN: &str = "db.client";

/// A client span for one SQL statement: `db.system.name` (`postgresql`,
/// `sqlite`, `mariadb`, ...), the operation (`SELECT`) and the configured
/// section it serves. The statement's text and parameters are never recorded
/// (the parameter is a patient's local ID). Record a failure with
/// [`record_db_error`].
pub fn db_client_span(system: &'static str, section: &str) -> tracing::Span {
    tracing::info_span!(
        target: "tessera::adapter",
        DB_CLIENT_SPAN,
        otel.name = system,
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        db.system.name = system,
        db.operation.name = "SELECT",
        tessera.section = section,
        db.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
    )
}

/// Records a failed statement on its client span: the database's own error
/// code (SQLSTATE, SQLite result code) when there is one, else a fixed word.
pub fn record_db_error(span: &tracing::Span, code: Option<&str>, error_type: &'static str) {
    match code {
        Some(code) => {
            span.record("db.response.status_code", code);
            span.record("error.type", code);
        }
        None => {
            span.record("error.type", error_type);
        }
    }
    span.record("otel.status_code", "ERROR");
}

/// Records a gRPC call's status code name (`OK`, `UNAVAILABLE`, ...) on its
/// client span; anything but OK is an error.
pub fn record_grpc_status(span: &tracing::Span, code: &'static str) {
    span.record("rpc.response.status_code", code);
    if code != "OK" {
        span.record("error.type", code);
        span.record("otel.status_code", "ERROR");
    }
}

pub use tessera_proto::error::grpc_code_name;

/// Records the outcome of an HTTP request on its client span: the status code,
/// and for 4xx/5xx the status as `error.type` with the span's status set to
/// error.
pub fn record_http_status(span: &tracing::Span, status: u16) {
    span.record("http.response.status_code", status);
    if status >= 400 {
        span.record("error.type", status);
        span.record("otel.status_code", "ERROR");
    }
}

/// Records a request that got no answer (connection refused, timeout): a fixed
/// `error.type` word, never the transport's message (it may hold the URL).
pub fn record_error(span: &tracing::Span, error_type: &'static str) {
    span.record("error.type", error_type);
    span.record("otel.status_code", "ERROR");
}

/// A URL path with every segment `keep` refuses replaced by `{id}`, without the
/// query: `/fhir/Patient/123/_history/2` with FHIR's rule gives
/// `/fhir/Patient/{id}/_history/{id}`.
pub fn redact_path(url: &url::Url, mut keep: impl FnMut(&str) -> bool) -> String {
    let mut out = String::new();
    for segment in url.path().split('/').skip(1) {
        out.push('/');
        if segment.is_empty() || keep(segment) {
            out.push_str(segment);
        } else {
            out.push_str("{id}");
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_keeps_only_what_the_rule_allows_and_never_the_query() {
        let url = url::Url::parse("http://h/fhir/Patient/123/_history/2?name=SMITH").unwrap();
        let fhir = |s: &str| {
            s == "fhir" || s.starts_with('_') || s.chars().next().is_some_and(char::is_uppercase)
        };
        assert_eq!(redact_path(&url, fhir), "/fhir/Patient/{id}/_history/{id}");
        let root = url::Url::parse("http://h").unwrap();
        assert_eq!(redact_path(&root, |_| true), "/");
    }

    #[test]
    fn without_a_tracing_pipeline_there_are_no_headers() {
        let span = tracing::info_span!("test");
        assert_eq!(headers(&span), None);
    }

    #[test]
    fn a_span_context_becomes_w3c_headers() {
        let span_context = |state: TraceState| {
            SpanContext::new(
                TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
                SpanId::from_hex("00f067aa0ba902b7").unwrap(),
                TraceFlags::SAMPLED,
                true,
                state,
            )
        };
        let context = opentelemetry::Context::new()
            .with_remote_span_context(span_context(TraceState::default()));
        assert_eq!(
            from_context(&context),
            Some(TraceHeaders {
                traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
                tracestate: None,
            })
        );
        let state = TraceState::from_key_value([("vendor", "x")]).unwrap();
        let context = opentelemetry::Context::new().with_remote_span_context(span_context(state));
        assert_eq!(
            from_context(&context).and_then(|h| h.tracestate),
            Some("vendor=x".to_owned())
        );
        assert_eq!(from_context(&opentelemetry::Context::new()), None);
    }

    #[test]
    fn a_trace_of_its_own_is_sampled_and_needs_nonzero_ids() {
        let headers = root_headers(
            0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
            0x00f0_67aa_0ba9_02b7,
        );
        assert_eq!(
            headers.map(|h| h.traceparent),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned())
        );
        assert_eq!(root_headers(0, 1), None);
        assert_eq!(root_headers(1, 0), None);
    }
}
