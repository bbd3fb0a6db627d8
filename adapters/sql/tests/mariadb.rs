//! The `sql` adapter against real MariaDB (tests/mariadb), through a `mysql://`
//! URL and a `mariadb://` one: the conformance kit with a stalled statement and
//! malformed rows, the slow statement stopped on the server (gone from the
//! processlist) at the deadline and when the call is dropped, injection attempts,
//! types, the row limit and the read-only session, the identity feed and health.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use common::*;
use futures_util::StreamExt;
use serde_json::{Value, json};
use sqlx::MySqlPool;
use tessera_adapter_core::conformance::{self, Fixture, MalformedUpstream, SlowUpstream};
use tessera_adapter_core::{Adapter, FetchError, FetchRequest, HealthCheck, HealthState};
use tessera_adapter_sql::{SqlAdapter, SqlConfig};
use tessera_test_mariadb::TestMariaDb;
use tokio::time::Instant;

/// The common silo in MariaDB's SQL: keys are VARCHAR, times DATETIME.
const SCHEMA_MARIADB: &[&str] = &[
    "CREATE TABLE accounts (account_ref VARCHAR(32) PRIMARY KEY, given_names TEXT, family_name TEXT,
        birth_date TEXT, sex TEXT, email TEXT, city TEXT, updated_at DATETIME NOT NULL)",
    "CREATE TABLE invoices (id INTEGER PRIMARY KEY, patient_ref VARCHAR(32) NOT NULL,
        issued_at DATETIME NOT NULL, amount_cents INTEGER NOT NULL, status TEXT NOT NULL,
        `lines` TEXT)",
    "CREATE TABLE payments (id VARCHAR(32) PRIMARY KEY, patient_ref VARCHAR(32) NOT NULL,
        paid_at DATETIME NOT NULL, amount_cents INTEGER NOT NULL)",
];

/// Sleeps a minute once, whatever the rows.
const SLOW_QUERY: &str = "SELECT i.id FROM invoices i CROSS JOIN (SELECT SLEEP(60) AS s) AS z \
     WHERE i.patient_ref = ?";

/// The statements of the test's database still sleeping, from the processlist.
const SLEEPING: &str = "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
     WHERE DB = DATABASE() AND COMMAND <> 'Sleep' AND INFO LIKE '%SLEEP(60)%' \
     AND ID <> CONNECTION_ID()";

/// A fresh database holding the billing silo, its `mysql://` URL, and a pool
/// for checking on it.
async fn silo() -> anyhow::Result<(String, MySqlPool)> {
    let url = TestMariaDb::shared()?.create_database()?;
    let pool = MySqlPool::connect(&url).await?;
    for sql in SCHEMA_MARIADB.iter().chain(DATA) {
        sqlx::query(sql).execute(&pool).await?;
    }
    Ok((url, pool))
}

/// `value` with every `$1` in its queries written as MySQL's `?`.
fn mysql(value: Value) -> Value {
    match value {
        Value::String(s) => Value::String(s.replace("$1", "?").replace(" lines", " `lines`")),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, mysql(v))).collect()),
        other => other,
    }
}

fn adapter(url: &str, sections: Value) -> anyhow::Result<SqlAdapter> {
    let config: SqlConfig = serde_json::from_value(json!({
        "system": "billing",
        "url": url,
        "sections": mysql(sections),
        "identity_feed": mysql(feed()),
    }))?;
    Ok(SqlAdapter::open(config, std::path::Path::new("."))?)
}

/// How many statements are sleeping, polled into a counter by a task of its own.
async fn sleeping_statements(pool: MySqlPool) -> Arc<AtomicU64> {
    let count = Arc::new(AtomicU64::new(0));
    let out = count.clone();
    tokio::spawn(async move {
        loop {
            if let Ok(n) = sqlx::query_scalar::<_, i64>(SLEEPING)
                .fetch_one(&pool)
                .await
            {
                out.store(n as u64, Ordering::SeqCst);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    count
}

/// The same count, read afresh (blocking the calling worker thread briefly).
fn sleeping_now(pool: &MySqlPool) -> u64 {
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
async fn mariadb_adapter_passes_the_conformance_kit() -> anyhow::Result<()> {
    let (url, pool) = silo().await?;
    // The same database through the `mariadb://` scheme.
    let main = Arc::new(adapter(&url.replacen("mysql:", "mariadb:", 1), sections())?);
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
async fn a_statement_that_outruns_the_deadline_is_stopped_on_the_server() -> anyhow::Result<()> {
    let (url, pool) = silo().await?;
    let sleeping = sleeping_statements(pool).await;
    let slow = adapter(&url, json!({"invoices": {"query": SLOW_QUERY}}))?;
    // A first call opens the pool's connection, so the timed one measures the
    // statement and not the connection.
    let warm = FetchRequest::one(UNKNOWN, "payments", Instant::now() + Duration::from_secs(5));
    let _ = slow.fetch(warm).await;
    let start = Instant::now();
    let request = FetchRequest::one(KNOWN, "invoices", start + Duration::from_millis(300));
    let results = slow.fetch(request).await?;
    let took = start.elapsed();
    assert!(took < Duration::from_millis(400), "took {took:?}");
    assert_eq!(results[0].records, Err(FetchError::DeadlineExceeded));
    // max_statement_time (or the KILL QUERY) ends it on the server: it is gone
    // from the processlist, not left sleeping for a minute.
    assert!(
        wait_for(
            || sleeping.load(Ordering::SeqCst) == 0,
            Duration::from_secs(1)
        )
        .await,
        "the statement is still running on the server"
    );
    // A dropped call (a caller gone with a long deadline) is killed too.
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
        .await,
        "the statement never showed in the processlist"
    );
    let dropped = Instant::now();
    call.abort();
    assert!(
        wait_for(
            || sleeping.load(Ordering::SeqCst) == 0,
            Duration::from_secs(1)
        )
        .await,
        "the dropped call's statement is still running on the server"
    );
    let gone_after = dropped.elapsed();
    assert!(gone_after < Duration::from_secs(1), "{gone_after:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injection_attempts_in_a_local_id_stay_inert() -> anyhow::Result<()> {
    let (url, pool) = silo().await?;
    let adapter = adapter(&url, sections())?;
    let mysql_specific = ["B-1001' -- ", "B-1001\\' OR 1=1 #", "B-1001' OR 1=1 /*"];
    for id in INJECTIONS.iter().chain(&mysql_specific) {
        let request = FetchRequest {
            local_ids: vec![(*id).to_owned()],
            sections: vec!["invoices".to_owned(), "payments".to_owned()],
            deadline: Instant::now() + Duration::from_secs(5),
        };
        for result in adapter.fetch(request).await? {
            assert_eq!(result.records, Ok(Vec::new()), "{id:?}");
        }
    }
    let invoices: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM invoices")
        .fetch_one(&pool)
        .await?;
    assert_eq!(invoices, 4, "the table is intact");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_map_columns_and_render_mariadb_types() -> anyhow::Result<()> {
    let (url, pool) = silo().await?;
    sqlx::query(
        "CREATE TABLE typed (ref VARCHAR(32), amount DECIMAL(10,2), at TIMESTAMP NULL, \
         local DATETIME(3), day DATE, flag BOOLEAN, doc JSON, big BIGINT UNSIGNED, \
         ratio DOUBLE, span TIME, kind ENUM('a','b'), nothing TEXT)",
    )
    .execute(&pool)
    .await?;
    sqlx::query(
        "INSERT INTO typed VALUES ('B-1001', 12.50, '2026-01-02 03:04:05', \
         '2026-01-02 03:04:05.250', '2026-01-02', TRUE, '{\"a\": [1]}', 18446744073709551615, \
         0.25, '12:30:00', 'b', NULL)",
    )
    .execute(&pool)
    .await?;
    let mut sections = sections();
    sections["typed"] = json!({
        "query": "SELECT amount, at, local, day, flag, doc, big, ratio, span, kind, nothing \
                  FROM typed WHERE ref = $1",
        "update_time": "at",
        "json_columns": ["doc"]
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
    assert_eq!(
        invoices[1].update_time,
        Some(UNIX_EPOCH + Duration::from_secs(1_767_607_200)),
        "2026-01-05 10:00:00 UTC"
    );
    let first: Value = serde_json::from_str(&invoices[1].json)?;
    assert_eq!(
        first,
        json!({"id": 1, "issued": "2026-01-05T10:00:00", "amount_cents": 12500,
               "status": "open", "lines": [{"code": "visit", "cents": 12500}]})
    );
    let typed = results[1].records.as_ref().expect("typed");
    let typed_json: Value = serde_json::from_str(&typed[0].json)?;
    assert_eq!(
        typed_json,
        json!({"amount": 12.5, "at": "2026-01-02T03:04:05Z", "local": "2026-01-02T03:04:05.250000",
               "day": "2026-01-02", "flag": true, "doc": {"a": [1]}, "big": 18_446_744_073_709_551_615_u64,
               "ratio": 0.25, "span": "12:30:00", "kind": "b", "nothing": null})
    );
    assert_eq!(
        typed[0].update_time,
        Some(UNIX_EPOCH + Duration::from_secs(1_767_323_045))
    );
    let balance = results[2].records.as_ref().expect("balance");
    let balance: Value = serde_json::from_str(&balance[0].json)?;
    // SUM of INTEGER is DECIMAL in MariaDB: a whole number all the same.
    assert_eq!(balance, json!({"open_cents": 12500}));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_past_the_limit_are_dropped_and_the_session_is_read_only() -> anyhow::Result<()> {
    let (url, pool) = silo().await?;
    sqlx::query(
        "CREATE FUNCTION record_payment() RETURNS INT MODIFIES SQL DATA \
         BEGIN INSERT INTO payments VALUES ('P-X', 'B-1001', NOW(), 1); RETURN 1; END",
    )
    .execute(&pool)
    .await?;
    let mut sections = sections();
    sections["invoices"]["row_limit"] = json!(1);
    // A statement that is not a query is refused when the adapter is built, and
    // a function that writes fails in the read-only session.
    let mut sneaky = sections.clone();
    sneaky["sneaky"] = json!({"query": "DELETE FROM payments WHERE patient_ref = $1"});
    let refused = adapter(&url, sneaky).expect_err("not a query");
    assert_eq!(
        refused.to_string(),
        "sections.sneaky.query: must be a SELECT (or WITH ... SELECT) query"
    );
    sections["writer"] = json!({"query": "SELECT record_payment() AS n FROM DUAL WHERE $1 <> ''"});
    let adapter = adapter(&url, sections)?;
    let request = FetchRequest {
        local_ids: vec![KNOWN.to_owned()],
        sections: vec!["invoices".to_owned(), "writer".to_owned()],
        deadline: Instant::now() + Duration::from_secs(5),
    };
    let results = adapter.fetch(request).await?;
    let invoices = results[0].records.as_ref().expect("invoices");
    assert_eq!(invoices.len(), 1);
    assert_eq!(invoices[0].record_id.as_deref(), Some("2"), "the newest");
    let err = results[1]
        .records
        .as_ref()
        .expect_err("a read-only session");
    // 25006: ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION.
    assert_eq!(
        err.to_string(),
        "source unavailable: database error (code 25006)"
    );
    let payments: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM payments")
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
    let gone = "mysql://root:hunter2@localhost/nowhere?socket=/nonexistent/mysqld.sock";
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

#[test]
fn a_mysql_query_with_postgres_placeholders_is_refused_at_build() {
    let config: SqlConfig = serde_json::from_value(json!({
        "system": "billing",
        "url": "mysql://root@localhost/billing",
        "sections": {"invoices": {"query": "SELECT * FROM invoices WHERE patient_ref = $1"}},
    }))
    .expect("parses");
    let err = SqlAdapter::open(config, std::path::Path::new(".")).expect_err("refused");
    assert_eq!(
        err.to_string(),
        "sections.invoices.query: MySQL and MariaDB take the parameter as `?`, not `$1`"
    );
}
