//! `tessera view`: one person's view across every source, from a running gateway's
//! PatientViewService, printed as tables a person can read or as JSON.
//!
//! This file holds the arguments and turns them into requests; `client` connects
//! and calls under the deadline and formats gRPC errors; `render` prints the
//! tables (drawn by `table`); `json` converts a view to proto3-style JSON.

mod client;
mod json;
mod render;
mod table;
#[cfg(test)]
mod tests;

use std::time::Duration;

use clap::{Args, ValueEnum};
use tessera_proto::v1 as pb;

/// `tessera view`.
#[derive(Debug, Args)]
pub struct ViewArgs {
    /// The gateway's address: `http://HOST:PORT`, `https://HOST:PORT`, or
    /// `HOST:PORT` (TLS when `--ca` or `--cert` is given, plaintext otherwise).
    #[arg(long, value_name = "URL")]
    addr: String,
    /// TLS and credentials.
    #[command(flatten)]
    connect: crate::connect::ConnectOptions,
    /// Whose view.
    #[command(flatten)]
    subject: SubjectArgs,
    /// Only these sections, comma-separated (for example `demographics,encounters`);
    /// every section the caller may see otherwise.
    #[arg(long, value_name = "NAME,...", value_delimiter = ',', value_parser = parse_section)]
    sections: Vec<String>,
    /// Why you ask (HL7 v3 PurposeOfUse); sections are authorized per purpose.
    #[arg(long, value_enum, default_value_t = Purpose::Treatment)]
    purpose: Purpose,
    /// The whole call's deadline, connecting included (`500ms`, `2s`); sent to the
    /// gateway as the gRPC deadline.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_timeout)]
    timeout: Duration,
    /// Accept cached records up to this old (`30s`, `5m`); the adapters' TTLs
    /// decide otherwise.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    max_staleness: Option<Duration>,
    /// Print JSON instead of tables (with `--stream`, one JSON object per message).
    #[arg(long)]
    json: bool,
    /// Use StreamPatientView and print each section as it arrives.
    #[arg(long)]
    stream: bool,
}

/// Exactly one of `--master` and `--ref`.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct SubjectArgs {
    /// A master: `123` or `masters/123`.
    #[arg(long, value_name = "ID", value_parser = parse_master)]
    master: Option<String>,
    /// A source record, resolved to its master: `SYSTEM/LOCAL_ID` (split at the
    /// first `/`, so local IDs may contain `/`).
    #[arg(long = "ref", value_name = "SYSTEM/LOCAL_ID", value_parser = parse_ref)]
    source_ref: Option<pb::SourceRecordKey>,
}

/// Why the caller asks, as HL7 v3 PurposeOfUse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Purpose {
    /// Treatment (TREAT).
    Treatment,
    /// Emergency treatment, break-the-glass (ETREAT); always audited.
    EmergencyTreatment,
    /// Payment (HPAYMT).
    Payment,
    /// Healthcare operations (HOPERAT).
    Operations,
    /// Marketing (HMARKT).
    Marketing,
    /// At the patient's own request (PATRQT).
    PatientRequest,
    /// Public health (PUBHLTH).
    PublicHealth,
    /// Research (HRESCH).
    Research,
}

impl From<Purpose> for pb::PurposeOfUse {
    fn from(purpose: Purpose) -> Self {
        match purpose {
            Purpose::Treatment => Self::Treatment,
            Purpose::EmergencyTreatment => Self::EmergencyTreatment,
            Purpose::Payment => Self::Payment,
            Purpose::Operations => Self::Operations,
            Purpose::Marketing => Self::Marketing,
            Purpose::PatientRequest => Self::PatientRequest,
            Purpose::PublicHealth => Self::PublicHealth,
            Purpose::Research => Self::Research,
        }
    }
}

/// Runs `tessera view`: prints the view, or returns the error `main` prints.
pub fn run(args: ViewArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(client::view(&args))
}

impl ViewArgs {
    fn subject(&self) -> pb::PatientSubject {
        use pb::patient_subject::Subject;
        let subject = match (&self.subject.master, &self.subject.source_ref) {
            (Some(master), _) => Subject::Master(master.clone()),
            (None, Some(key)) => Subject::SourceRecord(key.clone()),
            (None, None) => unreachable!("clap requires one of --master and --ref"),
        };
        pb::PatientSubject {
            subject: Some(subject),
        }
    }

    /// The read mask, `sections.NAME` per section; none means every section.
    fn read_mask(&self) -> Option<prost_types::FieldMask> {
        let mut paths: Vec<String> = Vec::with_capacity(self.sections.len());
        for path in self.sections.iter().map(|s| section_path(s)) {
            if !paths.contains(&path) {
                paths.push(path);
            }
        }
        (!paths.is_empty()).then_some(prost_types::FieldMask { paths })
    }

    fn max_staleness(&self) -> anyhow::Result<Option<prost_types::Duration>> {
        self.max_staleness
            .map(|d| {
                prost_types::Duration::try_from(d)
                    .map_err(|_| anyhow::anyhow!("--max-staleness: {d:?} is too large"))
            })
            .transpose()
    }

    fn get_request(&self) -> anyhow::Result<pb::GetPatientViewRequest> {
        Ok(pb::GetPatientViewRequest {
            subject: Some(self.subject()),
            read_mask: self.read_mask(),
            purpose: pb::PurposeOfUse::from(self.purpose).into(),
            max_staleness: self.max_staleness()?,
        })
    }

    fn stream_request(&self) -> anyhow::Result<pb::StreamPatientViewRequest> {
        Ok(pb::StreamPatientViewRequest {
            subject: Some(self.subject()),
            read_mask: self.read_mask(),
            purpose: pb::PurposeOfUse::from(self.purpose).into(),
            max_staleness: self.max_staleness()?,
        })
    }
}

/// `123` or `masters/123` → `masters/123`.
fn parse_master(value: &str) -> Result<String, String> {
    let id = value.strip_prefix("masters/").unwrap_or(value);
    if id.is_empty() || id.contains('/') || id.chars().any(char::is_whitespace) {
        return Err("expected a master ID such as `123` or `masters/123`".to_owned());
    }
    Ok(format!("masters/{id}"))
}

/// `SYSTEM/LOCAL_ID`, split at the first `/`.
fn parse_ref(value: &str) -> Result<pb::SourceRecordKey, String> {
    match value.split_once('/') {
        Some((system, local_id)) if !system.is_empty() && !local_id.is_empty() => {
            Ok(pb::SourceRecordKey {
                system: system.to_owned(),
                local_id: local_id.to_owned(),
            })
        }
        _ => Err("expected SYSTEM/LOCAL_ID, such as `ehr/MRN-1`".to_owned()),
    }
}

/// One section name of `--sections`.
fn parse_section(value: &str) -> Result<String, String> {
    let name = value.trim();
    if name.is_empty() {
        return Err("empty section name".to_owned());
    }
    if name.contains(['`', '.']) || name.chars().any(char::is_whitespace) {
        return Err(format!(
            "`{name}` is not a section name (no `.`, backticks or spaces)"
        ));
    }
    Ok(name.to_owned())
}

/// The read-mask path of a section: `sections.NAME`, with the key quoted in
/// backticks when it is not an identifier, as AIP-161 asks for map keys.
fn section_path(name: &str) -> String {
    let identifier = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if identifier {
        format!("sections.{name}")
    } else {
        format!("sections.`{name}`")
    }
}

/// A deadline of zero could never be met.
fn parse_timeout(value: &str) -> Result<Duration, String> {
    match humantime::parse_duration(value) {
        Ok(d) if d.is_zero() => Err("the deadline must be longer than zero".to_owned()),
        Ok(d) => Ok(d),
        Err(err) => Err(err.to_string()),
    }
}
