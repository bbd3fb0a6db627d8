//! Accepting TLS connections from a bound listener, for tonic.

use std::{
    io,
    net::SocketAddr,
    path::PathBuf,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::watch,
    task::{JoinHandle, JoinSet},
    time::Sleep,
};
use tokio_rustls::server::TlsStream;
use tokio_stream::Stream;
use tonic::transport::server::Connected;

use crate::{
    PeerIdentity, TlsError,
    error::chain,
    reload::{ReloadStatus, Reloadable, watch_files},
};

/// How long to pause accepting after an accept error that is not about one connection
/// (out of file descriptors, for example), so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// The PEM files a TLS listener serves from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTlsFiles {
    /// The server certificate chain, leaf first.
    pub cert: PathBuf,
    /// The server's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA bundle for client certificates; when set, every client must present a
    /// certificate that chains to it (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

/// A TLS listener's files and timings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTlsOptions {
    /// The PEM files.
    pub files: ServerTlsFiles,
    /// How long a client has to complete its handshake before the connection is closed.
    pub handshake_timeout: Duration,
    /// How often the files are checked for changes.
    pub reload_interval: Duration,
    /// Handshakes in progress at most; past it, accepting pauses until one finishes.
    pub max_pending_handshakes: usize,
}

impl ServerTlsOptions {
    /// Options with defaults: 10 s handshake timeout, files checked every 5 s, 1024
    /// handshakes in progress at most.
    pub fn new(files: ServerTlsFiles) -> Self {
        Self {
            files,
            handshake_timeout: Duration::from_secs(10),
            reload_interval: Duration::from_secs(5),
            max_pending_handshakes: 1024,
        }
    }
}

/// The TLS side of a gRPC listener: holds the current server config and hands out
/// streams of accepted connections.
pub struct TlsAcceptor {
    state: Arc<Reloadable>,
    options: ServerTlsOptions,
}

impl std::fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl TlsAcceptor {
    /// Loads and checks the files (blocking file I/O). Fails if they cannot be read or
    /// parsed, or the key does not match the certificate.
    pub fn new(options: ServerTlsOptions) -> Result<Self, TlsError> {
        Ok(Self {
            state: Arc::new(Reloadable::load(options.files.clone())?),
            options,
        })
    }

    /// Whether client certificates are required.
    pub fn mutual(&self) -> bool {
        self.options.files.client_ca.is_some()
    }

    /// Counts of applied and refused reloads; changes whenever one happens.
    pub fn reload_status(&self) -> watch::Receiver<ReloadStatus> {
        self.state.status()
    }

    /// Accepts TLS connections from `listener`. Must be called inside a tokio runtime:
    /// it starts the task that watches the files, which stops when the stream is
    /// dropped.
    pub fn incoming(&self, listener: TcpListener) -> TlsIncoming {
        TlsIncoming {
            listener,
            state: self.state.clone(),
            handshake_timeout: self.options.handshake_timeout,
            max_pending: self.options.max_pending_handshakes.max(1),
            handshakes: JoinSet::new(),
            backoff: None,
            reloader: tokio::spawn(watch_files(
                self.state.clone(),
                self.options.reload_interval,
            )),
        }
    }
}

/// What tonic learns about each connection; handlers find it in
/// `Request::extensions()`, or through [`peer_identity`].
///
/// tonic's own `Request::remote_addr()` only knows its built-in connect info types and
/// returns `None` for this one: use [`TlsConnectInfo::remote_addr`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConnectInfo {
    local_addr: Option<SocketAddr>,
    remote_addr: Option<SocketAddr>,
    peer: Option<PeerIdentity>,
}

impl TlsConnectInfo {
    /// The listener's address the connection came in on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// The client's address.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote_addr
    }

    /// The caller's verified client certificate identity; `None` without mutual TLS.
    pub fn peer_identity(&self) -> Option<&PeerIdentity> {
        self.peer.as_ref()
    }
}

/// The caller's identity from a request's connect info, when it came in over mutual TLS.
pub fn peer_identity<T>(request: &tonic::Request<T>) -> Option<&PeerIdentity> {
    request
        .extensions()
        .get::<TlsConnectInfo>()
        .and_then(TlsConnectInfo::peer_identity)
}

/// One accepted connection, handshake done.
#[derive(Debug)]
pub struct TlsConnection {
    stream: TlsStream<TcpStream>,
    info: TlsConnectInfo,
}

impl TlsConnection {
    /// What tonic puts in each request's extensions.
    pub fn info(&self) -> &TlsConnectInfo {
        &self.info
    }
}

impl Connected for TlsConnection {
    type ConnectInfo = TlsConnectInfo;

    fn connect_info(&self) -> TlsConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Why a handshake did not produce a connection.
#[derive(Debug, thiserror::Error)]
enum HandshakeFailure {
    #[error("handshake timed out")]
    TimedOut,
    #[error("tls handshake failed")]
    Tls(#[source] io::Error),
    #[error("client identity unreadable")]
    Identity(#[source] TlsError),
}

/// The stream of accepted TLS connections tonic's `serve_with_incoming*` takes.
///
/// Each TCP connection's handshake runs in its own task under the handshake timeout,
/// with the server config current when it was accepted. Failed handshakes are logged
/// with their reason and skipped; the stream only ends if it is dropped. Dropping it
/// stops the file watcher and aborts the handshakes in progress.
pub struct TlsIncoming {
    listener: TcpListener,
    state: Arc<Reloadable>,
    handshake_timeout: Duration,
    max_pending: usize,
    handshakes: JoinSet<Result<TlsConnection, HandshakeFailure>>,
    backoff: Option<Pin<Box<Sleep>>>,
    reloader: JoinHandle<()>,
}

impl std::fmt::Debug for TlsIncoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIncoming")
            .field("listener", &self.listener)
            .field("pending_handshakes", &self.handshakes.len())
            .finish_non_exhaustive()
    }
}

impl TlsIncoming {
    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

impl Drop for TlsIncoming {
    fn drop(&mut self) {
        self.reloader.abort();
    }
}

impl Stream for TlsIncoming {
    type Item = io::Result<TlsConnection>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            match this.handshakes.poll_join_next(cx) {
                Poll::Ready(Some(Ok(Ok(conn)))) => return Poll::Ready(Some(Ok(conn))),
                Poll::Ready(Some(Ok(Err(failure)))) => {
                    tracing::warn!(reason = %chain(&failure), "tls handshake failed");
                    continue;
                }
                Poll::Ready(Some(Err(_))) => {
                    tracing::error!("tls handshake task ended abnormally");
                    continue;
                }
                Poll::Ready(None) | Poll::Pending => {}
            }
            if this.handshakes.len() >= this.max_pending {
                // Woken when a handshake finishes; the kernel backlog holds the rest.
                return Poll::Pending;
            }
            if let Some(backoff) = this.backoff.as_mut() {
                ready!(backoff.as_mut().poll(cx));
                this.backoff = None;
            }
            match ready!(this.listener.poll_accept(cx)) {
                Ok((tcp, remote)) => {
                    let config = this.state.current();
                    this.handshakes
                        .spawn(handshake(config, tcp, remote, this.handshake_timeout));
                }
                Err(err) if is_connection_error(&err) => {}
                Err(err) => {
                    tracing::error!(reason = %err, "accepting a tcp connection failed");
                    this.backoff = Some(Box::pin(tokio::time::sleep(ACCEPT_ERROR_BACKOFF)));
                }
            }
        }
    }
}

/// Errors about one connection, which say nothing about the listener.
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::TimedOut
    )
}

async fn handshake(
    config: Arc<rustls::ServerConfig>,
    tcp: TcpStream,
    remote: SocketAddr,
    timeout: Duration,
) -> Result<TlsConnection, HandshakeFailure> {
    let local_addr = tcp.local_addr().ok();
    // Latency over throughput for request/response traffic; a failure changes nothing
    // that matters.
    let _ = tcp.set_nodelay(true);
    let accept = tokio_rustls::TlsAcceptor::from(config).accept(tcp);
    let stream = tokio::time::timeout(timeout, accept)
        .await
        .map_err(|_| HandshakeFailure::TimedOut)?
        .map_err(HandshakeFailure::Tls)?;
    let peer = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| PeerIdentity::from_der(leaf))
        .transpose()
        .map_err(HandshakeFailure::Identity)?;
    Ok(TlsConnection {
        stream,
        info: TlsConnectInfo {
            local_addr,
            remote_addr: Some(remote),
            peer,
        },
    })
}
