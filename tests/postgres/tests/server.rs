//! The shared and private servers, exercised through the clients Tessera uses: sqlx's
//! `PgPool` and `psql`.

use std::process::Command;
use std::thread;

use sqlx::PgPool;
use tessera_test_postgres::TestPostgres;

#[tokio::test]
async fn databases_on_the_shared_server_do_not_see_each_other() -> anyhow::Result<()> {
    let postgres = TestPostgres::shared()?;
    let first_url = postgres.create_database()?;
    let second_url = postgres.create_database()?;
    assert_ne!(first_url, second_url);
    let first = PgPool::connect(&first_url).await?;
    let second = PgPool::connect(&second_url).await?;

    sqlx::query("CREATE TABLE patient (id TEXT PRIMARY KEY)")
        .execute(&first)
        .await?;
    sqlx::query("INSERT INTO patient (id) VALUES ('p1')")
        .execute(&first)
        .await?;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM patient")
        .fetch_one(&first)
        .await?;
    assert_eq!(rows, 1);

    let error = sqlx::query("SELECT id FROM patient")
        .fetch_all(&second)
        .await
        .expect_err("the table exists only in the first database");
    let code = error.as_database_error().and_then(|e| e.code());
    assert_eq!(
        code.as_deref(),
        Some("42P01"),
        "undefined_table, got {error}"
    );
    Ok(())
}

#[test]
fn every_caller_gets_the_same_shared_server() -> anyhow::Result<()> {
    let servers: Vec<usize> = thread::scope(|scope| {
        let callers: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| TestPostgres::shared().map(|s| s as *const _ as usize)))
            .collect();
        callers
            .into_iter()
            .map(|caller| caller.join().expect("caller thread"))
            .collect::<Result<_, _>>()
    })?;
    assert!(servers.windows(2).all(|pair| pair[0] == pair[1]));
    Ok(())
}

#[test]
fn psql_connects_with_the_url() -> anyhow::Result<()> {
    let url = TestPostgres::shared()?.create_database()?;
    let output = Command::new("psql")
        .args(["--no-psqlrc", "--tuples-only", "--no-align"])
        .args(["--command", "SELECT current_database()"])
        .arg(&url)
        .output()?;
    assert!(
        output.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let db = String::from_utf8(output.stdout)?;
    assert!(
        url.contains(&format!("/{}?", db.trim())),
        "{db} is not in {url}"
    );
    Ok(())
}

#[tokio::test]
async fn a_private_server_starts_and_stops_cleanly() -> anyhow::Result<()> {
    let postgres = TestPostgres::start()?;
    assert_ne!(
        postgres.socket_dir(),
        TestPostgres::shared()?.socket_dir(),
        "a private server is not the shared one"
    );
    let url = postgres.create_database()?;
    let pool = PgPool::connect(&url).await?;
    let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&pool).await?;
    assert_eq!(one, 1);
    pool.close().await;

    let server_dir = postgres
        .socket_dir()
        .parent()
        .expect("socket dir's parent")
        .to_owned();
    assert!(server_dir.exists());
    postgres.stop()?;
    assert!(
        !server_dir.exists(),
        "{} is left behind",
        server_dir.display()
    );
    assert!(
        PgPool::connect(&url).await.is_err(),
        "the server still accepts connections"
    );
    Ok(())
}
