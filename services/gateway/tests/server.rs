//! The real `serve` on 127.0.0.1:0: TLS and mutual TLS with certificates from
//! `tessera_tls::dev_certs`, and reflection on only when enabled.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::path::Path;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest,
};

use tessera_client::connect::{ConnectOptions, channel};
use tessera_gateway::config::Config;
use tessera_gateway::server::{self, ServeOptions, Services, serve};

const DEADLINE: Duration = Duration::from_secs(10);

/// A running server and the handle that stops it.
struct Running {
    addr: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<server::Shutdown, server::ServeError>>,
}

impl Running {
    /// Starts `serve` with the `server:` section of `yaml` (paths relative to
    /// `dir`), once health is SERVING.
    async fn start(dir: &Path, yaml: &str) -> Self {
        let config_path = dir.join("tessera.yaml");
        let config = Config::parse(yaml, &config_path).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let bound = listener.local_addr().unwrap();
        let addr = bound.to_string();
        let security = tessera_gateway::security::build(&config, &config_path, bound)
            .await
            .unwrap();
        let options = ServeOptions {
            grace_period: Duration::from_secs(1),
            rpc: tessera_gateway::telemetry::rpc::RpcLayer::default(),
            tls: server::tls_acceptor(&config.server, &config_path).unwrap(),
            reflection: config.server.reflection,
            guard: Some(security.guard()),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(
            listener,
            Services::default(),
            options,
            async { Ok(()) },
            async {
                let _ = stopped.await;
            },
            move || {
                let _ = ready_tx.send(());
            },
        ));
        tokio::time::timeout(DEADLINE, ready_rx)
            .await
            .unwrap()
            .unwrap();
        Self {
            addr,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

/// Health over a connection made with `options` to `addr`.
async fn health(addr: &str, options: &ConnectOptions) -> Result<ServingStatus, String> {
    let connection = channel(addr, options, Duration::from_secs(5))
        .await
        .map_err(|e| format!("{e:#}"))?;
    let response = tokio::time::timeout(
        DEADLINE,
        HealthClient::new(connection).check(HealthCheckRequest {
            service: String::new(),
        }),
    )
    .await
    .map_err(|_| "no answer".to_owned())?
    .map_err(|status| format!("{status}"))?;
    Ok(response.into_inner().status())
}

/// A `server:` section with mutual TLS from dev certificates in `certs/`.
const MTLS: &str = "server:\n  listen: 127.0.0.1:0\n  tls:\n    cert: certs/server.pem\n    key: certs/server.key\n    client_ca: certs/ca.pem\n";

#[tokio::test]
async fn with_mutual_tls_only_a_client_with_a_certificate_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let certs = tessera_tls::dev_certs(&dir.path().join("certs"), false).unwrap();
    let server = Running::start(dir.path(), MTLS).await;

    let reader = ConnectOptions {
        ca: Some(certs.ca_cert.clone()),
        cert: Some(dir.path().join("certs/reader.pem")),
        key: Some(dir.path().join("certs/reader.key")),
        ..ConnectOptions::default()
    };
    let https = format!(
        "https://localhost:{}",
        server.addr.rsplit(':').next().unwrap()
    );
    assert_eq!(health(&https, &reader).await, Ok(ServingStatus::Serving));
    // A bare address with --ca is TLS too, verified for the IP address.
    assert_eq!(
        health(&server.addr, &reader).await,
        Ok(ServingStatus::Serving)
    );

    let no_certificate = ConnectOptions {
        ca: Some(certs.ca_cert.clone()),
        ..ConnectOptions::default()
    };
    assert!(
        health(&https, &no_certificate).await.is_err(),
        "a client without a certificate must be refused"
    );
    let plaintext = health(
        &format!("http://{}", server.addr),
        &ConnectOptions::default(),
    )
    .await;
    assert!(
        plaintext.is_err(),
        "a plaintext client must be refused, got {plaintext:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_tls_client_that_does_not_trust_the_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    tessera_tls::dev_certs(&dir.path().join("certs"), false).unwrap();
    let other = tessera_tls::dev_certs(&dir.path().join("other"), false).unwrap();
    let server = Running::start(dir.path(), MTLS).await;
    let stranger = ConnectOptions {
        ca: Some(other.ca_cert),
        cert: Some(dir.path().join("other/reader.pem")),
        key: Some(dir.path().join("other/reader.key")),
        ..ConnectOptions::default()
    };
    let err = health(&server.addr, &stranger).await.unwrap_err();
    assert!(err.starts_with("cannot connect to https://"), "{err}");
    server.stop().await;
}

async fn reflection_status(addr: &str) -> Result<(), Code> {
    let connection = channel(addr, &ConnectOptions::default(), Duration::from_secs(5))
        .await
        .unwrap();
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(connection)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .map_err(|status| status.code())?
        .into_inner();
    match responses.message().await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(Code::Unknown),
        Err(status) => Err(status.code()),
    }
}

#[tokio::test]
async fn reflection_is_off_unless_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let off = Running::start(
        dir.path(),
        "server:\n  listen: 127.0.0.1:0\npolicy:\n  anonymous_loopback: {roles: [admin], purposes: [TREAT]}\n",
    )
    .await;
    // Not served, and not in the permission table: refused even to an admin.
    assert_eq!(
        reflection_status(&off.addr).await,
        Err(Code::PermissionDenied)
    );
    off.stop().await;

    let on = Running::start(
        dir.path(),
        "server:\n  listen: 127.0.0.1:0\n  reflection: true\n\
         policy:\n  anonymous_loopback: {roles: [admin], purposes: [TREAT]}\n",
    )
    .await;
    assert_eq!(reflection_status(&on.addr).await, Ok(()));
    on.stop().await;
}

#[test]
fn the_options_carry_the_acceptor_only_with_tls() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("tessera.yaml");
    let plain = Config::parse("server:\n  listen: 127.0.0.1:0\n", &config_path).unwrap();
    assert!(
        server::tls_acceptor(&plain.server, &config_path)
            .unwrap()
            .is_none()
    );
    let missing = Config::parse(MTLS, &config_path).unwrap();
    let err = server::tls_acceptor(&missing.server, &config_path).unwrap_err();
    assert!(err.to_string().contains("server.pem"), "{err}");
}

/// Calls GetMaster and MergeMasters over `connection`; the handlers are the pending
/// stubs, so an admitted call answers UNIMPLEMENTED and a refused one never reaches them.
async fn identity_calls(
    connection: tessera_client::connect::Connection,
) -> (Code, Code, Option<String>) {
    use tessera_proto::v1::identity_service_client::IdentityServiceClient;
    use tessera_proto::v1::{GetMasterRequest, MergeMastersRequest};
    use tonic_types::StatusExt;
    let mut client = IdentityServiceClient::new(connection);
    let read = client
        .get_master(GetMasterRequest {
            name: "masters/1".into(),
        })
        .await
        .unwrap_err();
    let merge = client
        .merge_masters(MergeMastersRequest::default())
        .await
        .unwrap_err();
    let reason = merge.get_details_error_info().map(|info| info.reason);
    (read.code(), merge.code(), reason)
}

/// The audit trail's records as JSON values, after checking its chain.
fn trail(path: &Path) -> Vec<serde_json::Value> {
    tessera_audit::verify(path).unwrap();
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["record"].clone())
        .collect()
}

#[tokio::test]
async fn mtls_callers_get_their_roles_strangers_are_refused_and_every_call_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let certs = tessera_tls::dev_certs(&dir.path().join("certs"), false).unwrap();
    let yaml = format!(
        "{MTLS}policy:\n  callers:\n    \
         - {{id: reader, match: {{san: \"spiffe://tessera.dev/reader\"}}, roles: [reader], purposes: [TREAT]}}\n    \
         - {{id: steward, match: {{san: \"spiffe://tessera.dev/steward\"}}, roles: [steward], purposes: [HOPERAT]}}\n\
         audit:\n  file: trail/audit.jsonl\n"
    );
    let server = Running::start(dir.path(), &yaml).await;
    let as_caller = |name: &str| ConnectOptions {
        ca: Some(certs.ca_cert.clone()),
        cert: Some(dir.path().join(format!("certs/{name}.pem"))),
        key: Some(dir.path().join(format!("certs/{name}.key"))),
        ..ConnectOptions::default()
    };
    let connect = |name: &str| {
        let options = as_caller(name);
        let addr = server.addr.clone();
        async move { channel(&addr, &options, DEADLINE).await.unwrap() }
    };

    let reader = identity_calls(connect("reader").await).await;
    assert_eq!(
        reader,
        (
            Code::Unimplemented,
            Code::PermissionDenied,
            Some("RPC_NOT_ALLOWED".into())
        )
    );
    let steward = identity_calls(connect("steward").await).await;
    assert_eq!(
        (steward.0, steward.1),
        (Code::Unimplemented, Code::Unimplemented)
    );
    // A certificate from the right CA whose SAN no policy entry names.
    let stranger = identity_calls(connect("marketing").await).await;
    assert_eq!(
        stranger,
        (
            Code::PermissionDenied,
            Code::PermissionDenied,
            Some("CALLER_UNKNOWN".into())
        )
    );
    // Health stays public.
    assert_eq!(
        health(&server.addr, &as_caller("marketing")).await,
        Ok(ServingStatus::Serving)
    );
    server.stop().await;

    let records = trail(&dir.path().join("trail/audit.jsonl"));
    let seen: Vec<(&str, &str, &str, &str)> = records
        .iter()
        .map(|r| {
            (
                r["caller"].as_str().unwrap(),
                r["auth"].as_str().unwrap(),
                r["rpc"].as_str().unwrap().rsplit('/').next().unwrap(),
                r["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("reader", "mtls", "GetMaster", "UNIMPLEMENTED"),
            ("reader", "mtls", "MergeMasters", "PERMISSION_DENIED"),
            ("steward", "mtls", "GetMaster", "UNIMPLEMENTED"),
            ("steward", "mtls", "MergeMasters", "UNIMPLEMENTED"),
            ("unknown", "none", "GetMaster", "PERMISSION_DENIED"),
            ("unknown", "none", "MergeMasters", "PERMISSION_DENIED"),
        ],
        "one record per call, health checks not included"
    );
    assert_eq!(records[1]["reason"], "RPC_NOT_ALLOWED");
    assert!(
        records
            .iter()
            .all(|r| !r["request_id"].as_str().unwrap().is_empty())
    );
}

#[tokio::test]
async fn without_credentials_or_a_grant_every_patient_call_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(dir.path(), "server:\n  listen: 127.0.0.1:0\n").await;
    let connection = channel(&server.addr, &ConnectOptions::default(), DEADLINE)
        .await
        .unwrap();
    let (read, merge, reason) = identity_calls(connection).await;
    assert_eq!(
        (read, merge, reason.as_deref()),
        (
            Code::Unauthenticated,
            Code::Unauthenticated,
            Some("CREDENTIALS_MISSING")
        )
    );
    assert_eq!(
        health(&server.addr, &ConnectOptions::default()).await,
        Ok(ServingStatus::Serving)
    );
    server.stop().await;
}

#[tokio::test]
async fn an_unwritable_trail_fails_calls_closed_and_readiness_follows_it() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "server:\n  listen: 127.0.0.1:0\npolicy:\n  anonymous_loopback: {roles: [reader], purposes: [TREAT]}\naudit:\n  file: trail/audit.jsonl\n";
    let server = Running::start(dir.path(), yaml).await;
    let plain = ConnectOptions::default();
    let connection = channel(&server.addr, &plain, DEADLINE).await.unwrap();
    assert_eq!(
        identity_calls(connection.clone()).await.0,
        Code::Unimplemented
    );

    let trail_dir = dir.path().join("trail");
    let moved = dir.path().join("moved");
    std::fs::rename(&trail_dir, &moved).unwrap();
    let (read, _, _) = identity_calls(connection.clone()).await;
    assert_eq!(read, Code::Unavailable, "no answer without its record");
    let not_ready = async {
        while health(&server.addr, &plain).await != Ok(ServingStatus::NotServing) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(DEADLINE, not_ready).await.unwrap();

    std::fs::rename(&moved, &trail_dir).unwrap();
    let ready = async {
        while health(&server.addr, &plain).await != Ok(ServingStatus::Serving) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(DEADLINE, ready).await.unwrap();
    assert_eq!(identity_calls(connection).await.0, Code::Unimplemented);
    server.stop().await;

    let records = trail(&trail_dir.join("audit.jsonl"));
    // Two calls answered before, two after; the refused ones left no record and
    // no gap in the chain.
    assert_eq!(records.len(), 4);
    assert!(records.iter().all(|r| r["caller"] == "anonymous"));
}
