//! IdentityService end to end: the real binary with an embedded identity store,
//! called over loopback gRPC.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use tessera_e2e::Tessera;
use tessera_proto::v1::{self as pb, identity_service_client::IdentityServiceClient};
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

const CONFIG: &str = "server:\n  listen: 127.0.0.1:0\n  shutdown_grace_period: 5s\nlogging:\n  format: json\nidentity:\n  store: sqlite://data/identity.db\n  source_priority: [ehr, crm]\n";

fn key(system: &str, local_id: &str) -> pb::SourceRecordKey {
    pb::SourceRecordKey {
        system: system.to_owned(),
        local_id: local_id.to_owned(),
    }
}

fn maria(phone: &str) -> pb::Demographics {
    pb::Demographics {
        given_names: vec!["Maria".to_owned(), "Elena".to_owned()],
        family_name: "Vasquez-Ortiz".to_owned(),
        birth_date: "1979-08-23".to_owned(),
        sex: pb::AdministrativeSex::Female.into(),
        addresses: vec![pb::PostalAddress {
            lines: vec!["400 Lakeview Avenue Apt 3".to_owned()],
            city: "Madison".to_owned(),
            state: "WI".to_owned(),
            postal_code: "53703".to_owned(),
            country: String::new(),
        }],
        phones: vec![phone.to_owned()],
        emails: vec!["maria.vasquez@example.org".to_owned()],
        identifiers: vec![pb::PersonIdentifier {
            r#type: pb::PersonIdentifierType::NationalId.into(),
            system: String::new(),
            value: "123-98-7654".to_owned(),
        }],
        ..pb::Demographics::default()
    }
}

fn upsert(
    system: &str,
    local_id: &str,
    demographics: pb::Demographics,
    request_id: &str,
) -> pb::UpsertSourceRecordRequest {
    pb::UpsertSourceRecordRequest {
        source_record: Some(pb::SourceRecord {
            key: Some(key(system, local_id)),
            demographics: Some(demographics),
            ..pb::SourceRecord::default()
        }),
        request_id: request_id.to_owned(),
        validate_only: false,
    }
}

async fn client(tessera: &Tessera) -> IdentityServiceClient<Channel> {
    IdentityServiceClient::new(tessera.connect().await.unwrap())
}

#[tokio::test]
async fn one_person_in_two_silos_resolves_to_one_master_with_a_golden_record() {
    let tessera = Tessera::start(crate::tessera_bin(), CONFIG).await.unwrap();
    let mut identity = client(&tessera).await;

    let a = identity
        .upsert_source_record(upsert("ehr", "MRN-77", maria("(608) 555-0142"), ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a.decision, pb::MatchDecision::NoMatch as i32);
    assert!(a.master.starts_with("masters/"), "{}", a.master);
    let b = identity
        .upsert_source_record(upsert("crm", "0033x9", maria("608.555.0142"), ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(b.decision, pb::MatchDecision::Match as i32);
    assert_eq!(b.master, a.master);
    assert!(
        !b.field_weights.is_empty(),
        "a MATCH must carry its explanation"
    );

    let resolved = identity
        .resolve_record(pb::ResolveRecordRequest {
            source_record: Some(key("crm", "0033x9")),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resolved.master, a.master);
    let linked: Vec<_> = resolved
        .linked_records
        .iter()
        .map(|r| r.source_record.as_ref().unwrap().local_id.as_str())
        .collect();
    assert_eq!(linked, ["MRN-77", "0033x9"]);

    let master = identity
        .get_master(pb::GetMasterRequest {
            name: a.master.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(master.source_record_count, 2);
    assert_eq!(master.golden_record.unwrap().family_name, "Vasquez-Ortiz");
    let phones = master
        .field_provenance
        .iter()
        .find(|p| p.field == "phones")
        .unwrap();
    assert_eq!(
        phones.source_record, "systems/ehr/records/MRN-77",
        "ehr outranks crm"
    );

    let candidates = identity
        .match_demographics(pb::MatchDemographicsRequest {
            demographics: Some(maria("6085550142")),
            ..pb::MatchDemographicsRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .candidates;
    assert_eq!(candidates[0].master, a.master);
    assert!(candidates[0].grade >= pb::MatchGrade::Probable as i32);
}

#[tokio::test]
async fn bad_input_is_invalid_argument_with_field_violations_and_no_patient_data() {
    let tessera = Tessera::start(crate::tessera_bin(), CONFIG).await.unwrap();
    let mut identity = client(&tessera).await;
    let mut demographics = maria("(608) 555-0142");
    demographics.birth_date = "23/08/1979".to_owned();
    let err = identity
        .upsert_source_record(upsert("", "MRN-1", demographics, ""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let violations = err
        .get_details_bad_request()
        .expect("BadRequest detail")
        .field_violations;
    let fields: Vec<_> = violations.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "source_record.key.system",
            "source_record.demographics.birth_date"
        ]
    );
    assert!(
        !format!("{err:?}").contains("1979"),
        "the error echoes patient data: {err:?}"
    );

    let err = identity
        .upsert_source_record(pb::UpsertSourceRecordRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = identity
        .resolve_record(pb::ResolveRecordRequest {
            source_record: Some(key("ehr", "nobody")),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = identity
        .get_master(pb::GetMasterRequest {
            name: "patients/1".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // Nothing was written by the rejected calls.
    let links = identity
        .list_links(pb::ListLinksRequest {
            parent: "masters/-".to_owned(),
            ..pb::ListLinksRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(links.links.is_empty());
    assert!(!tessera.logs().contains("1979"), "logs hold patient data");
}

#[tokio::test]
async fn a_replayed_request_id_returns_the_first_answer() {
    let tessera = Tessera::start(crate::tessera_bin(), CONFIG).await.unwrap();
    let mut identity = client(&tessera).await;
    let first = identity
        .upsert_source_record(upsert("ehr", "MRN-1", maria("608-555-0142"), "7d1c0f0e"))
        .await
        .unwrap()
        .into_inner();
    let again = identity
        .upsert_source_record(upsert("ehr", "MRN-1", maria("608-555-0142"), "7d1c0f0e"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, again);
    let events = identity
        .list_link_events(pb::ListLinkEventsRequest {
            parent: first.master.clone(),
            ..pb::ListLinkEventsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        events.link_events.len(),
        1,
        "the replay wrote history: {:?}",
        events.link_events
    );
    let err = identity
        .upsert_source_record(upsert("ehr", "MRN-2", maria("608-555-0142"), "7d1c0f0e"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn unmerge_then_restart_keeps_the_masters_and_the_manual_decision() {
    let tessera = Tessera::start(crate::tessera_bin(), CONFIG).await.unwrap();
    let mut identity = client(&tessera).await;
    let a = identity
        .upsert_source_record(upsert("ehr", "MRN-1", maria("608-555-0142"), ""))
        .await
        .unwrap()
        .into_inner();
    identity
        .upsert_source_record(upsert("crm", "C-1", maria("608-555-0142"), ""))
        .await
        .unwrap();
    let unmerged = identity
        .unmerge_source_record(pb::UnmergeSourceRecordRequest {
            source_record: Some(key("crm", "C-1")),
            request_id: "u-1".to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    let new_master = unmerged.new_master.unwrap().name;
    assert_ne!(new_master, a.master);
    assert_eq!(unmerged.previous_master.unwrap().source_record_count, 1);

    // Restart over the same store: same masters, and the manual decision holds.
    let dir = tessera.stop().await.unwrap();
    let tessera = Tessera::start_in(crate::tessera_bin(), dir, CONFIG)
        .await
        .unwrap();
    let mut identity = client(&tessera).await;
    let again = identity
        .upsert_source_record(upsert("crm", "C-1", maria("608-555-0142"), ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.master, new_master);
    assert!(again.manual_link_kept);
    let ehr = identity
        .resolve_record(pb::ResolveRecordRequest {
            source_record: Some(key("ehr", "MRN-1")),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ehr.master, a.master);
    let history = identity
        .list_link_events(pb::ListLinkEventsRequest {
            parent: a.master.clone(),
            ..pb::ListLinkEventsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        history
            .link_events
            .iter()
            .any(|e| e.r#type == pb::LinkEventType::Unmerged as i32)
    );
}

#[tokio::test]
async fn merge_link_and_paged_listings_over_grpc() {
    let tessera = Tessera::start(crate::tessera_bin(), CONFIG).await.unwrap();
    let mut identity = client(&tessera).await;
    let mut other = maria("312-555-0100");
    other.given_names = vec!["Oskar".to_owned()];
    other.family_name = "Lindgren".to_owned();
    other.birth_date = "1950-01-02".to_owned();
    other.sex = pb::AdministrativeSex::Male.into();
    other.identifiers.clear();
    other.emails.clear();
    let a = identity
        .upsert_source_record(upsert("ehr", "A", maria("608-555-0142"), ""))
        .await
        .unwrap()
        .into_inner();
    let b = identity
        .upsert_source_record(upsert("crm", "B", other.clone(), ""))
        .await
        .unwrap()
        .into_inner();
    let c = identity
        .upsert_source_record(upsert("billing", "C", other, ""))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(a.master, b.master);
    assert_eq!(b.master, c.master);

    let merged = identity
        .merge_masters(pb::MergeMastersRequest {
            master: a.master.clone(),
            source_master: b.master.clone(),
            request_id: "m-1".to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(merged.name, a.master);
    assert_eq!(merged.source_record_count, 3);
    let loser = identity
        .get_master(pb::GetMasterRequest {
            name: b.master.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        loser.name, a.master,
        "a merged-away master redirects to the winner"
    );

    // Page through the winner's links one at a time.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = identity
            .list_links(pb::ListLinksRequest {
                parent: a.master.clone(),
                page_size: 1,
                page_token: token.clone(),
                filter: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(
            page.links
                .iter()
                .map(|l| l.source_record.as_ref().unwrap().local_id.clone()),
        );
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
        assert!(seen.len() <= 3, "paging does not end");
    }
    assert_eq!(seen, ["A", "B", "C"]);
    let manual = identity
        .list_links(pb::ListLinksRequest {
            parent: "masters/-".to_owned(),
            filter: "link_source = MANUAL".to_owned(),
            ..pb::ListLinksRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(manual.links.len(), 2, "merged links are manual");
    let err = identity
        .list_links(pb::ListLinksRequest {
            parent: a.master.clone(),
            page_token: "bm90IG91cnM".to_owned(),
            ..pb::ListLinksRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // A person moves C back out to a master of its own, then links it by hand.
    let unmerged = identity
        .unmerge_source_record(pb::UnmergeSourceRecordRequest {
            source_record: Some(key("billing", "C")),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let c_master = unmerged.new_master.unwrap().name;
    let linked = identity
        .link_source_record(pb::LinkSourceRecordRequest {
            source_record: Some(key("crm", "B")),
            master: c_master.clone(),
            request_id: "l-1".to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        linked.name.starts_with(&format!("{c_master}/links/")),
        "{}",
        linked.name
    );
    assert_eq!(linked.link_source, pb::LinkSource::Manual as i32);
    let resolved = identity
        .resolve_record(pb::ResolveRecordRequest {
            source_record: Some(key("crm", "B")),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resolved.master, c_master);
    assert_eq!(resolved.linked_records.len(), 2);

    let err = identity
        .merge_masters(pb::MergeMastersRequest {
            master: a.master.clone(),
            source_master: a.master.clone(),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(err.get_details_error_info().unwrap().reason, "SAME_MASTER");
    let reviews = identity
        .list_review_items(pb::ListReviewItemsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reviews.total_size, 0);
}
