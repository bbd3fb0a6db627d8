//! Workflow tests over a real store (embedded SQLite and PostgreSQL) and the
//! built-in matching model.

use std::sync::Arc;

use tessera_matching::{Address, Decision, Demographics, Model, Sex, SourceKey};

use super::*;
use crate::store::{EventType, LinkFilter, LinkSource, Page, ReviewState, SqlStore};

struct Fixture {
    label: &'static str,
    store: Arc<dyn IdentityStore>,
    resolver: Resolver,
    _dir: Option<tempfile::TempDir>,
}

impl Fixture {
    /// An anonymous upsert that must succeed.
    async fn upsert(&self, system: &str, local_id: &str, who: Demographics) -> UpsertOutcome {
        self.resolver
            .upsert(input(system, local_id, who), &anonymous())
            .await
            .unwrap()
    }
}

/// A resolver over a fresh store on each backend.
async fn fixtures() -> Vec<Fixture> {
    let mut out = Vec::new();
    for (label, url, dir) in crate::test_backends::urls().await {
        let store: Arc<dyn IdentityStore> = Arc::new(SqlStore::open(&url).await.unwrap());
        let resolver = open(&store).await;
        out.push(Fixture {
            label,
            store,
            resolver,
            _dir: dir,
        });
    }
    out
}

async fn open(store: &Arc<dyn IdentityStore>) -> Resolver {
    let config = ResolverConfig {
        source_priority: vec!["ehr".to_owned(), "billing".to_owned()],
        ..ResolverConfig::default()
    };
    Resolver::open(Arc::clone(store), Arc::new(Model::builtin()), config)
        .await
        .unwrap()
}

fn person(given: &str, family: &str, birth: &str, phone: &str, ssn: &str) -> Demographics {
    Demographics {
        given_names: vec![given.to_owned()],
        family_name: family.to_owned(),
        birth_date: birth.to_owned(),
        sex: Sex::Female,
        addresses: vec![Address {
            lines: vec!["12 Harbour Street".to_owned()],
            city: "Springfield".to_owned(),
            state: "IL".to_owned(),
            postal_code: "62704".to_owned(),
            country: String::new(),
        }],
        phones: vec![phone.to_owned()],
        emails: Vec::new(),
        national_id: ssn.to_owned(),
        ..Demographics::default()
    }
}

fn alice() -> Demographics {
    person(
        "Alice",
        "Okonkwo",
        "1984-06-12",
        "(217) 555-0134",
        "219-09-9999",
    )
}

fn bob() -> Demographics {
    person(
        "Robert",
        "Lindqvist",
        "1950-11-30",
        "(312) 555-0199",
        "078-05-1120",
    )
}

fn input(system: &str, local_id: &str, demographics: Demographics) -> UpsertInput {
    UpsertInput {
        key: SourceKey::new(system, local_id),
        demographics,
        source_updated_at: None,
        validate_only: false,
    }
}

fn anonymous() -> Mutation {
    Mutation::default()
}

fn with_id(request_id: &str) -> Mutation {
    Mutation {
        actor: "reviewer@example.org".to_owned(),
        request_id: request_id.to_owned(),
    }
}

#[tokio::test]
async fn the_same_person_in_two_silos_gets_one_master() {
    for f in fixtures().await {
        let first = f.upsert("ehr", "MRN1", alice()).await;
        assert_eq!(first.decision, Decision::NoMatch, "{}", f.label);
        let mut crm = alice();
        crm.given_names = vec!["ALICE".to_owned()];
        crm.phones = vec!["217.555.0134".to_owned()];
        let second = f.upsert("crm", "C-9", crm).await;
        assert_eq!(second.decision, Decision::Match, "{}", f.label);
        assert_eq!(second.master, first.master, "{}", f.label);
        assert!(
            !second.field_weights.is_empty(),
            "{}: no explanation",
            f.label
        );

        let resolution = f
            .resolver
            .resolve(&SourceKey::new("crm", "C-9"))
            .await
            .unwrap();
        assert_eq!(Some(resolution.master), first.master, "{}", f.label);
        let keys: Vec<_> = resolution
            .records
            .iter()
            .map(|r| r.key.local_id.as_str())
            .collect();
        assert_eq!(keys, ["MRN1", "C-9"], "{}", f.label);
    }
}

#[tokio::test]
async fn twins_stay_apart() {
    for f in fixtures().await {
        let a = f
            .resolver
            .upsert(
                input(
                    "ehr",
                    "T1",
                    person("Chidi", "Eze", "2001-03-09", "555-010-2222", ""),
                ),
                &anonymous(),
            )
            .await
            .unwrap();
        let b = f
            .resolver
            .upsert(
                input(
                    "ehr",
                    "T2",
                    person("Chika", "Eze", "2001-03-09", "555-010-2222", ""),
                ),
                &anonymous(),
            )
            .await
            .unwrap();
        assert_ne!(a.master, b.master, "{}: twins merged", f.label);
        assert_ne!(b.decision, Decision::Match, "{}", f.label);
    }
}

#[tokio::test]
async fn junior_and_senior_stay_apart() {
    for f in fixtures().await {
        let mut senior = person("James", "Whitfield", "1961-04-02", "(555) 201-3344", "");
        senior.sex = Sex::Male;
        senior.name_suffix = "SR".to_owned();
        let mut junior = person("James", "Whitfield", "1989-09-17", "(555) 201-3344", "");
        junior.sex = Sex::Male;
        let s = f.upsert("ehr", "J1", senior).await;
        let j = f.upsert("crm", "J2", junior).await;
        assert_ne!(s.master, j.master, "{}: junior merged into senior", f.label);
        assert_ne!(j.decision, Decision::Match, "{}", f.label);
    }
}

#[tokio::test]
async fn household_members_sharing_address_phone_and_email_stay_apart() {
    for f in fixtures().await {
        let mut wife = person("Priya", "Raman", "1987-02-14", "(555) 777-1200", "");
        wife.emails = vec!["ramanfamily@example.com".to_owned()];
        let mut husband = person("Arjun", "Raman", "1985-10-03", "(555) 777-1200", "");
        husband.sex = Sex::Male;
        husband.emails = wife.emails.clone();
        let mut daughter = person("Asha", "Raman", "2014-06-30", "(555) 777-1200", "");
        daughter.emails = wife.emails.clone();
        let mut masters = Vec::new();
        for (id, member) in [("H1", wife), ("H2", husband), ("H3", daughter)] {
            masters.push(
                f.resolver
                    .upsert(input("billing", id, member), &anonymous())
                    .await
                    .unwrap()
                    .master,
            );
        }
        masters.sort();
        masters.dedup();
        assert_eq!(masters.len(), 3, "{}: household members merged", f.label);
    }
}

#[tokio::test]
async fn a_manual_unmerge_survives_rematching() {
    for f in fixtures().await {
        let a = f.upsert("ehr", "A", alice()).await;
        let b = f.upsert("billing", "B", alice()).await;
        assert_eq!(a.master, b.master, "{}", f.label);

        let unmerged = f
            .resolver
            .unmerge(&SourceKey::new("billing", "B"), &with_id("u-1"))
            .await
            .unwrap();
        assert_eq!(Some(unmerged.previous.master.id), a.master, "{}", f.label);
        let new_master = unmerged.new.master.id;
        assert_ne!(Some(new_master), a.master, "{}", f.label);

        // The silo sends the same record again, and the other record too.
        let again = f.upsert("billing", "B", alice()).await;
        assert_eq!(
            again.master,
            Some(new_master),
            "{}: manual unmerge overridden",
            f.label
        );
        assert!(again.manual_link_kept, "{}", f.label);
        f.resolver
            .upsert(input("ehr", "A", alice()), &anonymous())
            .await
            .unwrap();
        let b = f
            .resolver
            .resolve(&SourceKey::new("billing", "B"))
            .await
            .unwrap();
        assert_eq!(b.master, new_master, "{}", f.label);

        // A new record matching both masters a person kept apart is not
        // auto-linked to either: it goes to review with both as candidates.
        let c = f.upsert("crm", "C", alice()).await;
        assert_eq!(c.decision, Decision::PossibleMatch, "{}", f.label);
        assert!(
            c.master != a.master && c.master != Some(new_master),
            "{}",
            f.label
        );
        let (items, _) = f
            .resolver
            .list_review_items(
                Some(ReviewState::Open),
                Page {
                    after: None,
                    limit: 10,
                },
            )
            .await
            .unwrap();
        let mut candidates: Vec<_> = items[0].candidates.iter().map(|c| Some(c.master)).collect();
        candidates.sort();
        let mut expected = vec![a.master, Some(new_master)];
        expected.sort();
        assert_eq!(candidates, expected, "{}", f.label);
    }
}

#[tokio::test]
async fn merge_then_unmerge_restores_both_golden_records() {
    for f in fixtures().await {
        let a = f.upsert("ehr", "A", alice()).await;
        let b = f.upsert("crm", "B", bob()).await;
        let (ma, mb) = (a.master.unwrap(), b.master.unwrap());
        assert_ne!(ma, mb, "{}", f.label);
        let golden_a = f.resolver.master(ma).await.unwrap().golden;
        let golden_b = f.resolver.master(mb).await.unwrap().golden;

        let merged = f.resolver.merge(ma, mb, &with_id("m-1")).await.unwrap();
        assert_eq!(merged.record_count, 2, "{}", f.label);
        // The merged-away master redirects to the winner.
        assert_eq!(
            f.resolver.master(mb).await.unwrap().master.id,
            ma,
            "{}",
            f.label
        );
        let resolved = f
            .resolver
            .resolve(&SourceKey::new("crm", "B"))
            .await
            .unwrap();
        assert_eq!(resolved.master, ma, "{}", f.label);

        let unmerged = f
            .resolver
            .unmerge(&SourceKey::new("crm", "B"), &with_id("u-1"))
            .await
            .unwrap();
        assert_eq!(unmerged.previous.golden, golden_a, "{}", f.label);
        assert_eq!(
            unmerged.new.golden.demographics, golden_b.demographics,
            "{}",
            f.label
        );
        assert_eq!(unmerged.previous.record_count, 1, "{}", f.label);

        let history = f
            .resolver
            .list_link_events(
                ma,
                Page {
                    after: None,
                    limit: 50,
                },
            )
            .await
            .unwrap();
        let types: Vec<_> = history.iter().map(|e| e.event.event_type).collect();
        assert!(types.contains(&EventType::Merged), "{}: {types:?}", f.label);
        assert!(
            types.contains(&EventType::Unmerged),
            "{}: {types:?}",
            f.label
        );
        assert_eq!(
            history[0].event.actor, "reviewer@example.org",
            "{}",
            f.label
        );
    }
}

#[tokio::test]
async fn a_replayed_request_id_changes_nothing() {
    for f in fixtures().await {
        let first = f
            .resolver
            .upsert(input("ehr", "A", alice()), &with_id("req-1"))
            .await
            .unwrap();
        let before = f.store.counts().await.unwrap();
        let links_before = f
            .resolver
            .list_link_events(
                first.master.unwrap(),
                Page {
                    after: None,
                    limit: 50,
                },
            )
            .await
            .unwrap();
        let replay = f
            .resolver
            .upsert(input("ehr", "A", alice()), &with_id("req-1"))
            .await
            .unwrap();
        assert_eq!(replay, first, "{}", f.label);
        assert_eq!(f.store.counts().await.unwrap(), before, "{}", f.label);
        let links_after = f
            .resolver
            .list_link_events(
                first.master.unwrap(),
                Page {
                    after: None,
                    limit: 50,
                },
            )
            .await
            .unwrap();
        assert_eq!(links_after.len(), links_before.len(), "{}", f.label);

        let mut other = alice();
        other.family_name = "Different".to_owned();
        let err = f
            .resolver
            .upsert(input("ehr", "A", other), &with_id("req-1"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ResolverError::InvalidArgument(ref v) if v[0].field == "request_id"),
            "{}",
            f.label
        );

        // Merges replay too.
        let b = f
            .resolver
            .upsert(
                input("crm", "B", person("Zed", "Quill", "1999-01-01", "", "")),
                &anonymous(),
            )
            .await
            .unwrap();
        let m1 = f
            .resolver
            .merge(
                first.master.unwrap(),
                b.master.unwrap(),
                &with_id("merge-1"),
            )
            .await
            .unwrap();
        let m2 = f
            .resolver
            .merge(
                first.master.unwrap(),
                b.master.unwrap(),
                &with_id("merge-1"),
            )
            .await
            .unwrap();
        assert_eq!(m1, m2, "{}", f.label);
    }
}

#[tokio::test]
async fn bad_input_names_fields_and_writes_nothing() {
    for f in fixtures().await {
        let mut bad = alice();
        bad.birth_date = "12/06/1984".to_owned();
        let err = f
            .resolver
            .upsert(input("", "A", bad), &anonymous())
            .await
            .unwrap_err();
        let ResolverError::InvalidArgument(violations) = err else {
            panic!("{}: expected InvalidArgument", f.label)
        };
        let fields: Vec<_> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "source_record.key.system",
                "source_record.demographics.birth_date"
            ],
            "{}",
            f.label
        );
        assert!(
            violations.iter().all(|v| !v.description.contains("1984")),
            "{}",
            f.label
        );
        assert_eq!(f.store.counts().await.unwrap(), (0, 0), "{}", f.label);

        let err = f
            .resolver
            .resolve(&SourceKey::new("ehr", "nope"))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ResolverError::NotFound {
                    what: "source record"
                }
            ),
            "{}",
            f.label
        );
        let err = f.resolver.master(999).await.unwrap_err();
        assert!(
            matches!(err, ResolverError::NotFound { what: "master" }),
            "{}",
            f.label
        );
    }
}

#[tokio::test]
async fn validate_only_scores_without_writing() {
    for f in fixtures().await {
        let a = f.upsert("ehr", "A", alice()).await;
        let mut dry = input("crm", "B", alice());
        dry.validate_only = true;
        let outcome = f.resolver.upsert(dry, &anonymous()).await.unwrap();
        assert_eq!(outcome.decision, Decision::Match, "{}", f.label);
        assert_eq!(outcome.master, a.master, "{}", f.label);
        assert_eq!(f.store.counts().await.unwrap(), (1, 1), "{}", f.label);
        // A stored record is not scored against itself.
        let mut itself = input("ehr", "A", alice());
        itself.validate_only = true;
        let outcome = f.resolver.upsert(itself, &anonymous()).await.unwrap();
        assert_eq!(outcome.decision, Decision::NoMatch, "{}", f.label);
        assert_eq!(outcome.master, None, "{}", f.label);
    }
}

#[tokio::test]
async fn a_restarted_resolver_rebuilds_its_index_from_the_store() {
    for f in fixtures().await {
        let a = f.upsert("ehr", "A", alice()).await;
        let reopened = open(&f.store).await;
        assert_eq!(reopened.index_stats().0, 1, "{}", f.label);
        let b = reopened
            .upsert(input("crm", "B", alice()), &anonymous())
            .await
            .unwrap();
        assert_eq!(b.master, a.master, "{}", f.label);
    }
}

#[tokio::test]
async fn a_possible_match_opens_a_review_that_a_person_resolves() {
    // Same name and birth year, nothing else to confirm it.
    let thin = Demographics {
        given_names: vec!["Alice".to_owned()],
        family_name: "Okonkwo".to_owned(),
        birth_date: "1984".to_owned(),
        ..Demographics::default()
    };
    // Put the pair's score inside the review band, whatever the model's weights.
    let score = tessera_matching::explain(&Model::builtin(), &alice(), &thin).score;
    for mut f in fixtures().await {
        let config = ResolverConfig {
            matching: tessera_matching::MatchConfig {
                match_threshold: score + 1.0,
                review_threshold: score - 1.0,
                ..tessera_matching::MatchConfig::default()
            },
            source_priority: Vec::new(),
            ..ResolverConfig::default()
        };
        f.resolver = Resolver::open(Arc::clone(&f.store), Arc::new(Model::builtin()), config)
            .await
            .unwrap();
        let a = f.upsert("ehr", "A", alice()).await;
        let b = f.upsert("crm", "B", thin.clone()).await;
        assert_eq!(b.decision, Decision::PossibleMatch, "{}", f.label);
        assert_ne!(b.master, a.master, "{}", f.label);
        assert!(b.review_item.is_some(), "{}", f.label);
        let (items, total) = f
            .resolver
            .list_review_items(
                Some(ReviewState::Open),
                Page {
                    after: None,
                    limit: 10,
                },
            )
            .await
            .unwrap();
        assert_eq!(total, 1, "{}", f.label);
        assert_eq!(
            items[0].candidates[0].master,
            a.master.unwrap(),
            "{}",
            f.label
        );

        let resolved = f
            .resolver
            .resolve_review(
                items[0].id,
                ReviewDecision::Link(a.master.unwrap()),
                &with_id("r-1"),
            )
            .await
            .unwrap();
        assert_eq!(resolved.state, ReviewState::Resolved, "{}", f.label);
        let b = f
            .resolver
            .resolve(&SourceKey::new("crm", "B"))
            .await
            .unwrap();
        assert_eq!(Some(b.master), a.master, "{}", f.label);
        let manual = LinkFilter {
            link_source: Some(LinkSource::Manual),
            ..LinkFilter::default()
        };
        let links = f
            .resolver
            .list_links(
                &manual,
                Page {
                    after: None,
                    limit: 10,
                },
            )
            .await
            .unwrap();
        assert_eq!(links.len(), 1, "{}", f.label);
        let (_, open) = f
            .resolver
            .list_review_items(
                Some(ReviewState::Open),
                Page {
                    after: None,
                    limit: 10,
                },
            )
            .await
            .unwrap();
        assert_eq!(open, 0, "{}", f.label);
    }
}

/// What the store itself says a master holds, following merge redirects.
async fn stored_master_keys(
    store: &Arc<dyn IdentityStore>,
    id: MasterId,
) -> Option<(MasterId, Vec<SourceKey>)> {
    let mut current = id;
    loop {
        let (row, keys) = store.master_keys(current).await.unwrap()?;
        match row.merged_into {
            Some(next) => current = next,
            None => return Some((row.id, keys)),
        }
    }
}

/// Every master's and every key's lookup, by `resolver` and by the store.
async fn assert_lookups_match_the_store(
    label: &str,
    step: &str,
    resolver: &Resolver,
    store: &Arc<dyn IdentityStore>,
    masters: &[MasterId],
    keys: &[SourceKey],
) {
    for &id in masters {
        let ours = resolver.master_records(id).await.ok();
        assert_eq!(
            ours,
            stored_master_keys(store, id).await,
            "{label}, {step}: master {id}"
        );
    }
    for key in keys {
        let ours = resolver.cluster_keys(key).await.ok();
        let stored = store.cluster_keys(key).await.unwrap();
        assert_eq!(ours, stored, "{label}, {step}: {key:?}");
    }
}

#[tokio::test]
async fn identity_lookups_follow_every_kind_of_change() {
    for f in fixtures().await {
        // The embedded store has no other writer, so its lookups come from
        // memory; PostgreSQL's come from the store. Both must tell the truth.
        assert_eq!(
            f.resolver.lookups_in_memory(),
            f.label == "sqlite",
            "{}",
            f.label
        );
        let keys = [
            SourceKey::new("ehr", "A"),
            SourceKey::new("crm", "B"),
            SourceKey::new("billing", "C"),
            SourceKey::new("crm", "missing"),
        ];
        let a = f.upsert("ehr", "A", alice()).await;
        let b = f.upsert("crm", "B", alice()).await;
        let c = f.upsert("billing", "C", bob()).await;
        let (ma, mc) = (a.master.unwrap(), c.master.unwrap());
        assert_eq!(b.master, Some(ma), "{}", f.label);
        let mut masters = vec![ma, mc, 999_999];
        let check = async |step: &str, masters: &[MasterId]| {
            assert_lookups_match_the_store(f.label, step, &f.resolver, &f.store, masters, &keys)
                .await;
        };
        check("upserts", &masters).await;

        f.resolver
            .link_record(&SourceKey::new("crm", "B"), mc, &with_id("l-1"))
            .await
            .unwrap();
        check("manual link", &masters).await;

        f.resolver.merge(ma, mc, &with_id("m-1")).await.unwrap();
        check("merge", &masters).await;

        let unmerged = f
            .resolver
            .unmerge(&SourceKey::new("billing", "C"), &with_id("u-1"))
            .await
            .unwrap();
        masters.push(unmerged.new.master.id);
        check("unmerge", &masters).await;

        // A restarted resolver loads the same answers, redirects included.
        let reopened = open(&f.store).await;
        assert_lookups_match_the_store(f.label, "restart", &reopened, &f.store, &masters, &keys)
            .await;
        assert_eq!(
            reopened.master_records(mc).await.unwrap().0,
            ma,
            "{}: the merged master redirects after a restart",
            f.label
        );
    }
}
