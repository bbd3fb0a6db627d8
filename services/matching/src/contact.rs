//! Contact and identifier normalization: US-style street addresses (USPS suffix,
//! unit and direction abbreviations), states, postal codes, phones to E.164,
//! emails, and national IDs, each with its placeholder detection.

use phonenumber::country::Id as Region;

use crate::normalize::{clip, words};

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

pub(crate) fn is_placeholder_street(line: &str) -> bool {
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

pub(crate) fn normalize_state(raw: &str) -> String {
    let w = words(raw).join(" ");
    STATES
        .iter()
        .find(|(long, _)| *long == w)
        .map_or(w, |(_, short)| (*short).to_owned())
}

pub(crate) fn normalize_postal(raw: &str) -> String {
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

/// Lowercase email (Gmail `+tags` removed when asked; dots are kept, and
/// [`same_mailbox`] tells two Gmail spellings of one mailbox apart from an exact
/// agreement), and whether it is a placeholder. Input without a single `@` and a
/// dotted domain is missing.
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
        local.split('+').next().unwrap_or(local).to_owned()
    } else {
        local.to_owned()
    };
    let placeholder = matches!(
        local.replace('.', "").as_str(),
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

/// The mailbox an email reaches: Gmail ignores dots in the local part, so
/// `j.doe@gmail.com` and `jdoe@gmail.com` are one mailbox (used for blocking, and
/// by the comparator as an alike rather than exact agreement).
pub(crate) fn mailbox(email: &str) -> std::borrow::Cow<'_, str> {
    match email.strip_suffix("@gmail.com") {
        Some(local) if local.contains('.') => {
            format!("{}@gmail.com", local.replace('.', "")).into()
        }
        _ => email.into(),
    }
}

/// Two different spellings of one Gmail mailbox (dots moved or dropped).
pub(crate) fn same_mailbox(x: &str, y: &str) -> bool {
    x != y && x.ends_with("@gmail.com") && mailbox(x) == mailbox(y)
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
    use crate::normalize::{NormalizeConfig, prepare};
    use crate::record::{Address, Demographics};

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
            Some(("j.doe@gmail.com".to_owned(), false))
        );
        assert!(same_mailbox("j.doe@gmail.com", "jdoe@gmail.com"));
        assert!(!same_mailbox("j.doe@work.org", "jdoe@work.org"));
        assert_eq!(mailbox("j.d.oe@gmail.com"), "jdoe@gmail.com");
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
            ..Demographics::default()
        };
        let p = prepare(&d, &NormalizeConfig::default());
        assert_eq!(&*p.addresses[0].line, "1 ELM AVE");
        assert_eq!(&*p.addresses[0].state, "IL");
        assert_eq!(&*p.addresses[0].postal, "62704");
    }
}
