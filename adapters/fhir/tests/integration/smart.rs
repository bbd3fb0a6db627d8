//! Auth end to end: SMART Backend Services against a token endpoint in the test
//! that verifies the client assertion's signature and claims, then the real server
//! requiring the issued token; and a static bearer token.
//!
//! `tests/keys/` holds throwaway key pairs made for these tests only.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tessera_adapter_core::FetchError;
use tessera_adapter_fhir::{AuthConfig, Secret, SigningAlgorithm};
use tessera_test_fhir_server::{FhirServer, Options};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::logs;
use crate::medplum::{build, fetch, records};
use crate::seed::seed;

const TOKEN: &str = "issued-access-token-1f3a";
const CLIENT_ID: &str = "tessera-backend";
const SCOPE: &str = "system/Patient.rs system/Observation.rs";

#[derive(Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    exp: u64,
    jti: String,
}

/// A token endpoint that checks the assertion as an EHR's would.
struct TokenEndpoint {
    key: DecodingKey,
    algorithm: Algorithm,
    audience: String,
    expires_in: u64,
    issued: Arc<AtomicU64>,
    seen_jti: Mutex<HashSet<String>>,
}

impl TokenEndpoint {
    fn check(&self, request: &Request) -> Result<(), String> {
        let form: HashMap<String, String> = url::form_urlencoded::parse(&request.body)
            .into_owned()
            .collect();
        let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
        if field("grant_type") != "client_credentials" {
            return Err("grant_type".into());
        }
        if field("client_assertion_type")
            != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        {
            return Err("client_assertion_type".into());
        }
        if field("scope") != SCOPE {
            return Err("scope".into());
        }
        let mut validation = Validation::new(self.algorithm);
        validation.set_audience(&[&self.audience]);
        validation.set_issuer(&[CLIENT_ID]);
        validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        let assertion = field("client_assertion");
        let header = jsonwebtoken::decode_header(assertion).map_err(|e| format!("header: {e}"))?;
        if header.kid.as_deref() != Some("test-key-1") || header.typ.as_deref() != Some("JWT") {
            return Err("kid or typ".into());
        }
        let claims = jsonwebtoken::decode::<Claims>(assertion, &self.key, &validation)
            .map_err(|e| format!("signature or claims: {e}"))?
            .claims;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        if claims.sub != CLIENT_ID
            || claims.iss != CLIENT_ID
            || claims.exp > now + 300
            || claims.jti.is_empty()
        {
            return Err("claims".into());
        }
        if !self
            .seen_jti
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(claims.jti)
        {
            return Err("replayed jti".into());
        }
        Ok(())
    }
}

impl Respond for TokenEndpoint {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        match self.check(request) {
            Ok(()) => {
                self.issued.fetch_add(1, Ordering::SeqCst);
                ResponseTemplate::new(200).set_body_json(serde_json::json!({
                    "access_token": TOKEN, "token_type": "bearer", "expires_in": self.expires_in, "scope": SCOPE}))
            }
            Err(why) => ResponseTemplate::new(401).set_body_json(
                serde_json::json!({"error": "invalid_client", "error_description": why}),
            ),
        }
    }
}

fn keys() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/keys")
}

async fn token_endpoint(
    algorithm: Algorithm,
    public_key: &str,
    expires_in: u64,
) -> (MockServer, Arc<AtomicU64>, String) {
    let server = MockServer::start().await;
    let url = format!("{}/oauth/token", server.uri());
    let pem = std::fs::read(keys().join(public_key)).expect("public key");
    let key = match algorithm {
        Algorithm::RS384 => DecodingKey::from_rsa_pem(&pem),
        _ => DecodingKey::from_ec_pem(&pem),
    }
    .expect("key");
    let issued = Arc::new(AtomicU64::new(0));
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(TokenEndpoint {
            key,
            algorithm,
            audience: url.clone(),
            expires_in,
            issued: issued.clone(),
            seen_jti: Mutex::default(),
        })
        .mount(&server)
        .await;
    (server, issued, url)
}

fn smart(token_url: &str, algorithm: SigningAlgorithm, private_key: &str) -> AuthConfig {
    AuthConfig::SmartBackend {
        token_url: token_url.to_owned(),
        client_id: CLIENT_ID.to_owned(),
        private_key_file: PathBuf::from("keys").join(private_key),
        algorithm,
        key_id: Some("test-key-1".to_owned()),
        scope: SCOPE.to_owned(),
        refresh_before: Duration::from_secs(1),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smart_backend_services_rs384_and_es384_end_to_end() {
    logs::init();
    let server = FhirServer::start_with(Options {
        bearer: Some(TOKEN.to_owned()),
    })
    .expect("server");
    let seeded = seed(&server).await;
    let id = &seeded.patient_ids[0];
    for (algorithm, jwt_alg, private, public) in [
        (
            SigningAlgorithm::Rs384,
            Algorithm::RS384,
            "rs384-private.pem",
            "rs384-public.pem",
        ),
        (
            SigningAlgorithm::Es384,
            Algorithm::ES384,
            "es384-private.pem",
            "es384-public.pem",
        ),
    ] {
        let (_endpoint, issued, token_url) = token_endpoint(jwt_alg, public, 3600).await;
        let adapter = build(&server.base_url(), |c| {
            c.auth = smart(&token_url, algorithm, private)
        });
        for _ in 0..3 {
            let results = fetch(
                &*adapter,
                id,
                &["demographics", "conditions"],
                Duration::from_secs(10),
            )
            .await;
            assert_eq!(records(&results, "conditions").len(), 1, "{algorithm:?}");
        }
        assert_eq!(
            issued.load(Ordering::SeqCst),
            1,
            "{algorithm:?}: the token is cached"
        );
    }
    // An assertion signed with the wrong key is refused: the adapter is denied.
    let (_endpoint, issued, token_url) =
        token_endpoint(Algorithm::ES384, "es384-public.pem", 3600).await;
    let other_key = build(&server.base_url(), |c| {
        c.auth = smart(&token_url, SigningAlgorithm::Rs384, "rs384-private.pem")
    });
    let results = fetch(&*other_key, id, &["conditions"], Duration::from_secs(10)).await;
    assert!(
        matches!(results[0].records, Err(FetchError::Denied { .. })),
        "{:?}",
        results[0].records
    );
    assert_eq!(issued.load(Ordering::SeqCst), 0);
    logs::assert_no_patient_data();
    assert!(
        !logs::text().contains(TOKEN),
        "the access token is never logged"
    );
}

/// The token cache runs on tokio's clock, so the test drives it: a current-thread
/// runtime, paused only around `advance` (the fetches themselves need real time,
/// for the FHIR server's and the token endpoint's sockets).
#[tokio::test(flavor = "current_thread")]
async fn a_smart_token_is_refreshed_before_it_expires() {
    logs::init();
    let server = FhirServer::start_with(Options {
        bearer: Some(TOKEN.to_owned()),
    })
    .expect("server");
    let seeded = seed(&server).await;
    // One-hour tokens, refreshed a second (`refresh_before`) before they expire.
    let (_endpoint, issued, token_url) =
        token_endpoint(Algorithm::RS384, "rs384-public.pem", 3600).await;
    let adapter = build(&server.base_url(), |c| {
        c.auth = smart(&token_url, SigningAlgorithm::Rs384, "rs384-private.pem")
    });
    let id = &seeded.patient_ids[0];
    fetch(&*adapter, id, &["demographics"], Duration::from_secs(10)).await;
    fetch(&*adapter, id, &["demographics"], Duration::from_secs(10)).await;
    assert_eq!(issued.load(Ordering::SeqCst), 1);

    // Fifty minutes on, the cached token is still used.
    advance(Duration::from_secs(50 * 60)).await;
    let results = fetch(&*adapter, id, &["demographics"], Duration::from_secs(10)).await;
    assert_eq!(records(&results, "demographics").len(), 1);
    assert_eq!(
        issued.load(Ordering::SeqCst),
        1,
        "the token is still cached"
    );

    // Ten minutes later it is within a second of expiring: a new one is fetched.
    advance(Duration::from_secs(10 * 60)).await;
    let results = fetch(&*adapter, id, &["demographics"], Duration::from_secs(10)).await;
    assert_eq!(records(&results, "demographics").len(), 1);
    assert_eq!(issued.load(Ordering::SeqCst), 2, "the token is refreshed");
}

/// Moves tokio's clock forward by `by` at once, then lets it run in real time again.
async fn advance(by: Duration) {
    tokio::time::pause();
    tokio::time::advance(by).await;
    tokio::time::resume();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_bearer_token_is_sent_and_a_wrong_one_denied() {
    logs::init();
    let server = FhirServer::start_with(Options {
        bearer: Some(TOKEN.to_owned()),
    })
    .expect("server");
    let seeded = seed(&server).await;
    let id = &seeded.patient_ids[0];
    let good = build(&server.base_url(), |c| {
        c.auth = AuthConfig::Bearer {
            token: Secret::new(TOKEN),
        }
    });
    let results = fetch(&*good, id, &["demographics"], Duration::from_secs(10)).await;
    assert_eq!(records(&results, "demographics").len(), 1);
    let wrong = build(&server.base_url(), |c| {
        c.auth = AuthConfig::Bearer {
            token: Secret::new("not-the-token"),
        }
    });
    let results = fetch(&*wrong, id, &["demographics"], Duration::from_secs(10)).await;
    assert_eq!(
        results[0].records.as_ref().map(Vec::len).map_err(ToString::to_string),
        Err("source denied access: upstream refused the adapter's credentials (HTTP 401, issue login)".to_owned())
    );
    let none = build(&server.base_url(), |_| {});
    let results = fetch(&*none, id, &["demographics"], Duration::from_secs(10)).await;
    assert!(matches!(results[0].records, Err(FetchError::Denied { .. })));
    logs::assert_no_patient_data();
}
