//! The quickstart config end to end: the silos generated on first start, the
//! identity store loaded from the sources' feeds once, views served from them,
//! and a restart that reuses the store.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use tessera_e2e::{Tessera, workspace_root};
use tessera_proto::v1::{
    self as pb, identity_service_client::IdentityServiceClient,
    patient_view_service_client::PatientViewServiceClient,
};

const PEOPLE: usize = 400;
const SEED: u64 = 1;

/// The quickstart config, smaller, logging JSON.
fn config() -> String {
    std::fs::read_to_string(workspace_root().join("examples/quickstart/tessera.yaml"))
        .unwrap()
        .replace("people: 2000", &format!("people: {PEOPLE}"))
        .replace("seed: 1", &format!("seed: {SEED}"))
        .replace("format: text", "format: json")
}

/// `(source, local_id) -> person` from the generated truth file.
fn truth(dir: &Path) -> HashMap<(String, String), String> {
    std::fs::read_to_string(dir.join("data/silos/truth.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            ((f[0].to_owned(), f[1].to_owned()), f[2].to_owned())
        })
        .collect()
}

/// Twin pairs of the generated population (the generator is a pure function of
/// its config, so regenerating it here gives the quickstart's people).
fn twins() -> Vec<(String, String)> {
    let config = tessera_synth::SynthConfig {
        people: PEOPLE,
        seed: SEED,
        ..tessera_synth::SynthConfig::default()
    };
    tessera_synth::Population::new(&config)
        .flat_map(|p| {
            p.relations
                .iter()
                .filter_map(|r| match r {
                    tessera_synth::person::Relation::TwinOf(other) if *other > p.id => {
                        Some((p.id.to_string(), other.to_string()))
                    }
                    _ => None,
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

async fn resolve(tessera: &Tessera, system: &str, local_id: &str) -> pb::ResolveRecordResponse {
    let mut identity = IdentityServiceClient::new(tessera.connect().await.unwrap());
    identity
        .resolve_record(pb::ResolveRecordRequest {
            source_record: Some(pb::SourceRecordKey {
                system: system.to_owned(),
                local_id: local_id.to_owned(),
            }),
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn the_quickstart_serves_views_from_its_silos_and_restarts_over_its_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let tessera = Tessera::start_in(crate::tessera_bin(), dir, &config())
        .await
        .unwrap();
    let truth = truth(&path);
    let mut ehr_keys: Vec<&String> = truth
        .keys()
        .filter(|(system, _)| system == "ehr")
        .map(|(_, id)| id)
        .collect();
    ehr_keys.sort();
    let local_id = ehr_keys[0].clone();

    let resolved = resolve(&tessera, "ehr", &local_id).await;
    let master = resolved.master.clone();
    let mut views = PatientViewServiceClient::new(tessera.connect().await.unwrap());
    let mut request = tonic::Request::new(pb::GetPatientViewRequest {
        subject: Some(pb::PatientSubject {
            subject: Some(pb::patient_subject::Subject::Master(master.clone())),
        }),
        purpose: pb::PurposeOfUse::Treatment.into(),
        ..pb::GetPatientViewRequest::default()
    });
    request.set_timeout(Duration::from_secs(5));
    let view = views.get_patient_view(request).await.unwrap().into_inner();
    let demographics = &view.sections["demographics"].records;
    assert!(
        demographics
            .iter()
            .any(|r| r.json.contains(&format!("\"id\":\"{local_id}\""))),
        "the EHR's Patient resource is in the view"
    );
    assert!(view.sections.contains_key("encounters"));
    assert!(
        view.source_statuses
            .iter()
            .all(|s| s.state() == pb::SourceState::Ok)
    );
    assert!(view.unreachable.is_empty());
    assert!(
        tessera
            .logs()
            .contains("identity store loaded from the sources")
    );

    let dir = tessera.stop().await.unwrap();
    let tessera = Tessera::start_in(crate::tessera_bin(), dir, &config())
        .await
        .unwrap();
    assert!(
        tessera.logs().contains("identity store already loaded"),
        "{}",
        tessera.logs()
    );
    let again = resolve(&tessera, "ehr", &local_id).await;
    assert_eq!(again.master, master, "the same master after a restart");
}

#[tokio::test]
async fn one_person_in_four_silos_is_one_master_with_four_silos_sections_and_twins_stay_apart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let tessera = Tessera::start_in(crate::tessera_bin(), dir, &config())
        .await
        .unwrap();
    let truth = truth(&path);
    let mut by_person: HashMap<&str, Vec<(&str, &str)>> = HashMap::new();
    for ((system, local_id), person) in &truth {
        by_person
            .entry(person)
            .or_default()
            .push((system, local_id));
    }

    // People with exactly one record in each of the four silos.
    let mut four: Vec<(&str, Vec<(&str, &str)>)> = by_person
        .iter()
        .filter(|(_, records)| {
            let systems: std::collections::BTreeSet<&str> = records.iter().map(|r| r.0).collect();
            records.len() == 4 && systems.len() == 4
        })
        .map(|(p, r)| (*p, r.clone()))
        .collect();
    four.sort();
    assert!(four.len() >= 20, "the population has four-silo people");
    let mut unified = Vec::new();
    for (person, records) in &four {
        let mut masters = std::collections::BTreeSet::new();
        for (system, local_id) in records {
            masters.insert(resolve(&tessera, system, local_id).await.master);
        }
        if masters.len() == 1 {
            unified.push((*person, masters.into_iter().next().unwrap()));
        }
    }
    assert!(
        unified.len() * 4 >= four.len() * 3,
        "{} of {} four-silo people resolve to one master",
        unified.len(),
        four.len()
    );

    let (_, master) = &unified[0];
    let mut views = PatientViewServiceClient::new(tessera.connect().await.unwrap());
    let mut request = tonic::Request::new(pb::GetPatientViewRequest {
        subject: Some(pb::PatientSubject {
            subject: Some(pb::patient_subject::Subject::Master(master.clone())),
        }),
        purpose: pb::PurposeOfUse::Treatment.into(),
        ..pb::GetPatientViewRequest::default()
    });
    request.set_timeout(Duration::from_secs(5));
    let view = views.get_patient_view(request).await.unwrap().into_inner();
    let sources: std::collections::BTreeSet<&str> = view
        .sections
        .values()
        .flat_map(|s| &s.records)
        .map(|r| r.provenance.as_ref().unwrap().source.as_str())
        .collect();
    assert_eq!(
        sources.into_iter().collect::<Vec<_>>(),
        [
            "sources/billing",
            "sources/crm",
            "sources/ehr",
            "sources/marketing"
        ],
        "records from all four silos"
    );
    for section in [
        "demographics",
        "encounters",
        "invoices",
        "cases",
        "consents",
    ] {
        assert!(view.sections.contains_key(section), "{section}");
    }

    let pairs = twins();
    assert!(!pairs.is_empty(), "the population has twins");
    for (a, b) in &pairs {
        let records = |p: &str| by_person.get(p).cloned().unwrap_or_default();
        for (sa, la) in records(a) {
            let ma = resolve(&tessera, sa, la).await.master;
            for (sb, lb) in records(b) {
                let mb = resolve(&tessera, sb, lb).await.master;
                assert_ne!(ma, mb, "twins {sa}/{la} and {sb}/{lb} were merged");
            }
        }
    }
}
