//! Unit tests of the parts that need no server: config checks, error mapping,
//! Retry-After, traceparent, secrets in Debug.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use tessera_adapter_core::{FetchError, Registry};

use crate::client::{Trace, retry_after};
use crate::mapping::{parse_bundle, status_error};
use crate::{AuthConfig, FhirConfig, FhirKind, Secret};

fn check(config: serde_json::Value) -> String {
    match Registry::new().with(FhirKind).check("fhir", &config) {
        Ok(()) => "ok".to_owned(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn config_errors_name_the_field() {
    let base = || serde_json::json!({"system": "ehr", "base_url": "http://127.0.0.1:1/fhir"});
    assert_eq!(check(base()), "ok");
    let mut bad = base();
    bad["base_url"] = "ftp://x".into();
    insta::assert_snapshot!(check(bad), @"base_url: must be an http or https URL");
    let mut bad = base();
    bad["sections"] = serde_json::json!(["observations", "labs"]);
    insta::assert_snapshot!(check(bad), @"sections[1]: unknown variant `labs`, expected one of `demographics`, `encounters`, `conditions`, `observations`, `medications`, `allergies`, `immunizations`, `appointments`, `documents`");
    let mut bad = base();
    bad["colour"] = 1.into();
    assert!(check(bad).contains("unknown field `colour`"));
    let mut bad = base();
    bad["sections"] = serde_json::json!(["observations"]);
    bad["section_options"] = serde_json::json!({"encounters": {"include": ["Encounter:patient"]}});
    insta::assert_snapshot!(check(bad), @"section_options.encounters: is not a configured section");
    let mut bad = base();
    bad["section_options"] = serde_json::json!({"medications": {"include": ["medication"]}});
    insta::assert_snapshot!(check(bad), @r#"section_options.medications.include: "medication" is not an _include value (Type:param[:Target])"#);
    let mut bad = base();
    bad["patient_id"] = serde_json::json!({"type": "identifier", "system": ""});
    insta::assert_snapshot!(check(bad), @"patient_id.system: must be a non-empty URI without '|'");
    let mut bad = base();
    bad["auth"] = serde_json::json!({"type": "smart_backend", "token_url": "http://x/token", "client_id": "c",
        "private_key_file": "k.pem", "algorithm": "HS256", "scope": "system/*.rs"});
    assert!(check(bad).starts_with("auth: "), "{}", check(base()));
}

#[test]
fn credentials_are_refused_over_plain_http_except_to_loopback() {
    let with = |base_url: &str, auth: serde_json::Value| {
        check(serde_json::json!({"system": "ehr", "base_url": base_url, "auth": auth}))
    };
    let bearer = serde_json::json!({"type": "bearer", "token": "t0ken"});
    insta::assert_snapshot!(
        with("http://ehr.example.org/fhir", bearer.clone()),
        @"base_url: must be https:// when auth.token is set (http:// only to localhost, 127.0.0.0/8 or ::1): credentials are never sent in plaintext"
    );
    for url in [
        "https://ehr.example.org/fhir",
        "http://localhost:8080/fhir",
        "http://127.0.0.2:8080/fhir",
        "http://[::1]:8080/fhir",
    ] {
        assert_eq!(with(url, bearer.clone()), "ok", "{url}");
    }
    // Without credentials plain http stays possible (a test server, a sidecar).
    assert_eq!(
        with(
            "http://ehr.example.org/fhir",
            serde_json::json!({"type": "none"})
        ),
        "ok"
    );
    let smart = |base_url: &str, token_url: &str| {
        with(
            base_url,
            serde_json::json!({"type": "smart_backend", "token_url": token_url, "client_id": "c",
                "private_key_file": "k.pem", "algorithm": "RS384", "scope": "system/*.rs"}),
        )
    };
    insta::assert_snapshot!(
        smart("http://10.0.0.5/fhir", "https://auth.example.org/token"),
        @"base_url: must be https:// when auth.private_key_file is set (http:// only to localhost, 127.0.0.0/8 or ::1): credentials are never sent in plaintext"
    );
    insta::assert_snapshot!(
        smart("https://ehr.example.org/fhir", "http://auth.example.org/token"),
        @"auth.token_url: must be https:// when auth.private_key_file is set (http:// only to localhost, 127.0.0.0/8 or ::1): credentials are never sent in plaintext"
    );
}

#[test]
fn the_documented_config_example_is_valid() {
    let yaml: Vec<&str> = include_str!("lib.rs")
        .lines()
        .skip_while(|l| !l.contains("```yaml"))
        .skip(1)
        .take_while(|l| !l.contains("```"))
        .map(|l| l.trim_start_matches("//!").strip_prefix(' ').unwrap_or(""))
        .collect();
    let value: serde_json::Value = serde_yaml_ng::from_str(&yaml.join("\n")).unwrap_or_default();
    assert_eq!(value["sources"][0]["kind"], "fhir");
    assert_eq!(check(value["sources"][0]["config"].clone()), "ok");
}

#[test]
fn the_config_schema_documents_every_field() {
    let schema = schemars::schema_for!(FhirConfig);
    let text = serde_json::to_string(&schema).unwrap_or_default();
    for field in [
        "base_url",
        "patient_id",
        "search_via_post",
        "section_options",
        "max_attempts",
    ] {
        assert!(text.contains(field), "{field}");
    }
    let properties = schema
        .get("properties")
        .and_then(|p| p.as_object())
        .cloned()
        .unwrap_or_default();
    for (name, property) in properties {
        assert!(
            property.get("description").is_some(),
            "{name} has no description"
        );
    }
}

#[test]
fn secrets_are_hidden_in_debug() {
    let mut config = FhirConfig::new("ehr", "http://127.0.0.1:1/");
    config.auth = AuthConfig::Bearer {
        token: Secret::new("s3cr3t-token"),
    };
    let debug = format!("{config:?}");
    assert!(!debug.contains("s3cr3t"), "{debug}");
    assert!(debug.contains("***"));
}

#[test]
fn retry_after_reads_seconds_and_dates() {
    let mut headers = HeaderMap::new();
    assert_eq!(retry_after(&headers), None);
    headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
    assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
    let later = std::time::SystemTime::now() + Duration::from_secs(120);
    let date = httpdate::fmt_http_date(later);
    headers.insert(
        RETRY_AFTER,
        HeaderValue::from_str(&date).unwrap_or(HeaderValue::from_static("x")),
    );
    let wait = retry_after(&headers).unwrap_or_default();
    assert!(
        wait > Duration::from_secs(100) && wait <= Duration::from_secs(120),
        "{wait:?}"
    );
    headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
    assert_eq!(retry_after(&headers), None);
}

#[test]
fn operation_outcomes_become_typed_errors_without_diagnostics() {
    let outcome = |code: &str| {
        serde_json::json!({"resourceType": "OperationOutcome", "issue": [{
            "severity": "error", "code": code, "diagnostics": "Patient Jane Doe 1970-01-02 not allowed"}]})
        .to_string()
        .into_bytes()
    };
    let e = status_error(StatusCode::FORBIDDEN, None, &outcome("forbidden"));
    assert!(matches!(e, FetchError::Denied { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "source denied access: upstream refused the adapter's credentials (HTTP 403, issue forbidden)"
    );
    let e = status_error(StatusCode::BAD_REQUEST, None, &outcome("not-supported"));
    assert_eq!(
        e.to_string(),
        "malformed data from source: upstream rejected the request (HTTP 400, issue not-supported)"
    );
    assert!(!format!("{e:?}").contains("Jane"));
    assert_eq!(
        status_error(StatusCode::NOT_FOUND, None, &outcome("not-found")),
        FetchError::NotFound
    );
    assert_eq!(
        status_error(StatusCode::GONE, None, b""),
        FetchError::NotFound
    );
    let e = status_error(
        StatusCode::TOO_MANY_REQUESTS,
        Some(Duration::from_secs(3)),
        b"",
    );
    assert_eq!(
        e,
        FetchError::RateLimited {
            retry_after: Some(Duration::from_secs(3))
        }
    );
    let e = status_error(
        StatusCode::SERVICE_UNAVAILABLE,
        Some(Duration::from_secs(2)),
        &outcome("transient"),
    );
    assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
    assert!(e.is_retryable());
    let e = status_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        None,
        b"<html>oops</html>",
    );
    assert_eq!(
        e.to_string(),
        "source unavailable: upstream failed (HTTP 500)"
    );
}

#[test]
fn traceparent_is_w3c_version_00() {
    let trace = Trace::new();
    let (a, b) = (trace.traceparent(), trace.traceparent());
    let parts: Vec<&str> = a.split('-').collect();
    assert_eq!(parts.len(), 4);
    assert_eq!(
        (parts[0], parts[1].len(), parts[2].len(), parts[3]),
        ("00", 32, 16, "01")
    );
    assert!(a.chars().all(|c| c.is_ascii_hexdigit() || c == '-'));
    assert_eq!(a[..36], b[..36], "one trace id per fetch");
    assert_ne!(a, b, "one parent id per request");
}

#[test]
fn a_malformed_resource_is_skipped_and_counted() {
    let bundle = serde_json::json!({"resourceType": "Bundle", "type": "searchset",
    "link": [{"relation": "next", "url": "http://x/Observation?page=2"}],
    "entry": [
        {"resource": {"resourceType": "Observation", "id": "a", "status": "final", "code": {"text": "x"},
            "meta": {"lastUpdated": "2026-01-02T03:04:05.678Z"}}},
        {"resource": {"resourceType": "Observation", "id": "b", "status": 42, "code": {"text": "Jane"}}},
        {"resource": {"resourceType": "Observation", "id": "c", "status": "final", "code": "not a concept"}}
    ]});
    let page = parse_bundle(bundle.to_string().as_bytes()).unwrap_or_default();
    assert_eq!(page.resources.len(), 1);
    assert_eq!(page.skipped, 2);
    assert_eq!(page.next.as_deref(), Some("http://x/Observation?page=2"));
    let record = page.resources[0].record();
    assert_eq!(record.record_id.as_deref(), Some("a"));
    assert!(record.json.contains("\"status\":\"final\""));
    assert!(record.update_time.is_some());
    assert!(parse_bundle(b"{\"resourceType\":\"Patient\"}").is_err());
    assert!(parse_bundle(b"<html>").is_err());
}
