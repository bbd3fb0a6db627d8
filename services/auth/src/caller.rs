//! Who is calling: the principal a request was authenticated as, and how.

/// How a caller proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMethod {
    /// A verified client certificate; `san` is the subject alternative name that matched.
    Mtls {
        /// The matching subject alternative name.
        san: String,
    },
    /// A verified JWT bearer token (its text is never kept).
    Jwt {
        /// The token's `iss`.
        issuer: String,
        /// The token's `sub`, if present.
        subject: Option<String>,
        /// The client ID from the configured claims (`client_id`, `azp`, ...), if present.
        client_id: Option<String>,
    },
    /// No credentials, on a loopback listener with an `anonymous_loopback` grant.
    AnonymousLoopback,
}

impl AuthMethod {
    /// A short fixed name for logs and audit records: `mtls`, `jwt` or `anonymous_loopback`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Mtls { .. } => "mtls",
            Self::Jwt { .. } => "jwt",
            Self::AnonymousLoopback => "anonymous_loopback",
        }
    }
}

/// An authenticated caller, as the auth layer puts it in request extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The configured caller's ID (the principal in audit records and page tokens).
    pub principal: String,
    /// How it authenticated.
    pub method: AuthMethod,
    /// The end user on whose behalf the caller acts, from the configured token claim.
    pub end_user: Option<String>,
}

/// The principal of callers admitted by the `anonymous_loopback` grant.
pub const ANONYMOUS_PRINCIPAL: &str = "anonymous";
