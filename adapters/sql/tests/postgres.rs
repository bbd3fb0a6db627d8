//! The `sql` adapter against real PostgreSQL (tests/postgres): the conformance kit
//! with a stalled statement and malformed rows, cancellation on the server seen in
//! `pg_stat_activity`, injection attempts, types, the identity feed and health.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use common::*;
use futures_util::StreamExt;
use serde_json::{Value, json};
use sqlx::PgPool;
use tessera_adapter_core::conformance::{self, Fixture, MalformedUpstream, SlowUpstream};
use tessera_adapter_core::{Adapter, FetchError, FetchRequest, HealthCheck, HealthState};
use tessera_adapter_sql::{SqlAdapter, SqlConfig};
use tessera_test_postgres::TestPostgres;
use tokio::time::Instant;

/// A fresh database holding the billing silo, and its URL.
async fn silo() -> anyhow::Result<(String, PgPool)> {
    let url = TestPostgres::shared()?.create_database()?;
    let pool = PgPool::connect(&url).await?;
    for sql in SCHEMA.iter().chain(DATA) {
        sqlx::query(sql).execute(&pool).await?;
    }
    Ok((url, pool))
}

fn adapter(url: &str, sections: Value) -> anyhow::Result<SqlAdapter> {
    let config: SqlConfig = serde_json::from_value(json!({
        "system": "billing",
        "url": url,
        "sections": sections,
        "identity_feed": feed(),
    }))?;
    Ok(SqlAdapter::open(config, std::path::Path::new("."))?)
}

const SLOW_QUERY: &str =
    "SELECT i.id FROM invoices i CROSS JOIN pg_sleep(60) WHERE i.patient_ref = $1";

/// How many of the database's statements are sleeping in `pg_sleep`, polled
/// into a counter by a task of its own.
async fn sleeping_statements(pool: PgPool) -> Arc<AtomicU64> {
    let count = Arc::new(AtomicU64::new(0));
    let out = count.clone();
    tokio::spawn(async move {
        loop {
            let n: Result<i64, _> = sqlx::query_scalar(SLEEPING).fetch_one(&pool).await;
            if let Ok(n) = n {
                out.store(n as u64, Ordering::SeqCst);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    count
}

/// The same count, read afresh (blocking the calling worker thread briefly).
fn sleeping_now(pool: &PgPool) -> u64 {
    let handle = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| {
        handle.block_on(async {
            sqlx::query_scalar::<_, i64>(SLEEPING)
                .fetch_one(pool)
                .await
                .map_or(u64::MAX, |n| n as u64)
        })
    })
}

const SLEEPING: &str = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
     AND state = 'active' AND query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()";

async fn wait_for(what: impl Fn() -> bool, within: Duration) -> bool {
    let give_up = Instant::now() + within;
    while Instant::now() < give_up {
        if what() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    what()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_adapter_passes_the_conformance_kit() -> anyhow::Result<()> {
    let (url, pool) = silo().await?;
    let main = Arc::new(adapter(&url, sections())?);
    let slow = Arc::new(adapter(&url, json!({"invoices": {"query": SLOW_QUERY}}))?);
    let fixture = Fixture {
        known_local_id: KNOWN.to_owned(),
        unknown_local_id: UNKNOWN.to_owned(),
        sensitive: SENSITIVE.iter().map(|s| (*s).to_owned()).collect(),
        slow: Some(SlowUpstream {
            adapter: slow,
            local_id: KNOWN.to_owned(),
            section: "invoices".to_owned(),
            upstream_in_flight: Arc::new(move || sleeping_now(&pool)),
        }),
        malformed: Some(MalformedUpstream {
            adapter: main.clone(),
            local_id: MALFORMED.to_owned(),
            section: "invoices".to_owned(),
        }),
    };
    let report = conformance::run(main, &fixture).await;
    report.assert_passed();
    assert_eq!(report.skipped(), 0, "{report}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_that_outruns_the_deadline_is_cancelled_on_the_server() -> anyhow::Result<()> {
    let (url, pool) = silo().await?;
    let sleeping = sleeping_statements(pool).await;
    let slow = adapter(&url, json!({"invoices": {"query": SLOW_QUERY}}))?;
    let start = Instant::now();
    let request = FetchRequest::one(KNOWN, "invoices", start + Duration::from_millis(300));
    let results = slow.fetch(request).await?;
    let took = start.elapsed();
    assert!(took < Duration::from_millis(400), "took {took:?}");
    assert_eq!(results[0].records, Err(FetchError::DeadlineExceeded));
    // The statement timeout (or the cancel) ends it on the server: it is gone from
    // pg_stat_activity, not left sleeping for a minute.
    assert!(
        wait_for(
            || sleeping.load(Ordering::SeqCst) == 0,
            Duration::from_secs(1)
        )
        .await,
        "the statement is still running on the server"
    );
    // A dropped call (a caller gone with a long deadline) is cancelled too.
    let slow = Arc::new(slow);
    let call = tokio::spawn({
        let slow = slow.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            slow.fetch(FetchRequest::one(KNOWN, "invoices", deadline))
                .await
        }
    });
    assert!(
        wait_for(
            || sleeping.load(Ordering::SeqCst) == 1,
            Duration::from_secs(2)
        )
        .await
    );
    call.abort();
    assert!(
        wait_for(
            || sleeping.load(Ordering::SeqCst) == 0,
            Duration::from_secs(1)
        )
        .await,
        "the dropped call's statement is still running on the server"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injection_attempts_in_a_local_id_stay_inert() -> anyhow::Result<()> {
    let (url, pool) = silo().await?;
    let adapter = adapter(&url, sections())?;
    for id in INJECTIONS {
        let request = FetchRequest {
            local_ids: vec![(*id).to_owned()],
            sections: vec!["invoices".to_owned(), "payments".to_owned()],
            deadline: Instant::now() + Duration::from_secs(5),
        };
        for result in adapter.fetch(request).await? {
            assert_eq!(result.records, Ok(Vec::new()), "{id:?}");
        }
    }
    let invoices: i64 = sqlx::query_scalar("SELECT count(*) FROM invoices")
        .fetch_one(&pool)
        .await?;
    assert_eq!(invoices, 4, "the table is intact");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_map_columns_and_render_postgres_types() -> anyhow::Result<()> {
    let (url, _pool) = silo().await?;
    let mut sections = sections();
    sections["typed"] = json!({
        "query": "SELECT 12.50::numeric AS amount, timestamptz '2026-01-02 03:04:05+00' AS at, \
                  '{\"a\": [1]}'::jsonb AS doc, date '2026-01-02' AS day WHERE $1 <> ''",
        "update_time": "at"
    });
    let adapter = adapter(&url, sections)?;
    let request = FetchRequest {
        local_ids: vec![KNOWN.to_owned()],
        sections: vec![
            "invoices".to_owned(),
            "typed".to_owned(),
            "balance".to_owned(),
        ],
        deadline: Instant::now() + Duration::from_secs(5),
    };
    let results = adapter.fetch(request).await?;
    let invoices = results[0].records.as_ref().expect("invoices");
    assert_eq!(invoices.len(), 2);
    assert_eq!(invoices[0].record_id.as_deref(), Some("2"), "newest first");
    let first: Value = serde_json::from_str(&invoices[1].json)?;
    assert_eq!(
        first,
        json!({"id": 1, "issued": "2026-01-05 10:00:00", "amount_cents": 12500,
               "status": "open", "lines": [{"code": "visit", "cents": 12500}]})
    );
    let typed = results[1].records.as_ref().expect("typed");
    let typed_json: Value = serde_json::from_str(&typed[0].json)?;
    assert_eq!(typed_json["amount"], json!(12.50));
    assert_eq!(typed_json["doc"], json!({"a": [1]}));
    assert_eq!(typed_json["day"], json!("2026-01-02"));
    assert_eq!(
        typed[0].update_time,
        Some(UNIX_EPOCH + Duration::from_secs(1_767_323_045))
    );
    let balance = results[2].records.as_ref().expect("balance");
    assert_eq!(
        serde_json::from_str::<Value>(&balance[0].json)?,
        json!({"open_cents": 12500})
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_past_the_limit_are_dropped_and_the_connection_is_read_only() -> anyhow::Result<()> {
    let (url, pool) = silo().await?;
    let mut sections = sections();
    sections["invoices"]["row_limit"] = json!(1);
    // A statement cannot modify data inside the adapter's wrapping subquery, and a
    // function that writes fails in the read-only session.
    sections["sneaky"] =
        json!({"query": "DELETE FROM payments WHERE patient_ref = $1 RETURNING id"});
    sections["writer"] = json!({"query": "SELECT nextval('tally') AS n WHERE $1 <> ''"});
    sqlx::query("CREATE SEQUENCE tally").execute(&pool).await?;
    let adapter = adapter(&url, sections)?;
    let request = FetchRequest {
        local_ids: vec![KNOWN.to_owned()],
        sections: vec![
            "invoices".to_owned(),
            "sneaky".to_owned(),
            "writer".to_owned(),
        ],
        deadline: Instant::now() + Duration::from_secs(5),
    };
    let results = adapter.fetch(request).await?;
    assert_eq!(results[0].records.as_ref().map(Vec::len), Ok(1));
    let err = results[1].records.as_ref().expect_err("not a query");
    assert_eq!(
        err.to_string(),
        "source unavailable: database error (code 42601)"
    );
    let err = results[2]
        .records
        .as_ref()
        .expect_err("a read-only session");
    // 25006: read_only_sql_transaction.
    assert_eq!(
        err.to_string(),
        "source unavailable: database error (code 25006)"
    );
    let payments: i64 = sqlx::query_scalar("SELECT count(*) FROM payments")
        .fetch_one(&pool)
        .await?;
    assert_eq!(payments, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_identity_feed_streams_demographics_incrementally() -> anyhow::Result<()> {
    let (url, _pool) = silo().await?;
    let adapter = adapter(&url, sections())?;
    assert!(adapter.describe().capabilities.incremental_identity_feed);
    let all: Vec<_> = adapter.identity_feed(None).collect().await;
    assert_eq!(all.len(), 2);
    let first = all[0].as_ref().expect("a record");
    assert_eq!(first.local_id, KNOWN);
    assert_eq!(first.demographics.family_name, "Okonkwo");
    assert_eq!(first.demographics.emails, ["adaeze@example.org"]);
    let since = UNIX_EPOCH + Duration::from_secs(1_769_904_000); // 2026-02-01
    let recent: Vec<_> = adapter.identity_feed(Some(since)).collect().await;
    assert_eq!(recent.len(), 1);
    assert_eq!(recent[0].as_ref().expect("a record").local_id, MALFORMED);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_a_cheap_query_and_names_no_url() -> anyhow::Result<()> {
    let (url, _pool) = silo().await?;
    assert_eq!(
        adapter(&url, sections())?.check().await.state,
        HealthState::Serving
    );
    let gone = "postgres://postgres:hunter2@localhost:5432/nowhere?host=/nonexistent";
    let health = adapter(gone, sections())?.check().await;
    assert_eq!(health.state, HealthState::NotServing);
    assert!(!health.message.contains("hunter2"), "{}", health.message);
    assert!(
        !health.message.contains("nonexistent"),
        "{}",
        health.message
    );
    Ok(())
}
