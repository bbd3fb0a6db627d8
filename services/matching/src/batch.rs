//! Batch deduplication: block, score candidate pairs in parallel, then cluster
//! greedily from the strongest link down, refusing any merge that would put two
//! conflicting records (twins, junior/senior) in one cluster.

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use crate::blocking::keys;
use crate::model::Model;
use crate::normalize::{Prepared, prepare};
use crate::record::Demographics;
use crate::score::{MatchConfig, TermFreq, score_pair};

/// Most cross-cluster pairs checked before a merge.
const MAX_MERGE_CHECKS: usize = 1024;

/// Deduplicates `records`: returns a cluster number per input row (same length,
/// numbered from 0 in order of first appearance). Rows cluster together only
/// through MATCH links, and never when a pair across the two clusters conflicts.
pub fn link_batch(records: &[Demographics], model: &Model, config: &MatchConfig) -> Vec<u32> {
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
    let edges = match_edges(&prepared, model, config, tf.as_ref());
    cluster(&prepared, edges, model, config, tf.as_ref())
}

/// Blocked pairs scoring at or above the match threshold without conflict.
fn match_edges(
    prepared: &[Prepared],
    model: &Model,
    config: &MatchConfig,
    tf: Option<&TermFreq>,
) -> Vec<(f64, u32, u32)> {
    let record_keys: Vec<_> = prepared.par_iter().map(keys).collect();
    let mut blocks: FxHashMap<u64, Vec<u32>> = FxHashMap::default();
    for (i, ks) in record_keys.iter().enumerate() {
        let i = u32::try_from(i).unwrap_or(u32::MAX);
        for k in ks {
            blocks.entry(k.wide).or_default().push(i);
            if let Some(n) = k.narrow {
                blocks.entry(n).or_default().push(i);
            }
        }
    }
    let max_block = config.max_block_size;
    let per_record_cap = config.max_candidates.saturating_mul(4).max(16);
    let mut edges: Vec<(f64, u32, u32)> = (0..prepared.len())
        .into_par_iter()
        .flat_map_iter(|i| {
            let me = u32::try_from(i).unwrap_or(u32::MAX);
            let mut js: Vec<u32> = Vec::new();
            for k in &record_keys[i] {
                let wide = blocks.get(&k.wide).filter(|b| b.len() <= max_block);
                let block = wide.or_else(|| {
                    k.narrow
                        .and_then(|n| blocks.get(&n))
                        .filter(|b| b.len() <= max_block)
                });
                if let Some(b) = block {
                    js.extend(b.iter().filter(|j| **j > me));
                }
            }
            js.sort_unstable();
            js.dedup();
            js.truncate(per_record_cap);
            let a = &prepared[i];
            js.into_iter().filter_map(move |j| {
                let s = score_pair(model, a, &prepared[j as usize], tf);
                (s.conflict.is_none() && s.score >= config.match_threshold)
                    .then_some((s.score, me, j))
            })
        })
        .collect();
    edges.par_sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    edges
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
        let (mut support, mut against) = (0usize, 0usize);
        for (x, y) in ma
            .iter()
            .flat_map(|x| mb.iter().map(move |y| (*x, *y)))
            .take(MAX_MERGE_CHECKS)
        {
            let s = score_pair(model, &prepared[x as usize], &prepared[y as usize], tf);
            if s.conflict.is_some() || s.score < config.conflict_threshold {
                against += 1;
            } else if s.score >= config.match_threshold {
                support += 1;
            }
        }
        let conflicting = against > 0 && support <= against;
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
