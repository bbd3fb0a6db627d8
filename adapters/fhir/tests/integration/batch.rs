//! A batch of local IDs and sections costs one Patient search and one search
//! per section, whatever the number of patients; each patient still gets only
//! its own records. Requests are counted by the server (every adapter request
//! carries a `traceparent`, seeding requests do not).

use std::time::Duration;

use tessera_adapter_core::{FetchError, FetchRequest, FetchResult, Record};
use tessera_adapter_fhir::PatientIdConfig;
use tessera_test_fhir_server::FhirServer;
use tokio::time::Instant;

use crate::logs;
use crate::medplum::build;
use crate::seed::{MRN_SYSTEM, PEOPLE, RICH_OBSERVATIONS, seed};

fn of<'a>(results: &'a [FetchResult], local_id: &str, section: &str) -> &'a FetchResult {
    results
        .iter()
        .find(|r| r.local_id == local_id && r.section == section)
        .unwrap_or_else(|| panic!("no result for {section}"))
}

fn records<'a>(results: &'a [FetchResult], local_id: &str, section: &str) -> &'a [Record] {
    match &of(results, local_id, section).records {
        Ok(records) => records,
        Err(e) => panic!("{section} failed: {e}"),
    }
}

async fn requests_seen(server: &FhirServer) -> usize {
    server
        .received_traceparents()
        .await
        .expect("request log")
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_patients_and_three_sections_take_one_patient_search_and_one_per_section() {
    logs::init();
    let server = FhirServer::start().expect("server");
    let seeded = seed(&server).await;
    for post in [false, true] {
        let adapter = build(&server.base_url(), |c| {
            c.patient_id = PatientIdConfig::Identifier {
                system: MRN_SYSTEM.to_owned(),
            };
            c.search_via_post = post;
            c.page_size = 100;
        });
        let (a, b) = (PEOPLE[0].mrn, PEOPLE[1].mrn);
        let before = requests_seen(&server).await;
        let results = adapter
            .fetch(FetchRequest {
                local_ids: vec![a.to_owned(), b.to_owned(), "MRN-0000000".to_owned()],
                sections: ["demographics", "observations", "conditions", "appointments"]
                    .map(str::to_owned)
                    .to_vec(),
                deadline: Instant::now() + Duration::from_secs(10),
            })
            .await
            .expect("fetch");
        assert_eq!(
            requests_seen(&server).await - before,
            4,
            "1 Patient search + 1 per non-demographics section (post: {post})"
        );
        assert_eq!(results.len(), 12, "every (local ID, section) pair");
        assert_eq!(
            records(&results, a, "observations").len(),
            RICH_OBSERVATIONS
        );
        assert_eq!(records(&results, b, "observations").len(), 1);
        // The second patient's malformed observation is counted as theirs.
        assert_eq!(of(&results, b, "observations").skipped_malformed, 1);
        assert_eq!(of(&results, a, "observations").skipped_malformed, 0);
        for (mrn, n) in [(a, 0), (b, 1)] {
            let patient = format!("Patient/{}", seeded.patient_ids[n]);
            for section in ["observations", "conditions", "appointments"] {
                let records = records(&results, mrn, section);
                assert!(!records.is_empty(), "{section}");
                assert!(
                    records.iter().all(|r| r.json.contains(&patient)),
                    "only the patient's own {section}"
                );
            }
            let demographics = records(&results, mrn, "demographics");
            assert_eq!(demographics.len(), 1);
            assert!(demographics[0].json.contains(PEOPLE[n].family));
        }
        for section in ["demographics", "observations"] {
            assert_eq!(
                of(&results, "MRN-0000000", section).records,
                Err(FetchError::NotFound)
            );
        }
    }
    logs::assert_no_patient_data();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_by_logical_id_answers_each_patient_as_a_single_fetch_would() {
    logs::init();
    let server = FhirServer::start().expect("server");
    let seeded = seed(&server).await;
    let adapter = build(&server.base_url(), |c| c.page_size = 4);
    let sections: Vec<String> = ["demographics", "encounters", "observations", "documents"]
        .map(str::to_owned)
        .to_vec();
    let ids = seeded.patient_ids.clone();
    let fetch = |local_ids: Vec<String>| {
        let adapter = adapter.clone();
        let sections = sections.clone();
        async move {
            adapter
                .fetch(FetchRequest {
                    local_ids,
                    sections,
                    deadline: Instant::now() + Duration::from_secs(10),
                })
                .await
                .expect("fetch")
        }
    };
    let batch = fetch(ids.clone()).await;
    for id in &ids {
        let single = fetch(vec![id.clone()]).await;
        for section in &sections {
            let mut got: Vec<_> = records(&batch, id, section).to_vec();
            let mut want: Vec<_> = records(&single, id, section).to_vec();
            got.sort_by(|x, y| x.record_id.cmp(&y.record_id));
            want.sort_by(|x, y| x.record_id.cmp(&y.record_id));
            assert_eq!(got, want, "{section}");
        }
    }
    logs::assert_no_patient_data();
}
