//! Transport security for Tessera's gRPC listener and its outbound connections.
//!
//! This crate owns everything TLS: [`TlsAcceptor`] turns an already-bound
//! [`tokio::net::TcpListener`] into a stream of TLS connections ([`TlsIncoming`]) that
//! tonic's `serve_with_incoming_shutdown` accepts. Handshakes run concurrently under a
//! timeout, so a slow or silent client never blocks the accept loop. When a client CA
//! bundle is configured, client certificates are required (mutual TLS) and the caller's
//! [`PeerIdentity`] (subject alternative names and common name of its certificate) rides
//! in every request's extensions as part of [`TlsConnectInfo`]. Certificate, key and CA
//! files are polled and hot-reloaded: new connections get the new configuration, open
//! ones are untouched, and a bad new file keeps the previous configuration.
//!
//! Around it: [`check_listener`] is the plaintext-on-non-loopback rule, [`client_config`]
//! builds outbound rustls client configs (optionally with a client certificate), and
//! [`dev_certs`] writes a throwaway CA, server and caller certificates for development.
//! All cryptography uses rustls' `aws-lc-rs` provider, passed explicitly everywhere
//! rather than taken from a process-wide default.

mod acceptor;
mod client;
mod dev_certs;
mod error;
mod identity;
mod listener;
mod pem;
mod reload;

pub use acceptor::{
    ServerTlsFiles, ServerTlsOptions, TlsAcceptor, TlsConnectInfo, TlsConnection, TlsIncoming,
    peer_identity,
};
pub use client::{ClientIdentityFiles, ClientTlsFiles, client_config, grpc_client_config};
pub use dev_certs::{DEV_CALLERS, DEV_TRUST_DOMAIN, DevCerts, dev_certs};
pub use error::{ListenerError, TlsError};
pub use identity::PeerIdentity;
pub use listener::check_listener;
pub use reload::ReloadStatus;

/// The crypto provider every config in this crate is built with (rustls' `aws-lc-rs`).
pub fn crypto_provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}
