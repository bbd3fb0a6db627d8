//! One table of real-shaped Patients and the single answer each maps to.

use serde_json::{Value, json};
use tessera_types::{Address, Demographics, Sex};

use super::{civil_from_days, demographics_on};

const TODAY: &str = "2026-12-05";

fn address(lines: &[&str], city: &str, state: &str, zip: &str, country: &str) -> Address {
    Address {
        lines: lines.iter().map(|l| (*l).to_owned()).collect(),
        city: city.to_owned(),
        state: state.to_owned(),
        postal_code: zip.to_owned(),
        country: country.to_owned(),
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

fn full_patient() -> Value {
    json!({
        "resourceType": "Patient",
        "id": "p1",
        "meta": {"lastUpdated": "2026-01-02T03:04:05Z"},
        "extension": [{"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
                       "extension": [{"url": "text", "valueString": "x"}]}],
        "identifier": [
            {"system": "http://hospital.example/mrn", "value": "MRN-1"},
            {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "123-45-6789"}
        ],
        "name": [
            {"use": "nickname", "given": ["Mimi"]},
            {"use": "official", "family": "Smith", "given": ["Mary"],
             "period": {"end": "2010-06-01"}},
            {"use": "official", "family": "Jones", "given": ["Mary", "Ann"],
             "suffix": ["PhD", "jr."], "period": {"start": "2010-06-01"},
             "extension": [{"url": "http://example.org/x", "valueString": "y"}]},
            {"use": "maiden", "family": "Brown", "given": ["Mary"]},
            {"use": "old", "family": "Jones", "given": ["M"]}
        ],
        "telecom": [
            {"system": "email", "value": "mary@work.example", "use": "work"},
            {"system": "phone", "value": "555-0101", "use": "home", "rank": 2},
            {"system": "phone", "value": "555-0102", "use": "mobile"},
            {"system": "phone", "value": "555-0103", "use": "work", "rank": 1},
            {"system": "sms", "value": "555-0104", "use": "home"},
            {"system": "phone", "value": "555-0105", "use": "old"},
            {"system": "phone", "value": "555-0106", "period": {"end": "2020-01-01T00:00:00Z"}},
            {"system": "phone", "value": "555-0107", "use": "home", "period": {"end": "2026-12"}},
            {"system": "fax", "value": "555-0108"},
            {"system": "email", "value": "mary@home.example", "use": "home", "rank": 1}
        ],
        "gender": "female",
        "_gender": {"extension": [{"url": "http://example.org/g", "valueCode": "f"}]},
        "birthDate": "1980-02-29",
        "address": [
            {"use": "old", "line": ["9 Old Rd"], "city": "Oldtown", "state": "MA",
             "postalCode": "01001", "country": "US"},
            {"use": "home", "line": ["1 Main St", "Apt 2"], "city": "Springfield",
             "state": "IL", "postalCode": "62704", "country": "US"},
            {"use": "home", "line": ["5 Gone Ave"], "city": "Chicago", "state": "IL",
             "period": {"end": "2015"}},
            {"use": "work", "text": "only text"}
        ]
    })
}

#[test]
fn patients_map_to_one_answer() {
    let table: Vec<(&str, Value, Demographics)> = vec![
        (
            "every element: names with use and period, suffixes, ranked telecom, old addresses",
            full_patient(),
            Demographics {
                given_names: strings(&["Mary", "Ann"]),
                family_name: "Jones".to_owned(),
                name_suffix: "JR".to_owned(),
                previous_family_names: strings(&["Smith", "Brown"]),
                birth_date: "1980-02-29".to_owned(),
                sex: Sex::Female,
                addresses: vec![
                    address(&["1 Main St", "Apt 2"], "Springfield", "IL", "62704", "US"),
                    address(&["9 Old Rd"], "Oldtown", "MA", "01001", "US"),
                    address(&["5 Gone Ave"], "Chicago", "IL", "", ""),
                ],
                phones: strings(&["555-0103", "555-0101", "555-0102", "555-0104", "555-0107"]),
                emails: strings(&["mary@home.example", "mary@work.example"]),
                national_id: "123-45-6789".to_owned(),
            },
        ),
        (
            "usual wins over a name without use; an ended official name is not current",
            json!({"resourceType": "Patient", "gender": "male", "name": [
                {"family": "Plain", "given": ["Bob"]},
                {"use": "official", "family": "Ended", "given": ["Robert"],
                 "period": {"end": "2026-12-04"}},
                {"use": "usual", "family": "Usual", "given": ["Rob", "J"], "suffix": ["III"],
                 "period": {"end": "2026-12-05"}},
            ]}),
            Demographics {
                given_names: strings(&["Rob", "J"]),
                family_name: "Usual".to_owned(),
                name_suffix: "III".to_owned(),
                previous_family_names: strings(&["Ended"]),
                sex: Sex::Male,
                ..Demographics::default()
            },
        ),
        (
            "a name without use, then other uses; academic suffixes ignored",
            json!({"resourceType": "Patient", "name": [
                {"use": "temp", "family": "Temp"},
                {"family": "Doe", "given": ["Jane"], "suffix": ["MD", "Sr"]},
            ]}),
            Demographics {
                given_names: strings(&["Jane"]),
                family_name: "Doe".to_owned(),
                name_suffix: "SR".to_owned(),
                ..Demographics::default()
            },
        ),
        (
            "text only when there is no family or given",
            json!({"resourceType": "Patient", "name": [
                {"use": "official", "text": "John Q Public 2nd"},
            ], "identifier": [{"system": "urn:oid:2.16.840.1.113883.4.1", "value": "987654321"}]}),
            Demographics {
                given_names: strings(&["John", "Q"]),
                family_name: "Public".to_owned(),
                name_suffix: "II".to_owned(),
                national_id: "987654321".to_owned(),
                ..Demographics::default()
            },
        ),
        (
            "text as family, given",
            json!({"resourceType": "Patient", "name": [
                {"text": "Smith, John Paul"},
                {"use": "maiden", "family": "SMITH"},
            ]}),
            Demographics {
                given_names: strings(&["John", "Paul"]),
                family_name: "Smith".to_owned(),
                ..Demographics::default()
            },
        ),
        (
            "nothing but the resource type",
            json!({"resourceType": "Patient"}),
            Demographics::default(),
        ),
        (
            "malformed elements read as absent, the rest kept",
            json!({"resourceType": "Patient",
                   "name": [{"family": ["Array"], "given": "Notalist"},
                            "not an object",
                            {"use": "usual", "family": "Kept", "given": ["Ok", 7]}],
                   "birthDate": "31/02/1980",
                   "gender": "F",
                   "telecom": [{"system": "phone", "value": 5550100},
                               {"system": "phone", "value": "555-0199", "rank": "first"},
                               {"system": "email", "value": "  "}],
                   "address": "1 Main St",
                   "identifier": {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "1"}}),
            Demographics {
                given_names: strings(&["Ok"]),
                family_name: "Kept".to_owned(),
                sex: Sex::Female,
                phones: strings(&["555-0199"]),
                ..Demographics::default()
            },
        ),
    ];
    for (what, patient, want) in table {
        assert_eq!(demographics_on(&patient, TODAY), want, "{what}");
    }
}

#[test]
fn ended_periods_depend_on_the_day() {
    let patient = json!({"name": [
        {"use": "official", "family": "Old", "period": {"end": "2026-12-05T23:59:59Z"}},
        {"use": "usual", "family": "New"},
    ]});
    assert_eq!(demographics_on(&patient, "2026-12-05").family_name, "Old");
    let later = demographics_on(&patient, "2026-12-06");
    assert_eq!(later.family_name, "New");
    assert_eq!(later.previous_family_names, ["Old"]);
}

#[test]
fn civil_dates_from_unix_days() {
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    assert_eq!(civil_from_days(20_792), (2026, 12, 5));
    assert_eq!(super::today().len(), 10);
}
