//! The auth layer on http requests through `tower::ServiceExt::oneshot`.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{SigningKey, claims, setup};
use tessera_auth::layer::{AuthLayer, Authenticator, BREAK_GLASS_REASON_HEADER, authorize_purpose};
use tessera_auth::{AuthError, Caller, Grant, PermissionTable, Policy, PolicyConfig};
use tessera_tls::PeerIdentity;
use tonic::Code;
use tonic_types::StatusExt;
use tower::{Layer, ServiceExt};

const GET_MASTER: &str = "/tessera.v1.IdentityService/GetMaster";
const MERGE: &str = "/tessera.v1.IdentityService/MergeMasters";
const HEALTH: &str = "/grpc.health.v1.Health/Check";

const POLICY: &str = r#"
callers:
  - id: ehr-ui
    match: { san: "spiffe://tessera.dev/ehr-ui" }
    roles: [reader]
    purposes: [TREAT]
    sections: ["ehr.*"]
    break_glass: true
  - id: steward-app
    match: { client_id: steward-app }
    roles: [steward]
    purposes: [HOPERAT]
"#;

fn policy(yaml: &str) -> Arc<Policy> {
    let config: PolicyConfig = serde_yaml_ng::from_str(yaml).unwrap();
    Arc::new(Policy::new(&config, PermissionTable::for_contract(false).unwrap()).unwrap())
}

struct Outcome {
    code: Code,
    reason: Option<String>,
    principal: Option<String>,
}

/// Sends one request through the layer over a service that records who it saw.
async fn call(
    auth: Authenticator,
    path: &str,
    prepare: impl FnOnce(&mut http::Request<()>),
    calls: &Arc<AtomicUsize>,
) -> Outcome {
    let seen = calls.clone();
    let inner = tower::service_fn(move |req: http::Request<()>| {
        seen.fetch_add(1, Ordering::SeqCst);
        let principal = req
            .extensions()
            .get::<Caller>()
            .map(|c| c.principal.clone());
        let has_grant = req.extensions().get::<Arc<Grant>>().is_some();
        async move {
            let mut response = http::Response::new(tonic::body::Body::empty());
            if let Some(p) = principal {
                assert!(has_grant, "the grant travels with the caller");
                response
                    .headers_mut()
                    .insert("x-principal", p.parse().unwrap());
            }
            Ok::<_, Infallible>(response)
        }
    });
    let service = AuthLayer::new(Arc::new(auth)).layer(inner);
    let mut request = http::Request::builder().uri(path).body(()).unwrap();
    prepare(&mut request);
    let response = service.oneshot(request).await.unwrap();
    let status = tonic::Status::from_header_map(response.headers());
    Outcome {
        code: status.as_ref().map_or(Code::Ok, tonic::Status::code),
        reason: status
            .as_ref()
            .and_then(|s| s.get_details_error_info())
            .inspect(|info| assert_eq!(info.domain, "tessera.dev"))
            .map(|info| info.reason),
        principal: response
            .headers()
            .get("x-principal")
            .map(|v| v.to_str().unwrap().to_owned()),
    }
}

fn with_san(san: &str) -> impl FnOnce(&mut http::Request<()>) {
    let identity = PeerIdentity {
        sans: vec!["host.local".into(), san.into()],
        subject_cn: None,
    };
    move |req| {
        req.extensions_mut().insert(identity);
    }
}

fn with_bearer(token: String) -> impl FnOnce(&mut http::Request<()>) {
    move |req| {
        req.headers_mut().insert(
            http::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
    }
}

#[tokio::test]
async fn no_credentials_is_unauthenticated_and_health_always_passes() {
    let calls = Arc::new(AtomicUsize::new(0));
    let auth = || Authenticator::new(policy(POLICY), None);
    let out = call(auth(), GET_MASTER, |_| {}, &calls).await;
    assert_eq!(out.code, Code::Unauthenticated);
    assert_eq!(out.reason.as_deref(), Some("CREDENTIALS_MISSING"));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "service not called on refusal"
    );

    let out = call(auth(), HEALTH, |_| {}, &calls).await;
    assert_eq!(out.code, Code::Ok);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn certificate_callers_are_admitted_to_the_rpcs_their_role_covers() {
    let calls = Arc::new(AtomicUsize::new(0));
    let auth = || Authenticator::new(policy(POLICY), None);
    let out = call(
        auth(),
        GET_MASTER,
        with_san("spiffe://tessera.dev/ehr-ui"),
        &calls,
    )
    .await;
    assert_eq!(out.code, Code::Ok);
    assert_eq!(out.principal.as_deref(), Some("ehr-ui"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let out = call(
        auth(),
        MERGE,
        with_san("spiffe://tessera.dev/ehr-ui"),
        &calls,
    )
    .await;
    assert_eq!(out.code, Code::PermissionDenied);
    assert_eq!(out.reason.as_deref(), Some("RPC_NOT_ALLOWED"));

    let out = call(
        auth(),
        "/tessera.v1.IdentityService/Nope",
        with_san("spiffe://tessera.dev/ehr-ui"),
        &calls,
    )
    .await;
    assert_eq!(out.code, Code::PermissionDenied);
    assert_eq!(out.reason.as_deref(), Some("RPC_NOT_ALLOWED"));

    let out = call(
        auth(),
        GET_MASTER,
        with_san("spiffe://tessera.dev/stranger"),
        &calls,
    )
    .await;
    assert_eq!(out.code, Code::PermissionDenied);
    assert_eq!(out.reason.as_deref(), Some("CALLER_UNKNOWN"));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "refusals never reach the service"
    );
}

#[tokio::test]
async fn bearer_tokens_are_verified_before_the_table_is_checked() {
    let (key, _issuer, verifier) = setup().await;
    let verifier = Arc::new(verifier);
    let auth = || Authenticator::new(policy(POLICY), Some(verifier.clone()));
    let calls = Arc::new(AtomicUsize::new(0));
    let mut c = claims();
    c["client_id"] = "steward-app".into();
    let out = call(auth(), MERGE, with_bearer(key.sign(&c)), &calls).await;
    assert_eq!(out.code, Code::Ok);
    assert_eq!(out.principal.as_deref(), Some("steward-app"));

    // A token from the right issuer for a caller nobody configured.
    let out = call(auth(), GET_MASTER, with_bearer(key.sign(&claims())), &calls).await;
    assert_eq!(out.code, Code::PermissionDenied);
    assert_eq!(out.reason.as_deref(), Some("CALLER_UNKNOWN"));

    let stranger = SigningKey::new("k1");
    let out = call(auth(), MERGE, with_bearer(stranger.sign(&c)), &calls).await;
    assert_eq!(out.code, Code::Unauthenticated);
    assert_eq!(out.reason.as_deref(), Some("TOKEN_INVALID"));

    let out = call(auth(), MERGE, with_bearer("not.a.token".into()), &calls).await;
    assert_eq!(out.code, Code::Unauthenticated);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn anonymous_loopback_grant_admits_callers_without_credentials() {
    let calls = Arc::new(AtomicUsize::new(0));
    let yaml = format!("{POLICY}anonymous_loopback:\n  roles: [reader]\n  purposes: [TREAT]\n");
    let auth = || Authenticator::new(policy(&yaml), None);
    let out = call(auth(), GET_MASTER, |_| {}, &calls).await;
    assert_eq!(out.code, Code::Ok);
    assert_eq!(out.principal.as_deref(), Some("anonymous"));
    let out = call(auth(), MERGE, |_| {}, &calls).await;
    assert_eq!(out.code, Code::PermissionDenied);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // A connection that came in on a non-loopback address gets no anonymous grant.
    let public = |req: &mut http::Request<()>| {
        req.extensions_mut()
            .insert(tonic::transport::server::TcpConnectInfo {
                local_addr: Some("10.1.2.3:50051".parse().unwrap()),
                remote_addr: Some("10.9.9.9:40000".parse().unwrap()),
            });
    };
    let out = call(auth(), GET_MASTER, public, &calls).await;
    assert_eq!(out.code, Code::Unauthenticated);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn handlers_check_the_purpose_and_break_glass_reason() {
    let policy = policy(POLICY);
    let auth = Authenticator::new(policy.clone(), None);
    let mut http_req = http::Request::builder().uri(GET_MASTER).body(()).unwrap();
    with_san("spiffe://tessera.dev/ehr-ui")(&mut http_req);
    let (_, grant) = auth
        .admit(GET_MASTER, http_req.headers(), http_req.extensions())
        .await
        .unwrap();

    let mut headers = http::HeaderMap::new();
    headers.insert(
        BREAK_GLASS_REASON_HEADER,
        "patient unconscious".parse().unwrap(),
    );
    let mut extensions = tonic::Extensions::new();
    extensions.insert(grant);
    let request = tonic::Request::from_parts(
        tonic::metadata::MetadataMap::from_headers(headers),
        extensions,
        (),
    );
    assert!(authorize_purpose(&policy, &request, GET_MASTER, "TREAT", 0).is_ok());
    let err = authorize_purpose(&policy, &request, GET_MASTER, "HMARKT", 0).unwrap_err();
    let status = tessera_proto::error::status(&err);
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(
        status.get_details_error_info().unwrap().reason,
        "PURPOSE_NOT_GRANTED"
    );
    let glass = authorize_purpose(&policy, &request, GET_MASTER, "ETREAT", 0).unwrap();
    assert!(glass.break_glass);
    assert_eq!(glass.reason.as_deref(), Some("patient unconscious"));

    let bare = tonic::Request::new(());
    assert!(matches!(
        authorize_purpose(&policy, &bare, GET_MASTER, "TREAT", 0),
        Err(AuthError::Denied(tessera_auth::Denied::CallerUnknown))
    ));
}
