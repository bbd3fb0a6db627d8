//! The `grpc` adapter against the Python example adapter
//! (`examples/python-adapter`), run as a separate process over TCP and a Unix
//! socket: the conformance kit with a stalled process and malformed rows, the
//! deadline as `grpc-timeout`, a process killed mid-call, and the identity feed.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use futures_util::StreamExt;
use tessera_adapter_core::conformance::{self, Fixture, MalformedUpstream, SlowUpstream};
use tessera_adapter_core::{
    Adapter, BuildContext, FetchError, FetchRequest, HealthCheck, HealthState, Registry,
};
use tessera_adapter_grpc::{GrpcAdapter, GrpcConfig, GrpcKind};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

const KNOWN: &str = "M-100";
const UNKNOWN: &str = "M-999";
/// Has one malformed consent and one malformed channel preference.
const MALFORMED: &str = "M-101";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Python with grpcio: `TESSERA_PYTHON`, else the workspace's `.venv`
/// (`scripts/python-env` creates it; `scripts/test` runs that).
fn python() -> PathBuf {
    std::env::var_os("TESSERA_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/python"))
}

/// The example adapter running as a process of its own; killed when dropped.
struct PythonAdapter {
    child: Child,
    /// `http://127.0.0.1:PORT` or `unix:PATH`.
    endpoint: String,
    in_flight_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl PythonAdapter {
    /// Starts it, on a Unix socket if `unix`, stalling every fetch if `stall`.
    async fn start(unix: bool, stall: bool) -> anyhow::Result<Self> {
        Self::start_with(unix, stall, &[]).await
    }

    /// Starts it on TCP with TLS: `--tls-cert`, `--tls-key`, `--tls-client-ca`.
    async fn start_tls(cert: &Path, key: &Path, client_ca: &Path) -> anyhow::Result<Self> {
        let args = [
            "--tls-cert".into(),
            cert.into(),
            "--tls-key".into(),
            key.into(),
            "--tls-client-ca".into(),
            client_ca.into(),
        ];
        Self::start_with(false, false, &args).await
    }

    async fn start_with(
        unix: bool,
        stall: bool,
        extra: &[std::ffi::OsString],
    ) -> anyhow::Result<Self> {
        let python = python();
        anyhow::ensure!(
            python.exists(),
            "{} not found: run scripts/python-env (scripts/test does)",
            python.display()
        );
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("adapter.sock");
        let listen = if unix {
            format!("unix:{}", socket.display())
        } else {
            "127.0.0.1:0".to_owned()
        };
        let in_flight_file = dir.path().join("in-flight.json");
        let mut command = Command::new(python);
        command
            .arg(workspace_root().join("examples/python-adapter/adapter.py"))
            .args(["--listen", &listen])
            .arg("--in-flight-file")
            .arg(&in_flight_file)
            .stdout(Stdio::piped())
            // Killed, it cannot remove its generated code: keep that in the
            // test's own directory, which goes when the test ends.
            .env("TMPDIR", dir.path())
            .kill_on_drop(true);
        if stall {
            command.arg("--stall");
        }
        command.args(extra);
        let mut child = command.spawn()?;
        let stdout = child.stdout.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await??
            .ok_or_else(|| anyhow::anyhow!("the adapter exited before listening"))?;
        let address = line
            .strip_prefix("listening on ")
            .ok_or_else(|| anyhow::anyhow!("unexpected first line {line:?}"))?;
        let endpoint = if unix {
            address.to_owned()
        } else if extra.is_empty() {
            format!("http://{address}")
        } else {
            format!("https://{address}")
        };
        Ok(Self {
            child,
            endpoint,
            in_flight_file,
            _dir: dir,
        })
    }

    async fn adapter(&self) -> anyhow::Result<Arc<GrpcAdapter>> {
        let config: GrpcConfig = serde_json::from_value(serde_json::json!({
            "endpoint": self.endpoint,
            "system": "marketing",
        }))?;
        Ok(Arc::new(
            GrpcAdapter::connect(&config, Path::new(".")).await?,
        ))
    }

    /// What the process reports: fetches running, and the time the last one
    /// was given.
    fn stats(path: &Path) -> (u64, Option<f64>) {
        let Ok(text) = std::fs::read_to_string(path) else {
            return (0, None);
        };
        let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        (
            value["in_flight"].as_u64().unwrap_or(0),
            value["last_time_remaining"].as_f64(),
        )
    }
}

async fn kit(unix: bool) -> anyhow::Result<()> {
    let main = PythonAdapter::start(unix, false).await?;
    let stalled = PythonAdapter::start(unix, true).await?;
    let adapter = main.adapter().await?;
    let in_flight = stalled.in_flight_file.clone();
    let fixture = Fixture {
        known_local_id: KNOWN.to_owned(),
        unknown_local_id: UNKNOWN.to_owned(),
        sensitive: ["Okonkwo", "Adaeze", "adaeze@example.org", "1971-04-05"]
            .map(str::to_owned)
            .to_vec(),
        slow: Some(SlowUpstream {
            adapter: stalled.adapter().await?,
            local_id: KNOWN.to_owned(),
            section: "consents".to_owned(),
            upstream_in_flight: Arc::new(move || PythonAdapter::stats(&in_flight).0),
        }),
        malformed: Some(MalformedUpstream {
            adapter: adapter.clone(),
            local_id: MALFORMED.to_owned(),
            section: "consents".to_owned(),
        }),
    };
    let report = conformance::run(adapter, &fixture).await;
    report.assert_passed();
    assert_eq!(report.skipped(), 0, "{report}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_adapter_passes_the_conformance_kit_over_tcp() -> anyhow::Result<()> {
    kit(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_adapter_passes_the_conformance_kit_over_a_unix_socket() -> anyhow::Result<()> {
    kit(true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_health_and_the_identity_feed_come_through() -> anyhow::Result<()> {
    let process = PythonAdapter::start(true, false).await?;
    // Built as the gateway builds it, with a socket path relative to the config.
    let socket = process
        .endpoint
        .strip_prefix("unix:")
        .expect("a unix endpoint");
    let socket = Path::new(socket);
    let registry = Registry::new().with(GrpcKind);
    let context = BuildContext {
        name: "marketing".to_owned(),
        base_dir: socket.parent().expect("a directory").to_owned(),
    };
    let config = serde_json::json!({"endpoint": "unix:adapter.sock", "system": "marketing"});
    let built = registry.build("grpc", &context, config).await?;
    let adapter = built.adapter;
    let d = adapter.describe();
    assert_eq!(d.system, "marketing");
    assert!(d.capabilities.batch_fetch && d.capabilities.incremental_identity_feed);
    assert_eq!(
        d.section("consents").and_then(|s| s.suggested_ttl),
        Some(Duration::from_secs(300))
    );

    let request = FetchRequest {
        local_ids: vec![KNOWN.to_owned(), MALFORMED.to_owned()],
        sections: vec!["consents".to_owned(), "channel_preferences".to_owned()],
        deadline: Instant::now() + Duration::from_secs(5),
    };
    let results = adapter.fetch(request).await?;
    assert_eq!(results.len(), 4);
    let consents = results[0].records.as_ref().expect("consents");
    assert_eq!(consents.len(), 3);
    assert_eq!(consents[0].record_id.as_deref(), Some("C-1"));
    let first: serde_json::Value = serde_json::from_str(&consents[0].json)?;
    assert_eq!(first["status"], "granted");
    assert_eq!(first["purpose"], "newsletters");
    assert!(consents[0].update_time.is_some());
    let preferences = &results[3];
    assert_eq!(
        (preferences.local_id.as_str(), preferences.skipped_malformed),
        (MALFORMED, 1)
    );

    assert_eq!(built.health.check().await.state, HealthState::Serving);

    let all: Vec<_> = adapter.identity_feed(None).collect().await;
    assert_eq!(all.len(), 3);
    let first = all[0].as_ref().expect("a record");
    assert_eq!(first.local_id, KNOWN);
    assert_eq!(first.demographics.family_name, "Okonkwo");
    assert_eq!(first.demographics.phones, ["+44 113 496 0000"]);
    let since = UNIX_EPOCH + Duration::from_secs(1_769_904_000); // 2026-02-01
    let recent: Vec<_> = adapter.identity_feed(Some(since)).collect().await;
    let ids: Vec<_> = recent
        .iter()
        .map(|r| r.as_ref().expect("ok").local_id.as_str())
        .collect();
    assert_eq!(ids, ["M-101", "M-102"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_reaches_the_process_as_grpc_timeout() -> anyhow::Result<()> {
    let stalled = PythonAdapter::start(false, true).await?;
    let adapter = stalled.adapter().await?;
    let start = Instant::now();
    let request = FetchRequest::one(KNOWN, "consents", start + Duration::from_millis(800));
    let outcome = adapter.fetch(request).await;
    assert_eq!(outcome, Err(FetchError::DeadlineExceeded));
    assert!(
        start.elapsed() < Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
    let (_, remaining) = PythonAdapter::stats(&stalled.in_flight_file);
    let remaining = remaining.expect("the process saw a deadline");
    assert!(
        (0.5..=0.8).contains(&remaining),
        "the process was given {remaining}s"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_mid_call_is_unavailable_long_before_the_deadline() -> anyhow::Result<()> {
    for unix in [false, true] {
        let mut stalled = PythonAdapter::start(unix, true).await?;
        let adapter = stalled.adapter().await?;
        let call = tokio::spawn({
            let adapter = adapter.clone();
            async move {
                let deadline = Instant::now() + Duration::from_secs(10);
                adapter
                    .fetch(FetchRequest::one(KNOWN, "consents", deadline))
                    .await
            }
        });
        let in_flight = stalled.in_flight_file.clone();
        let give_up = Instant::now() + Duration::from_secs(5);
        while PythonAdapter::stats(&in_flight).0 == 0 && Instant::now() < give_up {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let killed = Instant::now();
        stalled.child.start_kill()?;
        let outcome = tokio::time::timeout(Duration::from_secs(2), call).await??;
        assert!(
            matches!(outcome, Err(FetchError::Unavailable { .. })),
            "unix={unix}: {outcome:?}"
        );
        assert!(
            killed.elapsed() < Duration::from_secs(1),
            "{:?}",
            killed.elapsed()
        );
        // And so is every later call, promptly, and the health check says so.
        let start = Instant::now();
        let deadline = start + Duration::from_secs(5);
        let again = adapter
            .fetch(FetchRequest::one(KNOWN, "consents", deadline))
            .await;
        assert!(
            matches!(again, Err(FetchError::Unavailable { .. })),
            "unix={unix}: {again:?} after {:?}",
            start.elapsed()
        );
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(adapter.check().await.state, HealthState::NotServing);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_adapter_serves_mutual_tls_to_the_grpc_adapter() -> anyhow::Result<()> {
    let certs = tempfile::tempdir()?;
    let ours = tessera_tls::dev_certs(&certs.path().join("ours"), false)?;
    tessera_tls::dev_certs(&certs.path().join("theirs"), false)?;
    let process =
        PythonAdapter::start_tls(&ours.server_cert, &ours.server_key, &ours.ca_cert).await?;
    let connect = |tls: serde_json::Value| {
        let endpoint = process.endpoint.clone();
        let base_dir = certs.path().to_owned();
        async move {
            let config: GrpcConfig = serde_json::from_value(serde_json::json!({
                "endpoint": endpoint,
                "system": "marketing",
                "startup_timeout": "500ms",
                "tls": tls,
            }))?;
            anyhow::Ok(GrpcAdapter::connect(&config, &base_dir).await?)
        }
    };

    let adapter = connect(serde_json::json!({
        "ca": "ours/ca.pem", "cert": "ours/reader.pem", "key": "ours/reader.key",
    }))
    .await?;
    let request = FetchRequest::one(KNOWN, "consents", Instant::now() + Duration::from_secs(5));
    let results = adapter.fetch(request).await?;
    let consents = results[0].records.as_ref().expect("consents");
    assert_eq!(consents[0].record_id.as_deref(), Some("C-1"));
    assert_eq!(adapter.check().await.state, HealthState::Serving);

    // No client certificate, or one from another CA: the process refuses.
    for tls in [
        serde_json::json!({"ca": "ours/ca.pem"}),
        serde_json::json!({"ca": "ours/ca.pem", "cert": "theirs/reader.pem", "key": "theirs/reader.key"}),
    ] {
        let err = connect(tls.clone()).await.err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("did not describe itself")),
            "{tls}: {err:?}"
        );
    }
    Ok(())
}
