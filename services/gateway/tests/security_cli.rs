//! The security commands as a user runs them: `config check` refusing plaintext
//! on a public address, `dev-certs`, and `audit verify` / `audit export`.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use tessera_audit::{AuditRecord, AuditSink, AuthMethod, JsonlSink};

fn tessera(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn config_check_refuses_plaintext_on_a_non_loopback_address() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tessera.yaml");
    std::fs::write(&path, "server:\n  listen: 0.0.0.0:0\n").unwrap();
    let output = tessera(&["config", "check", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stderr).trim(),
        format!(
            "{}: server.listen: refusing a plaintext listener on non-loopback address \
             0.0.0.0:0: configure tls, or allow insecure explicitly",
            path.display()
        )
    );

    std::fs::write(
        &path,
        "server:\n  listen: 0.0.0.0:0\n  insecure: true\naudit:\n  file: audit.jsonl\n",
    )
    .unwrap();
    let output = tessera(&["config", "check", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
}

#[test]
fn serve_refuses_plaintext_on_a_non_loopback_address() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tessera.yaml");
    std::fs::write(&path, "server:\n  listen: 127.0.0.1:0\n").unwrap();
    let output = tessera(&[
        "serve",
        "--config",
        path.to_str().unwrap(),
        "--listen",
        "0.0.0.0:0",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("refusing a plaintext listener on non-loopback address"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn dev_certs_writes_the_files_with_private_keys() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("certs");
    let output = tessera(&["dev-certs", "--out", out.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(!stdout.contains("PRIVATE KEY"), "{stdout}");
    for stem in ["ca", "server", "reader", "steward", "marketing"] {
        let cert = out.join(format!("{stem}.pem"));
        let key = out.join(format!("{stem}.key"));
        assert!(cert.is_file(), "{}", cert.display());
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", key.display());
        if stem != "ca" {
            assert!(stdout.contains(&*cert.to_string_lossy()), "{stdout}");
        }
    }
    // A second run does not overwrite without --force.
    let again = tessera(&["dev-certs", "--out", out.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains("refusing to overwrite"));
    let forced = tessera(&["dev-certs", "--out", out.to_str().unwrap(), "--force"]);
    assert!(forced.status.success());
}

/// Writes a three-record trail.
fn write_trail(path: &Path) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let sink = JsonlSink::open(path).unwrap();
        for rpc in ["GetPatientView", "GetMaster", "MergeMasters"] {
            let mut record = AuditRecord::now("reader", AuthMethod::Mtls, rpc, "TREAT");
            record.masters = vec!["masters/7".to_owned()];
            sink.append(record).await.unwrap();
        }
    });
}

#[test]
fn audit_verify_passes_a_good_trail_and_names_the_line_after_a_one_byte_edit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_trail(&path);
    let file = path.to_str().unwrap();

    let good = tessera(&["audit", "verify", file]);
    assert_eq!(good.status.code(), Some(0), "{}", text(&good.stderr));
    let summary = text(&good.stdout);
    assert_eq!(summary.lines().count(), 1, "{summary}");
    assert!(summary.contains("ok, 3 records"), "{summary}");

    let export = tessera(&["audit", "export", file, "--format", "fhir-ndjson"]);
    assert!(export.status.success(), "{}", text(&export.stderr));
    let events = text(&export.stdout);
    assert_eq!(events.lines().count(), 3);
    assert!(
        events
            .lines()
            .all(|l| l.contains("\"resourceType\":\"AuditEvent\""))
    );
    let bundle = tessera(&["audit", "export", file, "--format", "fhir"]);
    let bundle: serde_json::Value = serde_json::from_slice(&bundle.stdout).unwrap();
    assert_eq!(bundle["resourceType"], "Bundle");

    // One byte of the second record: GetMaster -> GetMastes.
    let contents = std::fs::read_to_string(&path).unwrap();
    let edited = contents.replacen("\"GetMaster\"", "\"GetMastes\"", 1);
    assert_ne!(edited, contents);
    std::fs::write(&path, edited).unwrap();
    let broken = tessera(&["audit", "verify", file]);
    assert_eq!(broken.status.code(), Some(1));
    let message = text(&broken.stderr);
    assert!(message.contains("line 2 (sequence 2)"), "{message}");
    let refused = tessera(&["audit", "export", file]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(refused.stdout.is_empty());
}

#[tokio::test]
async fn audit_verify_checks_a_postgresql_trail_with_the_url_from_the_environment() {
    let url = tessera_test_postgres::TestPostgres::shared()
        .and_then(tessera_test_postgres::TestPostgres::create_database)
        .unwrap();
    let sink = tessera_audit::PostgresSink::connect(&url).await.unwrap();
    for _ in 0..2 {
        let record = AuditRecord::now(
            "reader",
            AuthMethod::Mtls,
            "/tessera.v1.IdentityService/GetMaster",
            "TREAT",
        );
        sink.append(record).await.unwrap();
    }
    let output = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["audit", "verify", "--postgres", "env:TESSERA_AUDIT_URL"])
        .env("TESSERA_AUDIT_URL", &url)
        .output()
        .unwrap();
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(
        stdout.starts_with("tessera_audit: ok, 2 records"),
        "{stdout}"
    );
    assert!(!stdout.contains(&url) && !text(&output.stderr).contains(&url));
}
