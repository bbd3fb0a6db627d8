//! What a caller's [`Grant`] lets it see of the identity index, and what each call
//! tells the audit trail.
//!
//! Source records, links, events and review items of a system the caller does not see
//! are left out of responses; a master's golden record is derived from the visible
//! records only, so neither its values nor its provenance come from an unseen system;
//! identifiers of unseen systems, and national identifiers unless the grant shows them,
//! are removed from every demographics message. The access log gets master IDs and
//! system names only, never local IDs or demographics.

use tessera_auth::{AccessLog, Grant};
use tessera_matching::SourceKey;
use tessera_proto::error::{self, ServiceError};
use tessera_proto::v1 as pb;
use tonic::{Code, Status};

use super::convert::master_to;
use crate::resolver::MasterView;

/// The reason, in access records, for a source withheld because its system is not
/// granted to the caller.
pub(super) const SYSTEM_NOT_GRANTED: &str = "SYSTEM_NOT_GRANTED";

/// The golden-record field that holds the national identifier.
const NATIONAL_ID_FIELD: &str = "national_id";

/// Why IdentityService refused a caller that the auth layer admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// The request names a source record of a system the caller may not see. Checked
    /// before the record is looked up, so the answer is the same whether it exists.
    #[error("the source record's system is not granted to the caller")]
    SystemNotGranted,
    /// The request carries a national identifier, which the caller may not see: sending
    /// one would let it learn, from the match decision, whose it is.
    #[error("national identifiers are not granted to the caller")]
    NationalIdNotGranted,
}

impl ServiceError for AccessError {
    fn code(&self) -> Code {
        Code::PermissionDenied
    }

    fn reason(&self) -> &'static str {
        match self {
            Self::SystemNotGranted => SYSTEM_NOT_GRANTED,
            Self::NationalIdNotGranted => "NATIONAL_ID_NOT_GRANTED",
        }
    }
}

/// Whether the caller sees records of `key`'s system.
pub(super) fn sees(grant: &Grant, key: &SourceKey) -> bool {
    grant.sees_system(&key.system)
}

/// Refuses a request naming a record of a system the caller does not see.
pub(super) fn require_system(grant: &Grant, key: &SourceKey) -> Result<(), Status> {
    if sees(grant, key) {
        Ok(())
    } else {
        Err(error::status(&AccessError::SystemNotGranted))
    }
}

/// Refuses demographics carrying a national identifier from a caller that may not see
/// national identifiers.
pub(super) fn require_national_id_grant(d: &pb::Demographics, grant: &Grant) -> Result<(), Status> {
    let national = i32::from(pb::PersonIdentifierType::NationalId);
    if grant.sees_national_id() || !d.identifiers.iter().any(|id| id.r#type == national) {
        Ok(())
    } else {
        Err(error::status(&AccessError::NationalIdNotGranted))
    }
}

/// Removes the identifiers the caller may not see: those of unseen systems, and national
/// identifiers unless the grant shows them.
pub(super) fn filter_identifiers(d: &mut pb::Demographics, grant: &Grant) {
    d.identifiers.retain(|id| {
        let national = id.r#type == i32::from(pb::PersonIdentifierType::NationalId);
        (!national || grant.sees_national_id())
            && (id.system.is_empty() || grant.sees_system(&id.system))
    });
}

/// Notes the systems of `keys` as returned (seen) or withheld (not granted).
pub(super) fn note_sources<'a>(
    log: &AccessLog,
    grant: &Grant,
    keys: impl IntoIterator<Item = &'a SourceKey>,
) {
    let keys: Vec<&SourceKey> = keys.into_iter().collect();
    log.note(|a| {
        for key in keys {
            if sees(grant, key) {
                if !a.sources_returned.contains(&key.system) {
                    a.sources_returned.push(key.system.clone());
                }
            } else if !a.sources_withheld.iter().any(|(s, _)| *s == key.system) {
                a.sources_withheld
                    .push((key.system.clone(), SYSTEM_NOT_GRANTED.to_owned()));
            }
        }
    });
}

/// A master as the caller may see it. `view` was derived from the visible records
/// (`Resolver::master_visible`); `keys` are every linked record's, for the access log.
pub(super) fn master_for(
    view: &MasterView,
    keys: &[SourceKey],
    grant: &Grant,
    log: &AccessLog,
) -> pb::Master {
    let mut view = view.clone();
    view.golden.provenance.retain(|p| {
        sees(grant, &p.source) && (p.field != NATIONAL_ID_FIELD || grant.sees_national_id())
    });
    if !grant.sees_national_id() {
        view.golden.demographics.national_id.clear();
    }
    let mut master = master_to(&view);
    if let Some(golden) = master.golden_record.as_mut() {
        filter_identifiers(golden, grant);
    }
    log.master(view.master.id);
    note_sources(log, grant, keys);
    master
}

#[cfg(test)]
mod tests {
    use tonic_types::StatusExt;

    use super::*;

    fn grant(systems: &[&str], national_id: bool) -> Grant {
        Grant {
            principal: "p".into(),
            role: tessera_auth::Role::Reader,
            purposes: Vec::new(),
            sections: Vec::new(),
            systems: systems.iter().map(|s| (*s).to_owned()).collect(),
            national_id,
            break_glass_allowed: false,
            break_glass: false,
            reason: None,
        }
    }

    fn id(t: pb::PersonIdentifierType, system: &str) -> pb::PersonIdentifier {
        pb::PersonIdentifier {
            r#type: t.into(),
            system: system.into(),
            value: "v".into(),
        }
    }

    #[test]
    fn identifiers_of_unseen_systems_and_national_ids_are_removed() {
        let all = vec![
            id(pb::PersonIdentifierType::NationalId, ""),
            id(pb::PersonIdentifierType::Other, "ehr"),
            id(pb::PersonIdentifierType::Other, "crm"),
        ];
        let mut d = pb::Demographics {
            identifiers: all.clone(),
            ..Default::default()
        };
        filter_identifiers(&mut d, &grant(&["crm"], false));
        assert_eq!(d.identifiers, vec![all[2].clone()]);
        let mut d = pb::Demographics {
            identifiers: all.clone(),
            ..Default::default()
        };
        filter_identifiers(&mut d, &grant(&["*"], true));
        assert_eq!(d.identifiers, all);
    }

    #[test]
    fn an_unseen_system_is_permission_denied_with_its_reason() {
        let status =
            require_system(&grant(&["crm"], true), &SourceKey::new("ehr", "1")).unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        assert_eq!(
            status.get_details_error_info().unwrap().reason,
            SYSTEM_NOT_GRANTED
        );
        assert!(require_system(&grant(&["crm"], true), &SourceKey::new("crm", "1")).is_ok());
    }
}
