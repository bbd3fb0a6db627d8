//! The gate's semantics over fake sources, the config's errors, and FHIR Consent parsing.

use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::json;

use super::*;

/// A fake source: fixed rules, or hangs, or fails; counts questions.
struct Fake {
    rules: Vec<Rule>,
    hang: bool,
    fail: bool,
    asked: AtomicU32,
}

#[async_trait]
impl ConsentSource for Fake {
    async fn decisions(&self, _: &[RecordKey], _: &str) -> Result<Decisions, ConsentError> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        if self.hang {
            std::future::pending::<()>().await;
        }
        if self.fail {
            return Err(ConsentError::Fhir("HTTP 500".to_owned()));
        }
        Ok(Decisions {
            rules: self.rules.clone(),
        })
    }
}

fn fake(rules: Vec<Rule>, hang: bool, fail: bool) -> Arc<Fake> {
    Arc::new(Fake {
        rules,
        hang,
        fail,
        asked: AtomicU32::new(0),
    })
}

fn config(yaml: &str) -> ConsentConfig {
    serde_yaml_ng::from_str(yaml).unwrap()
}

const GATED: &str = "
source: { kind: sql, url: 'sqlite://consent.db' }
gated: ['marketing.*', 'ehr.notes']
timeout: 200ms
";

const PAIRS: &[(&str, &str)] = &[
    ("marketing", "campaigns"),
    ("ehr", "notes"),
    ("ehr", "encounters"),
];

fn opt_out_of_marketing() -> Vec<Rule> {
    vec![Rule {
        purpose: Some("HMARKT".to_owned()),
        sections: SectionPattern::Source("marketing".to_owned()),
        decision: Decision::Deny,
    }]
}

#[tokio::test(start_paused = true)]
async fn an_opt_out_withholds_its_gated_section_for_its_purpose_only() {
    let source = fake(opt_out_of_marketing(), false, false);
    let gate = Consent::new(&config(GATED), source.clone()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    let got = gate.check(&[], "HMARKT", PAIRS, deadline).await;
    assert_eq!(got, [Some(Withheld::OptOut), None, None]);
    let got = gate.check(&[], "TREAT", PAIRS, deadline).await;
    assert_eq!(got, [None, None, None], "the opt-out is for marketing");
    assert_eq!(source.asked.load(Ordering::SeqCst), 2, "once per view");

    let ungated = gate
        .check(&[], "HMARKT", &[("ehr", "encounters")], deadline)
        .await;
    assert_eq!(ungated, [None]);
    assert_eq!(
        source.asked.load(Ordering::SeqCst),
        2,
        "not asked when nothing is gated"
    );
}

#[tokio::test(start_paused = true)]
async fn a_hanging_source_withholds_every_gated_section_within_its_budget() {
    let source = fake(Vec::new(), true, false);
    let gate = Consent::new(&config(GATED), source).unwrap();
    let start = Instant::now();
    let got = gate
        .check(&[], "TREAT", PAIRS, start + Duration::from_millis(100))
        .await;
    assert_eq!(
        got,
        [
            Some(Withheld::Unavailable),
            Some(Withheld::Unavailable),
            None
        ]
    );
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(50),
        "half of the remaining deadline"
    );
    let start = Instant::now();
    gate.check(&[], "TREAT", PAIRS, start + Duration::from_secs(10))
        .await;
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(200),
        "the timeout caps it"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_source_fails_closed_and_an_opt_in_default_denies() {
    let gate = Consent::new(&config(GATED), fake(Vec::new(), false, true)).unwrap();
    let got = gate
        .check(&[], "TREAT", PAIRS, Instant::now() + Duration::from_secs(1))
        .await;
    assert_eq!(got[0], Some(Withheld::Unavailable));
    assert_eq!(got[0].map(Withheld::code), Some("CONSENT_UNAVAILABLE"));

    let opt_in = config(&format!("{GATED}default: deny\n"));
    let permit_ehr = vec![Rule {
        purpose: None,
        sections: SectionPattern::Source("ehr".to_owned()),
        decision: Decision::Permit,
    }];
    let gate = Consent::new(&opt_in, fake(permit_ehr, false, false)).unwrap();
    let got = gate
        .check(&[], "TREAT", PAIRS, Instant::now() + Duration::from_secs(1))
        .await;
    assert_eq!(got, [Some(Withheld::OptOut), None, None]);
}

#[test]
fn config_errors_name_the_field() {
    let err = |yaml: &str| config(yaml).validate().unwrap_err().to_string();
    assert_eq!(
        err("source: { kind: sql, url: 'sqlite://c.db' }\ngated: [marketing]\n"),
        "invalid consent config: gated[0] must be `*`, `SOURCE.*` or `SOURCE.SECTION`"
    );
    assert_eq!(
        err("source: { kind: sql, url: 'sqlite://c.db', table: 'x; drop' }\ngated: []\n"),
        "invalid consent config: source.table must be an SQL identifier (`schema.table` at most)"
    );
    assert_eq!(
        err("source: { kind: sql, url: 'sqlite://c.db' }\ngated: []\ndeadline_share: 1.5\n"),
        "invalid consent config: deadline_share must be above 0 and at most 1"
    );
    assert_eq!(
        err("source: { kind: fhir, base_url: 'ftp://x', system: ehr }\ngated: []\n"),
        "invalid consent config: source.base_url must be http or https"
    );
    let unknown =
        serde_yaml_ng::from_str::<ConsentConfig>("source: { kind: grpc, url: x }\ngated: []\n")
            .unwrap_err()
            .to_string();
    assert!(
        unknown.contains("`sql`") && unknown.contains("`fhir`"),
        "{unknown}"
    );
    assert!(
        serde_yaml_ng::from_str::<ConsentConfig>(
            "source: { kind: sql, url: x, password: y }\ngated: []\n"
        )
        .is_err(),
        "unknown fields are refused"
    );
    let token = FhirConsentConfig {
        base_url: "http://fhir.example.org/r4".to_owned(),
        system: "ehr".to_owned(),
        section_system: config::SECTION_SYSTEM.to_owned(),
        bearer_token: Some(tessera_types::Secret::new("t0ken")),
    };
    let refused = fhir::FhirConsent::open(&token, Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(refused.contains("must be https"), "{refused}");
    assert!(!refused.contains("t0ken"));
}

/// A search result shaped like a real R4 server's: an opt-out of marketing contact with a
/// nested permit for one section, an inactive Consent, and a Consent whose class names a
/// resource type (not a section).
fn bundle() -> serde_json::Value {
    json!({
      "resourceType": "Bundle",
      "type": "searchset",
      "total": 3,
      "link": [{"relation": "self", "url": "http://fhir.local/Consent?patient=Patient/p1&status=active"}],
      "entry": [
        {"fullUrl": "http://fhir.local/Consent/c1", "search": {"mode": "match"}, "resource": {
          "resourceType": "Consent", "id": "c1", "status": "active",
          "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
          "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
          "patient": {"reference": "Patient/p1"},
          "dateTime": "2026-01-10T09:00:00Z",
          "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
          "provision": {
            "type": "deny",
            "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HMARKT"}],
            "class": [{"system": SECTION_SYSTEM_URL, "code": "marketing.*"}],
            "provision": [{
              "type": "permit",
              "code": [{"coding": [{"system": SECTION_SYSTEM_URL, "code": "marketing.preferences"}]}]
            }]
          }
        }},
        {"resource": {"resourceType": "Consent", "id": "c2", "status": "inactive",
          "provision": {"type": "deny"}}},
        {"resource": {"resourceType": "Consent", "id": "c3", "status": "active",
          "provision": {"type": "deny",
            "purpose": [{"code": "HRESCH"}],
            "class": [{"system": "http://hl7.org/fhir/resource-types", "code": "Observation"}]}}},
        {"search": {"mode": "include"}, "resource": {"resourceType": "Patient", "id": "p1"}}
      ]
    })
}

const SECTION_SYSTEM_URL: &str = config::SECTION_SYSTEM;

#[test]
fn fhir_consents_become_rules() {
    let rules = fhir::parse_bundle(&bundle(), config::SECTION_SYSTEM).unwrap();
    let d = Decisions { rules };
    assert_eq!(
        d.decide("HMARKT", "marketing", "campaigns"),
        Some(Decision::Deny)
    );
    assert_eq!(
        d.decide("HMARKT", "marketing", "preferences"),
        Some(Decision::Permit),
        "the nested permit is more specific and inherits the purpose"
    );
    assert_eq!(d.decide("TREAT", "marketing", "campaigns"), None);
    assert_eq!(
        d.decide("HRESCH", "ehr", "labs"),
        Some(Decision::Deny),
        "a deny over codes we do not know covers every section"
    );
    assert_eq!(
        d.decide("TREAT", "ehr", "labs"),
        None,
        "inactive consents do not count"
    );

    let paged = json!({"resourceType": "Bundle", "link": [{"relation": "next", "url": "x"}]});
    assert!(fhir::parse_bundle(&paged, config::SECTION_SYSTEM).is_err());
    assert!(fhir::parse_bundle(&json!({"resourceType": "Patient"}), "s").is_err());
}

#[tokio::test]
async fn the_fhir_source_searches_each_patient_of_its_system() {
    use wiremock::matchers::{header, method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/fhir/Consent"))
        .and(query_param("patient", "Patient/p1"))
        .and(query_param("status", "active"))
        .and(header("authorization", "Bearer t0ken"))
        .respond_with(ResponseTemplate::new(200).set_body_json(bundle()))
        .expect(1)
        .mount(&server)
        .await;
    let config: ConsentConfig = serde_yaml_ng::from_str(&format!(
        "source: {{ kind: fhir, base_url: '{}/fhir', system: ehr, bearer_token: t0ken }}\n\
         gated: ['marketing.*']\n",
        server.uri()
    ))
    .unwrap();
    config.validate().unwrap();
    let source = build(&config, Path::new(".")).unwrap();
    let records = [
        RecordKey {
            system: "ehr".to_owned(),
            local_id: "p1".to_owned(),
        },
        RecordKey {
            system: "crm".to_owned(),
            local_id: "C9".to_owned(),
        },
    ];
    let gate = Consent::new(&config, source).unwrap();
    let got = gate
        .check(
            &records,
            "HMARKT",
            &[("marketing", "campaigns"), ("marketing", "preferences")],
            Instant::now() + Duration::from_secs(5),
        )
        .await;
    assert_eq!(got, [Some(Withheld::OptOut), None]);

    let failing = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&failing)
        .await;
    let config: ConsentConfig = serde_yaml_ng::from_str(&format!(
        "source: {{ kind: fhir, base_url: '{}', system: ehr }}\ngated: ['*']\n",
        failing.uri()
    ))
    .unwrap();
    let err = build(&config, Path::new("."))
        .unwrap()
        .decisions(&records, "HMARKT")
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(err, "fhir consent search failed: HTTP 503");
}

/// Every property of `node` and below has a description, but the `kind` tag.
fn assert_documented(root: &serde_json::Value, node: &serde_json::Value, at: &str) {
    if let Some(props) = node.get("properties").and_then(|p| p.as_object()) {
        for (name, prop) in props {
            let described = prop.get("description").is_some()
                || prop
                    .get("$ref")
                    .and_then(|r| r.as_str())
                    .and_then(|r| r.strip_prefix("#/$defs/"))
                    .and_then(|d| root["$defs"].get(d))
                    .is_some_and(|d| d.get("description").is_some());
            assert!(
                described || name == "kind",
                "`{at}.{name}` has no description"
            );
        }
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        for (i, sub) in node
            .get(key)
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
            .enumerate()
        {
            assert_documented(root, sub, &format!("{at}.{key}[{i}]"));
        }
    }
    for (name, def) in node
        .get("$defs")
        .and_then(|d| d.as_object())
        .into_iter()
        .flatten()
    {
        assert_documented(root, def, name);
    }
}

#[test]
fn the_config_schema_documents_every_field() {
    let schema = serde_json::to_value(schemars::schema_for!(ConsentConfig)).unwrap();
    assert_documented(&schema, &schema, "consent");
    insta::assert_json_snapshot!(schema);
}
