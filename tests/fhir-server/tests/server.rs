//! The wrapper's own behaviour: paging links on its origin, validation of writes
//! (and the opt-out for seeding bad data), bearer auth, POST _search, metadata.

use serde_json::{Value, json};
use tessera_test_fhir_server::{FhirServer, Options};

async fn get(url: &str) -> (u16, Value) {
    let response = reqwest::get(url).await.expect("get");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_validates_and_searches_by_post() {
    let server = FhirServer::start().expect("server");
    let base = server.base_url();
    let patient = server
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Test"}]}))
        .await
        .expect("patient");
    let id = patient["id"].as_str().expect("id").to_owned();
    for n in 0..5 {
        server
            .create(&json!({"resourceType": "Observation", "status": "final", "code": {"text": format!("o{n}")},
                "subject": {"reference": format!("Patient/{id}")}}))
            .await
            .expect("observation");
    }
    let (status, page) = get(&format!("{base}Observation?patient={id}&_count=2")).await;
    assert_eq!(status, 200);
    assert_eq!(page["total"], 5);
    assert_eq!(page["entry"].as_array().map(Vec::len), Some(2));
    let next = page["link"]
        .as_array()
        .and_then(|links| links.iter().find(|l| l["relation"] == "next"))
        .and_then(|l| l["url"].as_str())
        .expect("a next link")
        .to_owned();
    assert!(next.starts_with(&base), "{next}");
    let (_, last) = get(&next.replace("_offset=2", "_offset=4")).await;
    assert_eq!(last["entry"].as_array().map(Vec::len), Some(1));
    assert!(
        last["link"]
            .as_array()
            .is_some_and(|l| l.iter().all(|l| l["relation"] != "next"))
    );

    // Writes are validated against the R4 definitions, unless told not to.
    let bad = json!({"resourceType": "Observation", "status": 42, "code": {"text": "x"}});
    assert!(server.create(&bad).await.is_err());
    assert!(server.create_unvalidated(&bad).await.is_ok());

    let form = [("patient", id.as_str()), ("_count", "10")];
    let response = reqwest::Client::new()
        .post(format!("{base}Observation/_search"))
        .form(&form)
        .send()
        .await
        .expect("post");
    let bundle: Value = response.json().await.expect("json");
    assert_eq!(bundle["total"], 5);

    let (status, metadata) = get(&format!("{base}metadata")).await;
    assert_eq!(
        (status, metadata["resourceType"].as_str()),
        (200, Some("CapabilityStatement"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearer_server_refuses_requests_without_the_token() {
    let server = FhirServer::start_with(Options {
        bearer: Some("t0k".to_owned()),
    })
    .expect("server");
    let (status, outcome) = get(&format!("{}Patient", server.base_url())).await;
    assert_eq!(status, 401);
    assert_eq!(outcome["issue"][0]["code"], "login");
    server
        .create(&json!({"resourceType": "Patient"}))
        .await
        .expect("the harness sends the token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_records_every_traceparent_it_receives() {
    let server = FhirServer::start_with(Options {
        bearer: Some("t0k".to_owned()),
    })
    .expect("server");
    let base = server.base_url();
    let client = reqwest::Client::new();
    let sent = [
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
    ];
    for traceparent in sent {
        let response = client
            .get(format!("{base}Patient"))
            .bearer_auth("t0k")
            .header("traceparent", traceparent)
            .send()
            .await
            .expect("get");
        assert_eq!(response.status(), 200);
    }
    // A request without one (the harness's own seeding) adds nothing; one refused
    // for its token is still recorded, as the EHR did receive it.
    server
        .create(&json!({"resourceType": "Patient"}))
        .await
        .expect("create");
    let refused = client
        .get(format!("{base}metadata"))
        .header("traceparent", sent[0])
        .send()
        .await
        .expect("get");
    assert_eq!(refused.status(), 401);
    assert_eq!(
        server.received_traceparents().await.expect("traceparents"),
        [sent[0], sent[1], sent[0]]
    );
}
