//! `tessera audit verify` and `tessera audit export`: checking a JSONL audit
//! trail's hash chain, and exporting its records as FHIR R4 `AuditEvent`s.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use tessera_audit::AuditRecord;

/// `tessera audit ...`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verifies a JSONL audit trail's hash chain (or, with `--postgres`, table
    /// `tessera_audit`): exits 0 with a one-line summary, or 1 naming the first broken
    /// record's line (row) and sequence number.
    Verify {
        /// The JSONL audit trail.
        #[arg(required_unless_present = "postgres")]
        file: Option<PathBuf>,
        /// The PostgreSQL trail's database URL instead; `env:NAME` or `file:PATH`
        /// keeps a password off the command line.
        #[arg(long, value_name = "URL", conflicts_with = "file")]
        postgres: Option<String>,
    },
    /// Writes a verified JSONL audit trail's records to standard output as FHIR R4
    /// `AuditEvent` resources (IHE BALP).
    Export {
        /// The JSONL audit trail.
        file: PathBuf,
        /// `fhir`: one Bundle; `fhir-ndjson`: one AuditEvent per line.
        #[arg(long, value_enum, default_value_t = ExportFormat::Fhir)]
        format: ExportFormat,
    },
}

/// The export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// A FHIR `Bundle` of `AuditEvent`s, as one JSON document.
    Fhir,
    /// One FHIR `AuditEvent` per line.
    FhirNdjson,
}

/// Runs an audit command.
pub fn run(command: &AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Verify {
            file: Some(file), ..
        } => verify(file),
        AuditCommand::Verify {
            postgres: Some(url),
            ..
        } => verify_postgres(url),
        AuditCommand::Verify { .. } => anyhow::bail!("name a trail file or --postgres URL"),
        AuditCommand::Export { file, format } => export(file, *format),
    }
}

fn verify(file: &Path) -> anyhow::Result<ExitCode> {
    match tessera_audit::verify(file) {
        Ok(report) => {
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{}: ok, {} records, head {}",
                file.display(),
                report.records,
                report.head_hash
            )?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            let _ = writeln!(std::io::stderr(), "{}: {err}", file.display());
            Ok(ExitCode::FAILURE)
        }
    }
}

fn verify_postgres(url: &str) -> anyhow::Result<ExitCode> {
    let url = tessera_types::Secret::new(url)
        .resolve()
        .context("--postgres")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let sink = tessera_audit::PostgresSink::connect(url.expose())
            .await
            .context("cannot open the audit database")?;
        anyhow::Ok(sink.verify().await)
    })?;
    match result {
        Ok(report) => {
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "tessera_audit: ok, {} records, head {}",
                report.records, report.head_hash
            )?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            let _ = writeln!(std::io::stderr(), "tessera_audit: {err}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// One line of the JSONL trail; only the record is exported.
#[derive(serde::Deserialize)]
struct Line {
    record: AuditRecord,
}

fn export(file: &Path, format: ExportFormat) -> anyhow::Result<ExitCode> {
    if let Err(err) = tessera_audit::verify(file) {
        let _ = writeln!(std::io::stderr(), "{}: {err}; not exported", file.display());
        return Ok(ExitCode::FAILURE);
    }
    let mut records = Vec::new();
    for (i, line) in super::open(file)?.lines().enumerate() {
        let line = line.with_context(|| format!("{}: cannot read", file.display()))?;
        if line.is_empty() {
            continue;
        }
        let parsed: Line = serde_json::from_str(&line)
            .with_context(|| format!("{}: line {}: not an audit record", file.display(), i + 1))?;
        records.push(parsed.record);
    }
    let mut out = std::io::stdout().lock();
    match format {
        ExportFormat::Fhir => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&tessera_audit::export_fhir(&records))?
        )?,
        ExportFormat::FhirNdjson => write!(out, "{}", tessera_audit::export_fhir_ndjson(&records))?,
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
