//! The cluster guards: evidence that two records are two people however well
//! they score (twins, juniors and seniors, household members, siblings), and
//! the checks the batch and the index run before joining records in one
//! cluster. The scorer turns a guard into a [`Conflict`]; `decide` in
//! `score.rs` applies it.

use crate::compare::{
    Comparison, MISSING, PLACEHOLDER, compare, emails_name_two_people, f, given_split_moved,
    middle_names_differ,
};
use crate::normalize::{Prepared, ph};
use crate::score::{Conflict, MatchConfig, PairScore};

pub(crate) fn conflict(a: &Prepared, b: &Prepared, cmp: &Comparison) -> Option<Conflict> {
    if a.suffix != 0 && b.suffix != 0 && a.suffix != b.suffix {
        return Some(Conflict::Suffix);
    }
    if national_id_vouches(a, b, cmp) {
        return None;
    }
    if cmp.levels[f::GIVEN] == PLACEHOLDER || cmp.levels[f::FAMILY] == PLACEHOLDER {
        // A placeholder name (JOHN DOE, BABY GIRL) says nothing; the record may
        // still link on what only the person has, when the sexes do not differ
        // and the name that is there does not disagree.
        let named_side_disagrees = cmp.disagrees(f::GIVEN) || cmp.disagrees(f::FAMILY);
        if cmp.disagrees(f::SEX) || named_side_disagrees || !personal_identifier_agrees(cmp) {
            return Some(Conflict::Placeholder);
        }
    }
    if given_names_differ(a, b, cmp) {
        return Some(Conflict::GivenName);
    }
    // Clearly different dates, or two edits that move the year by a generation.
    if cmp.disagrees(f::DOB) || (cmp.levels[f::DOB] == 4 && year_gap(a, b) >= 10) {
        return Some(Conflict::BirthDate);
    }
    if let Some(c) = two_people(a, b, cmp) {
        return Some(c);
    }
    None
}

/// Clearly different first given names: they disagree, or are only alike in
/// sound or a loose Jaro-Winkler band (LILY / LOLA), unless one typo apart
/// (JESSICA / JESSIAC) or one name split at another point (LACHLAN-JOHN /
/// LACHLQ-NJOHN).
fn given_names_differ(a: &Prepared, b: &Prepared, cmp: &Comparison) -> bool {
    let given = cmp.levels[f::GIVEN];
    let differ = cmp.disagrees(f::GIVEN)
        || ((given == 3 || given == 4) && !one_typo(a.first_given(), b.first_given()));
    differ && !given_split_moved(a, b)
}

/// Positive evidence of two people despite look-alike records (checked when no
/// national ID vouches): consecutive national IDs; look-alike or
/// nickname-related given names (KAYLA / KYLA, EMMA / EMILY) each spelled into
/// its own record's email, or with different national IDs in one household (the
/// same phone); different middle names (CHARLES JAMES / CHARLES KENNETH); or
/// different sexes with not-identical given names (AARON / ERIN). Siblings, not
/// a typo or a nickname: no cluster may hold both.
fn two_people(a: &Prepared, b: &Prepared, cmp: &Comparison) -> Option<Conflict> {
    if consecutive_ids(a, b) {
        return Some(Conflict::NationalId);
    }
    siblings_besides_ids(a, b, cmp)
}

/// [`two_people`]'s evidence other than sequential national IDs.
fn siblings_besides_ids(a: &Prepared, b: &Prepared, cmp: &Comparison) -> Option<Conflict> {
    let given = cmp.levels[f::GIVEN];
    if (1..=4).contains(&given)
        && (emails_name_two_people(a, b) || (cmp.disagrees(f::NATIONAL_ID) && cmp.exact(f::PHONE)))
    {
        return Some(Conflict::GivenName);
    }
    if !cmp.swapped && middle_names_differ(a, b) {
        return Some(Conflict::GivenName);
    }
    if cmp.disagrees(f::SEX) && (1..PLACEHOLDER).contains(&given) {
        return Some(Conflict::Sex);
    }
    None
}

/// A guard a one-to-one pairing of two deduplicated sources may override: a
/// different given name or birth date (a field rewritten in one source), but
/// not positive evidence of two people (sequential national IDs, look-alike
/// names each in its own email, different middle names, different suffixes or
/// sexes) nor a placeholder name.
pub(crate) fn overridable(a: &Prepared, b: &Prepared, s: &PairScore) -> bool {
    matches!(s.conflict, Some(Conflict::GivenName | Conflict::BirthDate))
        && !s.cmp.disagrees(f::SEX)
        && two_people(a, b, &s.cmp).is_none()
}

/// A conflict or incompatibility that a rewritten birth date or national ID
/// could cause: not clearly different given names, suffixes or sexes, nor
/// positive evidence of siblings other than near national IDs (look-alike
/// names each in its own email, different middle names), nor a placeholder
/// name.
pub(crate) fn rewritten_field(a: &Prepared, b: &Prepared, s: &PairScore) -> bool {
    let suffixes_differ = a.suffix != 0 && b.suffix != 0 && a.suffix != b.suffix;
    !suffixes_differ
        && !given_names_differ(a, b, &s.cmp)
        && !s.cmp.disagrees(f::SEX)
        && !matches!(
            s.conflict,
            Some(Conflict::Placeholder | Conflict::Suffix | Conflict::Sex)
        )
        && matches!(two_people(a, b, &s.cmp), None | Some(Conflict::NationalId))
}

/// A conflict or incompatibility whose only sign of two people is a pair of
/// national IDs that could be sequential (a twin's number, or a last-digit
/// typo), whatever the given names: no different suffixes or sexes, no
/// placeholder name, no look-alike names in their own emails, different middle
/// names or household with two IDs. Whether it is a typo the record's cluster
/// already settled is for the batch to tell (see `odd_id_explained`).
pub(crate) fn sequential_ids_only(a: &Prepared, b: &Prepared, s: &PairScore) -> bool {
    let suffixes_differ = a.suffix != 0 && b.suffix != 0 && a.suffix != b.suffix;
    consecutive_ids(a, b)
        && !suffixes_differ
        && !s.cmp.disagrees(f::SEX)
        && !matches!(
            s.conflict,
            Some(Conflict::Placeholder | Conflict::Suffix | Conflict::Sex)
        )
        && siblings_besides_ids(a, b, &s.cmp).is_none()
}

/// Two records' national IDs vouch for each other (the same, one typo, or
/// near with the rest of the record agreeing: see `national_id_vouches`).
pub(crate) fn ids_vouch(a: &Prepared, b: &Prepared) -> bool {
    national_id_vouches(a, b, &compare(a, b))
}

/// The identifying fields (birth date and national ID) both records have and
/// that differ.
pub(crate) fn differing_fields(a: &Prepared, b: &Prepared) -> Vec<usize> {
    [f::DOB, f::NATIONAL_ID]
        .into_iter()
        .filter(|field| present(a, *field) && present(b, *field) && !same_value(a, b, *field))
        .collect()
}

fn present(p: &Prepared, field: usize) -> bool {
    match field {
        f::GIVEN => !p.first_given().is_empty() && !p.is_placeholder(ph::GIVEN),
        f::DOB => p.dob.is_some() && !p.is_placeholder(ph::DOB),
        f::NATIONAL_ID => !p.national_id.is_empty() && !p.is_placeholder(ph::NATIONAL_ID),
        _ => false,
    }
}

/// Both records hold the same value of `field` (first given name, birth date
/// or national ID).
pub(crate) fn same_value(a: &Prepared, b: &Prepared, field: usize) -> bool {
    present(a, field)
        && present(b, field)
        && match field {
            f::GIVEN => a.first_given() == b.first_given(),
            f::DOB => a.dob == b.dob,
            f::NATIONAL_ID => a.national_id == b.national_id,
            _ => false,
        }
}

/// The pair agrees on something only the person has: the full birth date
/// together with the street address, phone or national ID, or an email that is
/// not a near miss. Twins share a birth date, address and phone; the ambiguity
/// check keeps a record that fits both of them out of either.
fn personal_identifier_agrees(cmp: &Comparison) -> bool {
    let dob = cmp.exact(f::DOB)
        && (cmp.exact(f::ADDRESS) || cmp.exact(f::PHONE) || cmp.levels[f::NATIONAL_ID] <= 1);
    dob || cmp.exact(f::EMAIL) || cmp.exact(f::NATIONAL_ID)
}

/// Two records no cluster may hold together unless they reach review on their
/// own: different generational suffixes, clearly different national IDs without
/// the same birth date and place (street, postal code or city), or clearly
/// different birth dates without a shared national ID. Linked only through a
/// third, sparser record they are two people (a household, a junior and senior,
/// two people with a common name); reaching review despite them is a rewritten
/// field. Positive evidence of siblings (see `two_people`) never joins one
/// cluster. Different national IDs with a shared phone or email and no birth
/// date are two members of one household however well the rest agrees.
pub(crate) fn incompatible(
    a: &Prepared,
    b: &Prepared,
    s: &PairScore,
    config: &MatchConfig,
) -> bool {
    // Names and a household's phone or email with two national IDs and no
    // birth date to tell them apart: two members of one household.
    let household =
        (s.cmp.exact(f::PHONE) || s.cmp.exact(f::EMAIL)) && s.cmp.levels[f::DOB] >= PLACEHOLDER;
    if s.cmp.disagrees(f::NATIONAL_ID) && household {
        return true;
    }
    let direct = s.conflict.is_none() && s.score >= config.review_threshold;
    let suffixes_differ = a.suffix != 0 && b.suffix != 0 && a.suffix != b.suffix;
    let siblings = !national_id_vouches(a, b, &s.cmp) && two_people(a, b, &s.cmp).is_some();
    !direct
        && (suffixes_differ
            || siblings
            || (s.cmp.disagrees(f::NATIONAL_ID)
                && (s.cmp.levels[f::DOB] > 2
                    || (s.cmp.levels[f::ADDRESS] > 2
                        && s.cmp.levels[f::POSTAL] > 1
                        && s.cmp.levels[f::CITY] > 1)))
            || (s.cmp.disagrees(f::DOB) && !national_id_vouches(a, b, &s.cmp)))
}

/// A shared national ID, or one a single typo apart, vouches for identity. So
/// does a near one the rest of the record backs (see `near_id_vouches`); IDs
/// that could have been issued in sequence (twins' and siblings' often are) need
/// the same given name and birth date to.
fn national_id_vouches(a: &Prepared, b: &Prepared, cmp: &Comparison) -> bool {
    match cmp.levels[f::NATIONAL_ID] {
        0 => true,
        1 if a.national_id.as_bytes().last() == b.national_id.as_bytes().last() => true,
        1 | 2 => near_id_vouches(a, b, cmp),
        _ => false,
    }
}

/// National IDs of one length within two edits (a changed last digit, two
/// digits transposed, two typos) vouch when the rest of the record agrees
/// strongly. IDs that could be sequential (only the last digit differs, or at
/// most [`SEQUENTIAL_ID_GAP`] apart: a twin's, or a last-digit typo) need the
/// same first given name (or two adjacent letters swapped: BENJAMNI) and birth
/// date (or its day/month swap, or one typo within the decade; or no birth date
/// on one side, with the same place): twins differ in the given name,
/// juniors/seniors in the birth date; the family name may have changed. Other
/// near IDs (a transposition, two typos: not a sibling's number) need two of an
/// alike given name, an alike family name and a birth date at most one edit
/// off, plus the same place (street alike, or postal code or city exact).
fn near_id_vouches(a: &Prepared, b: &Prepared, cmp: &Comparison) -> bool {
    let (x, y) = (&*a.national_id, &*b.national_id);
    if x.len() != y.len() || x.len() < 4 {
        return false;
    }
    let given = cmp.levels[f::GIVEN];
    let place = cmp.levels[f::ADDRESS] <= 2 || cmp.exact(f::POSTAL) || cmp.exact(f::CITY);
    if sequential_ids(x, y) {
        let dob = cmp.levels[f::DOB];
        let same_birth = dob <= 1 || (dob == 2 && year_gap(a, b) < 10);
        let same_given = given == 0 || letters_swapped(a.first_given(), b.first_given());
        return same_given && !cmp.swapped && (same_birth || (dob == MISSING && place));
    }
    let names_and_date = [
        given <= 2,
        cmp.levels[f::FAMILY] <= 4,
        cmp.levels[f::DOB] <= 2,
    ];
    names_and_date.iter().filter(|ok| **ok).count() >= 2 && place
}

/// One name with two adjacent letters swapped (BENJAMIN / BENJAMNI), at
/// least four letters long: a typo, where a substitution (MARK / MARC) or a
/// dropped letter (KAYLA / KYLA) may be another name.
fn letters_swapped(x: &str, y: &str) -> bool {
    let (x, y) = (x.as_bytes(), y.as_bytes());
    if x.len() != y.len() || x.len() < 4 {
        return false;
    }
    let differ: Vec<usize> = (0..x.len()).filter(|i| x[*i] != y[*i]).collect();
    matches!(differ.as_slice(), [i, j] if *j == i + 1 && x[*i] == y[*j] && x[*j] == y[*i])
}

/// Most that two national IDs issued in sequence (twins, triplets) differ by,
/// as numbers. Two adjacent digits transposed (..21 / ..12) differ by a
/// multiple of 9: a typo, not a sibling's number.
const SEQUENTIAL_ID_GAP: u64 = 3;

/// National IDs of one length that differ only in the last digit, or as numbers
/// by at most [`SEQUENTIAL_ID_GAP`] (...19 and ...20): twins are often issued
/// consecutive numbers.
fn sequential_ids(x: &str, y: &str) -> bool {
    if x.len() != y.len() || x.len() < 2 || x == y {
        return false;
    }
    let last_digit_only = x[..x.len() - 1] == y[..y.len() - 1];
    let close = match (x.parse::<u64>(), y.parse::<u64>()) {
        (Ok(p), Ok(q)) => p.abs_diff(q) <= SEQUENTIAL_ID_GAP,
        _ => false,
    };
    last_digit_only || close
}

/// Two names one edit apart, the longer of at least four letters: a typo more
/// likely than two different names (NOAH / OAH, but not TOM / TIM).
fn one_typo(x: &str, y: &str) -> bool {
    x.len().max(y.len()) >= 4
        && x.len().min(y.len()) >= 3
        && crate::strdist::osa(x.as_bytes(), y.as_bytes()) <= 1
}

/// National IDs that could have been issued in sequence, as twins' often are.
pub(crate) fn consecutive_ids(a: &Prepared, b: &Prepared) -> bool {
    sequential_ids(&a.national_id, &b.national_id)
}

fn year_gap(a: &Prepared, b: &Prepared) -> u16 {
    match (a.dob, b.dob) {
        (Some(x), Some(y)) => x.year.abs_diff(y.year),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_swapped_is_a_typo_not_another_name() {
        assert!(letters_swapped("BENJAMIN", "BENJAMNI"));
        assert!(letters_swapped("HARRIET", "HARREIT"));
        assert!(!letters_swapped("MARK", "MARC"), "a substitution");
        assert!(!letters_swapped("KAYLA", "KYLA"), "a dropped letter");
        assert!(!letters_swapped("BENJAMIN", "BENJAMIN"));
        assert!(!letters_swapped("BENJAMIN", "BNEJAMNI"), "two swaps");
        assert!(!letters_swapped("ABE", "AEB"), "too short");
    }

    #[test]
    fn sequential_ids_are_a_twins_numbers_not_a_transposition() {
        assert!(sequential_ids("321549870", "321549871"));
        assert!(sequential_ids("321549879", "321549870"), "last digit only");
        assert!(
            sequential_ids("321549819", "321549820"),
            "one apart across a ten"
        );
        assert!(sequential_ids("321549818", "321549821"), "triplets");
        assert!(!sequential_ids("4215401", "4215410"), "..01 / ..10: typo");
        assert!(!sequential_ids("321549870", "321549870"));
        assert!(!sequential_ids("2547", "321542547"), "masked");
    }
}
