//! Deduplicates a canonical CSV and writes `source,local_id,master_id`.
//!
//! `cargo run --release -p tessera-matching --example link_batch -- --input IN.csv --output OUT.csv [--model MODEL.json] [--train] [--save-model OUT.json] [--deduplicated-source SOURCE]...`

#![allow(clippy::print_stderr)] // a command-line tool reports on stderr

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::time::Instant;

use anyhow::{Context, bail};
use tessera_matching::{
    MatchConfig, Model, TrainConfig, link_batch_sources, read_records_csv, train,
};

fn main() -> anyhow::Result<()> {
    let mut input = None;
    let mut output = None;
    let mut model_path = None;
    let mut save_model = None;
    let mut do_train = false;
    let mut config = MatchConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--input" => input = args.next(),
            "--output" => output = args.next(),
            "--model" => model_path = args.next(),
            "--save-model" => save_model = args.next(),
            "--train" => do_train = true,
            "--deduplicated-source" => {
                let source = args
                    .next()
                    .context("--deduplicated-source needs a source")?;
                config.deduplicated_sources.insert(source);
            }
            other => bail!("unknown argument {other}"),
        }
    }
    let (Some(input), Some(output)) = (input, output) else {
        bail!(
            "usage: link_batch --input CSV --output CSV [--model FILE] [--train] [--save-model FILE] [--deduplicated-source SOURCE]..."
        );
    };
    let t0 = Instant::now();
    let rows = read_records_csv(BufReader::new(File::open(&input).context("open input")?))?;
    let demos: Vec<_> = rows.iter().map(|(_, d)| d.clone()).collect();
    eprintln!("read {} records in {:.2?}", rows.len(), t0.elapsed());
    let model = if do_train {
        let t = Instant::now();
        let m = train(&demos, &TrainConfig::default())?;
        eprintln!("trained in {:.2?}", t.elapsed());
        m
    } else if let Some(p) = model_path {
        Model::from_json(&std::fs::read_to_string(p).context("read model")?)?
    } else {
        Model::builtin()
    };
    if let Some(p) = save_model {
        std::fs::write(p, model.to_json()).context("write model")?;
    }
    let t = Instant::now();
    let sources: Vec<&str> = rows.iter().map(|(k, _)| k.system.as_str()).collect();
    let report = link_batch_sources(&demos, &sources, &model, &config);
    eprintln!(
        "linked in {:.2?}: {} pairs compared, {} links ({} one-to-one)",
        t.elapsed(),
        report.compared_pairs,
        report.match_links,
        report.one_to_one_links
    );
    let clusters = report.clusters;
    let mut out = BufWriter::new(File::create(&output).context("create output")?);
    writeln!(out, "source,local_id,master_id")?;
    for ((key, _), c) in rows.iter().zip(&clusters) {
        writeln!(out, "{},{},{}", key.system, key.local_id, c)?;
    }
    out.flush()?;
    eprintln!("total {:.2?}", t0.elapsed());
    Ok(())
}
