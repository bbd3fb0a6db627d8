//! Polling the certificate, key and CA files and swapping the server config.
//!
//! Every `reload_interval` the three files are read whole (they are a few kilobytes) and
//! compared with the contents last seen. On a change a new rustls `ServerConfig` is built
//! from them: certificate, key (rustls checks that it matches the certificate) and CA
//! bundle together, so a new CA and a new certificate take effect atomically. A config
//! that builds replaces the current one for new handshakes; one that does not is logged
//! and the current config stays. Open connections hold their own reference to the config
//! they were accepted with and are never touched. A fresh config also means a fresh TLS
//! session cache, so no session resumed after a CA change skips the new verifier.

use std::{
    sync::{Arc, Mutex, PoisonError, RwLock},
    time::Duration,
};

use rustls::{ServerConfig, server::WebPkiClientVerifier};
use tokio::{sync::watch, time::MissedTickBehavior};

use crate::{ServerTlsFiles, TlsError, crypto_provider, error::chain, pem};

/// How many reloads were applied and how many were refused since start.
///
/// A refused reload (unreadable or unparseable file, key not matching the certificate)
/// is counted once per distinct change of the files' contents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReloadStatus {
    /// New configurations put in service.
    pub applied: u64,
    /// Changes that were refused, the previous configuration kept.
    pub refused: u64,
}

/// The raw contents of the configured files.
#[derive(Clone, PartialEq, Eq)]
struct Contents {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl Contents {
    fn read(files: &ServerTlsFiles) -> Result<Self, TlsError> {
        Ok(Self {
            cert: pem::read("certificate", &files.cert)?,
            key: pem::read("private key", &files.key)?,
            client_ca: files
                .client_ca
                .as_deref()
                .map(|path| pem::read("ca bundle", path))
                .transpose()?,
        })
    }

    fn server_config(&self, files: &ServerTlsFiles) -> Result<ServerConfig, TlsError> {
        let provider = crypto_provider();
        let chain = pem::certificates("certificate", &files.cert, &self.cert)?;
        let key = pem::private_key(&files.key, &self.key)?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let builder = match (&files.client_ca, &self.client_ca) {
            (Some(path), Some(bytes)) => {
                let roots = pem::root_store(path, bytes)?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()?;
                builder.with_client_cert_verifier(verifier)
            }
            _ => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}

/// The current config and what the files held when it was last looked at.
pub(crate) struct Reloadable {
    files: ServerTlsFiles,
    current: RwLock<Arc<ServerConfig>>,
    /// The contents last seen; `None` after a failed read.
    last_seen: Mutex<Option<Contents>>,
    status: watch::Sender<ReloadStatus>,
}

impl Reloadable {
    /// Reads and checks the files; an error here means nothing can be served.
    pub(crate) fn load(files: ServerTlsFiles) -> Result<Self, TlsError> {
        let contents = Contents::read(&files)?;
        let config = contents.server_config(&files)?;
        Ok(Self {
            files,
            current: RwLock::new(Arc::new(config)),
            last_seen: Mutex::new(Some(contents)),
            status: watch::Sender::new(ReloadStatus::default()),
        })
    }

    /// The config new handshakes use.
    pub(crate) fn current(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn status(&self) -> watch::Receiver<ReloadStatus> {
        self.status.subscribe()
    }

    /// Looks at the files once and applies a change (blocking file I/O).
    fn check(&self) {
        let mut last_seen = self
            .last_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let contents = match Contents::read(&self.files) {
            Ok(contents) => contents,
            Err(err) => {
                if last_seen.take().is_some() {
                    self.status.send_modify(|s| s.refused += 1);
                    tracing::error!(
                        reason = %chain(&err),
                        "tls files unreadable; keeping the current configuration"
                    );
                }
                return;
            }
        };
        if last_seen.as_ref() == Some(&contents) {
            return;
        }
        let built = contents.server_config(&self.files);
        *last_seen = Some(contents);
        match built {
            Ok(config) => {
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(config);
                self.status.send_modify(|s| s.applied += 1);
                tracing::info!("tls configuration reloaded");
            }
            Err(err) => {
                self.status.send_modify(|s| s.refused += 1);
                tracing::error!(
                    reason = %chain(&err),
                    "tls reload refused; keeping the current configuration"
                );
            }
        }
    }
}

/// Checks the files every `interval`, forever; the first check is one interval after
/// start.
pub(crate) async fn watch_files(state: Arc<Reloadable>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let state = state.clone();
        if tokio::task::spawn_blocking(move || state.check())
            .await
            .is_err()
        {
            tracing::error!("tls reload check failed to run");
        }
    }
}
