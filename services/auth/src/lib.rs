//! Tessera's access control: who the caller is and which RPCs its roles let it call. The
//! permission table covers every RPC of the contract, built from the proto descriptors, and
//! anything absent from it is refused (deny by default).
//!
//! [`jwt`] verifies bearer tokens against the issuer's JWKS; [`policy`] holds the configured
//! callers (matched by certificate SAN, token subject or client ID), their [`Grant`]s and the
//! purpose-of-use and break-the-glass checks; [`layer`] is the tower layer that puts a
//! [`Caller`] and its [`Grant`] into each admitted request, and refuses the rest through
//! `tessera_proto::error`; [`access`] is what handlers read from it (the grant, the
//! purpose check) and note for the audit trail; [`page_token`] signs list cursors.

pub mod access;
pub mod caller;
pub mod jwt;
pub mod layer;
pub mod page_token;
pub mod policy;

pub use access::{Access, AccessLog};
pub use caller::{AuthMethod, Caller};
pub use policy::{Grant, Policy, PolicyConfig};

use std::collections::BTreeMap;

use prost::Message;

/// A caller's role; each role includes the rights of the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Reads views, masters, links, events and review items.
    Reader,
    /// Also changes data: upserts, links, merges, review decisions, loads.
    Steward,
    /// Also calls administrative RPCs such as reflection.
    Admin,
}

/// What an RPC needs from its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// Anyone, even without credentials (health checks).
    Public,
    /// At least this role.
    Role(Role),
}

/// Errors of this crate. Messages never carry tokens, keys or claim values.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The descriptor set could not be decoded.
    #[error("invalid file descriptor set")]
    Descriptors(#[from] prost::DecodeError),
    /// A configuration field is wrong.
    #[error("invalid auth config: {field} {problem}")]
    InvalidConfig {
        /// The field's path, `callers[2].purposes[0]`.
        field: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The request carried no credentials and no anonymous grant applies.
    #[error("credentials required")]
    NoCredentials,
    /// The bearer token is malformed, its signature is invalid, or bearer tokens are not
    /// accepted here.
    #[error("bearer token is invalid")]
    TokenInvalid,
    /// The bearer token has expired.
    #[error("bearer token has expired")]
    TokenExpired,
    /// The bearer token is not valid yet (`nbf`).
    #[error("bearer token is not valid yet")]
    TokenNotYetValid,
    /// The bearer token is for another audience.
    #[error("bearer token audience is not accepted")]
    TokenAudienceMismatch,
    /// The bearer token comes from another issuer.
    #[error("bearer token issuer is not accepted")]
    TokenIssuerMismatch,
    /// The bearer token's algorithm is not accepted.
    #[error("bearer token algorithm is not accepted")]
    TokenAlgorithmNotAllowed,
    /// The bearer token's signing key is not in the issuer's key set.
    #[error("bearer token signing key is unknown")]
    TokenKeyUnknown,
    /// The issuer's key set could not be fetched.
    #[error("token issuer key set is unavailable")]
    JwksUnavailable,
    /// The caller is authenticated but may not make this call.
    #[error(transparent)]
    Denied(#[from] Denied),
}

impl tessera_proto::error::ServiceError for AuthError {
    fn code(&self) -> tonic::Code {
        match self {
            Self::Descriptors(_) | Self::InvalidConfig { .. } => tonic::Code::Internal,
            Self::JwksUnavailable => tonic::Code::Unavailable,
            Self::Denied(_) => tonic::Code::PermissionDenied,
            _ => tonic::Code::Unauthenticated,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Self::Descriptors(_) => "DESCRIPTORS_INVALID",
            Self::InvalidConfig { .. } => "AUTH_CONFIG_INVALID",
            Self::NoCredentials => "CREDENTIALS_MISSING",
            Self::TokenInvalid => "TOKEN_INVALID",
            Self::TokenExpired => "TOKEN_EXPIRED",
            Self::TokenNotYetValid => "TOKEN_NOT_YET_VALID",
            Self::TokenAudienceMismatch => "TOKEN_AUDIENCE_MISMATCH",
            Self::TokenIssuerMismatch => "TOKEN_ISSUER_MISMATCH",
            Self::TokenAlgorithmNotAllowed => "TOKEN_ALGORITHM_NOT_ALLOWED",
            Self::TokenKeyUnknown => "TOKEN_KEY_UNKNOWN",
            Self::JwksUnavailable => "JWKS_UNAVAILABLE",
            Self::Denied(d) => d.reason(),
        }
    }
}

impl tessera_proto::error::ServiceError for Denied {
    fn code(&self) -> tonic::Code {
        tonic::Code::PermissionDenied
    }

    fn reason(&self) -> &'static str {
        Denied::reason(*self)
    }
}

/// Why a call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The RPC has no entry in the permission table.
    #[error("rpc not allowed")]
    RpcNotAllowed,
    /// The caller's role does not cover the RPC.
    #[error("role does not cover the rpc")]
    RoleTooLow,
    /// No configured caller matched the credentials.
    #[error("caller unknown")]
    CallerUnknown,
    /// The purpose of use is not granted to the caller.
    #[error("purpose not granted")]
    PurposeNotGranted,
    /// The caller may not break the glass.
    #[error("break glass not allowed")]
    BreakGlassNotAllowed,
    /// Break the glass needs a valid reason.
    #[error("break glass reason required")]
    BreakGlassReasonRequired,
    /// The break-the-glass window closed; cool-down in progress.
    #[error("break glass expired")]
    BreakGlassExpired,
}

impl Denied {
    /// The ErrorInfo reason, UPPER_SNAKE_CASE.
    pub fn reason(self) -> &'static str {
        match self {
            Self::RpcNotAllowed | Self::RoleTooLow => "RPC_NOT_ALLOWED",
            Self::CallerUnknown => "CALLER_UNKNOWN",
            Self::PurposeNotGranted => "PURPOSE_NOT_GRANTED",
            Self::BreakGlassNotAllowed => "BREAK_GLASS_NOT_ALLOWED",
            Self::BreakGlassReasonRequired => "BREAK_GLASS_REASON_REQUIRED",
            Self::BreakGlassExpired => "BREAK_GLASS_EXPIRED",
        }
    }
}

/// Lists the full method names (`/package.Service/Method`) of a descriptor set.
pub fn methods(descriptor_set: &[u8]) -> Result<Vec<String>, AuthError> {
    let fds = prost_types::FileDescriptorSet::decode(descriptor_set)?;
    let mut out = Vec::new();
    for file in &fds.file {
        for service in &file.service {
            for method in &service.method {
                out.push(format!(
                    "/{}.{}/{}",
                    file.package(),
                    service.name(),
                    method.name()
                ));
            }
        }
    }
    Ok(out)
}

/// Every RPC of the contract and the role it needs. An RPC of the descriptors missing here
/// gets no table entry and is refused for everyone (deny by default).
const CONTRACT_RPCS: &[(&str, Role)] = &[
    (
        "/tessera.v1.PatientViewService/GetPatientView",
        Role::Reader,
    ),
    (
        "/tessera.v1.PatientViewService/StreamPatientView",
        Role::Reader,
    ),
    (
        "/tessera.v1.PatientViewService/BatchGetPatientViews",
        Role::Reader,
    ),
    ("/tessera.v1.IdentityService/ResolveRecord", Role::Reader),
    (
        "/tessera.v1.IdentityService/MatchDemographics",
        Role::Reader,
    ),
    ("/tessera.v1.IdentityService/GetMaster", Role::Reader),
    ("/tessera.v1.IdentityService/ListLinks", Role::Reader),
    ("/tessera.v1.IdentityService/ListReviewItems", Role::Reader),
    ("/tessera.v1.IdentityService/ListLinkEvents", Role::Reader),
    (
        "/tessera.v1.IdentityService/UpsertSourceRecord",
        Role::Steward,
    ),
    (
        "/tessera.v1.IdentityService/ResolveReviewItem",
        Role::Steward,
    ),
    (
        "/tessera.v1.IdentityService/LinkSourceRecord",
        Role::Steward,
    ),
    ("/tessera.v1.IdentityService/MergeMasters", Role::Steward),
    (
        "/tessera.v1.IdentityService/UnmergeSourceRecord",
        Role::Steward,
    ),
    // Tessera calls adapters through this service; it does not serve it to callers.
    (
        "/tessera.v1.SourceAdapterService/DescribeAdapter",
        Role::Admin,
    ),
    ("/tessera.v1.SourceAdapterService/FetchRecords", Role::Admin),
    (
        "/tessera.v1.SourceAdapterService/CheckAdapterHealth",
        Role::Admin,
    ),
    (
        "/tessera.v1.SourceAdapterService/StreamSourceRecords",
        Role::Admin,
    ),
];

/// gRPC health: public, never refused.
pub const HEALTH_RPCS: [&str; 2] = [
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
];

/// The RPC permission table: every listed RPC and what it needs; anything else is refused.
#[derive(Debug, Clone)]
pub struct PermissionTable {
    entries: BTreeMap<String, Requirement>,
}

impl PermissionTable {
    /// Builds the table for Tessera's contract, plus gRPC health (public) and reflection
    /// (admin only, present only when `reflection` is on).
    pub fn for_contract(reflection: bool) -> Result<Self, AuthError> {
        Self::from_descriptors(tessera_proto::FILE_DESCRIPTOR_SET, reflection)
    }

    /// Builds the table for the RPCs of an encoded `FileDescriptorSet`: each RPC gets the
    /// role the explicit contract list names, and an RPC the list does not name gets no
    /// entry, so it is refused for every role.
    pub fn from_descriptors(descriptor_set: &[u8], reflection: bool) -> Result<Self, AuthError> {
        let mut entries = BTreeMap::new();
        for full in methods(descriptor_set)? {
            if let Some((_, role)) = CONTRACT_RPCS.iter().find(|(name, _)| *name == full) {
                entries.insert(full, Requirement::Role(*role));
            }
        }
        for health in HEALTH_RPCS {
            entries.insert(health.into(), Requirement::Public);
        }
        if reflection {
            for svc in [
                "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection",
            ] {
                entries.insert(
                    format!("/{svc}/ServerReflectionInfo"),
                    Requirement::Role(Role::Admin),
                );
            }
        }
        Ok(Self { entries })
    }

    /// What `method` needs, if the table lists it.
    pub fn requirement(&self, method: &str) -> Option<Requirement> {
        self.entries.get(method).copied()
    }

    /// Checks that a caller with `role` may call `method`.
    pub fn check(&self, role: Role, method: &str) -> Result<(), Denied> {
        match self.requirement(method) {
            None => Err(Denied::RpcNotAllowed),
            Some(Requirement::Public) => Ok(()),
            Some(Requirement::Role(needed)) if role >= needed => Ok(()),
            Some(Requirement::Role(_)) => Err(Denied::RoleTooLow),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_contract_rpc_has_a_table_entry() {
        let table = PermissionTable::for_contract(false).unwrap();
        let all = methods(tessera_proto::FILE_DESCRIPTOR_SET).unwrap();
        assert!(!all.is_empty());
        let missing: Vec<_> = all
            .iter()
            .filter(|m| table.requirement(m).is_none())
            .collect();
        assert!(
            missing.is_empty(),
            "rpcs without a table entry: {missing:?}"
        );
    }

    #[test]
    fn an_rpc_added_to_the_descriptors_without_an_entry_is_refused_for_every_role() {
        let mut fds =
            prost_types::FileDescriptorSet::decode(tessera_proto::FILE_DESCRIPTOR_SET).unwrap();
        let service = fds
            .file
            .iter_mut()
            .flat_map(|f| f.service.iter_mut())
            .find(|s| s.name() == "IdentityService")
            .unwrap();
        service.method.push(prost_types::MethodDescriptorProto {
            name: Some("DropEverything".into()),
            input_type: Some(".tessera.v1.GetMasterRequest".into()),
            output_type: Some(".tessera.v1.Master".into()),
            ..Default::default()
        });
        let bytes = fds.encode_to_vec();
        let extra = "/tessera.v1.IdentityService/DropEverything";
        assert!(methods(&bytes).unwrap().iter().any(|m| m == extra));

        let table = PermissionTable::from_descriptors(&bytes, true).unwrap();
        assert_eq!(table.requirement(extra), None);
        for role in [Role::Reader, Role::Steward, Role::Admin] {
            assert_eq!(table.check(role, extra), Err(Denied::RpcNotAllowed));
        }
        assert_eq!(
            table.check(Role::Reader, "/tessera.v1.IdentityService/GetMaster"),
            Ok(())
        );
    }

    #[test]
    fn every_rpc_needs_the_role_the_contract_list_names() {
        let table = PermissionTable::for_contract(false).unwrap();
        for m in methods(tessera_proto::FILE_DESCRIPTOR_SET).unwrap() {
            let needed = match table.requirement(&m) {
                Some(Requirement::Role(r)) => r,
                other => panic!("{m}: {other:?}"),
            };
            for role in [Role::Reader, Role::Steward, Role::Admin] {
                let expected = if role >= needed {
                    Ok(())
                } else {
                    Err(Denied::RoleTooLow)
                };
                assert_eq!(table.check(role, &m), expected, "{m} as {role:?}");
            }
        }
        for steward_only in [
            "UpsertSourceRecord",
            "ResolveReviewItem",
            "LinkSourceRecord",
            "MergeMasters",
            "UnmergeSourceRecord",
        ] {
            let m = format!("/tessera.v1.IdentityService/{steward_only}");
            assert_eq!(table.check(Role::Reader, &m), Err(Denied::RoleTooLow));
        }
        assert_eq!(
            table.check(
                Role::Steward,
                "/tessera.v1.SourceAdapterService/FetchRecords"
            ),
            Err(Denied::RoleTooLow)
        );
    }

    #[test]
    fn readers_cannot_mutate_and_health_is_public() {
        let table = PermissionTable::for_contract(false).unwrap();
        for m in methods(tessera_proto::FILE_DESCRIPTOR_SET).unwrap() {
            if let Some(Requirement::Role(Role::Steward)) = table.requirement(&m) {
                assert_eq!(table.check(Role::Reader, &m), Err(Denied::RoleTooLow));
                assert_eq!(table.check(Role::Steward, &m), Ok(()));
            }
        }
        assert_eq!(
            table.check(Role::Reader, "/grpc.health.v1.Health/Check"),
            Ok(())
        );
        assert!(
            table
                .check(
                    Role::Steward,
                    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
                )
                .is_err()
        );
    }
}
