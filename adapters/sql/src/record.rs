//! Rows (as JSON objects) into records and identity-feed entries.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use tessera_adapter_core::{FeedRecord, Record};
use tessera_types::{Address, Demographics, Sex};

/// How a section's rows become records.
#[derive(Debug, Clone)]
pub(crate) struct Shape {
    pub(crate) fields: Option<BTreeMap<String, String>>,
    pub(crate) record_id: Option<String>,
    pub(crate) update_time: Option<String>,
    pub(crate) json_columns: Vec<String>,
}

/// Why a row did not become a record. Messages name columns (configuration),
/// never values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RowProblem {
    /// The row's data is bad: skip it and count it.
    Malformed(String),
    /// The query does not return a configured column: a configuration error.
    MissingColumn(String),
}

impl Shape {
    /// The record a row makes.
    pub(crate) fn record(&self, mut row: Map<String, Value>) -> Result<Record, RowProblem> {
        for column in &self.json_columns {
            match row.get_mut(column) {
                None => return Err(RowProblem::MissingColumn(column.clone())),
                Some(value) => {
                    // Text is parsed; JSON already (a json/jsonb column) or NULL is kept.
                    if let Value::String(text) = &*value {
                        let parsed: Value = serde_json::from_str(text).map_err(|_| {
                            RowProblem::Malformed(format!("column {column:?} holds invalid JSON"))
                        })?;
                        *value = parsed;
                    }
                }
            }
        }
        let record_id = match &self.record_id {
            None => None,
            Some(column) => match row.get(column) {
                None => return Err(RowProblem::MissingColumn(column.clone())),
                Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                Some(_) => {
                    return Err(RowProblem::Malformed(format!(
                        "column {column:?} is not a usable record ID"
                    )));
                }
            },
        };
        let update_time = match &self.update_time {
            None => None,
            Some(column) => match row.get(column) {
                None => return Err(RowProblem::MissingColumn(column.clone())),
                Some(value) => parse_time(value).map_err(|()| {
                    RowProblem::Malformed(format!("column {column:?} is not a time"))
                })?,
            },
        };
        let object = match &self.fields {
            None => row,
            Some(fields) => {
                let mut out = Map::with_capacity(fields.len());
                for (field, column) in fields {
                    let value = row
                        .remove(column)
                        .ok_or_else(|| RowProblem::MissingColumn(column.clone()))?;
                    out.insert(field.clone(), value);
                }
                out
            }
        };
        Ok(Record {
            record_id,
            json: Value::Object(object).to_string().into(),
            update_time,
        })
    }
}

/// A time from a JSON value: RFC 3339 text, civil date-time text taken as UTC,
/// or Unix seconds. NULL is no time.
pub(crate) fn parse_time(value: &Value) -> Result<Option<SystemTime>, ()> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => parse_time_text(s).map(Some),
        Value::Number(n) => {
            let secs = n.as_f64().ok_or(())?;
            if !(0.0..1e11).contains(&secs) {
                return Err(());
            }
            Ok(Some(UNIX_EPOCH + Duration::from_secs_f64(secs)))
        }
        _ => Err(()),
    }
}

fn parse_time_text(s: &str) -> Result<SystemTime, ()> {
    if let Ok(ts) = s.parse::<jiff::Timestamp>() {
        return SystemTime::try_from(ts).map_err(drop);
    }
    let civil: jiff::civil::DateTime = s.parse().map_err(drop)?;
    let ts = jiff::tz::Offset::UTC.to_timestamp(civil).map_err(drop)?;
    SystemTime::try_from(ts).map_err(drop)
}

/// An identity-feed entry from a row whose columns are named after the
/// demographics (see `FeedConfig::query`).
pub(crate) fn feed_record(mut row: Map<String, Value>) -> Result<FeedRecord, String> {
    let local_id = match row.remove("local_id") {
        Some(Value::String(s)) if !s.is_empty() => s,
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err("column \"local_id\" is empty or not text".to_owned()),
        None => return Err("the feed query returns no \"local_id\" column".to_owned()),
    };
    let mut text = |column: &str| one(row.remove(column));
    let family_name = text("family_name");
    let name_suffix = text("name_suffix");
    let birth_date = text("birth_date");
    let sex = Sex::from_code(&text("sex")).unwrap_or_default();
    let city = text("city");
    let state = text("state");
    let postal_code = text("postal_code");
    let country = text("country");
    let national_id = text("national_id");
    let given_names = many(row.remove("given_names"), true);
    let previous_family_names = many(row.remove("previous_family_names"), false);
    let phones = many(row.remove("phones"), false);
    let emails = many(row.remove("emails"), false);
    let lines = many(row.remove("address_lines"), false);
    let update_time = match row.get("update_time") {
        None => None,
        Some(v) => parse_time(v).map_err(|()| "column \"update_time\" is not a time".to_owned())?,
    };
    let has_address = !(lines.is_empty()
        && city.is_empty()
        && state.is_empty()
        && postal_code.is_empty()
        && country.is_empty());
    let addresses = if has_address {
        vec![Address {
            lines,
            city,
            state,
            postal_code,
            country,
        }]
    } else {
        Vec::new()
    };
    Ok(FeedRecord {
        local_id,
        demographics: Demographics {
            given_names,
            family_name,
            name_suffix,
            previous_family_names,
            birth_date,
            sex,
            addresses,
            phones,
            emails,
            national_id,
        },
        update_time,
    })
}

fn one(value: Option<Value>) -> String {
    match value {
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

/// A multi-valued column: a JSON array (or JSON array text), else one value
/// (split on whitespace when `split`, as given names are).
fn many(value: Option<Value>, split: bool) -> Vec<String> {
    let value = match value {
        Some(Value::String(s)) if s.trim_start().starts_with('[') => {
            serde_json::from_str(&s).unwrap_or(Value::String(s))
        }
        other => other.unwrap_or(Value::Null),
    };
    match value {
        Value::Array(items) => items
            .into_iter()
            .map(|v| one(Some(v)))
            .filter(|s| !s.is_empty())
            .collect(),
        Value::String(s) if split => s.split_whitespace().map(str::to_owned).collect(),
        other => Some(one(Some(other)))
            .filter(|s| !s.is_empty())
            .into_iter()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn fields_rename_columns_and_json_columns_nest() {
        let shape = Shape {
            fields: Some(BTreeMap::from([
                ("amount".to_owned(), "amount_cents".to_owned()),
                ("lines".to_owned(), "lines_json".to_owned()),
            ])),
            record_id: Some("id".to_owned()),
            update_time: Some("updated".to_owned()),
            json_columns: vec!["lines_json".to_owned()],
        };
        let record = shape
            .record(object(json!({
                "id": 7, "amount_cents": 1250, "lines_json": "[{\"sku\":\"a\"}]",
                "updated": "2026-01-02T03:04:05+01:00", "secret": "x"
            })))
            .expect("a record");
        assert_eq!(record.record_id.as_deref(), Some("7"));
        let json: Value = serde_json::from_str(&record.json).expect("json");
        assert_eq!(json, json!({"amount": 1250, "lines": [{"sku": "a"}]}));
        assert_eq!(
            record.update_time,
            Some(UNIX_EPOCH + Duration::from_secs(1_767_319_445))
        );
        let bad = shape.record(object(json!({
            "id": 8, "amount_cents": 1, "lines_json": "{oops", "updated": null
        })));
        assert_eq!(
            bad,
            Err(RowProblem::Malformed(
                "column \"lines_json\" holds invalid JSON".to_owned()
            ))
        );
    }

    #[test]
    fn times_parse_in_the_usual_forms() {
        let t = |v: Value| parse_time(&v);
        let want = Some(UNIX_EPOCH + Duration::from_secs(1_767_322_800));
        assert_eq!(t(json!("2026-01-02T03:00:00Z")), Ok(want));
        assert_eq!(t(json!("2026-01-02 03:00:00")), Ok(want));
        assert_eq!(t(json!(1_767_322_800)), Ok(want));
        assert_eq!(t(json!(null)), Ok(None));
        assert_eq!(t(json!("yesterday")), Err(()));
    }

    #[test]
    fn feed_rows_become_demographics() {
        let record = feed_record(object(json!({
            "local_id": "C-1", "given_names": "Ana Maria", "family_name": "Silva",
            "birth_date": "1980-02-03", "sex": "F", "phones": "[\"555-0100\"]",
            "emails": "ana@example.org", "city": "Lisbon", "update_time": null
        })))
        .expect("a feed record");
        assert_eq!(record.local_id, "C-1");
        let d = record.demographics;
        assert_eq!(d.given_names, ["Ana", "Maria"]);
        assert_eq!(d.sex, Sex::Female);
        assert_eq!(d.phones, ["555-0100"]);
        assert_eq!(d.emails, ["ana@example.org"]);
        assert_eq!(d.addresses[0].city, "Lisbon");
        assert!(feed_record(object(json!({"family_name": "x"}))).is_err());
    }
}
