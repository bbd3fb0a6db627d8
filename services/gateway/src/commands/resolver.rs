//! `tessera resolver link-batch | train | explain`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use tessera_matching::{Demographics, MatchConfig, Model, RecordLimits, SourceKey, TrainConfig};
use tessera_resolver::store::{SqlStore, bulk_load};

use super::{create, open};

/// Batch and offline identity resolution.
#[derive(Debug, Subcommand)]
pub enum ResolverCommand {
    /// Links every record of a CSV file into masters and writes
    /// `source,local_id,master_id` for every input row.
    LinkBatch(LinkBatchArgs),
    /// Estimates a matching model from unlabelled records (u by random sampling,
    /// m by EM) and writes it as a versioned model file.
    Train(TrainArgs),
    /// Prints the per-field match weights between two records of a CSV file.
    Explain(ExplainArgs),
    /// Loads the identity store from a configured source's identity feed,
    /// matching every record as it arrives.
    Load(super::load::LoadArgs),
}

/// `tessera resolver link-batch`.
#[derive(Debug, Args)]
pub struct LinkBatchArgs {
    /// Records CSV: source,local_id,given_name,family_name,birth_date,sex,
    /// address_line,city,state,postal_code,phone,email,ssn (any value may be
    /// empty; extra columns are ignored).
    #[arg(long, value_name = "FILE")]
    input: PathBuf,
    /// Where to write `source,local_id,master_id`.
    #[arg(long, value_name = "FILE")]
    output: PathBuf,
    /// Also load the records and their links into this identity store
    /// (`sqlite://PATH` or `postgres://...`); master IDs are then the store's.
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// A model file from `tessera resolver train`; the built-in model otherwise.
    #[arg(long, value_name = "FILE", conflicts_with = "train")]
    model: Option<PathBuf>,
    /// Train a model on the input first (no labels needed) and link with it.
    #[arg(long)]
    train: bool,
    /// Write the records a person should review here: those whose best candidate
    /// outside their own master scores in the review band or above:
    /// `source,local_id,master_id,candidate_master_id,score`.
    #[arg(long, value_name = "FILE")]
    review_output: Option<PathBuf>,
    /// Override the model's MATCH threshold (bits).
    #[arg(long)]
    match_threshold: Option<f64>,
    /// Override the model's POSSIBLE_MATCH threshold (bits).
    #[arg(long)]
    review_threshold: Option<f64>,
    /// A source system (the CSV's `source`) that holds each person at most
    /// once: its records are never linked to each other, and a master holds at
    /// most one of them, so records of two such sources pair one-to-one.
    /// Repeat for each such source.
    #[arg(long = "deduplicated-source", value_name = "SOURCE")]
    deduplicated_sources: Vec<String>,
}

/// `tessera resolver train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Records CSV, as for link-batch.
    #[arg(long, value_name = "FILE")]
    input: PathBuf,
    /// Where to write the model (JSON).
    #[arg(long, value_name = "FILE")]
    model_out: PathBuf,
}

/// `tessera resolver explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Records CSV holding both records.
    #[arg(long, value_name = "FILE")]
    input: PathBuf,
    /// The first record, as SOURCE/LOCAL_ID.
    a: String,
    /// The second record, as SOURCE/LOCAL_ID.
    b: String,
    /// A model file; the built-in model otherwise.
    #[arg(long, value_name = "FILE")]
    model: Option<PathBuf>,
}

/// Runs a resolver command.
pub fn run(command: ResolverCommand) -> anyhow::Result<()> {
    match command {
        ResolverCommand::LinkBatch(args) => link_batch(&args),
        ResolverCommand::Train(args) => train(&args),
        ResolverCommand::Explain(args) => explain(&args),
        ResolverCommand::Load(args) => super::load::run(&args),
    }
}

/// Reads a records CSV; every row needs a valid source and local ID. A row over the
/// default [`RecordLimits`] is left out, named on stderr (line and field, never a
/// value); the count is returned with the rows kept.
fn read_records(path: &Path) -> anyhow::Result<(Vec<(SourceKey, Demographics)>, usize)> {
    let mut records = tessera_matching::read_records_csv(open(path)?)
        .with_context(|| format!("{}", path.display()))?;
    for (row, (key, _)) in records.iter().enumerate() {
        if let Some(v) = key.validate("").first() {
            // Data rows start on line 2, after the header.
            bail!(
                "{}: line {}: {} {}",
                path.display(),
                row + 2,
                v.field,
                v.description
            );
        }
    }
    let limits = RecordLimits::default();
    let mut row = 0;
    let mut stderr = std::io::stderr().lock();
    let before = records.len();
    records.retain(|(_, demographics)| {
        row += 1;
        let Some(v) = demographics
            .limit_violations(&limits, "")
            .into_iter()
            .next()
        else {
            return true;
        };
        let _ = writeln!(
            stderr,
            "{}: line {}: {} {}; row left out",
            path.display(),
            row + 1,
            v.field,
            v.description
        );
        false
    });
    let left_out = before - records.len();
    Ok((records, left_out))
}

fn load_model(path: Option<&Path>) -> anyhow::Result<Model> {
    match path {
        None => Ok(Model::builtin()),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("{}: cannot read", path.display()))?;
            Model::from_json(&text)
                .with_context(|| format!("{}: not a tessera model", path.display()))
        }
    }
}

fn link_batch(args: &LinkBatchArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let (records, left_out) = read_records(&args.input)?;
    let demographics: Vec<Demographics> = records.iter().map(|(_, d)| d.clone()).collect();
    let model = if args.train {
        tessera_matching::train(&demographics, &TrainConfig::default())
            .context("training failed")?
    } else {
        load_model(args.model.as_deref())?
    };
    let mut config = MatchConfig::default();
    if let Some(t) = args.match_threshold {
        config.match_threshold = t;
    }
    if let Some(t) = args.review_threshold {
        config.review_threshold = t;
    }
    config
        .deduplicated_sources
        .extend(args.deduplicated_sources.iter().cloned());
    let sources: Vec<&str> = records.iter().map(|(k, _)| k.system.as_str()).collect();
    let clusters =
        tessera_matching::link_batch_sources(&demographics, &sources, &model, &config).clusters;
    let linked = started.elapsed();

    let masters: Vec<u64> = match &args.store {
        None => clusters.iter().map(|c| u64::from(*c) + 1).collect(),
        Some(url) => load_into_store(url, &records, &clusters)?,
    };
    let mut out = create(&args.output)?;
    writeln!(out, "source,local_id,master_id")?;
    let mut writer = csv::Writer::from_writer(out);
    for ((key, _), master) in records.iter().zip(&masters) {
        writer.write_record([
            key.system.as_str(),
            key.local_id.as_str(),
            &master.to_string(),
        ])?;
    }
    writer.flush()?;
    let review_rows = match &args.review_output {
        Some(path) => write_review(path, &records, &masters, &model, &config)?,
        None => 0,
    };
    let distinct: std::collections::HashSet<_> = masters.iter().collect();
    let summary = serde_json::json!({
        "records": records.len(),
        "rows_left_out": left_out,
        "masters": distinct.len(),
        "review_rows": review_rows,
        "link_seconds": linked.as_secs_f64(),
        "total_seconds": started.elapsed().as_secs_f64(),
    });
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{summary}")?;
    Ok(())
}

/// Writes the records whose best candidate outside their own master would go to
/// review (or is a MATCH the batch did not take, for example because another
/// record of that master conflicts): the pairs a person should look at. Returns
/// how many rows it wrote.
fn write_review(
    path: &Path,
    records: &[(SourceKey, Demographics)],
    masters: &[u64],
    model: &Model,
    config: &MatchConfig,
) -> anyhow::Result<usize> {
    let demographics: Vec<Demographics> = records.iter().map(|(_, d)| d.clone()).collect();
    let rows = tessera_matching::review_pairs(&demographics, masters, model, config);
    let mut writer = csv::Writer::from_writer(create(path)?);
    writer.write_record([
        "source",
        "local_id",
        "master_id",
        "candidate_master_id",
        "score",
    ])?;
    for pair in &rows {
        let (key, _) = &records[pair.record];
        writer.write_record([
            key.system.as_str(),
            key.local_id.as_str(),
            &masters[pair.record].to_string(),
            &pair.candidate.to_string(),
            &format!("{:.2}", pair.score),
        ])?;
    }
    writer.flush()?;
    Ok(rows.len())
}

/// Loads the records, one master per cluster, into an identity store.
fn load_into_store(
    url: &str,
    records: &[(SourceKey, Demographics)],
    clusters: &[u32],
) -> anyhow::Result<Vec<u64>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = SqlStore::open(url)
            .await
            .context("cannot open the identity store")?;
        Ok(bulk_load(&store, records, clusters).await?)
    })
}

fn train(args: &TrainArgs) -> anyhow::Result<()> {
    let (records, _) = read_records(&args.input)?;
    let demographics: Vec<Demographics> = records.into_iter().map(|(_, d)| d).collect();
    let model = tessera_matching::train(&demographics, &TrainConfig::default())
        .context("training failed")?;
    let mut out = create(&args.model_out)?;
    out.write_all(model.to_json().as_bytes())?;
    out.flush()?;
    Ok(())
}

fn explain(args: &ExplainArgs) -> anyhow::Result<()> {
    let parse = |s: &str| -> anyhow::Result<SourceKey> {
        let (system, local_id) = s
            .split_once('/')
            .context("records are named SOURCE/LOCAL_ID")?;
        Ok(SourceKey::new(system, local_id))
    };
    let (a, b) = (parse(&args.a)?, parse(&args.b)?);
    let (records, _) = read_records(&args.input)?;
    let find = |key: &SourceKey| -> anyhow::Result<&Demographics> {
        records
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, d)| d)
            .with_context(|| {
                format!(
                    "{}/{} is not in {}",
                    key.system,
                    key.local_id,
                    args.input.display()
                )
            })
    };
    let model = load_model(args.model.as_deref())?;
    let explanation = tessera_matching::explain(&model, find(&a)?, find(&b)?);
    let mut out = std::io::stdout().lock();
    writeln!(out, "{:<24} {:<28} {:>9}", "field", "level", "weight")?;
    for w in &explanation.field_weights {
        writeln!(out, "{:<24} {:<28} {:>9.2}", w.field, w.level, w.weight)?;
    }
    writeln!(out, "{:<24} {:<28} {:>9.2}", "total", "", explanation.score)?;
    writeln!(out, "decision: {:?}", explanation.decision)?;
    Ok(())
}
