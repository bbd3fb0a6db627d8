//! Who may see which sections: the hook the security work fills. Sections a
//! caller may not see are never fetched and never read from the cache.

use std::collections::{BTreeMap, BTreeSet};

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
}

/// Who is asking: what the authentication layer established.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    /// The authenticated principal; empty when authentication is off.
    pub principal: String,
    /// Sections the caller's credentials allow; `None` when authentication does
    /// not restrict sections.
    pub sections: Option<BTreeSet<String>>,
}

/// Decides which (source, section) pairs a caller may see for a purpose.
pub trait Authorizer: Send + Sync + 'static {
    /// Whether `caller`, asking for `purpose`, may see `section` from `source`.
    fn allows(&self, caller: &Caller, purpose: Purpose, source: &str, section: &str) -> bool;
}

/// Sections per purpose from the config, intersected with the caller's own
/// section scopes. A purpose without an entry sees every section.
#[derive(Debug, Clone, Default)]
pub struct PurposePolicy {
    /// Sections allowed per purpose; `*` allows every section.
    pub sections: BTreeMap<Purpose, BTreeSet<String>>,
}

impl Authorizer for PurposePolicy {
    fn allows(&self, caller: &Caller, purpose: Purpose, _source: &str, section: &str) -> bool {
        let by_purpose = self
            .sections
            .get(&purpose)
            .is_none_or(|allowed| allowed.contains("*") || allowed.contains(section));
        let by_caller = caller
            .sections
            .as_ref()
            .is_none_or(|allowed| allowed.contains(section));
        by_purpose && by_caller
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purpose_and_caller_scopes_intersect() {
        let policy = PurposePolicy {
            sections: [(
                Purpose::Marketing,
                ["consents".to_owned(), "channel_preferences".to_owned()].into(),
            )]
            .into(),
        };
        let anyone = Caller::default();
        assert!(policy.allows(&anyone, Purpose::Marketing, "mkt", "consents"));
        assert!(!policy.allows(&anyone, Purpose::Marketing, "ehr", "conditions"));
        assert!(policy.allows(&anyone, Purpose::Treatment, "ehr", "conditions"));
        let billing_clerk = Caller {
            principal: "billing-ui".to_owned(),
            sections: Some(["invoices".to_owned()].into()),
        };
        assert!(policy.allows(&billing_clerk, Purpose::Payment, "billing", "invoices"));
        assert!(!policy.allows(&billing_clerk, Purpose::Treatment, "ehr", "conditions"));
        assert!(!policy.allows(&billing_clerk, Purpose::Marketing, "mkt", "invoices"));
    }
}
