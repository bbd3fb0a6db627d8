//! TLS and mutual TLS to an adapter process: the `tls` block of the config, and
//! the connector that dials TCP and shakes hands with rustls (`aws-lc-rs`, from
//! `tessera-tls`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use schemars::JsonSchema;
use serde::Deserialize;
use tessera_adapter_core::BuildError;
use tessera_tls::{ClientIdentityFiles, ClientTlsFiles};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tonic::transport::{Channel, Endpoint, Uri};

/// TLS to the adapter process, for an `https://` endpoint. Paths are relative to
/// the config file's directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GrpcTlsConfig {
    /// The CA bundle (PEM) the process's certificate must chain to. Unset, the
    /// system's trust store.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Tessera's client certificate chain (PEM), for a process that requires
    /// mutual TLS; set together with `key`.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key: a PEM file's path (`file:PATH` is
    /// read the same). The key itself is never written in the config.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// The name the process's certificate must carry. Unset, the endpoint's host.
    #[serde(default)]
    pub server_name: Option<String>,
}

impl GrpcTlsConfig {
    /// Checks what can be checked without I/O.
    pub(crate) fn check(&self) -> Result<(), BuildError> {
        match (&self.cert, &self.key) {
            (Some(_), None) => return Err(BuildError::config("tls.key", "is needed with `cert`")),
            (None, Some(_)) => return Err(BuildError::config("tls.cert", "is needed with `key`")),
            _ => {}
        }
        if let Some(name) = &self.server_name {
            ServerName::try_from(name.as_str()).map_err(|_| {
                BuildError::config("tls.server_name", "is not a host name or IP address")
            })?;
        }
        Ok(())
    }

    /// The files, resolved against `base_dir`.
    fn files(&self, base_dir: &Path) -> ClientTlsFiles {
        let resolve = |path: &Path| {
            let path = path
                .to_str()
                .and_then(|p| p.strip_prefix("file:"))
                .map_or(path, Path::new);
            base_dir.join(path)
        };
        ClientTlsFiles {
            ca_bundle: self.ca.as_deref().map(resolve),
            identity: match (&self.cert, &self.key) {
                (Some(cert), Some(key)) => Some(ClientIdentityFiles {
                    cert: resolve(cert),
                    key: resolve(key),
                }),
                _ => None,
            },
        }
    }
}

/// An `https://` endpoint: where to dial and which name to verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsTarget {
    /// `HOST:PORT` (443 when the endpoint names no port).
    pub(crate) authority: String,
    /// The endpoint's host, without IPv6 brackets.
    pub(crate) host: String,
}

impl TlsTarget {
    /// The target of an `https://` URL, or why it is not one.
    pub(crate) fn parse(endpoint: &str) -> Result<Self, String> {
        let uri: Uri = endpoint
            .parse()
            .map_err(|_| "must be https://HOST:PORT".to_owned())?;
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or("names no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let authority = match uri.port_u16() {
            Some(port) if host.contains(':') => format!("[{host}]:{port}"),
            Some(port) => format!("{host}:{port}"),
            None if host.contains(':') => format!("[{host}]:443"),
            None => format!("{host}:443"),
        };
        Ok(Self { authority, host })
    }
}

/// A lazily connecting channel that speaks TLS to `target`, verifying the
/// process's certificate against `tls.ca` (or the system's roots) for
/// `tls.server_name` (or the host), and presenting `tls.cert` when set. Reads
/// the files now: a missing or malformed one fails the build, naming it.
pub(crate) fn channel(
    target: &TlsTarget,
    tls: &GrpcTlsConfig,
    base_dir: &Path,
    connect_timeout: std::time::Duration,
) -> Result<Channel, BuildError> {
    let config = tessera_tls::grpc_client_config(&tls.files(base_dir))
        .map_err(|e| BuildError::config("tls", e.to_string()))?;
    let connector = TlsConnector::from(Arc::new(config));
    let name = tls.server_name.as_deref().unwrap_or(&target.host);
    let name = ServerName::try_from(name.to_owned())
        .map_err(|_| BuildError::config("endpoint", "names no valid host"))?;
    let authority = target.authority.clone();
    // The connector does TLS itself, so the URI tonic sees stays http.
    let endpoint = Endpoint::from_shared(format!("http://{authority}"))
        .map_err(|_| BuildError::config("endpoint", "is not a URI"))?
        .connect_timeout(connect_timeout);
    Ok(
        endpoint.connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
            let (connector, name, authority) = (connector.clone(), name.clone(), authority.clone());
            async move {
                let tcp = tokio::net::TcpStream::connect(authority.as_str()).await?;
                let _ = tcp.set_nodelay(true);
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        })),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_endpoints_default_to_port_443_and_keep_ipv6_brackets() {
        let target = |e: &str| TlsTarget::parse(e).unwrap();
        assert_eq!(
            target("https://adapter.internal"),
            TlsTarget {
                authority: "adapter.internal:443".to_owned(),
                host: "adapter.internal".to_owned()
            }
        );
        assert_eq!(
            target("https://127.0.0.1:50061").authority,
            "127.0.0.1:50061"
        );
        let v6 = target("https://[::1]:50061");
        assert_eq!(
            (v6.authority.as_str(), v6.host.as_str()),
            ("[::1]:50061", "::1")
        );
    }

    #[test]
    fn a_certificate_needs_its_key_and_a_server_name_must_be_a_name() {
        let tls = GrpcTlsConfig {
            cert: Some("tessera.pem".into()),
            ..GrpcTlsConfig::default()
        };
        assert_eq!(
            tls.check().unwrap_err().to_string(),
            "tls.key: is needed with `cert`"
        );
        let tls = GrpcTlsConfig {
            server_name: Some("not a name".into()),
            ..GrpcTlsConfig::default()
        };
        assert_eq!(
            tls.check().unwrap_err().to_string(),
            "tls.server_name: is not a host name or IP address"
        );
    }

    #[test]
    fn paths_resolve_against_the_config_directory_and_file_references_are_paths() {
        let tls = GrpcTlsConfig {
            ca: Some("certs/ca.pem".into()),
            cert: Some("/abs/tessera.pem".into()),
            key: Some("file:certs/tessera.key".into()),
            server_name: None,
        };
        let files = tls.files(Path::new("/etc/tessera"));
        assert_eq!(
            files.ca_bundle,
            Some(PathBuf::from("/etc/tessera/certs/ca.pem"))
        );
        let identity = files.identity.unwrap();
        assert_eq!(identity.cert, PathBuf::from("/abs/tessera.pem"));
        assert_eq!(
            identity.key,
            PathBuf::from("/etc/tessera/certs/tessera.key")
        );
    }
}
