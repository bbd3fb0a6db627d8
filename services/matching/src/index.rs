//! The in-memory index the resolver serves from: prepared records in slots,
//! blocking-key postings, record-to-master membership and name frequencies.
//! Lookups score a record against whole master clusters.

use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::blocking::{BlockKey, keys};
use crate::guards::incompatible;
use crate::model::Model;
use crate::normalize::{Prepared, prepare};
use crate::record::{Decision, Demographics, FieldWeight};
use crate::score::{
    AMBIGUITY_MARGIN, Conflict, MatchConfig, MatchGrade, PairScore, TermFreq, decide,
    field_weights, probability, score_pair_above,
};

/// A record's ID, assigned by the identity store.
pub type RecordId = u64;
/// A master (person) ID, assigned by the identity store.
pub type MasterId = u64;

/// One candidate master for a record, scored against the master's whole cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// The candidate master.
    pub master: MasterId,
    /// The cluster score in bits (best member's score, capped by any conflict).
    pub score: f64,
    /// The score as a probability.
    pub probability: f64,
    /// MATCH, POSSIBLE_MATCH or NO_MATCH.
    pub decision: Decision,
    /// FHIR match grade.
    pub grade: MatchGrade,
    /// The best-matching member's per-field weights (and any guard).
    pub field_weights: Vec<FieldWeight>,
    /// The member record that matched best.
    pub best_record: RecordId,
    /// A conflict with any member that bars an automatic link.
    pub conflict: Option<Conflict>,
}

/// The result of a lookup.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Candidates {
    /// Masters scoring at or above the review threshold, best first.
    pub ranked: Vec<Candidate>,
    /// Blocks too large to use whole; narrower keys were used instead.
    pub oversized_blocks: u32,
    /// Records found through blocking (before the `max_candidates` bound).
    pub blocked_records: u32,
    /// Records compared.
    pub compared_records: u32,
}

#[derive(Debug)]
struct Slot {
    id: RecordId,
    master: MasterId,
    rec: Prepared,
}

/// The records under one key: most keys (an ID, a phone) hold one record, so a
/// single record is stored inline, without a heap allocation.
#[derive(Debug)]
enum Posting {
    One(u32),
    Many(Vec<u32>),
}

impl Posting {
    fn as_slice(&self) -> &[u32] {
        match self {
            Posting::One(s) => std::slice::from_ref(s),
            Posting::Many(v) => v,
        }
    }

    fn len(&self) -> usize {
        self.as_slice().len()
    }

    fn push(&mut self, slot: u32) {
        match self {
            Posting::One(s) => *self = Posting::Many(vec![*s, slot]),
            Posting::Many(v) => v.push(slot),
        }
    }

    /// Removes `slot`; returns whether the posting is now empty.
    fn remove(&mut self, slot: u32) -> bool {
        match self {
            Posting::One(s) => *s == slot,
            Posting::Many(v) => {
                v.retain(|x| *x != slot);
                let empty = v.is_empty();
                if let [only] = v.as_slice() {
                    let only = *only;
                    *self = Posting::One(only);
                }
                empty
            }
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Posting::One(_) => 0,
            Posting::Many(v) => v.capacity() * 4 + 16,
        }
    }
}

/// The in-memory blocking index, prepared records and master membership.
#[derive(Debug)]
pub struct Index {
    model: Arc<Model>,
    config: MatchConfig,
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    by_id: FxHashMap<RecordId, u32>,
    masters: FxHashMap<MasterId, Vec<u32>>,
    /// Wide keys always; a narrow key only while its wide block is large.
    postings: FxHashMap<u64, Posting>,
    tf: TermFreq,
}

impl Index {
    /// An empty index scoring with `model`.
    pub fn new(model: Arc<Model>, config: MatchConfig) -> Self {
        Self {
            model,
            config,
            slots: Vec::new(),
            free: Vec::new(),
            by_id: FxHashMap::default(),
            masters: FxHashMap::default(),
            postings: FxHashMap::default(),
            tf: TermFreq::default(),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &MatchConfig {
        &self.config
    }

    /// Inserts a record, or replaces it (demographics and master) when present.
    pub fn upsert(&mut self, record: RecordId, master: MasterId, demographics: &Demographics) {
        self.remove(record);
        let rec = prepare(demographics, &self.config.normalize);
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        let narrow_from = self.narrow_threshold();
        for k in keys(&rec) {
            let wide = match self.postings.entry(k.wide) {
                std::collections::hash_map::Entry::Occupied(mut e) => {
                    e.get_mut().push(slot);
                    e.get().len()
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(Posting::One(slot));
                    1
                }
            };
            let Some(narrow) = k.narrow else { continue };
            if wide == narrow_from {
                // The block just became large: index its members' narrow keys.
                let members: Vec<u32> = self
                    .postings
                    .get(&k.wide)
                    .map(|p| {
                        p.as_slice()
                            .iter()
                            .copied()
                            .filter(|m| *m != slot)
                            .collect()
                    })
                    .unwrap_or_default();
                for m in members {
                    let other = self
                        .slot(m)
                        .and_then(|s| keys(&s.rec).into_iter().find(|x| x.wide == k.wide))
                        .and_then(|x| x.narrow);
                    if let Some(n) = other {
                        self.push_posting(n, m);
                    }
                }
            }
            if wide >= narrow_from {
                self.push_posting(narrow, slot);
            }
        }
        self.tf.add(&rec, 1);
        self.masters.entry(master).or_default().push(slot);
        self.by_id.insert(record, slot);
        if let Some(s) = self.slots.get_mut(slot as usize) {
            *s = Some(Slot {
                id: record,
                master,
                rec,
            });
        }
    }

    /// Wide blocks at least this large also index narrow keys.
    fn narrow_threshold(&self) -> usize {
        (self.config.max_block_size / 2).max(2)
    }

    fn push_posting(&mut self, key: u64, slot: u32) {
        match self.postings.entry(key) {
            std::collections::hash_map::Entry::Occupied(mut e) => e.get_mut().push(slot),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(Posting::One(slot));
            }
        }
    }

    fn pull_posting(&mut self, key: u64, slot: u32) {
        if let Some(p) = self.postings.get_mut(&key)
            && p.remove(slot)
        {
            self.postings.remove(&key);
        }
    }

    /// Removes a record; unknown IDs are ignored.
    pub fn remove(&mut self, record: RecordId) {
        let Some(slot) = self.by_id.remove(&record) else {
            return;
        };
        let Some(s) = self.slots.get_mut(slot as usize).and_then(Option::take) else {
            return;
        };
        for k in keys(&s.rec) {
            self.pull_posting(k.wide, slot);
            if let Some(n) = k.narrow {
                self.pull_posting(n, slot);
            }
        }
        self.tf.add(&s.rec, -1);
        self.detach(s.master, slot);
        self.free.push(slot);
    }

    fn detach(&mut self, master: MasterId, slot: u32) {
        if let Some(members) = self.masters.get_mut(&master) {
            members.retain(|x| *x != slot);
            if members.is_empty() {
                self.masters.remove(&master);
            }
        }
    }

    /// Moves a record to another master (merge, unmerge, manual link).
    pub fn set_master(&mut self, record: RecordId, master: MasterId) {
        let Some(&slot) = self.by_id.get(&record) else {
            return;
        };
        let Some(old) = self
            .slots
            .get(slot as usize)
            .and_then(Option::as_ref)
            .map(|s| s.master)
        else {
            return;
        };
        if old == master {
            return;
        }
        self.detach(old, slot);
        self.masters.entry(master).or_default().push(slot);
        if let Some(Some(s)) = self.slots.get_mut(slot as usize) {
            s.master = master;
        }
    }

    /// The master of a record, if indexed.
    pub fn master_of(&self, record: RecordId) -> Option<MasterId> {
        let slot = *self.by_id.get(&record)?;
        self.slots.get(slot as usize)?.as_ref().map(|s| s.master)
    }

    /// Number of indexed records.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether the index holds no records.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Approximate bytes held by the index.
    pub fn approx_memory_bytes(&self) -> usize {
        let slots = self.slots.capacity() * std::mem::size_of::<Option<Slot>>()
            + self
                .slots
                .iter()
                .flatten()
                .map(|s| s.rec.heap_bytes())
                .sum::<usize>();
        let postings = self.postings.capacity() * (std::mem::size_of::<(u64, Posting)>() + 1)
            + self
                .postings
                .values()
                .map(Posting::heap_bytes)
                .sum::<usize>();
        let masters = self.masters.capacity() * (8 + 24 + 1)
            + self
                .masters
                .values()
                .map(|v| v.capacity() * 4 + 16)
                .sum::<usize>();
        slots + postings + masters + self.by_id.capacity() * 13 + self.tf.memory_bytes()
    }

    /// Scores `demographics` against the masters whose records share a blocking
    /// key with it. `exclude` leaves one record out (the record itself, on update).
    pub fn candidates(&self, demographics: &Demographics, exclude: Option<RecordId>) -> Candidates {
        let query = prepare(demographics, &self.config.normalize);
        let mut out = Candidates::default();
        let exclude_slot = exclude.and_then(|r| self.by_id.get(&r).copied());
        let mut found: Vec<u32> = Vec::new();
        for k in keys(&query) {
            let Some(posting) = self.block(k, &mut out.oversized_blocks) else {
                continue;
            };
            found.extend(posting.iter().filter(|s| Some(**s) != exclude_slot));
        }
        found.sort_unstable();
        out.blocked_records = u32::try_from(found.len()).unwrap_or(u32::MAX);
        // Records hit by more keys first, then bounded.
        let mut hits: Vec<(u32, u32)> = Vec::new();
        for s in found {
            match hits.last_mut() {
                Some((last, n)) if *last == s => *n += 1,
                _ => hits.push((s, 1)),
            }
        }
        if hits.len() > self.config.max_candidates {
            hits.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            hits.truncate(self.config.max_candidates);
        }
        let mut masters: Vec<MasterId> = hits
            .iter()
            .filter_map(|(s, _)| self.slot(*s).map(|r| r.master))
            .collect();
        masters.sort_unstable();
        masters.dedup();
        for master in masters {
            if let Some(c) =
                self.score_master(&query, master, exclude_slot, &mut out.compared_records)
                && c.score >= self.config.review_threshold
            {
                out.ranked.push(c);
            }
        }
        out.ranked
            .sort_by(|a, b| b.score.total_cmp(&a.score).then(a.master.cmp(&b.master)));
        mark_ambiguous(&mut out.ranked);
        out
    }

    fn slot(&self, s: u32) -> Option<&Slot> {
        self.slots.get(s as usize).and_then(Option::as_ref)
    }

    /// The records under a key, narrowed when oversized; None when empty or
    /// still oversized (counted).
    fn block(&self, k: BlockKey, oversized: &mut u32) -> Option<&[u32]> {
        let posting = self.postings.get(&k.wide)?.as_slice();
        if posting.len() <= self.config.max_block_size {
            return Some(posting);
        }
        *oversized += 1;
        let narrow = self.postings.get(&k.narrow?)?.as_slice();
        if narrow.len() <= self.config.max_block_size {
            Some(narrow)
        } else {
            *oversized += 1;
            None
        }
    }

    fn score_master(
        &self,
        query: &Prepared,
        master: MasterId,
        exclude: Option<u32>,
        compared: &mut u32,
    ) -> Option<Candidate> {
        let members = self.masters.get(&master)?;
        let mut best: Option<(PairScore, RecordId)> = None;
        let mut conflict = None;
        for &m in members
            .iter()
            .filter(|m| Some(**m) != exclude)
            .take(self.config.max_cluster_members)
        {
            let Some(slot) = self.slot(m) else { continue };
            let tf = self.config.term_frequency.then_some(&self.tf);
            *compared += 1;
            // A member certainly below the conflict threshold is a conflict; a
            // lone member below the review threshold is no candidate at all.
            let floor = if members.len() == 1 {
                self.config
                    .review_threshold
                    .max(self.config.conflict_threshold)
            } else {
                self.config.conflict_threshold
            };
            let Some(s) = score_pair_above(&self.model, query, &slot.rec, tf, floor) else {
                conflict = conflict.or(Some(Conflict::ClusterMember));
                continue;
            };
            if s.conflict.is_some() {
                conflict = conflict.or(s.conflict);
            } else if s.score < self.config.conflict_threshold
                || incompatible(query, &slot.rec, &s, &self.config)
            {
                conflict = conflict.or(Some(Conflict::ClusterMember));
            }
            if best.as_ref().is_none_or(|(b, _)| s.score > b.score) {
                best = Some((s, slot.id));
            }
        }
        let (mut s, best_record) = best?;
        if s.conflict.is_none() {
            s.conflict = conflict;
        }
        let (score, decision, grade, guard) = decide(s.score, s.conflict, &self.config);
        Some(Candidate {
            master,
            score,
            probability: probability(score),
            decision,
            grade,
            field_weights: field_weights(&self.model, &s, guard),
            best_record,
            conflict: s.conflict,
        })
    }
}

/// A MATCH that another master without conflict scores within
/// [`AMBIGUITY_MARGIN`] bits of is ambiguous: the record fits two people (a
/// household, a common name), so it goes to review instead of auto-linking.
fn mark_ambiguous(ranked: &mut [Candidate]) {
    let Some((top, rest)) = ranked.split_first_mut() else {
        return;
    };
    let rival = rest
        .iter()
        .any(|c| c.conflict.is_none() && c.score >= top.score - AMBIGUITY_MARGIN);
    if top.decision == Decision::Match && rival {
        top.decision = Decision::PossibleMatch;
        top.grade = MatchGrade::Possible;
        top.conflict = top.conflict.or(Some(Conflict::Ambiguous));
    }
}
