//! The resolver's view of the index: upserts, removals, master moves, cluster-level
//! decisions, bounded blocks, and robustness on odd input.

use std::sync::Arc;

use tessera_matching::{
    Address, Conflict, Decision, Demographics, Index, MatchConfig, Model, TrainConfig, explain,
    link_batch, link_batch_report, read_records_csv, train,
};

fn person(given: &str, family: &str, dob: &str, street: &str, phone: &str) -> Demographics {
    Demographics {
        given_names: vec![given.to_owned()],
        family_name: family.to_owned(),
        birth_date: dob.to_owned(),
        addresses: vec![Address {
            lines: vec![street.to_owned()],
            city: "Portland".to_owned(),
            state: "OR".to_owned(),
            postal_code: "97201".to_owned(),
            country: String::new(),
        }],
        phones: vec![phone.to_owned()],
        ..Demographics::default()
    }
}

fn index() -> Index {
    Index::new(Arc::new(Model::builtin()), MatchConfig::default())
}

#[test]
fn upsert_remove_and_set_master_change_what_is_found() {
    let mut idx = index();
    let ann = person("Ann", "Lee", "1971-05-05", "3 Oak St", "503-555-0199");
    idx.upsert(1, 10, &ann);
    assert_eq!(idx.len(), 1);
    assert_eq!(idx.candidates(&ann, None).ranked[0].master, 10);
    assert!(
        idx.candidates(&ann, Some(1)).ranked.is_empty(),
        "excluding the record itself"
    );

    idx.set_master(1, 20);
    assert_eq!(idx.master_of(1), Some(20));
    assert_eq!(idx.candidates(&ann, None).ranked[0].master, 20);

    let moved = person("Zed", "Quist", "1950-01-01", "8 Elm St", "503-555-0111");
    idx.upsert(1, 20, &moved);
    assert_eq!(idx.len(), 1, "upsert replaces");
    assert!(
        idx.candidates(&ann, None).ranked.is_empty(),
        "old demographics are gone"
    );

    idx.remove(1);
    idx.remove(1);
    assert_eq!(idx.len(), 0);
    assert!(idx.candidates(&moved, None).ranked.is_empty());
    assert!(idx.approx_memory_bytes() < 1_000_000);
}

#[test]
fn one_record_cannot_bridge_a_master_with_a_conflicting_member() {
    // Master 1 holds twin A's two records; a record of twin B matches neither
    // automatically, and a vague record (no given name) that matches twin A's
    // records well is still not auto-linked when twin B's record shares its master.
    let a1 = person("Noah", "Berg", "2001-02-03", "4 Pine St", "503-555-0123");
    let b1 = person("Liam", "Berg", "2001-02-03", "4 Pine St", "503-555-0123");
    let mut idx = index();
    idx.upsert(1, 1, &a1);
    idx.upsert(2, 1, &a1.clone());
    let c = &idx.candidates(&b1, None).ranked[0];
    assert_ne!(c.decision, Decision::Match);
    assert_eq!(c.conflict, Some(Conflict::GivenName));
    assert!(
        c.field_weights
            .iter()
            .any(|w| w.field == "guard" && w.weight < 0.0)
    );

    // Manually merged (wrongly) master 5: Noah and Liam. A new Noah record matches
    // Noah exactly but conflicts with Liam, so it goes to review, not auto-link.
    let mut idx = index();
    idx.upsert(1, 5, &a1);
    idx.upsert(2, 5, &b1);
    let c = &idx.candidates(&a1.clone(), None).ranked[0];
    assert_eq!(c.decision, Decision::PossibleMatch);
}

#[test]
fn oversized_blocks_are_counted_and_narrowed_not_fatal() {
    let config = MatchConfig {
        max_block_size: 8,
        ..MatchConfig::default()
    };
    let mut idx = Index::new(Arc::new(Model::builtin()), config);
    // 40 different John Smiths born the same day: the birth-date block overflows.
    for i in 0..40u64 {
        let d = person(
            "John",
            "Smith",
            "1980-01-01",
            &format!("{i} Main St"),
            &format!("503-555-{:04}", 1000 + i),
        );
        idx.upsert(i, i, &d);
    }
    let rows: Vec<Demographics> = (0..40u64)
        .map(|i| {
            person(
                "John",
                "Smith",
                "1980-01-01",
                &format!("{i} Main St"),
                &format!("503-555-{:04}", 1000 + i),
            )
        })
        .collect();
    let report = link_batch_report(
        &rows,
        &Model::builtin(),
        &MatchConfig {
            max_block_size: 8,
            ..MatchConfig::default()
        },
    );
    assert!(
        report.oversized_blocks > 0,
        "batch counts oversized blocks too"
    );
    assert_eq!(report.clusters.len(), 40);
    let distinct: std::collections::HashSet<_> = report.clusters.iter().collect();
    assert_eq!(distinct.len(), 40, "forty different John Smiths stay apart");
    let probe = person("John", "Smith", "1980-01-01", "17 Main St", "503-555-1017");
    let c = idx.candidates(&probe, None);
    assert!(c.oversized_blocks > 0);
    assert_eq!(
        c.ranked[0].master, 17,
        "the right John Smith is still found"
    );
    assert_eq!(c.ranked[0].decision, Decision::Match);
}

#[test]
fn odd_input_never_panics() {
    let huge = "x".repeat(100_000);
    let odd = [
        Demographics::default(),
        Demographics {
            given_names: vec![huge.clone(), String::new(), "🦀".into()],
            family_name: "ß-ǅ-Ωμέγα 山田".into(),
            name_suffix: "the third".into(),
            previous_family_names: vec![String::new(), huge.clone()],
            birth_date: "99999999".into(),
            addresses: vec![Address {
                lines: vec![huge.clone(), "#".into()],
                ..Address::default()
            }],
            phones: vec!["+".into(), "1".repeat(40), "++1 (((".into()],
            emails: vec!["@".into(), "a@b@c".into(), format!("{huge}@gmail.com")],
            national_id: "--".into(),
            ..Demographics::default()
        },
        Demographics {
            birth_date: "0000-00-00".into(),
            ..Demographics::default()
        },
        Demographics {
            birth_date: "2/30/1980".into(),
            given_names: vec!["Ⅻ".into()],
            ..Demographics::default()
        },
    ];
    let mut idx = index();
    for (i, d) in odd.iter().enumerate() {
        idx.upsert(i as u64, i as u64, d);
        let _ = idx.candidates(d, None);
        for e in &odd {
            let x = explain(&Model::builtin(), d, e);
            assert!(x.score.is_finite());
        }
    }
    assert_eq!(
        link_batch(&odd, &Model::builtin(), &MatchConfig::default()).len(),
        odd.len()
    );
    assert!(link_batch(&[], &Model::builtin(), &MatchConfig::default()).is_empty());
    assert!(train(&odd, &TrainConfig::default()).is_ok());
    assert!(train(&odd[..1], &TrainConfig::default()).is_err());
    assert!(read_records_csv(&b"\xff\xfe"[..]).is_err());
    assert!(read_records_csv(&b""[..]).is_err());
}

#[test]
fn training_without_labels_learns_from_duplicates() {
    // 300 people, each with a noisy second record.
    let given = [
        "Ava", "Ben", "Cara", "Dan", "Eve", "Finn", "Gia", "Hal", "Ivy", "Jon", "Kai", "Lia",
    ];
    let family = [
        "Ng", "Ortiz", "Patel", "Quinn", "Reyes", "Stone", "Tran", "Uribe", "Vance", "Wolfe", "Xu",
        "Young", "Zhou", "Abbott", "Burke",
    ];
    let mut rows = Vec::new();
    for i in 0..300usize {
        let d = Demographics {
            national_id: format!("{:09}", 100_000_000 + i * 7919),
            ..person(
                given[i % given.len()],
                family[(i / 3) % family.len()],
                &format!("{}-{:02}-{:02}", 1940 + i % 60, 1 + i % 12, 1 + i % 28),
                &format!("{} Main St", 10 + i),
                &format!("503-555-{:04}", 2000 + i),
            )
        };
        let mut dup = d.clone();
        if i % 2 == 0 {
            dup.family_name.push('e');
        } else {
            dup.addresses.clear();
        }
        rows.push(d);
        rows.push(dup);
    }
    let model = train(&rows, &TrainConfig::default()).unwrap();
    assert_eq!(
        train(&rows, &TrainConfig::default()).unwrap(),
        model,
        "one seed, one model"
    );
    let back = Model::from_json(&model.to_json()).unwrap();
    assert_eq!(back, model);
    assert!(model.description.contains("600"));
    let clusters = link_batch(&rows, &model, &MatchConfig::default());
    let linked = (0..300)
        .filter(|i| clusters[2 * i] == clusters[2 * i + 1])
        .count();
    let distinct: std::collections::HashSet<_> = clusters.iter().collect();
    assert!(linked >= 295, "linked {linked} of 300 duplicate pairs");
    assert_eq!(distinct.len(), 300 + (300 - linked), "no false merges");
}
