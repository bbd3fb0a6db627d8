//! The `grpc` adapter over TLS to a real tonic server that requires client
//! certificates (`tessera_tls::TlsAcceptor`, mutual TLS), with certificates made
//! in the test: the right client certificate fetches; no client certificate, or
//! a server certificate from another CA, fails the build.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::Stream;
use tessera_adapter_core::{Adapter, BuildError, FetchRequest};
use tessera_adapter_grpc::{GrpcAdapter, GrpcConfig};
use tessera_proto::v1 as pb;
use tessera_proto::v1::source_adapter_service_server::{
    SourceAdapterService, SourceAdapterServiceServer,
};
use tessera_tls::{ServerTlsFiles, ServerTlsOptions, TlsAcceptor, dev_certs, peer_identity};
use tokio::time::Instant;
use tonic::{Request, Response, Status};

/// A process serving `contacts` that remembers the client certificates' SANs.
#[derive(Default, Clone)]
struct Process(Arc<Mutex<Vec<String>>>);

#[tonic::async_trait]
impl SourceAdapterService for Process {
    async fn describe_adapter(
        &self,
        request: Request<pb::DescribeAdapterRequest>,
    ) -> Result<Response<pb::DescribeAdapterResponse>, Status> {
        if let Some(peer) = peer_identity(&request) {
            let mut seen = self.0.lock().map_err(|_| Status::internal("poisoned"))?;
            seen.extend(peer.sans.iter().cloned());
        }
        Ok(Response::new(pb::DescribeAdapterResponse {
            system: "crm".to_owned(),
            sections: vec![pb::SectionDescriptor {
                name: "contacts".to_owned(),
                media_type: "application/json".to_owned(),
                description: "test".to_owned(),
                suggested_ttl: None,
            }],
            capabilities: None,
            adapter_version: "tls-test".to_owned(),
        }))
    }

    async fn fetch_records(
        &self,
        request: Request<pb::FetchRecordsRequest>,
    ) -> Result<Response<pb::FetchRecordsResponse>, Status> {
        let r = request.into_inner();
        let results = r
            .local_ids
            .iter()
            .map(|id| pb::FetchResult {
                local_id: id.clone(),
                section: "contacts".to_owned(),
                records: vec![pb::AdapterRecord {
                    record_id: "C-1".to_owned(),
                    json: r#"{"channel":"email"}"#.to_owned(),
                    update_time: None,
                }],
                error: None,
                skipped_malformed: 0,
            })
            .collect();
        Ok(Response::new(pb::FetchRecordsResponse { results }))
    }

    async fn check_adapter_health(
        &self,
        _: Request<pb::CheckAdapterHealthRequest>,
    ) -> Result<Response<pb::CheckAdapterHealthResponse>, Status> {
        Ok(Response::new(pb::CheckAdapterHealthResponse {
            health: pb::AdapterHealth::Serving as i32,
            message: String::new(),
        }))
    }

    type StreamSourceRecordsStream =
        Pin<Box<dyn Stream<Item = Result<pb::StreamSourceRecordsResponse, Status>> + Send>>;

    async fn stream_source_records(
        &self,
        _: Request<pb::StreamSourceRecordsRequest>,
    ) -> Result<Response<Self::StreamSourceRecordsStream>, Status> {
        Err(Status::unimplemented("no feed"))
    }
}

/// Two throwaway CAs (`a/`, `b/`, each with a server certificate and caller
/// certificates), and a process on 127.0.0.1 serving `a`'s server certificate and
/// requiring client certificates from `a`.
struct Fixture {
    certs: tempfile::TempDir,
    addr: std::net::SocketAddr,
    process: Process,
}

async fn start() -> anyhow::Result<Fixture> {
    let certs = tempfile::tempdir()?;
    let a = dev_certs(&certs.path().join("a"), false)?;
    dev_certs(&certs.path().join("b"), false)?;
    let acceptor = TlsAcceptor::new(ServerTlsOptions::new(ServerTlsFiles {
        cert: a.server_cert,
        key: a.server_key,
        client_ca: Some(a.ca_cert),
    }))?;
    assert!(acceptor.mutual());
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = tcp.local_addr()?;
    let process = Process::default();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(SourceAdapterServiceServer::new(process.clone()))
            .serve_with_incoming(acceptor.incoming(tcp)),
    );
    Ok(Fixture {
        certs,
        addr,
        process,
    })
}

impl Fixture {
    fn base_dir(&self) -> PathBuf {
        self.certs.path().to_owned()
    }

    async fn connect(&self, tls: serde_json::Value) -> Result<GrpcAdapter, BuildError> {
        let config: GrpcConfig = serde_json::from_value(serde_json::json!({
            "endpoint": format!("https://{}", self.addr),
            "startup_timeout": "300ms",
            "tls": tls,
        }))
        .expect("config parses");
        GrpcAdapter::connect(&config, &self.base_dir()).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_right_client_certificate_fetches_over_mutual_tls() -> anyhow::Result<()> {
    let fixture = start().await?;
    let adapter = fixture
        .connect(serde_json::json!({
            "ca": "a/ca.pem",
            "cert": "a/reader.pem",
            "key": "file:a/reader.key",
            // The certificate names localhost and 127.0.0.1; verify the name.
            "server_name": "localhost",
        }))
        .await?;
    assert_eq!(adapter.describe().system, "crm");
    let results = adapter
        .fetch(FetchRequest::one(
            "L-1",
            "contacts",
            Instant::now() + Duration::from_secs(5),
        ))
        .await?;
    let records = results[0].records.clone()?;
    assert_eq!(&*records[0].json, r#"{"channel":"email"}"#);
    // The process saw who called: the client certificate's SPIFFE ID.
    let seen = fixture.process.0.lock().expect("lock").clone();
    assert!(
        seen.contains(&"spiffe://tessera.dev/reader".to_owned()),
        "{seen:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_client_certificate_is_refused() -> anyhow::Result<()> {
    let fixture = start().await?;
    let err = fixture
        .connect(serde_json::json!({"ca": "a/ca.pem"}))
        .await
        .expect_err("the process requires a client certificate");
    assert!(matches!(err, BuildError::Setup(_)), "{err}");
    assert!(err.to_string().contains("did not describe itself"), "{err}");
    assert!(fixture.process.0.lock().expect("lock").is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_from_another_ca_is_refused() -> anyhow::Result<()> {
    let fixture = start().await?;
    let err = fixture
        .connect(serde_json::json!({
            "ca": "b/ca.pem",
            "cert": "a/reader.pem",
            "key": "a/reader.key",
        }))
        .await
        .expect_err("the process's certificate is not from b");
    assert!(matches!(err, BuildError::Setup(_)), "{err}");
    // Nor does a client certificate from another CA get in.
    let err = fixture
        .connect(serde_json::json!({
            "ca": "a/ca.pem",
            "cert": "b/reader.pem",
            "key": "b/reader.key",
        }))
        .await
        .expect_err("the client certificate is not from a");
    assert!(matches!(err, BuildError::Setup(_)), "{err}");
    assert!(fixture.process.0.lock().expect("lock").is_empty());
    Ok(())
}

#[tokio::test]
async fn tls_settings_are_checked_before_connecting() {
    let dir = Path::new("/nonexistent");
    let config =
        |v: serde_json::Value| -> GrpcConfig { serde_json::from_value(v).expect("parses") };
    let err = GrpcAdapter::connect(
        &config(serde_json::json!({
            "endpoint": "http://127.0.0.1:1",
            "tls": {"ca": "ca.pem"},
        })),
        dir,
    )
    .await
    .expect_err("tls on an http endpoint");
    assert_eq!(
        err.to_string(),
        "tls: is set, but the endpoint is not https://"
    );
    let err = GrpcAdapter::connect(
        &config(serde_json::json!({
            "endpoint": "https://127.0.0.1:1",
            "tls": {"ca": "ca.pem"},
        })),
        dir,
    )
    .await
    .expect_err("a missing ca file");
    assert_eq!(
        err.to_string(),
        "tls: cannot read ca bundle file /nonexistent/ca.pem"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_ca_the_system_roots_decide_and_do_not_know_a_private_ca() -> anyhow::Result<()> {
    // A process with TLS but no client certificates required.
    let certs = tempfile::tempdir()?;
    let a = dev_certs(&certs.path().join("a"), false)?;
    let acceptor = TlsAcceptor::new(ServerTlsOptions::new(ServerTlsFiles {
        cert: a.server_cert,
        key: a.server_key,
        client_ca: None,
    }))?;
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("https://{}", tcp.local_addr()?);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(SourceAdapterServiceServer::new(Process::default()))
            .serve_with_incoming(acceptor.incoming(tcp)),
    );
    let connect = |config: serde_json::Value| {
        let base_dir = certs.path().to_owned();
        async move {
            let config: GrpcConfig = serde_json::from_value(config).expect("config parses");
            GrpcAdapter::connect(&config, &base_dir).await
        }
    };
    // Refused: the handshake fails (or, on a machine with no system trust store
    // at all, building the client config does).
    connect(serde_json::json!({"endpoint": endpoint, "startup_timeout": "300ms"}))
        .await
        .expect_err("the throwaway CA is in no system trust store");
    let adapter = connect(serde_json::json!({
        "endpoint": endpoint, "startup_timeout": "300ms", "tls": {"ca": "a/ca.pem"},
    }))
    .await?;
    assert_eq!(adapter.describe().system, "crm");
    Ok(())
}
