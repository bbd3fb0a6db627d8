//! The security sections of the configuration file: `auth:` (bearer tokens and the
//! page-token signing keys) and `audit:` (where the audit trail is written). The callers
//! and their grants are `policy:`, tessera-auth's [`tessera_auth::PolicyConfig`].

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;
use tessera_auth::jwt::JwtConfig;
use tessera_types::Secret;

/// How callers prove who they are besides client certificates, and how list cursors
/// are signed.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Accept JWT access tokens (`authorization: Bearer ...`) from this OIDC issuer.
    /// Without it, a request carrying a bearer token is refused.
    #[serde(default)]
    pub jwt: Option<JwtConfig>,

    /// Keys that sign page tokens (HMAC-SHA256): the first signs, the second (if any)
    /// is still accepted, so a key can be rotated without breaking clients mid-listing.
    /// Without keys, a random key is made at start: tokens then do not survive a
    /// restart and are not accepted by another replica.
    #[serde(default)]
    pub page_token_keys: Vec<PageKeyConfig>,
}

/// One page-token signing key.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PageKeyConfig {
    /// The key's ID, carried in each token (`2026-12`).
    pub id: String,
    /// The key, at least 32 bytes: `env:NAME` or `file:PATH` (relative to this file).
    pub key: Secret,
}

/// Where the audit trail goes: one record per call that touches patient data, durable
/// before the response leaves. Exactly one of `file` and `postgres`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// An append-only, hash-chained JSONL file (relative to this config file),
    /// created 0600 in a 0700 directory; check it with `tessera audit verify FILE`.
    #[serde(default)]
    pub file: Option<PathBuf>,

    /// A PostgreSQL URL (`env:NAME` or `file:PATH` recommended): records go to table
    /// `tessera_audit`, which triggers keep append-only.
    #[serde(default)]
    pub postgres: Option<Secret>,
}
