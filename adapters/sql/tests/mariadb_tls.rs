//! The `sql` adapter reaching MariaDB over TLS (tests/mariadb starts a server with
//! a certificate and `require_secure_transport`): `ssl-mode=VERIFY_IDENTITY` with
//! the server's CA reads records over an encrypted session; another CA leaves the
//! source unhealthy, with no URL or password in the message.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::json;
use sqlx::MySqlPool;
use tessera_adapter_core::{Adapter, FetchRequest, HealthCheck, HealthState};
use tessera_adapter_sql::{SqlAdapter, SqlConfig};
use tessera_test_mariadb::{ServerTls, TestMariaDb};
use tokio::time::Instant;

/// The process's TLS server, its CA, another CA, and the certificates' directory.
struct Fixture {
    mariadb: TestMariaDb,
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
        let mariadb = TestMariaDb::start_tls(&tls).expect("a server with tls");
        Fixture {
            mariadb,
            ca,
            other_ca,
            _certs: certs,
        }
    })
}

/// A fresh database with one invoice for `B-1`; its TCP URL without TLS parameters.
async fn silo() -> anyhow::Result<String> {
    let mariadb = &fixture().mariadb;
    let socket_url = mariadb.create_database()?;
    let pool = MySqlPool::connect(&socket_url).await?;
    sqlx::query("CREATE TABLE invoices (id VARCHAR(16) PRIMARY KEY, patient_ref VARCHAR(16))")
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
    Ok(mariadb.tcp_url(db).expect("tcp"))
}

fn adapter(url: &str) -> anyhow::Result<SqlAdapter> {
    let config: SqlConfig = serde_json::from_value(json!({
        "system": "billing",
        "url": url,
        "sections": {
            "invoices": {"query": "SELECT id FROM invoices WHERE patient_ref = ?", "record_id": "id"},
            "session": {"query": "SELECT variable_value <> '' AS encrypted FROM information_schema.session_status WHERE variable_name = 'Ssl_cipher' AND ? <> ''"}
        },
    }))?;
    Ok(SqlAdapter::open(config, Path::new("."))?)
}

fn verify_identity(ca: &Path) -> String {
    format!("ssl-mode=VERIFY_IDENTITY&ssl-ca={}", ca.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_identity_with_the_servers_ca_reads_records_over_tls() -> anyhow::Result<()> {
    let url = format!("{}?{}", silo().await?, verify_identity(&fixture().ca));
    let adapter = adapter(&url)?;
    assert_eq!(adapter.check().await.state, HealthState::Serving);
    let results = adapter
        .fetch(FetchRequest {
            local_ids: vec!["B-1".to_owned()],
            sections: vec!["invoices".to_owned(), "session".to_owned()],
            deadline: Instant::now() + Duration::from_secs(5),
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
    assert_eq!(&*records("session")[0].json, r#"{"encrypted":1}"#);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_ca_or_no_tls_leaves_the_source_unhealthy_without_naming_the_url()
-> anyhow::Result<()> {
    let base = silo().await?;
    for params in [
        verify_identity(&fixture().other_ca),
        "ssl-mode=DISABLED".to_owned(),
    ] {
        let health = adapter(&format!("{base}?{params}"))?.check().await;
        assert_eq!(health.state, HealthState::NotServing, "{params}");
        assert!(
            !health.message.contains("tessera-test"),
            "{}",
            health.message
        );
        assert!(!health.message.contains("127.0.0.1"), "{}", health.message);
    }
    Ok(())
}
