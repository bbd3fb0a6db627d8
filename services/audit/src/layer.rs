//! The tower layer that audits every call. [`AuditLayer`] sits outside the auth
//! layer: for each call to a `tessera.v1` service it puts an [`AccessLog`] into the
//! request, lets the auth layer and the handler run (they note the caller, the purpose,
//! the masters and the sections), and appends one [`AuditRecord`] — refusals included —
//! before the response leaves. When the trail cannot be written the call fails
//! UNAVAILABLE instead (fail closed), and [`AuditLayer::failures`] wakes the readiness
//! watch; while the trail is down, calls are refused at once unless a probe finds it
//! back.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::HeaderValue;
use tessera_auth::{Access, AccessLog, AuthMethod};
use tessera_proto::error::{ServiceError, grpc_code_name, status};
use tokio::sync::Notify;
use tonic_types::StatusExt;

use crate::{AuditRecord, AuditSink, Withheld};

/// The header carrying a call's request ID; taken from the caller when well-formed,
/// made up otherwise, and returned on the response.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The longest request ID taken from a caller.
const MAX_REQUEST_ID_LEN: usize = 128;

/// Calls to these services are audited: everything that touches patient data.
const AUDITED_PREFIX: &str = "/tessera.v1.";

/// The trail could not record the call, so the call is refused.
#[derive(Debug, thiserror::Error)]
#[error("the audit trail is unavailable; the call was not answered")]
pub struct AuditUnavailable;

impl ServiceError for AuditUnavailable {
    fn code(&self) -> tonic::Code {
        tonic::Code::Unavailable
    }

    fn reason(&self) -> &'static str {
        "AUDIT_UNAVAILABLE"
    }
}

/// The current call's trace ID, if it has one; the server's telemetry knows how.
pub type TraceIdFn = fn() -> Option<String>;

/// Audits every `tessera.v1` call to `sink`.
#[derive(Clone)]
pub struct AuditLayer {
    sink: Arc<dyn AuditSink>,
    failures: Arc<Notify>,
    trace_id: TraceIdFn,
}

impl std::fmt::Debug for AuditLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLayer").finish_non_exhaustive()
    }
}

impl AuditLayer {
    /// A layer writing to `sink`, taking each call's trace ID from `trace_id` (read
    /// while the call's span is current).
    pub fn new(sink: Arc<dyn AuditSink>, trace_id: TraceIdFn) -> Self {
        Self {
            sink,
            failures: Arc::new(Notify::new()),
            trace_id,
        }
    }

    /// Notified each time a call is refused because the trail failed.
    pub fn failures(&self) -> Arc<Notify> {
        self.failures.clone()
    }

    /// The sink records go to.
    pub fn sink(&self) -> Arc<dyn AuditSink> {
        self.sink.clone()
    }
}

impl<S> tower::Layer<S> for AuditLayer {
    type Service = AuditService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuditService {
            inner,
            layer: self.clone(),
        }
    }
}

/// See [`AuditLayer`].
#[derive(Debug, Clone)]
pub struct AuditService<S> {
    inner: S,
    layer: AuditLayer,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B, RB> tower::Service<http::Request<B>> for AuditService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    RB: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    RB::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let path = request.uri().path().to_owned();
        if !path.starts_with(AUDITED_PREFIX) {
            return Box::pin(async move {
                let response = inner.call(request).await?;
                Ok(response.map(tonic::body::Body::new))
            });
        }
        let request_id = request_id(request.headers());
        // Read now: this runs inside the server span (or the unsampled mark).
        let trace_id = (self.layer.trace_id)();
        let log = AccessLog::default();
        request.extensions_mut().insert(log.clone());
        let layer = self.layer.clone();
        Box::pin(async move {
            if !layer.sink.healthy() && layer.sink.probe().await.is_err() {
                layer.failures.notify_one();
                return Ok(refused(&request_id));
            }
            let response = inner.call(request).await?;
            let record = record(
                &path,
                &log.snapshot(),
                response.headers(),
                request_id.clone(),
            );
            let record = AuditRecord { trace_id, ..record };
            match layer.sink.append(record).await {
                Ok(()) => {
                    let mut response = response.map(tonic::body::Body::new);
                    if let Ok(value) = HeaderValue::from_str(&request_id) {
                        response.headers_mut().insert(REQUEST_ID_HEADER, value);
                    }
                    Ok(response)
                }
                Err(err) => {
                    tracing::error!(error = %err, "audit append failed; refusing the call");
                    layer.failures.notify_one();
                    Ok(refused(&request_id))
                }
            }
        })
    }
}

fn refused(request_id: &str) -> http::Response<tonic::body::Body> {
    let mut response = status(&AuditUnavailable).into_http();
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// The caller's request ID when it is short, printable ASCII without spaces; a new
/// UUID otherwise.
fn request_id(headers: &http::HeaderMap) -> String {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= MAX_REQUEST_ID_LEN
                && v.bytes().all(|b| b.is_ascii_graphic())
        })
        .map_or_else(new_request_id, str::to_owned)
}

/// A new request ID: a UUID (version 4 in form) made from a random value drawn once per
/// process plus a counter, so that a call costs no system call for randomness. Request
/// IDs correlate records and logs; they are not secrets.
fn new_request_id() -> String {
    static BASE: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let base = *BASE.get_or_init(|| uuid::Uuid::new_v4().as_u128());
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let bytes = base.wrapping_add(u128::from(n)).to_be_bytes();
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// The audit record of a call to `rpc` whose handler noted `access` and whose response
/// started with `headers` (a `grpc-status` there is a refusal or an error; none is a call
/// that went on to answer).
fn record(
    rpc: &str,
    access: &Access,
    headers: &http::HeaderMap,
    request_id: String,
) -> AuditRecord {
    let (caller, method, end_user) = match &access.caller {
        Some(caller) => (
            caller.principal.as_str(),
            match caller.method {
                AuthMethod::Mtls { .. } => crate::AuthMethod::Mtls,
                AuthMethod::Jwt { .. } => crate::AuthMethod::Jwt,
                AuthMethod::AnonymousLoopback => crate::AuthMethod::AnonymousLoopback,
            },
            caller.end_user.clone(),
        ),
        None => ("unknown", crate::AuthMethod::None, None),
    };
    let purpose = access.purpose.as_deref().unwrap_or_default();
    let mut record = AuditRecord::now(caller, method, rpc, purpose);
    record.end_user = end_user;
    record.break_glass = access.break_glass_reason.is_some();
    record.break_glass_reason = access.break_glass_reason.clone();
    record.masters = access
        .masters
        .iter()
        .map(|m| format!("masters/{m}"))
        .collect();
    record.sections_returned = access.sections_returned.clone();
    record.sections_withheld = withheld(&access.sections_withheld);
    record.sources_returned = access.sources_returned.clone();
    record.sources_withheld = withheld(&access.sources_withheld);
    record.request_id = request_id;
    if let Some(status) = tonic::Status::from_header_map(headers)
        && status.code() != tonic::Code::Ok
    {
        record.outcome = grpc_code_name(status.code() as i32).to_owned();
        record.reason = status.get_details_error_info().map(|info| info.reason);
    }
    record
}

fn withheld(items: &[(String, String)]) -> Vec<Withheld> {
    items
        .iter()
        .map(|(name, reason)| Withheld {
            name: name.clone(),
            reason: reason.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_taken_only_when_well_formed() {
        let mut headers = http::HeaderMap::new();
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_static("req-42"));
        assert_eq!(request_id(&headers), "req-42");
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_static("two words"));
        let made = request_id(&headers);
        assert_ne!(made, "two words");
        assert!(uuid::Uuid::parse_str(&made).is_ok());
        let long = "x".repeat(MAX_REQUEST_ID_LEN + 1);
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_str(&long).unwrap());
        assert_ne!(request_id(&headers), long);
    }

    #[test]
    fn made_request_ids_are_distinct_version_4_uuids() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| new_request_id()).collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            let uuid = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(uuid.get_version_num(), 4, "{id}");
        }
    }

    #[test]
    fn a_refusal_is_recorded_with_its_code_and_reason_and_no_caller() {
        let refusal: http::Response<tonic::body::Body> =
            status(&tessera_auth::AuthError::NoCredentials).into_http();
        let record = record(
            "/tessera.v1.IdentityService/GetMaster",
            &Access::default(),
            refusal.headers(),
            "r1".into(),
        );
        assert_eq!(record.outcome, "UNAUTHENTICATED");
        assert_eq!(record.reason.as_deref(), Some("CREDENTIALS_MISSING"));
        assert_eq!(record.caller, "unknown");
        assert_eq!(record.auth, crate::AuthMethod::None);
        assert!(record.masters.is_empty());
    }

    #[test]
    fn an_answered_call_is_ok_with_what_the_handler_noted() {
        let access = Access {
            caller: Some(tessera_auth::Caller {
                principal: "ehr-ui".into(),
                method: AuthMethod::Mtls {
                    san: "spiffe://tessera.dev/ehr-ui".into(),
                },
                end_user: Some("dr-who".into()),
            }),
            purpose: Some("ETREAT".into()),
            break_glass_reason: Some("unconscious patient".into()),
            masters: vec![7],
            sections_returned: vec!["ehr.encounters".into()],
            sections_withheld: vec![("mkt.consents".into(), "CONSENT_OPT_OUT".into())],
            ..Access::default()
        };
        let record = record(
            "/tessera.v1.PatientViewService/GetPatientView",
            &access,
            &http::HeaderMap::new(),
            "r2".into(),
        );
        assert_eq!(record.outcome, "ok");
        assert_eq!(record.caller, "ehr-ui");
        assert_eq!(record.auth, crate::AuthMethod::Mtls);
        assert_eq!(record.end_user.as_deref(), Some("dr-who"));
        assert!(record.break_glass);
        assert_eq!(record.masters, ["masters/7"]);
        assert_eq!(record.sections_withheld[0].reason, "CONSENT_OPT_OUT");
    }
}
