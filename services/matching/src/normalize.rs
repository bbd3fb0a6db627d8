//! Normalization: turns a silo's [`Demographics`] into a compact [`Prepared`]
//! record whose fields compare directly — uppercase ASCII names without
//! punctuation, structured dates, E.164 phones, canonical emails, abbreviated
//! US-style addresses and digit-only national IDs — and flags placeholder values
//! (JOHN DOE, 1900-01-01, 999-99-9999, 555-555-5555) so they carry no weight.
//! Names and dates are normalized here; addresses, phones, emails and IDs in
//! `contact`.

use phonenumber::country::Id as Region;
use serde::{Deserialize, Serialize};

use crate::contact::{
    is_placeholder_street, normalize_email, normalize_national_id, normalize_phone,
    normalize_postal, normalize_state, normalize_street,
};
use crate::record::{Demographics, Sex};

/// How values are normalized.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NormalizeConfig {
    /// ISO 3166-1 alpha-2 region for phone numbers written without a country code.
    pub default_region: String,
    /// Treat `j.doe+x@gmail.com` as the mailbox `jdoe@gmail.com` (Gmail ignores dots
    /// and `+tags`): the tag is dropped, and spellings that differ only in dots
    /// block together and agree at the alike level (two people of one name often
    /// hold `first.last` and `firstlast`, so they are not an exact agreement).
    pub gmail_canonical: bool,
}

impl Default for NormalizeConfig {
    fn default() -> Self {
        Self {
            default_region: "US".to_owned(),
            gmail_canonical: true,
        }
    }
}

impl NormalizeConfig {
    fn region(&self) -> Option<Region> {
        self.default_region.to_ascii_uppercase().parse().ok()
    }
}

/// A partial or full date; 0 means the part is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Date {
    pub(crate) year: u16,
    pub(crate) month: u8,
    pub(crate) day: u8,
}

impl Date {
    /// Eight digits `YYYYMMDD`, unknown parts as zeros.
    pub(crate) fn digits(self) -> [u8; 8] {
        let (y, m, d) = (self.year % 10000, self.month % 100, self.day % 100);
        let digit = |v: u16| b'0' + (v % 10) as u8;
        [
            digit(y / 1000),
            digit(y / 100),
            digit(y / 10),
            digit(y),
            digit(u16::from(m / 10)),
            digit(u16::from(m)),
            digit(u16::from(d / 10)),
            digit(u16::from(d)),
        ]
    }
}

/// One normalized address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PreparedAddress {
    /// Street lines joined, abbreviated (`12 MAIN ST APT 4`).
    pub(crate) line: Box<str>,
    pub(crate) city: Box<str>,
    pub(crate) state: Box<str>,
    /// ZIP5 for US-style codes, otherwise uppercase alphanumerics.
    pub(crate) postal: Box<str>,
}

/// Placeholder flags, one bit per field.
pub(crate) mod ph {
    pub(crate) const GIVEN: u16 = 1;
    pub(crate) const FAMILY: u16 = 2;
    pub(crate) const DOB: u16 = 4;
    pub(crate) const PHONE: u16 = 8;
    pub(crate) const EMAIL: u16 = 16;
    pub(crate) const NATIONAL_ID: u16 = 32;
    pub(crate) const ADDRESS: u16 = 64;
}

/// A record ready for blocking and comparison.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Prepared {
    /// Given names, first then middle: uppercase ASCII, no punctuation, no titles.
    pub(crate) given: Vec<Box<str>>,
    /// Family name with spaces, hyphens and apostrophes removed.
    pub(crate) family: Box<str>,
    /// Parts of a multi-part or hyphenated family name (empty when one part).
    pub(crate) family_parts: Vec<Box<str>>,
    /// Earlier family names, normalized like `family`.
    pub(crate) previous: Vec<Box<str>>,
    /// Generational suffix: 0 none, 1 JR, 2 SR, 3 II, 4 III, 5 IV.
    pub(crate) suffix: u8,
    pub(crate) dob: Option<Date>,
    /// 0 unknown, 1 male, 2 female, 3 other.
    pub(crate) sex: u8,
    pub(crate) addresses: Vec<PreparedAddress>,
    /// E.164 numbers as integers (the digits after `+`).
    pub(crate) phones: Vec<u64>,
    pub(crate) emails: Vec<Box<str>>,
    /// Digits only.
    pub(crate) national_id: Box<str>,
    /// Fields holding placeholder values (see [`ph`]).
    pub(crate) placeholders: u16,
    /// Double Metaphone of the first given name and of the family name.
    pub(crate) given_code: Box<str>,
    pub(crate) family_code: Box<str>,
}

impl Prepared {
    pub(crate) fn is_placeholder(&self, flag: u16) -> bool {
        self.placeholders & flag != 0
    }

    pub(crate) fn first_given(&self) -> &str {
        self.given.first().map_or("", |g| g)
    }

    /// Approximate heap bytes held by this record.
    pub(crate) fn heap_bytes(&self) -> usize {
        let strs = |v: &[Box<str>]| v.iter().map(|s| s.len() + 16).sum::<usize>();
        strs(&self.given)
            + strs(&self.family_parts)
            + strs(&self.previous)
            + strs(&self.emails)
            + self.family.len()
            + self.national_id.len()
            + self.given_code.len()
            + self.family_code.len()
            + self.phones.len() * 8
            + self
                .addresses
                .iter()
                .map(|a| 64 + a.line.len() + a.city.len() + a.state.len() + a.postal.len())
                .sum::<usize>()
    }
}

/// Longest input value considered; longer values are cut (on a char boundary).
const MAX_VALUE_LEN: usize = 256;

pub(crate) fn clip(s: &str) -> &str {
    if s.len() <= MAX_VALUE_LEN {
        return s;
    }
    let mut end = MAX_VALUE_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Uppercase ASCII words: diacritics transliterated, apostrophes dropped, other
/// punctuation (hyphens included) splitting words.
pub(crate) fn words(s: &str) -> Vec<String> {
    let ascii = deunicode::deunicode(clip(s));
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in ascii.chars() {
        if c.is_ascii_alphanumeric() {
            cur.push(c.to_ascii_uppercase());
        } else if c == '\'' || c == '`' {
            continue;
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

const TITLES: &[&str] = &["MR", "MRS", "MS", "MISS", "DR", "PROF", "REV", "SIR", "MX"];

fn suffix_code(word: &str) -> Option<u8> {
    Some(match word {
        "JR" | "JNR" | "JUNIOR" => 1,
        "SR" | "SNR" | "SENIOR" => 2,
        "II" | "2ND" => 3,
        "III" | "3RD" => 4,
        "IV" | "4TH" => 5,
        _ => return None,
    })
}

const PLACEHOLDER_GIVEN: &[&str] = &[
    "BABY",
    "BABYBOY",
    "BABYGIRL",
    "INFANT",
    "NEWBORN",
    "UNKNOWN",
    "UNK",
    "NONE",
    "TEST",
    "PATIENT",
    "NN",
    "NOFIRSTNAME",
    "FNU",
];
const PLACEHOLDER_FAMILY: &[&str] = &[
    "UNKNOWN",
    "UNK",
    "NONE",
    "TEST",
    "PATIENT",
    "NOLASTNAME",
    "LNU",
    "XXX",
];

fn metaphone(s: &str) -> Box<str> {
    if s.is_empty() {
        return Box::from("");
    }
    let dm = rphonetic::DoubleMetaphone::new(Some(6));
    dm.double_metaphone(s).primary().into()
}

/// Normalizes one silo record.
pub(crate) fn prepare(d: &Demographics, config: &NormalizeConfig) -> Prepared {
    let mut p = Prepared::default();
    let mut suffix = 0u8;

    let mut given: Vec<String> = d.given_names.iter().flat_map(|g| words(g)).collect();
    given.retain(|w| !TITLES.contains(&w.as_str()));
    if let Some(code) = given
        .last()
        .and_then(|w| suffix_code(w))
        .filter(|_| given.len() > 1)
    {
        suffix = code;
        given.pop();
    }
    let mut family = words(&d.family_name);
    if let Some(code) = family
        .last()
        .and_then(|w| suffix_code(w))
        .filter(|_| family.len() > 1)
    {
        suffix = code;
        family.pop();
    }
    if let Some(code) = words(&d.name_suffix).first().and_then(|w| suffix_code(w)) {
        suffix = code;
    }
    p.suffix = suffix;

    let given_joined: String = given.concat();
    let family_joined: String = family.concat();
    let given_ph = given.is_empty()
        || PLACEHOLDER_GIVEN.contains(&given[0].as_str())
        || PLACEHOLDER_GIVEN.contains(&given_joined.as_str())
        || (matches!(given_joined.as_str(), "JOHN" | "JANE") && family_joined == "DOE");
    let family_ph = family.is_empty()
        || PLACEHOLDER_FAMILY.contains(&family_joined.as_str())
        || (family_joined == "DOE"
            && (given.is_empty() || matches!(given[0].as_str(), "JOHN" | "JANE" | "BABY")));
    if given_ph && !given.is_empty() {
        p.placeholders |= ph::GIVEN;
    }
    if family_ph && !family.is_empty() {
        p.placeholders |= ph::FAMILY;
    }
    p.given_code = metaphone(given.first().map_or("", |g| g));
    p.family_code = metaphone(&family_joined);
    p.given = given.into_iter().map(String::into_boxed_str).collect();
    if family.len() > 1 {
        p.family_parts = family.iter().map(|f| Box::from(f.as_str())).collect();
    }
    p.family = family_joined.into();
    p.previous = d
        .previous_family_names
        .iter()
        .map(|f| words(f).concat().into_boxed_str())
        .filter(|f| !f.is_empty())
        .collect();

    let (dob, dob_ph) = parse_date(&d.birth_date);
    p.dob = dob;
    if dob_ph {
        p.placeholders |= ph::DOB;
    }
    p.sex = match d.sex {
        Sex::Male => 1,
        Sex::Female => 2,
        Sex::Other => 3,
        Sex::Unspecified | Sex::Unknown => 0,
    };

    for a in &d.addresses {
        let line = normalize_street(&a.lines.join(" "));
        let pa = PreparedAddress {
            city: words(&a.city).join(" ").into(),
            state: normalize_state(&a.state).into(),
            postal: normalize_postal(&a.postal_code).into(),
            line: line.into(),
        };
        if pa.line.is_empty() && pa.city.is_empty() && pa.postal.is_empty() {
            continue;
        }
        if is_placeholder_street(&pa.line) {
            p.placeholders |= ph::ADDRESS;
        }
        p.addresses.push(pa);
    }

    let region = config.region();
    for raw in &d.phones {
        match normalize_phone(raw, region) {
            Some((n, false)) => p.phones.push(n),
            Some((_, true)) => p.placeholders |= ph::PHONE,
            None => {}
        }
    }
    for raw in &d.emails {
        match normalize_email(raw, config.gmail_canonical) {
            Some((e, false)) => p.emails.push(e.into()),
            Some((_, true)) => p.placeholders |= ph::EMAIL,
            None => {}
        }
    }
    let (nid, nid_ph) = normalize_national_id(&d.national_id);
    if nid_ph {
        p.placeholders |= ph::NATIONAL_ID;
    } else {
        p.national_id = nid.into();
    }
    p
}

/// Parses ISO full/partial dates and common other layouts; returns the date and
/// whether it is a placeholder. Unparseable input is missing.
pub(crate) fn parse_date(raw: &str) -> (Option<Date>, bool) {
    let s = clip(raw).trim();
    if s.is_empty() {
        return (None, false);
    }
    if let Some(date) = s
        .bytes()
        .any(|b| b.is_ascii_alphabetic())
        .then(|| parse_month_name_date(s))
        .flatten()
    {
        return (Some(date), false);
    }
    let expanded = expand_two_digit_year(s);
    let s = expanded.as_deref().unwrap_or(s);
    let nums: Vec<&str> = s
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .collect();
    let n = |p: &str| p.parse::<u32>().ok();
    let ymd = |y: u32, m: u32, d: u32| -> Option<Date> {
        ((1000..=2999).contains(&y) && m <= 12 && d <= 31 && (m > 0 || d == 0)).then(|| Date {
            year: u16::try_from(y).unwrap_or(0),
            month: u8::try_from(m).unwrap_or(0),
            day: u8::try_from(d).unwrap_or(0),
        })
    };
    let date = match nums.as_slice() {
        [one] if one.len() == 8 => {
            let (y, m, d) = (n(&one[..4]), n(&one[4..6]), n(&one[6..]));
            y.zip(m).zip(d).and_then(|((y, m), d)| ymd(y, m, d))
        }
        [y] if y.len() == 4 => n(y).and_then(|y| ymd(y, 0, 0)),
        [y, m] if y.len() == 4 => n(y).zip(n(m)).and_then(|(y, m)| ymd(y, m, 0)),
        [a, b, c] if a.len() == 4 => n(a)
            .zip(n(b))
            .zip(n(c))
            .and_then(|((y, m), d)| ymd(y, m, d)),
        [a, b, c] if c.len() == 4 => {
            // US order (MM/DD/YYYY) unless the first part cannot be a month or the
            // separator is a dot (DD.MM.YYYY).
            let (a, b, y) = (n(a), n(b), n(c));
            match (a, b, y) {
                (Some(a), Some(b), Some(y)) if s.contains('.') || a > 12 => ymd(y, b, a),
                (Some(a), Some(b), Some(y)) => ymd(y, a, b),
                _ => None,
            }
        }
        _ => None,
    };
    let Some(date) = date else {
        return (None, false);
    };
    let ph = date.year <= 1901 && date.month <= 1 && date.day <= 1
        || date.year >= 2900
        || (date.year == 1970 && date.month == 1 && date.day == 1);
    (Some(date), ph)
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];

/// `14 Mar 1980`, `Mar 14, 1980`, `14-MARCH-1980`.
fn parse_month_name_date(s: &str) -> Option<Date> {
    let ws = words(s);
    let month_at = ws
        .iter()
        .position(|w| w.chars().all(|c| c.is_ascii_alphabetic()))?;
    let word = &ws[month_at];
    let month = MONTHS
        .iter()
        .position(|m| word.len() >= 3 && word.starts_with(m))?;
    let nums: Vec<u32> = ws
        .iter()
        .filter(|w| w.chars().all(|c| c.is_ascii_digit()))
        .filter_map(|w| w.parse().ok())
        .collect();
    let [a, b] = nums.as_slice() else {
        return None;
    };
    let (year, day) = if *a > 31 { (*a, *b) } else { (*b, *a) };
    ((1000..=2999).contains(&year) && (1..=31).contains(&day)).then(|| Date {
        year: u16::try_from(year).unwrap_or(0),
        month: u8::try_from(month + 1).unwrap_or(0),
        day: u8::try_from(day).unwrap_or(0),
    })
}

/// `03/14/80` -> `03/14/1980` (years 00-25 read as 2000-2025).
fn expand_two_digit_year(s: &str) -> Option<String> {
    let parts: Vec<&str> = s.split(['/', '.', '-']).collect();
    let [a, b, y] = parts.as_slice() else {
        return None;
    };
    if y.len() != 2 || !y.bytes().all(|c| c.is_ascii_digit()) || a.len() > 2 || b.len() > 2 {
        return None;
    }
    let yy: u32 = y.parse().ok()?;
    let century = if yy <= 25 { 2000 } else { 1900 };
    let sep = if s.contains('.') { "." } else { "/" };
    Some(format!("{a}{sep}{b}{sep}{}", century + yy))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> Demographics {
        Demographics::default()
    }

    #[test]
    fn names_lose_case_diacritics_punctuation_titles_and_keep_suffix() {
        let d = Demographics {
            given_names: vec!["Dr. José-Luis".into(), "  ".into()],
            family_name: "O'Brien-Núñez Jr.".into(),
            ..demo()
        };
        let p = prepare(&d, &NormalizeConfig::default());
        assert_eq!(p.given, vec![Box::from("JOSE"), Box::from("LUIS")]);
        assert_eq!(&*p.family, "OBRIENNUNEZ");
        assert_eq!(
            p.family_parts,
            vec![Box::from("OBRIEN"), Box::from("NUNEZ")]
        );
        assert_eq!(p.suffix, 1);
        assert_eq!(p.placeholders, 0);
    }

    #[test]
    fn dates_iso_partial_compact_us_and_placeholders() {
        let d = |s: &str| parse_date(s);
        assert_eq!(
            d("1980-02-29").0,
            Some(Date {
                year: 1980,
                month: 2,
                day: 29
            })
        );
        assert_eq!(
            d("1980-07").0,
            Some(Date {
                year: 1980,
                month: 7,
                day: 0
            })
        );
        assert_eq!(d("19800229").0, d("1980-02-29").0);
        assert_eq!(d("02/29/1980").0, d("1980-02-29").0);
        assert_eq!(d("29.02.1980").0, d("1980-02-29").0);
        assert_eq!(
            d("31/12/1980").0,
            Some(Date {
                year: 1980,
                month: 12,
                day: 31
            })
        );
        assert_eq!(
            d("14 Mar 1980").0,
            Some(Date {
                year: 1980,
                month: 3,
                day: 14
            })
        );
        assert_eq!(d("March 14, 1980").0, d("14 Mar 1980").0);
        assert_eq!(d("03/14/80").0, d("14 Mar 1980").0);
        assert_eq!(
            d("03/14/05").0,
            Some(Date {
                year: 2005,
                month: 3,
                day: 14
            })
        );
        assert_eq!(d("not a date"), (None, false));
        assert_eq!(d("Mar"), (None, false));
        assert_eq!(d(""), (None, false));
        assert!(d("1900-01-01").1);
        assert!(!d("1950-01-01").1);
    }

    #[test]
    fn placeholder_names_are_flagged() {
        let cfg = NormalizeConfig::default();
        let p = prepare(
            &Demographics {
                given_names: vec!["John".into()],
                family_name: "Doe".into(),
                ..demo()
            },
            &cfg,
        );
        assert!(p.is_placeholder(ph::GIVEN) && p.is_placeholder(ph::FAMILY));
        let p = prepare(
            &Demographics {
                given_names: vec!["Baby Girl".into()],
                family_name: "Smith".into(),
                ..demo()
            },
            &cfg,
        );
        assert!(p.is_placeholder(ph::GIVEN) && !p.is_placeholder(ph::FAMILY));
        let p = prepare(
            &Demographics {
                given_names: vec!["John".into()],
                family_name: "Smith".into(),
                ..demo()
            },
            &cfg,
        );
        assert_eq!(p.placeholders, 0);
    }
}
