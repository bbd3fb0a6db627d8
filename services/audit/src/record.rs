use serde::{Deserialize, Serialize};

/// How the caller authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// Mutual TLS client certificate.
    Mtls,
    /// Bearer JWT.
    Jwt,
    /// Unauthenticated loopback (development only).
    AnonymousLoopback,
    /// No credentials were accepted (the call was refused).
    None,
}

/// A section or source withheld from a response, with a reason code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Withheld {
    /// Section or source name.
    pub name: String,
    /// Reason code.
    pub reason: String,
}

/// One audit record. It has no demographics fields: local IDs and demographics never go in,
/// master IDs (`masters/N`) only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// RFC 3339 UTC time with microseconds.
    pub time: String,
    /// Sequence number; the sink assigns it.
    pub sequence: u64,
    /// Caller principal ID.
    pub caller: String,
    /// How the caller authenticated.
    pub auth: AuthMethod,
    /// End user on whose behalf the call was made.
    pub end_user: Option<String>,
    /// Full gRPC method name.
    pub rpc: String,
    /// HL7 v3 PurposeOfUse code (TREAT, ETREAT, HPAYMT, ...).
    pub purpose_of_use: String,
    /// Break-the-glass flag.
    pub break_glass: bool,
    /// Break-the-glass reason.
    pub break_glass_reason: Option<String>,
    /// Master IDs (`masters/N`).
    pub masters: Vec<String>,
    /// Sections returned.
    pub sections_returned: Vec<String>,
    /// Sections withheld.
    pub sections_withheld: Vec<Withheld>,
    /// Sources returned.
    pub sources_returned: Vec<String>,
    /// Sources withheld.
    pub sources_withheld: Vec<Withheld>,
    /// `ok` or the gRPC code name.
    pub outcome: String,
    /// Optional reason code.
    pub reason: Option<String>,
    /// Request ID.
    pub request_id: String,
    /// Trace ID.
    pub trace_id: Option<String>,
}

impl AuditRecord {
    /// A record stamped with the current time (microseconds, UTC) and sequence 0.
    pub fn now(caller: &str, auth: AuthMethod, rpc: &str, purpose_of_use: &str) -> Self {
        let time = jiff::Timestamp::now()
            .round(jiff::Unit::Microsecond)
            .unwrap_or_else(|_| jiff::Timestamp::now());
        Self {
            time: format!("{time:.6}"),
            sequence: 0,
            caller: caller.to_owned(),
            auth,
            end_user: None,
            rpc: rpc.to_owned(),
            purpose_of_use: purpose_of_use.to_owned(),
            break_glass: false,
            break_glass_reason: None,
            masters: Vec::new(),
            sections_returned: Vec::new(),
            sections_withheld: Vec::new(),
            sources_returned: Vec::new(),
            sources_withheld: Vec::new(),
            outcome: "ok".to_owned(),
            reason: None,
            request_id: String::new(),
            trace_id: None,
        }
    }
}
