//! Authentication to the FHIR server: none, a static bearer token, or SMART Backend
//! Services (OAuth 2 client credentials with a `private_key_jwt` assertion signed
//! RS384 or ES384). The access token is cached and refreshed `refresh_before` its
//! expiry; one refresh runs at a time. Tokens and keys never reach Debug or logs.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::{ACCEPT, HeaderValue};
use serde::{Deserialize, Serialize};
use tessera_adapter_core::FetchError;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::config::SigningAlgorithm;

/// The `client_assertion_type` of a JWT client assertion.
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// How long an assertion is valid (SMART allows at most five minutes).
const ASSERTION_LIFETIME: Duration = Duration::from_secs(300);
/// A token without `expires_in` is assumed to live this long.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(300);

/// How requests are authenticated.
#[derive(Clone)]
pub(crate) enum Auth {
    /// Not at all.
    None,
    /// With a fixed `Authorization` header.
    Static(HeaderValue),
    /// With a SMART Backend Services token.
    Smart(Arc<SmartBackend>),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Static(_) => f.write_str("Static(***)"),
            Auth::Smart(smart) => f
                .debug_struct("Smart")
                .field("token_url", &smart.token_url.as_str())
                .field("client_id", &smart.client_id)
                .finish_non_exhaustive(),
        }
    }
}

impl Auth {
    /// A static bearer token.
    pub(crate) fn bearer(token: &str) -> Result<Self, String> {
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| "the bearer token is not a valid header value".to_owned())?;
        value.set_sensitive(true);
        Ok(Auth::Static(value))
    }

    /// The `Authorization` header for a request, fetching a token if need be.
    pub(crate) async fn header(
        &self,
        deadline: Instant,
    ) -> Result<Option<HeaderValue>, FetchError> {
        match self {
            Auth::None => Ok(None),
            Auth::Static(value) => Ok(Some(value.clone())),
            Auth::Smart(smart) => smart.header(deadline).await.map(Some),
        }
    }

    /// Whether a 401 may be cured by a fresh token.
    pub(crate) fn refreshes(&self) -> bool {
        matches!(self, Auth::Smart(_))
    }

    /// Forgets the cached token.
    pub(crate) async fn invalidate(&self) {
        if let Auth::Smart(smart) = self {
            *smart.cached.lock().await = None;
        }
    }
}

/// A SMART Backend Services client.
pub(crate) struct SmartBackend {
    http: reqwest::Client,
    token_url: url::Url,
    client_id: String,
    scope: String,
    key: EncodingKey,
    algorithm: Algorithm,
    key_id: Option<String>,
    refresh_before: Duration,
    cached: Mutex<Option<Token>>,
}

struct Token {
    header: HeaderValue,
    refresh_at: Instant,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: u64,
    iat: u64,
    jti: String,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// What a SMART Backend Services client needs.
pub(crate) struct SmartSettings<'a> {
    pub(crate) http: reqwest::Client,
    pub(crate) token_url: &'a str,
    pub(crate) client_id: &'a str,
    pub(crate) scope: &'a str,
    pub(crate) private_key_pem: &'a [u8],
    pub(crate) algorithm: SigningAlgorithm,
    pub(crate) key_id: Option<&'a str>,
    pub(crate) refresh_before: Duration,
}

impl SmartBackend {
    /// A client; the key is parsed now, so a bad key fails the build.
    pub(crate) fn new(settings: SmartSettings<'_>) -> Result<Self, String> {
        let (key, algorithm) = match settings.algorithm {
            SigningAlgorithm::Rs384 => (
                EncodingKey::from_rsa_pem(settings.private_key_pem),
                Algorithm::RS384,
            ),
            SigningAlgorithm::Es384 => (
                EncodingKey::from_ec_pem(settings.private_key_pem),
                Algorithm::ES384,
            ),
        };
        let key = key.map_err(|_| {
            "the private key file is not a PEM key of the configured algorithm".to_owned()
        })?;
        let token_url = url::Url::parse(settings.token_url)
            .map_err(|_| "the token URL does not parse".to_owned())?;
        Ok(Self {
            http: settings.http,
            token_url,
            client_id: settings.client_id.to_owned(),
            scope: settings.scope.to_owned(),
            key,
            algorithm,
            key_id: settings.key_id.map(str::to_owned),
            refresh_before: settings.refresh_before,
            cached: Mutex::new(None),
        })
    }

    async fn header(&self, deadline: Instant) -> Result<HeaderValue, FetchError> {
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref()
            && Instant::now() < token.refresh_at
        {
            return Ok(token.header.clone());
        }
        let token = tokio::time::timeout_at(deadline, self.request_token())
            .await
            .map_err(|_| FetchError::DeadlineExceeded)??;
        let header = token.header.clone();
        *cached = Some(token);
        Ok(header)
    }

    /// A signed client assertion for the token endpoint.
    pub(crate) fn assertion(&self) -> Result<String, FetchError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let claims = Claims {
            iss: &self.client_id,
            sub: &self.client_id,
            aud: self.token_url.as_str(),
            exp: now + ASSERTION_LIFETIME.as_secs(),
            iat: now,
            jti: uuid::Uuid::new_v4().to_string(),
        };
        let mut header = Header::new(self.algorithm);
        header.typ = Some("JWT".to_owned());
        header.kid.clone_from(&self.key_id);
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(|_| FetchError::Denied {
            message: "cannot sign the client assertion".to_owned(),
        })
    }

    async fn request_token(&self) -> Result<Token, FetchError> {
        let assertion = self.assertion()?;
        let form = [
            ("grant_type", "client_credentials"),
            ("scope", self.scope.as_str()),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion.as_str()),
        ];
        let requested = Instant::now();
        let response = self
            .http
            .post(self.token_url.clone())
            .header(ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|_| FetchError::unavailable("cannot reach the token endpoint"))?;
        let status = response.status();
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(FetchError::unavailable(format!(
                "the token endpoint answered HTTP {}",
                status.as_u16()
            )));
        }
        if !status.is_success() {
            tracing::warn!(
                http.response.status_code = status.as_u16(),
                "token endpoint refused the client"
            );
            return Err(FetchError::Denied {
                message: format!(
                    "the token endpoint refused the client (HTTP {})",
                    status.as_u16()
                ),
            });
        }
        let body = response
            .bytes()
            .await
            .map_err(|_| FetchError::unavailable("the token endpoint's answer was cut short"))?;
        let token: TokenResponse =
            serde_json::from_slice(&body).map_err(|_| FetchError::Denied {
                message: "the token endpoint's answer is not a token response".to_owned(),
            })?;
        if token
            .token_type
            .as_deref()
            .is_some_and(|t| !t.eq_ignore_ascii_case("bearer"))
        {
            return Err(FetchError::Denied {
                message: "the token endpoint issued a token that is not a bearer token".to_owned(),
            });
        }
        let mut header =
            HeaderValue::from_str(&format!("Bearer {}", token.access_token)).map_err(|_| {
                FetchError::Denied {
                    message: "the access token is not a valid header value".to_owned(),
                }
            })?;
        header.set_sensitive(true);
        let lifetime = token
            .expires_in
            .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
        let refresh_at = requested + lifetime.saturating_sub(self.refresh_before);
        tracing::debug!(expires_in_s = lifetime.as_secs(), "fetched an access token");
        Ok(Token { header, refresh_at })
    }
}
