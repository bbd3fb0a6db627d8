//! The one place where the gateway's errors become `tonic::Status`, with
//! google.rpc error details (`ErrorInfo` reasons in UPPER_SNAKE_CASE).
//!
//! Messages here reach callers: they name what went wrong and never carry
//! patient data.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo.domain` of every error Tessera raises.
pub const ERROR_DOMAIN: &str = "tessera.dev";

/// Why a call could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The RPC is part of the contract but its implementation is not in this build.
    #[error("{method} is not implemented in this build: {missing}")]
    NotImplemented {
        /// The full method name, `tessera.v1.Service/Method`.
        method: &'static str,
        /// What is missing, for the caller and the operator.
        missing: &'static str,
    },
}

impl From<ServiceError> for Status {
    fn from(err: ServiceError) -> Self {
        let message = err.to_string();
        match err {
            ServiceError::NotImplemented { method, .. } => Status::with_error_details(
                Code::Unimplemented,
                message,
                ErrorDetails::with_error_info(
                    "NOT_IMPLEMENTED",
                    ERROR_DOMAIN,
                    HashMap::from([("method".to_owned(), method.to_owned())]),
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_implemented_carries_error_info() {
        let status = Status::from(ServiceError::NotImplemented {
            method: "tessera.v1.IdentityService/GetMaster",
            missing: "the identity resolver",
        });
        assert_eq!(status.code(), Code::Unimplemented);
        assert_eq!(
            status.message(),
            "tessera.v1.IdentityService/GetMaster is not implemented in this build: the identity resolver"
        );
        let info = status.get_details_error_info().expect("ErrorInfo detail");
        assert_eq!(info.reason, "NOT_IMPLEMENTED");
        assert_eq!(info.domain, ERROR_DOMAIN);
        assert_eq!(
            info.metadata["method"],
            "tessera.v1.IdentityService/GetMaster"
        );
    }
}
