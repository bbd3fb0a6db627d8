//! Secrets: hidden when printed, references resolved only on request, errors that
//! name the reference and not the value.

use std::path::Path;

use crate::{Secret, SecretError};

#[test]
fn secrets_print_as_stars() {
    let secret: Secret = serde_json::from_str(r#""s3cr3t-token""#).expect("a string");
    assert_eq!(format!("{secret:?}"), "***");
    assert_eq!(secret.to_string(), "***");
    assert_eq!(format!("{:?}", Some(&secret)), "Some(***)");
    assert_eq!(secret.expose(), "s3cr3t-token");
    assert!(!secret.is_reference());
    assert_eq!(
        secret.resolve().expect("a plain value").expose(),
        "s3cr3t-token"
    );
}

#[test]
fn references_deserialize_without_io_in_both_spellings() {
    for (json, text) in [
        (r#""env:TESSERA_TOKEN""#, "env:TESSERA_TOKEN"),
        (r#"{"env": "TESSERA_TOKEN"}"#, "env:TESSERA_TOKEN"),
        (r#""file:secrets/token""#, "file:secrets/token"),
        (r#"{"file": "secrets/token"}"#, "file:secrets/token"),
    ] {
        let secret: Secret = serde_json::from_str(json).expect(json);
        assert!(secret.is_reference(), "{json}");
        assert_eq!(secret.expose(), text);
    }
    assert!(serde_json::from_str::<Secret>(r#"{"vault": "x"}"#).is_err());
    assert!(serde_json::from_str::<Secret>("42").is_err());
}

#[test]
fn file_references_trim_one_trailing_newline() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("token"), "abc def\r\n").expect("write");
    std::fs::write(dir.path().join("plain"), "xyz").expect("write");
    let secret = Secret::new("file:token");
    assert_eq!(
        secret.resolve_in(dir.path()).expect("read").expose(),
        "abc def"
    );
    let absolute = Secret::new(format!("file:{}", dir.path().join("plain").display()));
    assert_eq!(absolute.resolve().expect("read").expose(), "xyz");
}

#[test]
fn resolve_errors_name_the_reference_not_the_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("empty"), "\n").expect("write");

    let err = Secret::new("env:TESSERA_TYPES_TEST_SURELY_UNSET")
        .resolve()
        .expect_err("unset");
    assert!(matches!(err, SecretError::EnvNotSet { .. }));
    assert_eq!(
        err.to_string(),
        "environment variable TESSERA_TYPES_TEST_SURELY_UNSET is not set"
    );

    let err = Secret::new("file:missing")
        .resolve_in(dir.path())
        .expect_err("missing");
    let path = dir.path().join("missing");
    assert_eq!(
        err.to_string(),
        format!(
            "cannot read secret file {}: entity not found",
            path.display()
        )
    );

    let err = Secret::new("file:empty")
        .resolve_in(dir.path())
        .expect_err("empty");
    assert_eq!(
        err.to_string(),
        format!(
            "the secret from file {} is empty",
            dir.path().join("empty").display()
        )
    );
}

#[test]
fn env_references_read_the_variable() {
    // PATH is set in every environment the tests run in; no set_var needed.
    let want = std::env::var("PATH").expect("PATH is set");
    let got = Secret::new("env:PATH")
        .resolve_in(Path::new("/"))
        .expect("set");
    assert_eq!(got.expose(), want);
}

#[test]
fn schema_accepts_a_string_or_the_older_reference_objects() {
    let schema = serde_json::to_value(schemars::schema_for!(Secret)).expect("schema");
    let any_of = schema["anyOf"].as_array().expect("anyOf");
    assert_eq!(any_of.len(), 3, "{schema}");
    assert_eq!(any_of[0]["type"], "string");
    assert!(any_of[1]["properties"].get("env").is_some());
    assert!(any_of[2]["properties"].get("file").is_some());
}
