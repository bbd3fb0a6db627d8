//! Scaling check: builds N synthetic records by recombining and perturbing FEBRL
//! rows (names, streets and postcodes drawn from the FEBRL pools, random dates and
//! IDs, 10% noisy duplicates), then times `link_batch`, builds an `Index` of all
//! records and times `candidates()` lookups.
//!
//! `cargo run --release -p tessera-matching --example scale -- FEBRL.csv [N]`

#![allow(clippy::print_stderr)] // a command-line tool reports on stderr

use std::fs::File;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tessera_matching::{
    Demographics, Index, MatchConfig, Model, link_batch_report, read_records_csv,
};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn typo(s: &str, rng: &mut Rng) -> String {
    let mut c: Vec<char> = s.chars().collect();
    if c.len() > 2 {
        let i = rng.below(c.len() - 1);
        c.swap(i, i + 1);
    }
    c.into_iter().collect()
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).context("usage: scale FEBRL.csv [N]")?;
    let n: usize = args.get(2).map_or(Ok(1_000_000), |s| s.parse())?;
    let rows = read_records_csv(File::open(path)?)?;
    let pool: Vec<Demographics> = rows.into_iter().map(|(_, d)| d).collect();
    let mut rng = Rng(42);
    let mut records: Vec<Demographics> = Vec::with_capacity(n);
    // The person each record belongs to (duplicates inherit their source's).
    let mut origin: Vec<usize> = Vec::with_capacity(n);
    for i in 0..n {
        if i > 0 && rng.below(10) == 0 {
            let src = rng.below(i);
            origin.push(origin[src]);
            let mut d = records[src].clone();
            match rng.below(3) {
                0 => d.family_name = typo(&d.family_name, &mut rng),
                1 => d.given_names = d.given_names.iter().map(|g| typo(g, &mut rng)).collect(),
                _ => d.addresses.clear(),
            }
            records.push(d);
            continue;
        }
        origin.push(i);
        let pick = |rng: &mut Rng| &pool[rng.below(pool.len())];
        let mut d = pick(&mut rng).clone();
        d.family_name = pick(&mut rng).family_name.clone();
        d.birth_date = format!(
            "{}-{:02}-{:02}",
            1910 + rng.below(100),
            1 + rng.below(12),
            1 + rng.below(28)
        );
        d.national_id = format!("{:09}", rng.next() % 1_000_000_000);
        if let (Some(a), Some(other)) = (d.addresses.first_mut(), pick(&mut rng).addresses.first())
        {
            a.lines = vec![format!("{} {}", 1 + rng.below(999), other.lines.join(" "))];
            a.postal_code = other.postal_code.clone();
            a.city = other.city.clone();
        }
        records.push(d);
    }
    eprintln!("generated {} records", records.len());

    let model = Model::builtin();
    let config = MatchConfig::default();
    let t = Instant::now();
    let report = link_batch_report(&records, &model, &config);
    let secs = t.elapsed().as_secs_f64();
    let clusters = report.clusters;
    let masters = clusters.iter().copied().max().map_or(0, |m| m + 1);
    eprintln!(
        "link_batch: {} pairs compared, {} match links, {} oversized block lookups ({} skipped)",
        report.compared_pairs, report.match_links, report.oversized_blocks, report.skipped_blocks
    );
    eprintln!(
        "link_batch: {} records -> {masters} clusters in {secs:.1} s",
        records.len()
    );

    let pairs = |groups: &std::collections::HashMap<(u64, u64), u64>| -> u64 {
        groups.values().map(|n| n * n.saturating_sub(1) / 2).sum()
    };
    let mut by_both = std::collections::HashMap::new();
    let mut by_cluster = std::collections::HashMap::new();
    let mut by_person = std::collections::HashMap::new();
    for (c, o) in clusters.iter().zip(&origin) {
        *by_both.entry((u64::from(*c), *o as u64)).or_insert(0u64) += 1;
        *by_cluster.entry((u64::from(*c), 0)).or_insert(0u64) += 1;
        *by_person.entry((*o as u64, 0)).or_insert(0u64) += 1;
    }
    let (tp, predicted, truth) = (pairs(&by_both), pairs(&by_cluster), pairs(&by_person));
    eprintln!(
        "link_batch vs generated truth: precision {:.4}, recall {:.4} ({tp} of {truth} true pairs, {predicted} linked pairs)",
        tp as f64 / predicted.max(1) as f64,
        tp as f64 / truth.max(1) as f64
    );

    let t = Instant::now();
    let mut index = Index::new(Arc::new(model), config);
    for (i, d) in records.iter().enumerate() {
        index.upsert(i as u64, u64::from(clusters[i]), d);
    }
    let bytes = index.approx_memory_bytes();
    eprintln!(
        "index: {} records upserted in {:.1} s; approx {} MB, {} bytes/record",
        index.len(),
        t.elapsed().as_secs_f64(),
        bytes / 1_000_000,
        bytes / index.len().max(1)
    );
    let mut lat: Vec<f64> = Vec::new();
    let mut oversized = 0u64;
    let mut matched = 0usize;
    for q in 0..10_000usize {
        let d = &records[(q * 7919) % records.len()];
        let t = Instant::now();
        let c = index.candidates(d, Some(((q * 7919) % records.len()) as u64));
        lat.push(t.elapsed().as_secs_f64() * 1e6);
        oversized += u64::from(c.oversized_blocks);
        matched += usize::from(!c.ranked.is_empty());
    }
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p) as usize];
    eprintln!(
        "candidates(): 10000 lookups, p50 {:.0} us, p90 {:.0} us, p99 {:.0} us, max {:.0} us; {oversized} oversized blocks, {matched} with candidates",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0)
    );
    Ok(())
}
