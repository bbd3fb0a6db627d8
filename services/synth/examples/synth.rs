//! Writes a synthetic population to two CSV files and reports the throughput
//! (360,000 people give about 1,000,000 records with the default silos).
//!
//! ```text
//! cargo run --release -p tessera-synth --example synth -- \
//!     --people 360000 --seed 7 --records records.csv --truth truth.csv
//! ```

use std::fs::File;
use std::io::{self, Write};
use std::time::Instant;

use anyhow::{Context, bail};
use tessera_synth::{SynthConfig, write_csv};

fn main() -> anyhow::Result<()> {
    let mut config = SynthConfig::default();
    let mut records_path = None;
    let mut truth_path = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--people" => config.people = value.parse().context("--people")?,
            "--seed" => config.seed = value.parse().context("--seed")?,
            "--records" => records_path = Some(value),
            "--truth" => truth_path = Some(value),
            other => bail!("unknown flag {other}; known: --people --seed --records --truth"),
        }
    }
    let (Some(records_path), Some(truth_path)) = (records_path, truth_path) else {
        bail!("usage: synth --people N --seed S --records FILE --truth FILE");
    };
    let records = File::create(&records_path).with_context(|| records_path.clone())?;
    let truth = File::create(&truth_path).with_context(|| truth_path.clone())?;

    let started = Instant::now();
    let stats = write_csv(&config, records, truth)?;
    let elapsed = started.elapsed();

    let mut err = io::stderr().lock();
    writeln!(
        err,
        "{} people, {} records in {:.2} s ({:.0} records/s)",
        stats.people,
        stats.records,
        elapsed.as_secs_f64(),
        stats.records as f64 / elapsed.as_secs_f64()
    )?;
    for silo in &stats.silos {
        writeln!(
            err,
            "  {:<10} {:>9} records ({} duplicate registrations)",
            silo.name, silo.records, silo.duplicates
        )?;
    }
    writeln!(err, "  traps: {:?}", stats.traps)?;
    Ok(())
}
