//! One call per source per view: batches, their limits, and what is asked
//! again.

use std::sync::Mutex;

use super::*;

/// A fake with other batch capabilities than the fake's own.
pub(super) struct Capped {
    fake: Arc<FakeAdapter>,
    description: Description,
}

#[async_trait]
impl Adapter for Capped {
    fn describe(&self) -> &Description {
        &self.description
    }

    async fn fetch(&self, request: FetchRequest) -> Result<Vec<FetchResult>, FetchError> {
        assert!(
            self.description.capabilities.batch_fetch || request.local_ids.len() == 1,
            "more than one local ID for an adapter that cannot batch"
        );
        self.fake.fetch(request).await
    }
}

/// A source over a fake that batches up to `max_batch_size` local IDs, or
/// not at all.
pub(super) fn capped(
    config: FakeConfig,
    batch_fetch: bool,
    max_batch_size: usize,
    policy: SourcePolicy,
) -> (Source, Arc<FakeStats>) {
    let fake = Arc::new(FakeAdapter::new(config).expect("valid fake"));
    let stats = fake.stats();
    let mut description = fake.describe().clone();
    description.capabilities.batch_fetch = batch_fetch;
    description.capabilities.max_batch_size = max_batch_size;
    let name = description.system.clone();
    let built = BuiltAdapter {
        health: fake.clone(),
        adapter: Arc::new(Capped { fake, description }),
    };
    (Source::new(name, built, policy), stats)
}

fn ids(system: &str, n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (system.to_owned(), format!("{}{i}", system.to_uppercase())))
        .collect()
}

fn table_of(records: &[(String, String)]) -> Arc<Table> {
    let pairs: Vec<(&str, &str)> = records
        .iter()
        .map(|(s, l)| (s.as_str(), l.as_str()))
        .collect();
    table(&pairs)
}

#[tokio::test(start_paused = true)]
async fn a_batching_source_is_asked_once_per_view_for_every_local_id_and_section() {
    let (source, stats) = capped(
        FakeConfig::new("ehr", &["encounters", "conditions"], 10 * MS),
        true,
        100,
        SourcePolicy::default(),
    );
    let agg = aggregator(vec![source], table_of(&ids("ehr", 2)));
    let view = agg
        .view(request(&agg, Duration::from_secs(1)))
        .await
        .expect("view");
    assert_eq!(view.sections["encounters"].len(), 4, "two records each");
    assert_eq!(view.sections["conditions"].len(), 4);
    assert!(view.statuses.iter().all(|s| s.state == SourceState::Ok));
    assert_eq!(stats.calls(), 1, "2 local IDs × 2 sections in one call");
    assert_eq!(stats.pairs(), 4);
    // Every record still names the source record it belongs to.
    let owners: BTreeSet<&str> = view.sections["encounters"]
        .iter()
        .map(|r| r.source_record.local_id.as_str())
        .collect();
    assert_eq!(owners, BTreeSet::from(["EHR0", "EHR1"]));
}

#[tokio::test(start_paused = true)]
async fn a_source_that_cannot_batch_is_asked_once_per_local_id_for_all_sections() {
    let (source, stats) = capped(
        FakeConfig::new("crm", &["cases", "contacts"], 10 * MS),
        false,
        0,
        SourcePolicy::default(),
    );
    let agg = aggregator(vec![source], table_of(&ids("crm", 3)));
    let start = Instant::now();
    let view = agg
        .view(request(&agg, Duration::from_secs(1)))
        .await
        .expect("view");
    assert_eq!(view.sections["cases"].len(), 6);
    assert_eq!(stats.calls(), 3, "one call per local ID");
    assert_eq!(stats.pairs(), 6, "each with both sections");
    assert_eq!(start.elapsed(), 10 * MS, "the three calls run at once");
}

#[tokio::test(start_paused = true)]
async fn max_batch_size_chunks_the_local_ids_of_a_view() {
    let (source, stats) = capped(
        FakeConfig::new("billing", &["invoices"], 10 * MS),
        true,
        2,
        SourcePolicy::default(),
    );
    let agg = aggregator(vec![source], table_of(&ids("billing", 5)));
    let view = agg
        .view(request(&agg, Duration::from_secs(1)))
        .await
        .expect("view");
    assert_eq!(view.sections["invoices"].len(), 10);
    assert_eq!(stats.calls(), 3, "2 + 2 + 1 local IDs");
    assert_eq!(stats.pairs(), 5);
}

#[tokio::test(start_paused = true)]
async fn only_the_pairs_missing_from_the_cache_are_fetched_in_one_call() {
    let (source, stats) = capped(
        FakeConfig::new("ehr", &["encounters", "conditions"], 10 * MS),
        true,
        100,
        SourcePolicy::default(),
    );
    let agg = aggregator(vec![source], table_of(&ids("ehr", 3)));
    agg.view(request(&agg, Duration::from_secs(1)))
        .await
        .expect("cold view");
    assert_eq!((stats.calls(), stats.pairs()), (1, 6));
    // One record's conditions changed in the silo.
    agg.on_change(&ChangeEvent {
        record: SourceRef {
            system: "ehr".to_owned(),
            local_id: "EHR1".to_owned(),
        },
        sections: vec!["conditions".to_owned()],
    })
    .await;
    let view = agg
        .view(request(&agg, Duration::from_secs(1)))
        .await
        .expect("warm view");
    assert_eq!(view.sections["conditions"].len(), 6);
    assert_eq!(
        view.sections["conditions"]
            .iter()
            .filter(|r| !r.cache_hit)
            .count(),
        2,
        "only EHR1's conditions are fresh from the silo"
    );
    assert_eq!(
        (stats.calls(), stats.pairs()),
        (2, 7),
        "one more call, one pair"
    );
}

#[tokio::test(start_paused = true)]
async fn concurrent_views_sharing_keys_make_one_call_per_batch() {
    let (source, stats) = capped(
        FakeConfig::new("ehr", &["encounters", "conditions"], 10 * MS),
        true,
        100,
        SourcePolicy::default(),
    );
    let agg = aggregator(vec![source], table_of(&ids("ehr", 2)));
    let views = futures_util::future::join_all(
        (0..50).map(|_| agg.view(request(&agg, Duration::from_secs(1)))),
    )
    .await;
    assert!(views.iter().all(|v| {
        v.as_ref()
            .is_ok_and(|v| v.sections["conditions"].len() == 4)
    }));
    assert_eq!((stats.calls(), stats.pairs()), (1, 4));
    let cache = agg.cache_stats();
    assert_eq!(cache.misses(), 4, "one per key");
    assert_eq!(cache.coalesced(), 49 * 4, "every other view joined");
}

/// An adapter that fails some pairs retryably on its first call, recording
/// what each call asked for.
struct Flaky {
    description: Description,
    calls: Mutex<Vec<(Vec<String>, Vec<String>)>>,
}

#[async_trait]
impl Adapter for Flaky {
    fn describe(&self) -> &Description {
        &self.description
    }

    async fn fetch(&self, request: FetchRequest) -> Result<Vec<FetchResult>, FetchError> {
        let first = {
            let mut calls = self.calls.lock().expect("not poisoned");
            calls.push((request.local_ids.clone(), request.sections.clone()));
            calls.len() == 1
        };
        Ok(request
            .local_ids
            .iter()
            .flat_map(|id| request.sections.iter().map(move |s| (id, s)))
            .map(|(id, section)| FetchResult {
                local_id: id.clone(),
                section: section.clone(),
                records: if first && id == "E2" && section == "conditions" {
                    Err(FetchError::unavailable("busy"))
                } else {
                    Ok(vec![Record {
                        record_id: None,
                        json: Arc::from("{}"),
                        update_time: None,
                    }])
                },
                skipped_malformed: 0,
            })
            .collect())
    }
}

#[async_trait]
impl HealthCheck for Flaky {
    async fn check(&self) -> Health {
        Health::serving()
    }
}

#[tokio::test(start_paused = true)]
async fn a_retry_asks_again_only_for_the_pairs_that_failed_retryably() {
    let flaky = Arc::new(Flaky {
        description: Description {
            system: "ehr".to_owned(),
            sections: vec![
                SectionDescriptor::json("encounters", "visits"),
                SectionDescriptor::json("conditions", "problems"),
            ],
            capabilities: Capabilities {
                batch_fetch: true,
                max_batch_size: 10,
                ..Capabilities::default()
            },
            version: "flaky/0".to_owned(),
        },
        calls: Mutex::default(),
    });
    let built = BuiltAdapter {
        health: flaky.clone(),
        adapter: flaky.clone(),
    };
    let source = Source::new("ehr", built, SourcePolicy::default());
    let agg = aggregator(vec![source], table(&[("ehr", "E1"), ("ehr", "E2")]));
    let view = agg
        .view(request(&agg, Duration::from_secs(1)))
        .await
        .expect("view");
    assert!(view.statuses.iter().all(|s| s.state == SourceState::Ok));
    assert_eq!(view.sections["conditions"].len(), 2);
    let calls = flaky.calls.lock().expect("not poisoned").clone();
    assert_eq!(calls.len(), 2, "the batch, then one retry");
    assert_eq!(calls[0].0, ["E1", "E2"]);
    assert_eq!(
        calls[1],
        (vec!["E2".to_owned()], vec!["conditions".to_owned()])
    );
    assert_eq!(agg.sources()[0].stats().retries(), 1);
}
