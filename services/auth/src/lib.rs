//! Tessera's access control: who the caller is and which RPCs its roles let it call. The
//! permission table covers every RPC of the contract, built from the proto descriptors, and
//! anything absent from it is refused (deny by default).

pub mod page_token;
pub mod policy;

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

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The descriptor set could not be decoded.
    #[error("invalid file descriptor set")]
    Descriptors(#[from] prost::DecodeError),
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

/// The role an RPC needs, by its method name; `None` for a name the rules do not know.
fn classify(method: &str) -> Option<Requirement> {
    const READ: [&str; 11] = [
        "Get", "BatchGet", "Describe", "Fetch", "Check", "List", "Resolve", "Match", "Search",
        "Watch", "Stream",
    ];
    const WRITE: [&str; 9] = [
        "Upsert", "Link", "Unlink", "Merge", "Unmerge", "Decide", "Load", "Delete", "Put",
    ];
    if READ.iter().any(|p| method.starts_with(p)) {
        Some(Requirement::Role(Role::Reader))
    } else if WRITE.iter().any(|p| method.starts_with(p)) {
        Some(Requirement::Role(Role::Steward))
    } else {
        None
    }
}

/// The RPC permission table: every listed RPC and what it needs; anything else is refused.
#[derive(Debug, Clone)]
pub struct PermissionTable {
    entries: BTreeMap<String, Requirement>,
}

impl PermissionTable {
    /// Builds the table for Tessera's contract, plus gRPC health (public) and reflection
    /// (admin only, present only when `reflection` is on).
    pub fn for_contract(reflection: bool) -> Result<Self, AuthError> {
        let mut entries = BTreeMap::new();
        for full in methods(tessera_proto::FILE_DESCRIPTOR_SET)? {
            let name = full.rsplit('/').next().unwrap_or_default();
            if let Some(req) = classify(name) {
                entries.insert(full, req);
            }
        }
        entries.insert("/grpc.health.v1.Health/Check".into(), Requirement::Public);
        entries.insert("/grpc.health.v1.Health/Watch".into(), Requirement::Public);
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
    fn unknown_rpc_is_refused_for_every_role() {
        let table = PermissionTable::for_contract(true).unwrap();
        for role in [Role::Reader, Role::Steward, Role::Admin] {
            assert_eq!(
                table.check(role, "/tessera.v1.IdentityService/DropEverything"),
                Err(Denied::RpcNotAllowed)
            );
        }
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
