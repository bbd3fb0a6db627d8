//! HTTP to the FHIR server: fhir-sdk's client over reqwest (rustls) with its own
//! retries turned off, and this module's instead — 429 and 502/503/504 retried only
//! when the wait (`Retry-After`, or the configured backoff) fits the caller's
//! deadline; authentication on every request; a W3C `traceparent` on every request;
//! every error mapped to a [`FetchError`] with a fixed message (never a URL, which
//! carries patient ids, and never the server's diagnostics).

use std::time::Duration;

use fhir_sdk::client::{Client, RequestSettings};
use fhir_sdk::version::FhirR4B;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap};
use reqwest::{Method, StatusCode};
use tessera_adapter_core::FetchError;
use tokio::time::Instant;
use tracing::Instrument;
use tracing::instrument::WithSubscriber;
use tracing::subscriber::NoSubscriber;
use url::Url;

use crate::auth::Auth;
use crate::config::RetryConfig;
use crate::mapping;

/// `Retry-After`, read as every adapter reads it.
pub(crate) use tessera_adapter_core::retry_after;

/// The media type the adapter asks for and sends.
pub(crate) const FHIR_JSON: &str = "application/fhir+json";
/// The most bytes of one response body.
const MAX_BODY: usize = 32 * 1024 * 1024;

/// One request the adapter makes: a read, a search page, or a search by POST.
#[derive(Debug, Clone)]
pub(crate) enum Call {
    /// `GET` of an absolute URL on the server's origin.
    Get(Url),
    /// `POST [type]/_search` with a form body.
    SearchPost {
        /// `[base]/[type]/_search`.
        url: Url,
        /// The search parameters.
        form: Vec<(String, String)>,
    },
}

impl Call {
    fn url(&self) -> &Url {
        match self {
            Call::Get(url) | Call::SearchPost { url, .. } => url,
        }
    }
}

/// A trace for one fetch: every request of it carries the same trace id and its
/// own parent id.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Trace {
    trace_id: u128,
}

impl Trace {
    /// A new trace.
    pub(crate) fn new() -> Self {
        let mut trace_id = uuid::Uuid::new_v4().as_u128();
        if trace_id == 0 {
            trace_id = 1;
        }
        Self { trace_id }
    }

    /// A `traceparent` header value for one request (W3C Trace Context, version 00,
    /// sampled).
    pub(crate) fn traceparent(&self) -> String {
        let mut span_id = (uuid::Uuid::new_v4().as_u128() >> 64) as u64;
        if span_id == 0 {
            span_id = 1;
        }
        tessera_adapter_core::trace::root_headers(self.trace_id, span_id)
            .map(|headers| headers.traceparent)
            .unwrap_or_default()
    }
}

/// The FHIR server, as the adapter talks to it.
pub(crate) struct FhirHttp {
    sdk: Client<FhirR4B>,
    base: Url,
    auth: Auth,
    retry: RetryConfig,
    request_timeout: Duration,
}

impl FhirHttp {
    /// A client for the server at `base`.
    pub(crate) fn new(
        http: reqwest::Client,
        base: Url,
        auth: Auth,
        retry: RetryConfig,
        request_timeout: Duration,
    ) -> Result<Self, String> {
        let sdk = Client::<FhirR4B>::builder()
            .base_url(base.clone())
            .client(http)
            // Its retries ignore 429, 503 and Retry-After and know no deadline.
            .request_settings(RequestSettings::default().retries(0))
            .build()
            .map_err(|_| "cannot build the FHIR client".to_owned())?;
        Ok(Self {
            sdk,
            base,
            auth,
            retry,
            request_timeout,
        })
    }

    /// The server's base URL (ends with `/`).
    pub(crate) fn base(&self) -> &Url {
        &self.base
    }

    /// Whether `url` is on the server's origin.
    pub(crate) fn same_origin(&self, url: &Url) -> bool {
        url.origin() == self.base.origin()
    }

    /// Sends `call` and returns the body of a 2xx answer, retrying 429 and
    /// 502/503/504 while the wait fits `deadline`.
    pub(crate) async fn send(
        &self,
        call: &Call,
        trace: Trace,
        deadline: Instant,
    ) -> Result<Vec<u8>, FetchError> {
        if !self.same_origin(call.url()) {
            return Err(FetchError::Malformed {
                message: "refused a URL on another origin than the server's".to_owned(),
            });
        }
        let mut attempt = 1;
        let mut reauthenticated = false;
        loop {
            let own_limit = Instant::now() + self.request_timeout;
            let limit = deadline.min(own_limit);
            let span = self.client_span(call);
            let outcome = tokio::time::timeout_at(
                limit,
                self.attempt(call, trace, limit, &span)
                    .instrument(span.clone()),
            )
            .await
            .map_err(|_| {
                tessera_adapter_core::trace::record_error(&span, "timeout");
                if own_limit < deadline {
                    FetchError::unavailable("upstream timed out")
                } else {
                    FetchError::DeadlineExceeded
                }
            })?;
            let (status, headers, body) = outcome.inspect_err(|_| {
                tessera_adapter_core::trace::record_error(&span, "transport");
            })?;
            tessera_adapter_core::trace::record_http_status(&span, status.as_u16());
            drop(span);
            if status.is_success() {
                return Ok(body);
            }
            tracing::debug!(
                http.response.status_code = status.as_u16(),
                attempt,
                "fhir request not successful"
            );
            if status == StatusCode::UNAUTHORIZED && self.auth.refreshes() && !reauthenticated {
                // A token revoked or expired early: one fresh token, one more try.
                self.auth.invalidate().await;
                reauthenticated = true;
                continue;
            }
            let error = mapping::status_error(status, retry_after(&headers), &body);
            if !is_retryable_status(status) || attempt >= self.retry.max_attempts {
                return Err(error);
            }
            let wait = error.retry_after().unwrap_or(self.retry.backoff);
            if wait > self.retry.max_wait || Instant::now() + wait >= deadline {
                // The caller gets the hint and decides.
                return Err(error);
            }
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// The client span of one request: the URL's path with every patient segment
    /// replaced (`/fhir/Patient/{id}`), no query, no search form.
    fn client_span(&self, call: &Call) -> tracing::Span {
        let method = match call {
            Call::Get(_) => "GET",
            Call::SearchPost { .. } => "POST",
        };
        // After the base path come resource types (capitalised), operations
        // (`$everything`), `_search`/`_history`, and ids: only ids are replaced.
        let mut base = self
            .base
            .path_segments()
            .map_or(0, |s| s.count())
            .saturating_sub(1);
        let keep = |segment: &str| {
            if base > 0 {
                base -= 1;
                return true;
            }
            segment.starts_with(['_', '$'])
                || segment
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_uppercase())
                    && segment.chars().all(|c| c.is_ascii_alphabetic())
        };
        let template = tessera_adapter_core::trace::redact_path(call.url(), keep);
        tessera_adapter_core::trace::http_client_span(method, call.url(), &template)
    }

    async fn attempt(
        &self,
        call: &Call,
        trace: Trace,
        deadline: Instant,
        span: &tracing::Span,
    ) -> Result<(StatusCode, HeaderMap, Vec<u8>), FetchError> {
        let authorization = self.auth.header(deadline).await?;
        // The caller's trace when there is one; otherwise a trace of this fetch
        // alone, so the server's logs still group its requests.
        let (traceparent, tracestate) = match tessera_adapter_core::trace::headers(span) {
            Some(h) => (h.traceparent, h.tracestate),
            None => (trace.traceparent(), None),
        };
        let call = call.clone();
        let request = self.sdk.send_custom_request(move |http| {
            let builder = match call {
                Call::Get(url) => http.request(Method::GET, url),
                Call::SearchPost { url, form } => http.request(Method::POST, url).form(&form),
            };
            let mut builder = builder
                .header(ACCEPT, FHIR_JSON)
                .header("traceparent", traceparent);
            if let Some(state) = tracestate {
                builder = builder.header("tracestate", state);
            }
            match authorization {
                Some(value) => builder.header(AUTHORIZATION, value),
                None => builder,
            }
        });
        // fhir-sdk logs every request's full URL (patient ids, identifiers) at
        // info: its events go nowhere.
        let response = request
            .with_subscriber(NoSubscriber::default())
            .await
            .map_err(|e| sdk_error(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = read_body(response).await?;
        Ok((status, headers, body))
    }
}

async fn read_body(mut response: reqwest::Response) -> Result<Vec<u8>, FetchError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|_| FetchError::unavailable("the connection to upstream failed mid-answer"))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(FetchError::Malformed {
                message: "an upstream answer exceeded 32 MiB".to_owned(),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn is_retryable_status(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT
    )
}

/// The most redirects one request follows (all on its own origin).
const MAX_REDIRECTS: usize = 10;

/// Why a redirect was not followed (the error reqwest carries back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RedirectRefused {
    /// The redirect leads to another scheme, host or port than the request's.
    OtherOrigin,
    /// The chain is longer than [`MAX_REDIRECTS`].
    TooMany,
}

impl std::fmt::Display for RedirectRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::OtherOrigin => "refused a redirect to another origin than the server's",
            Self::TooMany => "too many redirects",
        })
    }
}

impl std::error::Error for RedirectRefused {}

/// The HTTP client's redirect policy: follow a redirect only to the origin
/// (scheme, host and port) of the request that started the chain, so that a
/// server (or whoever answers for it) cannot send the adapter, its
/// `Authorization` header or a patient's search elsewhere; at most
/// [`MAX_REDIRECTS`].
pub(crate) fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let refused = match attempt.previous().first() {
            Some(first) if first.origin() != attempt.url().origin() => {
                Some(RedirectRefused::OtherOrigin)
            }
            _ if attempt.previous().len() > MAX_REDIRECTS => Some(RedirectRefused::TooMany),
            _ => None,
        };
        match refused {
            Some(why) => attempt.error(why),
            None => attempt.follow(),
        }
    })
}

/// The redirect refusal behind a reqwest error, if that is what it is.
pub(crate) fn redirect_refused(error: &reqwest::Error) -> Option<RedirectRefused> {
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        if let Some(why) = e.downcast_ref::<RedirectRefused>() {
            return Some(*why);
        }
        source = e.source();
    }
    None
}

/// fhir-sdk's and reqwest's errors print the URL: only their kind is kept.
fn sdk_error(error: &fhir_sdk::client::Error) -> FetchError {
    use fhir_sdk::client::Error;
    match error {
        Error::Request(e) if e.is_redirect() => {
            let why = redirect_refused(e).unwrap_or(RedirectRefused::TooMany);
            tracing::warn!(reason = %why, "fhir redirect not followed");
            FetchError::Malformed {
                message: why.to_string(),
            }
        }
        Error::Request(e) if e.is_timeout() => FetchError::unavailable("upstream timed out"),
        Error::Request(e) if e.is_connect() => {
            FetchError::unavailable("cannot connect to upstream")
        }
        Error::Request(_) => FetchError::unavailable("the request to upstream failed"),
        Error::DifferentOrigin(_) => FetchError::Malformed {
            message: "refused a URL on another origin than the server's".to_owned(),
        },
        Error::DifferentFhirVersion(_) => FetchError::Malformed {
            message: "upstream speaks another FHIR version".to_owned(),
        },
        _ => FetchError::unavailable("the request to upstream failed"),
    }
}
