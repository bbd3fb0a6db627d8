//! Given-name nickname equivalence from the compiled-in table (see `data/README.md`:
//! the Apache-2.0 `nicknames` list by Carlton Northern and Nick Crews).

use std::sync::OnceLock;

use rustc_hash::FxHashMap;

const TABLE: &str = include_str!("../data/nicknames.csv");

/// The table: for each uppercase name, the ids of the rows' first names
/// ("canonical" names) it appears with, and each canonical name's length.
struct Table {
    groups: FxHashMap<Box<str>, Vec<u16>>,
    canonical: FxHashMap<Box<str>, u16>,
    canonical_len: Vec<usize>,
}

fn table() -> &'static Table {
    static TABLE_CELL: OnceLock<Table> = OnceLock::new();
    TABLE_CELL.get_or_init(|| {
        let mut t = Table {
            groups: FxHashMap::default(),
            canonical: FxHashMap::default(),
            canonical_len: Vec::new(),
        };
        for line in TABLE.lines().skip(1) {
            let mut parts = line.trim().split(',');
            let (Some(name), Some(_), Some(nick)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let name: Box<str> = name.trim().to_ascii_uppercase().into();
            let nick: Box<str> = nick.trim().to_ascii_uppercase().into();
            let next = u16::try_from(t.canonical.len()).unwrap_or(u16::MAX);
            let id = *t.canonical.entry(name.clone()).or_insert_with(|| {
                t.canonical_len.push(name.len());
                next
            });
            for key in [name, nick] {
                let ids = t.groups.entry(key).or_default();
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        t
    })
}

/// Whether two different normalized (uppercase) given names are nicknames: one
/// row relates them directly, or both are nicknames of a longer formal name
/// (BETH and LIZ of ELIZABETH; but not WILLIAM and ROBERT through BILL).
pub(crate) fn are_nicknames(a: &str, b: &str) -> bool {
    let t = table();
    let (Some(ga), Some(gb)) = (t.groups.get(a), t.groups.get(b)) else {
        return false;
    };
    let direct = |x: &str, gy: &[u16]| t.canonical.get(x).is_some_and(|id| gy.contains(id));
    if direct(a, gb) || direct(b, ga) {
        return true;
    }
    ga.iter().any(|id| {
        gb.contains(id)
            && t.canonical_len
                .get(usize::from(*id))
                .is_some_and(|len| *len > a.len() && *len > b.len())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_nicknames_are_equivalent() {
        assert!(are_nicknames("WILLIAM", "BILL"));
        assert!(are_nicknames("BILL", "WILLIAM"));
        assert!(are_nicknames("ELIZABETH", "LIZ"));
        assert!(are_nicknames("BETH", "LIZ"), "two nicknames of one name");
        assert!(are_nicknames("ROBERT", "BOB"));
        assert!(!are_nicknames("WILLIAM", "ROBERT"));
        assert!(!are_nicknames("ZZZ", "BILL"));
    }
}
