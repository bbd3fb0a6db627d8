//! `tessera synth`: a synthetic population across silos, with its truth.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use tessera_synth::SynthConfig;

use super::create;

/// `tessera synth`.
#[derive(Debug, Args)]
pub struct SynthArgs {
    /// How many people to generate (each appears in one or more silos).
    #[arg(long, default_value_t = 10_000)]
    people: usize,
    /// Random seed; the same seed always writes the same files.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where to write the records CSV (the resolver's input format).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Where to write the truth CSV: `source,local_id,person_id`.
    #[arg(long, value_name = "FILE")]
    truth: PathBuf,
}

/// Runs `tessera synth`.
pub fn run(args: &SynthArgs) -> anyhow::Result<()> {
    let config = SynthConfig {
        people: args.people,
        seed: args.seed,
        ..SynthConfig::default()
    };
    let mut records = create(&args.out)?;
    let mut truth = create(&args.truth)?;
    let stats = tessera_synth::write_csv(&config, &mut records, &mut truth)
        .context("cannot write the synthetic data")?;
    records.flush()?;
    truth.flush()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string(&stats)?)?;
    Ok(())
}
