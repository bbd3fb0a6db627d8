//! Server wiring: the contract's services, `grpc.health.v1` and, when enabled,
//! server reflection (v1 and v1alpha) on one tonic server, over a listener the
//! caller has bound (plaintext, or TLS through [`tessera_tls::TlsAcceptor`]), with
//! a graceful shutdown bounded by a grace period. [`check_listener`] is the rule
//! that keeps plaintext off non-loopback addresses.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tessera_aggregator::PatientViewGrpc;
use tessera_proto::v1::{
    identity_service_server::IdentityServiceServer,
    patient_view_service_server::PatientViewServiceServer,
    source_adapter_service_server::SourceAdapterServiceServer,
};
use tessera_resolver::IdentityGrpc;
use tessera_tls::TlsAcceptor;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;
use tonic::transport::server::TcpIncoming;

use crate::config::ServerConfig;
use crate::health::HealthState;
use crate::pending::{IdentityStub, PatientViewStub, SourceAdapterStub};
use tessera_audit::AuditLayer;

/// Why the server stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The reflection service could not be built from the embedded descriptors.
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The transport failed.
    #[error("transport error: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The TLS files could not be loaded, or the listen address is not allowed
    /// without TLS.
    #[error("{0}")]
    Tls(#[from] tessera_tls::TlsError),
    /// Startup (loading the identity index, say) failed.
    #[error("startup failed: {0}")]
    Startup(String),
}

/// How a server that was asked to stop actually stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Every in-flight call finished within the grace period.
    Graceful,
    /// The grace period ran out; calls still running were cut off.
    GraceExpired,
}

/// Server settings that come from the config file.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// How long in-flight calls may run after the shutdown signal.
    pub grace_period: Duration,
    /// Traces and times every call ([`crate::telemetry::Telemetry::rpc_layer`]).
    pub rpc: crate::telemetry::rpc::RpcLayer,
    /// TLS (and mutual TLS) on the listener; plaintext when `None`.
    pub tls: Option<Arc<TlsAcceptor>>,
    /// Whether server reflection (v1 and v1alpha) is served.
    pub reflection: bool,
    /// Authentication, the RPC table and the audit trail. Without it no call carries a
    /// grant, so every handler refuses every call (only health answers).
    pub guard: Option<Guard>,
}

/// What guards each call: the authenticator (caller, grant, RPC table) and the audit
/// sink (one record per `tessera.v1` call, fail closed).
#[derive(Clone)]
pub struct Guard {
    /// Admits callers.
    pub authenticator: Arc<tessera_auth::layer::Authenticator>,
    /// Where audit records go; `None` records nothing (loopback only, warned at start).
    pub audit: Option<Arc<dyn tessera_audit::AuditSink>>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("audit", &self.audit.is_some())
            .finish_non_exhaustive()
    }
}

/// Checks that `addr` may be listened on with `server`'s settings: plaintext only
/// on loopback unless `insecure` is set, in which case it warns loudly.
pub fn check_listener(addr: SocketAddr, server: &ServerConfig) -> Result<(), ServeError> {
    tessera_tls::check_listener(addr, server.tls.is_some(), server.insecure)?;
    if server.tls.is_none() && !addr.ip().to_canonical().is_loopback() {
        tracing::warn!(
            listen = %addr,
            "INSECURE: plaintext gRPC on a non-loopback address; anyone who can reach \
             the port reads patient data unencrypted (server.insecure is true)"
        );
    }
    Ok(())
}

/// The TLS acceptor for `server.tls`, its files resolved from the config file
/// at `config_path` and loaded now (blocking file I/O); `None` without TLS.
pub fn tls_acceptor(
    server: &ServerConfig,
    config_path: &Path,
) -> Result<Option<Arc<TlsAcceptor>>, ServeError> {
    let Some(tls) = &server.tls else {
        return Ok(None);
    };
    let acceptor = TlsAcceptor::new(tls.options(config_path))?;
    tracing::info!(mutual = acceptor.mutual(), "tls enabled");
    Ok(Some(Arc::new(acceptor)))
}

/// The contract's services this process implements; the rest answer
/// UNIMPLEMENTED and say what is missing.
#[derive(Debug, Default)]
pub struct Services {
    /// IdentityService over a loaded resolver.
    pub identity: Option<IdentityGrpc>,
    /// PatientViewService over the configured sources.
    pub patient_view: Option<PatientViewGrpc>,
}

/// The fully-qualified names of the services the health service reports on.
pub fn service_names() -> Vec<&'static str> {
    vec![
        <IdentityServiceServer<IdentityStub> as NamedService>::NAME,
        <PatientViewServiceServer<PatientViewStub> as NamedService>::NAME,
        <SourceAdapterServiceServer<SourceAdapterStub> as NamedService>::NAME,
    ]
}

/// The reflection service's descriptors: the contract, health, and the
/// `google.rpc` error details, so clients such as grpcurl can decode the
/// `ErrorInfo` and `BadRequest` details of our errors.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tessera_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
}

/// Serves on `listener` at once, with health NOT_SERVING while `startup` runs
/// (loading the identity index, say); once it succeeds, health turns SERVING and
/// `on_ready` is called. Serves until `shutdown` resolves (during startup too).
/// Then it drains: health turns
/// NOT_SERVING (ending every health watch), the listener closes so new connections
/// are refused, open connections get GOAWAY so new calls are refused, and in-flight
/// calls have `grace_period` to finish.
pub async fn serve(
    listener: TcpListener,
    services: Services,
    options: ServeOptions,
    startup: impl Future<Output = Result<(), String>>,
    shutdown: impl Future<Output = ()>,
    on_ready: impl FnOnce(),
) -> Result<Shutdown, ServeError> {
    let (health, health_service) = HealthState::new(service_names()).await;
    let routes = routes(services, health_service, options.reflection)?;

    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (auth, audit) = guard_layers(options.guard.as_ref());
    let audit_watch = audit.as_ref().map(|layer| (layer.failures(), layer.sink()));
    let router = tonic::transport::Server::builder()
        .layer(options.rpc.clone())
        .layer(tower::util::option_layer(audit))
        .layer(tower::util::option_layer(auth))
        .add_routes(routes);
    let stop = async {
        let _ = stop_rx.await;
    };
    let mut server = match &options.tls {
        Some(acceptor) => {
            tokio::spawn(router.serve_with_incoming_shutdown(acceptor.incoming(listener), stop))
        }
        None => {
            let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
            tokio::spawn(router.serve_with_incoming_shutdown(incoming, stop))
        }
    };

    let mut shutdown = std::pin::pin!(shutdown);
    let mut failed = None;
    let mut readiness = None;
    tokio::select! {
        result = startup => match result {
            Ok(()) => {
                health.set_serving().await;
                tracing::info!("serving");
                if let Some((failures, sink)) = audit_watch {
                    readiness = Some(tokio::spawn(watch_audit(health.clone(), failures, sink)));
                }
                on_ready();
            }
            Err(message) => failed = Some(message),
        },
        () = &mut shutdown => {}
        result = &mut server => return stopped(result),
    }
    if failed.is_none() {
        tokio::select! {
            result = &mut server => return stopped(result),
            () = &mut shutdown => {}
        }
    }

    tracing::info!(
        grace_period_ms = options.grace_period.as_millis() as u64,
        "draining"
    );
    if let Some(task) = readiness {
        task.abort();
    }
    health.drain().await;
    let _ = stop_tx.send(());
    let drained = tokio::time::timeout(options.grace_period, &mut server).await;
    if let Some(message) = failed {
        server.abort();
        return Err(ServeError::Startup(message));
    }
    drained_outcome(drained, &server)
}

type ServerTask = tokio::task::JoinHandle<Result<(), tonic::transport::Error>>;

/// How the drain ended: every call finished, or the grace period ran out and the
/// server task was cut off.
fn drained_outcome(
    drained: Result<
        Result<Result<(), tonic::transport::Error>, tokio::task::JoinError>,
        tokio::time::error::Elapsed,
    >,
    server: &ServerTask,
) -> Result<Shutdown, ServeError> {
    match drained {
        Ok(Ok(Ok(()))) => {
            tracing::info!("drained");
            Ok(Shutdown::Graceful)
        }
        Ok(Ok(Err(e))) => Err(e.into()),
        Ok(Err(join)) => std::panic::resume_unwind(join.into_panic()),
        Err(_elapsed) => {
            server.abort();
            tracing::warn!("grace period expired; cutting off in-flight calls");
            Ok(Shutdown::GraceExpired)
        }
    }
}

/// Readiness follows the audit trail: NOT_SERVING while it cannot be written (calls
/// that touch patient data are refused meanwhile), SERVING again once a probe finds it
/// back. Woken by each failed call, and checks every second while unhealthy.
async fn watch_audit(
    health: HealthState,
    failures: Arc<tokio::sync::Notify>,
    sink: Arc<dyn tessera_audit::AuditSink>,
) {
    let mut ready = true;
    loop {
        if ready {
            failures.notified().await;
        } else {
            tokio::time::sleep(AUDIT_PROBE_INTERVAL).await;
        }
        let ok = sink.healthy() || sink.probe().await.is_ok();
        if ok != ready {
            ready = ok;
            if ok {
                tracing::info!("audit trail writable again; serving");
                health.set_serving().await;
            } else {
                tracing::error!("audit trail unavailable; not ready");
                health.set_not_serving().await;
            }
        }
    }
}

/// How often an unwritable audit trail is probed.
const AUDIT_PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// The auth and audit layers of `guard` (none without one).
fn guard_layers(
    guard: Option<&Guard>,
) -> (Option<tessera_auth::layer::AuthLayer>, Option<AuditLayer>) {
    let auth = guard.map(|g| tessera_auth::layer::AuthLayer::new(g.authenticator.clone()));
    let audit = guard
        .and_then(|g| g.audit.clone())
        .map(|sink| AuditLayer::new(sink, crate::telemetry::rpc::current_trace_id));
    (auth, audit)
}

/// Every service on one router: health, reflection when enabled, and each contract
/// service (its pending stub when this process does not implement it).
fn routes(
    services: Services,
    health: tonic_health::pb::health_server::HealthServer<crate::health::DrainingHealth>,
    reflection_on: bool,
) -> Result<tonic::service::Routes, ServeError> {
    let mut routes = RoutesBuilder::default();
    routes
        .add_service(health)
        .add_service(SourceAdapterServiceServer::new(SourceAdapterStub));
    if reflection_on {
        routes
            .add_service(reflection().build_v1()?)
            .add_service(reflection().build_v1alpha()?);
    }
    match services.patient_view {
        Some(view) => routes.add_service(PatientViewServiceServer::new(view)),
        None => routes.add_service(PatientViewServiceServer::new(PatientViewStub)),
    };
    match services.identity {
        Some(identity) => routes.add_service(IdentityServiceServer::new(identity)),
        None => routes.add_service(IdentityServiceServer::new(IdentityStub)),
    };
    Ok(routes.routes())
}

/// The outcome of a server that stopped without being asked to.
fn stopped(
    result: Result<Result<(), tonic::transport::Error>, tokio::task::JoinError>,
) -> Result<Shutdown, ServeError> {
    match result {
        Ok(Ok(())) => Ok(Shutdown::Graceful),
        Ok(Err(e)) => Err(e.into()),
        Err(join) => std::panic::resume_unwind(join.into_panic()),
    }
}
