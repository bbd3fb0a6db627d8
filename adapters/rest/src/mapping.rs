//! JSON to Tessera: a section's selected values to [`Record`]s, and a feed's
//! people to demographics. A value that cannot be read is named by its field,
//! never by its content.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use serde_json_path::JsonPath;
use tessera_adapter_core::{FeedRecord, Record};
use tessera_types::{Address, Demographics, Sex};

use crate::section::Section;

/// A record from one selected value, or why it is malformed (a field, never a
/// value).
pub(crate) fn record(section: &Section, item: &Value) -> Result<Record, &'static str> {
    let first = |path: &JsonPath| path.query(item).first().cloned();
    let record_id = match section.record_id.as_ref().and_then(first) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => return Err("the record ID is not text or a number"),
    };
    let update_time = match section.update_time.as_ref().and_then(first) {
        None | Some(Value::Null) => None,
        Some(value) => Some(parse_time(&value).ok_or("the update time does not parse")?),
    };
    let json = match &section.fields {
        None => item.clone(),
        Some(fields) => Value::Object(
            fields
                .iter()
                .map(|(field, path)| (field.clone(), first(path).unwrap_or(Value::Null)))
                .collect(),
        ),
    };
    Ok(Record {
        record_id,
        json: json.to_string().into(),
        update_time,
    })
}

/// An RFC 3339 instant, or Unix seconds.
fn parse_time(value: &Value) -> Option<SystemTime> {
    match value {
        Value::String(s) => {
            let ts = s.parse::<jiff::Timestamp>().ok()?;
            SystemTime::try_from(ts).ok()
        }
        Value::Number(n) => {
            let secs = n.as_f64().filter(|s| (0.0..1e11).contains(s))?;
            Some(UNIX_EPOCH + Duration::from_secs_f64(secs))
        }
        _ => None,
    }
}

/// A feed entry from one person, or why it is malformed (a field, never a value).
pub(crate) fn feed_record(
    fields: &BTreeMap<String, JsonPath>,
    item: &Value,
) -> Result<FeedRecord, &'static str> {
    let all = |name: &str| -> Vec<String> {
        fields
            .get(name)
            .map(|p| {
                p.query(item)
                    .all()
                    .into_iter()
                    .flat_map(|v| match v {
                        Value::Array(items) => items.iter().filter_map(text).collect(),
                        other => text(other).into_iter().collect::<Vec<String>>(),
                    })
                    .filter(|s: &String| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    };
    let one = |name: &str| all(name).into_iter().next().unwrap_or_default();
    let local_id = one("local_id");
    if local_id.is_empty() {
        return Err("a person has no local ID");
    }
    let mut given_names = all("given_names");
    if given_names.len() == 1 {
        given_names = given_names[0]
            .split_whitespace()
            .map(str::to_owned)
            .collect();
    }
    let update_time = match fields
        .get("update_time")
        .and_then(|p| p.query(item).first().cloned())
    {
        None | Some(Value::Null) => None,
        Some(v) => Some(parse_time(&v).ok_or("the update time does not parse")?),
    };
    let address = Address {
        lines: all("address_lines"),
        city: one("city"),
        state: one("state"),
        postal_code: one("postal_code"),
        country: one("country"),
    };
    let addresses = if address == Address::default() {
        Vec::new()
    } else {
        vec![address]
    };
    let sex = Sex::from_code(&one("sex")).unwrap_or_default();
    Ok(FeedRecord {
        local_id,
        demographics: Demographics {
            given_names,
            family_name: one("family_name"),
            name_suffix: one("name_suffix"),
            previous_family_names: all("previous_family_names"),
            birth_date: one("birth_date"),
            sex,
            addresses,
            phones: all("phones"),
            emails: all("emails"),
            national_id: one("national_id"),
        },
        update_time,
    })
}

/// A scalar as text (trimmed), or `None` for anything else.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc_3339_or_unix_seconds() {
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_time(&Value::from("2023-11-14T22:13:20Z")), Some(at));
        assert_eq!(parse_time(&Value::from(1_700_000_000)), Some(at));
        assert_eq!(parse_time(&Value::from("yesterday")), None);
        assert_eq!(parse_time(&Value::from(-1)), None);
    }
}
