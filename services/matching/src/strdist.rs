//! Allocation-free string distances on bytes (normalized values are ASCII):
//! Jaro-Winkler and optimal-string-alignment (restricted Damerau-Levenshtein)
//! distance. Values longer than 64 bytes are compared on their first 64 bytes.

const MAX: usize = 64;

/// Jaro-Winkler similarity in [0, 1] (prefix scale 0.1, up to 4 characters,
/// applied above a Jaro similarity of 0.7, as strsim does).
pub(crate) fn jaro_winkler(a: &str, b: &str) -> f64 {
    let (a, b) = (
        &a.as_bytes()[..a.len().min(MAX)],
        &b.as_bytes()[..b.len().min(MAX)],
    );
    if a.is_empty() || b.is_empty() {
        return if a.is_empty() && b.is_empty() {
            1.0
        } else {
            0.0
        };
    }
    if a == b {
        return 1.0;
    }
    let (la, lb) = (a.len(), b.len());
    let window = (la.max(lb) / 2).saturating_sub(1);
    let (mut fa, mut fb) = (0u64, 0u64);
    let mut matches = 0usize;
    for (i, ca) in a.iter().enumerate() {
        let lo = i.saturating_sub(window);
        let hi = (i + window + 1).min(lb);
        for (j, cb) in b.iter().enumerate().take(hi).skip(lo) {
            if fb & (1 << j) == 0 && ca == cb {
                fa |= 1 << i;
                fb |= 1 << j;
                matches += 1;
                break;
            }
        }
    }
    if matches == 0 {
        return 0.0;
    }
    let mut transpositions = 0usize;
    let mut k = 0usize;
    for (i, ca) in a.iter().enumerate() {
        if fa & (1 << i) != 0 {
            while k < lb && fb & (1 << k) == 0 {
                k += 1;
            }
            if k < lb && *ca != b[k] {
                transpositions += 1;
            }
            k += 1;
        }
    }
    let m = matches as f64;
    let jaro = (m / la as f64 + m / lb as f64 + (m - (transpositions / 2) as f64) / m) / 3.0;
    if jaro <= 0.7 {
        return jaro;
    }
    let prefix = a.iter().zip(b).take(4).take_while(|(x, y)| x == y).count();
    jaro + prefix as f64 * 0.1 * (1.0 - jaro)
}

/// Optimal string alignment distance (edits, adjacent transpositions count one),
/// on the first 32 bytes (it compares dates, IDs and postcodes); distances above
/// 2 may be reported as 3.
pub(crate) fn osa(a: &[u8], b: &[u8]) -> usize {
    const MAX_OSA: usize = 32;
    let (a, b) = (&a[..a.len().min(MAX_OSA)], &b[..b.len().min(MAX_OSA)]);
    if a == b {
        return 0;
    }
    if osa_lower_bound(a, b) > 2 {
        // Callers only tell 0, 1, 2 and more apart; skip the table.
        return 3;
    }
    let w = b.len() + 1;
    // Three rolling rows in one buffer: row r lives at (r % 3) * w.
    let mut rows = [0u8; 3 * (MAX_OSA + 1)];
    for (j, cell) in rows[..w].iter_mut().enumerate() {
        *cell = j as u8;
    }
    for i in 1..=a.len() {
        let (cur, prev, prev2) = ((i % 3) * w, ((i - 1) % 3) * w, ((i + 1) % 3) * w);
        rows[cur] = i as u8;
        for j in 1..w {
            let cost = u8::from(a[i - 1] != b[j - 1]);
            let mut v = (rows[prev + j] + 1)
                .min(rows[cur + j - 1] + 1)
                .min(rows[prev + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(rows[prev2 + j - 2] + 1);
            }
            rows[cur + j] = v;
        }
    }
    usize::from(rows[(a.len() % 3) * w + w - 1])
}

/// A lower bound of the OSA distance from byte histograms (64 buckets): each
/// edit changes the histogram difference by at most two.
fn osa_lower_bound(a: &[u8], b: &[u8]) -> usize {
    let mut hist = [0i16; 64];
    for c in a {
        hist[usize::from(c & 63)] += 1;
    }
    for c in b {
        hist[usize::from(c & 63)] -= 1;
    }
    let diff: usize = hist.iter().map(|h| usize::from(h.unsigned_abs())).sum();
    diff.div_ceil(2)
}

/// Decimal digits of `x` as bytes.
pub(crate) fn digits(mut x: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (x % 10) as u8;
        x /= 10;
        if x == 0 {
            break;
        }
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_strsim() {
        let words = [
            "MARTHA",
            "MARHTA",
            "DIXON",
            "DICKSONX",
            "JELLYFISH",
            "SMELLYFISH",
            "A",
            "AB",
            "KOWALSKI",
            "KOWALSKY",
            "12 MAIN ST APT 4",
            "12 MAIN ST",
            "19800314",
            "19800341",
            "",
        ];
        for x in words {
            for y in words {
                let ours = jaro_winkler(x, y);
                let theirs = strsim::jaro_winkler(x, y);
                assert!((ours - theirs).abs() < 1e-9, "{x} {y} {ours} {theirs}");
                // Exact up to 2; "3" stands for "more than 2".
                assert_eq!(
                    osa(x.as_bytes(), y.as_bytes()).min(3),
                    strsim::osa_distance(x, y).min(3),
                    "{x} {y}"
                );
            }
        }
        let mut buf = [0u8; 20];
        assert_eq!(digits(14_155_552_671, &mut buf), b"14155552671");
        assert_eq!(digits(0, &mut buf), b"0");
    }
}
