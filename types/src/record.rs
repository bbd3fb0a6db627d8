//! A source record's key, its demographics as the silo sent them, and
//! validation that names every bad field.

use serde::{Deserialize, Serialize};

/// Longest accepted source system name.
pub const MAX_SYSTEM_LEN: usize = 63;
/// Longest accepted local ID.
pub const MAX_LOCAL_ID_LEN: usize = 256;

/// One silo's identifier for a person: the system that issued it and its local ID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SourceKey {
    /// The source system, as configured (`ehr`, `billing`): lowercase letters,
    /// digits, `-` and `_`, 1 to 63 characters.
    pub system: String,
    /// The record's ID inside that system; opaque, 1 to 256 characters.
    pub local_id: String,
}

impl SourceKey {
    /// Creates a key without validating it; see [`SourceKey::validate`].
    pub fn new(system: impl Into<String>, local_id: impl Into<String>) -> Self {
        Self {
            system: system.into(),
            local_id: local_id.into(),
        }
    }

    /// Checks the key, naming each bad field under `prefix` (for example
    /// `source_record.key`).
    pub fn validate(&self, prefix: &str) -> Vec<FieldViolation> {
        let mut violations = Vec::new();
        let system_ok = !self.system.is_empty()
            && self.system.len() <= MAX_SYSTEM_LEN
            && self
                .system
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if self.system.is_empty() {
            violations.push(FieldViolation::new(field(prefix, "system"), "is required"));
        } else if !system_ok {
            violations.push(FieldViolation::new(
                field(prefix, "system"),
                "must be 1 to 63 lowercase letters, digits, '-' or '_'",
            ));
        }
        if self.local_id.is_empty() {
            violations.push(FieldViolation::new(
                field(prefix, "local_id"),
                "is required",
            ));
        } else if self.local_id.len() > MAX_LOCAL_ID_LEN
            || self.local_id.chars().any(char::is_control)
        {
            violations.push(FieldViolation::new(
                field(prefix, "local_id"),
                "must be at most 256 bytes with no control characters",
            ));
        }
        violations
    }
}

/// Administrative sex, as FHIR's `AdministrativeGender`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sex {
    /// Not recorded.
    #[default]
    Unspecified,
    /// Male.
    Male,
    /// Female.
    Female,
    /// Other.
    Other,
    /// Recorded as unknown.
    Unknown,
}

impl Sex {
    /// The one parser of sex and gender codes as silos write them: FHIR's
    /// `AdministrativeGender` codes, letters, common words and ISO/IEC 5218
    /// numbers (`0` not known, `1` male, `2` female, `9` not applicable),
    /// case-insensitive and trimmed. An empty code is [`Sex::Unspecified`];
    /// a spelling it does not know is `None` (callers that tolerate it use
    /// `unwrap_or_default()`, which is [`Sex::Unspecified`]).
    pub fn from_code(code: &str) -> Option<Self> {
        Some(match code.trim().to_ascii_lowercase().as_str() {
            "" => Self::Unspecified,
            "m" | "male" | "man" | "boy" | "1" => Self::Male,
            "f" | "female" | "woman" | "w" | "girl" | "2" => Self::Female,
            "o" | "other" | "x" | "nb" | "non-binary" | "nonbinary" | "intersex" => Self::Other,
            "u" | "unknown" | "unk" | "n" | "na" | "n/a" | "not known" | "unspecified"
            | "not specified" | "?" | "0" | "9" => Self::Unknown,
            _ => return None,
        })
    }

    /// The FHIR `AdministrativeGender` code (`male`, `female`, `other`,
    /// `unknown`), or `""` when unspecified.
    pub fn as_code(self) -> &'static str {
        match self {
            Self::Unspecified => "",
            Self::Male => "male",
            Self::Female => "female",
            Self::Other => "other",
            Self::Unknown => "unknown",
        }
    }
}

/// A postal address as the silo holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    /// Street lines, including unit or apartment.
    pub lines: Vec<String>,
    /// City or locality.
    pub city: String,
    /// State, province or region.
    pub state: String,
    /// Postal or ZIP code.
    pub postal_code: String,
    /// ISO 3166-1 alpha-2 country code; empty means the deployment's default.
    pub country: String,
}

/// A person's demographics as one silo holds them, before normalization. Every
/// field is optional (empty).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Demographics {
    /// Given names in order: first, then middle names.
    pub given_names: Vec<String>,
    /// Family name (surname), kept whole when multi-part or hyphenated.
    pub family_name: String,
    /// Generational suffix (`JR`, `SR`, `III`).
    pub name_suffix: String,
    /// Earlier family names (maiden names).
    pub previous_family_names: Vec<String>,
    /// Birth date in ISO 8601: `YYYY-MM-DD`, `YYYY-MM` or `YYYY`.
    pub birth_date: String,
    /// Administrative sex.
    pub sex: Sex,
    /// Postal addresses, most current first.
    pub addresses: Vec<Address>,
    /// Phone numbers in any common format.
    pub phones: Vec<String>,
    /// Email addresses.
    pub emails: Vec<String>,
    /// National identifier (a US SSN or similar), any punctuation.
    pub national_id: String,
}

/// How much one record may hold: matching compares every value of a record, so an
/// unbounded record is unbounded work (and memory in the index). A record over a limit
/// is refused, never cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RecordLimits {
    /// Given names (first and middle).
    pub given_names: usize,
    /// Earlier family names.
    pub previous_family_names: usize,
    /// Postal addresses.
    pub addresses: usize,
    /// Lines of one address.
    pub address_lines: usize,
    /// Phone numbers.
    pub phones: usize,
    /// Email addresses.
    pub emails: usize,
    /// Bytes of any one value (a name, a line, a phone, an email, an ID, a date).
    pub value_bytes: usize,
}

impl Default for RecordLimits {
    /// Generous for real people: a registry holds a handful of each, and no name,
    /// address line or email (254 bytes by RFC 5321) needs more than 256 bytes.
    fn default() -> Self {
        Self {
            given_names: 8,
            previous_family_names: 8,
            addresses: 10,
            address_lines: 4,
            phones: 10,
            emails: 10,
            value_bytes: 256,
        }
    }
}

impl RecordLimits {
    /// The limits' names and values, for checking a configuration.
    pub fn named(&self) -> [(&'static str, usize); 7] {
        [
            ("given_names", self.given_names),
            ("previous_family_names", self.previous_family_names),
            ("addresses", self.addresses),
            ("address_lines", self.address_lines),
            ("phones", self.phones),
            ("emails", self.emails),
            ("value_bytes", self.value_bytes),
        ]
    }
}

impl Demographics {
    /// Checks what can be checked without matching, within the default
    /// [`RecordLimits`]. See [`Demographics::validate_within`].
    pub fn validate(&self, prefix: &str) -> Vec<FieldViolation> {
        self.validate_within(&RecordLimits::default(), prefix)
    }

    /// Checks what can be checked without matching: every list and value within
    /// `limits` (one violation per field at most, naming the limit, never the value),
    /// and the birth date a full or partial ISO 8601 date. Field names are under
    /// `prefix`.
    pub fn validate_within(&self, limits: &RecordLimits, prefix: &str) -> Vec<FieldViolation> {
        let mut violations = self.limit_violations(limits, prefix);
        if !self.birth_date.is_empty() && !is_iso_date(&self.birth_date) {
            violations.push(FieldViolation::new(
                field(prefix, "birth_date"),
                "must be an ISO 8601 date: YYYY-MM-DD, YYYY-MM or YYYY",
            ));
        }
        violations
    }

    /// The lists and values over `limits` (one violation per field at most), as
    /// [`Demographics::validate_within`] checks them, without the other checks: for batch
    /// input, whose other oddities the matcher already tolerates.
    pub fn limit_violations(&self, limits: &RecordLimits, prefix: &str) -> Vec<FieldViolation> {
        let mut violations = Vec::new();
        let mut list = |name: &str, values: &[String], max: usize| {
            check_list(&mut violations, &field(prefix, name), values, max, limits);
        };
        list("given_names", &self.given_names, limits.given_names);
        list(
            "previous_family_names",
            &self.previous_family_names,
            limits.previous_family_names,
        );
        list("phones", &self.phones, limits.phones);
        list("emails", &self.emails, limits.emails);
        for (name, value) in [
            ("family_name", &self.family_name),
            ("name_suffix", &self.name_suffix),
            ("national_id", &self.national_id),
        ] {
            check_value(&mut violations, &field(prefix, name), value, limits);
        }
        if self.addresses.len() > limits.addresses {
            violations.push(too_many(field(prefix, "addresses"), limits.addresses));
        } else {
            for (i, address) in self.addresses.iter().enumerate() {
                let at = field(prefix, &format!("addresses[{i}]"));
                let lines = field(&at, "lines");
                check_list(
                    &mut violations,
                    &lines,
                    &address.lines,
                    limits.address_lines,
                    limits,
                );
                for (name, value) in [
                    ("city", &address.city),
                    ("state", &address.state),
                    ("postal_code", &address.postal_code),
                    ("country", &address.country),
                ] {
                    check_value(&mut violations, &field(&at, name), value, limits);
                }
            }
        }
        violations
    }
}

fn too_many(field: String, max: usize) -> FieldViolation {
    FieldViolation::new(field, format!("holds at most {max} values"))
}

/// At most `max` values, each within `limits.value_bytes`; one violation at most.
fn check_list(
    violations: &mut Vec<FieldViolation>,
    name: &str,
    values: &[String],
    max: usize,
    limits: &RecordLimits,
) {
    if values.len() > max {
        violations.push(too_many(name.to_owned(), max));
    } else if let Some(i) = values.iter().position(|v| v.len() > limits.value_bytes) {
        violations.push(FieldViolation::new(
            format!("{name}[{i}]"),
            format!("is longer than {} bytes", limits.value_bytes),
        ));
    }
}

fn check_value(
    violations: &mut Vec<FieldViolation>,
    name: &str,
    value: &str,
    limits: &RecordLimits,
) {
    if value.len() > limits.value_bytes {
        violations.push(FieldViolation::new(
            name,
            format!("is longer than {} bytes", limits.value_bytes),
        ));
    }
}

/// Whether `s` is a full or partial ISO 8601 date as [`Demographics::birth_date`]
/// holds it: `YYYY`, `YYYY-MM` or `YYYY-MM-DD` with a real calendar day.
pub fn is_iso_date(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let num = |p: &str, len: usize| -> Option<u32> {
        (p.len() == len && p.bytes().all(|b| b.is_ascii_digit()))
            .then(|| p.parse().ok())
            .flatten()
    };
    match parts.as_slice() {
        [y] => num(y, 4).is_some(),
        [y, m] => num(y, 4).is_some() && num(m, 2).is_some_and(|m| (1..=12).contains(&m)),
        [y, m, d] => match (num(y, 4), num(m, 2), num(d, 2)) {
            (Some(y), Some(m), Some(d)) if (1..=12).contains(&m) => {
                let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
                let days = [
                    31,
                    if leap { 29 } else { 28 },
                    31,
                    30,
                    31,
                    30,
                    31,
                    31,
                    30,
                    31,
                    30,
                    31,
                ];
                (1..=days[(m - 1) as usize]).contains(&d)
            }
            _ => false,
        },
        _ => false,
    }
}

fn field(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

/// One invalid input field: its path and what is wrong, without its value (the
/// value may be patient data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Dotted path of the field (`source_record.demographics.birth_date`).
    pub field: String,
    /// What is wrong with it.
    pub description: String,
}

impl FieldViolation {
    /// Creates a violation.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_over_a_limit_name_the_field_and_the_limit_never_the_value() {
        let limits = RecordLimits::default();
        let ok = Demographics {
            given_names: vec!["Ann".into(); 8],
            emails: vec!["a@example.org".into(); 10],
            addresses: vec![
                Address {
                    lines: vec!["1 Main St".into(); 4],
                    ..Address::default()
                };
                10
            ],
            ..Demographics::default()
        };
        assert!(ok.validate_within(&limits, "d").is_empty());

        let flood = Demographics {
            emails: (0..8000).map(|i| format!("x{i}@example.org")).collect(),
            ..Demographics::default()
        };
        let violations = flood.validate_within(&limits, "d");
        assert_eq!(
            violations,
            [FieldViolation::new("d.emails", "holds at most 10 values")]
        );

        let long = "q".repeat(257);
        let mut one_long = ok.clone();
        one_long.addresses[3].lines[1] = long.clone();
        one_long.family_name = long.clone();
        one_long.phones = vec!["1".into(), long.clone(), long.clone()];
        let fields: Vec<String> = one_long
            .validate_within(&limits, "d")
            .into_iter()
            .map(|v| {
                assert!(!v.description.contains('q'), "no value in {v:?}");
                v.field
            })
            .collect();
        assert_eq!(
            fields,
            ["d.phones[1]", "d.family_name", "d.addresses[3].lines[1]"]
        );
        let tight = RecordLimits {
            addresses: 2,
            ..limits
        };
        assert_eq!(
            ok.validate_within(&tight, "")[0],
            FieldViolation::new("addresses", "holds at most 2 values")
        );
    }

    #[test]
    fn iso_dates_full_and_partial() {
        for ok in ["1980-02-29", "1981-12-31", "1980-07", "1980"] {
            assert!(is_iso_date(ok), "{ok}");
        }
        for bad in [
            "1981-02-29",
            "1980-13-01",
            "80-01-01",
            "1980/01/01",
            "19800101",
            "",
            "1980-1-1",
        ] {
            assert!(!is_iso_date(bad), "{bad}");
        }
    }

    #[test]
    fn validation_names_fields_not_values() {
        let demo = Demographics {
            birth_date: "31/02/1980".to_owned(),
            ..Demographics::default()
        };
        let violations = demo.validate("source_record.demographics");
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].field, "source_record.demographics.birth_date");
        assert!(!violations[0].description.contains("31/02/1980"));

        let key = SourceKey::new("", "");
        let fields: Vec<_> = key
            .validate("source_record.key")
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(
            fields,
            ["source_record.key.system", "source_record.key.local_id"]
        );
        assert!(
            SourceKey::new("EHR", "1").validate("k")[0]
                .description
                .contains("lowercase")
        );
        assert!(SourceKey::new("ehr", "MRN-1").validate("k").is_empty());
    }

    #[test]
    fn sex_spellings_are_pinned() {
        let table: &[(&str, Option<Sex>)] = &[
            ("", Some(Sex::Unspecified)),
            ("  ", Some(Sex::Unspecified)),
            ("male", Some(Sex::Male)),
            ("Male", Some(Sex::Male)),
            ("M", Some(Sex::Male)),
            ("man", Some(Sex::Male)),
            ("boy", Some(Sex::Male)),
            ("1", Some(Sex::Male)),
            ("female", Some(Sex::Female)),
            (" F ", Some(Sex::Female)),
            ("woman", Some(Sex::Female)),
            ("w", Some(Sex::Female)),
            ("girl", Some(Sex::Female)),
            ("2", Some(Sex::Female)),
            ("other", Some(Sex::Other)),
            ("O", Some(Sex::Other)),
            ("x", Some(Sex::Other)),
            ("nb", Some(Sex::Other)),
            ("non-binary", Some(Sex::Other)),
            ("nonbinary", Some(Sex::Other)),
            ("intersex", Some(Sex::Other)),
            ("unknown", Some(Sex::Unknown)),
            ("U", Some(Sex::Unknown)),
            ("unk", Some(Sex::Unknown)),
            ("n", Some(Sex::Unknown)),
            ("na", Some(Sex::Unknown)),
            ("N/A", Some(Sex::Unknown)),
            ("not known", Some(Sex::Unknown)),
            ("unspecified", Some(Sex::Unknown)),
            ("not specified", Some(Sex::Unknown)),
            ("?", Some(Sex::Unknown)),
            ("0", Some(Sex::Unknown)),
            ("9", Some(Sex::Unknown)),
            ("mail", None),
            ("3", None),
            ("fem", None),
        ];
        for (code, want) in table {
            assert_eq!(Sex::from_code(code), *want, "{code:?}");
        }
        for sex in [
            Sex::Male,
            Sex::Female,
            Sex::Other,
            Sex::Unknown,
            Sex::Unspecified,
        ] {
            assert_eq!(Sex::from_code(sex.as_code()), Some(sex));
        }
    }
}
