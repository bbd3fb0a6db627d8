//! What a batch link leaves for a person to look at: each record whose best candidate
//! outside its own master would go to review, or is a MATCH the batch did not take (for
//! example because another record of that master conflicts).

use std::sync::Arc;

use crate::index::Index;
use crate::{Decision, Demographics, MatchConfig, Model};

/// One record a steward should look at, and the master it might belong to instead.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReviewPair {
    /// The record's position in the batch.
    pub record: usize,
    /// The best other master it scored against.
    pub candidate: u64,
    /// Its score against that master, in bits.
    pub score: f64,
}

/// Scores every record (the `i`-th linked to `masters[i]`) against all the others, in
/// parallel over the machine's cores, and returns the review pairs in record order.
pub fn review_pairs(
    records: &[Demographics],
    masters: &[u64],
    model: &Model,
    config: &MatchConfig,
) -> Vec<ReviewPair> {
    let mut index = Index::new(Arc::new(model.clone()), config.clone());
    for (i, (demographics, master)) in records.iter().zip(masters).enumerate() {
        index.upsert(i as u64, *master, demographics);
    }
    // The index is read-only from here on.
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let chunk = records.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = records
            .chunks(chunk)
            .enumerate()
            .map(|(c, part)| {
                let index = &index;
                scope.spawn(move || {
                    let mut pairs = Vec::new();
                    for (j, demographics) in part.iter().enumerate() {
                        let record = c * chunk + j;
                        let own = masters[record];
                        let best = index
                            .candidates(demographics, Some(record as u64))
                            .ranked
                            .into_iter()
                            .find(|cand| cand.master != own && cand.decision != Decision::NoMatch);
                        if let Some(best) = best {
                            pairs.push(ReviewPair {
                                record,
                                candidate: best.master,
                                score: best.score,
                            });
                        }
                    }
                    pairs
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_default())
            .collect()
    })
}
