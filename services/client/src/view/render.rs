//! The view as text a person reads at a terminal: who (the master and its linked
//! source records), a table per section with each record's provenance and a
//! one-line summary of its fields, then how every source fared.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde_json::{Map, Value};
use tessera_proto::v1 as pb;
use tessera_proto::v1::stream_patient_view_response::Event;

use super::table::{self, Column, Table, WIDTH};

/// The width of the header's labels (`Unreachable` and two spaces).
const LABEL: usize = 13;

/// The record columns: source, local ID, record ID, age, summary.
const RECORD_COLUMNS: [Column; 5] = [
    Column::left("SOURCE", 16),
    Column::left("LOCAL ID", 20),
    Column::left("RECORD ID", 20),
    Column::left("AGE", 12),
    Column::left("SUMMARY", WIDTH),
];

/// The status columns: source, section, state, records, latency, message.
const STATUS_COLUMNS: [Column; 6] = [
    Column::left("SOURCE", 16),
    Column::left("SECTION", 20),
    Column::left("STATE", 12),
    Column::right("RECORDS", 7),
    Column::right("LATENCY", 8),
    Column::left("MESSAGE", WIDTH),
];

/// A whole view: header, sections, source statuses, unreachable sources.
pub(super) fn view(view: &pb::PatientView) -> String {
    let mut out = identities(view.identities.as_ref());
    if let Some(time) = &view.assemble_time {
        out.push_str(&labelled("Assembled", &time.to_string()));
    }
    for name in section_order(view) {
        let records = view
            .sections
            .get(name)
            .map_or(&[][..], |s| s.records.as_slice());
        // Name the sources that did not answer fully, so an empty or short section
        // explains itself.
        let mut title = format!("{name} ({}", count(records.len(), "record"));
        for status in view.source_statuses.iter().filter(|s| s.section == name) {
            if status.state != i32::from(pb::SourceState::Ok) {
                let _ = write!(
                    title,
                    "; {}: {}",
                    short_source(&status.source),
                    state_name(status.state)
                );
            }
        }
        title.push(')');
        let _ = writeln!(out, "\n{}", table::truncate(&table::clean(&title), WIDTH));
        if !records.is_empty() {
            out.push_str(&records_table(records));
        }
    }
    if view.sections.is_empty() && view.source_statuses.is_empty() {
        out.push_str("\nNo sections.\n");
    }
    out.push_str(&statuses(&view.source_statuses, &view.unreachable));
    trim_newline(out)
}

/// One message of a streamed view.
pub(super) fn stream_message(message: &pb::StreamPatientViewResponse) -> String {
    let out = match &message.event {
        Some(Event::Identities(ids)) => identities(Some(ids)),
        Some(Event::Section(chunk)) => section_chunk(chunk),
        Some(Event::Summary(summary)) => {
            let mut out = statuses(&summary.source_statuses, &summary.unreachable);
            if let Some(time) = &summary.assemble_time {
                out.push_str(&labelled("Assembled", &time.to_string()));
            }
            out
        }
        None => "(an empty stream message)\n".to_owned(),
    };
    trim_newline(out)
}

/// `Master` and `Linked` lines.
fn identities(ids: Option<&pb::PatientIdentities>) -> String {
    let master = ids.map_or("", |i| i.master.as_str());
    let mut out = labelled("Master", or_dash(master));
    let linked: Vec<String> = ids
        .map(|i| i.source_records.iter().map(key).collect())
        .unwrap_or_default();
    out.push_str(&wrapped("Linked", &linked));
    out
}

/// A streamed section: a title with its source's status, then its records.
fn section_chunk(chunk: &pb::SectionChunk) -> String {
    let mut title = format!("{} from {}", chunk.section, short_source(&chunk.source));
    if let Some(status) = &chunk.status {
        let _ = write!(
            title,
            ": {}, {}",
            state_name(status.state),
            count(chunk.records.len(), "record")
        );
        if let Some(latency) = &status.latency {
            let _ = write!(title, " in {}", short_duration(latency));
        }
        if !status.message.is_empty() {
            let _ = write!(title, " ({})", status.message);
        }
    }
    let mut out = format!("\n{}\n", table::truncate(&table::clean(&title), WIDTH));
    if !chunk.records.is_empty() {
        out.push_str(&records_table(&chunk.records));
    }
    out
}

/// Sections in the order the statuses first name them, then any others by name.
fn section_order(view: &pb::PatientView) -> Vec<&str> {
    let mut order: Vec<&str> = Vec::new();
    for status in &view.source_statuses {
        if !order.contains(&status.section.as_str()) {
            order.push(&status.section);
        }
    }
    let rest: BTreeSet<&str> = view
        .sections
        .keys()
        .map(String::as_str)
        .filter(|name| !order.contains(name))
        .collect();
    order.extend(rest);
    order
}

fn records_table(records: &[pb::ViewRecord]) -> String {
    let mut table = Table::new(&RECORD_COLUMNS);
    for record in records {
        let provenance = record.provenance.clone().unwrap_or_default();
        let local_id = provenance
            .source_record
            .as_ref()
            .map_or("", |k| k.local_id.as_str());
        let mut age = provenance
            .age
            .as_ref()
            .map_or_else(String::new, short_duration);
        if provenance.cache_hit {
            age = format!("{age} cached").trim_start().to_owned();
        }
        table.row(vec![
            or_dash(short_source(&provenance.source)).to_owned(),
            or_dash(local_id).to_owned(),
            or_dash(&provenance.record_id).to_owned(),
            or_dash(&age).to_owned(),
            summarize(record),
        ]);
    }
    table.render(2, WIDTH)
}

/// The status table and the unreachable line.
fn statuses(statuses: &[pb::SourceStatus], unreachable: &[String]) -> String {
    let mut out = String::from("\nSource statuses\n");
    if statuses.is_empty() {
        out.push_str("  (none)\n");
    } else {
        let mut table = Table::new(&STATUS_COLUMNS);
        for status in statuses {
            table.row(vec![
                or_dash(short_source(&status.source)).to_owned(),
                or_dash(&status.section).to_owned(),
                state_name(status.state),
                status.record_count.to_string(),
                status
                    .latency
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), short_duration),
                status.message.clone(),
            ]);
        }
        out.push_str(&table.render(2, WIDTH));
    }
    let names: Vec<String> = unreachable
        .iter()
        .map(|s| short_source(s).to_owned())
        .collect();
    out.push('\n');
    if names.is_empty() {
        out.push_str(&labelled("Unreachable", "none"));
    } else {
        out.push_str(&wrapped("Unreachable", &names));
    }
    out
}

/// A one-line summary of a record's payload.
fn summarize(record: &pb::ViewRecord) -> String {
    match serde_json::from_str::<Value>(&record.json) {
        Ok(Value::Object(map)) if is_fhir(record, &map) => fhir_summary(&map),
        Ok(Value::Object(map)) => plain_summary(&map, &[]),
        Ok(Value::Array(items)) => format!("[{}]", count(items.len(), "item")),
        Ok(other) => scalar(&other).unwrap_or_default(),
        Err(_) => format!(
            "(not JSON: {} bytes of {})",
            record.json.len(),
            or_dash(&record.media_type)
        ),
    }
}

fn is_fhir(record: &pb::ViewRecord, map: &Map<String, Value>) -> bool {
    record.media_type.starts_with("application/fhir+json")
        || map.get("resourceType").is_some_and(Value::is_string)
}

/// `resourceType` and the fields a clinician looks at first, when present.
fn fhir_summary(map: &Map<String, Value>) -> String {
    let resource_type = map
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("FHIR");
    let date = [
        "effectiveDateTime",
        "effectivePeriod",
        "period",
        "onsetDateTime",
        "authoredOn",
        "recordedDate",
        "occurrenceDateTime",
        "performedDateTime",
        "performedPeriod",
        "issued",
        "date",
        "created",
    ]
    .iter()
    .find_map(|field| map.get(*field).and_then(date_text));
    let fields = [
        ("name", map.get("name").and_then(human_name)),
        ("gender", map.get("gender").and_then(scalar)),
        ("birthDate", map.get("birthDate").and_then(scalar)),
        ("code", map.get("code").and_then(concept)),
        ("type", map.get("type").and_then(concept)),
        (
            "medication",
            map.get("medicationCodeableConcept").and_then(concept),
        ),
        ("value", value_x(map)),
        ("status", map.get("status").and_then(scalar)),
        ("date", date),
    ];
    let mut parts = vec![resource_type.to_owned()];
    parts.extend(
        fields
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| pair(k, &v))),
    );
    if parts.len() == 1 {
        // None of the usual fields: fall back to the plain fields, without the
        // bookkeeping every resource has.
        let skip = [
            "resourceType",
            "id",
            "meta",
            "text",
            "contained",
            "extension",
            "modifierExtension",
        ];
        let rest = plain_summary(map, &skip);
        if !rest.is_empty() {
            parts.push(rest);
        }
    }
    parts.join(" ")
}

/// Every field as `key=value`, nested objects as `key.sub=value`, arrays of
/// scalars joined with `,` and other arrays as their length.
fn plain_summary(map: &Map<String, Value>, skip: &[&str]) -> String {
    let mut parts = Vec::new();
    flatten(map, "", 0, skip, &mut parts);
    parts.join(" ")
}

fn flatten(
    map: &Map<String, Value>,
    prefix: &str,
    depth: usize,
    skip: &[&str],
    parts: &mut Vec<String>,
) {
    for (key, value) in map {
        // Enough for the widest line; the rest would be cut anyway.
        if parts.iter().map(|p| p.len() + 1).sum::<usize>() > WIDTH {
            return;
        }
        if depth == 0 && skip.contains(&key.as_str()) {
            continue;
        }
        let key = format!("{prefix}{key}");
        match value {
            Value::Null => {}
            Value::Object(inner) if depth < 1 => {
                flatten(inner, &format!("{key}."), depth + 1, skip, parts);
            }
            Value::Object(inner) => parts.push(format!("{key}={{{}}}", inner.len())),
            Value::Array(items) => {
                let scalars: Option<Vec<String>> = items.iter().map(scalar).collect();
                match scalars {
                    Some(list) if !list.is_empty() => parts.push(pair(&key, &list.join(","))),
                    _ => parts.push(format!("{key}=[{}]", items.len())),
                }
            }
            scalar_value => {
                if let Some(text) = scalar(scalar_value) {
                    parts.push(pair(&key, &text));
                }
            }
        }
    }
}

/// `key=value`, the value quoted when it has spaces, `=` or quotes, or is empty.
fn pair(key: &str, value: &str) -> String {
    let plain = !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c == '=' || c == '"');
    if plain {
        format!("{key}={value}")
    } else {
        format!("{key}={}", Value::String(value.to_owned()))
    }
}

/// A string, number or boolean as text.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A CodeableConcept (or the first of a list): its text, else its first coding's
/// display, else that coding's code.
fn concept(value: &Value) -> Option<String> {
    let value = match value {
        Value::Array(items) => items.first()?,
        other => other,
    };
    if let Some(text) = value.get("text").and_then(Value::as_str) {
        return Some(text.to_owned());
    }
    let coding = value.get("coding")?.as_array()?.first()?;
    coding
        .get("display")
        .or_else(|| coding.get("code"))
        .and_then(scalar)
}

/// The first HumanName: its text, else its given names and family name.
fn human_name(value: &Value) -> Option<String> {
    let name = match value {
        Value::Array(items) => items.first()?,
        other => other,
    };
    if let Some(text) = name.get("text").and_then(Value::as_str) {
        return Some(text.to_owned());
    }
    let mut words: Vec<String> = name
        .get("given")
        .and_then(Value::as_array)
        .map(|given| given.iter().filter_map(scalar).collect())
        .unwrap_or_default();
    words.extend(name.get("family").and_then(scalar));
    (!words.is_empty()).then(|| words.join(" "))
}

/// An Observation's `value[x]`.
fn value_x(map: &Map<String, Value>) -> Option<String> {
    if let Some(quantity) = map.get("valueQuantity") {
        let value = quantity.get("value").and_then(scalar)?;
        let unit = quantity
            .get("unit")
            .or_else(|| quantity.get("code"))
            .and_then(scalar);
        return Some(match unit {
            Some(unit) => format!("{value} {unit}"),
            None => value,
        });
    }
    if let Some(concept_value) = map.get("valueCodeableConcept") {
        return concept(concept_value);
    }
    [
        "valueString",
        "valueBoolean",
        "valueInteger",
        "valueDateTime",
    ]
    .iter()
    .find_map(|field| map.get(*field).and_then(scalar))
}

/// A date, dateTime or instant, or a Period's start.
fn date_text(value: &Value) -> Option<String> {
    scalar(value).or_else(|| value.get("start").and_then(scalar))
}

/// `system/local_id`.
fn key(key: &pb::SourceRecordKey) -> String {
    format!("{}/{}", key.system, key.local_id)
}

/// `sources/ehr` → `ehr`.
fn short_source(name: &str) -> &str {
    name.strip_prefix("sources/").unwrap_or(name)
}

/// `OK`, `TIMEOUT`, ...; an unknown value as its number.
fn state_name(state: i32) -> String {
    match pb::SourceState::try_from(state) {
        Ok(state) => state
            .as_str_name()
            .trim_start_matches("SOURCE_STATE_")
            .to_owned(),
        Err(_) => format!("STATE_{state}"),
    }
}

/// A duration for people: `0.4ms`, `95ms`, `1.2s`, `35s`, `3m05s`, `2h03m`, `3d04h`.
fn short_duration(duration: &prost_types::Duration) -> String {
    let nanos = i128::from(duration.seconds) * 1_000_000_000 + i128::from(duration.nanos);
    let sign = if nanos < 0 { "-" } else { "" };
    let nanos = nanos.unsigned_abs();
    let ms = nanos / 1_000_000;
    let secs = nanos / 1_000_000_000;
    let text = if ms < 10 {
        let tenths = nanos / 100_000;
        if tenths % 10 == 0 {
            format!("{}ms", tenths / 10)
        } else {
            format!("{}.{}ms", tenths / 10, tenths % 10)
        }
    } else if ms < 1_000 {
        format!("{ms}ms")
    } else if ms < 10_000 {
        format!("{}.{}s", ms / 1_000, ms % 1_000 / 100)
    } else if secs < 60 {
        format!("{secs}s")
    } else if secs < 3_600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else if secs < 86_400 {
        format!("{}h{:02}m", secs / 3_600, secs % 3_600 / 60)
    } else {
        format!("{}d{:02}h", secs / 86_400, secs % 86_400 / 3_600)
    };
    format!("{sign}{text}")
}

/// `1 record`, `2 records`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn or_dash(text: &str) -> &str {
    if text.is_empty() { "-" } else { text }
}

/// `Label        value`.
fn labelled(label: &str, value: &str) -> String {
    let line = format!("{label:<LABEL$}{}", table::clean(value));
    format!("{}\n", table::truncate(&line, WIDTH))
}

/// `Label        a, b, c`, wrapped under the first item.
fn wrapped(label: &str, items: &[String]) -> String {
    if items.is_empty() {
        return labelled(label, "-");
    }
    let mut out = String::new();
    let mut line = format!("{label:<LABEL$}");
    for (i, item) in items.iter().enumerate() {
        let mut item = table::truncate(&table::clean(item), WIDTH - LABEL - 1);
        if i + 1 < items.len() {
            item.push(',');
        }
        let fresh = table::chars(&line) == LABEL;
        if !fresh && table::chars(&line) + 1 + table::chars(&item) > WIDTH {
            out.push_str(&line);
            out.push('\n');
            line = " ".repeat(LABEL);
        } else if !fresh {
            line.push(' ');
        }
        line.push_str(&item);
    }
    out.push_str(&line);
    out.push('\n');
    out
}

fn trim_newline(mut text: String) -> String {
    while text.ends_with('\n') {
        text.pop();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn duration(seconds: i64, nanos: i32) -> String {
        short_duration(&prost_types::Duration { seconds, nanos })
    }

    #[test]
    fn durations_read_at_a_glance() {
        let cases = [
            ((0, 0), "0ms"),
            ((0, 400_000), "0.4ms"),
            ((0, 9_990_000), "9.9ms"),
            ((0, 95_000_000), "95ms"),
            ((1, 230_000_000), "1.2s"),
            ((35, 0), "35s"),
            ((185, 0), "3m05s"),
            ((7_380, 0), "2h03m"),
            ((273_600, 0), "3d04h"),
            ((-2, 0), "-2.0s"),
        ];
        for ((seconds, nanos), want) in cases {
            assert_eq!(duration(seconds, nanos), want, "{seconds}s {nanos}ns");
        }
    }

    fn summary(media_type: &str, payload: &str) -> String {
        summarize(&pb::ViewRecord {
            json: payload.to_owned(),
            media_type: media_type.to_owned(),
            provenance: None,
        })
    }

    #[test]
    fn plain_json_flattens_one_level_and_quotes_values_with_spaces() {
        let text = summary(
            "application/json",
            r#"{"a": {"b": 1, "c": {"d": 2}}, "e": "two words", "f": [], "g": [{"x": 1}], "h": null}"#,
        );
        assert_eq!(text, r#"a.b=1 a.c={1} e="two words" f=[0] g=[1]"#);
    }

    #[test]
    fn fhir_without_the_usual_fields_falls_back_to_its_own_fields() {
        let text = summary(
            "application/fhir+json",
            r#"{"resourceType": "Coverage", "id": "c1", "meta": {"versionId": "3"}, "order": 1}"#,
        );
        assert_eq!(text, "Coverage order=1");
        // resourceType alone marks FHIR, whatever the media type says.
        let text = summary(
            "application/json",
            r#"{"resourceType": "Condition", "code": {"text": "Asthma"}, "onsetDateTime": "2019"}"#,
        );
        assert_eq!(text, "Condition code=Asthma date=2019");
    }
}
