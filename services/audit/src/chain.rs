use std::path::Path;

use sha2::{Digest, Sha256};

use crate::{AuditRecord, VerifyError};

/// `prev_hash` of the first line: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The result of a successful [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Number of records.
    pub records: u64,
    /// Hex SHA-256 of the last line (the next line's `prev_hash`).
    pub head_hash: String,
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[derive(serde::Serialize)]
struct Canonical<'a> {
    prev_hash: &'a str,
    record: &'a AuditRecord,
}

/// Builds the line (without newline) for `record` after a line hashing to `prev_hash`.
pub(crate) fn make_line(
    prev_hash: &str,
    record: &AuditRecord,
) -> Result<String, serde_json::Error> {
    let canonical = serde_json::to_string(&Canonical { prev_hash, record })?;
    let hash = sha256_hex(canonical.as_bytes());
    let body = &canonical[..canonical.len() - 1];
    Ok(format!("{body},\"hash\":\"{hash}\"}}"))
}

/// Checks one line against the expected `prev_hash` and sequence.
pub(crate) fn check_line(
    line: &[u8],
    prev_hash: &str,
    sequence: u64,
    line_no: u64,
) -> Result<(), VerifyError> {
    let broken = |what| VerifyError::Broken {
        line: line_no,
        sequence,
        what,
    };
    // `,"hash":"` + 64 hex + `"}` = 9 + 64 + 2 bytes.
    const TAIL: usize = 75;
    if line.len() < TAIL
        || !line.ends_with(b"\"}")
        || &line[line.len() - TAIL..line.len() - 66] != b",\"hash\":\""
    {
        return Err(broken("malformed line"));
    }
    let stored = &line[line.len() - 66..line.len() - 2];
    let mut canonical = line[..line.len() - TAIL].to_vec();
    canonical.push(b'}');
    if sha256_hex(&canonical).as_bytes() != stored {
        return Err(broken("hash mismatch"));
    }
    #[derive(serde::Deserialize)]
    struct Parsed {
        prev_hash: String,
        record: AuditRecord,
    }
    let parsed: Parsed =
        serde_json::from_slice(&canonical).map_err(|_| broken("malformed line"))?;
    if parsed.prev_hash != prev_hash {
        return Err(broken("link to previous line broken"));
    }
    if parsed.record.sequence != sequence {
        return Err(broken("sequence out of order"));
    }
    Ok(())
}

/// Walks a JSONL trail in memory; returns the report or the first broken line.
pub(crate) fn verify_bytes(data: &[u8]) -> Result<VerifyReport, VerifyError> {
    let mut prev = GENESIS_HASH.to_owned();
    let mut n = 0u64;
    let mut rest = data;
    while !rest.is_empty() {
        n += 1;
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            return Err(VerifyError::Broken {
                line: n,
                sequence: n,
                what: "truncated line",
            });
        };
        let line = &rest[..end];
        check_line(line, &prev, n, n)?;
        prev = sha256_hex(line);
        rest = &rest[end + 1..];
    }
    Ok(VerifyReport {
        records: n,
        head_hash: prev,
    })
}

/// Verifies the JSONL trail at `path`: every hash, link and sequence number; names the first
/// broken line on any edit, deletion, reordering or truncation.
pub fn verify(path: &Path) -> Result<VerifyReport, VerifyError> {
    let data = std::fs::read(path).map_err(|e| VerifyError::Io(e.kind().to_string()))?;
    verify_bytes(&data)
}
