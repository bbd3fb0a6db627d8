//! A JWKS issuer on 127.0.0.1:0 and ES256 keys for the tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use tessera_auth::jwt::{JwtConfig, JwtVerifier};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub const ISSUER: &str = "https://issuer.tessera.test";
pub const AUDIENCE: &str = "tessera";

/// A JWKS endpoint that counts its hits; the served set can be replaced (rotation).
pub struct Issuer {
    pub url: String,
    jwks: Arc<Mutex<String>>,
    hits: Arc<AtomicUsize>,
}

impl Issuer {
    pub async fn start(keys: &[&SigningKey]) -> Self {
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

    pub fn serve(&self, keys: &[&SigningKey]) {
        let set = JwkSet {
            keys: keys.iter().map(|k| k.jwk.clone()).collect(),
        };
        *self.jwks.lock().unwrap() = serde_json::to_string(&set).unwrap();
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// An ES256 key made for the test, with its public JWK.
pub struct SigningKey {
    pub kid: String,
    pub key: EncodingKey,
    pub public_der: Vec<u8>,
    pub jwk: Jwk,
}

impl SigningKey {
    pub fn new(kid: &str) -> Self {
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

    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }
}

pub fn now() -> i64 {
    i64::try_from(jsonwebtoken::get_current_timestamp()).unwrap()
}

pub fn claims() -> serde_json::Value {
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

pub fn verifier(issuer: &Issuer) -> JwtVerifier {
    let mut config = JwtConfig::new(ISSUER, vec![AUDIENCE.into()], issuer.url.clone());
    config.algorithms = vec!["ES256".into()];
    config.end_user_claim = Some("act_for".into());
    JwtVerifier::new(config).unwrap()
}

pub async fn setup() -> (SigningKey, Issuer, JwtVerifier) {
    let key = SigningKey::new("k1");
    let issuer = Issuer::start(&[&key]).await;
    let verifier = verifier(&issuer);
    verifier.refresh().await.unwrap();
    (key, issuer, verifier)
}
