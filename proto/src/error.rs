//! The one gRPC error edge: how every service's errors become `tonic::Status`.
//!
//! Each service's error type implements [`ServiceError`] (its gRPC code, a stable
//! `ErrorInfo` reason in UPPER_SNAKE_CASE, metadata, field violations) and its
//! gRPC module calls [`status`], which attaches the google.rpc details: an
//! `ErrorInfo` in [`ERROR_DOMAIN`] always, a `BadRequest` when there are field
//! violations, and a `RetryInfo` when the code says the call may be retried
//! (UNAVAILABLE, RESOURCE_EXHAUSTED). Modelled on Quickwit's
//! `quickwit-proto/src/error.rs` and tonic's richer-error example.
//!
//! Messages and metadata reach callers: they name what went wrong and never
//! carry patient data.

use std::collections::HashMap;
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo.domain` of every error Tessera raises.
pub const ERROR_DOMAIN: &str = "tessera.dev";

/// The retry delay suggested in `RetryInfo` unless an error names its own.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(1);

/// One request field that is wrong, for a `BadRequest` detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The field's path in the request, `subject.master`, `read_mask.paths[2]`.
    pub field: String,
    /// What is wrong with it; never the field's value.
    pub description: String,
}

impl Violation {
    /// A violation of `field`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// An error a service can answer a call with.
pub trait ServiceError: std::fmt::Display {
    /// The gRPC status code.
    fn code(&self) -> Code;

    /// The `ErrorInfo` reason: a stable UPPER_SNAKE_CASE name of what went wrong.
    fn reason(&self) -> &'static str;

    /// The status message; by default the error's `Display`.
    fn message(&self) -> String {
        self.to_string()
    }

    /// The `ErrorInfo` metadata; empty by default.
    fn metadata(&self) -> HashMap<String, String> {
        HashMap::new()
    }

    /// The `BadRequest` field violations; none by default.
    fn violations(&self) -> Vec<Violation> {
        Vec::new()
    }

    /// How long a caller should wait before retrying, for `RetryInfo`: by
    /// default [`DEFAULT_RETRY_DELAY`] for UNAVAILABLE and RESOURCE_EXHAUSTED,
    /// none (do not retry) otherwise.
    fn retry_delay(&self) -> Option<Duration> {
        matches!(self.code(), Code::Unavailable | Code::ResourceExhausted)
            .then_some(DEFAULT_RETRY_DELAY)
    }
}

/// The `Status` for `err`, with its google.rpc details.
pub fn status<E: ServiceError + ?Sized>(err: &E) -> Status {
    let mut details = ErrorDetails::new();
    for v in err.violations() {
        details.add_bad_request_violation(v.field, v.description);
    }
    if let Some(delay) = err.retry_delay() {
        details.set_retry_info(Some(delay));
    }
    details.set_error_info(err.reason(), ERROR_DOMAIN, err.metadata());
    <Status as StatusExt>::with_error_details(err.code(), err.message(), details)
}

/// The errors a gRPC edge raises itself, before a call reaches the service's
/// own domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EdgeError {
    /// The service is still starting (loading an index, waiting for a
    /// dependency) and cannot serve yet.
    #[error("{message}")]
    NotReady {
        /// The UPPER_SNAKE_CASE reason, `INDEX_LOADING`.
        reason: &'static str,
        /// What is not ready.
        message: &'static str,
    },
    /// A request field is wrong.
    #[error("{}: {}", .0.field, .0.description)]
    InvalidArgument(Violation),
    /// The caller's deadline passed before the answer was ready.
    #[error("the deadline expired before the call completed")]
    DeadlineExceeded,
}

impl EdgeError {
    /// An invalid `field`.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(Violation::new(field, description))
    }
}

impl ServiceError for EdgeError {
    fn code(&self) -> Code {
        match self {
            Self::NotReady { .. } => Code::Unavailable,
            Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::DeadlineExceeded => Code::DeadlineExceeded,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Self::NotReady { reason, .. } => reason,
            Self::InvalidArgument(_) => "INVALID_ARGUMENT",
            Self::DeadlineExceeded => "DEADLINE_EXCEEDED",
        }
    }

    fn violations(&self) -> Vec<Violation> {
        match self {
            Self::InvalidArgument(v) => vec![v.clone()],
            _ => Vec::new(),
        }
    }
}

impl From<EdgeError> for Status {
    fn from(err: EdgeError) -> Self {
        status(&err)
    }
}

/// tonic reports its own expiry of a call's `grpc-timeout` as CANCELLED: when
/// our deadline has passed (`deadline_passed`), that is DEADLINE_EXCEEDED.
/// Any other status is returned as it is.
pub fn deadline_expiry(status: Status, deadline_passed: bool) -> Status {
    if status.code() == Code::Cancelled && deadline_passed {
        EdgeError::DeadlineExceeded.into()
    } else {
        status
    }
}

/// A gRPC status code's name (`UNAVAILABLE`), as `rpc.response.status_code`
/// records it; unknown numbers are `UNKNOWN`.
pub fn grpc_code_name(code: i32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
        .unwrap_or("UNKNOWN")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("the store is busy")]
    struct Busy;

    impl ServiceError for Busy {
        fn code(&self) -> Code {
            Code::ResourceExhausted
        }
        fn reason(&self) -> &'static str {
            "STORE_BUSY"
        }
        fn metadata(&self) -> HashMap<String, String> {
            HashMap::from([("resource".to_owned(), "store".to_owned())])
        }
        fn retry_delay(&self) -> Option<Duration> {
            Some(Duration::from_millis(250))
        }
    }

    #[test]
    fn every_status_carries_error_info_in_the_one_domain() {
        let status = status(&Busy);
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(status.message(), "the store is busy");
        let info = status.get_details_error_info().expect("ErrorInfo");
        assert_eq!(info.domain, ERROR_DOMAIN);
        assert_eq!(info.reason, "STORE_BUSY");
        assert_eq!(info.metadata["resource"], "store");
        let retry = status.get_details_retry_info().expect("RetryInfo");
        assert_eq!(retry.retry_delay, Some(Duration::from_millis(250)));
    }

    #[test]
    fn invalid_arguments_name_the_field_and_are_not_retryable() {
        let status = Status::from(EdgeError::invalid("subject.master", "is required"));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "subject.master: is required");
        let bad = status.get_details_bad_request().expect("BadRequest");
        assert_eq!(bad.field_violations.len(), 1);
        assert_eq!(bad.field_violations[0].field, "subject.master");
        assert_eq!(bad.field_violations[0].description, "is required");
        assert_eq!(
            status.get_details_error_info().expect("ErrorInfo").reason,
            "INVALID_ARGUMENT"
        );
        assert!(status.get_details_retry_info().is_none());
    }

    #[test]
    fn unavailable_gets_the_default_retry_delay() {
        let status = Status::from(EdgeError::NotReady {
            reason: "INDEX_LOADING",
            message: "the identity index is still loading",
        });
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(
            status.get_details_error_info().expect("ErrorInfo").reason,
            "INDEX_LOADING"
        );
        let retry = status.get_details_retry_info().expect("RetryInfo");
        assert_eq!(retry.retry_delay, Some(DEFAULT_RETRY_DELAY));
    }

    #[test]
    fn a_cancelled_call_past_its_deadline_is_deadline_exceeded() {
        let expired = deadline_expiry(Status::cancelled("timeout expired"), true);
        assert_eq!(expired.code(), Code::DeadlineExceeded);
        assert_eq!(
            expired.get_details_error_info().expect("ErrorInfo").reason,
            "DEADLINE_EXCEEDED"
        );
        let early = deadline_expiry(Status::cancelled("client went away"), false);
        assert_eq!(early.code(), Code::Cancelled);
        let other = deadline_expiry(Status::not_found("x"), true);
        assert_eq!(other.code(), Code::NotFound);
    }
}
