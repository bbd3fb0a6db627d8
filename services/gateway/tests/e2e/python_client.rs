//! The real `tessera` binary, checked by a Python grpcio client generated from
//! `proto/` with grpcio-tools (see `tests/python/check_server.py`).

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::path::PathBuf;

use tessera_e2e::{Tessera, workspace_root};

/// The Python with the test requirements: `TESSERA_PYTHON`, else the `.venv` that
/// `scripts/test` creates.
pub(crate) fn python() -> PathBuf {
    std::env::var_os("TESSERA_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/python"))
}

#[tokio::test]
async fn python_grpcio_client_sees_health_reflection_and_unimplemented() {
    let python = python();
    assert!(
        python.exists(),
        "{} not found: run scripts/test, which installs tests/python/requirements.txt into .venv",
        python.display()
    );
    let tessera = Tessera::start(crate::tessera_bin(), &Tessera::minimal_config("5s"))
        .await
        .unwrap();

    let output = tokio::process::Command::new(&python)
        .arg(workspace_root().join("tests/python/check_server.py"))
        .arg(tessera.addr.to_string())
        .arg(workspace_root().join("proto"))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "Python client checks failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    // Every check ran: the script prints one `ok:` line per check.
    assert!(
        stdout.lines().filter(|l| l.starts_with("ok: ")).count() >= 9,
        "{stdout}"
    );
}
