//! IdentityService under the access policy, in process: requests carry what the auth
//! layer would put in them (Caller, Grant, Arc<Policy>, AccessLog), and every answer is
//! checked for what the caller may and may not see.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::sync::Arc;

use tessera_auth::page_token::{PageKey, PageTokens};
use tessera_auth::{AccessLog, AuthMethod, Caller, PermissionTable, Policy, PolicyConfig};
use tessera_matching::{MatchConfig, Model};
use tessera_proto::v1::{self as pb, identity_service_server::IdentityService};
use tessera_resolver::store::{IdentityStore, SqlStore};
use tessera_resolver::{IdentityGrpc, Resolver, ResolverConfig};
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

const POLICY: &str = r#"
callers:
  - id: reader
    match: { subject: reader }
    roles: [reader]
    purposes: [TREAT]
    sections: ["*"]
    systems: ["*"]
    national_id: true
  - id: marketing
    match: { subject: marketing }
    roles: [reader]
    purposes: [HMARKT]
    sections: ["crm.*"]
    systems: [marketing, crm]
  - id: crm-steward
    match: { subject: crm-steward }
    roles: [steward]
    purposes: [HOPERAT]
    sections: ["crm.*"]
    systems: [crm]
  - id: steward
    match: { subject: steward }
    roles: [steward]
    purposes: [HOPERAT]
    sections: ["*"]
    systems: ["*"]
    national_id: true
"#;

const SSN: &str = "219-09-9999";
const MRN: &str = "MRN-000417";

struct Env {
    service: IdentityGrpc,
    policy: Arc<Policy>,
    _dir: tempfile::TempDir,
}

impl Env {
    async fn new() -> Self {
        Self::with_matching(MatchConfig::default()).await
    }

    async fn with_matching(matching: MatchConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("identity.db").display());
        let store: Arc<dyn IdentityStore> = Arc::new(SqlStore::open(&url).await.unwrap());
        let config = ResolverConfig {
            matching,
            source_priority: vec!["ehr".into(), "crm".into()],
            ..ResolverConfig::default()
        };
        let resolver = Resolver::open(store, Arc::new(Model::builtin()), config)
            .await
            .unwrap();
        let cfg: PolicyConfig = serde_yaml_ng::from_str(POLICY).unwrap();
        let policy = Policy::new(&cfg, PermissionTable::for_contract(false).unwrap()).unwrap();
        Self {
            service: IdentityGrpc::new(Arc::new(resolver)),
            policy: Arc::new(policy),
            _dir: dir,
        }
    }

    /// `message` as `who` would send it through the auth layer, and its access log.
    fn as_caller<T>(&self, who: &str, message: T) -> (Request<T>, AccessLog) {
        let method = AuthMethod::Jwt {
            issuer: "https://issuer.test".into(),
            subject: Some(who.into()),
            client_id: None,
        };
        let grant = self.policy.grant_for(&method).unwrap().clone();
        let log = AccessLog::default();
        let mut request = Request::new(message);
        let ext = request.extensions_mut();
        ext.insert(Caller {
            principal: grant.principal.clone(),
            method,
            end_user: None,
        });
        ext.insert(grant);
        ext.insert(Arc::clone(&self.policy));
        ext.insert(log.clone());
        (request, log)
    }

    fn req<T>(&self, who: &str, message: T) -> Request<T> {
        self.as_caller(who, message).0
    }

    async fn upsert(&self, system: &str, local_id: &str, d: pb::Demographics) -> u64 {
        let response = self
            .service
            .upsert_source_record(self.req(
                "steward",
                pb::UpsertSourceRecordRequest {
                    source_record: Some(pb::SourceRecord {
                        key: Some(key(system, local_id)),
                        demographics: Some(d),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        master_id(&response.master)
    }

    async fn merge(&self, winner: u64, loser: u64) {
        self.service
            .merge_masters(self.req(
                "steward",
                pb::MergeMastersRequest {
                    master: format!("masters/{winner}"),
                    source_master: format!("masters/{loser}"),
                    ..Default::default()
                },
            ))
            .await
            .unwrap();
    }

    async fn master(&self, who: &str, id: u64) -> (pb::Master, AccessLog) {
        let (request, log) = self.as_caller(
            who,
            pb::GetMasterRequest {
                name: format!("masters/{id}"),
            },
        );
        (
            self.service.get_master(request).await.unwrap().into_inner(),
            log,
        )
    }

    /// Alice in the EHR (with her SSN), the CRM (with her SSN) and marketing (without),
    /// all on one master, which is returned.
    async fn alice(&self) -> u64 {
        let ehr = self
            .upsert("ehr", MRN, person("Alice", "Okonkwo", Some(SSN)))
            .await;
        let crm = self
            .upsert("crm", "C-77", person("Alice", "Okonkwo", Some(SSN)))
            .await;
        let mkt = self
            .upsert("marketing", "M-5", person("Alice", "Okonkwo", None))
            .await;
        for other in [crm, mkt] {
            if other != ehr {
                self.merge(ehr, other).await;
            }
        }
        ehr
    }
}

fn key(system: &str, local_id: &str) -> pb::SourceRecordKey {
    pb::SourceRecordKey {
        system: system.into(),
        local_id: local_id.into(),
    }
}

fn master_id(name: &str) -> u64 {
    name.strip_prefix("masters/").unwrap().parse().unwrap()
}

fn person(given: &str, family: &str, ssn: Option<&str>) -> pb::Demographics {
    pb::Demographics {
        given_names: vec![given.into()],
        family_name: family.into(),
        birth_date: "1984-06-12".into(),
        sex: pb::AdministrativeSex::Female.into(),
        phones: vec!["(217) 555-0134".into()],
        identifiers: ssn
            .map(|v| pb::PersonIdentifier {
                r#type: pb::PersonIdentifierType::NationalId.into(),
                system: String::new(),
                value: v.into(),
            })
            .into_iter()
            .collect(),
        ..Default::default()
    }
}

fn field_violation(status: &Status) -> String {
    status
        .get_details_bad_request()
        .and_then(|b| b.field_violations.first().map(|v| v.field.clone()))
        .unwrap_or_default()
}

#[tokio::test]
async fn every_rpc_refuses_a_request_without_a_grant() {
    let env = Env::new().await;
    let id = env.alice().await;
    let s = &env.service;
    let rpcs: Vec<String> = tessera_auth::methods(tessera_proto::FILE_DESCRIPTOR_SET)
        .unwrap()
        .into_iter()
        .filter_map(|m| {
            m.strip_prefix("/tessera.v1.IdentityService/")
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(rpcs.len(), 11, "{rpcs:?}");
    let name = format!("masters/{id}");
    for rpc in rpcs {
        // Well-formed requests for things that exist: only the missing grant is wrong.
        let status = match rpc.as_str() {
            "ResolveRecord" => s
                .resolve_record(Request::new(pb::ResolveRecordRequest {
                    source_record: Some(key("ehr", MRN)),
                }))
                .await
                .err(),
            "UpsertSourceRecord" => s
                .upsert_source_record(Request::new(pb::UpsertSourceRecordRequest {
                    source_record: Some(pb::SourceRecord {
                        key: Some(key("ehr", MRN)),
                        demographics: Some(person("Alice", "Okonkwo", Some(SSN))),
                        ..Default::default()
                    }),
                    ..Default::default()
                }))
                .await
                .err(),
            "MatchDemographics" => s
                .match_demographics(Request::new(pb::MatchDemographicsRequest {
                    demographics: Some(person("Alice", "Okonkwo", None)),
                    ..Default::default()
                }))
                .await
                .err(),
            "GetMaster" => s
                .get_master(Request::new(pb::GetMasterRequest { name: name.clone() }))
                .await
                .err(),
            "ListLinks" => s
                .list_links(Request::new(pb::ListLinksRequest {
                    parent: "masters/-".into(),
                    ..Default::default()
                }))
                .await
                .err(),
            "ListReviewItems" => s
                .list_review_items(Request::new(pb::ListReviewItemsRequest::default()))
                .await
                .err(),
            "ResolveReviewItem" => s
                .resolve_review_item(Request::new(pb::ResolveReviewItemRequest {
                    name: "reviewItems/1".into(),
                    outcome: pb::ReviewOutcome::NewMaster.into(),
                    ..Default::default()
                }))
                .await
                .err(),
            "LinkSourceRecord" => s
                .link_source_record(Request::new(pb::LinkSourceRecordRequest {
                    source_record: Some(key("ehr", MRN)),
                    master: name.clone(),
                    ..Default::default()
                }))
                .await
                .err(),
            "MergeMasters" => s
                .merge_masters(Request::new(pb::MergeMastersRequest {
                    master: name.clone(),
                    source_master: name.clone(),
                    ..Default::default()
                }))
                .await
                .err(),
            "UnmergeSourceRecord" => s
                .unmerge_source_record(Request::new(pb::UnmergeSourceRecordRequest {
                    source_record: Some(key("crm", "C-77")),
                    ..Default::default()
                }))
                .await
                .err(),
            "ListLinkEvents" => s
                .list_link_events(Request::new(pb::ListLinkEventsRequest {
                    parent: name.clone(),
                    ..Default::default()
                }))
                .await
                .err(),
            other => panic!("IdentityService/{other} has no case here: add one"),
        };
        let status = status.unwrap_or_else(|| panic!("{rpc} answered without a grant"));
        assert_eq!(status.code(), Code::PermissionDenied, "{rpc}: {status:?}");
    }
    // Nothing changed: Alice's three records are still on one master.
    assert_eq!(env.master("reader", id).await.0.source_record_count, 3);
}

#[tokio::test]
async fn marketing_sees_no_ehr_record_and_no_national_id_and_a_reader_sees_all() {
    let env = Env::new().await;
    let id = env.alice().await;

    let (master, log) = env.master("marketing", id).await;
    let text = format!("{master:?}");
    assert!(!text.contains(MRN), "EHR local ID leaked: {text}");
    assert!(
        !text.contains("systems/ehr/"),
        "EHR record name leaked: {text}"
    );
    assert!(!text.contains(SSN), "national ID leaked: {text}");
    let golden = master.golden_record.clone().unwrap();
    assert!(golden.identifiers.is_empty());
    assert_eq!(golden.family_name, "Okonkwo");
    assert_eq!(master.source_record_count, 2);
    assert!(
        master
            .field_provenance
            .iter()
            .all(|p| p.source_record.starts_with("systems/crm/")
                || p.source_record.starts_with("systems/marketing/"))
    );
    let access = log.snapshot();
    assert_eq!(access.masters, vec![id]);
    assert_eq!(
        access.sources_withheld,
        vec![("ehr".to_owned(), "SYSTEM_NOT_GRANTED".to_owned())]
    );
    let mut returned = access.sources_returned.clone();
    returned.sort();
    assert_eq!(returned, ["crm", "marketing"]);
    let audit = format!("{access:?}");
    for phi in [MRN, "C-77", "M-5", "Alice", "Okonkwo", SSN] {
        assert!(!audit.contains(phi), "access log holds {phi}");
    }

    let (master, log) = env.master("reader", id).await;
    assert_eq!(master.source_record_count, 3);
    let golden = master.golden_record.unwrap();
    assert_eq!(golden.identifiers.len(), 1);
    assert_eq!(golden.identifiers[0].value, SSN);
    assert!(
        master
            .field_provenance
            .iter()
            .any(|p| p.source_record == format!("systems/ehr/records/{MRN}"))
    );
    assert!(log.snapshot().sources_withheld.is_empty());

    // Look-ups and lists hide the EHR record from marketing too.
    let resolved = env
        .service
        .resolve_record(env.req(
            "marketing",
            pb::ResolveRecordRequest {
                source_record: Some(key("crm", "C-77")),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resolved.master, format!("masters/{id}"));
    let systems: Vec<_> = resolved
        .linked_records
        .iter()
        .map(|r| r.source_record.as_ref().unwrap().system.as_str())
        .collect();
    assert!(
        !systems.contains(&"ehr") && systems.len() == 2,
        "{systems:?}"
    );
    let events = env
        .service
        .list_link_events(env.req(
            "marketing",
            pb::ListLinkEventsRequest {
                parent: format!("masters/{id}"),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!format!("{events:?}").contains(MRN));
}

#[tokio::test]
async fn an_unseen_system_is_refused_before_existence() {
    let env = Env::new().await;
    env.alice().await;
    let resolve = |local_id: &'static str| {
        env.service.resolve_record(env.req(
            "marketing",
            pb::ResolveRecordRequest {
                source_record: Some(key("ehr", local_id)),
            },
        ))
    };
    let existing = resolve(MRN).await.unwrap_err();
    let missing = resolve("MRN-NOT-THERE").await.unwrap_err();
    assert_eq!(existing.code(), Code::PermissionDenied);
    assert_eq!(
        existing.get_details_error_info().unwrap().reason,
        "SYSTEM_NOT_GRANTED"
    );
    assert_eq!(
        (existing.code(), existing.message(), existing.details()),
        (missing.code(), missing.message(), missing.details())
    );
    // A steward may not write into a system it does not see either; the reader may
    // resolve the existing record.
    let link = env
        .service
        .link_source_record(env.req(
            "marketing",
            pb::LinkSourceRecordRequest {
                source_record: Some(key("ehr", MRN)),
                master: "masters/1".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(link.code(), Code::PermissionDenied);
    assert!(
        env.service
            .resolve_record(env.req(
                "reader",
                pb::ResolveRecordRequest {
                    source_record: Some(key("ehr", MRN)),
                },
            ))
            .await
            .is_ok()
    );
}

fn links_request(filter: &str, token: &str) -> pb::ListLinksRequest {
    pb::ListLinksRequest {
        parent: "masters/-".into(),
        filter: filter.into(),
        page_size: 1,
        page_token: token.into(),
    }
}

#[tokio::test]
async fn page_tokens_continue_and_refuse_what_is_not_theirs() {
    let env = Env::new().await;
    env.alice().await;
    let s = &env.service;
    let first = s
        .list_links(env.req("reader", links_request("", "")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.links.len(), 1);
    assert!(!first.next_page_token.is_empty());
    let token = first.next_page_token.clone();
    let second = s
        .list_links(env.req("reader", links_request("", &token)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.links.len(), 1);
    assert_ne!(first.links[0].name, second.links[0].name);

    // One character changed, in the middle of the token.
    let mut bytes = token.clone().into_bytes();
    let mid = bytes.len() / 2;
    bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    let other_key = IdentityGrpc::pending().with_page_tokens(PageTokens::new(
        PageKey::new("other", b"another key".to_vec()),
        None,
    ));
    let refused = [
        (
            "tampered",
            s.list_links(env.req("reader", links_request("", &tampered)))
                .await,
        ),
        (
            "other caller",
            s.list_links(env.req("steward", links_request("", &token)))
                .await,
        ),
        (
            "other filter",
            s.list_links(env.req("reader", links_request("link_source = AUTO", &token)))
                .await,
        ),
        (
            "other key",
            other_key
                .list_links(env.req("reader", links_request("", &token)))
                .await,
        ),
    ];
    for (what, result) in refused {
        let status = result.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert_eq!(field_violation(&status), "page_token", "{what}");
    }
}

#[tokio::test]
async fn an_expired_page_token_is_invalid() {
    let env = Env::new().await;
    env.alice().await;
    let resolver_backed = |ttl| {
        // The same store and key as the main service, with tokens that expire at once.
        env.service.clone().with_page_tokens(
            PageTokens::new(PageKey::new("k", b"page key".to_vec()), None).with_ttl_secs(ttl),
        )
    };
    let expiring = resolver_backed(0);
    let first = expiring
        .list_links(env.req("reader", links_request("", "")))
        .await
        .unwrap()
        .into_inner();
    assert!(!first.next_page_token.is_empty());
    let status = expiring
        .list_links(env.req("reader", links_request("", &first.next_page_token)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(field_violation(&status), "page_token");
    assert!(status.message().contains("expired"));
    // With a lifetime, the same key's token is accepted.
    let lasting = resolver_backed(3600);
    let first = lasting
        .list_links(env.req("reader", links_request("", "")))
        .await
        .unwrap()
        .into_inner();
    assert!(
        lasting
            .list_links(env.req("reader", links_request("", &first.next_page_token)))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn filtered_pages_still_reach_every_visible_link() {
    let env = Env::new().await;
    env.alice().await;
    let mut token = String::new();
    let mut systems = Vec::new();
    let mut pages = 0;
    loop {
        let page = env
            .service
            .list_links(env.req("marketing", links_request("", &token)))
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        systems.extend(
            page.links
                .iter()
                .map(|l| l.source_record.clone().unwrap().system),
        );
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
        assert!(pages < 10, "paging does not end");
    }
    systems.sort();
    assert_eq!(systems, ["crm", "marketing"]);
    assert!(pages >= 3, "the EHR link's page was scanned too");
}

#[tokio::test]
async fn a_merge_records_the_callers_principal_as_actor() {
    let env = Env::new().await;
    let carol = env
        .upsert("crm", "C-1", person("Carol", "Mbeki", None))
        .await;
    let mut dan = person("Dan", "Whitaker", None);
    dan.birth_date = "1950-01-30".into();
    dan.phones = vec!["(312) 555-0199".into()];
    let dan = env.upsert("ehr", "E-9", dan).await;
    assert_ne!(carol, dan);
    let (request, log) = env.as_caller(
        "steward",
        pb::MergeMastersRequest {
            master: format!("masters/{carol}"),
            source_master: format!("masters/{dan}"),
            ..Default::default()
        },
    );
    env.service.merge_masters(request).await.unwrap();
    let mut masters = log.snapshot().masters;
    masters.sort();
    assert_eq!(masters, {
        let mut m = vec![carol, dan];
        m.sort();
        m
    });
    let events = env
        .service
        .list_link_events(env.req(
            "reader",
            pb::ListLinkEventsRequest {
                parent: format!("masters/{carol}"),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .link_events;
    let merged = events
        .iter()
        .find(|e| e.r#type == i32::from(pb::LinkEventType::Merged))
        .expect("a merge event");
    assert_eq!(merged.actor, "steward");
    assert!(events.iter().all(|e| e.actor != "unauthenticated"));
}

#[tokio::test]
async fn match_candidates_exclude_masters_the_caller_cannot_see() {
    let env = Env::new().await;
    let mut dan = person("Dan", "Whitaker", None);
    dan.birth_date = "1950-01-30".into();
    let dan_master = env.upsert("ehr", "E-9", dan.clone()).await;
    let find = |who: &'static str| {
        env.service.match_demographics(env.req(
            who,
            pb::MatchDemographicsRequest {
                demographics: Some(dan.clone()),
                ..Default::default()
            },
        ))
    };
    let reader = find("reader").await.unwrap().into_inner();
    assert_eq!(reader.candidates[0].master, format!("masters/{dan_master}"));
    let marketing = find("marketing").await.unwrap().into_inner();
    assert!(marketing.candidates.is_empty(), "{marketing:?}");

    // Nor can it tell an EHR-only master from a missing one.
    let get = |id: u64| {
        env.service.get_master(env.req(
            "marketing",
            pb::GetMasterRequest {
                name: format!("masters/{id}"),
            },
        ))
    };
    let hidden = get(dan_master).await.unwrap_err();
    let missing = get(dan_master + 1000).await.unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);
    assert_eq!(
        (hidden.code(), hidden.message(), hidden.details()),
        (missing.code(), missing.message(), missing.details())
    );
    let events = env
        .service
        .list_link_events(env.req(
            "marketing",
            pb::ListLinkEventsRequest {
                parent: format!("masters/{dan_master}"),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(events.code(), Code::NotFound);
}

#[tokio::test]
async fn review_items_of_unseen_systems_are_neither_listed_nor_decided() {
    // Every record after the first goes to review.
    let env = Env::with_matching(MatchConfig {
        match_threshold: 1000.0,
        review_threshold: -1000.0,
        ..MatchConfig::default()
    })
    .await;
    env.upsert("crm", "C-77", person("Alice", "Okonkwo", Some(SSN)))
        .await;
    env.upsert("ehr", MRN, person("Alice", "Okonkwo", Some(SSN)))
        .await;
    let list = |who: &'static str| {
        env.service
            .list_review_items(env.req(who, pb::ListReviewItemsRequest::default()))
    };
    let page = list("reader").await.unwrap().into_inner();
    let items = page.review_items;
    assert_eq!(items.len(), 1);
    assert_eq!(page.total_size, 1);
    assert_eq!(items[0].source_record.as_ref().unwrap().local_id, MRN);
    // Nor counted: the queue's size would tell of items the caller may not see.
    let page = list("marketing").await.unwrap().into_inner();
    assert!(page.review_items.is_empty());
    assert_eq!(page.total_size, 0);

    let decide = |who: &'static str, name: String| {
        env.service.resolve_review_item(env.req(
            who,
            pb::ResolveReviewItemRequest {
                name,
                outcome: pb::ReviewOutcome::NewMaster.into(),
                ..Default::default()
            },
        ))
    };
    let hidden = decide("marketing", items[0].name.clone())
        .await
        .unwrap_err();
    let missing = decide("marketing", "reviewItems/999".into())
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);
    assert_eq!(
        (hidden.code(), hidden.message(), hidden.details()),
        (missing.code(), missing.message(), missing.details())
    );
    let decided = decide("steward", items[0].name.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(decided.state, i32::from(pb::ReviewItemState::Resolved));
}

#[tokio::test]
async fn a_caller_that_may_not_see_national_ids_may_not_send_one() {
    let env = Env::new().await;
    env.alice().await;
    let upsert = |local_id: &'static str, ssn: Option<&'static str>| {
        env.service.upsert_source_record(env.req(
            "crm-steward",
            pb::UpsertSourceRecordRequest {
                source_record: Some(pb::SourceRecord {
                    key: Some(key("crm", local_id)),
                    demographics: Some(person("Alice", "Okonkwo", ssn)),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ))
    };
    // With Alice's SSN the match decision would tell whose it is: refused, nothing written.
    let refused = upsert("C-90", Some(SSN)).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_eq!(
        refused.get_details_error_info().unwrap().reason,
        "NATIONAL_ID_NOT_GRANTED"
    );
    let lookup = env
        .service
        .resolve_record(env.req(
            "reader",
            pb::ResolveRecordRequest {
                source_record: Some(key("crm", "C-90")),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        lookup.code(),
        Code::NotFound,
        "the refused record was not written"
    );
    // The same record without the national ID is filed.
    assert!(upsert("C-90", None).await.is_ok());
}

#[tokio::test]
async fn a_record_over_a_limit_is_refused_naming_the_field_and_nothing_is_written() {
    let env = Env::new().await;
    let mut flood = person("Alice", "Okonkwo", None);
    flood.emails = (0..8000)
        .map(|i| format!("alice.okonkwo{i}@example.org"))
        .collect();
    let refused = env
        .service
        .upsert_source_record(env.req(
            "steward",
            pb::UpsertSourceRecordRequest {
                source_record: Some(pb::SourceRecord {
                    key: Some(key("crm", "C-8000")),
                    demographics: Some(flood.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        field_violation(&refused),
        "source_record.demographics.emails"
    );
    assert!(
        !refused.message().contains("alice"),
        "{}",
        refused.message()
    );
    let lookup = env
        .service
        .resolve_record(env.req(
            "reader",
            pb::ResolveRecordRequest {
                source_record: Some(key("crm", "C-8000")),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(lookup.code(), Code::NotFound, "nothing was written");

    let refused = env
        .service
        .match_demographics(env.req(
            "reader",
            pb::MatchDemographicsRequest {
                demographics: Some(flood),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(field_violation(&refused), "demographics.emails");
}
