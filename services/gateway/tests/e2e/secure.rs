//! The real `tessera` binary behind mutual TLS with one policy per caller, called by a
//! Python grpcio client with client certificates (`tests/python/secure_client.py`), and
//! the audit trail it leaves: exactly one record per call.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use tessera_e2e::{Tessera, workspace_root};

/// mTLS with the dev certificates in `certs/`; three callers; two fake silos.
const CONFIG: &str = r#"
server:
  listen: 127.0.0.1:0
  shutdown_grace_period: 2s
  tls: {cert: certs/server.pem, key: certs/server.key, client_ca: certs/ca.pem}
logging:
  format: json
policy:
  callers:
    - {id: steward, match: {san: "spiffe://tessera.dev/steward"}, roles: [steward], purposes: [HOPERAT], sections: ["*"], systems: ["*"], national_id: true}
    - {id: reader, match: {san: "spiffe://tessera.dev/reader"}, roles: [reader], purposes: [TREAT], sections: ["*"], systems: ["*"], national_id: true}
    - {id: marketing, match: {san: "spiffe://tessera.dev/marketing"}, roles: [reader], purposes: [HMARKT], sections: ["crm.*"], systems: [crm]}
audit:
  file: data/audit.jsonl
identity:
  store: sqlite://data/identity.db
view:
  deadline_reserve: 50ms
sources:
  - name: ehr
    kind: fake
    config: {system: ehr, sections: [encounters, conditions], latency: 5ms}
  - name: crm
    kind: fake
    config: {system: crm, sections: [cases], latency: 5ms}
"#;

#[tokio::test]
async fn a_python_grpcio_client_reads_a_view_over_mutual_tls_and_each_call_is_audited() {
    let python = crate::python_client::python();
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    tessera_tls::dev_certs(&certs, false).unwrap();
    let tessera = Tessera::start_in(crate::tessera_bin(), dir, CONFIG)
        .await
        .unwrap();

    let output = tokio::process::Command::new(&python)
        .arg(workspace_root().join("tests/python/secure_client.py"))
        .arg(tessera.addr.port().to_string())
        .arg(workspace_root().join("proto"))
        .arg(&certs)
        .current_dir(workspace_root().join("tests/python"))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "Python mTLS client checks failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok: ")).count(),
        7,
        "{stdout}"
    );

    let trail = tessera.dir().join("data/audit.jsonl");
    let report = tessera_audit::verify(&trail).unwrap();
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&trail)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["record"].clone())
        .collect();
    let seen: Vec<(String, String, String)> = records
        .iter()
        .map(|r| {
            (
                r["caller"].as_str().unwrap().to_owned(),
                r["rpc"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_owned(),
                r["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("steward", "UpsertSourceRecord", "ok"),
        ("steward", "UpsertSourceRecord", "ok"),
        ("reader", "GetPatientView", "ok"),
        ("reader", "MergeMasters", "PERMISSION_DENIED"),
        ("marketing", "GetPatientView", "PERMISSION_DENIED"),
        ("marketing", "GetPatientView", "ok"),
    ]
    .map(|(c, r, o)| (c.to_owned(), r.to_owned(), o.to_owned()));
    assert_eq!(seen, expected, "one record per call, in order");
    assert_eq!(report.records, 6);
    assert!(records.iter().all(|r| r["auth"] == "mtls"));
    assert_eq!(records[2]["purpose_of_use"], "TREAT");
    assert_eq!(records[4]["reason"], "PURPOSE_NOT_GRANTED");
}
