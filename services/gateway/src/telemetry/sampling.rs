//! Which traces are kept.
//!
//! Head sampling, parent-based: a call whose caller sent a `traceparent`
//! follows the caller's decision; a new trace is kept with the configured
//! ratio (by trace ID, so every service that sees it agrees).
//!
//! Failed and slow calls are kept too, as far as one process can: a new
//! trace the ratio drops still has its *server span* recorded (not its
//! children, so unsampled calls stay cheap), and [`KeepSlowAndFailed`] exports
//! that span when it ends with an error status or lasted at least the
//! threshold. The children of a dropped trace, and the silos' spans under
//! them, are not recorded; keeping whole failed traces is a tail decision for
//! a collector (the OpenTelemetry Collector's `tail_sampling` processor).

use std::time::Duration;

use opentelemetry::trace::{Link, SpanKind, Status, TraceContextExt, TraceFlags, TraceId};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    SamplingDecision, SamplingResult, ShouldSample, SpanData, SpanProcessor,
};

/// Parent-based ratio sampling that still records dropped traces' server spans.
#[derive(Debug, Clone)]
pub struct Sampler {
    ratio: opentelemetry_sdk::trace::Sampler,
}

impl Sampler {
    /// Keeps `ratio` (0.0 to 1.0) of new traces.
    pub fn new(ratio: f64) -> Self {
        Self {
            ratio: opentelemetry_sdk::trace::Sampler::TraceIdRatioBased(ratio),
        }
    }
}

impl ShouldSample for Sampler {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        span_kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        let parent = parent_context
            .map(|cx| cx.span().span_context().clone())
            .filter(|sc| sc.is_valid());
        let decision = match parent {
            Some(parent) if parent.is_sampled() => SamplingDecision::RecordAndSample,
            // A local child of a dropped trace: not recorded at all.
            Some(parent) if !parent.is_remote() => SamplingDecision::Drop,
            // The caller dropped it: record our server span for the tail check.
            Some(_) => record_only_if_server(span_kind),
            None => match self
                .ratio
                .should_sample(None, trace_id, name, span_kind, attributes, links)
                .decision
            {
                SamplingDecision::RecordAndSample => SamplingDecision::RecordAndSample,
                _ => record_only_if_server(span_kind),
            },
        };
        SamplingResult {
            decision,
            attributes: Vec::new(),
            trace_state: parent_context
                .map(|cx| cx.span().span_context().trace_state().clone())
                .unwrap_or_default(),
        }
    }
}

fn record_only_if_server(kind: &SpanKind) -> SamplingDecision {
    if *kind == SpanKind::Server {
        SamplingDecision::RecordOnly
    } else {
        SamplingDecision::Drop
    }
}

/// Passes sampled spans on; of the recorded-only server spans, passes those that
/// failed or were slow (marked sampled, with `tessera.sampling = "tail"`) and
/// drops the rest.
#[derive(Debug)]
pub struct KeepSlowAndFailed<P> {
    next: P,
    slow: Duration,
}

impl<P: SpanProcessor> KeepSlowAndFailed<P> {
    /// Wraps `next` (the batch exporter's processor).
    pub fn new(next: P, slow: Duration) -> Self {
        Self { next, slow }
    }

    fn keep(&self, span: &SpanData) -> bool {
        let failed = matches!(span.status, Status::Error { .. });
        let took = span
            .end_time
            .duration_since(span.start_time)
            .unwrap_or_default();
        failed || took >= self.slow
    }
}

impl<P: SpanProcessor> SpanProcessor for KeepSlowAndFailed<P> {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &Context) {
        self.next.on_start(span, cx);
    }

    fn on_end(&self, mut span: SpanData) {
        if span.span_context.is_sampled() {
            self.next.on_end(span);
            return;
        }
        if !self.keep(&span) {
            return;
        }
        let sc = &span.span_context;
        span.span_context = opentelemetry::trace::SpanContext::new(
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags() | TraceFlags::SAMPLED,
            sc.is_remote(),
            sc.trace_state().clone(),
        );
        span.attributes
            .push(KeyValue::new("tessera.sampling", "tail"));
        self.next.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.next.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.next.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.next.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanId, TraceState};

    fn decide(sampler: &Sampler, parent: Option<SpanContext>, kind: SpanKind) -> SamplingDecision {
        let cx = parent.map(|p| Context::new().with_remote_span_context(p));
        sampler
            .should_sample(cx.as_ref(), TraceId::from(7), "x", &kind, &[], &[])
            .decision
    }

    fn remote(sampled: bool) -> SpanContext {
        let flags = if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        SpanContext::new(
            TraceId::from(7),
            SpanId::from(9),
            flags,
            true,
            TraceState::default(),
        )
    }

    #[test]
    fn the_callers_decision_wins_and_dropped_server_spans_are_still_recorded() {
        let never = Sampler::new(0.0);
        let always = Sampler::new(1.0);
        assert_eq!(
            decide(&never, Some(remote(true)), SpanKind::Server),
            SamplingDecision::RecordAndSample
        );
        assert_eq!(
            decide(&always, Some(remote(false)), SpanKind::Server),
            SamplingDecision::RecordOnly
        );
        assert_eq!(
            decide(&always, None, SpanKind::Server),
            SamplingDecision::RecordAndSample
        );
        assert_eq!(
            decide(&never, None, SpanKind::Server),
            SamplingDecision::RecordOnly
        );
        assert_eq!(
            decide(&never, None, SpanKind::Internal),
            SamplingDecision::Drop
        );
    }
}
