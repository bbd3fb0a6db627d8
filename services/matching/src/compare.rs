//! Field comparators: each compares one field of two prepared records and returns
//! the comparison level reached (exact, nickname, Jaro-Winkler bands, phonetic,
//! edit distance, date transposition, ...), or missing / placeholder.

use crate::strdist::{digits, jaro_winkler, osa};

use crate::contact::same_mailbox;
use crate::model::Model;
use crate::nickname::{Relation, relation};
use crate::normalize::{Prepared, ph};

/// Level code: a value is missing on either side (weight 0).
pub(crate) const MISSING: u8 = 255;
/// Level code: a placeholder value on either side (weight 0).
pub(crate) const PLACEHOLDER: u8 = 254;

/// Field indices, in model order.
pub(crate) mod f {
    pub(crate) const GIVEN: usize = 0;
    pub(crate) const FAMILY: usize = 1;
    pub(crate) const DOB: usize = 2;
    pub(crate) const SEX: usize = 3;
    pub(crate) const ADDRESS: usize = 4;
    pub(crate) const CITY: usize = 5;
    pub(crate) const POSTAL: usize = 6;
    pub(crate) const STATE: usize = 7;
    pub(crate) const PHONE: usize = 8;
    pub(crate) const EMAIL: usize = 9;
    pub(crate) const NATIONAL_ID: usize = 10;
}

/// Largest term-frequency adjustment, in bits.
pub(crate) const MAX_TF_BITS: f64 = 4.0;

/// Number of compared fields.
pub(crate) const NFIELDS: usize = 11;

/// Each field's name and its levels, best first; the last level is `disagree`.
pub(crate) const FIELDS: [(&str, &[&str]); NFIELDS] = [
    (
        "given_name",
        &[
            "exact",
            "nickname",
            "jaro_winkler_0.92",
            "phonetic",
            "jaro_winkler_0.80",
            "initial_or_middle",
            "disagree",
        ],
    ),
    (
        "family_name",
        &[
            "exact",
            "jaro_winkler_0.92",
            "previous_or_part",
            "phonetic",
            "jaro_winkler_0.80",
            "disagree",
        ],
    ),
    (
        "birth_date",
        &[
            "exact",
            "date_transposed",
            "one_edit",
            "partial",
            "two_edits",
            "disagree",
        ],
    ),
    ("sex", &["exact", "disagree"]),
    (
        "address_line",
        &[
            "exact",
            "jaro_winkler_0.92",
            "jaro_winkler_0.80",
            "disagree",
        ],
    ),
    ("city", &["exact", "jaro_winkler_0.90", "disagree"]),
    ("postal_code", &["exact", "one_edit", "disagree"]),
    ("state", &["exact", "disagree"]),
    ("phones", &["exact", "one_edit", "disagree"]),
    ("emails", &["exact", "jaro_winkler_0.92", "disagree"]),
    (
        "national_id",
        &["exact", "one_edit", "two_edits", "disagree"],
    ),
];

/// The comparison of two records: one level code per field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Comparison {
    pub(crate) levels: [u8; NFIELDS],
    /// Given and family names matched only when swapped.
    pub(crate) swapped: bool,
}

impl Comparison {
    pub(crate) fn disagrees(&self, field: usize) -> bool {
        let l = self.levels[field];
        l < PLACEHOLDER && usize::from(l) + 1 == FIELDS[field].1.len()
    }

    pub(crate) fn exact(&self, field: usize) -> bool {
        self.levels[field] == 0
    }
}

fn either_ph(a: &Prepared, b: &Prepared, flag: u16) -> bool {
    a.is_placeholder(flag) || b.is_placeholder(flag)
}

/// Compares two prepared records field by field.
pub(crate) fn compare(a: &Prepared, b: &Prepared) -> Comparison {
    compare_bounded(a, b, None).unwrap_or(Comparison {
        levels: [MISSING; NFIELDS],
        swapped: false,
    })
}

/// Compares two records, giving up (None) before the costly street and city
/// comparisons when even their best weights could not lift the score to `floor`.
pub(crate) fn compare_bounded(
    a: &Prepared,
    b: &Prepared,
    floor: Option<(&Model, f64)>,
) -> Option<Comparison> {
    let mut levels = [MISSING; NFIELDS];
    let given = given_level(a, b);
    let family = family_level(a, b);
    let mut swapped = false;
    levels[f::GIVEN] = given;
    levels[f::FAMILY] = family;
    if (3..PLACEHOLDER).contains(&given)
        && family < PLACEHOLDER
        && close(&a.family, b.first_given())
    {
        // Given and family names swapped on one side (possibly with a typo, or
        // with the other name changed): compare them crosswise.
        let cross_family = text_level(a.first_given(), &b.family, &[0.92, 0.80]);
        levels[f::GIVEN] = if &*a.family == b.first_given() { 0 } else { 2 };
        levels[f::FAMILY] = match cross_family {
            0 => 0,
            1 => 1,
            2 => 4,
            _ => 5,
        };
        swapped = true;
    } else if (3..PLACEHOLDER).contains(&given)
        && family < PLACEHOLDER
        && close(a.first_given(), &b.family)
    {
        let cross_family = text_level(&a.family, b.first_given(), &[0.92, 0.80]);
        levels[f::GIVEN] = if a.first_given() == &*b.family { 0 } else { 2 };
        levels[f::FAMILY] = match cross_family {
            0 => 0,
            1 => 1,
            2 => 4,
            _ => 5,
        };
        swapped = true;
    }
    levels[f::DOB] = dob_level(a, b);
    levels[f::SEX] = match (a.sex, b.sex) {
        (0, _) | (_, 0) => MISSING,
        (x, y) => u8::from(x != y),
    };
    postal_levels(a, b, &mut levels);
    levels[f::PHONE] = if either_ph(a, b, ph::PHONE) && (a.phones.is_empty() || b.phones.is_empty())
    {
        PLACEHOLDER
    } else {
        best_of(&a.phones, &b.phones, |x, y| {
            if x == y {
                0
            } else if osa(digits(*x, &mut [0; 20]), digits(*y, &mut [0; 20])) <= 1 {
                1
            } else {
                2
            }
        })
    };
    levels[f::EMAIL] = if either_ph(a, b, ph::EMAIL) && (a.emails.is_empty() || b.emails.is_empty())
    {
        PLACEHOLDER
    } else {
        email_level(a, b)
    };
    levels[f::NATIONAL_ID] = if either_ph(a, b, ph::NATIONAL_ID) {
        PLACEHOLDER
    } else if a.national_id.is_empty() || b.national_id.is_empty() {
        MISSING
    } else if a.national_id == b.national_id {
        0
    } else if let Some(level) = masked_id_level(&a.national_id, &b.national_id) {
        level
    } else {
        match osa(a.national_id.as_bytes(), b.national_id.as_bytes()) {
            1 => 1,
            2 => 2,
            _ => 3,
        }
    };
    if let Some((model, floor)) = floor {
        let mut best =
            model.prior_match_weight + MAX_TF_BITS * 2.0 - if swapped { 1.0 } else { 0.0 };
        if possible_married_name(a, b, &levels) {
            best -= model.weight(f::FAMILY, levels[f::FAMILY]);
        }
        for (field, level) in levels.iter().enumerate() {
            best += model.weight(field, *level);
        }
        if !a.addresses.is_empty() && !b.addresses.is_empty() {
            best += model.max_weight(f::ADDRESS) + model.max_weight(f::CITY);
        }
        if best < floor {
            return None;
        }
    }
    street_levels(a, b, &mut levels);
    Some(Comparison { levels, swapped })
}

/// The same first given name with a different family name, neither record
/// male, and a contact or ID only the person holds (the same email, phone or
/// national ID): a name taken at marriage (or given up), common enough that
/// the family name's disagreement is not held against the pair; the rest of the
/// evidence still has to carry it. A birth date and city do not qualify: two
/// women of one given name and birthday in one city are common at scale.
pub(crate) fn possible_married_name(a: &Prepared, b: &Prepared, levels: &[u8; NFIELDS]) -> bool {
    let family = levels[f::FAMILY];
    levels[f::GIVEN] == 0
        && family < PLACEHOLDER
        && usize::from(family) + 1 == FIELDS[f::FAMILY].1.len()
        && a.sex != 1
        && b.sex != 1
        && (levels[f::EMAIL] == 0 || levels[f::PHONE] == 0 || levels[f::NATIONAL_ID] <= 1)
}

/// A masked national ID (only its last digits, `XXX-XX-2547`) against a longer
/// one: the same trailing digits are weaker than a full agreement (two edits'
/// level), different ones disagree. None when both have the same length.
fn masked_id_level(x: &str, y: &str) -> Option<u8> {
    let (short, long) = if x.len() < y.len() { (x, y) } else { (y, x) };
    (short.len() * 2 <= long.len()).then(|| if long.ends_with(short) { 2 } else { 3 })
}

/// Emails: exact, alike (one typo: same domain and digits), or disagree. An
/// address spelled from the person's own name (`maria.garcia@`, `mgarcia@`) is
/// what anyone of that name picks, so a near miss on it (another Maria Garcia's
/// `mariagarcia@`, or `maria.garcia@` against `mariagarcia@` at Gmail) adds
/// nothing to agreeing on the name and weighs 0 (missing); the very same
/// address is one mailbox, and agrees exactly.
fn email_level(a: &Prepared, b: &Prepared) -> u8 {
    const NAMED: u8 = 2;
    const DISAGREE: u8 = 3;
    let mut best = best_of(&a.emails, &b.emails, |x, y| {
        let named = || name_derived(a, x) || name_derived(b, y);
        // One typo apart: the same domain and digits, and local parts (not the
        // whole address, whose shared domain says nothing) alike.
        let alike = || {
            let (lx, dx) = x.rsplit_once('@').unwrap_or((x, ""));
            let (ly, dy) = y.rsplit_once('@').unwrap_or((y, ""));
            same_mailbox(x, y)
                || (dx == dy
                    && x.bytes()
                        .filter(u8::is_ascii_digit)
                        .eq(y.bytes().filter(u8::is_ascii_digit))
                    && jaro_winkler(lx, ly) >= 0.92)
        };
        if named() {
            if x == y {
                0
            } else if alike() {
                NAMED
            } else {
                DISAGREE
            }
        } else if x == y {
            0
        } else if alike() {
            1
        } else {
            DISAGREE
        }
    });
    if best == NAMED {
        best = MISSING;
    } else if best == DISAGREE {
        best = 2;
    }
    best
}

/// Whether an email's local part is only the record's names or initials, with
/// no digits: given and family name in either order, or one of them with the
/// other's initial, or either alone.
fn name_derived(p: &Prepared, email: &str) -> bool {
    let local = email.split('@').next().unwrap_or("");
    if local.bytes().any(|c| c.is_ascii_digit()) {
        return false;
    }
    let letters: String = local
        .chars()
        .filter(char::is_ascii_alphabetic)
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let (given, family) = (p.first_given(), &*p.family);
    if letters.is_empty() || given.is_empty() || family.is_empty() {
        return false;
    }
    let initial = &given[..1];
    let rest = letters
        .strip_prefix(family)
        .or_else(|| letters.strip_suffix(family));
    match rest {
        Some(r) => {
            r.is_empty() || r == given || r == initial || (r.len() == 2 && r.starts_with(initial))
        }
        None => letters == given || letters == format!("{given}{}", &family[..1]),
    }
}

/// Emails that tell two people apart: no address (or mailbox) is shared, and
/// each side has one spelled from its own, different given name (`kayla.ward@`
/// and `kyla.ward@`, digits allowed). A mistyped name does not carry into the
/// email typed separately; a twin's own name does.
pub(crate) fn emails_name_two_people(a: &Prepared, b: &Prepared) -> bool {
    let (ga, gb) = (a.first_given(), b.first_given());
    if ga.len() < 3 || gb.len() < 3 || ga == gb || a.emails.is_empty() || b.emails.is_empty() {
        return false;
    }
    let shared = a
        .emails
        .iter()
        .any(|x| b.emails.iter().any(|y| x == y || same_mailbox(x, y)));
    // The letters of the local part are the given name, alone or with the
    // family name before or after it.
    let spelled = |p: &Prepared, given: &str| {
        p.emails.iter().any(|e| {
            let letters: String = e
                .split('@')
                .next()
                .unwrap_or("")
                .chars()
                .filter(char::is_ascii_alphabetic)
                .map(|c| c.to_ascii_uppercase())
                .collect();
            let rest = letters
                .strip_prefix(given)
                .or_else(|| letters.strip_suffix(given));
            rest.is_some_and(|r| r.is_empty() || r == &*p.family)
        })
    };
    !shared && spelled(a, ga) && spelled(b, gb)
}

/// Middle names (or initials) on both sides that start with different letters,
/// unless the given names were only split at another point (see
/// [`given_split_moved`]).
pub(crate) fn middle_names_differ(a: &Prepared, b: &Prepared) -> bool {
    match (a.given.get(1), b.given.get(1)) {
        (Some(x), Some(y)) => {
            x.as_bytes().first() != y.as_bytes().first() && !given_split_moved(a, b)
        }
        _ => false,
    }
}

/// The given names, their parts joined, are one typo apart while the first
/// given names have different lengths: one name written with the break between
/// its parts moved (LACHLAN-JOHN / LACHLQ-NJOHN, MARY ANN / MARYANN), not two
/// names. Equal lengths (TOM ALAN / TIM ALAN) are a different first name.
pub(crate) fn given_split_moved(a: &Prepared, b: &Prepared) -> bool {
    let (x, y) = (a.first_given(), b.first_given());
    if (a.given.len() < 2 && b.given.len() < 2) || x.len() == y.len() {
        return false;
    }
    let (jx, jy) = (a.given.concat(), b.given.concat());
    jx.len().min(jy.len()) >= 6 && osa(jx.as_bytes(), jy.as_bytes()) <= 1
}

/// Equal, or within the top Jaro-Winkler band.
fn close(x: &str, y: &str) -> bool {
    !x.is_empty() && !y.is_empty() && (x == y || jaro_winkler(x, y) >= 0.92)
}

/// The best (lowest) level over all value pairs; missing when a side has none.
fn best_of<T>(a: &[T], b: &[T], level: impl Fn(&T, &T) -> u8) -> u8 {
    let mut best = MISSING;
    for x in a {
        for y in b {
            best = best.min(level(x, y));
            if best == 0 {
                return 0;
            }
        }
    }
    best
}

fn given_level(a: &Prepared, b: &Prepared) -> u8 {
    if either_ph(a, b, ph::GIVEN) {
        return PLACEHOLDER;
    }
    let (x, y) = (a.first_given(), b.first_given());
    if x.is_empty() || y.is_empty() {
        return MISSING;
    }
    if x == y {
        return 0;
    }
    let nickname = relation(x, y);
    if nickname == Relation::Nickname {
        return 1;
    }
    let jw = jaro_winkler(x, y);
    if jw >= 0.92 || nickname == Relation::NicknameWithTypo {
        return 2;
    }
    if !a.given_code.is_empty() && a.given_code == b.given_code {
        return 3;
    }
    if jw >= 0.80 {
        return 4;
    }
    let initial = (x.len() == 1 || y.len() == 1) && x.as_bytes()[0] == y.as_bytes()[0];
    let middle =
        a.given.iter().skip(1).any(|g| &**g == y) || b.given.iter().skip(1).any(|g| &**g == x);
    if initial || middle {
        return 5;
    }
    6
}

fn family_level(a: &Prepared, b: &Prepared) -> u8 {
    if either_ph(a, b, ph::FAMILY) {
        return PLACEHOLDER;
    }
    let (x, y) = (&*a.family, &*b.family);
    if x.is_empty() || y.is_empty() {
        return MISSING;
    }
    if x == y {
        return 0;
    }
    let jw = jaro_winkler(x, y);
    if jw >= 0.92 {
        return 1;
    }
    let in_list = |name: &str, list: &[Box<str>]| list.iter().any(|p| &**p == name);
    let previous = in_list(x, &b.previous)
        || in_list(y, &a.previous)
        || in_list(x, &b.family_parts)
        || in_list(y, &a.family_parts)
        || a.family_parts.iter().any(|p| in_list(p, &b.family_parts))
        || a.previous.iter().any(|p| in_list(p, &b.previous));
    if previous {
        return 2;
    }
    if !a.family_code.is_empty() && a.family_code == b.family_code {
        return 3;
    }
    if jw >= 0.80 {
        return 4;
    }
    5
}

fn dob_level(a: &Prepared, b: &Prepared) -> u8 {
    if either_ph(a, b, ph::DOB) {
        return PLACEHOLDER;
    }
    let (Some(x), Some(y)) = (a.dob, b.dob) else {
        return MISSING;
    };
    if x == y {
        return 0;
    }
    let partial = x.month == 0 || y.month == 0 || x.day == 0 || y.day == 0;
    if partial {
        let month_ok = x.month == 0 || y.month == 0 || x.month == y.month;
        let day_ok = x.day == 0 || y.day == 0 || x.day == y.day;
        return if x.year == y.year && month_ok && day_ok {
            3
        } else {
            5
        };
    }
    if x.year == y.year && x.month == y.day && x.day == y.month {
        return 1;
    }
    if x.month == y.month && x.day == y.day && x.year.abs_diff(y.year) == 1 {
        // 1999 / 2000: one year apart reads as one typo even across a decade.
        return 2;
    }
    let (dx, dy) = (x.digits(), y.digits());
    if dx.iter().zip(&dy).filter(|(p, q)| p != q).count() > 4 {
        return 5;
    }
    match osa(&dx, &dy) {
        0 | 1 => 2,
        2 => 4,
        _ => 5,
    }
}

fn text_level(x: &str, y: &str, bands: &[f64]) -> u8 {
    if x.is_empty() || y.is_empty() {
        return MISSING;
    }
    if x == y {
        return 0;
    }
    let jw = jaro_winkler(x, y);
    let mut level = 1u8;
    for band in bands {
        if jw >= *band {
            return level;
        }
        level += 1;
    }
    level
}

fn postal_levels(a: &Prepared, b: &Prepared, levels: &mut [u8; NFIELDS]) {
    for x in &a.addresses {
        for y in &b.addresses {
            let postal = match (
                x.postal.is_empty() || y.postal.is_empty(),
                x.postal == y.postal,
            ) {
                (true, _) => MISSING,
                (false, true) => 0,
                (false, false) if osa(x.postal.as_bytes(), y.postal.as_bytes()) <= 1 => 1,
                (false, false) => 2,
            };
            levels[f::POSTAL] = levels[f::POSTAL].min(postal);
            let state = match (x.state.is_empty() || y.state.is_empty(), x.state == y.state) {
                (true, _) => MISSING,
                (false, same) => u8::from(!same),
            };
            levels[f::STATE] = levels[f::STATE].min(state);
        }
    }
}

fn street_levels(a: &Prepared, b: &Prepared, levels: &mut [u8; NFIELDS]) {
    let addr_ph = either_ph(a, b, ph::ADDRESS);
    for x in &a.addresses {
        for y in &b.addresses {
            let line = if addr_ph {
                PLACEHOLDER
            } else {
                text_level(&x.line, &y.line, &[0.92, 0.80])
            };
            levels[f::ADDRESS] = levels[f::ADDRESS].min(line);
            levels[f::CITY] = levels[f::CITY].min(text_level(&x.city, &y.city, &[0.90]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::{NormalizeConfig, prepare};
    use crate::record::Demographics;

    fn p(given: &str, family: &str, dob: &str) -> Prepared {
        prepare(
            &Demographics {
                given_names: vec![given.into()],
                family_name: family.into(),
                birth_date: dob.into(),
                ..Demographics::default()
            },
            &NormalizeConfig::default(),
        )
    }

    fn level_name(c: &Comparison, field: usize) -> &'static str {
        match c.levels[field] {
            MISSING => "missing",
            PLACEHOLDER => "placeholder",
            l => FIELDS[field].1[usize::from(l)],
        }
    }

    #[test]
    fn name_levels() {
        let c = compare(&p("William", "Smith", ""), &p("Bill", "Smith", ""));
        assert_eq!(level_name(&c, f::GIVEN), "nickname");
        let c = compare(
            &p("Christopher", "Smyth", ""),
            &p("Christophor", "Smith", ""),
        );
        assert_eq!(level_name(&c, f::GIVEN), "jaro_winkler_0.92");
        assert_eq!(level_name(&c, f::FAMILY), "phonetic");
        let c = compare(&p("Mary", "Garcia-Lopez", ""), &p("Mary", "Lopez", ""));
        assert_eq!(level_name(&c, f::FAMILY), "previous_or_part");
        let c = compare(&p("Smith", "John", ""), &p("John", "Smith", ""));
        assert!(c.swapped);
        assert_eq!(level_name(&c, f::GIVEN), "exact");
        let c = compare(&p("John", "Smith", ""), &p("Peter", "Smith", ""));
        assert_eq!(level_name(&c, f::GIVEN), "disagree");
        let c = compare(&p("", "Smith", ""), &p("Peter", "Smith", ""));
        assert_eq!(level_name(&c, f::GIVEN), "missing");
    }

    #[test]
    fn a_given_name_split_at_another_point_is_not_two_middle_names() {
        let moved = |x: &str, y: &str| given_split_moved(&p(x, "Rivers", ""), &p(y, "Rivers", ""));
        assert!(moved("Lachlan-John", "Lachlq-Njohn"));
        assert!(moved("Mary Ann", "Maryann"));
        assert!(!middle_names_differ(
            &p("Lachlan-John", "Rivers", ""),
            &p("Lachlq-Njohn", "Rivers", "")
        ));
        assert!(!moved("Tom Alan", "Tim Alan"), "same lengths: another name");
        assert!(!moved("Lachlan John", "Lachlan Peter"));
        assert!(!moved("Jo Ann", "Joanna Lee"), "more than one typo");
        assert!(middle_names_differ(
            &p("Lachlan John", "Rivers", ""),
            &p("Lachlan Peter", "Rivers", "")
        ));
    }

    #[test]
    fn date_levels() {
        let lv = |x: &str, y: &str| level_name(&compare(&p("A", "B", x), &p("A", "B", y)), f::DOB);
        assert_eq!(lv("1980-03-04", "1980-03-04"), "exact");
        assert_eq!(lv("1980-03-04", "1980-04-03"), "date_transposed");
        assert_eq!(lv("1980-03-04", "1981-03-04"), "one_edit");
        assert_eq!(lv("1999-04-08", "2000-04-08"), "one_edit");
        assert_eq!(lv("1980-03-04", "1980-03"), "partial");
        assert_eq!(lv("1980-03-04", "1955-11-20"), "disagree");
        assert_eq!(lv("1900-01-01", "1900-01-01"), "placeholder");
    }

    #[test]
    fn emails_spelled_from_the_name_weigh_less_and_other_numbers_disagree() {
        let with = |email: &str, ssn: &str| {
            let mut a = p("Maria", "Garcia", "");
            a.emails = vec![email.into()];
            a.national_id = ssn.into();
            a
        };
        let lvl = |x: &str, y: &str| level_name(&compare(&with(x, ""), &with(y, "")), f::EMAIL);
        assert_eq!(
            lvl("maria.garcia@gmail.com", "maria.garcia@gmail.com"),
            "exact"
        );
        assert_eq!(lvl("mgarcia@aol.com", "mgarcia@aol.com"), "exact");
        assert_eq!(
            lvl("maria.garcia@gmail.com", "mariagarcia@gmail.com"),
            "missing"
        );
        assert_eq!(lvl("mg1987@aol.com", "mg1987@aol.com"), "exact");
        assert_eq!(
            lvl("mariagarcia@gmail.com", "mariagarcia@yahoo.com"),
            "disagree"
        );
        assert_eq!(
            lvl("maria.garcia@gmail.com", "maria.garcia74@gmail.com"),
            "disagree"
        );
        assert_eq!(
            lvl("mariag1987@aol.com", "mairag1987@aol.com"),
            "jaro_winkler_0.92"
        );
        let masked = compare(&with("", "2547"), &with("", "203362547"));
        assert_eq!(level_name(&masked, f::NATIONAL_ID), "two_edits");
        let other = compare(&with("", "2548"), &with("", "203362547"));
        assert_eq!(level_name(&other, f::NATIONAL_ID), "disagree");
    }
}
