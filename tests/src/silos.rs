//! Three real silos for one person, for end-to-end tests of the adapter kinds:
//!
//! - an EHR: the real Medplum FHIR R4 server (`tests/fhir-server`), seeded over
//!   HTTP with one Patient (identifier [`MRN`] in [`MRN_SYSTEM`]) and a few
//!   clinical resources;
//! - billing: a real PostgreSQL server of its own (`tests/postgres`) with an
//!   `accounts` / `invoices` / `payments` schema, seeded for account [`ACCOUNT`];
//! - marketing: the Python example adapter (`examples/python-adapter`) as a
//!   separate process on a Unix domain socket, whose CSV silo holds member
//!   [`MEMBER`].
//!
//! [`Silos::start`] starts all three at once and seeds them;
//! [`Silos::gateway_config`] writes a `tessera` config with a source for each
//! (`fhir`, `sql`, `grpc`), caching off so that every view calls every silo.
//! Dropping the [`Silos`] stops all three (and each dies with the test process
//! anyway: the FHIR server and PostgreSQL's guard watch their stdin, the Python
//! process is killed on drop).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tessera_proto::v1::{self as pb, identity_service_client::IdentityServiceClient};
use tessera_test_fhir_server::FhirServer;
use tessera_test_postgres::TestPostgres;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tonic::transport::Channel;

use crate::workspace_root;

/// The person's MRN in the EHR, the `ehr` system's local ID.
pub const MRN: &str = "MRN-5521";
/// The system of the EHR's MRNs (the Patient identifier's system).
pub const MRN_SYSTEM: &str = "urn:oid:2.16.840.1.113883.19.5.99999.1";
/// The person's billing account, the `billing` system's local ID.
pub const ACCOUNT: &str = "ACCT-88";
/// The person's marketing member ID, the `marketing` system's local ID (a row of
/// the Python example's `data/contacts.csv`).
pub const MEMBER: &str = "M-100";
/// The person's local IDs, as (system, local ID).
pub const LOCAL_IDS: [(&str, &str); 3] =
    [("ehr", MRN), ("billing", ACCOUNT), ("marketing", MEMBER)];

/// The sections each source serves, as (source, sections).
pub const SECTIONS: [(&str, &[&str]); 3] = [
    (
        "ehr",
        &["demographics", "encounters", "conditions", "observations"],
    ),
    ("billing", &["invoices", "payments"]),
    (
        "marketing",
        &["contacts", "consents", "channel_preferences"],
    ),
];

/// How long the Python adapter may take to generate its protocol code and listen.
const PYTHON_START_TIMEOUT: Duration = Duration::from_secs(30);

/// Options of [`Silos::start`].
#[derive(Debug, Clone, Default)]
pub struct SilosOptions {
    /// Every fetch of the Python adapter takes at least this long before it
    /// answers (its test-only `--fetch-delay`), so that a test can catch one in
    /// progress. Zero answers at once.
    pub python_fetch_delay: Duration,
}

/// The three silos, running and seeded; dropping it stops them.
#[derive(Debug)]
pub struct Silos {
    fhir: FhirServer,
    postgres: TestPostgres,
    postgres_url: String,
    python: PythonAdapter,
    /// Holds the Python adapter's socket and in-flight file.
    dir: tempfile::TempDir,
}

impl Silos {
    /// Starts the three silos in parallel and seeds the EHR and billing.
    pub async fn start(options: SilosOptions) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("tessera-silos-")
            .tempdir_in(tessera_test_server::temp_parent())?;
        let fhir = tokio::task::spawn_blocking(FhirServer::start);
        let postgres = tokio::task::spawn_blocking(|| {
            let server = TestPostgres::start()?;
            let url = server.create_database()?;
            Ok::<_, tessera_test_postgres::Error>((server, url))
        });
        let python = PythonAdapter::start(dir.path(), options.python_fetch_delay);
        let (fhir, postgres, python) = tokio::join!(fhir, postgres, python);
        let fhir = fhir?.context("starting the FHIR server")?;
        let (postgres, postgres_url) = postgres?.context("starting PostgreSQL")?;
        let python = python.context("starting the Python adapter")?;

        seed_fhir(&fhir).await.context("seeding the FHIR server")?;
        seed_billing(&postgres_url)
            .await
            .context("seeding PostgreSQL")?;
        Ok(Self {
            fhir,
            postgres,
            postgres_url,
            python,
            dir,
        })
    }

    /// The EHR's FHIR base URL, with a trailing slash.
    pub fn fhir_base_url(&self) -> String {
        self.fhir.base_url()
    }

    /// The FHIR server itself, to seed more or inspect what it received.
    pub fn fhir(&self) -> &FhirServer {
        &self.fhir
    }

    /// The W3C `traceparent` of every request the FHIR server has received so
    /// far (seeding sends none), in arrival order.
    pub async fn fhir_traceparents(&self) -> anyhow::Result<Vec<String>> {
        Ok(self.fhir.received_traceparents().await?)
    }

    /// The billing database's URL (`postgres://...?host=SOCKET_DIR`).
    pub fn postgres_url(&self) -> &str {
        &self.postgres_url
    }

    /// The PostgreSQL server, to create more databases on it.
    pub fn postgres(&self) -> &TestPostgres {
        &self.postgres
    }

    /// The Python adapter's Unix socket.
    pub fn adapter_socket(&self) -> &Path {
        &self.python.socket
    }

    /// The Python adapter process.
    pub fn python(&self) -> &PythonAdapter {
        &self.python
    }

    /// The Python adapter process, to kill it.
    pub fn python_mut(&mut self) -> &mut PythonAdapter {
        &mut self.python
    }

    /// The directory that holds the Python adapter's socket; it lives as long as
    /// the silos.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The `sources:` list (the key included) for the three silos: `ehr` (kind
    /// `fhir`), `billing` (kind `sql`) and `marketing` (kind `grpc`), each with
    /// caching off (a TTL of zero for every section, nothing kept for
    /// `stale_if_error`), so every view calls every silo.
    pub fn sources_yaml(&self) -> String {
        let no_cache = |source: &str| {
            let sections = SECTIONS
                .iter()
                .find(|(name, _)| *name == source)
                .map(|(_, sections)| sections.iter().map(|s| format!("{s}: 0s")).collect())
                .unwrap_or_else(Vec::<String>::new)
                .join(", ");
            format!("cache: {{ttl: 0s, stale_if_error: 0s, sections: {{{sections}}}}}")
        };
        format!(
            r#"sources:
  - name: ehr
    kind: fhir
    {ehr_cache}
    config:
      system: ehr
      base_url: "{fhir}"
      patient_id: {{type: identifier, system: "{MRN_SYSTEM}"}}
      sections: [demographics, encounters, conditions, observations]
  - name: billing
    kind: sql
    {billing_cache}
    config:
      system: billing
      url: "{postgres}"
      sections:
        invoices:
          description: Invoices of the account
          query: SELECT invoice_id, issued_at, amount_cents, status FROM invoices WHERE account_id = $1 ORDER BY issued_at
          record_id: invoice_id
          update_time: issued_at
        payments:
          description: Payments on the account
          query: SELECT payment_id, paid_at, amount_cents, method FROM payments WHERE account_id = $1 ORDER BY paid_at
          record_id: payment_id
          update_time: paid_at
  - name: marketing
    kind: grpc
    {marketing_cache}
    config:
      endpoint: "unix:{socket}"
      system: marketing
"#,
            ehr_cache = no_cache("ehr"),
            billing_cache = no_cache("billing"),
            marketing_cache = no_cache("marketing"),
            fhir = self.fhir_base_url(),
            postgres = self.postgres_url,
            socket = self.python.socket.display(),
        )
    }

    /// A whole `tessera` config: the server (`127.0.0.1:0`, a 2 s shutdown grace
    /// period), an embedded identity store (`sqlite://data/identity.db`, relative
    /// to the config's directory), `extra_yaml`, then [`Silos::sources_yaml`].
    ///
    /// `extra_yaml` holds further top-level sections (`logging:`, `view:`,
    /// `telemetry:`), or nothing; it must not repeat `server`, `identity` or
    /// `sources`.
    pub fn gateway_config(&self, extra_yaml: &str) -> String {
        let mut extra = extra_yaml.trim_end().to_owned();
        if !extra.is_empty() {
            extra.push('\n');
        }
        format!(
            "server:\n  listen: 127.0.0.1:0\n  shutdown_grace_period: 2s\n\
             identity:\n  store: sqlite://data/identity.db\n{extra}{}",
            self.sources_yaml()
        )
    }
}

/// Links the person's three local IDs ([`LOCAL_IDS`]) to one master through
/// IdentityService (`UpsertSourceRecord` with the same demographics), and
/// returns the master's name.
pub async fn link_person(channel: Channel) -> anyhow::Result<String> {
    let mut identity = IdentityServiceClient::new(channel);
    let mut master = String::new();
    for (system, local_id) in LOCAL_IDS {
        let response = identity
            .upsert_source_record(pb::UpsertSourceRecordRequest {
                source_record: Some(pb::SourceRecord {
                    key: Some(pb::SourceRecordKey {
                        system: system.to_owned(),
                        local_id: local_id.to_owned(),
                    }),
                    demographics: Some(pb::Demographics {
                        given_names: vec!["Adaeze".to_owned()],
                        family_name: "Okonkwo".to_owned(),
                        birth_date: "1971-04-05".to_owned(),
                        sex: pb::AdministrativeSex::Female.into(),
                        identifiers: vec![pb::PersonIdentifier {
                            r#type: pb::PersonIdentifierType::NationalId.into(),
                            system: String::new(),
                            value: "219-44-8121".to_owned(),
                        }],
                        ..pb::Demographics::default()
                    }),
                    ..pb::SourceRecord::default()
                }),
                ..pb::UpsertSourceRecordRequest::default()
            })
            .await?
            .into_inner();
        if master.is_empty() {
            master.clone_from(&response.master);
        }
        if response.master != master {
            bail!("{system} linked to {} instead of {master}", response.master);
        }
    }
    Ok(master)
}

/// The Python example adapter, running as a process of its own on a Unix socket;
/// killed when dropped.
#[derive(Debug)]
pub struct PythonAdapter {
    child: Child,
    socket: PathBuf,
    in_flight_file: PathBuf,
}

impl PythonAdapter {
    async fn start(dir: &Path, fetch_delay: Duration) -> anyhow::Result<Self> {
        let python = python();
        if !python.exists() {
            bail!(
                "{} not found: run scripts/python-env (scripts/test does) or set TESSERA_PYTHON",
                python.display()
            );
        }
        let socket = dir.join("marketing.sock");
        let in_flight_file = dir.join("in-flight.json");
        // Its generated protocol code goes here, so that it is removed with the
        // silos even when the process is killed before it can clean up.
        let tmp = dir.join("tmp");
        std::fs::create_dir(&tmp)?;
        let mut command = Command::new(python);
        command
            .env("TMPDIR", &tmp)
            .arg(workspace_root().join("examples/python-adapter/adapter.py"))
            .arg("--listen")
            .arg(format!("unix:{}", socket.display()))
            .arg("--in-flight-file")
            .arg(&in_flight_file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        if !fetch_delay.is_zero() {
            command
                .arg("--fetch-delay")
                .arg(fetch_delay.as_secs_f64().to_string());
        }
        let mut child = command.spawn().context("cannot run the Python adapter")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(PYTHON_START_TIMEOUT, lines.next_line())
            .await
            .context("the Python adapter did not listen in time")??
            .context("the Python adapter exited before listening")?;
        if !first.starts_with("listening on unix:") {
            bail!("unexpected first line from the Python adapter: {first:?}");
        }
        // Keep draining, so the process never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            child,
            socket,
            in_flight_file,
        })
    }

    /// The process's ID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// How many fetches (`FetchRecords` calls) the process is serving now, as it
    /// reports them in its in-flight file.
    pub fn in_flight(&self) -> u64 {
        self.stats()["in_flight"].as_u64().unwrap_or(0)
    }

    /// The time remaining, in seconds, that the last fetch was given (its gRPC
    /// deadline), if any fetch came.
    pub fn last_time_remaining(&self) -> Option<f64> {
        self.stats()["last_time_remaining"].as_f64()
    }

    fn stats(&self) -> Value {
        std::fs::read_to_string(&self.in_flight_file)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default()
    }

    /// Waits until the process is serving a fetch; an error after `timeout`.
    pub async fn wait_for_a_fetch(&self, timeout: Duration) -> anyhow::Result<()> {
        let waiting = async {
            while self.in_flight() == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        };
        tokio::time::timeout(timeout, waiting)
            .await
            .with_context(|| format!("the Python adapter got no fetch within {timeout:?}"))
    }

    /// Kills the process (SIGKILL: no goodbye to its clients) and waits for it.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        self.child.start_kill()?;
        self.child.wait().await?;
        Ok(())
    }
}

/// The Python with grpcio: `TESSERA_PYTHON`, else the workspace's `.venv`
/// (`scripts/python-env` creates it; `scripts/test` sets `TESSERA_PYTHON`).
pub fn python() -> PathBuf {
    std::env::var_os("TESSERA_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/python"))
}

fn fhir_uuid(n: usize) -> String {
    format!("urn:uuid:00000000-0000-4000-8000-{n:012}")
}

fn fhir_entry(resource: Value) -> Value {
    let kind = resource["resourceType"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    json!({"request": {"method": "POST", "url": kind}, "resource": resource})
}

/// The Patient with [`MRN`], an encounter, a condition and two observations.
async fn seed_fhir(server: &FhirServer) -> anyhow::Result<()> {
    let patient = fhir_uuid(1);
    let subject = json!({"reference": patient});
    let mut entries = vec![json!({
        "fullUrl": patient,
        "request": {"method": "POST", "url": "Patient"},
        "resource": {
            "resourceType": "Patient",
            "identifier": [{"system": MRN_SYSTEM, "value": MRN}],
            "name": [{"use": "official", "family": "Okonkwo", "given": ["Adaeze"]}],
            "gender": "female",
            "birthDate": "1971-04-05",
            "address": [{"city": "Leeds", "postalCode": "LS1 4AP"}]
        }
    })];
    entries.push(fhir_entry(json!({
        "resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": subject, "period": {"start": "2026-02-03T09:00:00Z"}
    })));
    entries.push(fhir_entry(json!({
        "resourceType": "Condition", "subject": subject,
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}], "text": "hypertension"}
    })));
    for (value, date) in [(132, "2026-02-03T09:10:00Z"), (128, "2026-03-10T11:00:00Z")] {
        entries.push(fhir_entry(json!({
            "resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}], "text": "systolic blood pressure"},
            "subject": subject, "effectiveDateTime": date,
            "valueQuantity": {"value": value, "unit": "mm[Hg]"}
        })));
    }
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    server.transaction(&bundle).await?;
    Ok(())
}

/// The billing schema, with two invoices and a payment for [`ACCOUNT`] and an
/// invoice of someone else.
async fn seed_billing(url: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut db = sqlx::PgConnection::connect(url).await?;
    for statement in [
        "CREATE TABLE accounts (account_id TEXT PRIMARY KEY, opened_on DATE NOT NULL)",
        "CREATE TABLE invoices (invoice_id TEXT PRIMARY KEY, account_id TEXT NOT NULL REFERENCES accounts, \
         issued_at TIMESTAMPTZ NOT NULL, amount_cents BIGINT NOT NULL, status TEXT NOT NULL)",
        "CREATE TABLE payments (payment_id TEXT PRIMARY KEY, account_id TEXT NOT NULL REFERENCES accounts, \
         paid_at TIMESTAMPTZ NOT NULL, amount_cents BIGINT NOT NULL, method TEXT NOT NULL)",
        "INSERT INTO accounts VALUES ('ACCT-88', '2019-05-01'), ('ACCT-12', '2021-01-15')",
        "INSERT INTO invoices VALUES \
         ('INV-1001', 'ACCT-88', '2026-02-03T12:00:00Z', 12500, 'paid'), \
         ('INV-1002', 'ACCT-88', '2026-03-10T12:00:00Z', 4200, 'open'), \
         ('INV-2001', 'ACCT-12', '2026-03-11T12:00:00Z', 999, 'open')",
        "INSERT INTO payments VALUES ('PAY-501', 'ACCT-88', '2026-02-20T08:30:00Z', 12500, 'card')",
    ] {
        sqlx::query(statement).execute(&mut db).await?;
    }
    db.close().await?;
    Ok(())
}
