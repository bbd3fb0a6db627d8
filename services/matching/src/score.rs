//! Scoring and decisions: the Fellegi-Sunter sum of match weights (term-frequency
//! adjusted for names), the conflict guards that keep twins, juniors/seniors and
//! household members apart, thresholds, FHIR match grades and explanations.

use rustc_hash::{FxHashMap, FxHasher};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};

use crate::compare::{
    Comparison, FIELDS, MAX_TF_BITS, MISSING, NFIELDS, PLACEHOLDER, compare, compare_bounded,
    emails_name_two_people, f, given_split_moved, middle_names_differ, possible_married_name,
};
use crate::model::{Model, TF_FIELDS, level_name};
use crate::normalize::{NormalizeConfig, Prepared, ph, prepare};
use crate::record::{Decision, Demographics, FieldWeight};

/// Decision thresholds and index bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MatchConfig {
    /// Score (bits, prior included) at or above which a pair is a MATCH.
    pub match_threshold: f64,
    /// Score at or above which a pair is a POSSIBLE_MATCH for review.
    pub review_threshold: f64,
    /// Score at or above which a MATCH is graded CERTAIN rather than PROBABLE.
    pub certain_threshold: f64,
    /// A pair scoring below this inside a cluster counts against linking to that
    /// cluster: near the prior, where its fields all told weigh against one
    /// person (a name-only pair with a changed family name weighs for it).
    pub conflict_threshold: f64,
    /// Largest blocking-key bucket used as is; larger ones fall back to narrower keys.
    pub max_block_size: usize,
    /// Most candidate records scored per lookup.
    pub max_candidates: usize,
    /// Most members of one master compared per lookup.
    pub max_cluster_members: usize,
    /// Adjust name agreement weights by how common the name is.
    pub term_frequency: bool,
    /// Source systems declared to hold each person at most once (a registry
    /// deduplicated at the source). Batch links by source
    /// ([`link_batch_sources`](crate::link_batch_sources)) never link two
    /// records of one such source, and a cluster holds at most one record of
    /// each; two such sources then pair one-to-one, and a pair that is each
    /// record's clearly best candidate in the other's source links despite a
    /// different given name or birth date (no sibling evidence). Empty (the
    /// default): no source is assumed deduplicated.
    pub deduplicated_sources: BTreeSet<String>,
    /// Normalization options.
    pub normalize: NormalizeConfig,
}

impl Default for MatchConfig {
    fn default() -> Self {
        Self {
            match_threshold: 8.0,
            review_threshold: 0.0,
            certain_threshold: 20.0,
            conflict_threshold: -12.0,
            max_block_size: 100,
            max_candidates: 200,
            max_cluster_members: 64,
            term_frequency: true,
            deduplicated_sources: BTreeSet::new(),
            normalize: NormalizeConfig::default(),
        }
    }
}

/// FHIR's match grade (`match-grade` extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MatchGrade {
    /// Certainly the same person.
    Certain,
    /// Probably the same person (a MATCH below the certain threshold).
    Probable,
    /// Possibly the same person: review.
    Possible,
    /// Not the same person.
    CertainlyNot,
}

/// Evidence that two records are different people however much else agrees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Conflict {
    /// Clearly different given names and no shared national ID (twins, siblings).
    GivenName,
    /// Clearly different birth dates and no shared national ID (junior/senior).
    BirthDate,
    /// National IDs that differ only in the last digit (twins, siblings).
    NationalId,
    /// Different generational suffixes (JR vs SR).
    Suffix,
    /// Different sex with not-identical given names (boy/girl twins).
    Sex,
    /// A placeholder name (BABY GIRL, JOHN DOE): too little identity to auto-link.
    Placeholder,
    /// Another record of the candidate master scores below the conflict threshold,
    /// or is incompatible with this one (a different national ID or birth date).
    ClusterMember,
    /// Another master fits the record almost as well.
    Ambiguous,
}

impl Conflict {
    fn level(self) -> &'static str {
        match self {
            Conflict::GivenName => "given_name_conflict",
            Conflict::BirthDate => "birth_date_conflict",
            Conflict::Suffix => "suffix_conflict",
            Conflict::NationalId => "consecutive_national_id",
            Conflict::Sex => "sex_conflict",
            Conflict::Placeholder => "placeholder_name",
            Conflict::ClusterMember => "cluster_member_conflict",
            Conflict::Ambiguous => "ambiguous",
        }
    }
}

/// Why two records got their score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// Total match weight in bits: prior, fields, term frequency and any guard.
    pub score: f64,
    /// The score as a probability.
    pub probability: f64,
    /// The decision under the default thresholds.
    pub decision: Decision,
    /// Per-field weights; a guard appears as field `guard`.
    pub field_weights: Vec<FieldWeight>,
    /// A conflict that bars an automatic link.
    pub conflict: Option<Conflict>,
}

/// Name frequencies for term-frequency adjustment.
#[derive(Debug, Clone, Default)]
pub(crate) struct TermFreq {
    counts: [FxHashMap<u64, u32>; 2],
    totals: [u64; 2],
}

/// Fewer values than this and frequencies are not trusted.
const MIN_TF_TOTAL: u64 = 200;

fn hash_str(s: &str) -> u64 {
    let mut h = FxHasher::default();
    s.hash(&mut h);
    h.finish()
}

fn tf_value(p: &Prepared, slot: usize) -> &str {
    if slot == 0 {
        p.first_given()
    } else {
        &p.family
    }
}

impl TermFreq {
    pub(crate) fn add(&mut self, p: &Prepared, delta: i64) {
        for slot in 0..2 {
            let v = tf_value(p, slot);
            if v.is_empty() {
                continue;
            }
            let c = self.counts[slot].entry(hash_str(v)).or_insert(0);
            if delta > 0 {
                *c += 1;
                self.totals[slot] += 1;
            } else if *c > 0 {
                *c -= 1;
                self.totals[slot] = self.totals[slot].saturating_sub(1);
            }
        }
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.counts.iter().map(|m| m.capacity() * 13).sum()
    }

    /// The term-frequency adjustment in bits for an exact agreement on `p`'s value.
    fn adjustment(&self, model: &Model, field: usize, p: &Prepared) -> f64 {
        let slot = usize::from(field == f::FAMILY);
        let total = self.totals[slot];
        if total < MIN_TF_TOTAL {
            return 0.0;
        }
        let count = self.counts[slot]
            .get(&hash_str(tf_value(p, slot)))
            .copied()
            .unwrap_or(0);
        let tf = (f64::from(count.max(1)) / total as f64).max(1e-6);
        (model.u_exact(field) / tf).log2().clamp(-8.0, MAX_TF_BITS)
    }
}

/// The raw score of a pair, before thresholds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PairScore {
    pub(crate) score: f64,
    pub(crate) cmp: Comparison,
    pub(crate) tf: [f64; 2],
    pub(crate) conflict: Option<Conflict>,
    /// The family name's disagreement was not held against the pair (see
    /// `possible_married_name`).
    pub(crate) married_name: bool,
}

/// Compares and scores two prepared records.
pub(crate) fn score_pair(
    model: &Model,
    a: &Prepared,
    b: &Prepared,
    tf: Option<&TermFreq>,
) -> PairScore {
    let fallback = PairScore {
        score: f64::NEG_INFINITY,
        cmp: Comparison {
            levels: [crate::compare::MISSING; NFIELDS],
            swapped: false,
        },
        tf: [0.0; 2],
        conflict: None,
        married_name: false,
    };
    score_pair_above(model, a, b, tf, f64::NEG_INFINITY).unwrap_or(fallback)
}

/// Scores a pair, or None when it certainly scores below `floor`.
pub(crate) fn score_pair_above(
    model: &Model,
    a: &Prepared,
    b: &Prepared,
    tf: Option<&TermFreq>,
    floor: f64,
) -> Option<PairScore> {
    let bound = floor.is_finite().then_some((model, floor));
    let cmp = compare_bounded(a, b, bound)?;
    let mut score = model.prior_match_weight;
    for (field, level) in cmp.levels.iter().enumerate() {
        score += model.weight(field, *level);
    }
    if cmp.swapped {
        score -= 1.0;
    }
    let married_name = possible_married_name(a, b, &cmp.levels);
    if married_name {
        score -= model.weight(f::FAMILY, cmp.levels[f::FAMILY]);
    }
    let mut tfs = [0.0; 2];
    if let Some(tf) = tf {
        for (i, field) in TF_FIELDS.iter().enumerate() {
            if cmp.exact(*field) && !cmp.swapped {
                tfs[i] = tf.adjustment(model, *field, a);
                score += tfs[i];
            }
        }
    }
    Some(PairScore {
        score,
        cmp,
        tf: tfs,
        conflict: conflict(a, b, &cmp),
        married_name,
    })
}

fn conflict(a: &Prepared, b: &Prepared, cmp: &Comparison) -> Option<Conflict> {
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

/// A record's best link must beat any link to a different person by this many
/// bits, or it does not link automatically.
pub(crate) const AMBIGUITY_MARGIN: f64 = 4.0;

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

/// Applies the guard and thresholds: final score, decision, grade, guard weight.
pub(crate) fn decide(
    score: f64,
    conflict: Option<Conflict>,
    config: &MatchConfig,
) -> (f64, Decision, MatchGrade, f64) {
    let mut guard = 0.0;
    let mut score = score;
    if conflict.is_some() {
        let cap = (config.match_threshold - 1.0).max(config.review_threshold);
        if score > cap {
            guard = cap - score;
            score = cap;
        }
    }
    let (decision, grade) = if score >= config.match_threshold {
        let grade = if score >= config.certain_threshold {
            MatchGrade::Certain
        } else {
            MatchGrade::Probable
        };
        (Decision::Match, grade)
    } else if score >= config.review_threshold {
        (Decision::PossibleMatch, MatchGrade::Possible)
    } else {
        (Decision::NoMatch, MatchGrade::CertainlyNot)
    };
    (score, decision, grade, guard)
}

/// Score to probability.
pub(crate) fn probability(score: f64) -> f64 {
    1.0 / (1.0 + (-score).exp2())
}

/// Per-field weights of a scored pair, plus the guard when it applied.
pub(crate) fn field_weights(model: &Model, s: &PairScore, guard: f64) -> Vec<FieldWeight> {
    let mut out = Vec::with_capacity(NFIELDS + 2);
    for (field, level) in s.cmp.levels.iter().enumerate() {
        let tf = TF_FIELDS
            .iter()
            .position(|x| *x == field)
            .map_or(0.0, |i| s.tf[i]);
        out.push(FieldWeight {
            field: FIELDS[field].0.to_owned(),
            level: level_name(field, *level).to_owned(),
            weight: model.weight(field, *level) + tf,
            term_frequency_adjustment: tf,
        });
    }
    if s.cmp.swapped {
        out.push(FieldWeight {
            field: "name_order".into(),
            level: "given_family_swapped".into(),
            weight: -1.0,
            term_frequency_adjustment: 0.0,
        });
    }
    if s.married_name {
        out.push(FieldWeight {
            field: "family_name_change".into(),
            level: "possible_married_name".into(),
            weight: -model.weight(f::FAMILY, s.cmp.levels[f::FAMILY]),
            term_frequency_adjustment: 0.0,
        });
    }
    if let Some(c) = s.conflict {
        out.push(FieldWeight {
            field: "guard".into(),
            level: c.level().into(),
            weight: guard,
            term_frequency_adjustment: 0.0,
        });
    }
    out
}

/// Explains how two records compare under `model` and the default thresholds
/// (no term-frequency adjustment: that needs an index's name counts).
pub fn explain(model: &Model, a: &Demographics, b: &Demographics) -> Explanation {
    let config = MatchConfig::default();
    let pa = prepare(a, &config.normalize);
    let pb = prepare(b, &config.normalize);
    explain_prepared(model, &pa, &pb, None, &config)
}

pub(crate) fn explain_prepared(
    model: &Model,
    a: &Prepared,
    b: &Prepared,
    tf: Option<&TermFreq>,
    config: &MatchConfig,
) -> Explanation {
    let s = score_pair(model, a, b, tf);
    let (score, decision, _, guard) = decide(s.score, s.conflict, config);
    Explanation {
        score,
        probability: probability(score),
        decision,
        field_weights: field_weights(model, &s, guard),
        conflict: s.conflict,
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
