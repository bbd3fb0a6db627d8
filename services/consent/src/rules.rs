//! Consent rules and how they decide: the most specific matching rule wins, and at equal
//! specificity a deny beats a permit.

use schemars::JsonSchema;
use serde::Deserialize;

/// A consent decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The section may be served.
    Permit,
    /// The section is withheld.
    Deny,
}

impl Decision {
    /// Parses `deny` or `permit` (any case).
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "deny" => Some(Self::Deny),
            "permit" => Some(Self::Permit),
            _ => None,
        }
    }
}

/// Which sections a rule covers: `*`, `SOURCE.*` or `SOURCE.SECTION`, as in grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionPattern {
    /// Every section (`*`).
    Any,
    /// Every section of one source (`marketing.*`).
    Source(String),
    /// One section of one source (`ehr.conditions`).
    Section(String, String),
}

impl SectionPattern {
    /// Parses `*`, `SOURCE.*` or `SOURCE.SECTION`.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if text == "*" {
            return Some(Self::Any);
        }
        let (source, section) = text.split_once('.')?;
        let name_ok = |s: &str| !s.is_empty() && !s.contains(['*', '.']);
        if !name_ok(source) {
            return None;
        }
        if section == "*" {
            Some(Self::Source(source.to_owned()))
        } else if name_ok(section) {
            Some(Self::Section(source.to_owned(), section.to_owned()))
        } else {
            None
        }
    }

    /// Whether it covers `section` of `source`.
    pub fn matches(&self, source: &str, section: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Source(s) => s == source,
            Self::Section(s, x) => s == source && x == section,
        }
    }

    fn specificity(&self) -> u8 {
        match self {
            Self::Any => 0,
            Self::Source(_) => 1,
            Self::Section(..) => 2,
        }
    }
}

/// One consent rule of a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The HL7 v3 purpose it applies to; `None` for every purpose.
    pub purpose: Option<String>,
    /// The sections it covers.
    pub sections: SectionPattern,
    /// What it decides.
    pub decision: Decision,
}

/// A person's consent rules, as a source returned them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decisions {
    /// The rules, in no particular order.
    pub rules: Vec<Rule>,
}

impl Decisions {
    /// The decision for `section` of `source` asked for `purpose`, if any rule covers it:
    /// the most specific matching rule (section first, then purpose) wins, and at equal
    /// specificity a deny beats a permit.
    pub fn decide(&self, purpose: &str, source: &str, section: &str) -> Option<Decision> {
        let mut best: Option<((u8, bool), Decision)> = None;
        for rule in &self.rules {
            let purpose_ok = rule.purpose.as_deref().is_none_or(|p| p == purpose);
            if !purpose_ok || !rule.sections.matches(source, section) {
                continue;
            }
            let rank = (rule.sections.specificity(), rule.purpose.is_some());
            best = match best {
                Some((r, d)) if r > rank => Some((r, d)),
                Some((r, Decision::Deny)) if r == rank => Some((r, Decision::Deny)),
                _ => Some((rank, rule.decision)),
            };
        }
        best.map(|(_, d)| d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(purpose: Option<&str>, sections: &str, decision: Decision) -> Rule {
        Rule {
            purpose: purpose.map(str::to_owned),
            sections: SectionPattern::parse(sections).unwrap(),
            decision,
        }
    }

    #[test]
    fn patterns_parse_like_grants() {
        assert_eq!(SectionPattern::parse("*"), Some(SectionPattern::Any));
        assert_eq!(
            SectionPattern::parse("crm.*"),
            Some(SectionPattern::Source("crm".into()))
        );
        assert_eq!(
            SectionPattern::parse("ehr.conditions"),
            Some(SectionPattern::Section("ehr".into(), "conditions".into()))
        );
        for bad in ["", "ehr", "*.x", "a.b.c", ".x", "a.", "a.b*"] {
            assert_eq!(SectionPattern::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_most_specific_rule_wins_and_deny_breaks_ties() {
        let d = Decisions {
            rules: vec![
                rule(Some("HMARKT"), "marketing.*", Decision::Deny),
                rule(Some("HMARKT"), "marketing.email", Decision::Permit),
                rule(None, "ehr.notes", Decision::Deny),
                rule(Some("TREAT"), "ehr.notes", Decision::Permit),
                rule(None, "crm.*", Decision::Permit),
                rule(None, "crm.*", Decision::Deny),
            ],
        };
        assert_eq!(
            d.decide("HMARKT", "marketing", "campaigns"),
            Some(Decision::Deny)
        );
        assert_eq!(
            d.decide("HMARKT", "marketing", "email"),
            Some(Decision::Permit)
        );
        assert_eq!(d.decide("TREAT", "marketing", "campaigns"), None);
        assert_eq!(d.decide("HPAYMT", "ehr", "notes"), Some(Decision::Deny));
        assert_eq!(d.decide("TREAT", "ehr", "notes"), Some(Decision::Permit));
        assert_eq!(d.decide("TREAT", "crm", "cases"), Some(Decision::Deny));
    }
}
