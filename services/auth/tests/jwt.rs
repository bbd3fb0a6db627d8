//! Bearer tokens against a real JWKS issuer on 127.0.0.1:0.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{AUDIENCE, ISSUER, SigningKey, claims, now, setup};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use tessera_auth::AuthError;
use tessera_auth::caller::AuthMethod;
use tessera_auth::jwt::JwtConfig;

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

#[tokio::test]
async fn a_remembered_token_stops_working_when_its_key_leaves_the_set() {
    let (k1, issuer, verifier) = setup().await;
    let token = k1.sign(&claims());
    assert!(verifier.verify(&token).await.is_ok());
    // Remembered: the same token again costs no fetch and no signature check.
    assert!(verifier.verify(&token).await.is_ok());
    assert_eq!(issuer.hits(), 1);

    let k2 = SigningKey::new("k2");
    issuer.serve(&[&k2]);
    verifier.refresh().await.unwrap();
    assert!(matches!(
        verifier.verify(&token).await,
        Err(AuthError::TokenKeyUnknown)
    ));
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

#[tokio::test]
async fn the_refetch_interval_is_configurable() {
    let k1 = SigningKey::new("k1");
    let issuer = common::Issuer::start(&[&k1]).await;
    let mut config = JwtConfig::new(ISSUER, vec![AUDIENCE.into()], issuer.url.clone());
    config.algorithms = vec!["ES256".into()];
    config.jwks_refetch_interval = std::time::Duration::ZERO;
    let verifier = tessera_auth::jwt::JwtVerifier::new(config).unwrap();
    for (i, kid) in ["j1", "j2", "j3"].into_iter().enumerate() {
        let junk = SigningKey::new(kid);
        assert!(matches!(
            verifier.verify(&junk.sign(&claims())).await,
            Err(AuthError::TokenKeyUnknown)
        ));
        assert_eq!(
            issuer.hits(),
            i + 1,
            "no interval: every unknown kid refetches"
        );
    }
    assert!(verifier.verify(&k1.sign(&claims())).await.is_ok());
    assert_eq!(issuer.hits(), 3);
}
