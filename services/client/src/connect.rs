//! How a client command reaches a gateway: plaintext or TLS (optionally with a
//! client certificate for mutual TLS), and a bearer token on every call.
//!
//! [`ConnectOptions`] are the command-line flags (`--ca`, `--cert`, `--key`,
//! `--token`, `--token-file`); [`channel`] turns an address and those options into
//! a [`Connection`], a tonic channel whose calls carry `authorization: Bearer`
//! when a token was given. The token is never printed: its `Debug` shows `***`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tessera_tls::{ClientIdentityFiles, ClientTlsFiles};
use tokio::net::TcpStream;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// A channel to the gateway whose calls carry the bearer token, if any.
pub type Connection = InterceptedService<Channel, Bearer>;

/// TLS and credential flags for commands that call a gateway.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConnectOptions {
    /// CA bundle (PEM) the gateway's certificate must chain to; implies TLS. With
    /// an `https://` address and no `--ca`, the system's trust store is used.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; needs `--key`.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM); needs `--cert`.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Bearer token sent as `authorization: Bearer TOKEN` (prefer `--token-file`:
    /// command lines are visible to other users).
    #[arg(long, value_name = "TOKEN", conflicts_with = "token_file")]
    pub token: Option<Token>,
    /// A file holding the bearer token (surrounding whitespace trimmed).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

/// A bearer token; `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct Token(String);

impl FromStr for Token {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Adds `authorization: Bearer TOKEN` (marked sensitive) to every call.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl fmt::Debug for Bearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Bearer(***)"
        } else {
            "Bearer(none)"
        })
    }
}

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

impl ConnectOptions {
    /// The bearer token from `--token` or `--token-file`, as a header value.
    fn bearer(&self) -> anyhow::Result<Bearer> {
        let token = match (&self.token, &self.token_file) {
            (Some(token), _) => token.0.trim().to_owned(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("{}: cannot read the token file", path.display()))?
                .trim()
                .to_owned(),
            (None, None) => return Ok(Bearer(None)),
        };
        if token.is_empty() {
            bail!("the bearer token is empty");
        }
        let Ok(mut value) = MetadataValue::try_from(format!("Bearer {token}")) else {
            bail!("the bearer token is not printable ASCII");
        };
        value.set_sensitive(true);
        Ok(Bearer(Some(value)))
    }

    /// Whether any TLS flag was given.
    fn wants_tls(&self) -> bool {
        self.ca.is_some() || self.cert.is_some()
    }

    /// The rustls client files.
    fn tls_files(&self) -> ClientTlsFiles {
        ClientTlsFiles {
            ca_bundle: self.ca.clone(),
            identity: match (&self.cert, &self.key) {
                (Some(cert), Some(key)) => Some(ClientIdentityFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                _ => None,
            },
        }
    }
}

/// Connects to the gateway at `addr` (`HOST:PORT`, `http://HOST:PORT` or
/// `https://HOST:PORT`) within `timeout`. TLS is used for `https://`, or for a bare
/// `HOST:PORT` when `--ca` or `--cert` is given; `http://` with TLS flags is an
/// error rather than a silent downgrade.
pub async fn channel(
    addr: &str,
    options: &ConnectOptions,
    timeout: Duration,
) -> anyhow::Result<Connection> {
    let (tls, authority) = match addr.split_once("://") {
        Some(("https", rest)) => (true, rest),
        Some(("http", _)) if options.wants_tls() => {
            bail!("--addr {addr}: --ca and --cert need https:// (or a bare HOST:PORT)")
        }
        Some(("http", rest)) => (false, rest),
        Some(_) => bail!("--addr {addr}: not a URL such as https://127.0.0.1:50051"),
        None => (options.wants_tls(), addr),
    };
    let authority = authority.trim_end_matches('/');
    let bearer = options.bearer()?;
    // The connector below does TLS itself, so the endpoint's own scheme stays http.
    let url = format!("http://{authority}");
    let shown = format!("{}://{authority}", if tls { "https" } else { "http" });
    let Ok(endpoint) = Endpoint::from_shared(url) else {
        bail!("--addr {addr}: not a URL such as http://127.0.0.1:50051");
    };
    let endpoint = endpoint.connect_timeout(timeout);
    let connecting = async {
        if tls {
            connect_tls(endpoint, options, authority).await
        } else {
            endpoint.connect().await.map_err(anyhow::Error::from)
        }
    };
    match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(channel)) => Ok(InterceptedService::new(channel, bearer)),
        Ok(Err(err)) => bail!("cannot connect to {shown}: {}", root_cause(err.as_ref())),
        Err(_) => bail!(
            "cannot connect to {shown}: no answer within {}",
            humantime::format_duration(timeout)
        ),
    }
}

/// One TLS connection per (re)connect, verified against `--ca` (or the system's
/// trust store) for the address's host name.
async fn connect_tls(
    endpoint: Endpoint,
    options: &ConnectOptions,
    authority: &str,
) -> anyhow::Result<Channel> {
    let config = tessera_tls::grpc_client_config(&options.tls_files())?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let host = endpoint
        .uri()
        .host()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
        .with_context(|| format!("{authority}: no host"))?;
    let name = ServerName::try_from(host)
        .with_context(|| format!("{authority}: not a host name or IP address"))?;
    let authority = authority.to_owned();
    let channel = endpoint
        .connect_with_connector(tower::service_fn(move |_| {
            let (connector, name, authority) = (connector.clone(), name.clone(), authority.clone());
            async move {
                let tcp = TcpStream::connect(authority.as_str()).await?;
                let _ = tcp.set_nodelay(true);
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        }))
        .await?;
    Ok(channel)
}

/// The innermost error of a chain: `Connection refused (os error 111)` rather than
/// `transport error`.
pub(crate) fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_sent_as_a_bearer_header_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret-token\n").unwrap();
        let options = ConnectOptions {
            token_file: Some(file),
            ..ConnectOptions::default()
        };
        let mut bearer = options.bearer().unwrap();
        let request = bearer.call(tonic::Request::new(())).unwrap();
        assert_eq!(
            request.metadata().get("authorization").unwrap(),
            "Bearer s3cret-token"
        );
        let shown = format!(
            "{options:?} {bearer:?} {:?}",
            "s3cret-token".parse::<Token>().unwrap()
        );
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn without_a_token_no_authorization_header_is_sent() {
        let mut bearer = ConnectOptions::default().bearer().unwrap();
        let request = bearer.call(tonic::Request::new(())).unwrap();
        assert!(request.metadata().get("authorization").is_none());
    }

    #[tokio::test]
    async fn tls_flags_with_an_http_url_are_refused_rather_than_downgraded() {
        let options = ConnectOptions {
            ca: Some(PathBuf::from("ca.pem")),
            ..ConnectOptions::default()
        };
        let err = channel("http://127.0.0.1:1", &options, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("need https://"), "{err}");
    }
}
