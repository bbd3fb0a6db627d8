//! HTTP to the API: credentials (fixed header or an OAuth token, cached), one
//! page per request under the caller's deadline with a client span and W3C
//! trace headers, and every failure mapped to a [`FetchError`] named by its
//! status only — never the URL (it holds the local ID) or the body.

use std::path::Path;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{StatusCode, Url};
use serde_json::Value;
use tessera_adapter_core::{BuildError, FetchError, retry_after, trace};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::{AuthConfig, RestConfig, Secret};
use crate::paging::next_link;
use crate::section::{Section, header_map, path_segment};

/// How much sooner than the deadline the API is told it passes.
const DEADLINE_MARGIN: Duration = Duration::from_millis(20);
/// An OAuth token is renewed this long before it expires.
const TOKEN_EARLY: Duration = Duration::from_secs(30);

/// How the adapter authenticates.
enum Auth {
    /// A fixed header (bearer token or API key).
    Header(HeaderName, HeaderValue),
    /// OAuth 2.0 client credentials.
    OAuth {
        token_url: Url,
        client_id: String,
        client_secret: String,
        scope: Option<String>,
        /// The token and when it expires.
        cached: Mutex<Option<(String, Instant)>>,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Header(name, _) => write!(f, "Header({name}: <secret>)"),
            Self::OAuth { client_id, .. } => write!(f, "OAuth({client_id}, <secret>)"),
        }
    }
}

/// The API, as the adapter talks to it.
#[derive(Debug)]
pub(crate) struct Client {
    /// The source system, for logs.
    system: String,
    http: reqwest::Client,
    base: Url,
    headers: HeaderMap,
    auth: Option<Auth>,
    deadline_header: Option<HeaderName>,
}

impl Client {
    /// A client from the configuration; secret files are resolved against
    /// `base_dir`. No I/O but reading secrets.
    pub(crate) fn new(config: &RestConfig, base_dir: &Path) -> Result<Self, BuildError> {
        let base = Url::parse(&config.base_url)
            .map_err(|_| BuildError::config("base_url", "is not a URL"))?;
        let auth = config
            .auth
            .as_ref()
            .map(|auth| Auth::new(auth, base_dir))
            .transpose()?;
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            // A redirect could carry credentials elsewhere; the API's own links
            // are followed by pagination, same origin only.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tessera-adapter-rest/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|_| BuildError::Setup("cannot create the HTTP client".to_owned()))?;
        Ok(Self {
            system: config.system.clone(),
            http,
            base,
            headers: header_map(&config.headers, "headers")?,
            auth,
            deadline_header: config
                .deadline_header
                .as_deref()
                .map(HeaderName::try_from)
                .transpose()
                .map_err(|_| BuildError::config("deadline_header", "is not a header name"))?,
        })
    }

    /// The API's base URL.
    pub(crate) fn base(&self) -> &Url {
        &self.base
    }

    /// One page: its JSON and the `Link` header's next URL (same origin only).
    pub(crate) async fn page(
        &self,
        section: &Section,
        url: Url,
        local_id: &str,
        deadline: Instant,
    ) -> Result<(Value, Option<Url>), FetchError> {
        let mut request = self
            .http
            .request(section.method.clone(), url.clone())
            .timeout(remaining(deadline)?)
            .headers(self.headers.clone())
            .headers(section.headers.clone());
        if let Some(body) = section.body(local_id) {
            request = request.json(&body);
        }
        if let Some(header) = &self.deadline_header {
            let left = remaining(deadline)?;
            let left = left.saturating_sub(DEADLINE_MARGIN.min(left / 5));
            request = request.header(header.clone(), left.as_millis().max(1).to_string());
        }
        // The client span's URL is the path with the local ID's segment
        // replaced; no query (cursors and parameters may name the patient).
        let segment = path_segment(local_id);
        let template = trace::redact_path(&url, |s| s != segment);
        let span = trace::http_client_span(section.method.as_str(), &url, &template);
        if let Some(headers) = trace::headers(&span) {
            request = request.header("traceparent", headers.traceparent);
            if let Some(state) = headers.tracestate {
                request = request.header("tracestate", state);
            }
        }
        let request = self.authorize(request, deadline).await?;
        let response = request.send().instrument(span.clone()).await.map_err(|e| {
            trace::record_error(&span, "transport");
            transport_error(&e)
        })?;
        let status = response.status();
        trace::record_http_status(&span, status.as_u16());
        if !status.is_success() {
            if status == StatusCode::UNAUTHORIZED {
                self.forget_token().await;
            }
            return Err(status_error(status, response.headers(), "upstream"));
        }
        let next = next_link(response.headers(), &url).filter(|next| {
            let same = next.origin() == self.base.origin();
            if !same {
                tracing::warn!(system = %self.system, "a next link leaves the API's origin; not followed");
            }
            same
        });
        let bytes = response.bytes().await.map_err(|e| transport_error(&e))?;
        let json = serde_json::from_slice(&bytes).map_err(|_| FetchError::Malformed {
            message: "the response body is not JSON".to_owned(),
        })?;
        Ok((json, next))
    }

    /// A GET of `url` with credentials, by `timeout`; with `strict`, anything
    /// but 2xx is a failure, else any answer is.
    pub(crate) async fn probe(
        &self,
        url: &Url,
        strict: bool,
        timeout: Duration,
    ) -> Result<(), FetchError> {
        let deadline = Instant::now() + timeout;
        let request = self
            .http
            .get(url.clone())
            .timeout(timeout)
            .headers(self.headers.clone());
        let request = self.authorize(request, deadline).await?;
        let response = request.send().await.map_err(|e| transport_error(&e))?;
        let status = response.status();
        if strict && !status.is_success() {
            return Err(status_error(status, response.headers(), "upstream"));
        }
        Ok(())
    }

    /// Adds the credentials to a request.
    async fn authorize(
        &self,
        request: reqwest::RequestBuilder,
        deadline: Instant,
    ) -> Result<reqwest::RequestBuilder, FetchError> {
        match &self.auth {
            None => Ok(request),
            Some(Auth::Header(name, value)) => Ok(request.header(name.clone(), value.clone())),
            Some(Auth::OAuth { .. }) => {
                let token = self.token(deadline).await?;
                Ok(request.header(
                    reqwest::header::AUTHORIZATION,
                    sensitive(&format!("Bearer {token}"), "token").map_err(|_| {
                        FetchError::Denied {
                            message: "the token endpoint issued an unusable token".to_owned(),
                        }
                    })?,
                ))
            }
        }
    }

    /// The OAuth token, from the cache or the token endpoint.
    async fn token(&self, deadline: Instant) -> Result<String, FetchError> {
        let Some(Auth::OAuth {
            token_url,
            client_id,
            client_secret,
            scope,
            cached,
        }) = &self.auth
        else {
            return Err(FetchError::unavailable("no OAuth configured"));
        };
        // Held across the request: concurrent fetches share one renewal.
        let mut cached = cached.lock().await;
        if let Some((token, expires)) = &*cached
            && Instant::now() + TOKEN_EARLY < *expires
        {
            return Ok(token.clone());
        }
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", client_id.as_str()),
            ("client_secret", client_secret.as_str()),
        ];
        if let Some(scope) = scope {
            form.push(("scope", scope.as_str()));
        }
        let response = self
            .http
            .post(token_url.clone())
            .timeout(remaining(deadline)?)
            .form(&form)
            .send()
            .await
            .map_err(|e| transport_error(&e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(match status.as_u16() {
                400 | 401 | 403 => FetchError::Denied {
                    message: format!("HTTP {} from the token endpoint", status.as_u16()),
                },
                _ => status_error(status, response.headers(), "the token endpoint"),
            });
        }
        let body: Value = response.json().await.map_err(|e| {
            if e.is_timeout() {
                FetchError::DeadlineExceeded
            } else {
                FetchError::Malformed {
                    message: "the token endpoint's answer is not JSON".to_owned(),
                }
            }
        })?;
        let token = body["access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| FetchError::Malformed {
                message: "the token endpoint's answer has no access_token".to_owned(),
            })?
            .to_owned();
        let lifetime = Duration::from_secs(body["expires_in"].as_u64().unwrap_or(3600));
        *cached = Some((token.clone(), Instant::now() + lifetime));
        Ok(token)
    }

    /// Forgets the OAuth token (the API refused it).
    async fn forget_token(&self) {
        if let Some(Auth::OAuth { cached, .. }) = &self.auth {
            *cached.lock().await = None;
        }
    }
}

impl Auth {
    /// The configured credentials, with their secrets read.
    fn new(config: &AuthConfig, base_dir: &Path) -> Result<Self, BuildError> {
        Ok(match config {
            AuthConfig::Bearer { token } => {
                let token = read_secret(token, base_dir, "auth.token")?;
                Self::Header(
                    reqwest::header::AUTHORIZATION,
                    sensitive(&format!("Bearer {token}"), "auth.token")?,
                )
            }
            AuthConfig::ApiKey { header, key } => {
                let name = HeaderName::try_from(header.as_str())
                    .map_err(|_| BuildError::config("auth.header", "is not a header name"))?;
                let key = read_secret(key, base_dir, "auth.key")?;
                Self::Header(name, sensitive(&key, "auth.key")?)
            }
            AuthConfig::Oauth2ClientCredentials {
                token_url,
                client_id,
                client_secret,
                scope,
            } => Self::OAuth {
                token_url: Url::parse(token_url)
                    .map_err(|_| BuildError::config("auth.token_url", "is not a URL"))?,
                client_id: client_id.clone(),
                client_secret: read_secret(client_secret, base_dir, "auth.client_secret")?,
                scope: scope.clone(),
                cached: Mutex::new(None),
            },
        })
    }
}

/// A secret's value, resolved from the config or its `env:`/`file:` reference.
fn read_secret(secret: &Secret, base_dir: &Path, field: &str) -> Result<String, BuildError> {
    let value = secret
        .resolve_in(base_dir)
        .map_err(|e| BuildError::config(field, e.to_string()))?;
    Ok(value.expose().to_owned())
}

/// A header value that HTTP/2's HPACK never indexes and `Debug` never prints.
fn sensitive(value: &str, field: &str) -> Result<HeaderValue, BuildError> {
    let mut value = HeaderValue::try_from(value)
        .map_err(|_| BuildError::config(field, "the secret is not a valid header value"))?;
    value.set_sensitive(true);
    Ok(value)
}

/// The time left before `deadline`, or the deadline error.
pub(crate) fn remaining(deadline: Instant) -> Result<Duration, FetchError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(FetchError::DeadlineExceeded)
    } else {
        Ok(left)
    }
}

/// A non-2xx answer as a fetch error, named by its status only.
fn status_error(status: StatusCode, headers: &HeaderMap, from: &str) -> FetchError {
    let code = status.as_u16();
    match code {
        404 => FetchError::NotFound,
        401 | 403 => FetchError::Denied {
            message: format!("HTTP {code} from {from}"),
        },
        429 => FetchError::RateLimited {
            retry_after: retry_after(headers),
        },
        _ => FetchError::Unavailable {
            message: format!("HTTP {code} from {from}"),
            retry_after: retry_after(headers),
        },
    }
}

/// A transport error, without its URL (which holds the local ID).
fn transport_error(e: &reqwest::Error) -> FetchError {
    if e.is_timeout() {
        FetchError::DeadlineExceeded
    } else if e.is_connect() {
        FetchError::unavailable("cannot connect to upstream")
    } else if e.is_decode() || e.is_body() {
        FetchError::unavailable("the upstream response broke off")
    } else {
        FetchError::unavailable("the HTTP request to upstream failed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_become_errors_that_keep_retry_after() {
        let mut headers = HeaderMap::new();
        headers.insert(reqwest::header::RETRY_AFTER, HeaderValue::from_static("7"));
        let wait = Some(Duration::from_secs(7));
        let error = |code| {
            status_error(
                StatusCode::from_u16(code).expect("status"),
                &headers,
                "upstream",
            )
        };
        assert!(matches!(error(404), FetchError::NotFound));
        assert!(matches!(error(403), FetchError::Denied { .. }));
        assert!(
            matches!(error(429), FetchError::RateLimited { retry_after } if retry_after == wait)
        );
        match error(503) {
            FetchError::Unavailable {
                message,
                retry_after,
            } => {
                assert_eq!(message, "HTTP 503 from upstream");
                assert_eq!(retry_after, wait);
            }
            other => panic!("{other:?}"),
        }
    }
}
