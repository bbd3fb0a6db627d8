//! The tower layer that authenticates every gRPC request and checks the RPC table.
//!
//! Per request: health passes untouched; otherwise the caller is a bearer token's
//! (`authorization: Bearer ...`), else the client certificate's (`TlsConnectInfo` from the
//! TLS acceptor, or a [`PeerIdentity`] extension), else the `anonymous_loopback` grant's.
//! No credentials -> UNAUTHENTICATED; an unknown caller or an RPC its role does not cover
//! -> PERMISSION_DENIED with an `ErrorInfo`; the service is not called on refusal. On
//! success the [`Caller`], its [`Grant`] and the `Arc<Policy>` go into the request
//! extensions, and the caller into its [`AccessLog`] when it has one; handlers then check
//! the purpose with [`crate::access::authorize`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::HeaderMap;
use tessera_proto::error::status;
use tessera_tls::{PeerIdentity, TlsConnectInfo};
use tonic::transport::server::TcpConnectInfo;

use crate::access::AccessLog;
use crate::caller::{ANONYMOUS_PRINCIPAL, AuthMethod, Caller};
use crate::jwt::JwtVerifier;
use crate::policy::{Grant, Policy};
use crate::{AuthError, Denied, HEALTH_RPCS};

/// The metadata key carrying the break-the-glass reason.
pub const BREAK_GLASS_REASON_HEADER: &str = "x-tessera-break-glass-reason";

/// Decides who a request's caller is and whether its role covers the RPC.
#[derive(Debug)]
pub struct Authenticator {
    policy: Arc<Policy>,
    jwt: Option<Arc<JwtVerifier>>,
}

impl Authenticator {
    /// Authenticates with `policy`'s callers, and bearer tokens when `jwt` is given.
    pub fn new(policy: Arc<Policy>, jwt: Option<Arc<JwtVerifier>>) -> Self {
        Self { policy, jwt }
    }

    /// The caller and grant for a request to `path`, or why it is refused.
    pub async fn admit(
        &self,
        path: &str,
        headers: &HeaderMap,
        extensions: &http::Extensions,
    ) -> Result<(Caller, Arc<Grant>), AuthError> {
        let (caller, grant) = if let Some(value) = headers.get(http::header::AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, token)| token.trim())
                .ok_or(AuthError::TokenInvalid)?;
            let jwt = self.jwt.as_ref().ok_or(AuthError::TokenInvalid)?;
            let (method, end_user) = jwt.verify(token).await?;
            let grant = self
                .policy
                .grant_for(&method)
                .ok_or(Denied::CallerUnknown)?;
            let caller = Caller {
                principal: grant.principal.clone(),
                method,
                end_user,
            };
            (caller, grant.clone())
        } else if let Some(peer) = peer_identity(extensions) {
            let (caller, grant) = self
                .policy
                .identify_mtls(peer.sans.iter().map(String::as_str))
                .ok_or(Denied::CallerUnknown)?;
            (caller, grant.clone())
        } else if let Some(grant) = self.policy.anonymous_grant()
            && on_loopback(extensions)
        {
            let caller = Caller {
                principal: ANONYMOUS_PRINCIPAL.into(),
                method: AuthMethod::AnonymousLoopback,
                end_user: None,
            };
            (caller, grant.clone())
        } else {
            return Err(AuthError::NoCredentials);
        };
        if let Some(log) = extensions.get::<AccessLog>() {
            log.note(|a| a.caller = Some(caller.clone()));
        }
        self.policy.table().check(grant.role, path)?;
        Ok((caller, grant))
    }
}

fn peer_identity(extensions: &http::Extensions) -> Option<&PeerIdentity> {
    extensions
        .get::<TlsConnectInfo>()
        .and_then(TlsConnectInfo::peer_identity)
        .or_else(|| extensions.get::<PeerIdentity>())
}

/// False only when the connect info (TLS or plain TCP) shows a listener address that is
/// not loopback; the anonymous grant is also refused at start-up by
/// `PolicyConfig::validate_for_listener`.
fn on_loopback(extensions: &http::Extensions) -> bool {
    let local = extensions
        .get::<TlsConnectInfo>()
        .and_then(TlsConnectInfo::local_addr)
        .or_else(|| {
            extensions
                .get::<TcpConnectInfo>()
                .and_then(TcpConnectInfo::local_addr)
        });
    local.is_none_or(|addr| addr.ip().is_loopback())
}

/// Checks the purpose of use of an admitted request: the handler's half of the policy.
/// `now` is seconds from any fixed origin (break-the-glass windows).
pub fn authorize_purpose<T>(
    policy: &Policy,
    request: &tonic::Request<T>,
    method: &str,
    purpose: &str,
    now: u64,
) -> Result<Grant, AuthError> {
    let grant = request.extensions().get::<Arc<Grant>>().map(|g| &**g);
    let reason = request
        .metadata()
        .get(BREAK_GLASS_REASON_HEADER)
        .and_then(|v| v.to_str().ok());
    Ok(policy.authorize(grant, method, purpose, reason, now)?)
}

/// Wraps a service in [`AuthService`].
#[derive(Debug, Clone)]
pub struct AuthLayer {
    auth: Arc<Authenticator>,
}

impl AuthLayer {
    /// A layer admitting requests with `auth`.
    pub fn new(auth: Arc<Authenticator>) -> Self {
        Self { auth }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            auth: self.auth.clone(),
        }
    }
}

/// Authenticates each request before the inner service sees it.
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B, RB> tower::Service<http::Request<B>> for AuthService<S>
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
        let auth = self.auth.clone();
        Box::pin(async move {
            let path = request.uri().path();
            if !HEALTH_RPCS.contains(&path) {
                match auth
                    .admit(path, request.headers(), request.extensions())
                    .await
                {
                    Ok((caller, grant)) => {
                        request.extensions_mut().insert(caller);
                        request.extensions_mut().insert(grant);
                        request.extensions_mut().insert(auth.policy.clone());
                    }
                    Err(err) => {
                        tracing::debug!(
                            reason = tessera_proto::error::ServiceError::reason(&err),
                            "request refused"
                        );
                        return Ok(status(&err).into_http());
                    }
                }
            }
            let response = inner.call(request).await?;
            Ok(response.map(tonic::body::Body::new))
        })
    }
}
