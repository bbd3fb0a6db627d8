//! `bench view --secure`: the same cached views through a second server over the same
//! aggregator, with everything a production deployment turns on — mutual TLS, a JWT
//! bearer token checked against a JWKS, the deny-by-default policy and an audit trail
//! written to a file (fsync'd before each response) — built by the gateway from a config
//! file, exactly as `tessera serve` builds it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tessera_aggregator::{Aggregator, PatientViewGrpc};
use tessera_client::connect::ConnectOptions;
use tessera_telemetry::rpc::RpcLayer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use crate::{Gateway, Services};

/// The token's issuer and audience.
const ISSUER: &str = "https://issuer.bench.tessera.test";
const AUDIENCE: &str = "tessera-bench";

/// A secured view server and how to call it.
pub(super) struct SecureServer {
    /// Where it listens.
    pub(super) addr: SocketAddr,
    /// Stops it when sent or dropped.
    pub(super) stop: oneshot::Sender<()>,
    /// TLS files and the token, for the client.
    pub(super) options: ConnectOptions,
    /// The audit trail it writes.
    pub(super) trail: PathBuf,
    _dir: tempfile::TempDir,
}

/// Starts the secured server over `aggregator` (its cache already warm); with `audit`
/// false, the same without the audit trail (to tell the trail's cost from the rest).
pub(super) async fn start(
    aggregator: Aggregator,
    gateway: Arc<dyn Gateway>,
    rpc: RpcLayer,
    audit: bool,
) -> anyhow::Result<SecureServer> {
    let dir = tempfile::tempdir()?;
    let certs = dir.path().join("certs");
    tessera_tls::dev_certs(&certs, false)?;
    let (token, jwks) = signed_token()?;
    let jwks_url = serve_jwks(jwks).await?;
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, token)?;
    let config = format!(
        "server:\n  listen: 127.0.0.1:0\n  \
         tls: {{cert: certs/server.pem, key: certs/server.key, client_ca: certs/ca.pem}}\n\
         policy:\n  callers:\n    - {{id: bench, match: {{client_id: bench}}, roles: [reader], \
         purposes: [TREAT], sections: [\"*\"], systems: [\"*\"], national_id: true}}\n\
         auth:\n  jwt: {{issuer: \"{ISSUER}\", audiences: [{AUDIENCE}], algorithms: [ES256], \
         jwks_url: \"{jwks_url}\"}}\n{}",
        if audit {
            "audit:\n  file: audit/audit.jsonl\n"
        } else {
            ""
        }
    );
    let config_path = dir.path().join("tessera.yaml");
    std::fs::write(&config_path, config)?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let services = Services {
        identity: None,
        patient_view: Some(PatientViewGrpc::new(aggregator)),
    };
    let shutdown = Box::pin(async {
        let _ = stopped.await;
    });
    let serving = gateway.serve_secure(listener, services, rpc, config_path, shutdown);
    tokio::spawn(async move {
        if let Err(err) = serving.await {
            tracing::error!(error = %err, "the secured bench server stopped");
        }
    });
    Ok(SecureServer {
        addr,
        stop,
        options: ConnectOptions {
            ca: Some(certs.join("ca.pem")),
            cert: Some(certs.join("reader.pem")),
            key: Some(certs.join("reader.key")),
            token: None,
            token_file: Some(token_file),
        },
        trail: dir.path().join("audit/audit.jsonl"),
        _dir: dir,
    })
}

/// A bearer token for client `bench`, valid for an hour, and the JWKS that verifies it
/// (an ES256 key made now).
fn signed_token() -> anyhow::Result<(String, JwkSet)> {
    let pair = rcgen::KeyPair::generate()?;
    let key = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes())?;
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256)?;
    jwk.common.key_id = Some("bench-1".into());
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("bench-1".into());
    let now = jsonwebtoken::get_current_timestamp();
    let claims = serde_json::json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "bench",
        "client_id": "bench",
        "iat": now,
        "exp": now + 3600,
    });
    let token = jsonwebtoken::encode(&header, &claims, &key)?;
    Ok((token, JwkSet { keys: vec![jwk] }))
}

/// Serves `jwks` over HTTP on 127.0.0.1:0 (loopback: the issuer the gateway trusts for
/// the run) and returns its URL.
async fn serve_jwks(jwks: JwkSet) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/jwks", listener.local_addr()?);
    let body = serde_json::to_string(&jwks)?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 2048];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    Ok(url)
}

/// How many records the trail holds (the run checks one per secured call).
pub(super) fn trail_records(secure: &SecureServer) -> anyhow::Result<u64> {
    if !secure.trail.exists() {
        return Ok(0);
    }
    let text = std::fs::read_to_string(&secure.trail)
        .with_context(|| format!("{}: cannot read the trail", secure.trail.display()))?;
    Ok(text.lines().count() as u64)
}
