//! A view as JSON in the proto3 JSON mapping's style: lowerCamelCase names, enums
//! by name, Timestamps in RFC 3339, Durations as `1.5s`, default values left out.
//! One departure, for readers and `jq`: each record's `json` is the parsed payload
//! (FHIR stays FHIR JSON), not an escaped string; a payload that is not JSON stays
//! a string.

use serde_json::{Map, Value};
use tessera_proto::v1 as pb;
use tessera_proto::v1::stream_patient_view_response::Event;

/// A whole view.
pub(super) fn view(view: &pb::PatientView) -> Value {
    let mut sections: Vec<(&String, &pb::Section)> = view.sections.iter().collect();
    sections.sort_by_key(|(name, _)| *name);
    let sections: Map<String, Value> = sections
        .into_iter()
        .map(|(name, section)| {
            let mut out = Object::default();
            out.list("records", &section.records, record);
            (name.clone(), out.into())
        })
        .collect();
    let mut out = Object::default();
    out.string("name", &view.name);
    out.message("identities", view.identities.as_ref(), identities);
    if !sections.is_empty() {
        out.0.insert("sections".to_owned(), Value::Object(sections));
    }
    out.list("sourceStatuses", &view.source_statuses, status);
    out.list("unreachable", &view.unreachable, |s| {
        Value::String(s.clone())
    });
    out.display("assembleTime", view.assemble_time.as_ref());
    out.into()
}

/// One message of a streamed view: `{"identities": ...}`, `{"section": ...}` or
/// `{"summary": ...}`.
pub(super) fn stream_message(message: &pb::StreamPatientViewResponse) -> Value {
    let mut out = Object::default();
    match &message.event {
        Some(Event::Identities(ids)) => out.message("identities", Some(ids), identities),
        Some(Event::Section(chunk)) => out.message("section", Some(chunk), section_chunk),
        Some(Event::Summary(summary)) => out.message("summary", Some(summary), view_summary),
        None => {}
    }
    out.into()
}

fn identities(ids: &pb::PatientIdentities) -> Value {
    let mut out = Object::default();
    out.string("master", &ids.master);
    out.list("sourceRecords", &ids.source_records, source_record_key);
    out.into()
}

fn section_chunk(chunk: &pb::SectionChunk) -> Value {
    let mut out = Object::default();
    out.string("section", &chunk.section);
    out.string("source", &chunk.source);
    out.list("records", &chunk.records, record);
    out.message("status", chunk.status.as_ref(), status);
    out.into()
}

fn view_summary(summary: &pb::ViewSummary) -> Value {
    let mut out = Object::default();
    out.list("sourceStatuses", &summary.source_statuses, status);
    out.list("unreachable", &summary.unreachable, |s| {
        Value::String(s.clone())
    });
    out.display("assembleTime", summary.assemble_time.as_ref());
    out.into()
}

fn record(record: &pb::ViewRecord) -> Value {
    let mut out = Object::default();
    if !record.json.is_empty() {
        let payload = serde_json::from_str(&record.json)
            .unwrap_or_else(|_| Value::String(record.json.clone()));
        out.0.insert("json".to_owned(), payload);
    }
    out.string("mediaType", &record.media_type);
    out.message("provenance", record.provenance.as_ref(), provenance);
    out.into()
}

fn provenance(provenance: &pb::RecordProvenance) -> Value {
    let mut out = Object::default();
    out.string("source", &provenance.source);
    out.message(
        "sourceRecord",
        provenance.source_record.as_ref(),
        source_record_key,
    );
    out.string("recordId", &provenance.record_id);
    out.display("fetchTime", provenance.fetch_time.as_ref());
    if provenance.cache_hit {
        out.0.insert("cacheHit".to_owned(), Value::Bool(true));
    }
    out.display("age", provenance.age.as_ref());
    out.display("sourceUpdateTime", provenance.source_update_time.as_ref());
    out.into()
}

fn status(status: &pb::SourceStatus) -> Value {
    let mut out = Object::default();
    out.string("source", &status.source);
    out.string("section", &status.section);
    if status.state != 0 {
        // An enum by name; a value this build does not know, by number.
        let state = pb::SourceState::try_from(status.state).map_or_else(
            |_| Value::from(status.state),
            |s| Value::from(s.as_str_name()),
        );
        out.0.insert("state".to_owned(), state);
    }
    out.string("message", &status.message);
    if status.record_count != 0 {
        out.0
            .insert("recordCount".to_owned(), Value::from(status.record_count));
    }
    out.display("latency", status.latency.as_ref());
    out.into()
}

fn source_record_key(key: &pb::SourceRecordKey) -> Value {
    let mut out = Object::default();
    out.string("system", &key.system);
    out.string("localId", &key.local_id);
    out.into()
}

/// A JSON object that leaves out default values, as the proto3 mapping does.
#[derive(Default)]
struct Object(Map<String, Value>);

impl Object {
    fn string(&mut self, name: &str, value: &str) {
        if !value.is_empty() {
            self.0.insert(name.to_owned(), Value::from(value));
        }
    }

    fn message<T>(&mut self, name: &str, value: Option<&T>, convert: impl Fn(&T) -> Value) {
        if let Some(value) = value {
            self.0.insert(name.to_owned(), convert(value));
        }
    }

    fn list<T>(&mut self, name: &str, items: &[T], convert: impl Fn(&T) -> Value) {
        if !items.is_empty() {
            self.0.insert(
                name.to_owned(),
                Value::Array(items.iter().map(convert).collect()),
            );
        }
    }

    /// Timestamps and Durations: prost's `Display` is the proto3 JSON form.
    fn display(&mut self, name: &str, value: Option<&impl std::fmt::Display>) {
        if let Some(value) = value {
            self.0
                .insert(name.to_owned(), Value::from(value.to_string()));
        }
    }
}

impl From<Object> for Value {
    fn from(object: Object) -> Self {
        Value::Object(object.0)
    }
}
