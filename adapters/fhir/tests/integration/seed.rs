//! A small fixed population, seeded into the real server over HTTP.

use serde_json::{Value, json};
use tessera_test_fhir_server::FhirServer;

/// The system of the seeded MRNs.
pub(crate) const MRN_SYSTEM: &str = "urn:oid:2.16.840.1.113883.19.5.99999.1";

/// A seeded person.
pub(crate) struct Person {
    pub(crate) given: &'static str,
    pub(crate) family: &'static str,
    pub(crate) birth_date: &'static str,
    pub(crate) mrn: &'static str,
    pub(crate) gender: &'static str,
}

/// Names unlikely to appear anywhere by chance, so the canaries mean something.
pub(crate) const PEOPLE: [Person; 3] = [
    Person {
        given: "Zebulon",
        family: "Quixmore",
        birth_date: "1961-07-19",
        mrn: "MRN-7731905",
        gender: "male",
    },
    Person {
        given: "Ottilie",
        family: "Brannigarde",
        birth_date: "1984-02-29",
        mrn: "MRN-5520418",
        gender: "female",
    },
    Person {
        given: "Marisol",
        family: "Vantongeren",
        birth_date: "1999-11-03",
        mrn: "MRN-3307762",
        gender: "female",
    },
];

/// Every seeded name, birth date and MRN.
pub(crate) const SENSITIVE: [&str; 12] = [
    "Zebulon",
    "Quixmore",
    "1961-07-19",
    "MRN-7731905",
    "Ottilie",
    "Brannigarde",
    "1984-02-29",
    "MRN-5520418",
    "Marisol",
    "Vantongeren",
    "1999-11-03",
    "MRN-3307762",
];

/// Observations of the first person: more than three pages of five.
pub(crate) const RICH_OBSERVATIONS: usize = 17;

/// What was seeded.
pub(crate) struct Seeded {
    /// Logical ids of `PEOPLE`, in order.
    pub(crate) patient_ids: Vec<String>,
    /// The id of the second person's malformed Observation.
    pub(crate) malformed_observation: String,
}

fn uuid(n: usize) -> String {
    format!("urn:uuid:00000000-0000-4000-8000-{n:012}")
}

fn patient(person: &Person, n: usize) -> Value {
    json!({"fullUrl": uuid(n), "request": {"method": "POST", "url": "Patient"}, "resource": {
        "resourceType": "Patient",
        "identifier": [{"system": MRN_SYSTEM, "value": person.mrn}],
        "name": [{"use": "official", "family": person.family, "given": [person.given]}],
        "gender": person.gender,
        "birthDate": person.birth_date,
        "telecom": [{"system": "phone", "value": "555-0100"}],
        "address": [{"line": ["1 Test Way"], "city": "Springfield", "postalCode": "00000"}]
    }})
}

fn entry(resource: Value) -> Value {
    let kind = resource["resourceType"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    json!({"request": {"method": "POST", "url": kind}, "resource": resource})
}

fn clinical(subject: &str, observations: usize) -> Vec<Value> {
    let s = json!({"reference": subject});
    let mut entries = Vec::new();
    for i in 0..observations {
        entries.push(entry(json!({"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": if i % 2 == 0 { "laboratory" } else { "vital-signs" }}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}], "text": "heart rate"},
            "subject": s, "effectiveDateTime": "2026-01-01T10:00:00Z",
            "valueQuantity": {"value": 60 + i, "unit": "/min"}})));
    }
    entries.push(entry(json!({"resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}, "subject": s})));
    entries.push(entry(json!({"resourceType": "Condition", "subject": s,
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "code": {"text": "hypertension"}})));
    entries.push(
        json!({"fullUrl": uuid(900), "request": {"method": "POST", "url": "Medication"},
        "resource": {"resourceType": "Medication", "code": {"text": "lisinopril 10 mg"}}}),
    );
    entries.push(entry(
        json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
        "medicationReference": {"reference": uuid(900)}, "subject": s}),
    ));
    entries.push(entry(json!({"resourceType": "AllergyIntolerance", "patient": s,
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
        "code": {"text": "penicillin"}})));
    entries.push(entry(
        json!({"resourceType": "Immunization", "status": "completed",
        "vaccineCode": {"text": "influenza"}, "patient": s, "occurrenceDateTime": "2025-10-01"}),
    ));
    entries.push(entry(
        json!({"resourceType": "Appointment", "status": "booked",
        "start": "2027-01-01T09:00:00Z", "end": "2027-01-01T09:30:00Z",
        "participant": [{"actor": s, "status": "accepted"}]}),
    ));
    entries.push(entry(json!({"resourceType": "DocumentReference", "status": "current", "subject": s,
        "content": [{"attachment": {"contentType": "text/plain", "data": "Q0FOQVJZLURPQ1VNRU5ULURBVEE="}}]})));
    entries
}

/// Seeds `PEOPLE`: the first with every section and 17 observations, the second
/// with every section, one observation and one malformed observation, the third
/// with demographics only.
pub(crate) async fn seed(server: &FhirServer) -> Seeded {
    let mut patient_ids = Vec::new();
    for (n, person) in PEOPLE.iter().enumerate() {
        let mut entries = vec![patient(person, n)];
        match n {
            0 => entries.extend(clinical(&uuid(n), RICH_OBSERVATIONS)),
            1 => entries.extend(clinical(&uuid(n), 1)),
            _ => {}
        }
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
        let created = server.transaction(&bundle).await.expect("seeding");
        patient_ids.push(created[0]["id"].as_str().expect("patient id").to_owned());
    }
    let bad = server
        .create_unvalidated(&json!({"resourceType": "Observation", "status": 42,
            "code": {"text": "Ottilie Brannigarde"},
            "subject": {"reference": format!("Patient/{}", patient_ids[1])}}))
        .await
        .expect("malformed observation");
    Seeded {
        patient_ids,
        malformed_observation: bad["id"].as_str().expect("id").to_owned(),
    }
}
