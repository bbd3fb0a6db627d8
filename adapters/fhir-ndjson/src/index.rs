//! One NDJSON file, indexed by patient: the byte range of every line under the
//! patient it belongs to. Lines are read back with positioned reads.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tessera_adapter_core::{BuildError, FetchError};

/// A line's place in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    offset: u64,
    len: u32,
}

/// The index of one resource type's file.
#[derive(Debug)]
pub(crate) struct FileIndex {
    path: PathBuf,
    resource_type: String,
    /// `None` when the export has no file for the type (it holds none).
    file: Option<File>,
    by_patient: HashMap<String, Vec<Span>>,
    /// Every indexed line, in file order (for the identity feed).
    order: Vec<Span>,
    skipped: usize,
}

/// The patient a resource belongs to: its own id for a Patient, else the
/// `Patient/{id}` its `subject`, `patient` or first patient participant names.
fn patient_of(resource: &Value, resource_type: &str) -> Option<String> {
    if resource_type == "Patient" {
        return resource.get("id")?.as_str().map(str::to_owned);
    }
    let direct = ["subject", "patient", "beneficiary"]
        .iter()
        .filter_map(|field| resource.get(*field)?.get("reference")?.as_str())
        .next();
    let participant = || {
        resource
            .get("participant")?
            .as_array()?
            .iter()
            .filter_map(|p| p.get("actor")?.get("reference")?.as_str())
            .find(|r| r.contains("Patient/"))
    };
    let reference = direct.or_else(participant)?;
    let id = reference.rsplit_once("Patient/")?.1;
    (!id.is_empty() && !id.contains('/')).then(|| id.to_owned())
}

impl FileIndex {
    /// Scans `dir/<resource_type>.ndjson`. A missing file is an empty index,
    /// except for Patient, which every export has.
    pub(crate) fn build(dir: &Path, resource_type: &str) -> Result<Self, BuildError> {
        let path = dir.join(format!("{resource_type}.ndjson"));
        let mut index = Self {
            path: path.clone(),
            resource_type: resource_type.to_owned(),
            file: None,
            by_patient: HashMap::new(),
            order: Vec::new(),
            skipped: 0,
        };
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && resource_type != "Patient" => {
                tracing::warn!(resource_type, "no export file for the resource type");
                return Ok(index);
            }
            Err(e) => {
                return Err(BuildError::Setup(format!(
                    "{}: cannot open: {e}",
                    path.display()
                )));
            }
        };
        let mut reader = BufReader::new(
            file.try_clone()
                .map_err(|e| BuildError::Setup(format!("{}: cannot read: {e}", path.display())))?,
        );
        let (mut offset, mut line) = (0u64, Vec::new());
        loop {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| BuildError::Setup(format!("{}: cannot read: {e}", path.display())))?;
            if n == 0 {
                break;
            }
            let content = line.strip_suffix(b"\n").unwrap_or(&line);
            let span = Span {
                offset,
                len: u32::try_from(content.len()).unwrap_or(u32::MAX),
            };
            offset += n as u64;
            if content.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let patient = serde_json::from_slice::<Value>(content)
                .ok()
                .filter(|v| v.get("resourceType").and_then(Value::as_str) == Some(resource_type))
                .and_then(|v| patient_of(&v, resource_type));
            match patient {
                Some(patient) => {
                    index.by_patient.entry(patient).or_default().push(span);
                    index.order.push(span);
                }
                None => index.skipped += 1,
            }
        }
        if index.skipped > 0 {
            tracing::warn!(
                resource_type,
                skipped = index.skipped,
                "export lines skipped: not a resource of the type, or no patient reference"
            );
        }
        index.file = Some(file);
        Ok(index)
    }

    pub(crate) fn lines(&self) -> usize {
        self.order.len()
    }

    pub(crate) fn skipped(&self) -> usize {
        self.skipped
    }

    pub(crate) fn has_patient(&self, id: &str) -> bool {
        self.by_patient.contains_key(id)
    }

    pub(crate) fn all_lines(&self) -> Vec<Span> {
        self.order.clone()
    }

    fn read_span(&self, span: Span) -> Result<String, FetchError> {
        let file = self
            .file
            .as_ref()
            .ok_or_else(|| FetchError::unavailable("export file missing"))?;
        let mut buf = vec![0; span.len as usize];
        file.read_exact_at(&mut buf, span.offset)
            .map_err(|_| FetchError::unavailable("cannot read the export file"))?;
        String::from_utf8(buf).map_err(|_| FetchError::Malformed {
            message: "export line is not UTF-8".to_owned(),
        })
    }

    /// One line, parsed.
    pub(crate) fn read_line(&self, span: Span) -> Result<Value, FetchError> {
        let line = self.read_span(span)?;
        serde_json::from_str(&line).map_err(|_| FetchError::Malformed {
            message: format!("a {} line is not JSON", self.resource_type),
        })
    }

    /// A patient's lines with their parsed resources, and how many lines no
    /// longer parse as a resource of the type (the file changed since it was
    /// indexed).
    pub(crate) fn read_patient(&self, id: &str) -> Result<(Vec<(String, Value)>, u32), FetchError> {
        let Some(spans) = self.by_patient.get(id) else {
            return Ok((Vec::new(), 0));
        };
        let mut out = Vec::with_capacity(spans.len());
        let mut skipped = 0;
        for span in spans {
            let line = self.read_span(*span)?;
            match serde_json::from_str::<Value>(&line) {
                Ok(v)
                    if v.get("resourceType").and_then(Value::as_str)
                        == Some(self.resource_type.as_str()) =>
                {
                    out.push((line, v));
                }
                _ => skipped += 1,
            }
        }
        Ok((out, skipped))
    }

    /// Whether the file can still be read.
    pub(crate) fn check_readable(&self) -> Result<(), String> {
        std::fs::metadata(&self.path)
            .map(drop)
            .map_err(|_| format!("{}.ndjson is not readable", self.resource_type))
    }
}
