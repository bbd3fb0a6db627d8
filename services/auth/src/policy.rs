//! Callers, their grants, and the purpose-of-use check with break-the-glass windows.
//!
//! [`PolicyConfig`] is the serde form (`callers:`, `anonymous_loopback:`, `break_glass:`);
//! [`Policy::new`] validates it (no I/O) into the policy the auth layer and the handlers use.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::caller::{ANONYMOUS_PRINCIPAL, AuthMethod, Caller};
use crate::{AuthError, Denied, PermissionTable, Role};

/// HL7 v3 purpose-of-use codes Tessera accepts in configuration and requests.
pub const PURPOSES: &[&str] = &[
    "TREAT",
    "ETREAT",
    "HPAYMT",
    "HOPERAT",
    "PUBHLTH",
    "HMARKT",
    "HRESCH",
    "PATRQT",
    "CAREMGT",
    "COC",
    "HSYSADMIN",
    "HLEGAL",
    "HCOMPL",
    "HQUALIMP",
    "CLINTRCH",
    "FRAUD",
    "DISASTER",
    "THREAT",
];

/// The purpose that breaks the glass.
pub const BREAK_GLASS_PURPOSE: &str = "ETREAT";

/// Maximum length of a break-the-glass reason.
pub const MAX_REASON_LEN: usize = 512;

/// The access policy: who may call, and with which rights. Anything not granted is refused.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// The known callers; a request matching none of them is refused.
    #[serde(default)]
    pub callers: Vec<CallerConfig>,
    /// Rights of callers without credentials; only valid on a loopback listener.
    #[serde(default)]
    pub anonymous_loopback: Option<AnonymousGrantConfig>,
    /// Break-the-glass window and cool-down.
    #[serde(default)]
    pub break_glass: BreakGlassConfig,
}

/// One configured caller and what it may do.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CallerConfig {
    /// Principal ID used in audit records and page tokens.
    pub id: String,
    /// How a request is recognised as this caller.
    #[serde(rename = "match")]
    pub matches: CallerMatch,
    /// Roles granted; the highest one counts.
    pub roles: Vec<ConfigRole>,
    /// HL7 v3 purpose-of-use codes allowed (TREAT, HPAYMT, ...); ETREAT comes with `break_glass`.
    pub purposes: Vec<String>,
    /// Sections the caller may read: `*`, `SOURCE.*` or `SOURCE.SECTION` (`billing.invoices`).
    #[serde(default)]
    pub sections: Vec<String>,
    /// Identifier systems whose values the caller may see (`*` for all).
    #[serde(default)]
    pub systems: Vec<String>,
    /// Whether the caller may see national identifiers.
    #[serde(default)]
    pub national_id: bool,
    /// Whether the caller may use ETREAT (break the glass).
    #[serde(default)]
    pub break_glass: bool,
}

/// What identifies a caller; exactly one field is set.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CallerMatch {
    /// A subject alternative name of its client certificate (`spiffe://tessera.dev/ehr-ui`).
    #[serde(default)]
    pub san: Option<String>,
    /// The `sub` claim of its bearer token.
    #[serde(default)]
    pub subject: Option<String>,
    /// The client ID claim of its bearer token (`client_id`, `azp`, ... as configured).
    #[serde(default)]
    pub client_id: Option<String>,
}

/// The validated callers' grants and the anonymous grant.
type Grants = (Vec<(Matcher, Arc<Grant>)>, Option<Arc<Grant>>);

/// A validated [`CallerMatch`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Matcher {
    San(String),
    Subject(String),
    ClientId(String),
}

impl CallerMatch {
    fn matcher(&self, at: &str) -> Result<Matcher, AuthError> {
        let field = format!("{at}.match");
        let m = match (&self.san, &self.subject, &self.client_id) {
            (Some(v), None, None) => Matcher::San(v.clone()),
            (None, Some(v), None) => Matcher::Subject(v.clone()),
            (None, None, Some(v)) => Matcher::ClientId(v.clone()),
            _ => {
                return Err(invalid(
                    field,
                    "must set exactly one of san, subject, client_id",
                ));
            }
        };
        let (Matcher::San(v) | Matcher::Subject(v) | Matcher::ClientId(v)) = &m;
        if v.trim().is_empty() {
            return Err(invalid(field, "must not be empty"));
        }
        Ok(m)
    }
}

/// Rights of callers without credentials on a loopback listener.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnonymousGrantConfig {
    /// Roles granted; the highest one counts.
    pub roles: Vec<ConfigRole>,
    /// HL7 v3 purpose-of-use codes allowed; ETREAT is never allowed anonymously.
    pub purposes: Vec<String>,
    /// Sections readable: `*`, `SOURCE.*` or `SOURCE.SECTION`.
    #[serde(default)]
    pub sections: Vec<String>,
    /// Identifier systems whose values are visible (`*` for all).
    #[serde(default)]
    pub systems: Vec<String>,
    /// Whether national identifiers are visible.
    #[serde(default)]
    pub national_id: bool,
}

/// Break-the-glass timing, per caller.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BreakGlassConfig {
    /// How long ETREAT calls pass after the first one (`1h`).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub window: Duration,
    /// How long the caller is refused ETREAT after the window closes (`8h`).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub cooldown: Duration,
}

impl Default for BreakGlassConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(3600),
            cooldown: Duration::from_secs(8 * 3600),
        }
    }
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

/// A caller's rights, and for an authorized call whether it broke the glass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The caller's principal ID.
    pub principal: String,
    /// The highest role granted.
    pub role: Role,
    /// Purposes of use granted (ETREAT only through `break_glass_allowed`).
    pub purposes: Vec<String>,
    /// Readable sections: `*`, `SOURCE.*`, `SOURCE.SECTION`.
    pub sections: Vec<String>,
    /// Visible identifier systems (`*` for all).
    pub systems: Vec<String>,
    /// Whether national identifiers are visible.
    pub national_id: bool,
    /// Whether the caller may break the glass.
    pub break_glass_allowed: bool,
    /// True when this call was allowed through break-the-glass.
    pub break_glass: bool,
    /// The break-the-glass reason, for the audit trail.
    pub reason: Option<String>,
}

impl Grant {
    /// Whether `section` of `source` may be read.
    pub fn allows_section(&self, source: &str, section: &str) -> bool {
        self.sections.iter().any(|s| {
            s == "*"
                || s.strip_suffix(".*") == Some(source)
                || s.split_once('.') == Some((source, section))
        })
    }

    /// Whether identifiers of `system` may be shown.
    pub fn sees_system(&self, system: &str) -> bool {
        self.systems.iter().any(|s| s == "*" || s == system)
    }

    /// Whether identifiers of every system may be shown.
    pub fn sees_every_system(&self) -> bool {
        self.systems.iter().any(|s| s == "*")
    }

    /// Whether national identifiers may be shown.
    pub fn sees_national_id(&self) -> bool {
        self.national_id
    }
}

/// Checks callers' RPCs and purposes; `now` arguments are seconds from any fixed origin.
#[derive(Debug)]
pub struct Policy {
    table: PermissionTable,
    callers: Vec<(Matcher, Arc<Grant>)>,
    anonymous: Option<Arc<Grant>>,
    window_secs: u64,
    cooldown_secs: u64,
    opened: Mutex<HashMap<String, u64>>,
}

fn invalid(field: impl Into<String>, problem: &'static str) -> AuthError {
    AuthError::InvalidConfig {
        field: field.into(),
        problem,
    }
}

fn check_rights(
    at: &str,
    roles: &[ConfigRole],
    purposes: &[String],
    sections: &[String],
    systems: &[String],
) -> Result<Role, AuthError> {
    let role = roles
        .iter()
        .map(|r| Role::from(*r))
        .max()
        .ok_or_else(|| invalid(format!("{at}.roles"), "must name at least one role"))?;
    for (i, p) in purposes.iter().enumerate() {
        if !PURPOSES.contains(&p.as_str()) {
            return Err(invalid(
                format!("{at}.purposes[{i}]"),
                "is not a known HL7 v3 purpose-of-use code",
            ));
        }
        if p == BREAK_GLASS_PURPOSE {
            return Err(invalid(
                format!("{at}.purposes[{i}]"),
                "ETREAT is granted by break_glass, not listed as a purpose",
            ));
        }
    }
    for (i, s) in sections.iter().enumerate() {
        let ok = s == "*"
            || s.split_once('.').is_some_and(|(src, sec)| {
                !src.is_empty()
                    && !sec.is_empty()
                    && !src.contains('*')
                    && !sec.contains('.')
                    && (sec == "*" || !sec.contains('*'))
            });
        if !ok {
            return Err(invalid(
                format!("{at}.sections[{i}]"),
                "must be `*`, `SOURCE.*` or `SOURCE.SECTION`",
            ));
        }
    }
    for (i, s) in systems.iter().enumerate() {
        if s.trim().is_empty() {
            return Err(invalid(format!("{at}.systems[{i}]"), "must not be empty"));
        }
    }
    Ok(role)
}

impl PolicyConfig {
    /// Checks the configuration without I/O; the error names the first bad field.
    pub fn validate(&self) -> Result<(), AuthError> {
        self.grants().map(|_| ())
    }

    /// Refuses the `anonymous_loopback` grant on a listener that is not loopback.
    pub fn validate_for_listener(&self, addr: SocketAddr) -> Result<(), AuthError> {
        if self.anonymous_loopback.is_some() && !addr.ip().is_loopback() {
            return Err(invalid(
                "anonymous_loopback",
                "is only allowed on a loopback listener",
            ));
        }
        Ok(())
    }

    fn grants(&self) -> Result<Grants, AuthError> {
        if self.break_glass.window.is_zero() {
            return Err(invalid("break_glass.window", "must be positive"));
        }
        let mut ids = HashSet::new();
        let mut matches = HashSet::new();
        let mut callers = Vec::new();
        for (i, c) in self.callers.iter().enumerate() {
            let at = format!("callers[{i}]");
            if c.id.trim().is_empty() || c.id == ANONYMOUS_PRINCIPAL {
                return Err(invalid(
                    format!("{at}.id"),
                    "must be a non-empty, non-reserved name",
                ));
            }
            if !ids.insert(c.id.as_str()) {
                return Err(invalid(format!("{at}.id"), "is used by another caller"));
            }
            let matcher = c.matches.matcher(&at)?;
            if !matches.insert(matcher.clone()) {
                return Err(invalid(format!("{at}.match"), "is used by another caller"));
            }
            let role = check_rights(&at, &c.roles, &c.purposes, &c.sections, &c.systems)?;
            callers.push((
                matcher,
                Arc::new(Grant {
                    principal: c.id.clone(),
                    role,
                    purposes: c.purposes.clone(),
                    sections: c.sections.clone(),
                    systems: c.systems.clone(),
                    national_id: c.national_id,
                    break_glass_allowed: c.break_glass,
                    break_glass: false,
                    reason: None,
                }),
            ));
        }
        let anonymous = match &self.anonymous_loopback {
            None => None,
            Some(a) => {
                let role = check_rights(
                    "anonymous_loopback",
                    &a.roles,
                    &a.purposes,
                    &a.sections,
                    &a.systems,
                )?;
                Some(Arc::new(Grant {
                    principal: ANONYMOUS_PRINCIPAL.into(),
                    role,
                    purposes: a.purposes.clone(),
                    sections: a.sections.clone(),
                    systems: a.systems.clone(),
                    national_id: a.national_id,
                    break_glass_allowed: false,
                    break_glass: false,
                    reason: None,
                }))
            }
        };
        Ok((callers, anonymous))
    }
}

impl Policy {
    /// Validates `config` (no I/O) into a policy over `table`.
    pub fn new(config: &PolicyConfig, table: PermissionTable) -> Result<Self, AuthError> {
        let (callers, anonymous) = config.grants()?;
        Ok(Self {
            table,
            callers,
            anonymous,
            window_secs: config.break_glass.window.as_secs(),
            cooldown_secs: config.break_glass.cooldown.as_secs(),
            opened: Mutex::new(HashMap::new()),
        })
    }

    /// The RPC permission table.
    pub fn table(&self) -> &PermissionTable {
        &self.table
    }

    /// The grant of the configured caller that `method` identifies, if any.
    pub fn grant_for(&self, method: &AuthMethod) -> Option<&Arc<Grant>> {
        let hit = |m: &Matcher| match (m, method) {
            (Matcher::San(want), AuthMethod::Mtls { san }) => want == san,
            (Matcher::Subject(want), AuthMethod::Jwt { subject, .. }) => {
                subject.as_deref() == Some(want.as_str())
            }
            (Matcher::ClientId(want), AuthMethod::Jwt { client_id, .. }) => {
                client_id.as_deref() == Some(want.as_str())
            }
            _ => false,
        };
        match method {
            AuthMethod::AnonymousLoopback => self.anonymous.as_ref(),
            _ => self.callers.iter().find(|(m, _)| hit(m)).map(|(_, g)| g),
        }
    }

    /// Identifies a client certificate's caller by the first of its SANs that a caller matches.
    pub fn identify_mtls<'a>(
        &self,
        sans: impl IntoIterator<Item = &'a str>,
    ) -> Option<(Caller, &Arc<Grant>)> {
        sans.into_iter().find_map(|san| {
            let method = AuthMethod::Mtls {
                san: san.to_owned(),
            };
            let grant = self.grant_for(&method)?;
            Some((
                Caller {
                    principal: grant.principal.clone(),
                    method,
                    end_user: None,
                },
                grant,
            ))
        })
    }

    /// Whether callers without credentials are admitted (an `anonymous_loopback` grant).
    pub fn anonymous_grant(&self) -> Option<&Arc<Grant>> {
        self.anonymous.as_ref()
    }

    /// Authorizes `caller`'s grant (None: unknown caller) for `method` with `purpose`;
    /// `reason` is the break-the-glass reason from `x-tessera-break-glass-reason`.
    pub fn authorize(
        &self,
        grant: Option<&Grant>,
        method: &str,
        purpose: &str,
        reason: Option<&str>,
        now: u64,
    ) -> Result<Grant, Denied> {
        let caller = grant.ok_or(Denied::CallerUnknown)?;
        self.table.check(caller.role, method)?;
        let mut grant = caller.clone();
        if purpose == BREAK_GLASS_PURPOSE {
            if !caller.break_glass_allowed {
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
            let start = *opened.entry(caller.principal.clone()).or_insert(now);
            let elapsed = now.saturating_sub(start);
            if elapsed >= self.window_secs {
                if elapsed < self.window_secs + self.cooldown_secs {
                    return Err(Denied::BreakGlassExpired);
                }
                opened.insert(caller.principal.clone(), now);
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

    fn config() -> PolicyConfig {
        serde_yaml_ng::from_str(
            r#"
callers:
  - id: ehr-ui
    match: { san: "spiffe://tessera.dev/ehr-ui" }
    roles: [reader]
    purposes: [TREAT]
    sections: ["ehr.*", "billing.invoices"]
    systems: [ehr-mrn]
    national_id: true
    break_glass: true
  - id: marketing
    match: { client_id: mkt-app }
    roles: [reader]
    purposes: [HMARKT]
    sections: ["crm.*"]
    systems: [crm-id]
  - id: steward
    match: { subject: "steward@tessera.dev" }
    roles: [steward]
    purposes: [HOPERAT]
    sections: ["*"]
    systems: ["*"]
break_glass:
  window: 1h
  cooldown: 8h
"#,
        )
        .unwrap()
    }

    fn policy() -> Policy {
        Policy::new(&config(), PermissionTable::for_contract(false).unwrap()).unwrap()
    }

    fn mtls(san: &str) -> AuthMethod {
        AuthMethod::Mtls { san: san.into() }
    }

    fn jwt(subject: Option<&str>, client_id: Option<&str>) -> AuthMethod {
        AuthMethod::Jwt {
            issuer: "https://issuer".into(),
            subject: subject.map(Into::into),
            client_id: client_id.map(Into::into),
        }
    }

    #[test]
    fn callers_match_by_san_subject_or_client_id() {
        let p = policy();
        let id = |m: &AuthMethod| p.grant_for(m).map(|g| g.principal.clone());
        assert_eq!(
            id(&mtls("spiffe://tessera.dev/ehr-ui")).as_deref(),
            Some("ehr-ui")
        );
        assert_eq!(
            id(&jwt(None, Some("mkt-app"))).as_deref(),
            Some("marketing")
        );
        assert_eq!(
            id(&jwt(Some("steward@tessera.dev"), None)).as_deref(),
            Some("steward")
        );
        // A SAN value presented as a token subject does not match the SAN entry.
        assert_eq!(id(&jwt(Some("spiffe://tessera.dev/ehr-ui"), None)), None);
        assert_eq!(id(&mtls("spiffe://tessera.dev/nobody")), None);
        assert_eq!(id(&AuthMethod::AnonymousLoopback), None);
        let (caller, _) = p
            .identify_mtls(["other.local", "spiffe://tessera.dev/ehr-ui"])
            .unwrap();
        assert_eq!(caller.principal, "ehr-ui");
        assert_eq!(caller.method, mtls("spiffe://tessera.dev/ehr-ui"));
    }

    #[test]
    fn grants_scope_sections_and_identifier_systems() {
        let p = policy();
        let ehr = p.grant_for(&mtls("spiffe://tessera.dev/ehr-ui")).unwrap();
        assert!(ehr.allows_section("ehr", "allergies"));
        assert!(ehr.allows_section("billing", "invoices"));
        assert!(!ehr.allows_section("billing", "claims"));
        assert!(!ehr.allows_section("crm", "contact"));
        assert!(ehr.sees_system("ehr-mrn") && ehr.sees_national_id());
        let mkt = p.grant_for(&jwt(None, Some("mkt-app"))).unwrap();
        assert!(!mkt.sees_system("ehr-mrn"));
        assert!(!mkt.sees_national_id());
        assert!(!mkt.allows_section("ehr", "allergies"));
        let st = p
            .grant_for(&jwt(Some("steward@tessera.dev"), None))
            .unwrap();
        assert!(st.allows_section("anything", "at-all") && st.sees_system("ehr-mrn"));
    }

    #[test]
    fn unknown_caller_and_ungranted_purpose_are_refused() {
        let p = policy();
        assert_eq!(
            p.authorize(None, GET, "TREAT", None, 0),
            Err(Denied::CallerUnknown)
        );
        let c = p
            .grant_for(&mtls("spiffe://tessera.dev/ehr-ui"))
            .map(|g| &**g);
        assert!(p.authorize(c, GET, "TREAT", None, 0).is_ok());
        assert_eq!(
            p.authorize(c, GET, "HMARKT", None, 0),
            Err(Denied::PurposeNotGranted)
        );
        assert_eq!(
            p.authorize(
                c,
                "/tessera.v1.IdentityService/MergeMasters",
                "TREAT",
                None,
                0
            ),
            Err(Denied::RoleTooLow)
        );
    }

    #[test]
    fn every_rpc_by_role_by_purpose() {
        let p = policy();
        let callers = [
            (jwt(None, Some("mkt-app")), Role::Reader, "HMARKT"),
            (
                jwt(Some("steward@tessera.dev"), None),
                Role::Steward,
                "HOPERAT",
            ),
        ];
        for rpc in crate::methods(tessera_proto::FILE_DESCRIPTOR_SET).unwrap() {
            let Some(crate::Requirement::Role(needed)) = p.table().requirement(&rpc) else {
                panic!("{rpc} has no role requirement");
            };
            for (method, role, granted) in &callers {
                let grant = p.grant_for(method).map(|g| &**g);
                for purpose in PURPOSES.iter().filter(|p| **p != BREAK_GLASS_PURPOSE) {
                    let expected = if *role < needed {
                        Err(Denied::RoleTooLow)
                    } else if purpose != granted {
                        Err(Denied::PurposeNotGranted)
                    } else {
                        Ok(())
                    };
                    let got = p.authorize(grant, &rpc, purpose, None, 0).map(|_| ());
                    assert_eq!(got, expected, "{rpc} as {role:?} for {purpose}");
                }
            }
        }
    }

    #[test]
    fn break_glass_window_then_cooldown() {
        let p = policy();
        let c = p
            .grant_for(&mtls("spiffe://tessera.dev/ehr-ui"))
            .map(|g| &**g);
        assert_eq!(
            p.authorize(c, GET, "ETREAT", Some(" "), 0),
            Err(Denied::BreakGlassReasonRequired)
        );
        assert_eq!(
            p.authorize(c, GET, "ETREAT", Some("er\u{7}"), 0),
            Err(Denied::BreakGlassReasonRequired)
        );
        let g = p.authorize(c, GET, "ETREAT", Some("er"), 10).unwrap();
        assert!(g.break_glass);
        assert_eq!(g.reason.as_deref(), Some("er"));
        assert!(p.authorize(c, GET, "ETREAT", Some("er"), 3000).is_ok());
        assert_eq!(
            p.authorize(c, GET, "ETREAT", Some("er"), 3610),
            Err(Denied::BreakGlassExpired)
        );
        assert_eq!(
            p.authorize(c, GET, "ETREAT", Some("er"), 10 + 3600 + 8 * 3600 - 1),
            Err(Denied::BreakGlassExpired)
        );
        assert!(
            p.authorize(c, GET, "ETREAT", Some("er"), 10 + 3600 + 8 * 3600)
                .is_ok()
        );
        let mkt = p.grant_for(&jwt(None, Some("mkt-app"))).map(|g| &**g);
        assert_eq!(
            p.authorize(mkt, GET, "ETREAT", Some("er"), 0),
            Err(Denied::BreakGlassNotAllowed)
        );
    }

    #[test]
    fn break_glass_window_is_configurable() {
        let mut cfg = config();
        cfg.break_glass.window = Duration::from_secs(60);
        cfg.break_glass.cooldown = Duration::from_secs(120);
        let p = Policy::new(&cfg, PermissionTable::for_contract(false).unwrap()).unwrap();
        let c = p
            .grant_for(&mtls("spiffe://tessera.dev/ehr-ui"))
            .map(|g| &**g);
        assert!(p.authorize(c, GET, "ETREAT", Some("er"), 0).is_ok());
        assert_eq!(
            p.authorize(c, GET, "ETREAT", Some("er"), 60),
            Err(Denied::BreakGlassExpired)
        );
        assert!(p.authorize(c, GET, "ETREAT", Some("er"), 180).is_ok());
    }

    fn error_of(yaml: &str) -> String {
        let cfg: PolicyConfig = serde_yaml_ng::from_str(yaml).unwrap();
        cfg.validate().unwrap_err().to_string()
    }

    #[test]
    fn validate_names_the_bad_field() {
        let base = "callers:\n  - id: a\n    match: { san: x }\n    roles: [reader]\n";
        assert_eq!(
            error_of(&format!("{base}    purposes: [TRAET]\n")),
            "invalid auth config: callers[0].purposes[0] is not a known HL7 v3 purpose-of-use code"
        );
        assert_eq!(
            error_of(&format!("{base}    purposes: [ETREAT]\n")),
            "invalid auth config: callers[0].purposes[0] ETREAT is granted by break_glass, not listed as a purpose"
        );
        assert_eq!(
            error_of(&format!("{base}    purposes: []\n    sections: [ehr]\n")),
            "invalid auth config: callers[0].sections[0] must be `*`, `SOURCE.*` or `SOURCE.SECTION`"
        );
        assert_eq!(
            error_of(&format!(
                "{base}    purposes: []\n  - id: a\n    match: {{ san: y }}\n    roles: [reader]\n    purposes: []\n"
            )),
            "invalid auth config: callers[1].id is used by another caller"
        );
        assert_eq!(
            error_of(&format!(
                "{base}    purposes: []\n  - id: b\n    match: {{ san: x }}\n    roles: [reader]\n    purposes: []\n"
            )),
            "invalid auth config: callers[1].match is used by another caller"
        );
        assert_eq!(
            error_of(
                "callers:\n  - id: a\n    match: { client_id: c, san: x }\n    roles: [reader]\n    purposes: []\n"
            ),
            "invalid auth config: callers[0].match must set exactly one of san, subject, client_id"
        );
        assert_eq!(
            error_of(
                "callers:\n  - id: a\n    match: { client_id: c }\n    roles: []\n    purposes: []\n"
            ),
            "invalid auth config: callers[0].roles must name at least one role"
        );
        assert!(
            serde_yaml_ng::from_str::<PolicyConfig>(
                "callers:\n  - id: a\n    match: { san: x }\n    roles: [reader]\n    purposes: []\n    role: admin\n"
            )
            .is_err()
        );
    }

    #[test]
    fn anonymous_loopback_only_on_a_loopback_listener() {
        let cfg: PolicyConfig = serde_yaml_ng::from_str(
            "anonymous_loopback:\n  roles: [reader]\n  purposes: [TREAT]\n",
        )
        .unwrap();
        cfg.validate().unwrap();
        assert!(
            cfg.validate_for_listener("127.0.0.1:50051".parse().unwrap())
                .is_ok()
        );
        assert!(
            cfg.validate_for_listener("[::1]:50051".parse().unwrap())
                .is_ok()
        );
        assert_eq!(
            cfg.validate_for_listener("0.0.0.0:50051".parse().unwrap())
                .unwrap_err()
                .to_string(),
            "invalid auth config: anonymous_loopback is only allowed on a loopback listener"
        );
        assert!(
            PolicyConfig::default()
                .validate_for_listener("0.0.0.0:50051".parse().unwrap())
                .is_ok()
        );
        let p = Policy::new(&cfg, PermissionTable::for_contract(false).unwrap()).unwrap();
        let g = p.grant_for(&AuthMethod::AnonymousLoopback).unwrap();
        assert_eq!(g.principal, ANONYMOUS_PRINCIPAL);
        assert_eq!(
            p.authorize(Some(g), GET, "ETREAT", Some("er"), 0),
            Err(Denied::BreakGlassNotAllowed)
        );
    }
}
