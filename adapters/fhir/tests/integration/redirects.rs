//! Redirects, from fake servers (wiremock): one to another origin (here another
//! port) is not followed, so neither the search nor the `Authorization` header
//! reaches the other server; one within the server's origin is followed with
//! the header.

use std::time::Duration;

use serde_json::json;
use tessera_adapter_core::FetchError;
use tessera_adapter_fhir::{AuthConfig, Secret};
use wiremock::matchers::{header, method, path, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::logs;
use crate::medplum::{build, fetch, records};

const PATIENT_ID: &str = "pat-1";
const TOKEN: &str = "t0ken-for-the-ehr";

/// Answers every request with a 302 to the same path and query under `target`.
fn redirect_to(target: String) -> impl Fn(&Request) -> ResponseTemplate {
    move |request: &Request| {
        let query = request
            .url
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        ResponseTemplate::new(302)
            .insert_header("location", format!("{target}{}{query}", request.url.path()))
    }
}

/// A searchset Bundle of one resource.
fn fhir_bundle(resource: serde_json::Value) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("content-type", "application/fhir+json")
        .set_body_string(
            json!({"resourceType": "Bundle", "type": "searchset", "total": 1,
                "entry": [{"resource": resource}]})
            .to_string(),
        )
}

fn bearer(config: &mut tessera_adapter_fhir::FhirConfig) {
    config.auth = AuthConfig::Bearer {
        token: Secret::new(TOKEN),
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_another_port_is_not_followed_and_leaks_no_token() {
    logs::init();
    let ehr = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(redirect_to(elsewhere.uri()))
        .mount(&ehr)
        .await;
    let adapter = build(&format!("{}/fhir/", ehr.uri()), bearer);
    let results = fetch(
        &*adapter,
        PATIENT_ID,
        &["encounters"],
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(
        results[0].records,
        Err(FetchError::Malformed {
            message: "refused a redirect to another origin than the server's".to_owned()
        })
    );
    let seen = elsewhere.received_requests().await.expect("recording");
    assert!(
        seen.is_empty(),
        "the other server saw {} requests",
        seen.len()
    );
    // The EHR itself got the token: the refusal is about where it would go next.
    let asked = ehr.received_requests().await.expect("recording");
    assert!(
        asked
            .iter()
            .all(|r| r.headers.get("authorization").is_some())
    );
    let text = logs::text();
    assert!(text.contains("fhir redirect not followed"), "{text}");
    assert!(!text.contains(TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_within_the_servers_origin_is_followed_with_the_token() {
    logs::init();
    let ehr = MockServer::start().await;
    let patient = json!({"resourceType": "Patient", "id": PATIENT_ID});
    let encounter = json!({"resourceType": "Encounter", "id": "enc-1",
        "status": "finished", "class": {"code": "AMB"}});
    for (kind, resource) in [("Patient", patient), ("Encounter", encounter)] {
        Mock::given(method("GET"))
            .and(path(format!("/moved/fhir/{kind}")))
            .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
            .respond_with(fhir_bundle(resource))
            .mount(&ehr)
            .await;
    }
    Mock::given(method("GET"))
        .and(path_regex("^/fhir/"))
        .respond_with(redirect_to(format!("{}/moved", ehr.uri())))
        .mount(&ehr)
        .await;
    let adapter = build(&format!("{}/fhir/", ehr.uri()), bearer);
    let results = fetch(
        &*adapter,
        PATIENT_ID,
        &["encounters"],
        Duration::from_secs(2),
    )
    .await;
    let encounters = records(&results, "encounters");
    assert_eq!(encounters.len(), 1);
    assert_eq!(encounters[0].record_id.as_deref(), Some("enc-1"));
}
