//! Rendering a [`Person`] into one silo's demographic record, with that silo's
//! field presence and the configured noise.

use std::collections::HashSet;

use rand::RngExt;
use rand::rngs::ChaCha8Rng;

use crate::config::{IdStyle, NoiseRates, SiloSpec, TrapRates};
use crate::noise::{self, Case};
use crate::person::{Address, Generation, Person, Sex};
use crate::tables;

/// One silo's record of a person: the resolver's canonical input row plus the
/// true person id (written only to the truth output).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SynthRecord {
    /// The silo (`ehr`, `billing`, ...).
    pub source: String,
    /// The silo's own ID for the record, unique within the silo.
    pub local_id: String,
    /// The true identity; never part of the records output.
    pub person_id: u64,
    /// Given name, possibly followed by a middle name or initial.
    pub given_name: String,
    /// Family name, possibly with a JR/SR suffix.
    pub family_name: String,
    /// `YYYY-MM-DD`, sometimes `YYYY-MM` or `YYYY`; may be empty.
    pub birth_date: String,
    /// `male`, `female`, `other`, `unknown` or empty.
    pub sex: String,
    /// House number, street, suffix and unit.
    pub address_line: String,
    /// City.
    pub city: String,
    /// Two-letter state code.
    pub state: String,
    /// ZIP or ZIP+4.
    pub postal_code: String,
    /// Phone, in one of several US formats.
    pub phone: String,
    /// Email address.
    pub email: String,
    /// SSN, usually `123-45-6789`, sometimes without dashes or masked.
    pub ssn: String,
}

/// Renders records for the silos of a config, assigning unique local IDs.
#[derive(Debug)]
pub(crate) struct Renderer {
    noise: NoiseRates,
    traps: TrapRates,
    issued: Vec<HashSet<u128>>,
}

impl Renderer {
    pub(crate) fn new(silos: usize, noise: NoiseRates, traps: TrapRates) -> Self {
        Self {
            noise,
            traps,
            issued: vec![HashSet::new(); silos],
        }
    }

    /// A fresh local ID for silo `index`, never issued before in that silo.
    pub(crate) fn local_id(
        &mut self,
        rng: &mut ChaCha8Rng,
        index: usize,
        style: &IdStyle,
    ) -> String {
        loop {
            let (raw, text) = match style {
                IdStyle::Mrn => {
                    let n = rng.random_range(10_000_000..100_000_000u64);
                    (u128::from(n), format!("MRN{n}"))
                }
                IdStyle::Account => {
                    let n = rng.random_range(100_000_000..1_000_000_000u64);
                    (u128::from(n), format!("ACC-{n}"))
                }
                IdStyle::Uuid => {
                    let v: u128 = rng.random();
                    let v = (v & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
                    let h = format!("{v:032x}");
                    let text = format!(
                        "{}-{}-{}-{}-{}",
                        &h[0..8],
                        &h[8..12],
                        &h[12..16],
                        &h[16..20],
                        &h[20..32]
                    );
                    (v, text)
                }
                IdStyle::HexToken => {
                    let n = rng.random_range(0..1u64 << 48);
                    (u128::from(n), format!("mk_{n:012x}"))
                }
                IdStyle::Prefixed { prefix, digits } => {
                    let digits = (*digits).clamp(1, 18);
                    let n = rng.random_range(0..10u64.pow(digits));
                    let width = digits as usize;
                    (u128::from(n), format!("{prefix}{n:0width$}"))
                }
            };
            if self.issued[index].insert(raw) {
                return text;
            }
        }
    }

    fn chance(rng: &mut ChaCha8Rng, p: f64) -> bool {
        rng.random::<f64>() < p
    }

    /// One record of `person` in `silo`.
    pub(crate) fn render(
        &mut self,
        rng: &mut ChaCha8Rng,
        index: usize,
        silo: &SiloSpec,
        person: &Person,
    ) -> SynthRecord {
        let n = self.noise;
        let case = match rng.random::<f64>() {
            x if x < n.case_variation * 0.75 => Case::Upper,
            x if x < n.case_variation => Case::Lower,
            _ => Case::Title,
        };
        let fold = Self::chance(rng, n.ascii_fold);
        let (mut given, mut family) = self.names(rng, person, case, fold);
        if Self::chance(rng, n.name_swap) {
            std::mem::swap(&mut given, &mut family);
        }
        let present = |rng: &mut ChaCha8Rng, p: f64| Self::chance(rng, p * (1.0 - n.missing));

        let birth_date = if present(rng, silo.fields.birth_date) {
            self.birth_date(rng, person)
        } else {
            String::new()
        };
        let sex = if present(rng, silo.fields.sex) {
            self.sex(rng, person)
        } else {
            String::new()
        };
        let (address_line, city, state, postal_code) = if Self::chance(rng, silo.fields.address) {
            self.address(rng, person, case, fold)
        } else {
            Default::default()
        };
        let phone = if present(rng, silo.fields.phone) {
            let phone = match person.secondary_phone {
                Some(other) if Self::chance(rng, n.secondary_phone) => other,
                _ => person.phone,
            };
            let vary = Self::chance(rng, n.phone_format);
            noise::phone(rng, phone, vary)
        } else {
            String::new()
        };
        let email = if present(rng, silo.fields.email) && !person.email.is_empty() {
            self.email(rng, &person.email)
        } else {
            String::new()
        };
        let ssn = if present(rng, silo.fields.ssn) {
            self.ssn(rng, person)
        } else {
            String::new()
        };
        SynthRecord {
            source: silo.name.clone(),
            local_id: self.local_id(rng, index, &silo.id_style),
            person_id: person.id,
            given_name: given,
            family_name: family,
            birth_date,
            sex,
            address_line,
            city,
            state,
            postal_code,
            phone,
            email,
            ssn,
        }
    }

    fn names(
        &self,
        rng: &mut ChaCha8Rng,
        person: &Person,
        case: Case,
        fold: bool,
    ) -> (String, String) {
        let n = self.noise;
        if Self::chance(rng, n.placeholder) {
            let (g, f) = match (person.age(), person.sex, rng.random_range(0..3)) {
                (0..2, Sex::Female, _) => ("BABY GIRL", person.family_name.as_str()),
                (0..2, _, _) => ("BABY BOY", person.family_name.as_str()),
                (_, _, 0) => ("UNKNOWN", "UNKNOWN"),
                (_, Sex::Female, _) => ("JANE", "DOE"),
                _ => ("JOHN", "DOE"),
            };
            return (g.to_owned(), f.to_uppercase());
        }
        let nick = tables::nicknames(person.given_name);
        let mut given = if !nick.is_empty() && Self::chance(rng, n.nickname) {
            nick[rng.random_range(0..nick.len())].to_owned()
        } else {
            person.given_name.to_owned()
        };
        if Self::chance(rng, n.name_typo) {
            given = noise::typo(rng, &given);
        }
        if let Some(middle) = person.middle_name {
            let x = rng.random::<f64>();
            if x < n.middle_full {
                given = format!("{given} {middle}");
            } else if x < n.middle_full + n.middle_initial {
                let initial = middle.chars().next().unwrap_or('X');
                let dot = if rng.random_bool(0.5) { "." } else { "" };
                given = format!("{given} {initial}{dot}");
            }
        }
        let mut family = match &person.maiden_name {
            Some(maiden) if Self::chance(rng, n.maiden_name) => maiden.clone(),
            _ => person.family_name.clone(),
        };
        if Self::chance(rng, n.name_typo) {
            family = noise::typo(rng, &family);
        }
        if let Some(generation) = person.generation
            && Self::chance(rng, self.traps.suffix_shown)
        {
            let suffix = match (generation, rng.random_range(0..3)) {
                (Generation::Junior, 0) => "Jr.",
                (Generation::Junior, 1) => "JR",
                (Generation::Junior, _) => "Jr",
                (Generation::Senior, 0) => "Sr.",
                (Generation::Senior, 1) => "SR",
                (Generation::Senior, _) => "Sr",
            };
            family = format!("{family} {suffix}");
        }
        if fold {
            given = tables::fold_ascii(&given);
            family = tables::fold_ascii(&family);
        }
        given = case.apply(&given);
        family = case.apply(&family);
        if Self::chance(rng, n.whitespace) {
            family = noise::whitespace(rng, &family, true);
        }
        (given, family)
    }

    fn sex(&self, rng: &mut ChaCha8Rng, person: &Person) -> String {
        if Self::chance(rng, self.noise.sex_unknown) {
            if rng.random_bool(0.5) { "unknown" } else { "" }.to_owned()
        } else {
            person.sex.code().to_owned()
        }
    }

    fn ssn(&self, rng: &mut ChaCha8Rng, person: &Person) -> String {
        if Self::chance(rng, self.noise.placeholder) {
            return ["999-99-9999", "000-00-0000", "123-45-6789"][rng.random_range(0..3)]
                .to_owned();
        }
        let ssn = if Self::chance(rng, self.noise.ssn_typo) {
            noise::ssn_typo(rng, person.ssn)
        } else {
            person.ssn
        };
        if Self::chance(rng, self.noise.ssn_format) {
            noise::ssn_variant(rng, ssn)
        } else {
            ssn.to_string()
        }
    }

    fn birth_date(&self, rng: &mut ChaCha8Rng, person: &Person) -> String {
        let n = self.noise;
        if Self::chance(rng, n.placeholder) {
            return "1900-01-01".to_owned();
        }
        let mut d = person.birth_date;
        if Self::chance(rng, n.date_typo) {
            d = noise::date_typo(rng, d);
        }
        if d.day <= 12 && d.day != d.month && Self::chance(rng, n.date_swap) {
            std::mem::swap(&mut d.day, &mut d.month);
        }
        if Self::chance(rng, n.partial_date) {
            if rng.random_bool(0.5) {
                format!("{:04}-{:02}", d.year, d.month)
            } else {
                format!("{:04}", d.year)
            }
        } else {
            d.to_string()
        }
    }

    fn address(
        &self,
        rng: &mut ChaCha8Rng,
        person: &Person,
        case: Case,
        fold: bool,
    ) -> (String, String, String, String) {
        let n = self.noise;
        let address: &Address = match &person.previous_address {
            Some(old) if Self::chance(rng, n.stale_address) => old,
            _ => &person.address,
        };
        let suffix = if rng.random_bool(0.75) {
            address.suffix.0
        } else {
            address.suffix.1
        };
        let mut line = format!("{} {} {}", address.number, address.street, suffix);
        if let Some(unit) = &address.unit {
            match rng.random_range(0..3) {
                0 => line = format!("{line}, {unit}"),
                1 => line = format!("{line} {unit}"),
                _ => {
                    let number = unit.rsplit(' ').next().unwrap_or(unit);
                    line = format!("{line} #{number}");
                }
            }
        }
        if Self::chance(rng, n.street_typo) {
            line = noise::typo(rng, &line);
        }
        if fold {
            line = tables::fold_ascii(&line);
        }
        line = case.apply(&line);
        if Self::chance(rng, n.whitespace) {
            line = noise::whitespace(rng, &line, false);
        }
        let keep = |rng: &mut ChaCha8Rng| !Self::chance(rng, n.missing);
        let city = if keep(rng) {
            case.apply(address.city)
        } else {
            String::new()
        };
        let state = if keep(rng) {
            address.state.to_owned()
        } else {
            String::new()
        };
        let postal_code = if !keep(rng) {
            String::new()
        } else if rng.random_bool(0.05) {
            format!(
                "{:05}-{:04}",
                address.postal_code,
                rng.random_range(1..10000)
            )
        } else {
            format!("{:05}", address.postal_code)
        };
        let line = if keep(rng) { line } else { String::new() };
        (line, city, state, postal_code)
    }

    fn email(&self, rng: &mut ChaCha8Rng, email: &str) -> String {
        let n = self.noise;
        let Some((local, domain)) = email.split_once('@') else {
            return email.to_owned();
        };
        let local = if Self::chance(rng, n.email_typo) {
            noise::typo(rng, local)
        } else {
            local.to_owned()
        };
        if Self::chance(rng, n.case_variation * 0.25) {
            format!("{}@{domain}", local.to_uppercase())
        } else {
            format!("{local}@{domain}")
        }
    }
}
