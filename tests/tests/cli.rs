//! The `tessera` command line: `config check`, `config schema`, and `serve`
//! refusing a bad config before it listens.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::process::Command;

use tessera_e2e::{tessera_bin, workspace_root};

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(tessera_bin()).args(args).output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn config_check_accepts_the_quickstart_config() {
    let path = workspace_root().join("examples/quickstart/tessera.yaml");
    let (code, stdout, _) = run(&["config", "check", path.to_str().unwrap()]);
    assert_eq!(code, Some(0));
    assert!(stdout.trim_end().ends_with("tessera.yaml: ok"), "{stdout}");
}

#[test]
fn config_check_names_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "server:\n  listen: 127.0.0.1:0\n  grace: 5s\n").unwrap();
    let (code, _, stderr) = run(&["config", "check", path.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    let expected = format!(
        "{}:3:3: server.grace: unknown field `grace`",
        path.display()
    );
    assert!(stderr.starts_with(&expected), "{stderr}");
}

#[test]
fn config_check_reports_a_missing_file() {
    let (code, _, stderr) = run(&["config", "check", "/nonexistent/tessera.yaml"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("/nonexistent/tessera.yaml: cannot read"),
        "{stderr}"
    );
}

#[test]
fn config_schema_is_json_schema_for_the_config() {
    let (code, stdout, _) = run(&["config", "schema"]);
    assert_eq!(code, Some(0));
    let schema: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(schema["required"][0], "server");
    assert_eq!(schema["additionalProperties"], false);
}

#[test]
fn serve_refuses_an_invalid_config_without_listening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "server:\n  listen: nowhere\n").unwrap();
    let (code, stdout, stderr) = run(&["serve", "--config", path.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(!stdout.contains("listening"), "{stdout}");
    assert!(
        stderr.contains(":2:11: server.listen: invalid socket address syntax"),
        "{stderr}"
    );
}

#[test]
fn serve_reports_an_address_in_use() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let path = workspace_root().join("examples/quickstart/tessera.yaml");
    let (code, _, stderr) = run(&[
        "serve",
        "--config",
        path.to_str().unwrap(),
        "--listen",
        &addr,
    ]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
}
