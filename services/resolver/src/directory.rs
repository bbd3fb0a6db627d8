//! [`Directory`]: which source records each master holds and where merged
//! masters point, in memory — the patient-view path's identity lookup without
//! a query.
//!
//! It is kept only when this process is the store's one writer (the embedded
//! store): then every committed change passes through the resolver, which
//! applies it here after the commit, as it does to the matching index. With a
//! shared store another process may change links, so lookups go to the store.

use std::sync::Arc;

use rustc_hash::FxHashMap;
use tessera_matching::SourceKey;

use crate::store::{IndexEntry, MasterId, RecordId};

/// Why a lookup found nothing usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DirectoryMiss {
    /// No such master or record.
    NotFound,
    /// A merge chain longer than the limit (or a loop): the data is corrupt.
    LongChain,
}

/// A master's records (kept in record-id order, as the store lists them) and,
/// once merged, the master it was merged into.
#[derive(Debug, Default)]
struct Holding {
    records: Vec<RecordId>,
    merged_into: Option<MasterId>,
}

/// A record's key and its master.
#[derive(Debug)]
struct Placed {
    key: Arc<SourceKey>,
    master: MasterId,
}

/// Masters, their records and redirects.
#[derive(Debug, Default)]
pub(crate) struct Directory {
    records: FxHashMap<RecordId, Placed>,
    by_key: FxHashMap<Arc<SourceKey>, RecordId>,
    masters: FxHashMap<MasterId, Holding>,
}

impl Directory {
    /// The directory of a store's records and masters, as loaded at start.
    pub(crate) fn load(entries: &[IndexEntry], masters: &[(MasterId, Option<MasterId>)]) -> Self {
        let mut directory = Self::default();
        for (id, merged_into) in masters {
            directory.masters.entry(*id).or_default().merged_into = *merged_into;
        }
        for entry in entries {
            directory.place(entry.record, &entry.key, entry.master);
        }
        directory
    }

    /// Puts `record` (known by `key`) on `master`: a new record, or one that
    /// moves.
    pub(crate) fn place(&mut self, record: RecordId, key: &SourceKey, master: MasterId) {
        if self.records.contains_key(&record) {
            self.move_record(record, master);
            return;
        }
        let key = Arc::new(key.clone());
        self.by_key.insert(key.clone(), record);
        self.records.insert(record, Placed { key, master });
        insert_sorted(&mut self.masters.entry(master).or_default().records, record);
    }

    /// Moves a known record onto `master`; an unknown record is left alone (the
    /// caller places records before moving them).
    pub(crate) fn move_record(&mut self, record: RecordId, master: MasterId) {
        let Some(placed) = self.records.get_mut(&record) else {
            return;
        };
        let previous = std::mem::replace(&mut placed.master, master);
        if previous == master {
            return;
        }
        if let Some(holding) = self.masters.get_mut(&previous) {
            holding.records.retain(|r| *r != record);
        }
        insert_sorted(&mut self.masters.entry(master).or_default().records, record);
    }

    /// `loser` was merged into `winner`: its records move, and it redirects.
    pub(crate) fn merge(&mut self, loser: MasterId, winner: MasterId) {
        let moved = self
            .masters
            .get_mut(&loser)
            .map(|h| std::mem::take(&mut h.records))
            .unwrap_or_default();
        for record in moved {
            if let Some(placed) = self.records.get_mut(&record) {
                placed.master = winner;
            }
            insert_sorted(&mut self.masters.entry(winner).or_default().records, record);
        }
        self.masters.entry(loser).or_default().merged_into = Some(winner);
    }

    /// The active master `id` is or was merged into, and its records' keys.
    pub(crate) fn master_keys(
        &self,
        id: MasterId,
        max_redirects: usize,
    ) -> Result<(MasterId, Vec<SourceKey>), DirectoryMiss> {
        let mut current = id;
        for _ in 0..max_redirects {
            let holding = self.masters.get(&current).ok_or(DirectoryMiss::NotFound)?;
            match holding.merged_into {
                Some(next) => current = next,
                None => return Ok((current, self.keys(holding))),
            }
        }
        Err(DirectoryMiss::LongChain)
    }

    /// The master of the record known by `key`, and its records' keys.
    pub(crate) fn cluster_keys(
        &self,
        key: &SourceKey,
    ) -> Result<(MasterId, Vec<SourceKey>), DirectoryMiss> {
        let record = self.by_key.get(key).ok_or(DirectoryMiss::NotFound)?;
        let master = self
            .records
            .get(record)
            .ok_or(DirectoryMiss::NotFound)?
            .master;
        let holding = self.masters.get(&master).ok_or(DirectoryMiss::NotFound)?;
        Ok((master, self.keys(holding)))
    }

    fn keys(&self, holding: &Holding) -> Vec<SourceKey> {
        holding
            .records
            .iter()
            .filter_map(|r| self.records.get(r))
            .map(|placed| SourceKey::clone(&placed.key))
            .collect()
    }

    /// Approximate heap bytes held, for the index statistics.
    pub(crate) fn approx_memory_bytes(&self) -> usize {
        // Per record: its entry in two maps (key, value and a control byte),
        // the shared key with both strings, and its id in its master's list.
        let per_record = std::mem::size_of::<(RecordId, Placed)>()
            + std::mem::size_of::<(Arc<SourceKey>, RecordId)>()
            + 2
            + 2 * std::mem::size_of::<usize>()
            + std::mem::size_of::<SourceKey>()
            + std::mem::size_of::<RecordId>();
        let strings: usize = self
            .records
            .values()
            .map(|p| p.key.system.len() + p.key.local_id.len())
            .sum();
        let per_master = std::mem::size_of::<(MasterId, Holding)>() + 1;
        self.records.capacity() * per_record + strings + self.masters.capacity() * per_master
    }
}

fn insert_sorted(records: &mut Vec<RecordId>, record: RecordId) {
    if let Err(at) = records.binary_search(&record) {
        records.insert(at, record);
    }
}

#[cfg(test)]
mod tests {
    use tessera_matching::Demographics;

    use super::*;

    fn key(local: &str) -> SourceKey {
        SourceKey::new("ehr", local)
    }

    fn entry(record: RecordId, local: &str, master: MasterId) -> IndexEntry {
        IndexEntry {
            record,
            key: key(local),
            master,
            demographics: Demographics::default(),
        }
    }

    #[test]
    fn lists_a_masters_keys_in_record_order_and_finds_a_records_master() {
        let d = Directory::load(
            &[entry(3, "c", 10), entry(1, "a", 10), entry(2, "b", 20)],
            &[(10, None), (20, None)],
        );
        assert_eq!(d.master_keys(10, 8), Ok((10, vec![key("a"), key("c")])));
        assert_eq!(
            d.cluster_keys(&key("c")),
            Ok((10, vec![key("a"), key("c")]))
        );
        assert_eq!(d.cluster_keys(&key("b")), Ok((20, vec![key("b")])));
        assert_eq!(d.master_keys(99, 8), Err(DirectoryMiss::NotFound));
        assert_eq!(d.cluster_keys(&key("zz")), Err(DirectoryMiss::NotFound));
    }

    #[test]
    fn a_moved_record_leaves_its_old_master_which_still_exists_empty() {
        let mut d = Directory::load(&[entry(1, "a", 10), entry(2, "b", 20)], &[]);
        d.move_record(1, 20);
        assert_eq!(d.master_keys(20, 8), Ok((20, vec![key("a"), key("b")])));
        assert_eq!(d.master_keys(10, 8), Ok((10, vec![])));
        // Placing a known record again moves it rather than duplicating it.
        d.place(1, &key("a"), 10);
        assert_eq!(d.master_keys(10, 8), Ok((10, vec![key("a")])));
        assert_eq!(d.master_keys(20, 8), Ok((20, vec![key("b")])));
    }

    #[test]
    fn a_merged_master_redirects_along_the_chain() {
        let mut d = Directory::load(
            &[entry(1, "a", 10), entry(2, "b", 20), entry(3, "c", 30)],
            &[],
        );
        d.merge(10, 20);
        d.merge(20, 30);
        let all = vec![key("a"), key("b"), key("c")];
        assert_eq!(d.master_keys(10, 8), Ok((30, all.clone())));
        assert_eq!(d.cluster_keys(&key("a")), Ok((30, all)));
        assert_eq!(d.master_keys(10, 1), Err(DirectoryMiss::LongChain));
    }

    #[test]
    fn masters_loaded_with_their_redirects_and_without_records() {
        let d = Directory::load(
            &[entry(1, "a", 20)],
            &[(10, Some(20)), (20, None), (30, None)],
        );
        assert_eq!(d.master_keys(10, 8), Ok((20, vec![key("a")])));
        assert_eq!(d.master_keys(30, 8), Ok((30, vec![])));
    }

    #[test]
    fn a_redirect_loop_is_reported_not_followed_forever() {
        let d = Directory::load(&[], &[(10, Some(20)), (20, Some(10))]);
        assert_eq!(d.master_keys(10, 64), Err(DirectoryMiss::LongChain));
    }
}
