//! Callers, their grants, and the purpose-of-use check with break-the-glass windows.

use std::collections::HashMap;
use std::sync::Mutex;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::{Denied, PermissionTable, Role};

/// One configured caller and what it may do.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CallerConfig {
    /// Principal ID used in audit records and page tokens.
    pub id: String,
    /// Roles granted; the highest one counts.
    pub roles: Vec<ConfigRole>,
    /// HL7 v3 purpose-of-use codes allowed (TREAT, HPAYMT, ...).
    pub purposes: Vec<String>,
    /// Whether the caller may use ETREAT (break the glass).
    #[serde(default)]
    pub break_glass: bool,
}

/// A role name in configuration.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConfigRole {
    /// Reads.
    Reader,
    /// Reads and changes.
    Steward,
    /// Everything.
    Admin,
}

impl From<ConfigRole> for Role {
    fn from(r: ConfigRole) -> Self {
        match r {
            ConfigRole::Reader => Role::Reader,
            ConfigRole::Steward => Role::Steward,
            ConfigRole::Admin => Role::Admin,
        }
    }
}

/// What an authorized call was granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The caller's principal ID.
    pub principal: String,
    /// True when allowed through break-the-glass.
    pub break_glass: bool,
    /// The break-the-glass reason, for the audit trail.
    pub reason: Option<String>,
}

/// Maximum length of a break-the-glass reason.
pub const MAX_REASON_LEN: usize = 512;

/// Checks callers' RPCs and purposes; `now` arguments are seconds from any fixed origin.
#[derive(Debug)]
pub struct Policy {
    table: PermissionTable,
    window_secs: u64,
    cooldown_secs: u64,
    opened: Mutex<HashMap<String, u64>>,
}

impl Policy {
    /// A policy over `table` with the default break-the-glass window (1 h) and cool-down (8 h).
    pub fn new(table: PermissionTable) -> Self {
        Self {
            table,
            window_secs: 3600,
            cooldown_secs: 8 * 3600,
            opened: Mutex::new(HashMap::new()),
        }
    }

    /// Authorizes `caller` (None: unknown) for `method` with `purpose`.
    pub fn authorize(
        &self,
        caller: Option<&CallerConfig>,
        method: &str,
        purpose: &str,
        reason: Option<&str>,
        now: u64,
    ) -> Result<Grant, Denied> {
        let caller = caller.ok_or(Denied::CallerUnknown)?;
        let role = caller.roles.iter().map(|r| Role::from(*r)).max();
        let role = role.ok_or(Denied::RoleTooLow)?;
        self.table.check(role, method)?;
        let mut grant = Grant {
            principal: caller.id.clone(),
            break_glass: false,
            reason: None,
        };
        if purpose == "ETREAT" {
            if !caller.break_glass {
                return Err(Denied::BreakGlassNotAllowed);
            }
            let reason = reason.unwrap_or_default().trim();
            if reason.is_empty()
                || reason.len() > MAX_REASON_LEN
                || reason.chars().any(char::is_control)
            {
                return Err(Denied::BreakGlassReasonRequired);
            }
            let mut opened = self.opened.lock().map_err(|_| Denied::BreakGlassExpired)?;
            let start = *opened.entry(caller.id.clone()).or_insert(now);
            let elapsed = now.saturating_sub(start);
            if elapsed >= self.window_secs {
                if elapsed < self.window_secs + self.cooldown_secs {
                    return Err(Denied::BreakGlassExpired);
                }
                opened.insert(caller.id.clone(), now);
            }
            grant.break_glass = true;
            grant.reason = Some(reason.to_owned());
            return Ok(grant);
        }
        if !caller.purposes.iter().any(|p| p == purpose) {
            return Err(Denied::PurposeNotGranted);
        }
        Ok(grant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GET: &str = "/tessera.v1.IdentityService/GetMaster";

    fn clinician() -> CallerConfig {
        CallerConfig {
            id: "ehr-ui".into(),
            roles: vec![ConfigRole::Reader],
            purposes: vec!["TREAT".into()],
            break_glass: true,
        }
    }

    fn policy() -> Policy {
        Policy::new(PermissionTable::for_contract(false).unwrap())
    }

    #[test]
    fn unknown_caller_and_ungranted_purpose_are_refused() {
        let p = policy();
        assert_eq!(
            p.authorize(None, GET, "TREAT", None, 0),
            Err(Denied::CallerUnknown)
        );
        let c = clinician();
        assert!(p.authorize(Some(&c), GET, "TREAT", None, 0).is_ok());
        assert_eq!(
            p.authorize(Some(&c), GET, "HMARKT", None, 0),
            Err(Denied::PurposeNotGranted)
        );
    }

    #[test]
    fn break_glass_window_then_cooldown() {
        let p = policy();
        let c = clinician();
        assert_eq!(
            p.authorize(Some(&c), GET, "ETREAT", Some(" "), 0),
            Err(Denied::BreakGlassReasonRequired)
        );
        let g = p
            .authorize(Some(&c), GET, "ETREAT", Some("er"), 10)
            .unwrap();
        assert!(g.break_glass);
        assert!(
            p.authorize(Some(&c), GET, "ETREAT", Some("er"), 3000)
                .is_ok()
        );
        assert_eq!(
            p.authorize(Some(&c), GET, "ETREAT", Some("er"), 3610),
            Err(Denied::BreakGlassExpired)
        );
        let mut no = clinician();
        no.break_glass = false;
        no.id = "other".into();
        assert_eq!(
            p.authorize(Some(&no), GET, "ETREAT", Some("er"), 0),
            Err(Denied::BreakGlassNotAllowed)
        );
    }
}
