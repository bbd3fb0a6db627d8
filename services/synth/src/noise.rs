//! Text-level noise: keyboard typos, case and whitespace variation, phone and SSN
//! formats.

use rand::RngExt;

use crate::person::{Date, Phone, REFERENCE_YEAR, Ssn};

/// QWERTY neighbours of each lowercase letter.
fn neighbours(c: char) -> &'static str {
    match c {
        'q' => "wa",
        'w' => "qeas",
        'e' => "wrds",
        'r' => "etdf",
        't' => "ryfg",
        'y' => "tugh",
        'u' => "yihj",
        'i' => "uojk",
        'o' => "ipkl",
        'p' => "ol",
        'a' => "qwsz",
        's' => "awedxz",
        'd' => "serfcx",
        'f' => "drtgvc",
        'g' => "ftyhbv",
        'h' => "gyujnb",
        'j' => "huikmn",
        'k' => "jiolm",
        'l' => "kop",
        'z' => "asx",
        'x' => "zsdc",
        'c' => "xdfv",
        'v' => "cfgb",
        'b' => "vghn",
        'n' => "bhjm",
        'm' => "njk",
        _ => "",
    }
}

fn adjacent<R: RngExt + ?Sized>(rng: &mut R, c: char) -> Option<char> {
    let lower = c.to_ascii_lowercase();
    let n = neighbours(lower).as_bytes();
    if n.is_empty() {
        return None;
    }
    let pick = n[rng.random_range(0..n.len())] as char;
    Some(if c.is_ascii_uppercase() {
        pick.to_ascii_uppercase()
    } else {
        pick
    })
}

/// The kind of typo [`typo`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TypoKind {
    Substitution,
    Transposition,
    Deletion,
    Insertion,
}

/// One typo in `s`: an adjacent-key substitution, a transposition of two
/// neighbouring letters, a deleted letter or an inserted (adjacent or doubled)
/// letter. Strings shorter than 3 characters are left alone.
pub(crate) fn typo<R: RngExt + ?Sized>(rng: &mut R, s: &str) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    let letters: Vec<usize> = chars
        .iter()
        .enumerate()
        .filter(|(_, c)| c.is_alphabetic())
        .map(|(i, _)| i)
        .collect();
    if letters.len() < 3 {
        return s.to_owned();
    }
    // Typos are rarer on the first letter, as in real keyed data.
    let i = letters[rng.random_range(1..letters.len())];
    let kind = match rng.random_range(0..4) {
        0 => TypoKind::Substitution,
        1 => TypoKind::Transposition,
        2 => TypoKind::Deletion,
        _ => TypoKind::Insertion,
    };
    match kind {
        TypoKind::Substitution => {
            if let Some(c) = adjacent(rng, chars[i]) {
                chars[i] = c;
            } else {
                chars.remove(i);
            }
        }
        TypoKind::Transposition => {
            let j = if i + 1 < chars.len() && chars[i + 1].is_alphabetic() {
                i + 1
            } else {
                i - 1
            };
            if chars[i] == chars[j] {
                chars.remove(i);
            } else {
                chars.swap(i, j);
            }
        }
        TypoKind::Deletion => {
            chars.remove(i);
        }
        TypoKind::Insertion => {
            let c = if rng.random_bool(0.5) {
                chars[i]
            } else {
                adjacent(rng, chars[i]).unwrap_or(chars[i])
            };
            chars.insert(i, c);
        }
    }
    chars.into_iter().collect()
}

/// Letter case of a rendered record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Case {
    Title,
    Upper,
    Lower,
}

impl Case {
    pub(crate) fn apply(self, s: &str) -> String {
        match self {
            Self::Title => s.to_owned(),
            Self::Upper => s.to_uppercase(),
            Self::Lower => s.to_lowercase(),
        }
    }
}

/// Stray whitespace: a doubled inner space, a leading or trailing space, or (for
/// names, `join` true) the inner spaces removed (`De la Cruz` as `DelaCruz`).
pub(crate) fn whitespace<R: RngExt + ?Sized>(rng: &mut R, s: &str, join: bool) -> String {
    match rng.random_range(0..4) {
        0 if s.contains(' ') => s.replacen(' ', "  ", 1),
        1 => format!(" {s}"),
        2 if join && s.contains(' ') => s.replace(' ', ""),
        _ => format!("{s} "),
    }
}

/// A phone number in one of the formats people and systems write it in.
pub(crate) fn phone<R: RngExt + ?Sized>(rng: &mut R, p: Phone, vary: bool) -> String {
    let Phone {
        area,
        exchange,
        line,
    } = p;
    if !vary {
        return format!("{area:03}-{exchange:03}-{line:04}");
    }
    match rng.random_range(0..5) {
        0 => format!("({area:03}) {exchange:03}-{line:04}"),
        1 => format!("{area:03}.{exchange:03}.{line:04}"),
        2 => format!("+1 {area:03} {exchange:03} {line:04}"),
        3 => format!("{area:03}{exchange:03}{line:04}"),
        _ => format!("1-{area:03}-{exchange:03}-{line:04}"),
    }
}

/// One digit of an SSN mistyped: replaced by a random other digit, or swapped
/// with its neighbour (when they differ).
pub(crate) fn ssn_typo<R: RngExt + ?Sized>(rng: &mut R, s: Ssn) -> Ssn {
    let mut digits =
        u64::from(s.area) * 1_000_000 + u64::from(s.group) * 10_000 + u64::from(s.serial);
    let mut d: Vec<u8> = (0..9)
        .map(|i| ((digits / 10u64.pow(8 - i)) % 10) as u8)
        .collect();
    let i = rng.random_range(0..8);
    if d[i] != d[i + 1] && rng.random_bool(0.5) {
        d.swap(i, i + 1);
    } else {
        d[i] = (d[i] + rng.random_range(1..10)) % 10;
    }
    digits = d.iter().fold(0, |acc, &x| acc * 10 + u64::from(x));
    Ssn {
        area: (digits / 1_000_000) as u16,
        group: ((digits / 10_000) % 100) as u8,
        serial: (digits % 10_000) as u16,
    }
}

/// A birth date with one keying error: the last two digits of the year swapped
/// (or, when equal or in the future, the year one less) or the day off by one; always valid.
pub(crate) fn date_typo<R: RngExt + ?Sized>(rng: &mut R, d: Date) -> Date {
    let mut out = d;
    if rng.random_bool(0.5) {
        let (tens, ones) = ((d.year / 10) % 10, d.year % 10);
        let swapped = d.year - tens * 10 - ones + ones * 10 + tens;
        out.year = if tens == ones || swapped >= REFERENCE_YEAR {
            d.year - 1
        } else {
            swapped
        };
    } else if d.day > 1 && (rng.random_bool(0.5) || d.day == Date::days_in_month(d.year, d.month)) {
        out.day -= 1;
    } else {
        out.day += 1;
    }
    out.day = out.day.min(Date::days_in_month(out.year, out.month));
    out
}

/// An SSN without dashes or masked to its last four digits.
pub(crate) fn ssn_variant<R: RngExt + ?Sized>(rng: &mut R, s: Ssn) -> String {
    if rng.random_bool(0.7) {
        format!("{:03}{:02}{:04}", s.area, s.group, s.serial)
    } else {
        format!("XXX-XX-{:04}", s.serial)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::ChaCha8Rng;

    use super::*;

    #[test]
    fn a_typo_changes_a_name_by_one_edit() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..500 {
            let t = typo(&mut rng, "Margaret");
            assert_ne!(t, "Margaret");
            let diff = t.len().abs_diff("Margaret".len());
            assert!(diff <= 1, "{t}");
            assert!(t.starts_with('M'), "first letter kept: {t}");
        }
    }

    #[test]
    fn ssn_and_date_typos_change_exactly_the_value() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let ssn = Ssn {
            area: 123,
            group: 45,
            serial: 6789,
        };
        let date = Date {
            year: 1984,
            month: 2,
            day: 29,
        };
        for _ in 0..500 {
            let t = ssn_typo(&mut rng, ssn);
            assert_ne!(t, ssn);
            let digits = |s: Ssn| format!("{s}").replace('-', "");
            let differing = digits(t)
                .bytes()
                .zip(digits(ssn).bytes())
                .filter(|(a, b)| a != b)
                .count();
            assert!((1..=2).contains(&differing), "{t}");
            let d = date_typo(&mut rng, date);
            assert_ne!(d, date);
            assert!(d.day <= Date::days_in_month(d.year, d.month), "{d}");
        }
    }

    #[test]
    fn short_names_are_not_mangled() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(typo(&mut rng, "Li"), "Li");
    }
}
