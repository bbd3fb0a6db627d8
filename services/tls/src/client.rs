//! rustls client configs for Tessera's outbound connections (out-of-process gRPC
//! adapters, databases).

use std::{path::PathBuf, sync::Arc};

use rustls::{ClientConfig, RootCertStore, client::WebPkiServerVerifier};

use crate::{TlsError, crypto_provider, pem};

/// A client certificate and its key, for mutual TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientIdentityFiles {
    /// The client certificate chain, leaf first (PEM).
    pub cert: PathBuf,
    /// The client's private key (PEM).
    pub key: PathBuf,
}

/// What an outbound TLS connection trusts and presents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientTlsFiles {
    /// CA bundle the server's certificate must chain to; the system's trust store when
    /// unset.
    pub ca_bundle: Option<PathBuf>,
    /// A client certificate to present, for servers that require mutual TLS.
    pub identity: Option<ClientIdentityFiles>,
}

/// A rustls client config from the files (blocking file I/O), with no ALPN protocols set.
pub fn client_config(files: &ClientTlsFiles) -> Result<ClientConfig, TlsError> {
    let provider = crypto_provider();
    let roots = match &files.ca_bundle {
        Some(path) => pem::root_store(path, &pem::read("ca bundle", path)?)?,
        None => system_roots(),
    };
    if roots.is_empty() {
        return Err(TlsError::NoTrustAnchors);
    }
    let verifier =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_webpki_verifier(verifier);
    Ok(match &files.identity {
        Some(identity) => {
            let chain = pem::certificates(
                "certificate",
                &identity.cert,
                &pem::read("certificate", &identity.cert)?,
            )?;
            let key = pem::private_key(&identity.key, &pem::read("private key", &identity.key)?)?;
            builder.with_client_auth_cert(chain, key)?
        }
        None => builder.with_no_client_auth(),
    })
}

/// [`client_config`] offering ALPN `h2`, as gRPC needs.
pub fn grpc_client_config(files: &ClientTlsFiles) -> Result<ClientConfig, TlsError> {
    let mut config = client_config(files)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The system's trust store; unreadable entries are skipped.
fn system_roots() -> RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    if !found.errors.is_empty() {
        tracing::warn!(
            errors = found.errors.len(),
            "some system root certificates could not be loaded"
        );
    }
    let mut roots = RootCertStore::empty();
    let (_added, _ignored) = roots.add_parsable_certificates(found.certs);
    roots
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_ca_bundle_is_a_read_error_naming_the_file() {
        let files = ClientTlsFiles {
            ca_bundle: Some(PathBuf::from("/nonexistent/ca.pem")),
            identity: None,
        };
        let err = client_config(&files).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot read ca bundle file /nonexistent/ca.pem"
        );
    }
}
