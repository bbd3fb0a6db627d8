//! JWT bearer tokens (OIDC access tokens): configuration, and a verifier with a cached JWKS.
//!
//! Keys come from the issuer's JWKS, fetched with reqwest and cached. A token whose `kid`
//! is not in the cache triggers one refetch, at most once per `jwks_refetch_interval`, so
//! rotated keys are picked up and a flood of made-up `kid`s cannot hammer the issuer.
//! `none` and the HS* algorithms are always refused: keys come from a JWKS.

use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::Digest as _;
use tokio::time::Instant;

use crate::AuthError;
use crate::caller::AuthMethod;

/// Largest allowed leeway for `exp` and `nbf`.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// How a JWKS fetch is bounded in time.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepting JWT bearer tokens from one issuer.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// The expected `iss` claim.
    pub issuer: String,
    /// Accepted `aud` values; a token must name at least one.
    pub audiences: Vec<String>,
    /// Accepted signature algorithms (`RS256`, `ES256`, `PS256`, `EdDSA`...); never `none`
    /// nor HS*.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// The issuer's JWKS URL (https, or http on a loopback host).
    pub jwks_url: String,
    /// Clock-skew allowance for `exp` and `nbf` (`30s`, at most `5m`).
    #[serde(default = "default_leeway", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub leeway: Duration,
    /// Claims naming the calling client, first present wins.
    #[serde(default = "default_caller_claims")]
    pub caller_claims: Vec<String>,
    /// The claim naming the end user the client acts for, if any.
    #[serde(default)]
    pub end_user_claim: Option<String>,
    /// At most one JWKS refetch for an unknown `kid` per this interval (`30s`).
    #[serde(default = "default_refetch_interval", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub jwks_refetch_interval: Duration,
}

fn default_algorithms() -> Vec<String> {
    vec!["RS256".into(), "ES256".into()]
}

fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

fn default_caller_claims() -> Vec<String> {
    vec!["client_id".into(), "azp".into(), "sub".into()]
}

fn default_refetch_interval() -> Duration {
    Duration::from_secs(30)
}

fn invalid(field: &str, problem: &'static str) -> AuthError {
    AuthError::InvalidConfig {
        field: format!("jwt.{field}"),
        problem,
    }
}

impl JwtConfig {
    /// A config with the defaults for everything but the issuer, audiences and JWKS URL.
    pub fn new(
        issuer: impl Into<String>,
        audiences: Vec<String>,
        jwks_url: impl Into<String>,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            audiences,
            algorithms: default_algorithms(),
            jwks_url: jwks_url.into(),
            leeway: default_leeway(),
            caller_claims: default_caller_claims(),
            end_user_claim: None,
            jwks_refetch_interval: default_refetch_interval(),
        }
    }

    /// Checks the configuration without I/O; the error names the first bad field.
    pub fn validate(&self) -> Result<(), AuthError> {
        self.algorithms().map(|_| ())?;
        self.jwks_url().map(|_| ())?;
        if self.issuer.trim().is_empty() {
            return Err(invalid("issuer", "must not be empty"));
        }
        if self.audiences.is_empty() || self.audiences.iter().any(|a| a.trim().is_empty()) {
            return Err(invalid(
                "audiences",
                "must list at least one non-empty audience",
            ));
        }
        if self.leeway > MAX_LEEWAY {
            return Err(invalid("leeway", "must be at most 5m"));
        }
        if self.caller_claims.is_empty() {
            return Err(invalid("caller_claims", "must name at least one claim"));
        }
        Ok(())
    }

    fn algorithms(&self) -> Result<Vec<Algorithm>, AuthError> {
        if self.algorithms.is_empty() {
            return Err(invalid("algorithms", "must name at least one algorithm"));
        }
        self.algorithms
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let field = format!("algorithms[{i}]");
                if name.eq_ignore_ascii_case("none") {
                    return Err(invalid(&field, "`none` is never accepted"));
                }
                match Algorithm::from_str(name) {
                    Ok(Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) => {
                        Err(invalid(&field, "HS* algorithms cannot be used with a JWKS"))
                    }
                    Ok(alg) => Ok(alg),
                    Err(_) => Err(invalid(&field, "is not a known JWS algorithm")),
                }
            })
            .collect()
    }

    fn jwks_url(&self) -> Result<reqwest::Url, AuthError> {
        let url = reqwest::Url::parse(&self.jwks_url)
            .map_err(|_| invalid("jwks_url", "is not a valid URL"))?;
        let loopback = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        };
        match url.scheme() {
            "https" => Ok(url),
            "http" if loopback => Ok(url),
            _ => Err(invalid(
                "jwks_url",
                "must use https (http only on loopback)",
            )),
        }
    }
}

/// Verifies bearer tokens against the issuer's JWKS.
#[derive(Debug)]
pub struct JwtVerifier {
    config: JwtConfig,
    algorithms: Vec<Algorithm>,
    jwks_url: reqwest::Url,
    http: reqwest::Client,
    keys: RwLock<Arc<JwkSet>>,
    /// When an unknown `kid` last caused a fetch; held while fetching.
    last_refetch: tokio::sync::Mutex<Option<Instant>>,
    /// Tokens verified lately, by the SHA-256 of their text: a client sends the same
    /// token on every call until it expires, and a signature check costs far more than
    /// the call it guards. Emptied whenever the key set is fetched (a removed key stops
    /// working at once); entries live at most [`VERIFIED_TTL`] and never past `exp`.
    verified: moka::future::Cache<[u8; 32], Verified>,
}

/// How long a verified token is remembered.
pub const VERIFIED_TTL: Duration = Duration::from_secs(60);

/// At most this many verified tokens are remembered.
const VERIFIED_CAPACITY: u64 = 10_000;

/// What a verified token said.
#[derive(Debug, Clone)]
struct Verified {
    method: AuthMethod,
    end_user: Option<String>,
    /// `exp`, Unix seconds.
    expires: u64,
}

impl JwtVerifier {
    /// Validates `config` (no I/O) and builds a verifier with an empty key cache; call
    /// [`JwtVerifier::refresh`] at start-up to load the keys.
    pub fn new(config: JwtConfig) -> Result<Self, AuthError> {
        config.validate()?;
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|_| AuthError::JwksUnavailable)?;
        Ok(Self {
            algorithms: config.algorithms()?,
            jwks_url: config.jwks_url()?,
            config,
            http,
            keys: RwLock::new(Arc::new(JwkSet { keys: Vec::new() })),
            last_refetch: tokio::sync::Mutex::new(None),
            verified: moka::future::Cache::builder()
                .max_capacity(VERIFIED_CAPACITY)
                .time_to_live(VERIFIED_TTL)
                .build(),
        })
    }

    /// Fetches the JWKS now, whatever the refetch interval says (start-up, scheduled refresh).
    pub async fn refresh(&self) -> Result<(), AuthError> {
        let response = self
            .http
            .get(self.jwks_url.clone())
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|_| AuthError::JwksUnavailable)?;
        let body = response
            .bytes()
            .await
            .map_err(|_| AuthError::JwksUnavailable)?;
        let set: JwkSet = serde_json::from_slice(&body).map_err(|_| AuthError::JwksUnavailable)?;
        tracing::debug!(keys = set.keys.len(), "jwks fetched");
        *self.keys.write().map_err(|_| AuthError::JwksUnavailable)? = Arc::new(set);
        // A key removed from the set stops working at once, cached tokens included.
        self.verified.invalidate_all();
        Ok(())
    }

    fn cached(&self, kid: &str) -> Option<Jwk> {
        let keys = self.keys.read().ok()?;
        keys.find(kid).cloned()
    }

    async fn key(&self, kid: &str) -> Result<Jwk, AuthError> {
        if let Some(jwk) = self.cached(kid) {
            return Ok(jwk);
        }
        let mut last = self.last_refetch.lock().await;
        // Another request may have refetched while this one waited.
        if let Some(jwk) = self.cached(kid) {
            return Ok(jwk);
        }
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < self.config.jwks_refetch_interval) {
            return Err(AuthError::TokenKeyUnknown);
        }
        *last = Some(now);
        self.refresh().await?;
        self.cached(kid).ok_or(AuthError::TokenKeyUnknown)
    }

    /// Verifies `token` (signature, `iss`, `aud`, `exp`, `nbf`) and says who it names: the
    /// authentication method and the end user, if the configured claim is present.
    pub async fn verify(&self, token: &str) -> Result<(AuthMethod, Option<String>), AuthError> {
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        if let Some(hit) = self.verified.get(&digest).await {
            let now = jsonwebtoken::get_current_timestamp();
            if now <= hit.expires.saturating_add(self.config.leeway.as_secs()) {
                return Ok((hit.method, hit.end_user));
            }
            self.verified.invalidate(&digest).await;
            return Err(AuthError::TokenExpired);
        }
        let verified = self.verify_signed(token).await?;
        let answer = (verified.method.clone(), verified.end_user.clone());
        self.verified.insert(digest, verified).await;
        Ok(answer)
    }

    /// The full check of [`JwtVerifier::verify`], without the cache.
    async fn verify_signed(&self, token: &str) -> Result<Verified, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::TokenInvalid)?;
        if !self.algorithms.contains(&header.alg) {
            return Err(AuthError::TokenAlgorithmNotAllowed);
        }
        let kid = header.kid.as_deref().ok_or(AuthError::TokenKeyUnknown)?;
        let jwk = self.key(kid).await?;
        if let Some(key_alg) = jwk.common.key_algorithm
            && Algorithm::from_str(&key_alg.to_string()).ok() != Some(header.alg)
        {
            return Err(AuthError::TokenAlgorithmNotAllowed);
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| AuthError::TokenInvalid)?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&self.config.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = self.config.leeway.as_secs();
        validation.validate_nbf = true;
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation).map_err(|e| {
                match e.kind() {
                    ErrorKind::ExpiredSignature => AuthError::TokenExpired,
                    ErrorKind::ImmatureSignature => AuthError::TokenNotYetValid,
                    ErrorKind::InvalidAudience => AuthError::TokenAudienceMismatch,
                    ErrorKind::InvalidIssuer => AuthError::TokenIssuerMismatch,
                    ErrorKind::InvalidAlgorithm => AuthError::TokenAlgorithmNotAllowed,
                    _ => AuthError::TokenInvalid,
                }
            })?;
        let claims = data.claims;
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        let method = AuthMethod::Jwt {
            issuer: self.config.issuer.clone(),
            subject: text("sub"),
            client_id: self.config.caller_claims.iter().find_map(|c| text(c)),
        };
        let end_user = self.config.end_user_claim.as_deref().and_then(text);
        let expires = claims
            .get("exp")
            .and_then(Value::as_u64)
            .unwrap_or_default();
        Ok(Verified {
            method,
            end_user,
            expires,
        })
    }
}
