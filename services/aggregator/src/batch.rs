//! Batches: how (local ID, section) pairs of one source become adapter
//! requests, and how an answer is read back pair by pair.
//!
//! A [`FetchRequest`] asks for every pair of its local IDs × sections, so a
//! set of pairs is split into exact cross products: local IDs missing the
//! same sections go together, chunked by the adapter's `max_batch_size`, or
//! one local ID per request when the adapter cannot batch. A cold view of a
//! batching source is one request.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tessera_adapter_core::{Capabilities, FetchError, FetchRequest, FetchResult};
use tokio::time::Instant;

use crate::source::{Failure, Fetched};

/// One (local ID, section) pair of a source.
pub(crate) type Pair = (Arc<str>, Arc<str>);

/// The result of each pair of a call.
pub(crate) type PairResults = HashMap<Pair, Result<Fetched, Failure>>;

/// Splits `pairs` into requests, each the cross product of its local IDs and
/// sections, in the pairs' order.
pub(crate) fn requests(pairs: &[Pair], capabilities: &Capabilities) -> Vec<Vec<Pair>> {
    // Each local ID's sections, in first-seen order of the IDs.
    let mut ids: Vec<Arc<str>> = Vec::new();
    let mut sections: HashMap<Arc<str>, Vec<Arc<str>>> = HashMap::new();
    for (id, section) in pairs {
        let of_id = sections.entry(id.clone()).or_insert_with(|| {
            ids.push(id.clone());
            Vec::new()
        });
        if !of_id.contains(section) {
            of_id.push(section.clone());
        }
    }
    // Local IDs with the same sections share requests.
    let mut groups: BTreeMap<Vec<Arc<str>>, Vec<Arc<str>>> = BTreeMap::new();
    let mut order: Vec<Vec<Arc<str>>> = Vec::new();
    for id in ids {
        let mut of_id = sections.remove(&id).unwrap_or_default();
        of_id.sort();
        let group = groups.entry(of_id.clone()).or_insert_with(|| {
            order.push(of_id);
            Vec::new()
        });
        group.push(id);
    }
    let size = match (capabilities.batch_fetch, capabilities.max_batch_size) {
        (false, _) => 1,
        (true, 0) => usize::MAX,
        (true, max) => max,
    };
    let mut requests = Vec::new();
    for of_ids in order {
        let Some(ids) = groups.remove(&of_ids) else {
            continue;
        };
        for chunk in ids.chunks(size) {
            requests.push(
                chunk
                    .iter()
                    .flat_map(|id| of_ids.iter().map(move |s| (id.clone(), s.clone())))
                    .collect(),
            );
        }
    }
    requests
}

/// The adapter request for one of [`requests`]' cross products.
pub(crate) fn fetch_request(pairs: &[Pair], deadline: Instant) -> FetchRequest {
    let mut local_ids: Vec<String> = Vec::new();
    let mut sections: Vec<String> = Vec::new();
    for (id, section) in pairs {
        if !local_ids.iter().any(|x| **x == **id) {
            local_ids.push(id.to_string());
        }
        if !sections.iter().any(|x| **x == **section) {
            sections.push(section.to_string());
        }
    }
    FetchRequest {
        local_ids,
        sections,
        deadline,
    }
}

/// An adapter's answer to `pairs`, pair by pair; a pair it left out is
/// malformed, a pair it was not asked for is ignored.
pub(crate) fn by_pair(pairs: &[Pair], results: Vec<FetchResult>) -> PairResults {
    let mut by_pair = PairResults::with_capacity(pairs.len());
    let mut answered: HashMap<(&str, &str), FetchResult> = HashMap::with_capacity(results.len());
    for result in results {
        let Some(pair) = pairs
            .iter()
            .find(|(id, s)| **id == *result.local_id && **s == *result.section)
        else {
            continue;
        };
        answered.insert((&pair.0, &pair.1), result);
    }
    for pair in pairs {
        let result = match answered.remove(&(&*pair.0, &*pair.1)) {
            None => Err(Failure::Fetch(FetchError::Malformed {
                message: "the adapter returned no result for the pair".to_owned(),
            })),
            Some(result) => match result.records {
                Ok(records) => Ok(Fetched {
                    records: records.into(),
                    skipped_malformed: result.skipped_malformed,
                }),
                Err(e) => Err(Failure::from_fetch(e)),
            },
        };
        by_pair.insert(pair.clone(), result);
    }
    by_pair
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<Pair> {
        list.iter()
            .map(|(id, s)| (Arc::from(*id), Arc::from(*s)))
            .collect()
    }

    fn caps(batch_fetch: bool, max_batch_size: usize) -> Capabilities {
        Capabilities {
            batch_fetch,
            max_batch_size,
            ..Capabilities::default()
        }
    }

    fn shape(requests: &[Vec<Pair>]) -> Vec<Vec<String>> {
        requests
            .iter()
            .map(|r| r.iter().map(|(id, s)| format!("{id}/{s}")).collect())
            .collect()
    }

    #[test]
    fn a_batching_source_gets_one_request_for_every_pair() {
        let all = pairs(&[("a", "x"), ("a", "y"), ("b", "x"), ("b", "y")]);
        let requests = requests(&all, &caps(true, 100));
        assert_eq!(shape(&requests), [["a/x", "a/y", "b/x", "b/y"]]);
        let request = fetch_request(&requests[0], Instant::now());
        assert_eq!(request.local_ids, ["a", "b"]);
        assert_eq!(request.sections, ["x", "y"]);
    }

    #[test]
    fn a_source_that_cannot_batch_gets_one_request_per_local_id() {
        let all = pairs(&[("a", "x"), ("a", "y"), ("b", "x"), ("b", "y")]);
        assert_eq!(
            shape(&requests(&all, &caps(false, 0))),
            [["a/x", "a/y"], ["b/x", "b/y"]]
        );
    }

    #[test]
    fn max_batch_size_chunks_the_local_ids() {
        let all = pairs(&[("a", "x"), ("b", "x"), ("c", "x")]);
        assert_eq!(
            shape(&requests(&all, &caps(true, 2))),
            [vec!["a/x", "b/x"], vec!["c/x"]]
        );
    }

    #[test]
    fn local_ids_missing_different_sections_are_asked_only_for_those() {
        // b/y is cached: asking for it again would waste the silo's time.
        let all = pairs(&[("a", "x"), ("a", "y"), ("b", "x")]);
        assert_eq!(
            shape(&requests(&all, &caps(true, 100))),
            [vec!["a/x", "a/y"], vec!["b/x"]]
        );
    }

    #[test]
    fn a_pair_the_adapter_left_out_is_malformed_and_extra_ones_are_ignored() {
        let asked = pairs(&[("a", "x"), ("b", "x")]);
        let result = |id: &str| FetchResult {
            local_id: id.to_owned(),
            section: "x".to_owned(),
            records: Ok(Vec::new()),
            skipped_malformed: 0,
        };
        let answer = by_pair(&asked, vec![result("a"), result("zz")]);
        assert_eq!(answer.len(), 2);
        assert!(answer[&asked[0]].is_ok());
        assert!(matches!(
            answer[&asked[1]],
            Err(Failure::Fetch(FetchError::Malformed { .. }))
        ));
    }
}
