//! Builds the security parts `serve` runs with from the configuration: the policy and
//! its authenticator (client certificates, bearer tokens, the anonymous loopback grant),
//! the audit sink, and the page-token keys. Secrets are resolved here, once, and never
//! printed.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tessera_audit::{AuditSink, JsonlSink, PostgresSink};
use tessera_auth::jwt::JwtVerifier;
use tessera_auth::layer::Authenticator;
use tessera_auth::page_token::{PageKey, PageTokens};
use tessera_auth::{PermissionTable, Policy};

use crate::config::{AuditConfig, Config};

/// The least page-token key length, in bytes.
const MIN_PAGE_KEY_LEN: usize = 32;

/// What `serve` guards its calls with.
pub struct Security {
    /// Admits callers and checks the RPC table.
    pub authenticator: Arc<Authenticator>,
    /// Where each call's audit record goes; `None` only on a loopback listener whose
    /// config has no `audit` section.
    pub audit: Option<Arc<dyn AuditSink>>,
    /// Signs and checks list page tokens.
    pub page_tokens: PageTokens,
}

impl Security {
    /// The server's guard: the authenticator and the audit sink.
    pub fn guard(&self) -> crate::server::Guard {
        crate::server::Guard {
            authenticator: self.authenticator.clone(),
            audit: self.audit.clone(),
        }
    }
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("audit", &self.audit.is_some())
            .finish_non_exhaustive()
    }
}

/// Builds the security parts for a server listening on `listen` (which may differ from
/// the config's with `serve --listen`): the anonymous loopback grant is refused on any
/// other address, and so is a missing audit section.
pub async fn build(
    config: &Config,
    config_path: &Path,
    listen: SocketAddr,
) -> anyhow::Result<Security> {
    config
        .policy
        .validate_for_listener(listen)
        .context("policy")?;
    if config.audit.is_none() && !listen.ip().to_canonical().is_loopback() {
        anyhow::bail!("audit: is required on a listener that is not loopback ({listen})");
    }
    let table = PermissionTable::for_contract(config.server.reflection)?;
    let policy = Arc::new(Policy::new(&config.policy, table).context("policy")?);
    if let Some(grant) = policy.anonymous_grant() {
        tracing::warn!(
            role = ?grant.role,
            "INSECURE: callers without credentials on loopback are granted a role \
             (policy.anonymous_loopback); never use this outside a developer machine"
        );
    }
    let jwt = match &config.auth.jwt {
        Some(jwt) => {
            let verifier = Arc::new(JwtVerifier::new(jwt.clone()).context("auth.jwt")?);
            if let Err(err) = verifier.refresh().await {
                // Not fatal: tokens are refused until the key set can be fetched.
                tracing::warn!(error = %err, "cannot fetch the token issuer's key set yet");
            }
            Some(verifier)
        }
        None => None,
    };
    let audit = match &config.audit {
        Some(audit) => Some(open_audit(audit, config_path).await?),
        None => {
            tracing::warn!("no audit trail configured: calls are not recorded (loopback only)");
            None
        }
    };
    Ok(Security {
        authenticator: Arc::new(Authenticator::new(policy, jwt)),
        audit,
        page_tokens: page_tokens(config, config_path)?,
    })
}

async fn open_audit(audit: &AuditConfig, config_path: &Path) -> anyhow::Result<Arc<dyn AuditSink>> {
    if let Some(file) = &audit.file {
        let path = Config::resolve_path(config_path, file);
        let sink = JsonlSink::open(&path).context("audit.file: cannot open the audit trail")?;
        tracing::info!("audit trail: jsonl file");
        return Ok(Arc::new(sink));
    }
    let Some(url) = &audit.postgres else {
        anyhow::bail!("audit: needs exactly one of `file` and `postgres`");
    };
    let dir = config_path.parent().unwrap_or(Path::new("."));
    let url = url.resolve_in(dir).context("audit.postgres")?;
    let sink = PostgresSink::connect(url.expose())
        .await
        .context("audit.postgres: cannot open the audit trail")?;
    tracing::info!("audit trail: postgresql");
    Ok(Arc::new(sink))
}

fn page_tokens(config: &Config, config_path: &Path) -> anyhow::Result<PageTokens> {
    let dir = config_path.parent().unwrap_or(Path::new("."));
    let mut keys = Vec::new();
    for (i, key) in config.auth.page_token_keys.iter().enumerate() {
        let secret = key
            .key
            .resolve_in(dir)
            .with_context(|| format!("auth.page_token_keys[{i}].key"))?;
        let bytes = secret.expose().as_bytes().to_vec();
        if bytes.len() < MIN_PAGE_KEY_LEN {
            anyhow::bail!(
                "auth.page_token_keys[{i}].key: must be at least {MIN_PAGE_KEY_LEN} bytes"
            );
        }
        keys.push(PageKey::new(key.id.clone(), bytes));
    }
    let mut keys = keys.into_iter();
    Ok(match keys.next() {
        Some(current) => PageTokens::new(current, keys.next()),
        None => {
            tracing::info!(
                "no page-token keys configured: a random key signs page tokens \
                 (they do not survive a restart or cross replicas)"
            );
            let mut key = vec![0u8; MIN_PAGE_KEY_LEN];
            rustls::crypto::aws_lc_rs::default_provider()
                .secure_random
                .fill(&mut key)
                .map_err(|_| anyhow::anyhow!("cannot make a random page-token key"))?;
            PageTokens::new(PageKey::new("random", key), None)
        }
    })
}

/// The guard of in-process benchmark servers on loopback: every right granted to the
/// anonymous loopback caller (as the quickstart's config does), no audit trail. Calls
/// still pass the auth layer and the handlers' grant checks.
pub fn anonymous_loopback_guard() -> anyhow::Result<crate::server::Guard> {
    let config: tessera_auth::PolicyConfig = serde_yaml_ng::from_str(
        "anonymous_loopback:\n  roles: [admin]\n  \
         purposes: [TREAT, HPAYMT, HOPERAT, HMARKT, PATRQT, PUBHLTH, HRESCH]\n  \
         sections: [\"*\"]\n  systems: [\"*\"]\n  national_id: true\n",
    )?;
    let policy = Policy::new(&config, PermissionTable::for_contract(false)?)?;
    Ok(crate::server::Guard {
        authenticator: Arc::new(Authenticator::new(Arc::new(policy), None)),
        audit: None,
    })
}
