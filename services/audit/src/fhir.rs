use serde_json::{Value, json};

use crate::AuditRecord;

fn action(rpc: &str) -> &'static str {
    let m = rpc.rsplit('/').next().unwrap_or(rpc);
    if m.starts_with("Create") || m.starts_with("Link") {
        "C"
    } else if m.starts_with("Update") || m.starts_with("Merge") || m.starts_with("Unlink") {
        "U"
    } else if m.starts_with("Delete") {
        "D"
    } else if m.starts_with("Search") || m.starts_with("Resolve") {
        "E"
    } else {
        "R"
    }
}

fn event(r: &AuditRecord) -> Value {
    let outcome = if r.outcome == "ok" {
        "0"
    } else if r.outcome == "PERMISSION_DENIED" || r.outcome == "UNAUTHENTICATED" {
        "4"
    } else {
        "8"
    };
    let pou = json!([{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": r.purpose_of_use }] }]);
    let mut agent_pou = pou.clone();
    if r.break_glass
        && let Some(a) = agent_pou.as_array_mut()
    {
        a.push(json!({ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "BTG" }], "text": r.break_glass_reason }));
    }
    let mut agents = vec![json!({
        "type": { "coding": [{ "system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110150", "display": "Application" }] },
        "who": { "identifier": { "value": r.caller } },
        "requestor": r.end_user.is_none(),
        "purposeOfUse": agent_pou,
        "extension": [{ "url": "urn:tessera:auth-method", "valueCode": serde_json::to_value(r.auth).unwrap_or(Value::Null) }]
    })];
    if let Some(user) = &r.end_user {
        agents.push(json!({
            "type": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP" }] },
            "who": { "identifier": { "value": user } },
            "requestor": true,
            "purposeOfUse": pou
        }));
    }
    let mut entities: Vec<Value> = r.masters.iter().map(|m| json!({
        "what": { "reference": format!("Patient/{}", m.rsplit('/').next().unwrap_or(m)), "identifier": { "value": m } },
        "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1" },
        "role": { "system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1" }
    })).collect();
    entities.push(json!({
        "what": { "identifier": { "value": r.request_id } },
        "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2" },
        "role": { "system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "24" }
    }));
    let mut ev = json!({
        "resourceType": "AuditEvent",
        "id": format!("seq-{}", r.sequence),
        "type": { "system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110110", "display": "Patient Record" },
        "subtype": [{ "system": "urn:tessera:rpc", "code": r.rpc }],
        "action": action(&r.rpc),
        "recorded": r.time,
        "outcome": outcome,
        "purposeOfEvent": pou,
        "agent": agents,
        "source": { "observer": { "display": "tessera" } },
        "entity": entities
    });
    if let Some(reason) = &r.reason {
        ev["outcomeDesc"] = json!(reason);
    }
    if r.break_glass {
        ev["meta"] = json!({ "security": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "BTG" }] });
    }
    ev
}

/// FHIR R4 `AuditEvent`s shaped like IHE BALP, in a `Bundle` of type `collection`.
pub fn export_fhir(records: &[AuditRecord]) -> Value {
    let entries: Vec<Value> = records
        .iter()
        .map(|r| json!({ "resource": event(r) }))
        .collect();
    json!({ "resourceType": "Bundle", "type": "collection", "entry": entries })
}

/// FHIR R4 `AuditEvent`s as NDJSON, one resource per line.
pub fn export_fhir_ndjson(records: &[AuditRecord]) -> String {
    records.iter().map(|r| format!("{}\n", event(r))).collect()
}
