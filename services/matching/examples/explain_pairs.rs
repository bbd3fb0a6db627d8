//! Explains record pairs of a canonical CSV: one line per pair with the score,
//! decision, any conflict and each field's level and weight (built-in model, no
//! term-frequency adjustment). Used by `tools/failures.py`.
//!
//! `explain_pairs RECORDS.csv PAIRS.csv` where each PAIRS line is
//! `source,local_id,source,local_id`.

#![allow(clippy::print_stdout)] // a command-line tool reports on stdout

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};

use anyhow::{Context, bail};
use tessera_matching::{Model, explain, read_records_csv};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [records, pairs] = args.as_slice() else {
        bail!("usage: explain_pairs RECORDS.csv PAIRS.csv");
    };
    let rows = read_records_csv(BufReader::new(File::open(records).context("open records")?))?;
    let by_key: HashMap<(String, String), usize> = rows
        .iter()
        .enumerate()
        .map(|(i, (k, _))| ((k.system.clone(), k.local_id.clone()), i))
        .collect();
    let model = Model::builtin();
    for line in BufReader::new(File::open(pairs).context("open pairs")?).lines() {
        let line = line?;
        let parts: Vec<&str> = line.trim().split(',').collect();
        let [s1, l1, s2, l2] = parts.as_slice() else {
            continue;
        };
        let find = |s: &str, l: &str| by_key.get(&(s.to_owned(), l.to_owned())).copied();
        let (Some(a), Some(b)) = (find(s1, l1), find(s2, l2)) else {
            println!("{line}\tunknown record");
            continue;
        };
        let e = explain(&model, &rows[a].1, &rows[b].1);
        let fields: Vec<String> = e
            .field_weights
            .iter()
            .filter(|w| w.level != "missing")
            .map(|w| format!("{}={}({:+.1})", w.field, w.level, w.weight))
            .collect();
        println!(
            "{line}\t{:.1}\t{:?}\t{:?}\t{}",
            e.score,
            e.decision,
            e.conflict,
            fields.join(" ")
        );
    }
    Ok(())
}
