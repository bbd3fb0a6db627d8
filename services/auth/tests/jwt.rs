//! Bearer tokens against a real JWKS issuer on 127.0.0.1:0.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use tessera_auth::AuthError;
use tessera_auth::caller::AuthMethod;
use tessera_auth::jwt::{JwtConfig, JwtVerifier};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const ISSUER: &str = "https://issuer.tessera.test";
const AUDIENCE: &str = "tessera";

/// A JWKS endpoint that counts its hits; the served set can be replaced (rotation).
struct Issuer {
    url: String,
    jwks: Arc<Mutex<String>>,
    hits: Arc<AtomicUsize>,
}

impl Issuer {
    async fn start(keys: &[&SigningKey]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        let jwks = Arc::new(Mutex::new(String::new()));
        let hits = Arc::new(AtomicUsize::new(0));
        let issuer = Self {
            url,
            jwks: jwks.clone(),
            hits: hits.clone(),
        };
        issuer.serve(keys);
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                let jwks = jwks.clone();
                let hits = hits.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 2048];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        let n = stream.read(&mut buf).await.unwrap();
                        if n == 0 {
                            return;
                        }
                        request.extend_from_slice(&buf[..n]);
                    }
                    hits.fetch_add(1, Ordering::SeqCst);
                    let body = jwks.lock().unwrap().clone();
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    stream.write_all(response.as_bytes()).await.unwrap();
                    let _ = stream.shutdown().await;
                });
            }
        });
        issuer
    }

    fn serve(&self, keys: &[&SigningKey]) {
        let set = JwkSet {
            keys: keys.iter().map(|k| k.jwk.clone()).collect(),
        };
        *self.jwks.lock().unwrap() = serde_json::to_string(&set).unwrap();
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// An ES256 key made for the test, with its public JWK.
struct SigningKey {
    kid: String,
    key: EncodingKey,
    public_der: Vec<u8>,
    jwk: Jwk,
}

impl SigningKey {
    fn new(kid: &str) -> Self {
        let pair = rcgen::KeyPair::generate().unwrap();
        let key = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
        jwk.common.key_id = Some(kid.into());
        Self {
            kid: kid.into(),
            key,
            public_der: pair.public_key_pem().into_bytes(),
            jwk,
        }
    }

    fn sign(&self, claims: &serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }
}

fn now() -> i64 {
    i64::try_from(jsonwebtoken::get_current_timestamp()).unwrap()
}

fn claims() -> serde_json::Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "svc-ehr-ui",
        "client_id": "ehr-ui",
        "act_for": "dr-who",
        "iat": now(),
        "exp": now() + 300,
    })
}

fn verifier(issuer: &Issuer) -> JwtVerifier {
    let mut config = JwtConfig::new(ISSUER, vec![AUDIENCE.into()], issuer.url.clone());
    config.algorithms = vec!["ES256".into()];
    config.end_user_claim = Some("act_for".into());
    JwtVerifier::new(config).unwrap()
}

async fn setup() -> (SigningKey, Issuer, JwtVerifier) {
    let key = SigningKey::new("k1");
    let issuer = Issuer::start(&[&key]).await;
    let verifier = verifier(&issuer);
    verifier.refresh().await.unwrap();
    (key, issuer, verifier)
}

#[tokio::test]
async fn a_valid_token_names_the_caller_and_the_end_user() {
    let (key, issuer, verifier) = setup().await;
    let (method, end_user) = verifier.verify(&key.sign(&claims())).await.unwrap();
    assert_eq!(
        method,
        AuthMethod::Jwt {
            issuer: ISSUER.into(),
            subject: Some("svc-ehr-ui".into()),
            client_id: Some("ehr-ui".into()),
        }
    );
    assert_eq!(end_user.as_deref(), Some("dr-who"));
    assert_eq!(issuer.hits(), 1, "the cached key set serves the token");
}

#[tokio::test]
async fn expired_future_foreign_and_misaddressed_tokens_are_refused() {
    let (key, _issuer, verifier) = setup().await;
    let with = |field: &str, value: serde_json::Value| {
        let mut c = claims();
        c[field] = value;
        key.sign(&c)
    };
    let cases = [
        // Past the 30 s leeway.
        (with("exp", json!(now() - 120)), AuthError::TokenExpired),
        (with("nbf", json!(now() + 600)), AuthError::TokenNotYetValid),
        (
            with("aud", json!("someone-else")),
            AuthError::TokenAudienceMismatch,
        ),
        (
            with("iss", json!("https://evil.test")),
            AuthError::TokenIssuerMismatch,
        ),
    ];
    for (token, expected) in cases {
        let err = verifier.verify(&token).await.unwrap_err();
        assert_eq!(err.to_string(), expected.to_string());
    }
    // Within the leeway an expired-by-10-seconds token still passes.
    assert!(
        verifier
            .verify(&with("exp", json!(now() - 10)))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn alg_none_and_hs256_confusion_are_refused() {
    let (key, _issuer, verifier) = setup().await;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT","kid":"k1"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims().to_string());
    let none = format!("{header}.{payload}.");
    assert!(matches!(
        verifier.verify(&none).await,
        Err(AuthError::TokenInvalid)
    ));

    // HS256 "signed" with the public key, hoping it is used as an HMAC secret.
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("k1".into());
    let forged =
        jsonwebtoken::encode(&hs, &claims(), &EncodingKey::from_secret(&key.public_der)).unwrap();
    assert!(matches!(
        verifier.verify(&forged).await,
        Err(AuthError::TokenAlgorithmNotAllowed)
    ));

    let mut config = JwtConfig::new(ISSUER, vec![AUDIENCE.into()], "https://issuer.test/jwks");
    config.algorithms = vec!["ES256".into(), "HS256".into()];
    assert_eq!(
        config.validate().unwrap_err().to_string(),
        "invalid auth config: jwt.algorithms[1] HS* algorithms cannot be used with a JWKS"
    );
    config.algorithms = vec!["none".into()];
    assert!(config.validate().is_err());
}

#[tokio::test]
async fn a_rotated_key_is_fetched_once_and_junk_kids_do_not_hammer_the_issuer() {
    let (k1, issuer, verifier) = setup().await;
    assert!(verifier.verify(&k1.sign(&claims())).await.is_ok());
    assert_eq!(issuer.hits(), 1);

    let k2 = SigningKey::new("k2");
    issuer.serve(&[&k1, &k2]);
    let (method, _) = verifier.verify(&k2.sign(&claims())).await.unwrap();
    assert!(matches!(method, AuthMethod::Jwt { .. }));
    assert_eq!(issuer.hits(), 2, "one refetch for the unknown kid");

    let junk = SigningKey::new("k3");
    assert!(matches!(
        verifier.verify(&junk.sign(&claims())).await,
        Err(AuthError::TokenKeyUnknown)
    ));
    assert_eq!(issuer.hits(), 2, "no second fetch within the interval");
    // Known keys keep working.
    assert!(verifier.verify(&k2.sign(&claims())).await.is_ok());
    assert_eq!(issuer.hits(), 2);
}

#[test]
fn config_defaults_and_limits() {
    let config: JwtConfig = serde_yaml_ng::from_str(
        "issuer: https://i\naudiences: [tessera]\njwks_url: https://i/jwks\n",
    )
    .unwrap();
    assert_eq!(config.leeway.as_secs(), 30);
    assert_eq!(config.jwks_refetch_interval.as_secs(), 30);
    assert_eq!(config.caller_claims, ["client_id", "azp", "sub"]);
    config.validate().unwrap();
    let mut long = config.clone();
    long.leeway = std::time::Duration::from_secs(301);
    assert_eq!(
        long.validate().unwrap_err().to_string(),
        "invalid auth config: jwt.leeway must be at most 5m"
    );
    let mut plain = config;
    plain.jwks_url = "http://issuer.example/jwks".into();
    assert!(plain.validate().is_err());
}
