//! Who may see which sections: the caller's [`Grant`] intersected with the
//! configured [`Authorizer`] (the purpose policy). Sections a caller may not
//! see are never fetched and never read from the cache.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tessera_auth::Grant;

/// Why a caller asks, as HL7 v3 `PurposeOfUse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Purpose {
    /// TREAT.
    Treatment,
    /// ETREAT (break-the-glass).
    EmergencyTreatment,
    /// HPAYMT.
    Payment,
    /// HOPERAT, scheduling and contact centres included.
    Operations,
    /// HMARKT.
    Marketing,
    /// PATRQT.
    PatientRequest,
    /// PUBHLTH.
    PublicHealth,
    /// HRESCH.
    Research,
}

impl Purpose {
    /// Every purpose.
    pub const ALL: [Purpose; 8] = [
        Self::Treatment,
        Self::EmergencyTreatment,
        Self::Payment,
        Self::Operations,
        Self::Marketing,
        Self::PatientRequest,
        Self::PublicHealth,
        Self::Research,
    ];

    /// Its name in config files (`treatment`, `emergency_treatment`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Treatment => "treatment",
            Self::EmergencyTreatment => "emergency_treatment",
            Self::Payment => "payment",
            Self::Operations => "operations",
            Self::Marketing => "marketing",
            Self::PatientRequest => "patient_request",
            Self::PublicHealth => "public_health",
            Self::Research => "research",
        }
    }

    /// Its HL7 v3 PurposeOfUse code (`TREAT`, `ETREAT`, `HMARKT`).
    pub fn code(self) -> &'static str {
        match self {
            Self::Treatment => "TREAT",
            Self::EmergencyTreatment => "ETREAT",
            Self::Payment => "HPAYMT",
            Self::Operations => "HOPERAT",
            Self::Marketing => "HMARKT",
            Self::PatientRequest => "PATRQT",
            Self::PublicHealth => "PUBHLTH",
            Self::Research => "HRESCH",
        }
    }
}

/// Who is asking: what the authentication layer established.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    /// The authenticated principal; empty for in-process callers.
    pub principal: String,
    /// The caller's grant: the sections and identifier systems it may see.
    /// `None` only for in-process callers (benchmarks, tools), which the
    /// gRPC edge never builds: there every call carries its grant.
    pub grant: Option<Arc<Grant>>,
}

impl Caller {
    /// A caller with `grant`.
    pub fn granted(grant: Grant) -> Self {
        Self {
            principal: grant.principal.clone(),
            grant: Some(Arc::new(grant)),
        }
    }

    /// Whether the grant lets the caller read `section` of `source`.
    pub fn allows_section(&self, source: &str, section: &str) -> bool {
        self.grant
            .as_ref()
            .is_none_or(|g| g.allows_section(source, section))
    }

    /// Whether the grant lets the caller see identifiers of `system`.
    pub fn sees_system(&self, system: &str) -> bool {
        self.grant.as_ref().is_none_or(|g| g.sees_system(system))
    }
}

/// Decides which (source, section) pairs a caller may see for a purpose, on
/// top of the caller's grant, which the planner always applies as well.
pub trait Authorizer: Send + Sync + 'static {
    /// Whether `caller`, asking for `purpose`, may see `section` from `source`.
    fn allows(&self, caller: &Caller, purpose: Purpose, source: &str, section: &str) -> bool;
}

/// The one question the planner asks: the caller's grant allows the section
/// and so does the configured authorizer.
pub(crate) fn permitted(
    authorizer: &dyn Authorizer,
    caller: &Caller,
    purpose: Purpose,
    source: &str,
    section: &str,
) -> bool {
    caller.allows_section(source, section) && authorizer.allows(caller, purpose, source, section)
}

/// Sections per purpose from the config (`view.access`). A purpose without an
/// entry adds no restriction: the caller's grant decides alone.
#[derive(Debug, Clone, Default)]
pub struct PurposePolicy {
    /// Sections allowed per purpose; `*` allows every section.
    pub sections: BTreeMap<Purpose, BTreeSet<String>>,
}

impl Authorizer for PurposePolicy {
    fn allows(&self, _caller: &Caller, purpose: Purpose, _source: &str, section: &str) -> bool {
        self.sections
            .get(&purpose)
            .is_none_or(|allowed| allowed.contains("*") || allowed.contains(section))
    }
}

#[cfg(test)]
mod tests {
    use tessera_auth::Role;

    use super::*;

    fn grant(sections: &[&str]) -> Grant {
        Grant {
            principal: "billing-ui".to_owned(),
            role: Role::Reader,
            purposes: vec!["HPAYMT".to_owned()],
            sections: sections.iter().map(|s| (*s).to_owned()).collect(),
            systems: vec!["billing".to_owned()],
            national_id: false,
            break_glass_allowed: false,
            break_glass: false,
            reason: None,
        }
    }

    #[test]
    fn the_grant_and_the_purpose_policy_intersect() {
        let policy = PurposePolicy {
            sections: [(
                Purpose::Marketing,
                ["consents".to_owned(), "channel_preferences".to_owned()].into(),
            )]
            .into(),
        };
        let ok = |c: &Caller, p, src, sec| permitted(&policy, c, p, src, sec);
        let anyone = Caller::default();
        assert!(ok(&anyone, Purpose::Marketing, "mkt", "consents"));
        assert!(!ok(&anyone, Purpose::Marketing, "ehr", "conditions"));
        assert!(ok(&anyone, Purpose::Treatment, "ehr", "conditions"));
        let clerk = Caller::granted(grant(&["billing.invoices", "mkt.*"]));
        assert!(ok(&clerk, Purpose::Payment, "billing", "invoices"));
        assert!(
            !ok(&clerk, Purpose::Treatment, "ehr", "conditions"),
            "no entry for the purpose: the grant decides"
        );
        assert!(!ok(&clerk, Purpose::Marketing, "billing", "invoices"));
        assert!(ok(&clerk, Purpose::Marketing, "mkt", "consents"));
        assert!(clerk.sees_system("billing") && !clerk.sees_system("ehr"));
    }

    #[test]
    fn purposes_have_their_hl7_codes() {
        let codes: Vec<&str> = Purpose::ALL.iter().map(|p| p.code()).collect();
        assert_eq!(
            codes,
            [
                "TREAT", "ETREAT", "HPAYMT", "HOPERAT", "HMARKT", "PATRQT", "PUBHLTH", "HRESCH"
            ]
        );
        for code in codes {
            assert!(tessera_auth::policy::PURPOSES.contains(&code), "{code}");
        }
    }
}
