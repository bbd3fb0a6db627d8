//! What each silo holds about a person beyond demographics, for the quickstart's
//! embedded silos: the EHR as FHIR R4 resources, billing accounts with invoices
//! and payments, CRM contacts with cases and preferences, marketing subscribers
//! with consents and channel preferences.
//!
//! Content is a pure function of the seed and the record's silo and local ID, so
//! a silo's rows never depend on which other silos are written. Vocabularies are
//! small but real: LOINC for vitals and labs, ICD-10-CM with SNOMED CT for
//! conditions, RxNorm for medications, CVX for vaccines.

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};

use crate::SynthRecord;

/// The FHIR identifier system of EHR medical record numbers.
pub const MRN_SYSTEM: &str = "http://hospital.example.org/mrn";
/// The FHIR identifier system of US social security numbers.
pub const SSN_SYSTEM: &str = "http://hl7.org/fhir/sid/us-ssn";
/// The resource types of the EHR's bulk export, in file order.
pub const EHR_RESOURCE_TYPES: [&str; 8] = [
    "Patient",
    "Encounter",
    "Condition",
    "Observation",
    "MedicationRequest",
    "AllergyIntolerance",
    "Immunization",
    "Appointment",
];

/// The day clinical and billing history runs up to.
const TODAY: (i32, u32, u32) = (2026, 11, 1);

/// One silo's rows for one record.
#[derive(Debug, Clone, PartialEq)]
pub enum SiloRows {
    /// FHIR resources, the Patient first, each with its type.
    Ehr(Vec<(&'static str, Value)>),
    /// A billing account with its invoices and payments.
    Billing(BillingRows),
    /// A CRM contact with its cases and preferences.
    Crm(CrmRows),
    /// A marketing subscriber with consents and channel preferences.
    Marketing(MarketingRows),
}

/// Billing rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillingRows {
    /// Invoices: (invoice_id, issued_on, due_on, description, amount_cents, status).
    pub invoices: Vec<(String, String, String, String, i64, String)>,
    /// Payments: (payment_id, paid_on, amount_cents, method).
    pub payments: Vec<(String, String, i64, String)>,
}

/// CRM rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrmRows {
    /// Cases: (case_id, opened_at, channel, subject, status, priority).
    pub cases: Vec<(String, String, String, String, String, String)>,
    /// Preferences: (preferred_language, preferred_channel, do_not_call, best_time).
    pub preferences: (String, String, bool, String),
}

/// Marketing rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarketingRows {
    /// Consents: (purpose, status, recorded_at, source).
    pub consents: Vec<(String, String, String, String)>,
    /// Channel preferences: (channel, opted_in, frequency).
    pub channels: Vec<(String, bool, String)>,
}

/// The rows `record`'s silo holds for it, or `None` for a silo without content.
pub fn rows(record: &SynthRecord, seed: u64) -> Option<SiloRows> {
    let mut rng = ChaCha8Rng::seed_from_u64(mix(seed, &record.source, &record.local_id));
    match record.source.as_str() {
        "ehr" => Some(SiloRows::Ehr(ehr(record, &mut rng))),
        "billing" => Some(SiloRows::Billing(billing(record, &mut rng))),
        "crm" => Some(SiloRows::Crm(crm(record, &mut rng))),
        "marketing" => Some(SiloRows::Marketing(marketing(&mut rng))),
        _ => None,
    }
}

/// FNV-1a over the silo and local ID, mixed with the seed.
fn mix(seed: u64, source: &str, local_id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.rotate_left(29);
    for b in source.bytes().chain([0]).chain(local_id.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

/// A date `days` before [`TODAY`], as `YYYY-MM-DD` (30-day months are close
/// enough for synthetic history).
fn days_ago(days: i64) -> String {
    let (y, m, d) = TODAY;
    let total = i64::from(y) * 360 + i64::from(m - 1) * 30 + i64::from(d - 1) - days;
    let (year, rest) = (total.div_euclid(360), total.rem_euclid(360));
    let (month, day) = (rest / 30 + 1, (rest % 30 + 1).min(28));
    format!("{year:04}-{month:02}-{day:02}")
}

fn instant(date: &str, rng: &mut ChaCha8Rng) -> String {
    format!(
        "{date}T{:02}:{:02}:00Z",
        rng.random_range(8..18),
        5 * rng.random_range(0..12)
    )
}

// ---- EHR ----------------------------------------------------------------------------

/// (ICD-10-CM, SNOMED CT, display).
const CONDITIONS: [(&str, &str, &str); 10] = [
    ("E11.9", "44054006", "Type 2 diabetes mellitus"),
    ("I10", "38341003", "Essential hypertension"),
    ("J45.909", "195967001", "Asthma"),
    ("E78.5", "55822004", "Hyperlipidemia"),
    ("F41.1", "21897009", "Generalized anxiety disorder"),
    ("M54.50", "279039007", "Low back pain"),
    ("K21.9", "235595009", "Gastroesophageal reflux disease"),
    ("E66.9", "414916001", "Obesity"),
    ("J30.9", "61582004", "Allergic rhinitis"),
    ("N39.0", "68566005", "Urinary tract infection"),
];

/// (LOINC, display, unit, low, high, decimals).
const VITALS: [(&str, &str, &str, f64, f64, u32); 5] = [
    ("8867-4", "Heart rate", "/min", 55.0, 95.0, 0),
    ("29463-7", "Body weight", "kg", 50.0, 110.0, 1),
    ("8302-2", "Body height", "cm", 150.0, 195.0, 0),
    ("39156-5", "Body mass index", "kg/m2", 18.5, 36.0, 1),
    ("8310-5", "Body temperature", "Cel", 36.2, 37.6, 1),
];

const LABS: [(&str, &str, &str, f64, f64, u32); 4] = [
    (
        "2339-0",
        "Glucose [Mass/volume] in Blood",
        "mg/dL",
        70.0,
        180.0,
        0,
    ),
    (
        "4548-4",
        "Hemoglobin A1c/Hemoglobin.total in Blood",
        "%",
        4.8,
        9.5,
        1,
    ),
    (
        "2093-3",
        "Cholesterol [Mass/volume] in Serum or Plasma",
        "mg/dL",
        140.0,
        260.0,
        0,
    ),
    (
        "718-7",
        "Hemoglobin [Mass/volume] in Blood",
        "g/dL",
        11.5,
        17.0,
        1,
    ),
];

/// (RxNorm, display).
const MEDICATIONS: [(&str, &str); 7] = [
    ("860975", "metformin hydrochloride 500 MG Oral Tablet"),
    ("314076", "lisinopril 10 MG Oral Tablet"),
    ("617312", "atorvastatin 20 MG Oral Tablet"),
    ("197361", "amlodipine 5 MG Oral Tablet"),
    ("745679", "albuterol 0.09 MG/ACTUAT Metered Dose Inhaler"),
    ("198211", "simvastatin 40 MG Oral Tablet"),
    ("311989", "omeprazole 20 MG Delayed Release Oral Capsule"),
];

/// (SNOMED CT substance, display).
const ALLERGENS: [(&str, &str); 5] = [
    ("764146007", "Penicillin"),
    ("256349002", "Peanut"),
    ("227037002", "Fish"),
    ("387458008", "Aspirin"),
    ("111088007", "Latex"),
];

/// (CVX, display).
const VACCINES: [(&str, &str); 5] = [
    ("140", "Influenza, seasonal, injectable, preservative free"),
    ("208", "COVID-19, mRNA, LNP-S, PF, 30 mcg/0.3 mL dose"),
    ("115", "Tdap"),
    ("33", "pneumococcal polysaccharide PPV23"),
    ("43", "Hep B, adult"),
];

const ENCOUNTER_TYPES: [(&str, &str); 4] = [
    ("185349003", "Encounter for check up"),
    ("390906007", "Follow-up encounter"),
    ("50849002", "Emergency room admission"),
    ("698314001", "Consultation for treatment"),
];

fn coding(system: &str, code: &str, display: &str) -> Value {
    json!({ "system": system, "code": code, "display": display })
}

fn quantity(rng: &mut ChaCha8Rng, low: f64, high: f64, decimals: u32, unit: &str) -> Value {
    let scale = 10f64.powi(i32::try_from(decimals).unwrap_or(0));
    let value = (rng.random_range(low..high) * scale).round() / scale;
    let value = if decimals == 0 {
        json!(value as i64)
    } else {
        json!(value)
    };
    json!({ "value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit })
}

fn patient(record: &SynthRecord) -> Value {
    let given: Vec<&str> = record.given_name.split_whitespace().collect();
    let mut patient = json!({
        "resourceType": "Patient",
        "id": record.local_id,
        "meta": { "lastUpdated": format!("{}T09:00:00Z", days_ago(30)) },
        "identifier": [{
            "use": "usual",
            "type": { "coding": [coding("http://terminology.hl7.org/CodeSystem/v2-0203", "MR", "Medical record number")] },
            "system": MRN_SYSTEM,
            "value": record.local_id,
        }],
        "name": [{ "use": "official", "family": record.family_name, "given": given }],
    });
    if let Some(p) = patient.as_object_mut() {
        let gender = match record.sex.as_str() {
            "male" | "female" | "other" | "unknown" => Some(record.sex.as_str()),
            _ => None,
        };
        if let Some(g) = gender {
            p.insert("gender".into(), json!(g));
        }
        if !record.birth_date.is_empty() {
            p.insert("birthDate".into(), json!(record.birth_date));
        }
        let mut telecom = Vec::new();
        if !record.phone.is_empty() {
            telecom.push(json!({ "system": "phone", "value": record.phone, "use": "home" }));
        }
        if !record.email.is_empty() {
            telecom.push(json!({ "system": "email", "value": record.email }));
        }
        if !telecom.is_empty() {
            p.insert("telecom".into(), json!(telecom));
        }
        if !record.address_line.is_empty() || !record.city.is_empty() {
            p.insert(
                "address".into(),
                json!([{
                    "use": "home",
                    "line": [record.address_line],
                    "city": record.city,
                    "state": record.state,
                    "postalCode": record.postal_code,
                    "country": "US",
                }]),
            );
        }
        if !record.ssn.is_empty()
            && let Some(ids) = p.get_mut("identifier").and_then(Value::as_array_mut)
        {
            ids.push(json!({
                    "type": { "coding": [coding("http://terminology.hl7.org/CodeSystem/v2-0203", "SS", "Social Security number")] },
                    "system": SSN_SYSTEM,
                    "value": record.ssn,
                }));
        }
    }
    patient
}

fn ehr(record: &SynthRecord, rng: &mut ChaCha8Rng) -> Vec<(&'static str, Value)> {
    let id = &record.local_id;
    let subject = json!({ "reference": format!("Patient/{id}") });
    let mut out = vec![("Patient", patient(record))];
    let encounters = rng.random_range(1..=5);
    let mut encounter_dates = Vec::new();
    for n in 0..encounters {
        let date = days_ago(rng.random_range(10..1500));
        let start = instant(&date, rng);
        let (code, display) = *pick(rng, &ENCOUNTER_TYPES);
        out.push((
            "Encounter",
            json!({
                "resourceType": "Encounter",
                "id": format!("{id}-enc-{n}"),
                "status": "finished",
                "class": coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "AMB", "ambulatory"),
                "type": [{ "coding": [coding("http://snomed.info/sct", code, display)], "text": display }],
                "subject": subject,
                "period": { "start": start, "end": start },
                "meta": { "lastUpdated": start },
            }),
        ));
        encounter_dates.push((format!("{id}-enc-{n}"), date));
    }
    for n in 0..rng.random_range(0..=3) {
        let (icd, snomed, display) = *pick(rng, &CONDITIONS);
        out.push((
            "Condition",
            json!({
                "resourceType": "Condition",
                "id": format!("{id}-cond-{n}"),
                "clinicalStatus": { "coding": [coding("http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active")] },
                "verificationStatus": { "coding": [coding("http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed", "Confirmed")] },
                "category": [{ "coding": [coding("http://terminology.hl7.org/CodeSystem/condition-category", "problem-list-item", "Problem List Item")] }],
                "code": {
                    "coding": [coding("http://hl7.org/fhir/sid/icd-10-cm", icd, display), coding("http://snomed.info/sct", snomed, display)],
                    "text": display,
                },
                "subject": subject,
                "onsetDateTime": days_ago(rng.random_range(200..4000)),
            }),
        ));
    }
    let mut n = 0;
    for (encounter, date) in &encounter_dates {
        let when = instant(date, rng);
        let systolic = rng.random_range(105..165);
        out.push((
            "Observation",
            json!({
                "resourceType": "Observation",
                "id": format!("{id}-obs-{n}"),
                "status": "final",
                "category": [{ "coding": [coding("http://terminology.hl7.org/CodeSystem/observation-category", "vital-signs", "Vital Signs")] }],
                "code": { "coding": [coding("http://loinc.org", "85354-9", "Blood pressure panel")], "text": "Blood pressure" },
                "subject": subject,
                "encounter": { "reference": format!("Encounter/{encounter}") },
                "effectiveDateTime": when,
                "component": [
                    { "code": { "coding": [coding("http://loinc.org", "8480-6", "Systolic blood pressure")] },
                      "valueQuantity": { "value": systolic, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org", "code": "mm[Hg]" } },
                    { "code": { "coding": [coding("http://loinc.org", "8462-4", "Diastolic blood pressure")] },
                      "valueQuantity": { "value": systolic - rng.random_range(35..55), "unit": "mm[Hg]", "system": "http://unitsofmeasure.org", "code": "mm[Hg]" } },
                ],
            }),
        ));
        n += 1;
        for (loinc, display, unit, low, high, decimals) in VITALS.iter().chain(LABS.iter()) {
            let lab = LABS.iter().any(|l| l.0 == *loinc);
            if rng.random::<f64>() > if lab { 0.3 } else { 0.6 } {
                continue;
            }
            let category = if lab {
                ("laboratory", "Laboratory")
            } else {
                ("vital-signs", "Vital Signs")
            };
            out.push((
                "Observation",
                json!({
                    "resourceType": "Observation",
                    "id": format!("{id}-obs-{n}"),
                    "status": "final",
                    "category": [{ "coding": [coding("http://terminology.hl7.org/CodeSystem/observation-category", category.0, category.1)] }],
                    "code": { "coding": [coding("http://loinc.org", loinc, display)], "text": display },
                    "subject": subject,
                    "encounter": { "reference": format!("Encounter/{encounter}") },
                    "effectiveDateTime": when,
                    "valueQuantity": quantity(rng, *low, *high, *decimals, unit),
                }),
            ));
            n += 1;
        }
    }
    for n in 0..rng.random_range(0..=3) {
        let (code, display) = *pick(rng, &MEDICATIONS);
        out.push((
            "MedicationRequest",
            json!({
                "resourceType": "MedicationRequest",
                "id": format!("{id}-med-{n}"),
                "status": if rng.random::<f64>() < 0.8 { "active" } else { "completed" },
                "intent": "order",
                "medicationCodeableConcept": { "coding": [coding("http://www.nlm.nih.gov/research/umls/rxnorm", code, display)], "text": display },
                "subject": subject,
                "authoredOn": days_ago(rng.random_range(10..900)),
                "dosageInstruction": [{ "text": "1 tablet by mouth daily" }],
            }),
        ));
    }
    let allergies = if rng.random::<f64>() < 0.7 {
        0
    } else {
        rng.random_range(1..=2)
    };
    for n in 0..allergies {
        let (code, display) = *pick(rng, &ALLERGENS);
        out.push((
            "AllergyIntolerance",
            json!({
                "resourceType": "AllergyIntolerance",
                "id": format!("{id}-alg-{n}"),
                "clinicalStatus": { "coding": [coding("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "active", "Active")] },
                "code": { "coding": [coding("http://snomed.info/sct", code, display)], "text": display },
                "patient": subject,
                "criticality": *pick(rng, &["low", "high"]),
            }),
        ));
    }
    for n in 0..rng.random_range(0..=3) {
        let (code, display) = *pick(rng, &VACCINES);
        out.push((
            "Immunization",
            json!({
                "resourceType": "Immunization",
                "id": format!("{id}-imm-{n}"),
                "status": "completed",
                "vaccineCode": { "coding": [coding("http://hl7.org/fhir/sid/cvx", code, display)], "text": display },
                "patient": subject,
                "occurrenceDateTime": days_ago(rng.random_range(30..2000)),
            }),
        ));
    }
    if rng.random::<f64>() < 0.4 {
        let start = instant(&days_ago(-rng.random_range(2..60)), rng);
        out.push((
            "Appointment",
            json!({
                "resourceType": "Appointment",
                "id": format!("{id}-appt-0"),
                "status": "booked",
                "serviceType": [{ "text": pick(rng, &["Primary care follow-up", "Annual physical", "Cardiology consult", "Lab draw"]) }],
                "start": start,
                "participant": [{ "actor": subject, "status": "accepted" }],
            }),
        ));
    }
    out
}

// ---- billing, CRM, marketing -------------------------------------------------------------

fn billing(record: &SynthRecord, rng: &mut ChaCha8Rng) -> BillingRows {
    const SERVICES: [(&str, i64); 5] = [
        ("Office visit, established patient", 12_500),
        ("Comprehensive metabolic panel", 4_800),
        ("Annual wellness visit", 18_000),
        ("Emergency department visit", 98_000),
        ("Physical therapy session", 9_500),
    ];
    let id = &record.local_id;
    let mut invoices = Vec::new();
    let mut payments = Vec::new();
    for n in 0..rng.random_range(1..=4) {
        let age = rng.random_range(5..700);
        let (description, base) = *pick(rng, &SERVICES);
        let amount = base + rng.random_range(-1_000..1_000);
        let paid = age > 60 && rng.random::<f64>() < 0.85;
        let status = if paid {
            "paid"
        } else if age > 60 {
            "overdue"
        } else {
            "open"
        };
        invoices.push((
            format!("{id}-INV{n}"),
            days_ago(age),
            days_ago(age - 30),
            description.to_owned(),
            amount,
            status.to_owned(),
        ));
        if paid {
            payments.push((
                format!("{id}-PAY{n}"),
                days_ago(age - rng.random_range(5..40)),
                amount,
                (*pick(rng, &["card", "ach", "check", "insurance"])).to_owned(),
            ));
        }
    }
    BillingRows { invoices, payments }
}

fn crm(record: &SynthRecord, rng: &mut ChaCha8Rng) -> CrmRows {
    const SUBJECTS: [&str; 6] = [
        "Reschedule appointment",
        "Question about a bill",
        "Prescription refill request",
        "Update contact details",
        "Portal login help",
        "Complaint about wait time",
    ];
    let id = &record.local_id;
    let cases = (0..rng.random_range(0..=3))
        .map(|n| {
            let age = rng.random_range(1..500);
            let date = days_ago(age);
            (
                format!("{id}-CASE{n}"),
                instant(&date, rng),
                (*pick(rng, &["phone", "email", "chat", "walk-in"])).to_owned(),
                (*pick(rng, &SUBJECTS)).to_owned(),
                (if age < 14 { "open" } else { "closed" }).to_owned(),
                (*pick(rng, &["low", "normal", "normal", "high"])).to_owned(),
            )
        })
        .collect();
    let preferences = (
        (*pick(rng, &["en", "en", "en", "es", "vi", "zh"])).to_owned(),
        (*pick(rng, &["phone", "email", "sms", "portal"])).to_owned(),
        rng.random::<f64>() < 0.1,
        (*pick(rng, &["morning", "afternoon", "evening", "any"])).to_owned(),
    );
    CrmRows { cases, preferences }
}

fn marketing(rng: &mut ChaCha8Rng) -> MarketingRows {
    let consents = [
        "newsletter",
        "health_tips",
        "research_invitations",
        "third_party_offers",
    ]
    .iter()
    .map(|purpose| {
        let granted = rng.random::<f64>()
            < if *purpose == "third_party_offers" {
                0.1
            } else {
                0.6
            };
        (
            (*purpose).to_owned(),
            (if granted { "granted" } else { "withdrawn" }).to_owned(),
            days_ago(rng.random_range(1..900)),
            (*pick(rng, &["web_form", "portal", "front_desk", "email_link"])).to_owned(),
        )
    })
    .collect();
    let channels = ["email", "sms", "post", "phone"]
        .iter()
        .map(|channel| {
            (
                (*channel).to_owned(),
                rng.random::<f64>() < 0.5,
                (*pick(rng, &["weekly", "monthly", "quarterly"])).to_owned(),
            )
        })
        .collect();
    MarketingRows { consents, channels }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(source: &str, local_id: &str) -> SynthRecord {
        SynthRecord {
            source: source.to_owned(),
            local_id: local_id.to_owned(),
            given_name: "Rosalind E".to_owned(),
            family_name: "Okafor".to_owned(),
            birth_date: "1972-06-30".to_owned(),
            sex: "female".to_owned(),
            ssn: "123-45-6789".to_owned(),
            ..SynthRecord::default()
        }
    }

    #[test]
    fn ehr_rows_are_fhir_resources_of_the_patient() {
        let Some(SiloRows::Ehr(resources)) = rows(&record("ehr", "MRN00000042"), 7) else {
            panic!("ehr rows");
        };
        let (kind, patient) = &resources[0];
        assert_eq!(*kind, "Patient");
        assert_eq!(patient["id"], "MRN00000042");
        assert_eq!(patient["name"][0]["given"], json!(["Rosalind", "E"]));
        assert_eq!(patient["identifier"][1]["system"], SSN_SYSTEM);
        assert!(resources.iter().any(|(k, _)| *k == "Encounter"));
        for (kind, resource) in &resources {
            assert_eq!(resource["resourceType"], *kind);
            assert!(EHR_RESOURCE_TYPES.contains(kind));
            let reference = resource
                .get("subject")
                .or_else(|| resource.get("patient"))
                .or_else(|| resource["participant"].get(0).map(|p| &p["actor"]));
            if *kind != "Patient" {
                assert_eq!(
                    reference.expect("a patient reference")["reference"],
                    "Patient/MRN00000042"
                );
            }
        }
    }

    #[test]
    fn content_depends_only_on_seed_silo_and_local_id() {
        let a = rows(&record("billing", "ACC-1"), 7);
        assert_eq!(a, rows(&record("billing", "ACC-1"), 7));
        assert_ne!(a, rows(&record("billing", "ACC-2"), 7));
        assert_ne!(a, rows(&record("billing", "ACC-1"), 8));
        assert!(rows(&record("lab", "X"), 7).is_none());
    }

    #[test]
    fn past_dates_count_back_from_today() {
        assert_eq!(days_ago(0), "2026-11-01");
        assert_eq!(days_ago(30), "2026-10-01");
        assert_eq!(days_ago(-60), "2027-01-01");
    }
}
