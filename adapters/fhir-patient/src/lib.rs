//! The one mapping of a FHIR R4 Patient resource to [`Demographics`], used by the
//! live FHIR adapter, the Bulk NDJSON adapter and continuous sync, so that the
//! same Patient gives the same demographics whichever way it arrives. It reads
//! the Patient's JSON ([`serde_json::Value`]) without a FHIR model crate; it never
//! fails: a missing or malformed element (a string where an array belongs, a
//! number where a string belongs, an invalid date) is read as absent, and
//! extensions are ignored.
//!
//! The rules, pinned by this crate's table test:
//!
//! - **Current name.** A name whose `period.end` is before today, or whose `use`
//!   is `old` or `maiden`, is not current. Among the current names the first with
//!   `use=official` wins, else the first `usual`, else the first without a `use`,
//!   else the first other one (`temp`, `nickname`, `anonymous`). `given` names are
//!   kept in order. `text` is read only when the chosen name has neither `family`
//!   nor `given`: `Family, Given Middle` or `Given Middle Family`.
//! - **Suffix.** The first generational suffix of the current name, normalized to
//!   upper case without dots: `JR`, `SR` (also from `Junior`, `Senior`), `II` to
//!   `X` (also from `2nd`, `3rd`, `4th`); academic and professional suffixes
//!   (`MD`, `PhD`, `RN`) are ignored.
//! - **Previous family names.** The `family` of every `maiden`, `old` or ended
//!   name that differs from the current family name, in order, without repeats.
//! - **Telecom.** `system=phone` and `sms` go to phones, `email` to emails;
//!   `use=old` and ended periods are dropped, as are empty values. Order: by `rank`
//!   (lower first, unranked after), then by `use` (`mobile`, `home`, `work`, then
//!   others and none), then as listed.
//! - **Addresses.** Current addresses first, then those with `use=old` or an
//!   ended period (kept, for matching a person who moved), each group as listed;
//!   an address without any of lines, city, state, postal code and country is
//!   dropped.
//! - **Birth date** as given when it is a valid `YYYY`, `YYYY-MM` or
//!   `YYYY-MM-DD`, else empty. **Gender** through [`Sex::from_code`].
//! - **National ID**: the `value` of the first identifier whose `system` is
//!   `http://hl7.org/fhir/sid/us-ssn` (or its OID form
//!   `urn:oid:2.16.840.1.113883.4.1`).
//!
//! "Before today" compares dates at day precision in UTC: a period ending today,
//! or in the current month or year when only those are given, is still current.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tessera_types::{Address, Demographics, Sex, is_iso_date};

/// Identifier systems that carry a US social security number.
pub const SSN_SYSTEMS: [&str; 2] = [
    "http://hl7.org/fhir/sid/us-ssn",
    "urn:oid:2.16.840.1.113883.4.1",
];

/// A Patient's demographics, with periods judged against today's date (UTC).
pub fn demographics(patient: &Value) -> Demographics {
    demographics_on(patient, &today())
}

/// A Patient's demographics, with periods judged against `today`
/// (`YYYY-MM-DD`).
pub fn demographics_on(patient: &Value, today: &str) -> Demographics {
    let mut d = Demographics::default();
    names(patient, today, &mut d);
    let birth_date = text(patient.get("birthDate"));
    if is_iso_date(&birth_date) {
        d.birth_date = birth_date;
    }
    d.sex = Sex::from_code(&text(patient.get("gender"))).unwrap_or_default();
    d.addresses = addresses(patient, today);
    (d.phones, d.emails) = telecom(patient, today);
    d.national_id = array(patient.get("identifier"))
        .find(|i| {
            i.get("system")
                .and_then(Value::as_str)
                .is_some_and(|s| SSN_SYSTEMS.contains(&s))
        })
        .map(|i| text(i.get("value")))
        .unwrap_or_default();
    d
}

fn names(patient: &Value, today: &str, d: &mut Demographics) {
    let names: Vec<&Value> = array(patient.get("name"))
        .filter(|n| n.is_object())
        .collect();
    let is_current =
        |n: &Value| !matches!(name_use(n).as_deref(), Some("old" | "maiden")) && !ended(n, today);
    let current = names
        .iter()
        .copied()
        .filter(|n| is_current(n))
        .min_by_key(|n| match name_use(n).as_deref() {
            Some("official") => 0,
            Some("usual") => 1,
            None => 2,
            Some(_) => 3,
        });
    if let Some(name) = current {
        d.given_names = strings(name.get("given"));
        d.family_name = text(name.get("family"));
        let mut suffixes = strings(name.get("suffix"));
        if d.given_names.is_empty() && d.family_name.is_empty() {
            let (given, family, suffix) = split_text(&text(name.get("text")));
            d.given_names = given;
            d.family_name = family;
            suffixes.extend(suffix);
        }
        d.name_suffix = suffixes
            .iter()
            .find_map(|s| generational(s))
            .unwrap_or_default()
            .to_owned();
    }
    for name in names.iter().filter(|n| !is_current(n)) {
        let family = text(name.get("family"));
        if !family.is_empty()
            && !family.eq_ignore_ascii_case(&d.family_name)
            && !d
                .previous_family_names
                .iter()
                .any(|f| f.eq_ignore_ascii_case(&family))
        {
            d.previous_family_names.push(family);
        }
    }
}

fn name_use(name: &Value) -> Option<String> {
    name.get("use").and_then(Value::as_str).map(str::to_owned)
}

/// A name's `text` as given names, family name and a trailing suffix word.
fn split_text(text: &str) -> (Vec<String>, String, Option<String>) {
    let words = |s: &str| -> Vec<String> { s.split_whitespace().map(str::to_owned).collect() };
    if let Some((family, given)) = text.split_once(',') {
        return (words(given), family.trim().to_owned(), None);
    }
    let mut given = words(text);
    let suffix = given
        .last()
        .filter(|w| given.len() > 2 && generational(w).is_some())
        .cloned();
    if suffix.is_some() {
        given.pop();
    }
    let family = given.pop().unwrap_or_default();
    (given, family, suffix)
}

/// The normalized generational suffix `s` spells, if it is one.
fn generational(s: &str) -> Option<&'static str> {
    let s: String = s
        .chars()
        .filter(|c| !matches!(c, '.' | ','))
        .collect::<String>()
        .trim()
        .to_ascii_uppercase();
    Some(match s.as_str() {
        "JR" | "JUNIOR" => "JR",
        "SR" | "SENIOR" => "SR",
        "II" | "2ND" => "II",
        "III" | "3RD" => "III",
        "IV" | "4TH" => "IV",
        "V" | "5TH" => "V",
        "VI" => "VI",
        "VII" => "VII",
        "VIII" => "VIII",
        "IX" => "IX",
        "X" => "X",
        _ => return None,
    })
}

fn telecom(patient: &Value, today: &str) -> (Vec<String>, Vec<String>) {
    let mut points: Vec<(u64, u8, bool, String)> = array(patient.get("telecom"))
        .filter(|c| !ended(c, today) && text(c.get("use")) != "old")
        .filter_map(|c| {
            let phone = match text(c.get("system")).as_str() {
                "phone" | "sms" => true,
                "email" => false,
                _ => return None,
            };
            let value = text(c.get("value")).trim().to_owned();
            if value.is_empty() {
                return None;
            }
            let rank = c
                .get("rank")
                .and_then(Value::as_u64)
                .filter(|r| *r > 0)
                .unwrap_or(u64::MAX);
            let by_use = match text(c.get("use")).as_str() {
                "mobile" => 0,
                "home" => 1,
                "work" => 2,
                _ => 3,
            };
            Some((rank, by_use, phone, value))
        })
        .collect();
    points.sort_by_key(|(rank, by_use, ..)| (*rank, *by_use));
    let (phones, emails): (Vec<_>, Vec<_>) = points.into_iter().partition(|p| p.2);
    (
        phones.into_iter().map(|p| p.3).collect(),
        emails.into_iter().map(|p| p.3).collect(),
    )
}

fn addresses(patient: &Value, today: &str) -> Vec<Address> {
    let (current, old): (Vec<_>, Vec<_>) = array(patient.get("address"))
        .filter_map(|a| {
            let address = Address {
                lines: strings(a.get("line")),
                city: text(a.get("city")),
                state: text(a.get("state")),
                postal_code: text(a.get("postalCode")),
                country: text(a.get("country")),
            };
            let empty = address.lines.is_empty()
                && address.city.is_empty()
                && address.state.is_empty()
                && address.postal_code.is_empty()
                && address.country.is_empty();
            let old = text(a.get("use")) == "old" || ended(a, today);
            (!empty).then_some((old, address))
        })
        .partition(|(old, _)| !old);
    current.into_iter().chain(old).map(|(_, a)| a).collect()
}

/// Whether `element.period.end` is before `today`, compared at the precision the
/// end is given in (`2020`, `2020-05`, `2020-05-01`, or a dateTime's date).
fn ended(element: &Value, today: &str) -> bool {
    let end = text(element.pointer("/period/end"));
    let end = end.get(..10).unwrap_or(&end);
    if !is_iso_date(end) {
        return false;
    }
    today.get(..end.len()).is_some_and(|t| end < t)
}

fn array(v: Option<&Value>) -> impl Iterator<Item = &Value> {
    v.and_then(Value::as_array).into_iter().flatten()
}

fn strings(v: Option<&Value>) -> Vec<String> {
    array(v)
        .filter_map(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn text(v: Option<&Value>) -> String {
    v.and_then(Value::as_str)
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Today's date in UTC, `YYYY-MM-DD` (the civil-from-days algorithm).
fn today() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let days = i64::try_from(secs / 86_400).unwrap_or_default();
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The proleptic Gregorian date `days` after 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests;
