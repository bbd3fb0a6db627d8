//! Store tests. Each runs against every backend: embedded SQLite (a temporary file)
//! and PostgreSQL (a real server started by the test harness).

use tessera_matching::{Decision, Demographics, FieldWeight, SourceKey};

use super::*;

/// A fresh, empty store for each backend, with a label for failure messages.
async fn backends() -> Vec<(&'static str, SqlStore, Option<tempfile::TempDir>)> {
    let mut out = Vec::new();
    for (label, url, dir) in crate::test_backends::urls().await {
        out.push((label, SqlStore::open(&url).await.unwrap(), dir));
    }
    out
}

fn demo(given: &str, family: &str) -> Demographics {
    Demographics {
        given_names: vec![given.to_owned()],
        family_name: family.to_owned(),
        birth_date: "1980-02-01".to_owned(),
        ..Demographics::default()
    }
}

fn link(record: RecordId, master: MasterId, source: LinkSource) -> Link {
    Link {
        record,
        master,
        decision: Decision::Match,
        link_source: source,
        score: 12.5,
        field_weights: vec![FieldWeight {
            field: "family_name".to_owned(),
            level: "exact".to_owned(),
            weight: 8.25,
            term_frequency_adjustment: -0.5,
        }],
        created_at: 1,
        updated_at: 1,
    }
}

/// Stores a record on a new master of its own; returns (record, master).
async fn seed(store: &SqlStore, system: &str, local_id: &str) -> (RecordId, MasterId) {
    let mut tx = store.begin().await.unwrap();
    let key = SourceKey::new(system, local_id);
    let record = tx
        .insert_record(&key, &demo("Ann", "Lee"), Some(7))
        .await
        .unwrap();
    let master = tx.create_master().await.unwrap();
    tx.set_link(&link(record, master, LinkSource::Auto))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    (record, master)
}

#[tokio::test]
async fn committed_record_reads_back_with_its_link() {
    for (backend, store, _dir) in backends().await {
        let (record, master) = seed(&store, "ehr", "MRN-1").await;
        let stored = store
            .record_by_key(&SourceKey::new("ehr", "MRN-1"))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{backend}: record missing"));
        assert_eq!(stored.id, record, "{backend}");
        assert_eq!(stored.demographics, demo("Ann", "Lee"), "{backend}");
        assert_eq!(stored.source_updated_at, Some(7), "{backend}");
        let l = stored.link.unwrap();
        assert_eq!(
            (l.master, l.link_source, l.score),
            (master, LinkSource::Auto, 12.5),
            "{backend}"
        );
        assert_eq!(l.field_weights[0].weight, 8.25, "{backend}");

        let index = store.load_index().await.unwrap();
        assert_eq!(index.len(), 1, "{backend}");
        assert_eq!(
            (index[0].record, &index[0].key, index[0].master),
            (record, &SourceKey::new("ehr", "MRN-1"), master),
            "{backend}"
        );
        assert_eq!(
            store.load_masters().await.unwrap(),
            vec![(master, None)],
            "{backend}"
        );
        assert_eq!(store.shared(), backend == "postgres", "{backend}");
        assert_eq!(store.counts().await.unwrap(), (1, 1), "{backend}");
        assert!(
            store
                .record_by_key(&SourceKey::new("ehr", "MRN-2"))
                .await
                .unwrap()
                .is_none()
        );
    }
}

#[tokio::test]
async fn an_uncommitted_transaction_leaves_nothing_behind() {
    for (backend, store, _dir) in backends().await {
        {
            let mut tx = store.begin().await.unwrap();
            let key = SourceKey::new("ehr", "MRN-9");
            let record = tx
                .insert_record(&key, &demo("Bo", "Ng"), None)
                .await
                .unwrap();
            let master = tx.create_master().await.unwrap();
            tx.set_link(&link(record, master, LinkSource::Auto))
                .await
                .unwrap();
            // Dropped without commit, as when the process dies mid-upsert.
        }
        assert!(
            store
                .record_by_key(&SourceKey::new("ehr", "MRN-9"))
                .await
                .unwrap()
                .is_none(),
            "{backend}: half-written record visible"
        );
        assert_eq!(store.counts().await.unwrap(), (0, 0), "{backend}");
        assert!(store.load_index().await.unwrap().is_empty(), "{backend}");
    }
}

#[tokio::test]
async fn a_duplicate_key_is_rejected_and_rolls_back() {
    for (backend, store, _dir) in backends().await {
        seed(&store, "ehr", "MRN-1").await;
        let mut tx = store.begin().await.unwrap();
        let master = tx.create_master().await.unwrap();
        assert!(master > 0);
        let err = tx
            .insert_record(&SourceKey::new("ehr", "MRN-1"), &demo("X", "Y"), None)
            .await;
        assert!(err.is_err(), "{backend}: duplicate key accepted");
        drop(tx);
        assert_eq!(store.counts().await.unwrap(), (1, 1), "{backend}");
    }
}

#[tokio::test]
async fn merge_moves_links_and_redirects_the_loser() {
    for (backend, store, _dir) in backends().await {
        let (r1, winner) = seed(&store, "ehr", "A").await;
        let (r2, loser) = seed(&store, "crm", "B").await;
        let mut tx = store.begin().await.unwrap();
        let moved = tx.move_links(loser, winner).await.unwrap();
        tx.mark_merged(loser, winner).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(moved, vec![r2], "{backend}");

        let records = store.master_records(winner).await.unwrap();
        assert_eq!(
            records.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![r1, r2],
            "{backend}"
        );
        let moved_link = records[1].link.as_ref().unwrap();
        assert_eq!(moved_link.link_source, LinkSource::Manual, "{backend}");
        let loser_row = store.master(loser).await.unwrap().unwrap();
        assert_eq!(loser_row.state, MasterState::Merged, "{backend}");
        assert_eq!(loser_row.merged_into, Some(winner), "{backend}");
        assert!(
            store.master_records(loser).await.unwrap().is_empty(),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn no_match_decisions_are_kept_per_record() {
    for (backend, store, _dir) in backends().await {
        let (record, _) = seed(&store, "ehr", "A").await;
        let (_, other) = seed(&store, "crm", "B").await;
        let mut tx = store.begin().await.unwrap();
        tx.add_no_match(record, other).await.unwrap();
        tx.add_no_match(record, other).await.unwrap();
        assert_eq!(
            tx.no_match_masters(record).await.unwrap(),
            vec![other],
            "{backend}"
        );
        tx.remove_no_match(record, other).await.unwrap();
        assert!(
            tx.no_match_masters(record).await.unwrap().is_empty(),
            "{backend}"
        );
        tx.commit().await.unwrap();
    }
}

#[tokio::test]
async fn review_items_open_resolve_and_count() {
    for (backend, store, _dir) in backends().await {
        let (r1, m1) = seed(&store, "ehr", "A").await;
        let (r2, m2) = seed(&store, "crm", "B").await;
        let candidate = ReviewCandidate {
            master: m1,
            score: 4.0,
            probability: 0.6,
            field_weights: vec![],
        };
        let mut tx = store.begin().await.unwrap();
        let first = tx
            .open_review(r2, m2, std::slice::from_ref(&candidate))
            .await
            .unwrap();
        let second = tx.open_review(r1, m1, &[]).await.unwrap();
        tx.commit().await.unwrap();

        let page = Page {
            after: None,
            limit: 1,
        };
        let (items, total) = store
            .list_review_items(Some(ReviewState::Open), page)
            .await
            .unwrap();
        assert_eq!((items.len(), total), (1, 2), "{backend}");
        assert_eq!(items[0].id, first, "{backend}");
        assert_eq!(items[0].key, SourceKey::new("crm", "B"), "{backend}");
        assert_eq!(items[0].candidates, vec![candidate.clone()], "{backend}");
        let next = Page {
            after: Some(first),
            limit: 10,
        };
        let (items, _) = store
            .list_review_items(Some(ReviewState::Open), next)
            .await
            .unwrap();
        assert_eq!(
            items.iter().map(|i| i.id).collect::<Vec<_>>(),
            vec![second],
            "{backend}"
        );

        let mut tx = store.begin().await.unwrap();
        let resolved = tx
            .resolve_reviews(r2, ReviewOutcome::Linked, m1)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(resolved, vec![first], "{backend}");
        let item = store.review_item(first).await.unwrap().unwrap();
        assert_eq!(item.state, ReviewState::Resolved, "{backend}");
        assert_eq!(item.outcome, Some(ReviewOutcome::Linked), "{backend}");
        assert_eq!(item.resolved_master, Some(m1), "{backend}");
        let all = Page {
            after: None,
            limit: 10,
        };
        assert_eq!(
            store
                .list_review_items(Some(ReviewState::Open), all)
                .await
                .unwrap()
                .1,
            1
        );
        assert_eq!(
            store.list_review_items(None, all).await.unwrap().1,
            2,
            "{backend}"
        );
    }
}

#[tokio::test]
async fn link_events_list_newest_first_in_pages() {
    for (backend, store, _dir) in backends().await {
        let (record, master) = seed(&store, "ehr", "A").await;
        let mut tx = store.begin().await.unwrap();
        let mut ids = Vec::new();
        for event_type in [
            EventType::Linked,
            EventType::RecordUpdated,
            EventType::Unmerged,
        ] {
            let event = NewEvent {
                master,
                event_type,
                record: Some(record),
                other_master: None,
                decision: Some(Decision::Match),
                link_source: Some(LinkSource::Manual),
                score: 1.5,
                field_weights: vec![],
                actor: "reviewer@example.org".to_owned(),
                request_id: "r-1".to_owned(),
            };
            ids.push(tx.add_event(&event).await.unwrap());
        }
        tx.commit().await.unwrap();
        let page = store
            .list_link_events(
                master,
                Page {
                    after: None,
                    limit: 2,
                },
            )
            .await
            .unwrap();
        assert_eq!(
            page.iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![ids[2], ids[1]],
            "{backend}"
        );
        assert_eq!(page[0].event.event_type, EventType::Unmerged, "{backend}");
        assert_eq!(page[0].key, Some(SourceKey::new("ehr", "A")), "{backend}");
        let rest = store
            .list_link_events(
                master,
                Page {
                    after: Some(ids[1]),
                    limit: 2,
                },
            )
            .await
            .unwrap();
        assert_eq!(
            rest.iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![ids[0]],
            "{backend}"
        );
    }
}

#[tokio::test]
async fn links_filter_by_master_source_and_system_and_page() {
    for (backend, store, _dir) in backends().await {
        let (r1, m1) = seed(&store, "ehr", "A").await;
        let (r2, _) = seed(&store, "crm", "B").await;
        let mut tx = store.begin().await.unwrap();
        tx.set_link(&link(r2, m1, LinkSource::Manual))
            .await
            .unwrap();
        tx.commit().await.unwrap();

        let all = Page {
            after: None,
            limit: 10,
        };
        let of_master = LinkFilter {
            master: Some(m1),
            ..LinkFilter::default()
        };
        let links = store.list_links(&of_master, all).await.unwrap();
        assert_eq!(
            links.iter().map(|l| l.link.record).collect::<Vec<_>>(),
            vec![r1, r2],
            "{backend}"
        );
        let manual = LinkFilter {
            link_source: Some(LinkSource::Manual),
            ..LinkFilter::default()
        };
        let links = store.list_links(&manual, all).await.unwrap();
        assert_eq!(links.len(), 1, "{backend}");
        assert_eq!(links[0].key, SourceKey::new("crm", "B"), "{backend}");
        let ehr = LinkFilter {
            system: Some("ehr".to_owned()),
            ..LinkFilter::default()
        };
        assert_eq!(
            store.list_links(&ehr, all).await.unwrap().len(),
            1,
            "{backend}"
        );
        let second_page = Page {
            after: Some(r1),
            limit: 10,
        };
        let links = store
            .list_links(&LinkFilter::default(), second_page)
            .await
            .unwrap();
        assert_eq!(
            links.iter().map(|l| l.link.record).collect::<Vec<_>>(),
            vec![r2],
            "{backend}"
        );
    }
}

#[tokio::test]
async fn stored_responses_replay_and_a_reused_id_is_rejected() {
    for (backend, store, _dir) in backends().await {
        let response = StoredResponse {
            method: "UpsertSourceRecord".to_owned(),
            fingerprint: "abc".to_owned(),
            response: "{\"master\":1}".to_owned(),
        };
        let mut tx = store.begin().await.unwrap();
        tx.save_response("req-1", &response).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(
            store.stored_response("req-1").await.unwrap(),
            Some(response.clone()),
            "{backend}"
        );
        assert_eq!(
            store.stored_response("req-2").await.unwrap(),
            None,
            "{backend}"
        );
        let mut tx = store.begin().await.unwrap();
        assert!(
            tx.save_response("req-1", &response).await.is_err(),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn unsupported_urls_are_refused() {
    let err = SqlStore::open("mysql://localhost/x").await.unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedUrl));
}

#[tokio::test]
async fn a_new_sqlite_store_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data").join("identity");
    let file = dir.join("identity.db");
    let store = SqlStore::open(&format!("sqlite://{}", file.display()))
        .await
        .unwrap();
    seed(&store, "ehr", "A").await;
    assert_eq!(mode(&file), 0o600, "database file");
    for suffix in ["-wal", "-shm"] {
        let side = dir.join(format!("identity.db{suffix}"));
        assert_eq!(mode(&side), 0o600, "{suffix} file");
    }
    assert_eq!(mode(&dir), 0o700, "directory created for the store");
    assert_eq!(
        mode(&tmp.path().join("data")),
        0o700,
        "its parent, created too"
    );
}

#[tokio::test]
async fn a_postgres_store_opens_over_verified_tls_and_refuses_another_ca() {
    use tessera_test_postgres::{ServerTls, TestPostgres};
    let certs = tempfile::tempdir().unwrap();
    let (tls, ca) = ServerTls::generate(&certs.path().join("server")).unwrap();
    let (_, other_ca) = ServerTls::generate(&certs.path().join("other")).unwrap();
    let postgres = TestPostgres::start_tls(&tls).unwrap();
    let base = postgres.tcp_url("postgres").unwrap();

    let url = format!("{base}?sslmode=verify-full&sslrootcert={}", ca.display());
    let store = SqlStore::open(&url).await.unwrap();
    let (record, _) = seed(&store, "ehr", "A").await;
    let stored = store
        .record_by_key(&SourceKey::new("ehr", "A"))
        .await
        .unwrap();
    assert_eq!(stored.map(|r| r.id), Some(record));

    let url = format!(
        "{base}?sslmode=verify-full&sslrootcert={}",
        other_ca.display()
    );
    let err = SqlStore::open(&url).await.unwrap_err();
    assert!(matches!(err, StoreError::Database(_)), "{err}");
    let err = SqlStore::open(&format!("{base}?sslmode=disable"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Database(_)), "{err}");
}

#[tokio::test]
async fn bulk_load_links_clusters_and_later_inserts_do_not_collide() {
    for (backend, store, _dir) in backends().await {
        let (existing, existing_master) = seed(&store, "ehr", "OLD").await;
        let records = vec![
            (SourceKey::new("ehr", "A"), demo("Ann", "Lee")),
            (SourceKey::new("crm", "A2"), demo("Ann", "Lee")),
            (SourceKey::new("ehr", "B"), demo("Bo", "Ng")),
        ];
        let masters = bulk_load(&store, &records, &[7, 7, 9]).await.unwrap();
        assert_eq!(masters[0], masters[1], "{backend}");
        assert_ne!(masters[0], masters[2], "{backend}");
        assert!(masters.iter().all(|m| *m > existing_master), "{backend}");
        let a2 = store
            .record_by_key(&SourceKey::new("crm", "A2"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(a2.link.unwrap().master, masters[0], "{backend}");
        assert!(a2.id > existing, "{backend}");
        assert_eq!(store.counts().await.unwrap(), (4, 3), "{backend}");
        let history = store
            .list_link_events(
                masters[0],
                Page {
                    after: None,
                    limit: 10,
                },
            )
            .await
            .unwrap();
        assert_eq!(history.len(), 2, "{backend}");

        // Ids assigned by the load must not be handed out again.
        let (next_record, next_master) = seed(&store, "ehr", "NEW").await;
        assert!(next_record > a2.id && next_master > masters[2], "{backend}");

        // A repeated key is refused before anything is written.
        let dup = vec![
            (SourceKey::new("ehr", "X"), demo("X", "Y")),
            (SourceKey::new("ehr", "X"), demo("X", "Z")),
        ];
        let err = bulk_load(&store, &dup, &[1, 2]).await.unwrap_err();
        assert!(
            matches!(
                err,
                BulkLoadError::DuplicateKey {
                    first: 1,
                    second: 2
                }
            ),
            "{backend}: {err}"
        );
        // A key already stored fails the whole load.
        let clash = vec![
            (SourceKey::new("ehr", "Y"), demo("Y", "Y")),
            (SourceKey::new("ehr", "A"), demo("Ann", "Lee")),
        ];
        assert!(
            bulk_load(&store, &clash, &[1, 2]).await.is_err(),
            "{backend}"
        );
        assert!(
            store
                .record_by_key(&SourceKey::new("ehr", "Y"))
                .await
                .unwrap()
                .is_none(),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn cluster_of_returns_the_whole_cluster_in_one_query() {
    for (backend, store, _dir) in backends().await {
        let (r1, m1) = seed(&store, "ehr", "A").await;
        let (r2, _) = seed(&store, "crm", "B").await;
        let (r3, _) = seed(&store, "crm", "C").await;
        let mut tx = store.begin().await.unwrap();
        tx.set_link(&link(r2, m1, LinkSource::Manual))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let cluster = store.cluster_of(&SourceKey::new("crm", "B")).await.unwrap();
        assert_eq!(
            cluster.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![r1, r2],
            "{backend}"
        );
        let alone = store.cluster_of(&SourceKey::new("crm", "C")).await.unwrap();
        assert_eq!(
            alone.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![r3],
            "{backend}"
        );
        assert!(
            store
                .cluster_of(&SourceKey::new("crm", "Z"))
                .await
                .unwrap()
                .is_empty(),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn cluster_and_master_keys_list_the_linked_records_keys() {
    for (backend, store, _dir) in backends().await {
        let (_, m1) = seed(&store, "ehr", "A").await;
        let (r2, _) = seed(&store, "crm", "B").await;
        let (_, m3) = seed(&store, "crm", "C").await;
        let mut tx = store.begin().await.unwrap();
        tx.set_link(&link(r2, m1, LinkSource::Manual))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let both = vec![SourceKey::new("ehr", "A"), SourceKey::new("crm", "B")];
        let (row, keys) = store.master_keys(m1).await.unwrap().unwrap();
        assert_eq!((row.id, keys), (m1, both.clone()), "{backend}");
        assert!(
            store.master_keys(999_999).await.unwrap().is_none(),
            "{backend}"
        );
        assert_eq!(
            store
                .cluster_keys(&SourceKey::new("crm", "B"))
                .await
                .unwrap(),
            Some((m1, both)),
            "{backend}"
        );
        assert_eq!(
            store
                .cluster_keys(&SourceKey::new("crm", "C"))
                .await
                .unwrap(),
            Some((m3, vec![SourceKey::new("crm", "C")])),
            "{backend}"
        );
        assert_eq!(
            store
                .cluster_keys(&SourceKey::new("crm", "Z"))
                .await
                .unwrap(),
            None,
            "{backend}"
        );
    }
}
