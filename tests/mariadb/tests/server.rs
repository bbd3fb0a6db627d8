//! A real server: databases are separate, the URL works with sqlx over the socket,
//! and stopping the server removes everything it left.

use sqlx::{Connection, MySqlConnection};
use tessera_test_mariadb::TestMariaDb;

#[tokio::test]
async fn databases_are_separate_and_the_server_cleans_up_after_itself() -> anyhow::Result<()> {
    let server = TestMariaDb::start()?;
    let (a, b) = (server.create_database()?, server.create_database()?);
    assert_ne!(a, b);
    let mut conn = MySqlConnection::connect(&a).await?;
    sqlx::query("CREATE TABLE t (id VARCHAR(8) PRIMARY KEY)")
        .execute(&mut conn)
        .await?;
    sqlx::query("INSERT INTO t VALUES ('x')")
        .execute(&mut conn)
        .await?;
    let version: String = sqlx::query_scalar("SELECT VERSION()")
        .fetch_one(&mut conn)
        .await?;
    assert!(version.contains("MariaDB"), "{version}");
    let mut other = MySqlConnection::connect(&b).await?;
    let tables: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE()",
    )
    .fetch_one(&mut other)
    .await?;
    assert_eq!(tables, 0, "a fresh database is empty");
    conn.close().await?;
    other.close().await?;

    let dir = server
        .socket()
        .parent()
        .expect("the socket's directory")
        .to_owned();
    server.stop()?;
    assert!(!dir.exists(), "{} is left behind", dir.display());
    Ok(())
}
