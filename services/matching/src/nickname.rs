//! Given-name nickname equivalence from the compiled-in tables (see `data/README.md`:
//! the Apache-2.0 `nicknames` list by Carlton Northern and Nick Crews, and a short
//! supplement of Spanish hypocorisms and common English forms it lacks), plus
//! short clipped forms (BARB of BARBARA) and nicknames with one typo.

use std::sync::OnceLock;

use rustc_hash::FxHashMap;

use crate::strdist::osa;

const TABLE: &str = include_str!("../data/nicknames.csv");
const EXTRA: &str = include_str!("../data/nicknames_extra.csv");

/// The table: for each uppercase name, the ids of the rows' first names
/// ("canonical" names) it appears with, and each canonical name's length.
struct Table {
    groups: FxHashMap<Box<str>, Vec<u16>>,
    canonical: FxHashMap<Box<str>, u16>,
    canonical_len: Vec<usize>,
    /// Each canonical name's group: itself and its nicknames.
    members: Vec<Vec<Box<str>>>,
}

fn table() -> &'static Table {
    static TABLE_CELL: OnceLock<Table> = OnceLock::new();
    TABLE_CELL.get_or_init(|| {
        let mut t = Table {
            groups: FxHashMap::default(),
            canonical: FxHashMap::default(),
            canonical_len: Vec::new(),
            members: Vec::new(),
        };
        for line in TABLE.lines().skip(1).chain(EXTRA.lines().skip(1)) {
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
            if t.members.len() <= usize::from(id) {
                t.members.resize(usize::from(id) + 1, Vec::new());
            }
            for key in [name, nick] {
                let members = &mut t.members[usize::from(id)];
                if !members.contains(&key) {
                    members.push(key.clone());
                }
                let ids = t.groups.entry(key).or_default();
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        t
    })
}

/// How two different normalized (uppercase) given names relate through the
/// nickname tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Relation {
    /// Unrelated.
    None,
    /// Nicknames: one row relates them directly, or both are nicknames of a
    /// longer formal name (BETH and LIZ of ELIZABETH; but not WILLIAM and
    /// ROBERT through BILL, nor two names that are formal names in their own
    /// right, ROSA and LINDA through ROSALINDA), or the shorter is a clipped
    /// form of the longer (BARB, BARBARA).
    Nickname,
    /// A nickname of the other but for one typo (PAAMELA and PAM, DEG and
    /// DEBORAH). The mistyped side is no name the tables know, so two real
    /// names (KAYLA, KYLA) never meet this way.
    NicknameWithTypo,
}

/// The relation of two different given names (one table lookup per name).
pub(crate) fn relation(a: &str, b: &str) -> Relation {
    let t = table();
    let (ga, gb) = (t.groups.get(a), t.groups.get(b));
    // A clipped form the tables do not know; one they know (DAN) relates only
    // as they say (DANIEL, not DANIELLE).
    if (clipped(a, b) && ga.is_none()) || (clipped(b, a) && gb.is_none()) {
        return Relation::Nickname;
    }
    match (ga, gb) {
        (Some(ga), Some(gb)) if related(t, a, ga, b, gb) => Relation::Nickname,
        (None, Some(gb)) if typo_of_partner(t, a, b, gb) => Relation::NicknameWithTypo,
        (Some(ga), None) if typo_of_partner(t, b, a, ga) => Relation::NicknameWithTypo,
        _ => Relation::None,
    }
}

fn related(t: &Table, a: &str, ga: &[u16], b: &str, gb: &[u16]) -> bool {
    let direct = |x: &str, gy: &[u16]| t.canonical.get(x).is_some_and(|id| gy.contains(id));
    if direct(a, gb) || direct(b, ga) {
        return true;
    }
    if t.canonical.contains_key(a) && t.canonical.contains_key(b) {
        return false;
    }
    ga.iter().any(|id| {
        gb.contains(id)
            && t.canonical_len
                .get(usize::from(*id))
                .is_some_and(|len| *len > a.len() && *len > b.len())
    })
}

/// `short` is the first three to five letters of a name at least two letters
/// longer (a short form the tables lack, as BARB of BARBARA), not a name plus an ending (ERIC
/// and ERICA, DANIEL and DANIELLE stay apart).
fn clipped(short: &str, long: &str) -> bool {
    (3..=5).contains(&short.len()) && long.len() >= short.len() + 2 && long.starts_with(short)
}

/// Whether the unknown name `typo` is one edit from a nickname partner of the
/// known name `other` (whose groups are `ids`).
fn typo_of_partner(t: &Table, typo: &str, other: &str, ids: &[u16]) -> bool {
    if typo.len() < 3 {
        return false;
    }
    ids.iter()
        .filter_map(|id| t.members.get(usize::from(*id)))
        .flatten()
        .any(|name| {
            &**name != other
                && name.len().abs_diff(typo.len()) <= 1
                && osa(name.as_bytes(), typo.as_bytes()) <= 1
                && (t
                    .groups
                    .get(name)
                    .is_some_and(|gn| related(t, name, gn, other, ids)))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn are_nicknames(a: &str, b: &str) -> bool {
        relation(a, b) == Relation::Nickname
    }

    fn nickname_with_typo(a: &str, b: &str) -> bool {
        relation(a, b) == Relation::NicknameWithTypo
    }

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

    #[test]
    fn formal_names_do_not_meet_through_a_longer_name() {
        // Both are nicknames of ROSALINDA, but each is a name of its own.
        assert!(!are_nicknames("ROSA", "LINDA"));
        assert!(are_nicknames("BETH", "LIZ"));
    }

    #[test]
    fn clipped_forms_and_spanish_hypocorisms_are_nicknames() {
        assert!(are_nicknames("BARB", "BARBARA"));
        assert!(are_nicknames("PEPE", "JOSE"));
        assert!(are_nicknames("PANCHO", "FRANCISCO"));
        assert!(are_nicknames("LUPE", "GUADALUPE"));
        assert!(!are_nicknames("ERIC", "ERICA"), "a name plus an ending");
        assert!(!are_nicknames("DANIEL", "DANIELLE"));
        assert!(
            !are_nicknames("DAN", "DANIELLE"),
            "the table knows DAN: DANIEL's"
        );
    }

    #[test]
    fn a_nickname_with_one_typo_still_meets_its_formal_name() {
        assert!(nickname_with_typo("PAAMELA", "PAM"));
        assert!(nickname_with_typo("DEBORAH", "DEG"));
        assert!(!nickname_with_typo("KAYLA", "KYLA"), "two real names");
        assert!(!nickname_with_typo("MARY", "JOHN"));
    }
}
