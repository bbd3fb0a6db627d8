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
//!
//! The standard `OTEL_TRACES_SAMPLER` values choose the head rule
//! ([`SamplerName`], [`Sampling`]): `parentbased_*` follow the caller's
//! decision, the others ignore it; `always_on` / `always_off` keep all or no
//! new traces, `*traceidratio` keep `OTEL_TRACES_SAMPLER_ARG` of them. Where the
//! specification defaults the argument to 1.0, Tessera uses the config's
//! `sampling_ratio` (which defaults to 0.1); unset, the sampler is
//! `parentbased_traceidratio`. An unknown value is ignored with a warning
//! (the specification's rule for unknown values), leaving that default. The
//! tail rule above applies whatever the sampler.

use opentelemetry::trace::{Link, SpanKind, TraceContextExt, TraceId};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SamplingDecision, SamplingResult, ShouldSample};

use super::rpc::TAIL_ATTRIBUTE;

/// A standard `OTEL_TRACES_SAMPLER` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamplerName {
    /// `always_on`: every new trace, whatever the caller decided.
    AlwaysOn,
    /// `always_off`: no new trace, whatever the caller decided.
    AlwaysOff,
    /// `traceidratio`: the argument's share, whatever the caller decided.
    TraceIdRatio,
    /// `parentbased_always_on`: the caller's decision, else every trace.
    ParentBasedAlwaysOn,
    /// `parentbased_always_off`: the caller's decision, else none.
    ParentBasedAlwaysOff,
    /// `parentbased_traceidratio`: the caller's decision, else the
    /// argument's share (Tessera's default).
    ParentBasedTraceIdRatio,
}

/// An `OTEL_TRACES_SAMPLER` value that is none of the standard ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown OTEL_TRACES_SAMPLER value")]
pub struct UnknownSampler;

impl std::str::FromStr for SamplerName {
    type Err = UnknownSampler;

    /// Case-insensitive, as the specification asks of enum values.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Ok(match value.trim().to_ascii_lowercase().as_str() {
            "always_on" => Self::AlwaysOn,
            "always_off" => Self::AlwaysOff,
            "traceidratio" => Self::TraceIdRatio,
            "parentbased_always_on" => Self::ParentBasedAlwaysOn,
            "parentbased_always_off" => Self::ParentBasedAlwaysOff,
            "parentbased_traceidratio" => Self::ParentBasedTraceIdRatio,
            _ => return Err(UnknownSampler),
        })
    }
}

/// The head rule: whether the caller's decision is followed, and the share
/// of new traces kept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// A call whose caller sent a trace context follows its decision.
    pub parent_based: bool,
    /// The share of new traces kept, 0.0 to 1.0.
    pub ratio: f64,
}

impl Sampling {
    /// Parent-based, keeping `ratio` of new traces.
    pub fn parent_based(ratio: f64) -> Self {
        Self {
            parent_based: true,
            ratio: clamp_ratio(ratio),
        }
    }

    /// The rule `sampler` names with argument `arg` (`OTEL_TRACES_SAMPLER` and
    /// `OTEL_TRACES_SAMPLER_ARG`); the ratio samplers without an argument use
    /// `default_ratio` (the config's), and no sampler is
    /// `parentbased_traceidratio`.
    pub fn new(sampler: Option<SamplerName>, arg: Option<f64>, default_ratio: f64) -> Self {
        let ratio = arg.unwrap_or(default_ratio);
        let (parent_based, ratio) = match sampler {
            Some(SamplerName::AlwaysOn) => (false, 1.0),
            Some(SamplerName::AlwaysOff) => (false, 0.0),
            Some(SamplerName::TraceIdRatio) => (false, ratio),
            Some(SamplerName::ParentBasedAlwaysOn) => (true, 1.0),
            Some(SamplerName::ParentBasedAlwaysOff) => (true, 0.0),
            Some(SamplerName::ParentBasedTraceIdRatio) | None => (true, ratio),
        };
        Self {
            parent_based,
            ratio: clamp_ratio(ratio),
        }
    }
}

/// `ratio` within 0.0 to 1.0 (NaN: 0.0).
fn clamp_ratio(ratio: f64) -> f64 {
    if ratio.is_nan() {
        0.0
    } else {
        ratio.clamp(0.0, 1.0)
    }
}

/// Head sampling ([`Sampling`]) that records the RPC layer's server spans.
#[derive(Debug, Clone)]
pub struct Sampler {
    ratio: opentelemetry_sdk::trace::Sampler,
    parent_based: bool,
}

impl Sampler {
    /// Parent-based: keeps `ratio` (0.0 to 1.0) of new traces that do not
    /// start at a call.
    pub fn new(ratio: f64) -> Self {
        Self::with_sampling(Sampling::parent_based(ratio))
    }

    /// Samples as `sampling` says.
    pub fn with_sampling(sampling: Sampling) -> Self {
        Self {
            ratio: opentelemetry_sdk::trace::Sampler::TraceIdRatioBased(sampling.ratio),
            parent_based: sampling.parent_based,
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
                // Not parent-based: the RPC layer decided for the call itself.
                Some(_) if server && !self.parent_based => SamplingDecision::RecordAndSample,
                // A remote parent's decision is not followed: the ratio decides.
                Some(parent) if !self.parent_based && parent.is_remote() => {
                    self.ratio
                        .should_sample(None, trace_id, name, span_kind, attributes, links)
                        .decision
                }
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

    #[test]
    fn samplers_that_are_not_parent_based_ignore_the_caller() {
        use SamplingDecision::{Drop, RecordAndSample};
        let on = Sampler::with_sampling(Sampling::new(Some(SamplerName::AlwaysOn), None, 0.1));
        let off = Sampler::with_sampling(Sampling::new(Some(SamplerName::AlwaysOff), None, 0.1));
        // The RPC layer kept the call although the caller dropped it.
        assert_eq!(
            decide(&off, Some(remote(false)), SpanKind::Server, &[]),
            RecordAndSample
        );
        // Other spans under a remote parent: the ratio, not the caller.
        assert_eq!(
            decide(&on, Some(remote(false)), SpanKind::Internal, &[]),
            RecordAndSample
        );
        assert_eq!(
            decide(&off, Some(remote(true)), SpanKind::Internal, &[]),
            Drop
        );
    }
}
