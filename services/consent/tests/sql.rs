//! The `sql` consent source over a real SQLite file.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use tessera_consent::{Consent, ConsentConfig, Decision, RecordKey, Withheld, build};
use tokio::time::Instant;

async fn database(dir: &Path, rows: &[&str]) {
    let options = SqliteConnectOptions::new()
        .filename(dir.join("consent.db"))
        .create_if_missing(true);
    let pool = SqlitePool::connect_with(options)
        .await
        .expect("test fixture");
    sqlx::query(
        "CREATE TABLE tessera_consent (system TEXT NOT NULL, local_id TEXT NOT NULL, \
         purpose TEXT NOT NULL, section TEXT NOT NULL, decision TEXT NOT NULL)",
    )
    .execute(&pool)
    .await
    .expect("test fixture");
    for row in rows {
        sqlx::query(&format!("INSERT INTO tessera_consent VALUES ({row})"))
            .execute(&pool)
            .await
            .expect("test fixture");
    }
    pool.close().await;
}

fn key(system: &str, local_id: &str) -> RecordKey {
    RecordKey {
        system: system.to_owned(),
        local_id: local_id.to_owned(),
    }
}

fn config() -> ConsentConfig {
    serde_yaml_ng::from_str(
        "source: { kind: sql, url: 'sqlite://consent.db' }\ngated: ['marketing.*', 'crm.*']\n",
    )
    .expect("test fixture")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_of_any_linked_record_decide_for_their_purpose() {
    let dir = tempfile::tempdir().expect("test fixture");
    database(
        dir.path(),
        &[
            "'crm', 'C1', 'HMARKT', 'marketing.*', 'deny'",
            "'ehr', 'E1', '*', 'crm.cases', 'deny'",
            "'crm', 'C2', 'HMARKT', 'marketing.*', 'deny'",
        ],
    )
    .await;
    let source = build(&config(), dir.path()).expect("test fixture");
    let person = [key("ehr", "E1"), key("crm", "C1")];

    let marketing = source
        .decisions(&person, "HMARKT")
        .await
        .expect("test fixture");
    assert_eq!(
        marketing.decide("HMARKT", "marketing", "campaigns"),
        Some(Decision::Deny)
    );
    assert_eq!(
        marketing.decide("HMARKT", "crm", "cases"),
        Some(Decision::Deny),
        "`*` rows apply to every purpose"
    );
    let treatment = source
        .decisions(&person, "TREAT")
        .await
        .expect("test fixture");
    assert_eq!(treatment.decide("TREAT", "marketing", "campaigns"), None);
    assert_eq!(treatment.rules.len(), 1, "only the rows of TREAT and `*`");

    let gate = Consent::new(&config(), source).expect("test fixture");
    let got = gate
        .check(
            &[key("crm", "C3")],
            "HMARKT",
            &[("marketing", "campaigns"), ("ehr", "encounters")],
            Instant::now() + Duration::from_secs(5),
        )
        .await;
    assert_eq!(got, [None, None], "another person's opt-out does not apply");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_row_or_a_missing_table_fails_closed() {
    let dir = tempfile::tempdir().expect("test fixture");
    database(dir.path(), &["'crm', 'C1', 'HMARKT', 'marketing', 'maybe'"]).await;
    let gate = Consent::new(
        &config(),
        build(&config(), dir.path()).expect("test fixture"),
    )
    .expect("test fixture");
    let got = gate
        .check(
            &[key("crm", "C1")],
            "HMARKT",
            &[("marketing", "campaigns"), ("ehr", "encounters")],
            Instant::now() + Duration::from_secs(5),
        )
        .await;
    assert_eq!(got, [Some(Withheld::Unavailable), None]);

    let empty = tempfile::tempdir().expect("test fixture");
    let source = build(&config(), empty.path()).expect("test fixture");
    let err = source
        .decisions(&[key("crm", "C1")], "HMARKT")
        .await
        .expect_err("refused");
    assert_eq!(err.to_string(), "consent database query failed");
}
