//! The crate's error type.

use std::{io, net::SocketAddr, path::PathBuf};

/// Everything that can go wrong in this crate. Messages name files and reasons, never
/// certificate contents.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate, key or CA file could not be read.
    #[error("cannot read {what} file {path}")]
    Read {
        /// Which file: "certificate", "private key", "ca bundle".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A file holds malformed PEM.
    #[error("malformed pem in {what} file {path}")]
    Pem {
        /// Which file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// A certificate or CA file holds no certificate.
    #[error("no certificate in {what} file {path}")]
    NoCertificate {
        /// Which file.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// A key file holds no private key.
    #[error("no private key in key file {path}")]
    NoPrivateKey {
        /// The file.
        path: PathBuf,
    },
    /// A CA bundle holds a certificate that cannot serve as a trust anchor.
    #[error("unusable certificate in ca bundle {path}")]
    CaCertificate {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls::Error,
    },
    /// rustls refused the configuration, for example a key that does not match the
    /// certificate.
    #[error("invalid tls configuration")]
    Config(#[from] rustls::Error),
    /// A certificate verifier could not be built from the CA bundle.
    #[error("invalid ca bundle")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// No trust anchors: neither a CA bundle nor usable system roots.
    #[error("no trusted root certificates")]
    NoTrustAnchors,
    /// A peer certificate could not be parsed for its identity.
    #[error("unparseable peer certificate")]
    PeerCertificate,
    /// A plaintext listener was asked for on an address other than loopback.
    #[error(
        "refusing a plaintext listener on non-loopback address {addr}: configure tls, or allow insecure explicitly"
    )]
    PlaintextNonLoopback {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// A dev certificate file exists and overwriting was not asked for.
    #[error("refusing to overwrite existing file {path}")]
    AlreadyExists {
        /// The file.
        path: PathBuf,
    },
    /// A dev certificate file or directory could not be written.
    #[error("cannot write {path}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Certificate generation failed.
    #[error("certificate generation failed")]
    Generate(#[from] rcgen::Error),
}

/// The error [`crate::check_listener`] returns (the crate has a single error type).
pub type ListenerError = TlsError;

/// The error and its sources joined with ": ", for a log field.
pub(crate) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(next) = source {
        out.push_str(": ");
        out.push_str(&next.to_string());
        source = next.source();
    }
    out
}
