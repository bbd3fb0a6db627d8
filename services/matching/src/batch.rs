//! Batch deduplication: block, score candidate pairs in parallel, then cluster
//! greedily from the strongest link down, refusing any merge that would put two
//! conflicting records (twins, junior/senior) in one cluster.

use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::blocking::keys;
use crate::compare::f;
use crate::guards::{
    consecutive_ids, differing_fields, ids_vouch, incompatible, overridable, rewritten_field,
    same_value, sequential_ids_only,
};
use crate::model::Model;
use crate::normalize::{Prepared, prepare};
use crate::record::Demographics;
use crate::score::{
    AMBIGUITY_MARGIN, Conflict, MatchConfig, TermFreq, score_pair, score_pair_above,
};

/// Most cross-cluster pairs checked before a merge.
const MAX_MERGE_CHECKS: usize = 1024;

/// Most rival links checked per record.
const MAX_RIVALS: usize = 16;

/// A link between two records: (score, lower record, higher record).
type Edge = (f64, u32, u32);

/// A scored candidate pair: (score, a, b, no conflict, a conflict one-to-one
/// may override).
type Scored = (f64, u32, u32, bool, bool);

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
    /// Pairs that reached the match threshold without a conflict, or as
    /// one-to-one links.
    pub match_links: u64,
    /// Of those, links between records of two deduplicated sources taken
    /// despite a soft guard (see [`link_batch_sources`]).
    pub one_to_one_links: u64,
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
    link(records, &[], model, config)
}

/// [`link_batch_report`] for records of named source systems: `sources[i]` is
/// the system of `records[i]`. Records of a source listed in the config's
/// `deduplicated_sources` are never linked to each other, and no cluster holds
/// two of them. Without such sources it links as [`link_batch_report`] does.
pub fn link_batch_sources<S: AsRef<str>>(
    records: &[Demographics],
    sources: &[S],
    model: &Model,
    config: &MatchConfig,
) -> BatchReport {
    let declared: Vec<&String> = config.deduplicated_sources.iter().collect();
    let groups: Vec<u32> = if declared.is_empty() {
        Vec::new()
    } else {
        sources
            .iter()
            .map(|s| {
                declared
                    .iter()
                    .position(|d| d.as_str() == s.as_ref())
                    .map_or(NO_GROUP, |g| u32::try_from(g).unwrap_or(NO_GROUP))
            })
            .collect()
    };
    link(records, &groups, model, config)
}

/// Group of a record of no deduplicated source.
const NO_GROUP: u32 = u32::MAX;

/// A batch's deduplicated-source groups: `groups[i]` is record i's declared
/// deduplicated source (or [`NO_GROUP`]); empty when none is declared.
#[derive(Clone, Copy)]
struct Groups<'a>(&'a [u32]);

impl Groups<'_> {
    fn of(self, i: u32) -> u32 {
        self.0.get(i as usize).copied().unwrap_or(NO_GROUP)
    }

    /// Two records of one deduplicated source: two people by declaration.
    fn same(self, i: u32, j: u32) -> bool {
        let g = self.of(i);
        g != NO_GROUP && g == self.of(j)
    }

    /// Whether two clusters hold records of one deduplicated source.
    fn overlap(self, a: &[u32], b: &[u32]) -> bool {
        if self.0.is_empty() {
            return false;
        }
        let mut seen: Vec<u32> = a
            .iter()
            .map(|x| self.of(*x))
            .filter(|g| *g != NO_GROUP)
            .collect();
        seen.sort_unstable();
        b.iter()
            .map(|y| self.of(*y))
            .any(|g| g != NO_GROUP && seen.binary_search(&g).is_ok())
    }
}

fn link(
    records: &[Demographics],
    groups: &[u32],
    model: &Model,
    config: &MatchConfig,
) -> BatchReport {
    let groups = Groups(groups);
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
    let (edges, overrides) =
        match_edges(&prepared, groups, model, config, tf.as_ref(), &mut report);
    report.match_links = edges.len() as u64;
    let links = Links {
        edges,
        overrides,
        groups,
    };
    report.clusters = cluster(&prepared, links, model, config, tf.as_ref());
    report
}

/// Blocked pairs scoring at or above the match threshold without conflict, and
/// one-to-one links (also returned as a set of (lower, higher) record pairs).
fn match_edges(
    prepared: &[Prepared],
    groups: Groups<'_>,
    model: &Model,
    config: &MatchConfig,
    tf: Option<&TermFreq>,
    report: &mut BatchReport,
) -> (Vec<Edge>, FxHashSet<(u32, u32)>) {
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
    let one_to_one = !groups.0.is_empty();
    // Conflicting pairs are kept only for deduplicated sources.
    let scored: Vec<Scored> = (0..prepared.len())
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
            js.retain(|j| !groups.same(me, *j));
            js.truncate(per_record_cap);
            compared_ref.fetch_add(js.len() as u64, Ordering::Relaxed);
            let a = &prepared[i];
            let floor = config.match_threshold - AMBIGUITY_MARGIN;
            js.into_iter().filter_map(move |j| {
                let b = &prepared[j as usize];
                let s = score_pair_above(model, a, b, tf, floor)?;
                let clean = s.conflict.is_none();
                let cross = one_to_one && groups.of(me) != NO_GROUP && groups.of(j) != NO_GROUP;
                let keep = s.score >= floor && (clean || cross);
                keep.then(|| (s.score, me, j, clean, !clean && overridable(a, b, &s)))
            })
        })
        .collect();
    let mut edges: Vec<Edge> = scored
        .iter()
        .filter(|e| e.3)
        .map(|e| (e.0, e.1, e.2))
        .collect();
    let ambiguous = ambiguous_records(prepared, groups, &edges, model, config, tf);
    edges.retain(|(s, a, b)| {
        *s >= config.match_threshold && !ambiguous[*a as usize] && !ambiguous[*b as usize]
    });
    let mut overrides = FxHashSet::default();
    if one_to_one {
        let links = one_to_one_links(groups, &scored, &ambiguous, config);
        report.one_to_one_links = links.len() as u64;
        overrides.extend(links.iter().map(|(_, a, b)| (*a, *b)));
        edges.extend(links);
    }
    report.oversized_blocks = oversized.into_inner();
    report.skipped_blocks = skipped.into_inner();
    report.compared_pairs = compared.into_inner();
    edges.par_sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    (edges, overrides)
}

/// Links between records of two deduplicated sources that a soft guard (a
/// different given name or birth date, with no positive sign of two people:
/// see `overridable`) would send to review: each record is the other's best
/// candidate in the other's source by more than [`AMBIGUITY_MARGIN`] bits, and
/// the pair scores a MATCH before the guard. Each source holds the person at
/// most once, so the one clear counterpart is the person's record there; a
/// rival within the margin (conflicting or not) leaves both to review.
fn one_to_one_links(
    groups: Groups<'_>,
    scored: &[Scored],
    ambiguous: &[bool],
    config: &MatchConfig,
) -> Vec<Edge> {
    // Best and second-best score per (record, other record's source).
    let mut best: FxHashMap<(u32, u32), (f64, u32, f64)> = FxHashMap::default();
    let mut offer = |me: u32, other: u32, s: f64| {
        let e = best.entry((me, groups.of(other))).or_insert((
            f64::NEG_INFINITY,
            u32::MAX,
            f64::NEG_INFINITY,
        ));
        if s > e.0 {
            *e = (s, other, e.0);
        } else if s > e.2 {
            e.2 = s;
        }
    };
    let cross = |e: &&Scored| groups.of(e.1) != NO_GROUP && groups.of(e.2) != NO_GROUP;
    for e in scored.iter().filter(cross) {
        offer(e.1, e.2, e.0);
        offer(e.2, e.1, e.0);
    }
    let clear_best = |me: u32, other: u32, s: f64| {
        best.get(&(me, groups.of(other)))
            .is_some_and(|(top, who, second)| {
                *who == other && *top == s && *second < s - AMBIGUITY_MARGIN
            })
    };
    scored
        .iter()
        .filter(cross)
        .filter(|(s, a, b, _, soft)| {
            *soft
                && *s >= config.match_threshold
                && !ambiguous[*a as usize]
                && !ambiguous[*b as usize]
                && clear_best(*a, *b, *s)
                && clear_best(*b, *a, *s)
        })
        .map(|(s, a, b, _, _)| (*s, *a, *b))
        .collect()
}

/// Records whose best link is not clearly better than a link to someone else:
/// a rival within [`AMBIGUITY_MARGIN`] bits of the best that is a different
/// person from the best (a guard conflict other than a placeholder name, which
/// says nothing either way, or a score below the conflict
/// threshold: fields that weigh against one person, not merely two sparse rows
/// of one person sharing little; or a record of the same deduplicated source,
/// a different person by declaration). A name-and-address row of a household, or a
/// name-and-email row of a common name, fits several people equally and joins
/// none of them.
fn ambiguous_records(
    prepared: &[Prepared],
    groups: Groups<'_>,
    edges: &[Edge],
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
                    if groups.same(top, *rival) {
                        return true;
                    }
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

/// How the cross pairs of two clusters vote on merging them.
#[derive(Debug, Default)]
struct Vote {
    support: usize,
    against: usize,
    /// The best supporting score with the same names (exact or nickname).
    best_support: f64,
    vetoed: bool,
}

impl Vote {
    /// A merge needs more supporting pairs (MATCH without conflict) than
    /// conflicting ones, so a single weak bridge never joins two people (twins
    /// each with one record conflict 1:1 and stay apart); a single incompatible
    /// pair (two national IDs, two birth dates, JR and SR) vetoes it outright.
    /// A tie is broken by a certain link with the same name (exact or a
    /// nickname): one record mistyped or truncated (SA for SAMUEL) in a cluster
    /// its national ID vouches for does not keep out a record that agrees with
    /// the rest beyond doubt.
    fn merges(&self, config: &MatchConfig) -> bool {
        let tie_broken =
            self.support == self.against && self.best_support >= config.certain_threshold;
        !self.vetoed && (self.against == 0 || self.support > self.against || tie_broken)
    }
}

/// Scores the cross pairs of clusters `ma` and `mb` (at most
/// [`MAX_MERGE_CHECKS`]) and counts their votes. A conflicting or incompatible
/// pair that a supporting pair explains (see `explained`) does not vote.
fn vote(
    prepared: &[Prepared],
    ma: &[u32],
    mb: &[u32],
    overrides: &FxHashSet<(u32, u32)>,
    model: &Model,
    config: &MatchConfig,
    tf: Option<&TermFreq>,
) -> Vote {
    let mut vote = Vote {
        best_support: f64::NEG_INFINITY,
        ..Vote::default()
    };
    let mut supports: Vec<(u32, u32)> = Vec::new();
    let mut disputes: Vec<(u32, u32, bool)> = Vec::new();
    let mut odd_ids: Vec<(u32, u32, bool)> = Vec::new();
    for (x, y) in ma
        .iter()
        .flat_map(|x| mb.iter().map(move |y| (*x, *y)))
        .take(MAX_MERGE_CHECKS)
    {
        if overrides.contains(&(x.min(y), x.max(y))) {
            // A one-to-one link: its guard already weighed.
            vote.support += 1;
            supports.push((x, y));
            continue;
        }
        let (px, py) = (&prepared[x as usize], &prepared[y as usize]);
        let s = score_pair(model, px, py, tf);
        let incompatible = incompatible(px, py, &s, config);
        if (incompatible || s.conflict.is_some()) && rewritten_field(px, py, &s) {
            disputes.push((x, y, incompatible));
        } else if (incompatible || s.conflict.is_some()) && sequential_ids_only(px, py, &s) {
            odd_ids.push((x, y, incompatible));
        } else if incompatible {
            vote.vetoed = true;
            return vote;
        } else if s.conflict.is_some() || s.score < config.conflict_threshold {
            vote.against += 1;
        } else if s.score >= config.match_threshold {
            vote.support += 1;
            supports.push((x, y));
            if s.cmp.levels[f::GIVEN] <= 1 && s.cmp.levels[f::FAMILY] <= 1 {
                vote.best_support = vote.best_support.max(s.score);
            }
        }
    }
    let clusters = (ma, mb);
    let unexplained = disputes
        .into_iter()
        .filter(|(x, y, _)| !explained(prepared, *x, *y, &supports))
        .chain(
            odd_ids
                .into_iter()
                .filter(|(x, y, _)| !odd_id_explained(prepared, *x, *y, clusters, &supports)),
        );
    for (_, _, incompatible) in unexplained {
        if incompatible {
            vote.vetoed = true;
        } else {
            vote.against += 1;
        }
    }
    vote
}

/// A disputed cross pair (x from one cluster, y from the other) is explained
/// when x links (a supporting pair) to a record z of y's cluster, or y to a
/// record z of x's cluster, and on the identifying fields where x and y differ
/// (birth date and national ID) z has x's value on one and y's
/// on the others: each record rewrote a field of its own, one difference
/// already accepted within y's cluster and the other by the link, not a second
/// person. On the national ID z may hold neither value but one near both
/// (each vouches for z's, and the two are not sequential: a typo on each side,
/// FINLAY WHITE 1233821 and 1233617 around 1233871). A z that sides with y on
/// every field explains nothing: its link to x is the same dispute.
fn explained(prepared: &[Prepared], x: u32, y: u32, supports: &[(u32, u32)]) -> bool {
    let (px, py) = (&prepared[x as usize], &prepared[y as usize]);
    let differing = differing_fields(px, py);
    if differing.is_empty() {
        return false;
    }
    supports.iter().any(|(sx, sy)| {
        let z = if *sx == x && *sy != y {
            *sy
        } else if *sy == y && *sx != x {
            *sx
        } else {
            return false;
        };
        let pz = &prepared[z as usize];
        let as_x = differing.iter().filter(|f| same_value(pz, px, **f)).count();
        let as_y = differing.iter().filter(|f| same_value(pz, py, **f)).count();
        // z's national ID is neither, but near both (a typo on each side).
        let between = usize::from(
            differing.contains(&f::NATIONAL_ID)
                && !same_value(pz, px, f::NATIONAL_ID)
                && !same_value(pz, py, f::NATIONAL_ID)
                && !consecutive_ids(px, py)
                && ids_vouch(pz, px)
                && ids_vouch(pz, py),
        );
        as_x + as_y > 0
            && as_x + between > 0
            && as_y + between > 0
            && as_x + as_y + between == differing.len()
    })
}

/// A cross pair whose only sign of two people is sequential national IDs (x
/// from cluster `ma`, y from `mb`) is explained when one of the two is the odd
/// record of its own cluster: a record z of that cluster linked to the other
/// (a supporting pair) holds the other's ID exactly and the odd record's first
/// given name and birth date, and the cluster holds the other's ID on more
/// records than the odd record's. The odd record's number is a typo its
/// cluster already outvotes (CONNOR 1825594 among CONNOR 1825598 rows), so the
/// pair is the same as the supporting one: not a twin's number. A twin's row
/// that carries the other twin's ID is outvoted by the twin's own rows.
fn odd_id_explained(
    prepared: &[Prepared],
    x: u32,
    y: u32,
    (ma, mb): (&[u32], &[u32]),
    supports: &[(u32, u32)],
) -> bool {
    let x_links = supports
        .iter()
        .filter(|s| s.0 == x && s.1 != y)
        .map(|s| s.1);
    let y_links = supports
        .iter()
        .filter(|s| s.1 == y && s.0 != x)
        .map(|s| s.0);
    outvoted_id(prepared, y, x, mb, x_links) || outvoted_id(prepared, x, y, ma, y_links)
}

/// Whether `odd`'s national ID is outvoted in its `cluster` by `other`'s,
/// which a record z of the cluster linked to `other` (one of `links`) holds
/// along with `odd`'s first given name and birth date.
fn outvoted_id(
    prepared: &[Prepared],
    odd: u32,
    other: u32,
    cluster: &[u32],
    mut links: impl Iterator<Item = u32>,
) -> bool {
    let (po, pt) = (&prepared[odd as usize], &prepared[other as usize]);
    let holding = |id: &str| {
        cluster
            .iter()
            .filter(|m| &*prepared[**m as usize].national_id == id)
            .count()
    };
    holding(&pt.national_id) > holding(&po.national_id)
        && links.any(|z| {
            let pz = &prepared[z as usize];
            same_value(pz, pt, f::NATIONAL_ID)
                && same_value(pz, po, f::GIVEN)
                && same_value(pz, po, f::DOB)
        })
}

/// What clustering works from: match edges, strongest first; the one-to-one
/// links among them; the deduplicated-source groups.
struct Links<'a> {
    edges: Vec<Edge>,
    overrides: FxHashSet<(u32, u32)>,
    groups: Groups<'a>,
}

fn cluster(
    prepared: &[Prepared],
    links: Links<'_>,
    model: &Model,
    config: &MatchConfig,
    tf: Option<&TermFreq>,
) -> Vec<u32> {
    let n = prepared.len();
    let mut parent: Vec<u32> = (0..n)
        .map(|i| u32::try_from(i).unwrap_or(u32::MAX))
        .collect();
    let mut members: FxHashMap<u32, Vec<u32>> = FxHashMap::default();
    let Links {
        edges,
        overrides,
        groups,
    } = links;
    for (_, a, b) in edges {
        let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
        if ra == rb {
            continue;
        }
        let ma = members.get(&ra).cloned().unwrap_or_else(|| vec![ra]);
        let mb = members.get(&rb).cloned().unwrap_or_else(|| vec![rb]);
        // At most one record of each deduplicated source per cluster.
        if groups.overlap(&ma, &mb) {
            continue;
        }
        let vote = vote(prepared, &ma, &mb, &overrides, model, config, tf);
        if !vote.merges(config) {
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
