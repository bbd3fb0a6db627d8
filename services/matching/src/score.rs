//! Scoring and decisions: the Fellegi-Sunter sum of match weights (term-frequency
//! adjusted for names), the conflict guards that keep twins, juniors/seniors and
//! household members apart, thresholds, FHIR match grades and explanations.

use rustc_hash::{FxHashMap, FxHasher};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};

use crate::compare::{
    Comparison, FIELDS, MAX_TF_BITS, NFIELDS, compare_bounded, f, possible_married_name,
};
use crate::guards::conflict;
use crate::model::{Model, TF_FIELDS, level_name};
use crate::normalize::{NormalizeConfig, Prepared, prepare};
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

/// A record's best link must beat any link to a different person by this many
/// bits, or it does not link automatically.
pub(crate) const AMBIGUITY_MARGIN: f64 = 4.0;

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
