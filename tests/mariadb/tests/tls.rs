//! A server started with TLS, reached as the `sql` adapter reaches MariaDB: sqlx
//! URLs with `ssl-mode` and `ssl-ca`.

use std::path::PathBuf;
use std::sync::OnceLock;

use sqlx::{Connection, MySqlConnection};
use tessera_test_mariadb::{ServerTls, TestMariaDb};

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

fn url(params: &str) -> String {
    let base = fixture().mariadb.tcp_url("mysql").expect("tcp");
    format!("{base}?{params}")
}

#[tokio::test]
async fn verify_identity_with_the_servers_ca_connects_encrypted() -> anyhow::Result<()> {
    let ca = fixture().ca.display().to_string();
    for mode in ["VERIFY_IDENTITY", "VERIFY_CA"] {
        let mut conn =
            MySqlConnection::connect(&url(&format!("ssl-mode={mode}&ssl-ca={ca}"))).await?;
        let (_, cipher): (String, String) = sqlx::query_as("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
            .fetch_one(&mut conn)
            .await?;
        assert!(!cipher.is_empty(), "{mode}: the session is not encrypted");
    }
    Ok(())
}

#[tokio::test]
async fn verify_identity_with_another_ca_is_refused() {
    let ca = fixture().other_ca.display().to_string();
    let err = MySqlConnection::connect(&url(&format!("ssl-mode=VERIFY_IDENTITY&ssl-ca={ca}")))
        .await
        .expect_err("a certificate from another ca is not trusted");
    assert!(
        err.to_string().contains("invalid peer certificate"),
        "{err}"
    );
}

#[tokio::test]
async fn a_plaintext_connection_is_refused_by_a_server_that_requires_tls() {
    let err = MySqlConnection::connect(&url("ssl-mode=DISABLED"))
        .await
        .expect_err("require_secure_transport");
    // The same user and password connect over TLS (above); without it, MariaDB
    // 10.11 turns the login away as access denied (28000; MySQL and later
    // MariaDB say ER_SECURE_TRANSPORT_REQUIRED, 08004).
    let code = err.as_database_error().and_then(|e| e.code());
    assert!(matches!(code.as_deref(), Some("28000" | "08004")), "{err}");
}
