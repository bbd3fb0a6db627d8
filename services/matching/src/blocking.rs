//! Blocking keys: cheap keys under which likely matches collide. Each key has a
//! narrower companion (the key plus one more attribute) used when the key's block
//! is oversized, as a common name or a shared clinic phone makes it.

use rustc_hash::FxHasher;
use std::hash::{Hash, Hasher};

use crate::contact::mailbox;
use crate::normalize::{Prepared, ph};

/// One blocking key of a record: its wide hash and, when it can be narrowed, the
/// narrow hash used for oversized blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockKey {
    pub(crate) wide: u64,
    pub(crate) narrow: Option<u64>,
}

fn h(parts: &[&[u8]]) -> u64 {
    let mut hasher = FxHasher::default();
    for p in parts {
        p.hash(&mut hasher);
    }
    // Avalanche: FxHash's low bits are weak for hashbrown's control bytes.
    let mut x = hasher.finish();
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x
}

fn first(s: &str) -> &[u8] {
    s.as_bytes().get(..1).unwrap_or(b"")
}

fn prefix(s: &str, n: usize) -> &[u8] {
    // (used for street prefixes)
    s.as_bytes().get(..n.min(s.len())).unwrap_or(b"")
}

/// The record's blocking keys (missing and placeholder values make none).
pub(crate) fn keys(p: &Prepared) -> Vec<BlockKey> {
    let mut out = Vec::with_capacity(10);
    let given_ok = !p.first_given().is_empty() && !p.is_placeholder(ph::GIVEN);
    let family_ok = !p.family.is_empty() && !p.is_placeholder(ph::FAMILY);
    let gi = if given_ok {
        first(p.first_given())
    } else {
        b""
    };
    let fi = if family_ok { first(&p.family) } else { b"" };
    let dob = p.dob.filter(|_| !p.is_placeholder(ph::DOB));
    let mut push = |kind: u8, parts: &[&[u8]], extra: &[u8]| {
        let wide = h(&[&[kind], parts.concat().as_slice()]);
        let narrow = (!extra.is_empty()).then(|| h(&[&wide.to_le_bytes(), extra]));
        out.push(BlockKey { wide, narrow });
    };
    if let Some(d) = dob {
        let y = d.year.to_le_bytes();
        if family_ok && !p.family_code.is_empty() {
            push(0, &[p.family_code.as_bytes(), &y], &[d.month]);
        }
        if d.month > 0 && d.day > 0 {
            // Day and month unordered, so a day/month swap meets its original.
            let (lo, hi) = (d.month.min(d.day), d.month.max(d.day));
            // One kind for both initials, so swapped given/family names meet.
            for initial in [gi, fi] {
                if !initial.is_empty() {
                    push(1, &[&y, &[lo, hi], initial], b"");
                }
            }
            if given_ok && !p.given_code.is_empty() {
                push(2, &[p.given_code.as_bytes(), &y, &[lo, hi]], b"");
            }
        }
    }
    if !p.national_id.is_empty() {
        push(3, &[p.national_id.as_bytes()], gi);
    }
    if p.national_id.len() >= 6 && !p.is_placeholder(ph::NATIONAL_ID) {
        // Without the last digit, so a last-digit typo meets its original
        // when the name and birth date were mistyped too (a twin's next number
        // meets as well; the guards keep the two apart).
        let id = p.national_id.as_bytes();
        push(9, &[&id[..id.len() - 1]], gi);
    }
    for phone in &p.phones {
        push(4, &[&phone.to_le_bytes()], gi);
    }
    for email in &p.emails {
        push(5, &[mailbox(email).as_bytes()], gi);
    }
    if given_ok && family_ok && !p.given_code.is_empty() && !p.family_code.is_empty() {
        // Names without the birth date, for a wrong or missing date; narrowed by
        // decade of birth when common. The two codes unordered, so given and
        // family names swapped on one side meet too.
        let decade = dob.map(|d| (d.year / 10).to_le_bytes()).unwrap_or_default();
        let (gc, fc) = (p.given_code.as_bytes(), p.family_code.as_bytes());
        let (lo, hi) = if gc <= fc { (gc, fc) } else { (fc, gc) };
        push(6, &[lo, b"|", hi], &decade);
    }
    if !p.is_placeholder(ph::ADDRESS) {
        for a in p.addresses.iter().take(3) {
            if !a.postal.is_empty() && family_ok {
                push(7, &[a.postal.as_bytes(), p.family_code.as_bytes()], gi);
            }
            if !a.line.is_empty() {
                // Street with either initial (one kind, so swapped names
                // meet): a duplicate whose date, ID and one name were all
                // rewritten still meets its original here.
                if given_ok {
                    push(8, &[prefix(&a.line, 16), gi], fi);
                }
                if family_ok {
                    push(8, &[prefix(&a.line, 16), fi], gi);
                }
            }
        }
    }
    let mut unique: Vec<BlockKey> = Vec::with_capacity(out.len());
    for k in out {
        if !unique.iter().any(|u| u.wide == k.wide) {
            unique.push(k);
        }
    }
    unique
}
