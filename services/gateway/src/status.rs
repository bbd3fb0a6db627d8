//! The gateway's own errors and their gRPC codes and `ErrorInfo` reasons;
//! [`tessera_proto::error::status`] turns them into `tonic::Status`.
//!
//! Messages here reach callers: they name what went wrong and never carry
//! patient data.

use std::collections::HashMap;

use tessera_proto::error;
use tonic::{Code, Status};

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

impl error::ServiceError for ServiceError {
    fn code(&self) -> Code {
        match self {
            Self::NotImplemented { .. } => Code::Unimplemented,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Self::NotImplemented { .. } => "NOT_IMPLEMENTED",
        }
    }

    fn metadata(&self) -> HashMap<String, String> {
        match self {
            Self::NotImplemented { method, .. } => {
                HashMap::from([("method".to_owned(), (*method).to_owned())])
            }
        }
    }
}

impl From<ServiceError> for Status {
    fn from(err: ServiceError) -> Self {
        error::status(&err)
    }
}

#[cfg(test)]
mod tests {
    use tessera_proto::ERROR_DOMAIN;
    use tonic_types::StatusExt;

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
        assert!(
            status.get_details_retry_info().is_none(),
            "a missing implementation is not worth retrying"
        );
    }
}
