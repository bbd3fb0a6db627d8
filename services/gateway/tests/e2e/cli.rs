//! The `tessera` command line: `config check`, `config schema`, and `serve`
//! refusing a bad config before it listens.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::process::Command;

use tessera_e2e::workspace_root;

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(crate::tessera_bin())
        .args(args)
        .output()
        .unwrap();
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

fn read_csv(path: &std::path::Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect()
}

#[test]
fn synth_then_link_batch_assigns_every_row_and_loads_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let (code, stdout, stderr) = run(&[
        "synth",
        "--people",
        "300",
        "--seed",
        "5",
        "--out",
        &path("records.csv"),
        "--truth",
        &path("truth.csv"),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let stats: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(stats["people"], 300);
    let records = read_csv(dir.path().join("records.csv").as_path());
    assert_eq!(
        records[0].join(","),
        "source,local_id,given_name,family_name,birth_date,sex,address_line,city,state,postal_code,phone,email,ssn"
    );

    let store = format!("sqlite://{}", path("identity.db"));
    let (code, stdout, stderr) = run(&[
        "resolver",
        "link-batch",
        "--input",
        &path("records.csv"),
        "--output",
        &path("assignments.csv"),
        "--store",
        &store,
        "--review-output",
        &path("review.csv"),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let assignments = read_csv(dir.path().join("assignments.csv").as_path());
    assert_eq!(assignments[0].join(","), "source,local_id,master_id");
    assert_eq!(
        assignments.len(),
        records.len(),
        "one assignment per input row"
    );
    for (record, assignment) in records.iter().zip(&assignments).skip(1) {
        assert_eq!(record[..2], assignment[..2]);
        assert!(assignment[2].parse::<u64>().unwrap() > 0);
    }
    let masters: std::collections::HashSet<_> =
        assignments.iter().skip(1).map(|a| a[2].clone()).collect();
    assert_eq!(summary["masters"], masters.len());
    assert!(masters.len() < records.len() - 1, "nothing was linked");
    let review = read_csv(dir.path().join("review.csv").as_path());
    assert_eq!(
        review[0].join(","),
        "source,local_id,master_id,candidate_master_id,score"
    );
    assert_eq!(summary["review_rows"], review.len() - 1);

    // A second load of the same records is refused: the store already holds them.
    let (code, _, stderr) = run(&[
        "resolver",
        "link-batch",
        "--input",
        &path("records.csv"),
        "--output",
        &path("again.csv"),
        "--store",
        &store,
    ]);
    assert_eq!(code, Some(1));
    assert!(!stderr.is_empty());
}

#[test]
fn link_batch_leaves_out_a_row_over_the_limits_and_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let many = "Ann Bea Cat Dee Eve Fay Gil Hal Ivy Jo Kit Lu";
    std::fs::write(
        path("records.csv"),
        format!(
            "source,local_id,given_name,family_name,birth_date\n\
             crm,C-1,Ann,Okonkwo,1984-06-12\n\
             crm,C-2,{many},Okonkwo,1984-06-12\n\
             ehr,E-1,Ann,Okonkwo,1984-06-12\n"
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = run(&[
        "resolver",
        "link-batch",
        "--input",
        &path("records.csv"),
        "--output",
        &path("assignments.csv"),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("line 3: given_names holds at most 8 values; row left out"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("Okonkwo") && !stderr.contains("Kit"),
        "{stderr}"
    );
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(
        (
            summary["records"].as_u64(),
            summary["rows_left_out"].as_u64()
        ),
        (Some(2), Some(1))
    );
    let assignments = read_csv(dir.path().join("assignments.csv").as_path());
    let ids: Vec<&str> = assignments.iter().skip(1).map(|a| a[1].as_str()).collect();
    assert_eq!(ids, ["C-1", "E-1"]);
}

#[test]
fn train_writes_a_model_that_link_batch_and_explain_use() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let (code, _, stderr) = run(&[
        "synth",
        "--people",
        "400",
        "--seed",
        "9",
        "--out",
        &path("records.csv"),
        "--truth",
        &path("truth.csv"),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let (code, _, stderr) = run(&[
        "resolver",
        "train",
        "--input",
        &path("records.csv"),
        "--model-out",
        &path("model.json"),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let model: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path("model.json")).unwrap()).unwrap();
    assert!(
        model["version"].is_u64() || model["version"].is_string(),
        "model has no version: {model}"
    );
    let (code, _, stderr) = run(&[
        "resolver",
        "link-batch",
        "--input",
        &path("records.csv"),
        "--output",
        &path("a.csv"),
        "--model",
        &path("model.json"),
    ]);
    assert_eq!(code, Some(0), "{stderr}");

    // Explain two records of one person from the truth file.
    let truth = read_csv(dir.path().join("truth.csv").as_path());
    let mut by_person: std::collections::HashMap<&str, Vec<&Vec<String>>> =
        std::collections::HashMap::new();
    for row in truth.iter().skip(1) {
        by_person.entry(row[2].as_str()).or_default().push(row);
    }
    let pair = by_person.values().find(|rows| rows.len() >= 2).unwrap();
    let a = format!("{}/{}", pair[0][0], pair[0][1]);
    let b = format!("{}/{}", pair[1][0], pair[1][1]);
    let (code, stdout, stderr) = run(&[
        "resolver",
        "explain",
        "--input",
        &path("records.csv"),
        &a,
        &b,
        "--model",
        &path("model.json"),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.starts_with("field"), "{stdout}");
    assert!(stdout.contains("\ntotal "), "{stdout}");
    assert!(stdout.contains("decision: "), "{stdout}");
    let (code, _, stderr) = run(&[
        "resolver",
        "explain",
        "--input",
        &path("records.csv"),
        &a,
        "ehr/nope",
    ]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("ehr/nope is not in"), "{stderr}");
}

#[test]
fn link_batch_names_the_line_of_a_malformed_csv() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.csv");
    std::fs::write(&input, "source,local_id,given_name\nehr,1,Ann\nehr\n").unwrap();
    let output = dir.path().join("out.csv");
    let (code, _, stderr) = run(&[
        "resolver",
        "link-batch",
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("bad.csv"), "{stderr}");
    assert!(
        stderr.contains("line 3") || stderr.contains(":3"),
        "{stderr}"
    );
}

#[test]
fn resolver_load_reads_a_sources_identity_feed_into_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let silos = dir.path().join("silos");
    let (code, _, stderr) = run(&[
        "synth",
        "--people",
        "40",
        "--silos",
        silos.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let patients = std::fs::read_to_string(silos.join("ehr/Patient.ndjson"))
        .unwrap()
        .lines()
        .count() as u64;
    let config = dir.path().join("tessera.yaml");
    std::fs::write(
        &config,
        "server:\n  listen: 127.0.0.1:0\nidentity:\n  store: sqlite://identity.db\nsources:\n  - name: ehr\n    kind: fhir-ndjson\n    config: {dir: silos/ehr, system: ehr}\n",
    )
    .unwrap();
    let load = || {
        let (code, stdout, stderr) = run(&[
            "resolver",
            "load",
            "--config",
            config.to_str().unwrap(),
            "--adapter",
            "ehr",
        ]);
        assert_eq!(code, Some(0), "{stderr}");
        serde_json::from_str::<serde_json::Value>(&stdout).unwrap()
    };
    let first = load();
    assert_eq!(first["read"], patients);
    assert_eq!(first["rejected"], 0);
    assert_eq!(first["store_records"], patients);
    let masters = first["store_masters"].as_u64().unwrap();
    assert!(
        masters < patients,
        "the EHR's duplicate registrations were linked"
    );
    let again = load();
    assert_eq!(
        again["store_records"], patients,
        "a second load adds nothing"
    );
    assert_eq!(again["store_masters"], masters);

    let (code, _, stderr) = run(&[
        "resolver",
        "load",
        "--config",
        config.to_str().unwrap(),
        "--adapter",
        "billing",
    ]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("no source named \"billing\"; sources: ehr"),
        "{stderr}"
    );
}
