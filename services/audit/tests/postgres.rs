//! The PostgreSQL trail on a real server: chained rows, UPDATE/DELETE/TRUNCATE refused.
#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use tessera_audit::{AuditRecord, AuditSink, AuthMethod, PostgresSink};
use tessera_test_postgres::TestPostgres;

#[tokio::test]
async fn rows_chain_and_cannot_be_changed() {
    let url = TestPostgres::shared()
        .and_then(TestPostgres::create_database)
        .unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let sink = PostgresSink::migrate(pool.clone(), None).await.unwrap();
    for i in 0..3 {
        let mut r = AuditRecord::now(
            "svc",
            AuthMethod::Jwt,
            "/tessera.v1.RecordService/View",
            "TREAT",
        );
        r.masters = vec![format!("masters/{i}")];
        sink.append(r).await.unwrap();
    }
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT prev_hash, hash FROM tessera_audit ORDER BY seq")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].0, tessera_audit::GENESIS_HASH);
    assert_eq!(rows[1].0, rows[0].1);
    assert_eq!(rows[2].0, rows[1].1);
    let update = sqlx::query("UPDATE tessera_audit SET hash = 'x'")
        .execute(&pool)
        .await;
    assert!(update.is_err(), "update must be refused");
    let delete = sqlx::query("DELETE FROM tessera_audit")
        .execute(&pool)
        .await;
    assert!(delete.is_err(), "delete must be refused");
    let truncate = sqlx::query("TRUNCATE tessera_audit").execute(&pool).await;
    assert!(truncate.is_err(), "truncate must be refused");
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM tessera_audit")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 3);
    assert_eq!(sink.verify().await.unwrap().records, 3);

    // An owner who switches the triggers off can still edit or delete rows; the
    // chain names the row.
    sqlx::query("ALTER TABLE tessera_audit DISABLE TRIGGER tessera_audit_no_change")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE tessera_audit SET record = jsonb_set(record, '{caller}', '\"mallory\"') \
         WHERE seq = (SELECT min(seq) + 1 FROM tessera_audit)",
    )
    .execute(&pool)
    .await
    .unwrap();
    match sink.verify().await.unwrap_err() {
        tessera_audit::VerifyError::Broken { line, what, .. } => {
            assert_eq!((line, what), (2, "hash mismatch"));
        }
        other => panic!("{other:?}"),
    }
    sqlx::query(
        "UPDATE tessera_audit SET record = jsonb_set(record, '{caller}', '\"svc\"') \
         WHERE seq = (SELECT min(seq) + 1 FROM tessera_audit)",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(sink.verify().await.unwrap().records, 3, "restored");
    sqlx::query("DELETE FROM tessera_audit WHERE seq = (SELECT max(seq) FROM tessera_audit)")
        .execute(&pool)
        .await
        .unwrap();
    match sink.verify().await.unwrap_err() {
        tessera_audit::VerifyError::Broken { line, .. } => assert_eq!(line, 3),
        other => panic!("{other:?}"),
    }
}
