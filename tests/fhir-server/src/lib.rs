//! A real FHIR R4 server for Tessera's tests: Medplum's `FhirRouter` over its
//! in-memory repository, wrapped by `server.js` beside this crate (paging links,
//! validation of writes, optional bearer auth, `POST _search`).
//!
//! [`FhirServer::start`] runs `node --experimental-websocket server.js` (Medplum 5
//! wants Node 22; Node 20 runs it with that flag) on 127.0.0.1 with an OS-chosen
//! port and waits for it to listen. Dropping the [`FhirServer`] kills it; and since
//! the server exits when its stdin closes, it never outlives the test process either.
//! The Node packages come from `package-lock.json` (`scripts/fhir-server-env`
//! installs them; `scripts/test` runs it).
//!
//! Seeding goes over HTTP, like any client: [`FhirServer::transaction`] posts a
//! transaction Bundle (with `urn:uuid:` references between its entries) and
//! returns the created resources; [`FhirServer::create_unvalidated`] stores a
//! resource the wrapper would otherwise refuse, as an EHR with bad data serves it.
//!
//! The server records the W3C `traceparent` header of every request it receives;
//! [`FhirServer::received_traceparents`] reads them back (through a test-only
//! endpoint, `GET /__test/traceparents`), so a test can check that the EHR saw the
//! trace of the call that reached it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// How long the server may take to load the R4 definitions and listen.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// Why the server could not be started or seeded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Node packages are not installed.
    #[error("{0} is missing: run scripts/fhir-server-env first")]
    NotInstalled(PathBuf),
    /// Node could not be run.
    #[error("cannot run node: {0}")]
    Spawn(std::io::Error),
    /// The server exited or did not listen in time.
    #[error("the FHIR test server did not start: {0}")]
    Start(String),
    /// A seeding request failed.
    #[error("seeding the FHIR test server failed: {0}")]
    Seed(String),
    /// Reading what the server recorded failed.
    #[error("reading the FHIR test server's records failed: {0}")]
    Inspect(String),
}

/// Options of a server.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Require `Authorization: Bearer <token>` on every request.
    pub bearer: Option<String>,
}

/// A running FHIR test server; dropping it stops it.
#[derive(Debug)]
pub struct FhirServer {
    child: Child,
    /// Held open: the server exits when it closes.
    _stdin: ChildStdin,
    port: u16,
    http: reqwest::Client,
    bearer: Option<String>,
}

impl FhirServer {
    /// The directory of `server.js` and its `node_modules`.
    pub fn dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).to_owned()
    }

    /// Starts a server with default options.
    pub fn start() -> Result<Self, Error> {
        Self::start_with(Options::default())
    }

    /// Starts a server.
    pub fn start_with(options: Options) -> Result<Self, Error> {
        let dir = Self::dir();
        let router = dir.join("node_modules/@medplum/fhir-router/package.json");
        if !router.is_file() {
            return Err(Error::NotInstalled(router));
        }
        let mut command = Command::new("node");
        command
            .arg("--experimental-websocket")
            .arg("server.js")
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(token) = &options.bearer {
            command.arg("--bearer").arg(token);
        }
        let mut child = command.spawn().map_err(Error::Spawn)?;
        let (stdin, stdout) = match (child.stdin.take(), child.stdout.take()) {
            (Some(stdin), Some(stdout)) => (stdin, stdout),
            _ => {
                let _ = child.kill();
                return Err(Error::Start("no pipes to the server".to_owned()));
            }
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next();
            let _ = tx.send(first);
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let port = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Some(Ok(line))) => line
                .strip_prefix("listening ")
                .and_then(|p| p.trim().parse::<u16>().ok())
                .ok_or_else(|| Error::Start(format!("unexpected first line {line:?}"))),
            Ok(_) => Err(Error::Start("it exited before listening".to_owned())),
            Err(_) => Err(Error::Start(format!(
                "not listening after {START_TIMEOUT:?}"
            ))),
        };
        let port = match port {
            Ok(port) => port,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        Ok(Self {
            child,
            _stdin: stdin,
            port,
            http: reqwest::Client::new(),
            bearer: options.bearer,
        })
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The FHIR base URL, with a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Posts a transaction Bundle and returns the resources it created, in order.
    pub async fn transaction(&self, bundle: &Value) -> Result<Vec<Value>, Error> {
        let answer = self.post("", bundle, false).await?;
        let entries = answer
            .get("entry")
            .and_then(Value::as_array)
            .ok_or_else(|| Error::Seed("the answer has no entries".to_owned()))?;
        entries
            .iter()
            .map(|e| {
                e.get("resource")
                    .cloned()
                    .ok_or_else(|| Error::Seed(format!("an entry failed: {}", e["response"])))
            })
            .collect()
    }

    /// Creates one resource, validated.
    pub async fn create(&self, resource: &Value) -> Result<Value, Error> {
        let kind = resource["resourceType"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        self.post(&kind, resource, false).await
    }

    /// Creates one resource without validating it.
    pub async fn create_unvalidated(&self, resource: &Value) -> Result<Value, Error> {
        let kind = resource["resourceType"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        self.post(&kind, resource, true).await
    }

    /// The `traceparent` headers of every request the server has received so far
    /// (those that carried one), in arrival order.
    pub async fn received_traceparents(&self) -> Result<Vec<String>, Error> {
        let inspect = |e: reqwest::Error| Error::Inspect(e.to_string());
        let response = self
            .http
            .get(format!(
                "http://127.0.0.1:{}/__test/traceparents",
                self.port
            ))
            .send()
            .await
            .map_err(inspect)?;
        let status = response.status();
        let text = response.text().await.map_err(inspect)?;
        if !status.is_success() {
            return Err(Error::Inspect(format!("HTTP {status}: {text}")));
        }
        serde_json::from_str(&text).map_err(|e| Error::Inspect(e.to_string()))
    }

    async fn post(&self, path: &str, body: &Value, unvalidated: bool) -> Result<Value, Error> {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base_url()))
            .header("content-type", "application/fhir+json")
            .body(body.to_string());
        if unvalidated {
            request = request.header("x-tessera-unvalidated", "true");
        }
        if let Some(token) = &self.bearer {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| Error::Seed(e.to_string()))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| Error::Seed(e.to_string()))?;
        if !status.is_success() {
            return Err(Error::Seed(format!("HTTP {status}: {text}")));
        }
        serde_json::from_str(&text).map_err(|e| Error::Seed(e.to_string()))
    }
}

impl Drop for FhirServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
