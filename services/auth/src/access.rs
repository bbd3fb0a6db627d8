//! What handlers need from the auth layer, and what they tell the audit trail.
//!
//! The gateway's guard layer puts into every admitted request's extensions the [`Caller`],
//! its [`Grant`] (as `Arc<Grant>`), the shared [`Policy`] (as `Arc<Policy>`) and an
//! [`AccessLog`]. Handlers call [`grant`] (deny by default: a request that did not pass the layer has no grant and
//! is refused) or [`authorize`] (the purpose-of-use check, break-the-glass included), and
//! note in the [`AccessLog`] the masters, sections and sources they returned or withheld.
//! After the handler returns, the guard layer turns the log into one audit record.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tessera_proto::error::status;
use tonic::Status;

use crate::caller::Caller;
use crate::layer::BREAK_GLASS_REASON_HEADER;
use crate::policy::{Grant, Policy};
use crate::{AuthError, Denied};

/// What one call touched, as its handler reports it. Master IDs only; never local IDs,
/// names or any other demographics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// The caller, once the auth layer identified it (also when its role was then refused).
    pub caller: Option<Caller>,
    /// The HL7 v3 purpose-of-use code the call was authorized for.
    pub purpose: Option<String>,
    /// The break-the-glass reason, when the call broke the glass.
    pub break_glass_reason: Option<String>,
    /// Master IDs the call read or changed.
    pub masters: Vec<u64>,
    /// Sections returned, as `source.section`.
    pub sections_returned: Vec<String>,
    /// Sections withheld, as (`source.section`, reason code such as `NOT_GRANTED`,
    /// `CONSENT_OPT_OUT`, `CONSENT_UNAVAILABLE`).
    pub sections_withheld: Vec<(String, String)>,
    /// Sources whose records were returned.
    pub sources_returned: Vec<String>,
    /// Sources withheld (identifiers of systems the caller may not see), with a reason code.
    pub sources_withheld: Vec<(String, String)>,
}

/// A handle on one call's [`Access`], shared between the guard layer and the handler.
#[derive(Debug, Clone, Default)]
pub struct AccessLog(Arc<Mutex<Access>>);

impl AccessLog {
    /// Changes the call's access facts.
    pub fn note(&self, change: impl FnOnce(&mut Access)) {
        if let Ok(mut access) = self.0.lock() {
            change(&mut access);
        }
    }

    /// Notes that the call touched `master`.
    pub fn master(&self, master: u64) {
        self.note(|a| {
            if !a.masters.contains(&master) {
                a.masters.push(master);
            }
        });
    }

    /// A copy of what has been noted so far.
    pub fn snapshot(&self) -> Access {
        self.0.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

/// The request's access log; a detached one (noting into nothing) when the request did
/// not pass the guard layer.
pub fn access_log<T>(request: &tonic::Request<T>) -> AccessLog {
    request
        .extensions()
        .get::<AccessLog>()
        .cloned()
        .unwrap_or_default()
}

/// The caller admitted by the auth layer, if any.
pub fn caller<T>(request: &tonic::Request<T>) -> Option<&Caller> {
    request.extensions().get::<Caller>()
}

/// The admitted caller's grant. Deny by default: a request without one (it did not pass
/// the auth layer) is refused with PERMISSION_DENIED.
pub fn grant<T>(request: &tonic::Request<T>) -> Result<Arc<Grant>, Status> {
    request
        .extensions()
        .get::<Arc<Grant>>()
        .cloned()
        .ok_or_else(|| status(&AuthError::Denied(Denied::CallerUnknown)))
}

/// Seconds since the Unix epoch, the `now` of [`Policy::authorize`] in a running server.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Checks that the admitted caller may call `method` for `purpose` (an HL7 v3 code),
/// reading the break-the-glass reason from `x-tessera-break-glass-reason`, and notes the
/// purpose (and the break-the-glass reason) in the request's [`AccessLog`]. Refused:
/// PERMISSION_DENIED with the [`Denied`] reason; a request without a grant or without the
/// policy in its extensions is refused too.
pub fn authorize<T>(
    request: &tonic::Request<T>,
    method: &str,
    purpose: &str,
) -> Result<Grant, Status> {
    let log = access_log(request);
    log.note(|a| a.purpose = Some(purpose.to_owned()));
    let policy = request
        .extensions()
        .get::<Arc<Policy>>()
        .ok_or_else(|| status(&AuthError::Denied(Denied::CallerUnknown)))?;
    let grant = request.extensions().get::<Arc<Grant>>().map(|g| &**g);
    let reason = request
        .metadata()
        .get(BREAK_GLASS_REASON_HEADER)
        .and_then(|v| v.to_str().ok());
    let grant = policy
        .authorize(grant, method, purpose, reason, unix_now())
        .map_err(|d| status(&AuthError::Denied(d)))?;
    if grant.break_glass {
        log.note(|a| a.break_glass_reason = grant.reason.clone());
    }
    Ok(grant)
}
