//! The `sql` adapter reaching PostgreSQL over TLS (tests/postgres starts a server
//! with `ssl = on` and `hostssl` only): `sslmode=verify-full` with the server's CA
//! reads records over an encrypted session; another CA or no TLS at all leaves
//! the source unhealthy. The URL, a secret, stays out of errors and `Debug`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;
use tessera_adapter_core::{Adapter, FetchRequest, HealthCheck, HealthState};
use tessera_adapter_sql::{SqlAdapter, SqlConfig};
use tessera_test_postgres::{ServerTls, TestPostgres};
use tokio::time::Instant;

/// The process's TLS server, its CA, another CA, and the certificates' directory.
struct Fixture {
    postgres: TestPostgres,
    ca: PathBuf,
    other_ca: PathBuf,
    _certs: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let certs = tempfile::tempdir().expect("temp dir");
        let (tls, ca) = ServerTls::generate(&certs.path().join("server")).expect("certificates");
        let (_, other_ca) =
            ServerTls::generate(&certs.path().join("other")).expect("other certificates");
        let postgres = TestPostgres::start_tls(&tls).expect("a server with tls");
        Fixture {
            postgres,
            ca,
            other_ca,
            _certs: certs,
        }
    })
}

/// A fresh database with one invoice for `B-1`; its TCP URL, with a password that
/// the (trusting) server never asks for, and no TLS parameters.
async fn silo() -> anyhow::Result<String> {
    let postgres = &fixture().postgres;
    let socket_url = postgres.create_database()?;
    let pool = PgPool::connect(&socket_url).await?;
    sqlx::query("CREATE TABLE invoices (id TEXT PRIMARY KEY, patient_ref TEXT NOT NULL)")
        .execute(&pool)
        .await?;
    sqlx::query("INSERT INTO invoices VALUES ('I-1', 'B-1')")
        .execute(&pool)
        .await?;
    let db = socket_url
        .split('?')
        .next()
        .and_then(|u| u.rsplit('/').next())
        .expect("a database name");
    let tcp = postgres.tcp_url(db).expect("tcp");
    Ok(tcp.replacen("postgres@", "postgres:hunter2@", 1))
}

fn sections() -> Value {
    json!({
        "invoices": {"query": "SELECT id FROM invoices WHERE patient_ref = $1", "record_id": "id"},
        "session": {"query": "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND $1 <> ''"}
    })
}

fn adapter(url: &str, base_dir: &Path) -> anyhow::Result<SqlAdapter> {
    let config: SqlConfig = serde_json::from_value(json!({
        "system": "billing",
        "url": url,
        "sections": sections(),
    }))?;
    Ok(SqlAdapter::open(config, base_dir)?)
}

fn verify_full(ca: &Path) -> String {
    format!("sslmode=verify-full&sslrootcert={}", ca.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_with_the_servers_ca_reads_records_over_tls() -> anyhow::Result<()> {
    let url = format!("{}?{}", silo().await?, verify_full(&fixture().ca));
    // The URL comes from a file, as a mounted secret would.
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("billing-url"), format!("{url}\n"))?;
    let adapter = adapter("file:billing-url", dir.path())?;
    assert!(!format!("{adapter:?}").contains("hunter2"), "{adapter:?}");
    assert_eq!(adapter.check().await.state, HealthState::Serving);

    let deadline = Instant::now() + Duration::from_secs(5);
    let results = adapter
        .fetch(FetchRequest {
            local_ids: vec!["B-1".to_owned()],
            sections: vec!["invoices".to_owned(), "session".to_owned()],
            deadline,
        })
        .await?;
    let records = |section: &str| {
        let result = results
            .iter()
            .find(|r| r.section == section)
            .expect(section);
        result.records.clone().expect("records")
    };
    assert_eq!(records("invoices")[0].record_id.as_deref(), Some("I-1"));
    assert_eq!(&*records("session")[0].json, r#"{"ssl":true}"#);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_ca_or_no_tls_leaves_the_source_unhealthy_without_naming_the_url()
-> anyhow::Result<()> {
    let base = silo().await?;
    let here = Path::new(".");
    for params in [
        verify_full(&fixture().other_ca),
        "sslmode=disable".to_owned(),
    ] {
        let adapter = adapter(&format!("{base}?{params}"), here)?;
        let health = adapter.check().await;
        assert_eq!(health.state, HealthState::NotServing, "{params}");
        assert!(!health.message.contains("hunter2"), "{}", health.message);
        assert!(!health.message.contains("127.0.0.1"), "{}", health.message);
    }
    Ok(())
}

#[test]
fn a_url_reference_that_cannot_be_read_names_the_field_and_the_reference() {
    let config: SqlConfig = serde_json::from_value(json!({
        "system": "billing",
        "url": "env:TESSERA_TEST_UNSET_BILLING_URL",
        "sections": sections(),
    }))
    .expect("parses");
    assert!(
        !format!("{config:?}").contains("TESSERA_TEST"),
        "{config:?}"
    );
    let err = SqlAdapter::open(config, Path::new(".")).expect_err("unset");
    assert_eq!(
        err.to_string(),
        "url: environment variable TESSERA_TEST_UNSET_BILLING_URL is not set"
    );
}
