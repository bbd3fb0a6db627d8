//! Which traces are kept.
//!
//! Head sampling, parent-based: a call whose caller sent a `traceparent`
//! follows the caller's decision; a new trace is kept with the configured
//! ratio. For gRPC calls the decision is made by [`super::rpc::RpcLayer`]
//! before any span exists (so a dropped call costs almost nothing), and the
//! server spans it opens are the kept ones: this sampler records them. Other
//! new traces (spans outside a call) get the ratio here.
//!
//! Failed and slow calls are kept too, as far as one process can: the RPC
//! layer builds the server span of such a dropped call after the fact, marked
//! with [`super::rpc::TAIL_ATTRIBUTE`], which this sampler keeps. The children
//! of a dropped trace, and the silos' spans under them, are not recorded;
//! keeping whole failed traces is a tail decision for a collector (the
//! OpenTelemetry Collector's `tail_sampling` processor).

use opentelemetry::trace::{Link, SpanKind, TraceContextExt, TraceId};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SamplingDecision, SamplingResult, ShouldSample};

use super::rpc::TAIL_ATTRIBUTE;

/// Parent-based ratio sampling that records the RPC layer's server spans.
#[derive(Debug, Clone)]
pub struct Sampler {
    ratio: opentelemetry_sdk::trace::Sampler,
}

impl Sampler {
    /// Keeps `ratio` (0.0 to 1.0) of new traces that do not start at a call.
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
        let server = *span_kind == SpanKind::Server;
        let tail = server
            && attributes.iter().any(|kv| {
                kv.key.as_str() == TAIL_ATTRIBUTE.0 && kv.value.as_str() == TAIL_ATTRIBUTE.1
            });
        let decision = if tail {
            // A failed or slow call the head decision dropped.
            SamplingDecision::RecordAndSample
        } else {
            match parent {
                Some(parent) if parent.is_sampled() => SamplingDecision::RecordAndSample,
                Some(_) => SamplingDecision::Drop,
                // The RPC layer opens a server span only for a kept call.
                None if server => SamplingDecision::RecordAndSample,
                None => {
                    self.ratio
                        .should_sample(None, trace_id, name, span_kind, attributes, links)
                        .decision
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceState};

    fn decide(
        sampler: &Sampler,
        parent: Option<SpanContext>,
        kind: SpanKind,
        attributes: &[KeyValue],
    ) -> SamplingDecision {
        let cx = parent.map(|p| Context::new().with_remote_span_context(p));
        sampler
            .should_sample(cx.as_ref(), TraceId::from(7), "x", &kind, attributes, &[])
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
    fn the_callers_decision_wins_and_tail_spans_are_kept() {
        use SamplingDecision::{Drop, RecordAndSample};
        let never = Sampler::new(0.0);
        let always = Sampler::new(1.0);
        let tail = [KeyValue::new(TAIL_ATTRIBUTE.0, TAIL_ATTRIBUTE.1)];
        assert_eq!(
            decide(&never, Some(remote(true)), SpanKind::Server, &[]),
            RecordAndSample
        );
        assert_eq!(
            decide(&never, Some(remote(true)), SpanKind::Internal, &[]),
            RecordAndSample
        );
        assert_eq!(
            decide(&always, Some(remote(false)), SpanKind::Server, &[]),
            Drop
        );
        assert_eq!(
            decide(&always, Some(remote(false)), SpanKind::Client, &[]),
            Drop
        );
        // A server span with no parent exists only for a call the RPC layer kept.
        assert_eq!(decide(&never, None, SpanKind::Server, &[]), RecordAndSample);
        // Outside calls the ratio decides.
        assert_eq!(decide(&never, None, SpanKind::Internal, &[]), Drop);
        assert_eq!(
            decide(&always, None, SpanKind::Internal, &[]),
            RecordAndSample
        );
        // The tail rule's server span is kept whatever the caller said.
        assert_eq!(
            decide(&never, Some(remote(false)), SpanKind::Server, &tail),
            RecordAndSample
        );
        assert_eq!(
            decide(&never, None, SpanKind::Server, &tail),
            RecordAndSample
        );
        // The mark means nothing on other kinds.
        assert_eq!(
            decide(&never, Some(remote(false)), SpanKind::Internal, &tail),
            Drop
        );
    }
}
