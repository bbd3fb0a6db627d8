//! Reading records in the canonical CSV format:
//! `source,local_id,given_name,family_name,birth_date,sex,address_line,city,state,postal_code,phone,email,ssn`.
//! Every value may be empty and extra columns are ignored; a bad row is an error
//! naming its line and column, never a panic.

use std::io::Read;

use crate::error::MatchError;
use crate::record::{Address, Demographics, Sex, SourceKey};

/// The canonical columns, in order.
pub const CSV_COLUMNS: [&str; 13] = [
    "source",
    "local_id",
    "given_name",
    "family_name",
    "birth_date",
    "sex",
    "address_line",
    "city",
    "state",
    "postal_code",
    "phone",
    "email",
    "ssn",
];

/// Longest accepted value, in bytes.
const MAX_VALUE_BYTES: usize = 4096;

/// Reads canonical CSV rows into source keys and demographics.
pub fn read_records_csv(reader: impl Read) -> Result<Vec<(SourceKey, Demographics)>, MatchError> {
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .from_reader(reader);
    let headers = rdr.byte_headers().map_err(|e| read_error(&e, 1))?.clone();
    let mut positions = [usize::MAX; CSV_COLUMNS.len()];
    for (i, h) in headers.iter().enumerate() {
        let name = String::from_utf8_lossy(h);
        let name = name
            .trim()
            .trim_start_matches('\u{feff}')
            .to_ascii_lowercase();
        if let Some(c) = CSV_COLUMNS.iter().position(|c| *c == name) {
            positions[c] = i;
        }
    }
    for (c, pos) in positions.iter().enumerate().take(2) {
        if *pos == usize::MAX {
            return Err(MatchError::Csv {
                line: 1,
                column: CSV_COLUMNS[c].to_owned(),
                reason: "required column is missing",
            });
        }
    }
    let mut out = Vec::new();
    let mut record = csv::ByteRecord::new();
    loop {
        let line_hint = rdr.position().line();
        match rdr.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(read_error(&e, line_hint)),
        }
        let line = record.position().map_or(line_hint, csv::Position::line);
        if record.iter().all(|v| v.iter().all(u8::is_ascii_whitespace)) {
            continue;
        }
        let mut values: [&str; CSV_COLUMNS.len()] = [""; CSV_COLUMNS.len()];
        for (c, pos) in positions.iter().enumerate() {
            if *pos == usize::MAX {
                continue;
            }
            let err = |reason| MatchError::Csv {
                line,
                column: CSV_COLUMNS[c].to_owned(),
                reason,
            };
            // A short row (trailing empty values left out) reads as empty values.
            let Some(raw) = record.get(*pos) else {
                continue;
            };
            if raw.len() > MAX_VALUE_BYTES {
                return Err(err("value is longer than 4096 bytes"));
            }
            let v = std::str::from_utf8(raw).map_err(|_| err("value is not valid utf-8"))?;
            if v.chars().any(|ch| ch.is_control() && ch != '\t') {
                return Err(err("value contains control characters"));
            }
            values[c] = v.trim();
        }
        let sex = Sex::from_code(values[5]).ok_or_else(|| MatchError::Csv {
            line,
            column: "sex".to_owned(),
            reason: "sex must be m, f, o, u (or male, female, other, unknown, an iso 5218 code) or empty",
        })?;
        let key = SourceKey::new(values[0], values[1]);
        let opt = |s: &str| {
            if s.is_empty() {
                Vec::new()
            } else {
                vec![s.to_owned()]
            }
        };
        let has_address = values[6..10].iter().any(|v| !v.is_empty());
        let demo = Demographics {
            given_names: values[2].split_whitespace().map(str::to_owned).collect(),
            family_name: values[3].to_owned(),
            birth_date: values[4].to_owned(),
            sex,
            addresses: if has_address {
                vec![Address {
                    lines: opt(values[6]),
                    city: values[7].to_owned(),
                    state: values[8].to_owned(),
                    postal_code: values[9].to_owned(),
                    country: String::new(),
                }]
            } else {
                Vec::new()
            },
            phones: opt(values[10]),
            emails: opt(values[11]),
            national_id: values[12].to_owned(),
            ..Demographics::default()
        };
        out.push((key, demo));
    }
    Ok(out)
}

fn read_error(e: &csv::Error, line: u64) -> MatchError {
    let line = e.position().map_or(line, csv::Position::line);
    match e.kind() {
        csv::ErrorKind::Io(io) => MatchError::CsvRead {
            line,
            reason: io.kind().to_string(),
        },
        _ => MatchError::CsvRead {
            line,
            reason: "malformed csv".to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "source,local_id,given_name,family_name,birth_date,sex,address_line,city,state,postal_code,phone,email,ssn,extra\n";

    #[test]
    fn reads_rows_with_empty_values_and_extra_columns() {
        let csv = format!(
            "{HEADER}ehr,1,Mary Ann,Smith,1980-01-02,F,1 Main St,Springfield,IL,62704,(415) 555-2671,m@x.org,123-45-6780,zzz\nehr,2,,,,,,,,,,,,\n\nehr,3,Ann\n"
        );
        let rows = read_records_csv(csv.as_bytes()).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[2].1.given_names,
            ["Ann"],
            "a short row reads as empty values"
        );
        assert_eq!(rows[0].0, SourceKey::new("ehr", "1"));
        assert_eq!(rows[0].1.given_names, ["Mary", "Ann"]);
        assert_eq!(rows[0].1.sex, Sex::Female);
        assert_eq!(rows[0].1.addresses[0].postal_code, "62704");
        assert_eq!(rows[0].1.national_id, "123-45-6780");
        assert_eq!(rows[1].1, Demographics::default());
    }

    #[test]
    fn bad_rows_name_line_and_column() {
        let csv = format!("{HEADER}ehr,1,A,B,,f,,,,,,,\nehr,2,A,B,,robot,,,,,,,\n");
        let err = read_records_csv(csv.as_bytes()).unwrap_err().to_string();
        assert!(
            err.contains("line 3") && err.contains("column sex"),
            "{err}"
        );
        assert!(!err.contains("robot"), "no patient data in errors: {err}");

        let mut bytes = format!("{HEADER}ehr,1,").into_bytes();
        bytes.extend_from_slice(b"\xff\xfe,B\n");
        let err = read_records_csv(bytes.as_slice()).unwrap_err().to_string();
        assert!(
            err.contains("line 2") && err.contains("given_name"),
            "{err}"
        );

        let err = read_records_csv("given_name\nA\n".as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1") && err.contains("source"), "{err}");

        let csv = format!("{HEADER}ehr,1,\"unterminated\n");
        assert!(
            read_records_csv(csv.as_bytes()).is_ok_and(|r| r.len() == 1)
                || read_records_csv(csv.as_bytes()).is_err()
        );
    }
}
