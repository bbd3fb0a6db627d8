//! What to generate: how many people, which silos hold them, and how noisy and
//! tricky their records are. Every rate is a probability in `[0, 1]`.

use crate::SynthError;

/// The whole generator configuration. The same config and seed always produce
/// byte-identical output.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    /// Number of distinct people (true identities) to generate.
    pub people: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// The silos people are registered in, in output order of preference.
    pub silos: Vec<SiloSpec>,
    /// Per-record noise rates.
    pub noise: NoiseRates,
    /// Rates of the hard cases: twins, juniors/seniors, households, common names.
    pub traps: TrapRates,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            people: 10_000,
            seed: 0x7e55e7a,
            silos: SiloSpec::defaults(),
            noise: NoiseRates::default(),
            traps: TrapRates::default(),
        }
    }
}

impl SynthConfig {
    /// Checks that rates are probabilities and silo names are usable and unique.
    pub fn validate(&self) -> Result<(), SynthError> {
        if self.silos.is_empty() {
            return Err(SynthError::InvalidConfig(
                "at least one silo is required".into(),
            ));
        }
        for (i, silo) in self.silos.iter().enumerate() {
            let name_ok = !silo.name.is_empty()
                && silo.name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                });
            if !name_ok {
                return Err(SynthError::InvalidConfig(format!(
                    "silos[{i}].name must be lowercase letters, digits, '-' or '_'"
                )));
            }
            if self.silos[..i].iter().any(|s| s.name == silo.name) {
                return Err(SynthError::InvalidConfig(format!(
                    "silos[{i}].name is used twice"
                )));
            }
            // Local IDs are drawn at random until unused: keep the space at least
            // eight times larger than the records a silo can get.
            let needed = 8.0 * self.people as f64 * (1.0 + silo.duplicate_rate.max(0.0));
            if silo.id_style.capacity() < needed {
                return Err(SynthError::InvalidConfig(format!(
                    "silos[{i}].id_style has too few distinct ids for {} people",
                    self.people
                )));
            }
            check_rate(&format!("silos[{i}].coverage"), silo.coverage)?;
            check_rate(&format!("silos[{i}].duplicate_rate"), silo.duplicate_rate)?;
            for (field, rate) in silo.fields.named() {
                check_rate(&format!("silos[{i}].fields.{field}"), rate)?;
            }
        }
        if self.silos.iter().all(|s| s.coverage <= 0.0) {
            return Err(SynthError::InvalidConfig(
                "at least one silo needs a coverage above 0".into(),
            ));
        }
        for (field, rate) in self.noise.named() {
            check_rate(&format!("noise.{field}"), rate)?;
        }
        for (field, rate) in self.traps.named() {
            check_rate(&format!("traps.{field}"), rate)?;
        }
        let trap_share = 2.0 * (self.traps.twins + self.traps.junior_senior)
            + 2.5 * self.traps.common_names
            + 3.0 * self.traps.households;
        if trap_share > 1.0 {
            return Err(SynthError::InvalidConfig(
                "trap rates leave no room for single people (2*(twins+junior_senior) + 2.5*common_names + 3*households must be at most 1)".into(),
            ));
        }
        Ok(())
    }
}

fn check_rate(field: &str, rate: f64) -> Result<(), SynthError> {
    if (0.0..=1.0).contains(&rate) {
        Ok(())
    } else {
        Err(SynthError::InvalidConfig(format!(
            "{field} must be between 0 and 1"
        )))
    }
}

/// One silo: how many people it holds and what its records look like.
#[derive(Debug, Clone, PartialEq)]
pub struct SiloSpec {
    /// The `source` column value (`ehr`, `billing`, ...).
    pub name: String,
    /// Share of people registered in this silo. Every person is in at least one
    /// silo: one with no silo drawn is placed in one, chosen by coverage.
    pub coverage: f64,
    /// Share of this silo's people registered twice (a duplicate registration).
    pub duplicate_rate: f64,
    /// The shape of this silo's local IDs.
    pub id_style: IdStyle,
    /// How often this silo records each optional field.
    pub fields: FieldPresence,
}

impl SiloSpec {
    /// The four default silos: ehr 0.9, billing 0.7, crm 0.6, marketing 0.5.
    pub fn defaults() -> Vec<Self> {
        vec![
            Self {
                name: "ehr".into(),
                coverage: 0.9,
                duplicate_rate: 0.03,
                id_style: IdStyle::Mrn,
                fields: FieldPresence {
                    birth_date: 0.99,
                    sex: 0.98,
                    address: 0.95,
                    phone: 0.9,
                    email: 0.6,
                    ssn: 0.8,
                },
            },
            Self {
                name: "billing".into(),
                coverage: 0.7,
                duplicate_rate: 0.02,
                id_style: IdStyle::Account,
                fields: FieldPresence {
                    birth_date: 0.95,
                    sex: 0.7,
                    address: 0.98,
                    phone: 0.85,
                    email: 0.1,
                    ssn: 0.7,
                },
            },
            Self {
                name: "crm".into(),
                coverage: 0.6,
                duplicate_rate: 0.04,
                id_style: IdStyle::Uuid,
                fields: FieldPresence {
                    birth_date: 0.7,
                    sex: 0.6,
                    address: 0.8,
                    phone: 0.9,
                    email: 0.9,
                    ssn: 0.15,
                },
            },
            Self {
                name: "marketing".into(),
                coverage: 0.5,
                duplicate_rate: 0.06,
                id_style: IdStyle::HexToken,
                fields: FieldPresence {
                    birth_date: 0.08,
                    sex: 0.3,
                    address: 0.6,
                    phone: 0.5,
                    email: 0.97,
                    ssn: 0.01,
                },
            },
        ]
    }
}

/// The shape of a silo's local IDs. IDs are random (never derived from the person)
/// and unique within the silo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdStyle {
    /// `MRN` and 8 digits, as an EHR medical record number.
    Mrn,
    /// `ACC-` and 9 digits, as a billing account.
    Account,
    /// A lowercase version-4 UUID, as a CRM contact id.
    Uuid,
    /// `mk_` and 12 lowercase hex digits, as a marketing subscriber token.
    HexToken,
    /// A fixed prefix and this many decimal digits (1 to 18), zero-padded.
    Prefixed {
        /// Text before the digits.
        prefix: String,
        /// Number of digits.
        digits: u32,
    },
}

impl IdStyle {
    /// How many distinct IDs the style can produce.
    pub fn capacity(&self) -> f64 {
        match self {
            Self::Mrn => 9e7,
            Self::Account => 9e8,
            Self::Uuid => 2f64.powi(122),
            Self::HexToken => 2f64.powi(48),
            Self::Prefixed { digits, .. } if (1..=18).contains(digits) => {
                10f64.powi(*digits as i32)
            }
            Self::Prefixed { .. } => 0.0,
        }
    }
}

/// Probability that a silo records each optional field at all (before the
/// generic [`NoiseRates::missing`] drop).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FieldPresence {
    /// Birth date.
    pub birth_date: f64,
    /// Administrative sex.
    pub sex: f64,
    /// Street address, city, state and ZIP (all or nothing).
    pub address: f64,
    /// Phone number.
    pub phone: f64,
    /// Email address.
    pub email: f64,
    /// Social security number.
    pub ssn: f64,
}

impl FieldPresence {
    fn named(&self) -> [(&'static str, f64); 6] {
        [
            ("birth_date", self.birth_date),
            ("sex", self.sex),
            ("address", self.address),
            ("phone", self.phone),
            ("email", self.email),
            ("ssn", self.ssn),
        ]
    }
}

/// Per-record noise, each a probability.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NoiseRates {
    /// A typo (adjacent-key substitution, transposition, deletion or insertion) in
    /// a given or family name, per name field.
    pub name_typo: f64,
    /// A typo in the street line.
    pub street_typo: f64,
    /// A typo in the email's local part.
    pub email_typo: f64,
    /// A nickname instead of the formal given name (when the name has one).
    pub nickname: f64,
    /// A record of a married woman who changed her name still carries her maiden
    /// name (otherwise the married one, sometimes hyphenated).
    pub maiden_name: f64,
    /// Share of people who moved (have a previous address).
    pub moved: f64,
    /// A record of a person who moved still carries the previous address. (The
    /// phone, a mobile kept across the move, has the old city's area code.)
    pub stale_address: f64,
    /// Day and month of the birth date swapped (when the day is 12 or less).
    pub date_swap: f64,
    /// Birth date only partially known: `YYYY-MM` or `YYYY`.
    pub partial_date: f64,
    /// Any present field dropped (left empty), per field.
    pub missing: f64,
    /// A placeholder value, per field: JOHN DOE / BABY BOY / UNKNOWN names,
    /// 1900-01-01 birth dates, 999-99-9999 / 000-00-0000 / 123-45-6789 SSNs.
    pub placeholder: f64,
    /// Phone written in another format than `555-123-4567`:
    /// `(555) 123-4567`, `555.123.4567`, `+1 555 123 4567`, `5551234567`.
    pub phone_format: f64,
    /// Names and address in UPPER or lower case instead of title case.
    pub case_variation: f64,
    /// Stray whitespace: doubled, leading or trailing spaces, or the spaces of a
    /// multi-part surname removed.
    pub whitespace: f64,
    /// Diacritics folded to ASCII (`Muñoz` as `Munoz`), for names that have them.
    pub ascii_fold: f64,
    /// Given and family names swapped.
    pub name_swap: f64,
    /// Middle name written in full after the given name (for people who have one).
    pub middle_full: f64,
    /// Middle name written as an initial after the given name.
    pub middle_initial: f64,
    /// SSN written without dashes, or only its last four digits.
    pub ssn_format: f64,
    /// Sex recorded as `unknown` or left empty although known.
    pub sex_unknown: f64,
    /// The person's secondary (home or work) phone instead of the main one, for
    /// the 40% of adults who have one.
    pub secondary_phone: f64,
    /// One SSN digit mistyped: substituted, or two neighbouring digits swapped.
    pub ssn_typo: f64,
    /// One birth-date digit mistyped: the year's last two digits swapped or off
    /// by one, or the day off by one (always still a valid date).
    pub date_typo: f64,
}

impl Default for NoiseRates {
    fn default() -> Self {
        Self {
            name_typo: 0.03,
            street_typo: 0.03,
            email_typo: 0.02,
            nickname: 0.12,
            maiden_name: 0.35,
            moved: 0.15,
            stale_address: 0.4,
            date_swap: 0.015,
            partial_date: 0.005,
            missing: 0.03,
            placeholder: 0.004,
            phone_format: 0.5,
            case_variation: 0.2,
            whitespace: 0.03,
            ascii_fold: 0.4,
            name_swap: 0.008,
            middle_full: 0.3,
            middle_initial: 0.25,
            ssn_format: 0.1,
            sex_unknown: 0.02,
            secondary_phone: 0.2,
            ssn_typo: 0.01,
            date_typo: 0.01,
        }
    }
}

impl NoiseRates {
    /// Every rate set to zero: records are faithful renderings of the people
    /// (silo field presence and name changes by marriage still apply).
    pub fn none() -> Self {
        Self {
            name_typo: 0.0,
            street_typo: 0.0,
            email_typo: 0.0,
            nickname: 0.0,
            maiden_name: 0.0,
            moved: 0.0,
            stale_address: 0.0,
            date_swap: 0.0,
            partial_date: 0.0,
            missing: 0.0,
            placeholder: 0.0,
            phone_format: 0.0,
            case_variation: 0.0,
            whitespace: 0.0,
            ascii_fold: 0.0,
            name_swap: 0.0,
            middle_full: 0.0,
            middle_initial: 0.0,
            ssn_format: 0.0,
            sex_unknown: 0.0,
            secondary_phone: 0.0,
            ssn_typo: 0.0,
            date_typo: 0.0,
        }
    }

    fn named(&self) -> [(&'static str, f64); 23] {
        [
            ("name_typo", self.name_typo),
            ("street_typo", self.street_typo),
            ("email_typo", self.email_typo),
            ("nickname", self.nickname),
            ("maiden_name", self.maiden_name),
            ("moved", self.moved),
            ("stale_address", self.stale_address),
            ("date_swap", self.date_swap),
            ("partial_date", self.partial_date),
            ("missing", self.missing),
            ("placeholder", self.placeholder),
            ("phone_format", self.phone_format),
            ("case_variation", self.case_variation),
            ("whitespace", self.whitespace),
            ("ascii_fold", self.ascii_fold),
            ("name_swap", self.name_swap),
            ("middle_full", self.middle_full),
            ("middle_initial", self.middle_initial),
            ("ssn_format", self.ssn_format),
            ("sex_unknown", self.sex_unknown),
            ("secondary_phone", self.secondary_phone),
            ("ssn_typo", self.ssn_typo),
            ("date_typo", self.date_typo),
        ]
    }
}

/// The hard cases. Each rate is a number of instances per person generated: with
/// `twins = 0.01`, 10,000 people contain 100 twin pairs (200 people).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrapRates {
    /// Twin pairs per person: same family name, birth date, address and phone,
    /// different (sometimes near-identical) given names.
    pub twins: f64,
    /// Father/son pairs per person with the same given, middle and family names,
    /// address and phone, born 20 to 45 years apart.
    pub junior_senior: f64,
    /// Multi-person households per person: a couple and zero to three children
    /// sharing address, phone (usually) and family name (usually).
    pub households: f64,
    /// Groups per person of two or three unrelated people with the same very
    /// common name, in different cities, often the same birth year or date.
    pub common_names: f64,
    /// A junior's or senior's record shows the JR/SR suffix.
    pub suffix_shown: f64,
    /// A household shares one email address between the couple.
    pub shared_email: f64,
}

impl Default for TrapRates {
    fn default() -> Self {
        Self {
            twins: 0.01,
            junior_senior: 0.008,
            households: 0.02,
            common_names: 0.01,
            suffix_shown: 0.35,
            shared_email: 0.25,
        }
    }
}

impl TrapRates {
    /// No traps: every person lives alone and names repeat only by chance.
    pub fn none() -> Self {
        Self {
            twins: 0.0,
            junior_senior: 0.0,
            households: 0.0,
            common_names: 0.0,
            suffix_shown: 0.0,
            shared_email: 0.0,
        }
    }

    fn named(&self) -> [(&'static str, f64); 6] {
        [
            ("twins", self.twins),
            ("junior_senior", self.junior_senior),
            ("households", self.households),
            ("common_names", self.common_names),
            ("suffix_shown", self.suffix_shown),
            ("shared_email", self.shared_email),
        ]
    }
}
