//! Real TLS handshakes against a tonic server with the gRPC health service, behind
//! `TlsAcceptor`, on 127.0.0.1:0.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType,
};
use rustls::pki_types::{CertificateDer, ServerName};
use tessera_tls::{
    ClientIdentityFiles, ClientTlsFiles, PeerIdentity, ReloadStatus, ServerTlsFiles,
    ServerTlsOptions, TlsAcceptor, grpc_client_config, peer_identity,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{oneshot, watch},
    task::JoinHandle,
};
use tonic::{
    Request, Status,
    service::InterceptorLayer,
    transport::{Channel, Endpoint, Server},
};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// Longest any awaited event may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(10);

/// A throwaway certificate authority.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

/// A certificate and its key, in PEM, and the certificate's DER.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        Self {
            issuer: Issuer::new(params, key),
            pem: cert.pem(),
        }
    }

    fn server(&self, extra_dns: &str) -> Leaf {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), extra_dns.to_owned()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    fn client(&self, name: &str) -> Leaf {
        self.sign(Self::client_params(name))
    }

    fn client_params(name: &str) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.subject_alt_names = vec![
            SanType::URI(format!("spiffe://tessera.dev/{name}").try_into().unwrap()),
            SanType::DnsName(format!("{name}.tessera.local").try_into().unwrap()),
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params
    }

    fn sign(&self, params: CertificateParams) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }
}

/// Replaces a file atomically (write then rename), as certificate managers do, so the
/// reloader never reads half a file.
fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    let staged = dir.join(format!(".{name}.tmp"));
    std::fs::write(&staged, contents).unwrap();
    std::fs::rename(&staged, &path).unwrap();
    path
}

/// A running TLS gRPC server and what its handler saw.
struct TestServer {
    addr: SocketAddr,
    /// The peer identity of every request the handler got.
    seen: Arc<Mutex<Vec<Option<PeerIdentity>>>>,
    reloads: watch::Receiver<ReloadStatus>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl TestServer {
    async fn start(options: ServerTlsOptions) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = TlsAcceptor::new(options).unwrap();
        let reloads = acceptor.reload_status();
        let incoming = acceptor.incoming(listener);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let (_reporter, health) = tonic_health::server::health_reporter();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            Server::builder()
                .layer(InterceptorLayer::new(move |req: Request<()>| {
                    record.lock().unwrap().push(peer_identity(&req).cloned());
                    Ok::<_, Status>(req)
                }))
                .add_service(health)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            addr,
            seen,
            reloads,
            stop: Some(stop),
            task,
        }
    }

    async fn wait_for_reloads(&mut self, done: impl FnMut(&ReloadStatus) -> bool) {
        tokio::time::timeout(DEADLINE, self.reloads.wait_for(done))
            .await
            .expect("reload not seen in time")
            .unwrap();
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

/// A gRPC channel over exactly one TLS connection made with `config`: the server
/// certificate it saw, and how many connections it made (a reconnect would show).
struct TestClient {
    health: HealthClient<Channel>,
    server_certs: Arc<Mutex<Vec<CertificateDer<'static>>>>,
    connections: Arc<AtomicUsize>,
}

impl TestClient {
    async fn connect(addr: SocketAddr, config: rustls::ClientConfig) -> anyhow::Result<Self> {
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let server_certs = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (certs, count) = (server_certs.clone(), connections.clone());
        let channel = Endpoint::from_static("http://localhost")
            .connect_with_connector(tower::service_fn(move |_| {
                let (connector, certs, count) = (connector.clone(), certs.clone(), count.clone());
                async move {
                    count.fetch_add(1, Ordering::SeqCst);
                    let tcp = TcpStream::connect(addr).await?;
                    let name = ServerName::try_from("localhost").unwrap();
                    let tls = connector.connect(name, tcp).await?;
                    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
                    certs.lock().unwrap().push(leaf);
                    Ok::<_, std::io::Error>(TokioIo::new(tls))
                }
            }))
            .await?;
        Ok(Self {
            health: HealthClient::new(channel),
            server_certs,
            connections,
        })
    }

    async fn check(&mut self) -> Result<ServingStatus, Status> {
        let response = tokio::time::timeout(
            DEADLINE,
            self.health.check(HealthCheckRequest {
                service: String::new(),
            }),
        )
        .await
        .map_err(|_| Status::deadline_exceeded("test deadline"))??;
        Ok(response.into_inner().status())
    }

    fn server_cert(&self) -> CertificateDer<'static> {
        self.server_certs.lock().unwrap().last().unwrap().clone()
    }
}

/// A CA, a server certificate and the server's files in a temporary directory.
struct Setup {
    dir: tempfile::TempDir,
    ca: Ca,
    server: Leaf,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("test ca");
        let server = ca.server("v1.server.test");
        write(dir.path(), "server.pem", &server.cert_pem);
        write(dir.path(), "server.key", &server.key_pem);
        write(dir.path(), "ca.pem", &ca.pem);
        // What clients trust the server with, apart from the client CA the server reads.
        write(dir.path(), "server-ca.pem", &ca.pem);
        Self { dir, ca, server }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn options(&self, mutual: bool) -> ServerTlsOptions {
        let mut options = ServerTlsOptions::new(ServerTlsFiles {
            cert: self.path("server.pem"),
            key: self.path("server.key"),
            client_ca: mutual.then(|| self.path("ca.pem")),
        });
        options.reload_interval = Duration::from_millis(50);
        options
    }

    /// A gRPC client config trusting the server's CA, presenting `client` if given.
    fn client_config(&self, client: Option<(&str, &Leaf)>) -> rustls::ClientConfig {
        let identity = client.map(|(name, leaf)| ClientIdentityFiles {
            cert: write(self.dir.path(), &format!("{name}.pem"), &leaf.cert_pem),
            key: write(self.dir.path(), &format!("{name}.key"), &leaf.key_pem),
        });
        grpc_client_config(&ClientTlsFiles {
            ca_bundle: Some(self.path("server-ca.pem")),
            identity,
        })
        .unwrap()
    }
}

/// Handshakes with `config`, then reads: the alert the server refused the client with.
async fn refusal(addr: SocketAddr, config: rustls::ClientConfig) -> String {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    // With TLS 1.3 the client's side of the handshake completes before the server has
    // checked the client certificate; the refusal arrives as an alert on first read.
    let outcome = tokio::time::timeout(DEADLINE, async {
        let mut tls = connector.connect(name, tcp).await?;
        tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await?;
        let mut buf = [0u8; 64];
        tls.read(&mut buf).await
    })
    .await
    .expect("no answer from the server");
    match outcome {
        Err(err) => err.to_string(),
        Ok(n) => panic!("server accepted the connection and sent {n} bytes"),
    }
}

#[tokio::test]
async fn a_valid_client_certificate_is_served_and_the_handler_sees_its_identity() {
    let setup = Setup::new();
    let server = TestServer::start(setup.options(true)).await;
    let reader = setup.ca.client("reader");

    let mut client =
        TestClient::connect(server.addr, setup.client_config(Some(("reader", &reader))))
            .await
            .unwrap();

    assert_eq!(client.check().await.unwrap(), ServingStatus::Serving);
    assert_eq!(client.server_cert(), setup.server.der);
    assert_eq!(
        server.seen.lock().unwrap().as_slice(),
        [Some(PeerIdentity {
            sans: vec![
                "spiffe://tessera.dev/reader".to_owned(),
                "reader.tessera.local".to_owned()
            ],
            subject_cn: Some("reader".to_owned()),
        })]
    );
    server.stop().await;
}

#[tokio::test]
async fn clients_without_a_valid_certificate_are_refused_and_the_listener_keeps_serving() {
    let setup = Setup::new();
    let server = TestServer::start(setup.options(true)).await;

    // No client certificate at all.
    let alert = refusal(server.addr, setup.client_config(None)).await;
    assert!(alert.contains("CertificateRequired"), "{alert}");
    // A gRPC client may get its channel (the h2 preface is not awaited) but no answer.
    if let Ok(mut client) = TestClient::connect(server.addr, setup.client_config(None)).await {
        let refused = client.check().await.unwrap_err();
        assert!(
            format!("{refused:?}").contains("CertificateRequired"),
            "{refused:?}"
        );
    }

    // A certificate from another CA.
    let stranger = Ca::new("other ca").client("reader");
    let alert = refusal(
        server.addr,
        setup.client_config(Some(("stranger", &stranger))),
    )
    .await;
    assert!(alert.contains("UnknownCA"), "{alert}");

    // An expired certificate from the right CA.
    let mut params = Ca::client_params("steward");
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let expired = setup.ca.sign(params);
    let alert = refusal(
        server.addr,
        setup.client_config(Some(("expired", &expired))),
    )
    .await;
    assert!(alert.contains("CertificateExpired"), "{alert}");

    // None of it reached the handler, and a valid client is still served.
    assert!(server.seen.lock().unwrap().is_empty());
    let steward = setup.ca.client("steward");
    let mut client = TestClient::connect(
        server.addr,
        setup.client_config(Some(("steward", &steward))),
    )
    .await
    .unwrap();
    assert_eq!(client.check().await.unwrap(), ServingStatus::Serving);
    server.stop().await;
}

#[tokio::test]
async fn without_a_client_ca_any_client_is_served_with_no_identity() {
    let setup = Setup::new();
    let server = TestServer::start(setup.options(false)).await;

    let mut client = TestClient::connect(server.addr, setup.client_config(None))
        .await
        .unwrap();

    assert_eq!(client.check().await.unwrap(), ServingStatus::Serving);
    assert_eq!(server.seen.lock().unwrap().as_slice(), [None]);
    server.stop().await;
}

#[tokio::test]
async fn a_silent_client_is_dropped_after_the_handshake_timeout_without_blocking_others() {
    let setup = Setup::new();
    let mut options = setup.options(true);
    options.handshake_timeout = Duration::from_millis(300);
    let server = TestServer::start(options).await;

    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let reader = setup.ca.client("reader");
    let mut client =
        TestClient::connect(server.addr, setup.client_config(Some(("reader", &reader))))
            .await
            .unwrap();
    assert_eq!(client.check().await.unwrap(), ServingStatus::Serving);

    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(DEADLINE, silent.read(&mut buf))
        .await
        .expect("the silent connection was never closed");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_reloaded_server_certificate_serves_new_connections_and_keeps_open_ones() {
    let setup = Setup::new();
    let mut server = TestServer::start(setup.options(true)).await;
    let reader = setup.ca.client("reader");
    let config = setup.client_config(Some(("reader", &reader)));
    let mut before = TestClient::connect(server.addr, config.clone())
        .await
        .unwrap();
    assert_eq!(before.check().await.unwrap(), ServingStatus::Serving);
    assert_eq!(before.server_cert(), setup.server.der);

    let renewed = setup.ca.server("v2.server.test");
    write(setup.dir.path(), "server.key", &renewed.key_pem);
    write(setup.dir.path(), "server.pem", &renewed.cert_pem);
    server.wait_for_reloads(|s| s.applied >= 1).await;

    let mut after = TestClient::connect(server.addr, config).await.unwrap();
    assert_eq!(after.check().await.unwrap(), ServingStatus::Serving);
    assert_eq!(after.server_cert(), renewed.der);
    assert!(
        PeerIdentity::from_der(&after.server_cert())
            .unwrap()
            .sans
            .contains(&"v2.server.test".to_owned())
    );

    // The connection opened before the reload still works, and was not re-made.
    assert_eq!(before.check().await.unwrap(), ServingStatus::Serving);
    assert_eq!(before.connections.load(Ordering::SeqCst), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_bad_new_certificate_or_key_keeps_the_previous_configuration() {
    let setup = Setup::new();
    let mut server = TestServer::start(setup.options(true)).await;
    let reader = setup.ca.client("reader");
    let config = setup.client_config(Some(("reader", &reader)));

    write(
        setup.dir.path(),
        "server.pem",
        "-----BEGIN CERTIFICATE-----\ngarbage\n",
    );
    server.wait_for_reloads(|s| s.refused >= 1).await;
    let mut client = TestClient::connect(server.addr, config.clone())
        .await
        .unwrap();
    assert_eq!(client.check().await.unwrap(), ServingStatus::Serving);
    assert_eq!(client.server_cert(), setup.server.der);

    // A well-formed certificate whose key is not the one on disk.
    let other = setup.ca.server("v2.server.test");
    write(setup.dir.path(), "server.pem", &other.cert_pem);
    server.wait_for_reloads(|s| s.refused >= 2).await;
    let mut client = TestClient::connect(server.addr, config).await.unwrap();
    assert_eq!(client.check().await.unwrap(), ServingStatus::Serving);
    assert_eq!(client.server_cert(), setup.server.der);
    assert_eq!(
        *server.reloads.borrow(),
        ReloadStatus {
            applied: 0,
            refused: 2
        }
    );
    server.stop().await;
}

#[tokio::test]
async fn a_reloaded_client_ca_refuses_callers_of_the_old_one() {
    let setup = Setup::new();
    let mut server = TestServer::start(setup.options(true)).await;
    let old_caller = setup.ca.client("reader");

    let new_ca = Ca::new("new ca");
    // Trust the new CA only; the server certificate itself is unchanged.
    write(setup.dir.path(), "ca.pem", &new_ca.pem);
    server.wait_for_reloads(|s| s.applied >= 1).await;

    let alert = refusal(server.addr, setup.client_config(Some(("old", &old_caller)))).await;
    assert!(alert.contains("UnknownCA"), "{alert}");
    let new_caller = new_ca.client("reader");
    let mut client =
        TestClient::connect(server.addr, setup.client_config(Some(("new", &new_caller))))
            .await
            .unwrap();
    assert_eq!(client.check().await.unwrap(), ServingStatus::Serving);
    server.stop().await;
}
