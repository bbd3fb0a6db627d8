//! The JSONL trail: durability, chaining, tamper detection, FHIR export.
#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tessera_audit::{
    AuditError, AuditRecord, AuditSink, AuthMethod, JsonlSink, MemorySink, VerifyError,
    export_fhir, export_fhir_ndjson, verify,
};

fn record(i: usize) -> AuditRecord {
    let mut r = AuditRecord::now(
        "svc-a",
        AuthMethod::Mtls,
        "/tessera.v1.RecordService/View",
        "TREAT",
    );
    r.masters = vec![format!("masters/{i}")];
    r.request_id = format!("req-{i}");
    r
}

async fn write_trail(path: &Path, n: usize) {
    let sink = JsonlSink::open(path).unwrap();
    let mut tasks = Vec::new();
    for i in 0..n {
        let sink = sink.clone();
        tasks.push(tokio::spawn(async move { sink.append(record(i)).await }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
}

fn lines(path: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).unwrap();
    data.split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

fn broken_line(err: VerifyError) -> (u64, u64) {
    match err {
        VerifyError::Broken { line, sequence, .. } => (line, sequence),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_form_a_verifiable_chain_with_private_modes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trail/audit.jsonl");
    write_trail(&path, 50).await;
    let report = verify(&path).unwrap();
    assert_eq!(report.records, 50);
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    // Reopening continues the chain.
    let sink = JsonlSink::open(&path).unwrap();
    sink.append(record(99)).await.unwrap();
    assert_eq!(verify(&path).unwrap().records, 51);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.lines().last().unwrap().contains("\"sequence\":51"));
}

#[tokio::test]
async fn every_byte_edit_deletion_swap_and_truncation_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_trail(&path, 8).await;
    let orig = lines(&path);
    let bad = dir.path().join("bad.jsonl");
    // Every byte of record 4, and a sample of bytes of the others.
    for (idx, line) in orig.iter().enumerate() {
        let step = if idx == 3 { 1 } else { 17 };
        for pos in (0..line.len()).step_by(step) {
            let mut copy = orig.clone();
            copy[idx][pos] ^= 0x01;
            std::fs::write(&bad, copy.concat()).unwrap();
            let err = verify(&bad).expect_err("edit must be detected");
            assert_eq!(
                broken_line(err),
                (idx as u64 + 1, idx as u64 + 1),
                "line {idx} byte {pos}"
            );
        }
    }
    for idx in 0..orig.len() - 1 {
        let mut copy = orig.clone();
        copy.remove(idx);
        std::fs::write(&bad, copy.concat()).unwrap();
        assert_eq!(
            broken_line(verify(&bad).unwrap_err()).0,
            idx as u64 + 1,
            "deleted {idx}"
        );
    }
    let mut copy = orig.clone();
    copy.swap(2, 5);
    std::fs::write(&bad, copy.concat()).unwrap();
    assert_eq!(broken_line(verify(&bad).unwrap_err()), (3, 3));
    let mut whole = orig.concat();
    whole.truncate(whole.len() - 10);
    std::fs::write(&bad, &whole).unwrap();
    assert_eq!(broken_line(verify(&bad).unwrap_err()), (8, 8));
    // A tampered trail is not continued.
    assert!(matches!(JsonlSink::open(&bad), Err(AuditError::Corrupt(_))));
}

#[tokio::test]
async fn unwritable_trail_fails_closed_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let sink = JsonlSink::open(&path).unwrap();
    sink.append(record(1)).await.unwrap();
    std::fs::rename(&path, dir.path().join("moved")).unwrap();
    let err = sink.append(record(2)).await.unwrap_err();
    assert!(matches!(err, AuditError::Unavailable(_)));
    assert!(!sink.healthy());
    // Still unavailable while the trail is missing; never restarts a fresh chain.
    assert!(sink.append(record(2)).await.is_err());
    assert!(sink.probe().await.is_err());
    assert!(!sink.healthy());
    assert!(!path.exists());
    std::fs::rename(dir.path().join("moved"), &path).unwrap();
    // A probe finds the trail back without appending anything.
    sink.probe().await.unwrap();
    assert!(sink.healthy());
    assert_eq!(verify(&path).unwrap().records, 1);
    sink.append(record(2)).await.unwrap();
    assert!(sink.healthy());
    assert_eq!(verify(&path).unwrap().records, 2);
}

#[tokio::test]
async fn another_file_put_in_the_trails_place_is_neither_cut_nor_continued() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let sink = JsonlSink::open(&path).unwrap();
    sink.append(record(1)).await.unwrap();
    sink.append(record(2)).await.unwrap();
    // A valid trail of its own, longer than ours, swapped in for it.
    let other = dir.path().join("other.jsonl");
    write_trail(&other, 3).await;
    std::fs::rename(&path, dir.path().join("ours")).unwrap();
    std::fs::rename(&other, &path).unwrap();
    let theirs = std::fs::read(&path).unwrap();
    assert!(sink.append(record(3)).await.is_err());
    assert!(sink.probe().await.is_err());
    assert!(sink.append(record(3)).await.is_err());
    assert!(!sink.healthy());
    assert_eq!(std::fs::read(&path).unwrap(), theirs, "left as it was");
    // Ours put back is continued where it stopped.
    std::fs::rename(dir.path().join("ours"), &path).unwrap();
    sink.probe().await.unwrap();
    sink.append(record(3)).await.unwrap();
    assert_eq!(verify(&path).unwrap().records, 3);
}

#[tokio::test]
async fn memory_sink_numbers_records() {
    let sink = MemorySink::default();
    sink.append(record(1)).await.unwrap();
    sink.append(record(2)).await.unwrap();
    let seqs: Vec<u64> = sink.records().iter().map(|r| r.sequence).collect();
    assert_eq!(seqs, vec![1, 2]);
}

#[test]
fn fhir_export_has_required_balp_fields() {
    let mut r = record(7);
    r.sequence = 1;
    r.end_user = Some("dr-1".into());
    r.break_glass = true;
    r.break_glass_reason = Some("emergency".into());
    let bundle = export_fhir(&[r.clone()]);
    assert_eq!(bundle["type"], "collection");
    let ev = &bundle["entry"][0]["resource"];
    assert_eq!(ev["resourceType"], "AuditEvent");
    assert_eq!(ev["type"]["code"], "110110");
    assert_eq!(ev["recorded"], r.time.as_str());
    assert_eq!(ev["action"], "R");
    assert_eq!(ev["outcome"], "0");
    assert!(ev["source"]["observer"].is_object());
    let agents = ev["agent"].as_array().unwrap();
    assert!(
        agents
            .iter()
            .any(|a| a["requestor"] == true && a["who"]["identifier"]["value"] == "dr-1")
    );
    assert_eq!(ev["entity"][0]["what"]["reference"], "Patient/7");
    assert_eq!(ev["meta"]["security"][0]["code"], "BTG");
    let nd = export_fhir_ndjson(&[r.clone(), r]);
    assert_eq!(nd.lines().count(), 2);
}
