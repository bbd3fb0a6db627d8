//! The end-to-end test harness: starts the real `tessera` binary (whose path the
//! caller passes in, from cargo's `CARGO_BIN_EXE_tessera`) on 127.0.0.1 with an OS-chosen port, captures its logs, and stops it with real
//! signals. [`silos`] starts three real silos for one person (Medplum's FHIR
//! server, PostgreSQL, the Python example adapter as its own process) for the
//! adapter kinds' end-to-end tests; [`otlp`] is an OTLP receiver for the telemetry
//! tests. The tests live in `services/gateway/tests/e2e/` (one test binary, in the
//! package that owns `tessera`, so cargo builds it first); the Python client check in
//! `tests/python/`.

pub mod otlp;
pub mod silos;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tonic::transport::{Channel, Endpoint};

/// The workspace root (the directory holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A running `tessera serve` process.
#[derive(Debug)]
pub struct Tessera {
    child: Child,
    /// The address the server bound.
    pub addr: SocketAddr,
    stdout: Arc<Mutex<String>>,
    logs: Arc<Mutex<String>>,
    /// The task copying standard error into `logs`; it ends at EOF.
    log_reader: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

/// The access a test gets when its config names no `policy:`: the anonymous loopback
/// caller with every role, purpose, section and system, as in the quickstart. Tests of
/// access control write their own `policy:` (deny by default applies to them).
pub const DEV_POLICY: &str = "policy:\n  anonymous_loopback:\n    roles: [admin]\n    \
    purposes: [TREAT, HPAYMT, HOPERAT, HMARKT, PATRQT, PUBHLTH, HRESCH]\n    \
    sections: [\"*\"]\n    systems: [\"*\"]\n    national_id: true\n";

/// The audit trail a test gets when its config names no `audit:`, in the config's
/// directory.
pub const DEV_AUDIT: &str = "audit:\n  file: data/audit.jsonl\n";

/// `config_yaml` with [`DEV_POLICY`] and [`DEV_AUDIT`] appended where it has no
/// `policy:` or `audit:` section of its own.
pub fn with_dev_access(config_yaml: &str) -> String {
    let has = |section: &str| {
        config_yaml.starts_with(section) || config_yaml.contains(&format!("\n{section}"))
    };
    let mut config = config_yaml.trim_end().to_owned();
    config.push('\n');
    if !has("policy:") {
        config.push_str(DEV_POLICY);
    }
    if !has("audit:") {
        config.push_str(DEV_AUDIT);
    }
    config
}

impl Tessera {
    /// Writes `config_yaml` (through [`with_dev_access`]) to a temporary file and starts
    /// `tessera serve` with it on `127.0.0.1:0`, returning once the server has printed its
    /// bound address.
    /// `bin` is the `tessera` executable, which the calling test binary gets from
    /// cargo (`env!("CARGO_BIN_EXE_tessera")`).
    pub async fn start(bin: &Path, config_yaml: &str) -> anyhow::Result<Self> {
        Self::start_in(bin, tempfile::tempdir()?, config_yaml).await
    }

    /// Like [`Tessera::start`], with the config (and anything it names by a
    /// relative path, such as an embedded store) in `dir`, which the process keeps
    /// alive. Pass the same directory again to restart over the same state.
    pub async fn start_in(
        bin: &Path,
        dir: tempfile::TempDir,
        config_yaml: &str,
    ) -> anyhow::Result<Self> {
        Self::start_with_env(bin, dir, config_yaml, &[]).await
    }

    /// Like [`Tessera::start_in`], with extra environment variables (such as
    /// `OTEL_*`) for the process.
    pub async fn start_with_env(
        bin: &Path,
        dir: tempfile::TempDir,
        config_yaml: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let config = dir.path().join("tessera.yaml");
        std::fs::write(&config, with_dev_access(config_yaml))?;
        let mut child = Command::new(bin)
            .envs(env.iter().copied())
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start tessera")?;

        let logs = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().context("no stderr")?;
        let sink = Arc::clone(&logs);
        let log_reader = tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(mut logs) = sink.lock() {
                    logs.push_str(&line);
                    logs.push('\n');
                }
            }
        });

        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .context("tessera printed no address within 60s")??
            .context("tessera exited before printing its address")?;
        let addr = first
            .strip_prefix("tessera listening on ")
            .with_context(|| format!("unexpected first line: {first:?}"))?
            .parse()?;
        // Keep reading stdout (kept for `stdout()`) so the child never blocks on
        // a full pipe.
        let stdout = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stdout);
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(mut out) = sink.lock() {
                    out.push_str(&line);
                    out.push('\n');
                }
            }
        });

        Ok(Self {
            child,
            addr,
            stdout,
            logs,
            log_reader: Some(log_reader),
            _dir: dir,
        })
    }

    /// A minimal valid config listening on 127.0.0.1:0.
    pub fn minimal_config(grace_period: &str) -> String {
        format!(
            "server:\n  listen: 127.0.0.1:0\n  shutdown_grace_period: {grace_period}\n  reflection: true\nlogging:\n  format: json\n  level: info\n"
        )
    }

    /// The directory holding the config and what it names by relative paths (the
    /// embedded store, the audit trail at `data/audit.jsonl`).
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// The server's URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Opens a new connection to the server.
    pub async fn connect(&self) -> anyhow::Result<Channel> {
        Ok(Endpoint::from_shared(self.url())?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await?)
    }

    /// Sends SIGTERM, as Kubernetes does to stop a pod.
    pub fn terminate(&self) -> anyhow::Result<()> {
        let pid = self.child.id().context("process already reaped")?;
        let pid = nix::unistd::Pid::from_raw(i32::try_from(pid)?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
        Ok(())
    }

    /// Waits for the process to exit, and for its last log lines to be read.
    pub async fn wait(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let status = tokio::time::timeout(timeout, self.child.wait())
            .await
            .context("tessera did not exit in time")?
            .context("cannot wait for tessera")?;
        if let Some(reader) = self.log_reader.take() {
            // Standard error reaches EOF once the process is gone.
            let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
        }
        Ok(status)
    }

    /// Stops the process with SIGTERM, waits for it, and hands back its directory
    /// so a new process can start over the same state.
    pub async fn stop(mut self) -> anyhow::Result<tempfile::TempDir> {
        self.terminate()?;
        let status = self.wait(Duration::from_secs(30)).await?;
        if !status.success() {
            bail!("tessera exited with {status}");
        }
        Ok(self._dir)
    }

    /// What the process printed on standard output after its first line.
    pub fn stdout(&self) -> String {
        self.stdout.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Everything the process has logged on standard error so far.
    pub fn logs(&self) -> String {
        self.logs.lock().map(|l| l.clone()).unwrap_or_default()
    }
}
