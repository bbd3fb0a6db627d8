//! `tessera synth`: a synthetic population across silos, with its truth — as the
//! resolver's CSV input, or as the quickstart's four embedded silos
//! ([`tessera_synth::write_silos`]).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use tessera_synth::SynthConfig;

use super::create;

/// `tessera synth`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("output").required(true).args(["out", "silos"])))]
pub struct SynthArgs {
    /// How many people to generate (each appears in one or more silos).
    #[arg(long, default_value_t = 10_000)]
    people: usize,
    /// Random seed; the same seed always writes the same files.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where to write the records CSV (the resolver's input format).
    #[arg(long, value_name = "FILE", requires = "truth")]
    out: Option<PathBuf>,
    /// Where to write the truth CSV: `source,local_id,person_id`.
    #[arg(long, value_name = "FILE")]
    truth: Option<PathBuf>,
    /// Write the four silos into this directory instead: the EHR as FHIR R4 Bulk
    /// Data NDJSON (`ehr/`), billing, CRM and marketing as SQLite databases, plus
    /// `records.csv` and `truth.csv`. The directory must not hold silos already.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["out", "truth"])]
    silos: Option<PathBuf>,
}

/// Runs `tessera synth`.
pub fn run(args: &SynthArgs) -> anyhow::Result<()> {
    let config = SynthConfig {
        people: args.people,
        seed: args.seed,
        ..SynthConfig::default()
    };
    let stats = match (&args.silos, &args.out, &args.truth) {
        (Some(dir), _, _) => {
            let runtime = tokio::runtime::Builder::new_current_thread().build()?;
            runtime.block_on(tessera_synth::write_silos(&config, dir))?
        }
        (None, Some(out), Some(truth)) => {
            let mut records = create(out)?;
            let mut truth = create(truth)?;
            let stats = tessera_synth::write_csv(&config, &mut records, &mut truth)
                .context("cannot write the synthetic data")?;
            records.flush()?;
            truth.flush()?;
            serde_json::to_value(stats)?
        }
        _ => anyhow::bail!("give --out and --truth, or --silos"),
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{stats}")?;
    Ok(())
}
