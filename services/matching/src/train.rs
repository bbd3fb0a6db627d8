//! Unsupervised training. u (the chance of each level among non-matches) comes from
//! comparing random record pairs; m (among matches) from expectation-maximisation
//! over pairs blocked by several rules (birth date, name, national ID), each
//! session estimating only the fields its rule does not constrain (as Splink does). Sparse levels are shrunk toward the
//! built-in model, so a field absent from the data keeps its built-in weights.

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use rayon::prelude::*;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::compare::{Comparison, FIELDS, NFIELDS, PLACEHOLDER, compare, f};
use crate::error::MatchError;
use crate::model::{FieldModel, LevelModel, Model};
use crate::normalize::{NormalizeConfig, Prepared, prepare};
use crate::record::Demographics;

/// Training options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Random pairs compared to estimate u.
    pub u_sample_pairs: usize,
    /// Seed of the pair sampler (training is deterministic for a seed).
    pub seed: u64,
    /// EM iterations per session.
    pub em_iterations: usize,
    /// Blocks larger than this are skipped when generating EM pairs.
    pub max_block_size: usize,
    /// Most pairs per EM session.
    pub max_pairs_per_rule: usize,
    /// Weight of the built-in model, in pseudo-pairs, when estimating m and u.
    pub prior_strength: f64,
    /// Normalization options (use the ones the index will use).
    pub normalize: NormalizeConfig,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            u_sample_pairs: 2_000_000,
            seed: 0x5eed,
            em_iterations: 40,
            max_block_size: 200,
            max_pairs_per_rule: 2_000_000,
            prior_strength: 20.0,
            normalize: NormalizeConfig::default(),
        }
    }
}

/// Comparison patterns with their counts.
type Patterns = FxHashMap<[u8; NFIELDS], f64>;

/// Trains a model on unlabelled records.
pub fn train(records: &[Demographics], config: &TrainConfig) -> Result<Model, MatchError> {
    if records.len() < 2 {
        return Err(MatchError::Training("need at least two records"));
    }
    let prepared: Vec<Prepared> = records
        .par_iter()
        .map(|d| prepare(d, &config.normalize))
        .collect();
    let builtin = Model::builtin();
    let u = estimate_u(&prepared, config, &builtin);
    let (m, matches) = estimate_m(&prepared, config, &builtin, &u);
    let n = prepared.len() as f64;
    let pairs = n * (n - 1.0) / 2.0;
    let lambda = (matches / pairs).clamp(1e-9, 0.5);
    let prior = (lambda / (1.0 - lambda)).log2().clamp(-24.0, -4.0);
    let fields = FIELDS
        .iter()
        .enumerate()
        .map(|(fi, (name, levels))| FieldModel {
            name: (*name).to_owned(),
            levels: levels
                .iter()
                .enumerate()
                .map(|(li, l)| LevelModel {
                    name: (*l).to_owned(),
                    m: m[fi][li],
                    u: u[fi][li],
                })
                .collect(),
        })
        .collect();
    Model::new(
        format!("trained on {} records", prepared.len()),
        prior,
        fields,
    )
}

fn builtin_probs(builtin: &Model, field: usize, m: bool) -> Vec<f64> {
    builtin.fields[field]
        .levels
        .iter()
        .map(|l| if m { l.m } else { l.u })
        .collect()
}

/// Shrinks observed level counts toward `prior` probabilities and normalizes.
fn shrink(counts: &[f64], prior: &[f64], strength: f64) -> Vec<f64> {
    let total: f64 = counts.iter().sum();
    counts
        .iter()
        .zip(prior)
        .map(|(c, p)| ((c + strength * p) / (total + strength)).clamp(1e-7, 1.0))
        .collect()
}

fn estimate_u(prepared: &[Prepared], config: &TrainConfig, builtin: &Model) -> Vec<Vec<f64>> {
    let n = prepared.len();
    let total_pairs = n.saturating_mul(n - 1) / 2;
    let samples = config.u_sample_pairs.min(total_pairs).max(1);
    let chunks = 64usize;
    let per_chunk = samples.div_ceil(chunks);
    let counts: Vec<Vec<f64>> = (0..chunks)
        .into_par_iter()
        .map(|c| {
            // One stream per chunk, so the sample does not depend on which
            // thread runs which chunk.
            let mut rng = ChaCha8Rng::seed_from_u64(
                config.seed ^ (c as u64).wrapping_mul(0x1234_5678_9abc_def1),
            );
            let mut counts: Vec<Vec<f64>> =
                FIELDS.iter().map(|(_, l)| vec![0.0; l.len()]).collect();
            for _ in 0..per_chunk {
                let i = rng.random_range(0..n);
                let mut j = rng.random_range(0..n - 1);
                if j >= i {
                    j += 1;
                }
                let cmp = compare(&prepared[i], &prepared[j]);
                for (fi, l) in cmp.levels.iter().enumerate() {
                    if *l < PLACEHOLDER {
                        counts[fi][usize::from(*l)] += 1.0;
                    }
                }
            }
            counts
        })
        .reduce(
            || FIELDS.iter().map(|(_, l)| vec![0.0; l.len()]).collect(),
            |mut a, b| {
                for (x, y) in a.iter_mut().zip(b) {
                    for (p, q) in x.iter_mut().zip(y) {
                        *p += q;
                    }
                }
                a
            },
        );
    counts
        .iter()
        .enumerate()
        .map(|(fi, c)| {
            shrink(
                c,
                &builtin_probs(builtin, fi, false),
                config.prior_strength * 10.0,
            )
        })
        .collect()
}

/// A blocking rule for EM: the key of a record, and the fields it constrains.
struct Rule {
    key: fn(&Prepared) -> Option<String>,
    fixed: &'static [usize],
}

/// Blocking rules for EM sessions. Address, phone and email are deliberately not
/// rules: pairs sharing them are mostly household members, whom EM would take for
/// matches and so learn that names and birth dates need not agree.
const RULES: &[Rule] = &[
    Rule {
        key: |p| {
            p.dob
                .filter(|d| d.day > 0)
                .map(|d| format!("{}-{}-{}", d.year, d.month, d.day))
        },
        fixed: &[f::DOB],
    },
    Rule {
        key: |p| {
            (!p.family.is_empty())
                .then(|| format!("{}|{}", p.family, &p.first_given().get(..1).unwrap_or("")))
        },
        fixed: &[f::FAMILY, f::GIVEN],
    },
    Rule {
        key: |p| (!p.national_id.is_empty()).then(|| p.national_id.to_string()),
        fixed: &[f::NATIONAL_ID],
    },
];

fn rule_patterns(prepared: &[Prepared], rule: &Rule, config: &TrainConfig) -> Patterns {
    let mut blocks: FxHashMap<String, Vec<u32>> = FxHashMap::default();
    for (i, p) in prepared.iter().enumerate() {
        if let Some(k) = (rule.key)(p) {
            blocks
                .entry(k)
                .or_default()
                .push(u32::try_from(i).unwrap_or(u32::MAX));
        }
    }
    let mut pairs: Vec<(u32, u32)> = Vec::new();
    let mut block_list: Vec<_> = blocks
        .into_values()
        .filter(|b| b.len() > 1 && b.len() <= config.max_block_size)
        .collect();
    block_list.sort_unstable();
    for b in &block_list {
        for (x, i) in b.iter().enumerate() {
            for j in &b[x + 1..] {
                pairs.push((*i, *j));
            }
        }
    }
    let stride = pairs
        .len()
        .div_ceil(config.max_pairs_per_rule.max(1))
        .max(1);
    pairs
        .par_iter()
        .step_by(stride)
        .map(|(i, j)| {
            let mut cmp: Comparison = compare(&prepared[*i as usize], &prepared[*j as usize]);
            for fi in rule.fixed {
                cmp.levels[*fi] = PLACEHOLDER;
            }
            cmp.levels
        })
        .fold(Patterns::default, |mut acc, levels| {
            *acc.entry(levels).or_insert(0.0) += 1.0;
            acc
        })
        .reduce(Patterns::default, |mut a, b| {
            for (k, v) in b {
                *a.entry(k).or_insert(0.0) += v;
            }
            a
        })
}

/// Runs EM sessions; returns m per field/level and the estimated number of
/// matching pairs in the whole data set.
fn estimate_m(
    prepared: &[Prepared],
    config: &TrainConfig,
    builtin: &Model,
    u: &[Vec<f64>],
) -> (Vec<Vec<f64>>, f64) {
    let mut sums: Vec<Vec<f64>> = FIELDS.iter().map(|(_, l)| vec![0.0; l.len()]).collect();
    let mut session_matches: Vec<(usize, f64)> = Vec::new();
    let mut dob_exact_m = Vec::new();
    for (ri, rule) in RULES.iter().enumerate() {
        let patterns = rule_patterns(prepared, rule, config);
        if patterns.is_empty() {
            continue;
        }
        let (m, expected, counts) = em(&patterns, rule.fixed, builtin, u, config);
        for fi in 0..NFIELDS {
            if rule.fixed.contains(&fi) {
                continue;
            }
            for (li, c) in counts[fi].iter().enumerate() {
                sums[fi][li] += c;
            }
        }
        if !rule.fixed.contains(&f::DOB) {
            dob_exact_m.push(m[f::DOB][0]);
        }
        session_matches.push((ri, expected));
    }
    let m: Vec<Vec<f64>> = sums
        .iter()
        .enumerate()
        .map(|(fi, c)| shrink(c, &builtin_probs(builtin, fi, true), config.prior_strength))
        .collect();
    // Matches found by the DOB rule, divided by the share of matches that agree
    // exactly on DOB, estimate all matches.
    let matches = session_matches
        .iter()
        .find(|(ri, _)| *ri == 0)
        .map_or(prepared.len() as f64 * 0.1, |(_, e)| {
            e / m[f::DOB][0].max(0.05)
        });
    (m, matches)
}

/// One EM session over comparison patterns with u fixed. Returns m, the expected
/// number of matching pairs, and the expected match counts per field level.
fn em(
    patterns: &Patterns,
    fixed: &[usize],
    builtin: &Model,
    u: &[Vec<f64>],
    config: &TrainConfig,
) -> (Vec<Vec<f64>>, f64, Vec<Vec<f64>>) {
    let mut m: Vec<Vec<f64>> = (0..NFIELDS)
        .map(|fi| builtin_probs(builtin, fi, true))
        .collect();
    let total: f64 = patterns.values().sum();
    let mut lambda = 0.1f64;
    let mut counts: Vec<Vec<f64>> = FIELDS.iter().map(|(_, l)| vec![0.0; l.len()]).collect();
    let mut expected = 0.0;
    let pats: Vec<(&[u8; NFIELDS], f64)> = patterns.iter().map(|(k, v)| (k, *v)).collect();
    for _ in 0..config.em_iterations {
        for c in &mut counts {
            c.iter_mut().for_each(|x| *x = 0.0);
        }
        expected = 0.0;
        for (levels, n) in &pats {
            let mut lm = lambda.ln();
            let mut lu = (1.0 - lambda).ln();
            for (fi, l) in levels.iter().enumerate() {
                if *l >= PLACEHOLDER || fixed.contains(&fi) {
                    continue;
                }
                lm += m[fi][usize::from(*l)].max(1e-9).ln();
                lu += u[fi][usize::from(*l)].max(1e-9).ln();
            }
            let p = 1.0 / (1.0 + (lu - lm).exp());
            expected += p * n;
            for (fi, l) in levels.iter().enumerate() {
                if *l < PLACEHOLDER && !fixed.contains(&fi) {
                    counts[fi][usize::from(*l)] += p * n;
                }
            }
        }
        lambda = (expected / total).clamp(1e-6, 0.999);
        for fi in 0..NFIELDS {
            if !fixed.contains(&fi) {
                m[fi] = shrink(
                    &counts[fi],
                    &builtin_probs(builtin, fi, true),
                    config.prior_strength,
                );
            }
        }
    }
    (m, expected, counts)
}
