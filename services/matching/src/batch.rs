//! Batch deduplication: block, score candidate pairs in parallel, then cluster
//! greedily from the strongest link down, refusing any merge that would put two
//! conflicting records (twins, junior/senior) in one cluster.

use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use crate::blocking::keys;
use crate::compare::f;
use crate::model::Model;
use crate::normalize::{Prepared, prepare};
use crate::record::Demographics;
use crate::score::{
    AMBIGUITY_MARGIN, Conflict, MatchConfig, TermFreq, incompatible, score_pair, score_pair_above,
};

/// Most cross-cluster pairs checked before a merge.
const MAX_MERGE_CHECKS: usize = 1024;

/// Most rival links checked per record.
const MAX_RIVALS: usize = 16;

/// What a batch link did, besides the clusters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Cluster number per input row, as [`link_batch`] returns.
    pub clusters: Vec<u32>,
    /// Record-key lookups whose block was too large and used the narrower key.
    pub oversized_blocks: u64,
    /// Of those, lookups still too large after narrowing (skipped; the record was
    /// still compared through its other keys).
    pub skipped_blocks: u64,
    /// Candidate pairs compared.
    pub compared_pairs: u64,
    /// Pairs that reached the match threshold without a conflict.
    pub match_links: u64,
}

/// Deduplicates `records`: returns a cluster number per input row (same length,
/// numbered from 0 in order of first appearance). Rows cluster together only
/// through MATCH links, and never when a pair across the two clusters conflicts.
pub fn link_batch(records: &[Demographics], model: &Model, config: &MatchConfig) -> Vec<u32> {
    link_batch_report(records, model, config).clusters
}

/// [`link_batch`], with counts of oversized blocks, compared pairs and links.
pub fn link_batch_report(
    records: &[Demographics],
    model: &Model,
    config: &MatchConfig,
) -> BatchReport {
    let prepared: Vec<Prepared> = records
        .par_iter()
        .map(|d| prepare(d, &config.normalize))
        .collect();
    let tf = config.term_frequency.then(|| {
        let mut tf = TermFreq::default();
        for p in &prepared {
            tf.add(p, 1);
        }
        tf
    });
    let mut report = BatchReport::default();
    let edges = match_edges(&prepared, model, config, tf.as_ref(), &mut report);
    report.match_links = edges.len() as u64;
    report.clusters = cluster(&prepared, edges, model, config, tf.as_ref());
    report
}

/// Blocked pairs scoring at or above the match threshold without conflict.
fn match_edges(
    prepared: &[Prepared],
    model: &Model,
    config: &MatchConfig,
    tf: Option<&TermFreq>,
    report: &mut BatchReport,
) -> Vec<(f64, u32, u32)> {
    let record_keys: Vec<_> = prepared.par_iter().map(keys).collect();
    // Blocks as runs of one sorted vector of (key, record): wide keys, plus the
    // narrow keys of records whose wide block is oversized.
    let max_block = config.max_block_size;
    let mut entries: Vec<(u64, u32)> = record_keys
        .iter()
        .enumerate()
        .flat_map(|(i, ks)| {
            ks.iter()
                .map(move |k| (k.wide, u32::try_from(i).unwrap_or(u32::MAX)))
        })
        .collect();
    entries.par_sort_unstable();
    let wide_runs = runs(&entries);
    let narrow: Vec<(u64, u32)> = record_keys
        .par_iter()
        .enumerate()
        .flat_map_iter(|(i, ks)| {
            let wide_runs = &wide_runs;
            ks.iter().filter_map(move |k| {
                let n = k.narrow?;
                let len = wide_runs.get(&k.wide).map_or(1, |r| r.1 as usize);
                (len > max_block).then(|| (n, u32::try_from(i).unwrap_or(u32::MAX)))
            })
        })
        .collect();
    drop(wide_runs);
    entries.extend(narrow);
    entries.par_sort_unstable();
    let runs = runs(&entries);
    let run = |key: u64| -> std::ops::Range<usize> {
        runs.get(&key)
            .map_or(0..0, |(s, n)| *s as usize..(*s + *n) as usize)
    };
    let per_record_cap = config.max_candidates.saturating_mul(4).max(16);
    let entries = &entries;
    let oversized = AtomicU64::new(0);
    let skipped = AtomicU64::new(0);
    let compared = AtomicU64::new(0);
    let (oversized_ref, skipped_ref, compared_ref) = (&oversized, &skipped, &compared);
    let mut edges: Vec<(f64, u32, u32)> = (0..prepared.len())
        .into_par_iter()
        .flat_map_iter(|i| {
            let me = u32::try_from(i).unwrap_or(u32::MAX);
            let mut js: Vec<u32> = Vec::new();
            for k in &record_keys[i] {
                let mut block = run(k.wide);
                if block.len() > max_block {
                    oversized_ref.fetch_add(1, Ordering::Relaxed);
                    block = k.narrow.map_or(0..0, run);
                    if block.len() > max_block {
                        skipped_ref.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if block.len() <= max_block {
                    js.extend(entries[block].iter().map(|e| e.1).filter(|j| *j > me));
                }
            }
            js.sort_unstable();
            js.dedup();
            js.truncate(per_record_cap);
            compared_ref.fetch_add(js.len() as u64, Ordering::Relaxed);
            let a = &prepared[i];
            let floor = config.match_threshold - AMBIGUITY_MARGIN;
            js.into_iter().filter_map(move |j| {
                let s = score_pair_above(model, a, &prepared[j as usize], tf, floor)?;
                (s.conflict.is_none() && s.score >= floor).then_some((s.score, me, j))
            })
        })
        .collect();
    let ambiguous = ambiguous_records(prepared, &edges, model, config, tf);
    edges.retain(|(s, a, b)| {
        *s >= config.match_threshold && !ambiguous[*a as usize] && !ambiguous[*b as usize]
    });
    report.oversized_blocks = oversized.into_inner();
    report.skipped_blocks = skipped.into_inner();
    report.compared_pairs = compared.into_inner();
    edges.par_sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    edges
}

/// Records whose best link is not clearly better than a link to someone else:
/// a rival within [`AMBIGUITY_MARGIN`] bits of the best that is a different
/// person from the best (a guard conflict other than a placeholder name, which
/// says nothing either way, or a score below the conflict
/// threshold: fields that weigh against one person, not merely two sparse rows
/// of one person sharing little). A name-and-address row of a household, or a
/// name-and-email row of a common name, fits several people equally and joins
/// none of them.
fn ambiguous_records(
    prepared: &[Prepared],
    edges: &[(f64, u32, u32)],
    model: &Model,
    config: &MatchConfig,
    tf: Option<&TermFreq>,
) -> Vec<bool> {
    let mut adjacent: Vec<Vec<(f64, u32)>> = vec![Vec::new(); prepared.len()];
    for (s, a, b) in edges {
        adjacent[*a as usize].push((*s, *b));
        adjacent[*b as usize].push((*s, *a));
    }
    adjacent
        .par_iter_mut()
        .map(|near| {
            if near.len() < 2 {
                return false;
            }
            near.sort_unstable_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
            let (best, top) = near[0];
            if best < config.match_threshold {
                return false;
            }
            near[1..]
                .iter()
                .take_while(|(s, _)| *s >= best - AMBIGUITY_MARGIN)
                .take(MAX_RIVALS)
                .any(|(_, rival)| {
                    let (x, y) = (&prepared[top as usize], &prepared[*rival as usize]);
                    let s = score_pair(model, x, y, tf);
                    let other_person = s.conflict.is_some_and(|c| c != Conflict::Placeholder);
                    other_person || s.score < config.conflict_threshold
                })
        })
        .collect()
}

/// Runs of two or more equal keys in sorted entries: key -> (start, length).
/// Single-record keys pair nothing and are left out.
fn runs(entries: &[(u64, u32)]) -> FxHashMap<u64, (u32, u32)> {
    let mut runs: FxHashMap<u64, (u32, u32)> = FxHashMap::default();
    let mut start = 0usize;
    while start < entries.len() {
        let key = entries[start].0;
        let end = start + entries[start..].iter().take_while(|e| e.0 == key).count();
        if end - start > 1 {
            let at = u32::try_from(start).unwrap_or(u32::MAX);
            runs.insert(key, (at, u32::try_from(end - start).unwrap_or(u32::MAX)));
        }
        start = end;
    }
    runs
}

fn find(parent: &mut [u32], mut x: u32) -> u32 {
    while parent[x as usize] != x {
        let p = parent[x as usize];
        parent[x as usize] = parent[p as usize];
        x = p;
    }
    x
}

fn cluster(
    prepared: &[Prepared],
    edges: Vec<(f64, u32, u32)>,
    model: &Model,
    config: &MatchConfig,
    tf: Option<&TermFreq>,
) -> Vec<u32> {
    let n = prepared.len();
    let mut parent: Vec<u32> = (0..n)
        .map(|i| u32::try_from(i).unwrap_or(u32::MAX))
        .collect();
    let mut members: FxHashMap<u32, Vec<u32>> = FxHashMap::default();
    for (_, a, b) in edges {
        let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
        if ra == rb {
            continue;
        }
        let ma = members.get(&ra).cloned().unwrap_or_else(|| vec![ra]);
        let mb = members.get(&rb).cloned().unwrap_or_else(|| vec![rb]);
        // Cross pairs vote: a merge needs more supporting pairs (MATCH without
        // conflict) than conflicting ones, so a single weak bridge never joins
        // two people (twins each with one record conflict 1:1 and stay apart).
        // A single incompatible pair (two national IDs, two birth dates, JR and
        // SR) vetoes the merge outright.
        let (mut support, mut against) = (0usize, 0usize);
        let mut best_support = f64::NEG_INFINITY;
        let mut vetoed = false;
        for (x, y) in ma
            .iter()
            .flat_map(|x| mb.iter().map(move |y| (*x, *y)))
            .take(MAX_MERGE_CHECKS)
        {
            let (px, py) = (&prepared[x as usize], &prepared[y as usize]);
            let s = score_pair(model, px, py, tf);
            if incompatible(px, py, &s, config) {
                vetoed = true;
                break;
            }
            if s.conflict.is_some() || s.score < config.conflict_threshold {
                against += 1;
            } else if s.score >= config.match_threshold {
                support += 1;
                if s.cmp.levels[f::GIVEN] <= 1 && s.cmp.levels[f::FAMILY] <= 1 {
                    best_support = best_support.max(s.score);
                }
            }
        }
        // A tie is broken by a certain link with the same name (exact or a
        // nickname): one record mistyped or truncated (SA for SAMUEL) in a
        // cluster its national ID vouches for does not keep out a record that
        // agrees with the rest beyond doubt.
        let tie_broken = support == against && best_support >= config.certain_threshold;
        let conflicting = vetoed || (against > 0 && support <= against && !tie_broken);
        if conflicting {
            continue;
        }
        let (root, child) = if ma.len() >= mb.len() {
            (ra, rb)
        } else {
            (rb, ra)
        };
        parent[child as usize] = root;
        members.remove(&ra);
        members.remove(&rb);
        let mut all = ma;
        all.extend(mb);
        members.insert(root, all);
    }
    let mut ids: FxHashMap<u32, u32> = FxHashMap::default();
    (0..n)
        .map(|i| {
            let r = find(&mut parent, u32::try_from(i).unwrap_or(u32::MAX));
            let next = u32::try_from(ids.len()).unwrap_or(u32::MAX);
            *ids.entry(r).or_insert(next)
        })
        .collect()
}
