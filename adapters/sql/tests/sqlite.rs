//! The `sql` adapter against SQLite, built through the registry from a config
//! with a relative path: the conformance kit with a statement that never ends
//! (interrupted by the progress handler) and malformed rows, and injection.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use tessera_adapter_core::conformance::{self, Fixture, MalformedUpstream, SlowUpstream};
use tessera_adapter_core::{Adapter, BuildContext, FetchError, FetchRequest, Registry};
use tessera_adapter_sql::{SqlAdapter, SqlConfig, SqlKind};
use tokio::time::Instant;

/// A statement that never finishes on its own.
const ENDLESS: &str = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) \
     SELECT x AS id FROM c WHERE x < 0 AND $1 IS NOT NULL";

/// The billing silo in `billing.db` under a fresh directory, plus rows SQLite
/// cannot read as text.
async fn silo() -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    let options = SqliteConnectOptions::new()
        .filename(dir.path().join("billing.db"))
        .create_if_missing(true);
    let pool = SqlitePool::connect_with(options).await?;
    for sql in SCHEMA.iter().chain(DATA) {
        sqlx::query(sql).execute(&pool).await?;
    }
    // Not UTF-8: unreadable as text, so skipped and counted.
    sqlx::query(
        "INSERT INTO invoices VALUES (5, 'B-1002', '2026-02-09 10:00:00', 1, CAST(x'ff' AS TEXT), NULL)",
    )
    .execute(&pool)
    .await?;
    pool.close().await;
    Ok(dir)
}

fn config(sections: Value) -> Value {
    json!({
        "system": "billing",
        "url": "sqlite://billing.db",
        "sections": sections,
        "identity_feed": feed(),
    })
}

fn open(dir: &tempfile::TempDir, sections: Value) -> anyhow::Result<Arc<SqlAdapter>> {
    let config: SqlConfig = serde_json::from_value(config(sections))?;
    Ok(Arc::new(SqlAdapter::open(config, dir.path())?))
}

/// Whether SQLite is still stepping a statement: its progress counter keeps
/// moving (a statement that runs ticks it every thousand instructions; one that
/// was just interrupted ticks it once more, the tick that interrupts it).
fn progressing(adapter: &SqlAdapter) -> u64 {
    let ticks = || adapter.sqlite_progress().unwrap_or_default();
    let before = ticks();
    std::thread::sleep(Duration::from_millis(20));
    u64::from(ticks().saturating_sub(before) >= 3)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_adapter_passes_the_conformance_kit() -> anyhow::Result<()> {
    let dir = silo().await?;
    // Built as the gateway builds it: through the registry, path relative to
    // the config's directory.
    let registry = Registry::new().with(SqlKind);
    let context = BuildContext {
        name: "billing".to_owned(),
        base_dir: dir.path().to_owned(),
    };
    let built = registry.build("sql", &context, config(sections())).await?;
    let slow = open(&dir, json!({"invoices": {"query": ENDLESS}}))?;
    let watched = slow.clone();
    let fixture = Fixture {
        known_local_id: KNOWN.to_owned(),
        unknown_local_id: UNKNOWN.to_owned(),
        sensitive: SENSITIVE.iter().map(|s| (*s).to_owned()).collect(),
        slow: Some(SlowUpstream {
            adapter: slow,
            local_id: KNOWN.to_owned(),
            section: "invoices".to_owned(),
            upstream_in_flight: Arc::new(move || progressing(&watched)),
        }),
        malformed: Some(MalformedUpstream {
            adapter: built.adapter.clone(),
            local_id: MALFORMED.to_owned(),
            section: "invoices".to_owned(),
        }),
    };
    let report = conformance::run(built.adapter, &fixture).await;
    report.assert_passed();
    assert_eq!(report.skipped(), 0, "{report}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_statement_is_interrupted_at_the_deadline() -> anyhow::Result<()> {
    let dir = silo().await?;
    let slow = open(&dir, json!({"invoices": {"query": ENDLESS}}))?;
    let start = Instant::now();
    let request = FetchRequest::one(KNOWN, "invoices", start + Duration::from_millis(200));
    let results = slow.fetch(request).await?;
    assert!(
        start.elapsed() < Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(results[0].records, Err(FetchError::DeadlineExceeded));
    assert_eq!(
        progressing(&slow),
        0,
        "SQLite is still running the statement"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_rows_are_skipped_and_counted() -> anyhow::Result<()> {
    let dir = silo().await?;
    let adapter = open(&dir, sections())?;
    let request = FetchRequest::one(
        MALFORMED,
        "invoices",
        Instant::now() + Duration::from_secs(5),
    );
    let results = adapter.fetch(request).await?;
    // One good row; one with bad JSON in `lines`, one with text that is not UTF-8.
    assert_eq!(results[0].records.as_ref().map(Vec::len), Ok(1));
    assert_eq!(results[0].skipped_malformed, 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injection_attempts_in_a_local_id_stay_inert() -> anyhow::Result<()> {
    let dir = silo().await?;
    let adapter = open(&dir, sections())?;
    for id in INJECTIONS {
        let request = FetchRequest::one(id, "invoices", Instant::now() + Duration::from_secs(5));
        let results = adapter.fetch(request).await?;
        assert_eq!(results[0].records, Ok(Vec::new()), "{id:?}");
    }
    let request = FetchRequest::one(KNOWN, "invoices", Instant::now() + Duration::from_secs(5));
    let results = adapter.fetch(request).await?;
    assert_eq!(
        results[0].records.as_ref().map(Vec::len),
        Ok(2),
        "the table is intact"
    );
    Ok(())
}
