//! Normalization: turns a silo's [`Demographics`] into a compact [`Prepared`]
//! record whose fields compare directly — uppercase ASCII names without
//! punctuation, structured dates, E.164 phones, canonical emails, abbreviated
//! US-style addresses and digit-only national IDs — and flags placeholder values
//! (JOHN DOE, 1900-01-01, 999-99-9999, 555-555-5555) so they carry no weight.

use phonenumber::country::Id as Region;
use serde::{Deserialize, Serialize};

use crate::record::{Demographics, Sex};

/// How values are normalized.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NormalizeConfig {
    /// ISO 3166-1 alpha-2 region for phone numbers written without a country code.
    pub default_region: String,
    /// Treat `j.doe+x@gmail.com` as `jdoe@gmail.com` (Gmail ignores dots and `+tags`).
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

fn clip(s: &str) -> &str {
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

const STREET_WORDS: &[(&str, &str)] = &[
    ("STREET", "ST"),
    ("STR", "ST"),
    ("AVENUE", "AVE"),
    ("AV", "AVE"),
    ("ROAD", "RD"),
    ("DRIVE", "DR"),
    ("LANE", "LN"),
    ("BOULEVARD", "BLVD"),
    ("COURT", "CT"),
    ("PLACE", "PL"),
    ("CIRCLE", "CIR"),
    ("CIRCUIT", "CCT"),
    ("CRESCENT", "CRES"),
    ("TERRACE", "TER"),
    ("HIGHWAY", "HWY"),
    ("PARKWAY", "PKWY"),
    ("SQUARE", "SQ"),
    ("TRAIL", "TRL"),
    ("CLOSE", "CL"),
    ("GROVE", "GRV"),
    ("MOUNT", "MT"),
    ("POINT", "PT"),
    ("EXPRESSWAY", "EXPY"),
    ("FREEWAY", "FWY"),
    ("PIKE", "PIKE"),
    ("ALLEY", "ALY"),
    ("CAUSEWAY", "CSWY"),
    ("CENTER", "CTR"),
    ("CENTRE", "CTR"),
    ("HEIGHTS", "HTS"),
    ("JUNCTION", "JCT"),
    ("PLAZA", "PLZ"),
    ("RIDGE", "RDG"),
    ("APARTMENT", "APT"),
    ("APPT", "APT"),
    ("SUITE", "STE"),
    ("BUILDING", "BLDG"),
    ("FLOOR", "FL"),
    ("ROOM", "RM"),
    ("DEPARTMENT", "DEPT"),
    ("NUMBER", "NO"),
    ("NORTH", "N"),
    ("SOUTH", "S"),
    ("EAST", "E"),
    ("WEST", "W"),
    ("NORTHEAST", "NE"),
    ("NORTHWEST", "NW"),
    ("SOUTHEAST", "SE"),
    ("SOUTHWEST", "SW"),
    ("POBOX", "PO BOX"),
    ("BOX", "BOX"),
];

/// Uppercase street with USPS-style abbreviations; `#` becomes `APT`.
pub(crate) fn normalize_street(raw: &str) -> String {
    let replaced = clip(raw).replace('#', " APT ");
    let mut out: Vec<&str> = Vec::new();
    let ws = words(&replaced);
    for w in &ws {
        let abbr = STREET_WORDS
            .iter()
            .find(|(long, _)| *long == w.as_str())
            .map_or(w.as_str(), |(_, short)| short);
        out.push(abbr);
    }
    out.dedup();
    out.join(" ")
}

fn is_placeholder_street(line: &str) -> bool {
    matches!(
        line,
        "UNKNOWN" | "NONE" | "HOMELESS" | "NO ADDRESS" | "UNK" | "NA" | "N A"
    )
}

const STATES: &[(&str, &str)] = &[
    ("ALABAMA", "AL"),
    ("ALASKA", "AK"),
    ("ARIZONA", "AZ"),
    ("ARKANSAS", "AR"),
    ("CALIFORNIA", "CA"),
    ("COLORADO", "CO"),
    ("CONNECTICUT", "CT"),
    ("DELAWARE", "DE"),
    ("FLORIDA", "FL"),
    ("GEORGIA", "GA"),
    ("HAWAII", "HI"),
    ("IDAHO", "ID"),
    ("ILLINOIS", "IL"),
    ("INDIANA", "IN"),
    ("IOWA", "IA"),
    ("KANSAS", "KS"),
    ("KENTUCKY", "KY"),
    ("LOUISIANA", "LA"),
    ("MAINE", "ME"),
    ("MARYLAND", "MD"),
    ("MASSACHUSETTS", "MA"),
    ("MICHIGAN", "MI"),
    ("MINNESOTA", "MN"),
    ("MISSISSIPPI", "MS"),
    ("MISSOURI", "MO"),
    ("MONTANA", "MT"),
    ("NEBRASKA", "NE"),
    ("NEVADA", "NV"),
    ("NEW HAMPSHIRE", "NH"),
    ("NEW JERSEY", "NJ"),
    ("NEW MEXICO", "NM"),
    ("NEW YORK", "NY"),
    ("NORTH CAROLINA", "NC"),
    ("NORTH DAKOTA", "ND"),
    ("OHIO", "OH"),
    ("OKLAHOMA", "OK"),
    ("OREGON", "OR"),
    ("PENNSYLVANIA", "PA"),
    ("RHODE ISLAND", "RI"),
    ("SOUTH CAROLINA", "SC"),
    ("SOUTH DAKOTA", "SD"),
    ("TENNESSEE", "TN"),
    ("TEXAS", "TX"),
    ("UTAH", "UT"),
    ("VERMONT", "VT"),
    ("VIRGINIA", "VA"),
    ("WASHINGTON", "WA"),
    ("WEST VIRGINIA", "WV"),
    ("WISCONSIN", "WI"),
    ("WYOMING", "WY"),
    ("DISTRICT OF COLUMBIA", "DC"),
    ("PUERTO RICO", "PR"),
];

fn normalize_state(raw: &str) -> String {
    let w = words(raw).join(" ");
    STATES
        .iter()
        .find(|(long, _)| *long == w)
        .map_or(w, |(_, short)| (*short).to_owned())
}

fn normalize_postal(raw: &str) -> String {
    let s: String = clip(raw)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if s.len() == 9 && s.bytes().all(|b| b.is_ascii_digit()) {
        // ZIP+4: the ZIP5 identifies the area.
        return s[..5].to_owned();
    }
    s
}

/// E.164 digits as an integer, and whether the number is a placeholder.
pub(crate) fn normalize_phone(raw: &str, region: Option<Region>) -> Option<(u64, bool)> {
    let raw = clip(raw).trim();
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    if digits.len() < 7 {
        return None;
    }
    let national = digits.trim_start_matches('1');
    let placeholder = is_placeholder_digits(&digits)
        || is_placeholder_digits(national)
        || national
            .get(3..)
            .is_some_and(|rest| rest.starts_with("5550"))
        || national.get(3..) == Some("5555555");
    let e164 = phonenumber::parse(region, raw)
        .ok()
        .map(|n| {
            n.format()
                .mode(phonenumber::Mode::E164)
                .to_string()
                .trim_start_matches('+')
                .to_owned()
        })
        .unwrap_or(digits);
    let value = e164.get(..e164.len().min(18))?.parse::<u64>().ok()?;
    Some((value, placeholder))
}

/// All one digit, or an ascending/descending run (123456789, 987654321).
fn is_placeholder_digits(d: &str) -> bool {
    let b = d.as_bytes();
    if b.len() < 3 {
        return false;
    }
    let same = b.iter().all(|&c| c == b[0]);
    let up = b
        .windows(2)
        .all(|w| w[1] == w[0] + 1 || (w[0] == b'9' && w[1] == b'0'));
    let down = b
        .windows(2)
        .all(|w| w[0] == w[1] + 1 || (w[0] == b'0' && w[1] == b'9'));
    same || up || down
}

/// Lowercase email (Gmail dots and `+tags` removed when asked), and whether it is
/// a placeholder. Input without a single `@` and a dotted domain is missing.
pub(crate) fn normalize_email(raw: &str, gmail: bool) -> Option<(String, bool)> {
    let s = clip(raw).trim().to_lowercase();
    let (local, domain) = s.split_once('@')?;
    if local.is_empty() || !domain.contains('.') || domain.contains('@') {
        return None;
    }
    let domain = if domain == "googlemail.com" {
        "gmail.com"
    } else {
        domain
    };
    let local = if gmail && domain == "gmail.com" {
        local.split('+').next().unwrap_or(local).replace('.', "")
    } else {
        local.to_owned()
    };
    let placeholder = matches!(
        local.as_str(),
        "none"
            | "noemail"
            | "no"
            | "na"
            | "unknown"
            | "test"
            | "noreply"
            | "donotreply"
            | "nobody"
            | "declined"
            | "refused"
    ) || matches!(
        domain,
        "example.com" | "example.org" | "test.com" | "none.com" | "noemail.com"
    );
    Some((format!("{local}@{domain}"), placeholder))
}

/// Digits only, and whether the ID is a placeholder (000-00-0000, 999-99-9999,
/// 123-45-6789, an SSN with area 000/666 or group 00 or serial 0000).
pub(crate) fn normalize_national_id(raw: &str) -> (String, bool) {
    let d: String = clip(raw).chars().filter(char::is_ascii_digit).collect();
    if d.is_empty() {
        return (d, false);
    }
    let ssn_invalid = d.len() == 9
        && (d.starts_with("000") || d.starts_with("666") || &d[3..5] == "00" || &d[5..] == "0000");
    let ph = d.len() < 4 || is_placeholder_digits(&d) || ssn_invalid;
    (d, ph)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Address;

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
    fn phones_become_e164_and_fake_numbers_are_placeholders() {
        let us: Option<Region> = "US".parse().ok();
        assert_eq!(
            normalize_phone("(415) 555-2671", us),
            Some((14_155_552_671, false))
        );
        assert_eq!(
            normalize_phone("+1 415 555 2671", us),
            Some((14_155_552_671, false))
        );
        assert_eq!(
            normalize_phone("415.555.2671", us),
            Some((14_155_552_671, false))
        );
        assert!(normalize_phone("555-555-5555", us).is_some_and(|p| p.1));
        assert!(normalize_phone("000-000-0000", us).is_some_and(|p| p.1));
        assert!(normalize_phone("123-456-7890", us).is_some_and(|p| p.1));
        assert_eq!(normalize_phone("12", us), None);
        let gb: Option<Region> = "GB".parse().ok();
        assert_eq!(
            normalize_phone("020 7946 0018", gb),
            Some((442_079_460_018, false))
        );
    }

    #[test]
    fn emails_addresses_ids_normalize() {
        assert_eq!(
            normalize_email(" J.Doe+clinic@GMail.com ", true),
            Some(("jdoe@gmail.com".to_owned(), false))
        );
        assert_eq!(
            normalize_email("J.Doe+x@work.org", true),
            Some(("j.doe+x@work.org".to_owned(), false))
        );
        assert!(normalize_email("none@none.com", true).is_some_and(|e| e.1));
        assert_eq!(normalize_email("not-an-email", true), None);
        assert_eq!(
            normalize_street("12 North Main Street, Apartment #4"),
            "12 N MAIN ST APT 4"
        );
        assert_eq!(
            normalize_street("12 n. main st apt 4"),
            "12 N MAIN ST APT 4"
        );
        assert_eq!(
            normalize_national_id("123-45-6780"),
            ("123456780".to_owned(), false)
        );
        for fake in ["999-99-9999", "000-00-0000", "123-45-6789"] {
            assert!(normalize_national_id(fake).1, "{fake}");
        }
        let d = Demographics {
            addresses: vec![Address {
                lines: vec!["1 Elm Avenue".into()],
                city: "springfield".into(),
                state: "Illinois".into(),
                postal_code: "62704-1234".into(),
                country: String::new(),
            }],
            ..demo()
        };
        let p = prepare(&d, &NormalizeConfig::default());
        assert_eq!(&*p.addresses[0].line, "1 ELM AVE");
        assert_eq!(&*p.addresses[0].state, "IL");
        assert_eq!(&*p.addresses[0].postal, "62704");
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
