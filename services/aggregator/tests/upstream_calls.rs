//! Upstream calls per view, for the in-process adapter kinds: the SQL adapter
//! on SQLite cannot batch local IDs, so it is asked once per local ID for all
//! its sections; the FHIR NDJSON adapter batches, so it is asked once per view.
//! (The fake is counted in the crate's unit tests, the live FHIR adapter
//! against the FHIR test server in its own integration tests.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use tessera_adapter_core::{
    Adapter, BuildContext, BuiltAdapter, Description, FetchError, FetchRequest, FetchResult,
    Health, HealthCheck,
};
use tessera_aggregator::*;

/// An adapter that records the shape of every request it passes on.
struct Counting {
    inner: Arc<dyn Adapter>,
    /// (local IDs, sections) of each call.
    calls: Mutex<Vec<(Vec<String>, Vec<String>)>>,
}

#[async_trait]
impl Adapter for Counting {
    fn describe(&self) -> &Description {
        self.inner.describe()
    }

    async fn fetch(&self, request: FetchRequest) -> Result<Vec<FetchResult>, FetchError> {
        self.calls
            .lock()
            .expect("not poisoned")
            .push((request.local_ids.clone(), request.sections.clone()));
        self.inner.fetch(request).await
    }
}

#[async_trait]
impl HealthCheck for Counting {
    async fn check(&self) -> Health {
        Health::serving()
    }
}

struct Table(Identities);

#[async_trait]
impl IdentityLookup for Table {
    async fn identities(&self, _subject: &Subject) -> Result<Identities, LookupError> {
        Ok(self.0.clone())
    }
}

fn counted(adapter: Arc<dyn Adapter>) -> (Source, Arc<Counting>) {
    let counting = Arc::new(Counting {
        inner: adapter,
        calls: Mutex::default(),
    });
    let name = counting.describe().system.clone();
    let built = BuiltAdapter {
        adapter: counting.clone(),
        health: counting.clone(),
    };
    (Source::new(name, built, SourcePolicy::default()), counting)
}

async fn view(source: Source, system: &str, local_ids: &[&str]) -> View {
    let identities = Identities {
        master: "m1".to_owned(),
        records: local_ids
            .iter()
            .map(|id| SourceRef {
                system: system.to_owned(),
                local_id: (*id).to_owned(),
            })
            .collect(),
    };
    let agg = Aggregator::new(
        vec![source],
        Arc::new(Table(identities)),
        Arc::new(PurposePolicy::default()),
        ViewPolicy::default(),
    )
    .expect("one source");
    agg.view(ViewRequest {
        subject: Subject::Master("m1".to_owned()),
        sections: Vec::new(),
        purpose: Purpose::Treatment,
        max_staleness: None,
        deadline: agg.deadline(Some(Duration::from_secs(10))),
        caller: Caller::default(),
    })
    .await
    .expect("a view")
}

fn counts(records: &[ViewRecord]) -> HashMap<&str, usize> {
    let mut by_owner = HashMap::new();
    for record in records {
        *by_owner
            .entry(record.source_record.local_id.as_str())
            .or_default() += 1;
    }
    by_owner
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sql_adapter_is_asked_once_per_local_id_for_every_section() {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteConnectOptions::new()
        .filename(dir.path().join("billing.db"))
        .create_if_missing(true);
    let pool = SqlitePool::connect_with(options).await.unwrap();
    for sql in [
        "CREATE TABLE invoices (id INTEGER PRIMARY KEY, patient_ref TEXT NOT NULL, cents INTEGER)",
        "CREATE TABLE payments (id INTEGER PRIMARY KEY, patient_ref TEXT NOT NULL, cents INTEGER)",
        "INSERT INTO invoices VALUES (1, 'B1', 100), (2, 'B1', 200), (3, 'B2', 300)",
        "INSERT INTO payments VALUES (1, 'B2', 300)",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    pool.close().await;
    let config = serde_json::from_value(json!({
        "system": "billing",
        "url": "sqlite://billing.db",
        "sections": {
            "invoices": {"query": "SELECT id, cents FROM invoices WHERE patient_ref = $1", "record_id": "id"},
            "payments": {"query": "SELECT id, cents FROM payments WHERE patient_ref = $1", "record_id": "id"},
        },
    }))
    .unwrap();
    let sql = tessera_adapter_sql::SqlAdapter::open(config, dir.path()).unwrap();
    assert!(!sql.describe().capabilities.batch_fetch);
    let (source, counting) = counted(Arc::new(sql));

    let view = view(source, "billing", &["B1", "B2"]).await;

    assert!(view.statuses.iter().all(|s| s.state == SourceState::Ok));
    assert_eq!(
        counts(&view.sections["invoices"]),
        HashMap::from([("B1", 2), ("B2", 1)])
    );
    assert_eq!(
        counts(&view.sections["payments"]),
        HashMap::from([("B2", 1)])
    );
    let mut calls = counting.calls.lock().unwrap().clone();
    calls.sort();
    let sections = vec!["invoices".to_owned(), "payments".to_owned()];
    assert_eq!(
        calls,
        [
            (vec!["B1".to_owned()], sections.clone()),
            (vec!["B2".to_owned()], sections)
        ],
        "one call per local ID, with both sections"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ndjson_adapter_is_asked_once_per_view() {
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("export");
    std::fs::create_dir(&export).unwrap();
    for (name, text) in [
        (
            "Patient",
            "{\"resourceType\":\"Patient\",\"id\":\"P1\"}\n{\"resourceType\":\"Patient\",\"id\":\"P2\"}\n",
        ),
        (
            "Encounter",
            "{\"resourceType\":\"Encounter\",\"id\":\"e1\",\"status\":\"finished\",\"subject\":{\"reference\":\"Patient/P1\"}}\n\
             {\"resourceType\":\"Encounter\",\"id\":\"e2\",\"status\":\"finished\",\"subject\":{\"reference\":\"Patient/P2\"}}\n",
        ),
    ] {
        std::fs::write(export.join(format!("{name}.ndjson")), text).unwrap();
    }
    let context = BuildContext {
        name: "ehr".to_owned(),
        base_dir: dir.path().to_owned(),
    };
    let config = serde_json::from_value(json!({"dir": "export", "system": "ehr"})).unwrap();
    let ndjson = tessera_adapter_fhir_ndjson::NdjsonAdapter::open(&context, config)
        .await
        .unwrap();
    assert!(ndjson.describe().capabilities.batch_fetch);
    let (source, counting) = counted(Arc::new(ndjson));

    let view = view(source, "ehr", &["P1", "P2"]).await;

    assert!(view.statuses.iter().all(|s| s.state == SourceState::Ok));
    assert_eq!(
        counts(&view.sections["encounters"]),
        HashMap::from([("P1", 1), ("P2", 1)])
    );
    assert_eq!(
        counts(&view.sections["demographics"]),
        HashMap::from([("P1", 1), ("P2", 1)])
    );
    let calls = counting.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1, "one call for every local ID and section");
    assert_eq!(calls[0].0, ["P1", "P2"]);
    assert!(calls[0].1.len() >= 2, "{:?}", calls[0].1);
}
