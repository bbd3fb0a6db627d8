//! A server started with TLS, reached the way Tessera's stores and adapters reach
//! PostgreSQL: sqlx URLs with `sslmode` and `sslrootcert`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use sqlx::{Connection, PgConnection};
use tessera_test_postgres::{ServerTls, TestPostgres};

/// The process's TLS server, the CA its certificate chains to, another CA, and the
/// directory holding the certificates.
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

fn url(params: &str) -> String {
    let base = fixture()
        .postgres
        .tcp_url("postgres")
        .expect("a tls server listens on tcp");
    format!("{base}?{params}")
}

fn root(ca: &Path) -> String {
    format!("sslrootcert={}", ca.display())
}

/// Whether the session is encrypted, as the server sees it.
async fn encrypted(conn: &mut PgConnection) -> anyhow::Result<bool> {
    Ok(
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(conn)
            .await?,
    )
}

#[tokio::test]
async fn verify_full_with_the_servers_ca_connects_encrypted() -> anyhow::Result<()> {
    let fixture = fixture();
    for mode in ["verify-full", "verify-ca"] {
        let mut conn =
            PgConnection::connect(&url(&format!("sslmode={mode}&{}", root(&fixture.ca)))).await?;
        assert!(encrypted(&mut conn).await?, "{mode}");
    }
    // `require` encrypts without checking the certificate.
    let mut conn = PgConnection::connect(&url("sslmode=require")).await?;
    assert!(encrypted(&mut conn).await?);
    Ok(())
}

#[tokio::test]
async fn verify_full_with_another_ca_is_refused() {
    let fixture = fixture();
    let err = PgConnection::connect(&url(&format!(
        "sslmode=verify-full&{}",
        root(&fixture.other_ca)
    )))
    .await
    .expect_err("a certificate from another ca is not trusted");
    // Both throwaway CAs share a name, so rustls finds the issuer and then the
    // signature that does not verify.
    assert!(
        err.to_string().contains("invalid peer certificate"),
        "{err}"
    );
}

#[tokio::test]
async fn a_plaintext_connection_is_refused_by_a_server_that_requires_tls() {
    let err = PgConnection::connect(&url("sslmode=disable"))
        .await
        .expect_err("hostssl only");
    let code = err.as_database_error().and_then(|e| e.code());
    // invalid_authorization_specification: no pg_hba.conf entry without encryption.
    assert_eq!(code.as_deref(), Some("28000"), "{err}");
}

#[test]
fn a_server_without_tls_has_no_tcp_url() -> anyhow::Result<()> {
    let postgres = TestPostgres::shared()?;
    assert_eq!(postgres.tcp_url("postgres"), None);
    Ok(())
}
