//! PatientViewService with the auth layer's extensions: requests carry the
//! caller's Grant, the Arc<Policy> and an AccessLog, built from a YAML policy
//! like the gateway's. Refusals come before any identity look-up or upstream
//! call; a marketing caller's view holds no clinical section and no EHR
//! identity; consent withholds its sections; the AccessLog holds the facts.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use tessera_adapter_core::BuiltAdapter;
use tessera_adapter_core::fake::{FakeAdapter, FakeConfig, FakeStats};
use tessera_aggregator::*;
use tessera_auth::{AccessLog, AuthMethod, Grant, Policy, PolicyConfig};
use tessera_proto::v1 as pb;
use tessera_proto::v1::patient_view_service_server::PatientViewService;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

const POLICY: &str = r#"
callers:
  - id: clinician
    match: { san: "spiffe://tessera.dev/ehr-ui" }
    roles: [reader]
    purposes: [TREAT]
    sections: ["*"]
    systems: ["*"]
    national_id: true
    break_glass: true
  - id: marketing
    match: { client_id: mkt-app }
    roles: [reader]
    purposes: [HMARKT]
    sections: ["marketing.*", "crm.*"]
    systems: [marketing, crm]
"#;

/// The master every test asks for, and its records.
const MASTER: &str = "masters/42";

/// Identities of master 42; counts look-ups.
struct Table {
    lookups: AtomicU32,
}

#[async_trait]
impl IdentityLookup for Table {
    async fn identities(&self, _subject: &Subject) -> Result<Identities, LookupError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let records = [("ehr", "MRN-0042"), ("crm", "C1"), ("marketing", "M1")]
            .into_iter()
            .map(|(system, local_id)| SourceRef {
                system: system.to_owned(),
                local_id: local_id.to_owned(),
            })
            .collect();
        Ok(Identities {
            master: "42".to_owned(),
            records,
        })
    }
}

struct Fixture {
    policy: Arc<Policy>,
    service: PatientViewGrpc,
    table: Arc<Table>,
    /// ehr, crm, marketing.
    stats: Vec<Arc<FakeStats>>,
}

impl Fixture {
    fn new(consent: Option<tessera_consent::Consent>) -> Self {
        let config: PolicyConfig = serde_yaml_ng::from_str(POLICY).expect("test fixture");
        let table_of_rpcs =
            tessera_auth::PermissionTable::for_contract(false).expect("test fixture");
        let policy = Arc::new(Policy::new(&config, table_of_rpcs).expect("test fixture"));
        let (sources, stats): (Vec<_>, Vec<_>) = [
            ("ehr", "encounters"),
            ("crm", "cases"),
            ("marketing", "campaigns"),
        ]
        .into_iter()
        .map(|(system, section)| {
            let fake = Arc::new(
                FakeAdapter::new(FakeConfig::new(system, &[section], Duration::ZERO))
                    .expect("test fixture"),
            );
            let stats = fake.stats();
            let built = BuiltAdapter {
                health: fake.clone(),
                adapter: fake,
            };
            (Source::new(system, built, SourcePolicy::default()), stats)
        })
        .unzip();
        let table = Arc::new(Table {
            lookups: AtomicU32::new(0),
        });
        let mut aggregator = Aggregator::new(
            sources,
            table.clone(),
            Arc::new(PurposePolicy::default()),
            ViewPolicy::default(),
        )
        .expect("test fixture");
        if let Some(consent) = consent {
            aggregator = aggregator.with_consent(consent);
        }
        Self {
            policy,
            service: PatientViewGrpc::new(aggregator),
            table,
            stats,
        }
    }

    fn grant(&self, method: AuthMethod) -> Arc<Grant> {
        self.policy
            .grant_for(&method)
            .expect("test fixture")
            .clone()
    }

    fn clinician(&self) -> Arc<Grant> {
        self.grant(AuthMethod::Mtls {
            san: "spiffe://tessera.dev/ehr-ui".to_owned(),
        })
    }

    fn marketing(&self) -> Arc<Grant> {
        self.grant(AuthMethod::Jwt {
            issuer: "https://issuer".to_owned(),
            subject: None,
            client_id: Some("mkt-app".to_owned()),
        })
    }

    /// A request as the auth layer passes it on: with the grant (if any), the
    /// policy and a fresh access log.
    fn request<T>(&self, message: T, grant: Option<Arc<Grant>>) -> (Request<T>, AccessLog) {
        let log = AccessLog::default();
        let mut request = Request::new(message);
        if let Some(grant) = grant {
            request.extensions_mut().insert(grant);
        }
        request.extensions_mut().insert(self.policy.clone());
        request.extensions_mut().insert(log.clone());
        (request, log)
    }

    fn upstream_calls(&self) -> u64 {
        self.stats.iter().map(|s| s.calls()).sum()
    }
}

fn subject() -> pb::PatientSubject {
    pb::PatientSubject {
        subject: Some(pb::patient_subject::Subject::Master(MASTER.to_owned())),
    }
}

fn get(purpose: pb::PurposeOfUse) -> pb::GetPatientViewRequest {
    pb::GetPatientViewRequest {
        subject: Some(subject()),
        purpose: purpose.into(),
        ..Default::default()
    }
}

fn stream(purpose: pb::PurposeOfUse) -> pb::StreamPatientViewRequest {
    pb::StreamPatientViewRequest {
        subject: Some(subject()),
        purpose: purpose.into(),
        ..Default::default()
    }
}

fn batch(purpose: pb::PurposeOfUse) -> pb::BatchGetPatientViewsRequest {
    pb::BatchGetPatientViewsRequest {
        subjects: vec![subject()],
        purpose: purpose.into(),
        ..Default::default()
    }
}

/// The status code and ErrorInfo reason.
fn refusal(status: &Status) -> (Code, String) {
    let reason = status
        .get_details_error_info()
        .map(|i| i.reason)
        .unwrap_or_default();
    (status.code(), reason)
}

/// Calls all three RPCs as `grant` for `purpose`; the refusal of each.
async fn refusals(
    f: &Fixture,
    grant: Option<Arc<Grant>>,
    purpose: pb::PurposeOfUse,
) -> Vec<(Code, String)> {
    let (r, _) = f.request(get(purpose), grant.clone());
    let g = f.service.get_patient_view(r).await.expect_err("refused");
    let (r, _) = f.request(stream(purpose), grant.clone());
    let s = match f.service.stream_patient_view(r).await {
        Ok(_) => panic!("the stream was allowed"),
        Err(status) => status,
    };
    let (r, _) = f.request(batch(purpose), grant);
    let b = f
        .service
        .batch_get_patient_views(r)
        .await
        .expect_err("refused");
    vec![refusal(&g), refusal(&s), refusal(&b)]
}

#[tokio::test]
async fn without_a_grant_or_for_a_purpose_not_granted_nothing_is_resolved_or_fetched() {
    let f = Fixture::new(None);
    let denied = |reason: &str| vec![(Code::PermissionDenied, reason.to_owned()); 3];
    assert_eq!(
        refusals(&f, None, pb::PurposeOfUse::Treatment).await,
        denied("CALLER_UNKNOWN"),
        "deny by default: no grant, no view"
    );
    assert_eq!(
        refusals(&f, Some(f.marketing()), pb::PurposeOfUse::Treatment).await,
        denied("PURPOSE_NOT_GRANTED")
    );
    assert_eq!(
        refusals(&f, Some(f.clinician()), pb::PurposeOfUse::Marketing).await,
        denied("PURPOSE_NOT_GRANTED")
    );
    assert_eq!(
        f.table.lookups.load(Ordering::SeqCst),
        0,
        "no identity look-up"
    );
    assert_eq!(f.upstream_calls(), 0, "no upstream call");

    let clinical_only = pb::GetPatientViewRequest {
        read_mask: Some(prost_types::FieldMask {
            paths: vec!["sections.encounters".to_owned()],
        }),
        ..get(pb::PurposeOfUse::Marketing)
    };
    let (r, _) = f.request(clinical_only, Some(f.marketing()));
    let status = f.service.get_patient_view(r).await.expect_err("refused");
    assert_eq!(
        refusal(&status),
        (Code::PermissionDenied, "SECTIONS_DENIED".to_owned()),
        "no section granted: refused whether the master exists or not"
    );
    assert_eq!(
        f.table.lookups.load(Ordering::SeqCst),
        0,
        "no identity look-up"
    );
    assert_eq!(f.upstream_calls(), 0, "no upstream call");

    let (r, _) = f.request(get(pb::PurposeOfUse::Unspecified), Some(f.clinician()));
    let status = f.service.get_patient_view(r).await.expect_err("refused");
    assert_eq!(
        status.code(),
        Code::InvalidArgument,
        "the purpose is validated first"
    );
}

#[tokio::test]
async fn break_the_glass_needs_a_reason_and_the_access_log_keeps_it() {
    let f = Fixture::new(None);
    assert_eq!(
        refusals(
            &f,
            Some(f.clinician()),
            pb::PurposeOfUse::EmergencyTreatment
        )
        .await,
        vec![
            (
                Code::PermissionDenied,
                "BREAK_GLASS_REASON_REQUIRED".to_owned()
            );
            3
        ]
    );
    assert_eq!(f.upstream_calls(), 0);

    let (mut r, log) = f.request(
        get(pb::PurposeOfUse::EmergencyTreatment),
        Some(f.clinician()),
    );
    r.metadata_mut().insert(
        "x-tessera-break-glass-reason",
        "unconscious patient in the ER"
            .parse()
            .expect("test fixture"),
    );
    let view = f
        .service
        .get_patient_view(r)
        .await
        .expect("test fixture")
        .into_inner();
    assert!(view.sections.contains_key("encounters"));
    let access = log.snapshot();
    assert_eq!(access.purpose.as_deref(), Some("ETREAT"));
    assert_eq!(
        access.break_glass_reason.as_deref(),
        Some("unconscious patient in the ER")
    );

    let (mut r, _) = f.request(
        get(pb::PurposeOfUse::EmergencyTreatment),
        Some(f.marketing()),
    );
    r.metadata_mut().insert(
        "x-tessera-break-glass-reason",
        "curious".parse().expect("test fixture"),
    );
    let status = f.service.get_patient_view(r).await.expect_err("refused");
    assert_eq!(
        refusal(&status),
        (Code::PermissionDenied, "BREAK_GLASS_NOT_ALLOWED".to_owned())
    );
}

fn systems(identities: Option<&pb::PatientIdentities>) -> BTreeSet<String> {
    identities
        .expect("identities")
        .source_records
        .iter()
        .map(|k| k.system.clone())
        .collect()
}

fn state(statuses: &[pb::SourceStatus], source: &str) -> (pb::SourceState, String) {
    let s = statuses
        .iter()
        .find(|s| s.source == format!("sources/{source}"))
        .unwrap_or_else(|| panic!("no status for {source}"));
    (s.state(), s.message.clone())
}

#[tokio::test]
async fn a_marketing_view_has_no_clinical_section_and_no_ehr_identity() {
    let f = Fixture::new(None);
    let (r, log) = f.request(get(pb::PurposeOfUse::Marketing), Some(f.marketing()));
    let view = f
        .service
        .get_patient_view(r)
        .await
        .expect("test fixture")
        .into_inner();

    let sections: BTreeSet<&str> = view.sections.keys().map(String::as_str).collect();
    assert_eq!(sections, BTreeSet::from(["campaigns", "cases"]));
    assert_eq!(
        systems(view.identities.as_ref()),
        BTreeSet::from(["crm".to_owned(), "marketing".to_owned()])
    );
    let text = format!("{view:?}");
    assert!(!text.contains("MRN-0042"), "no EHR identifier anywhere");
    assert_eq!(
        state(&view.source_statuses, "ehr"),
        (pb::SourceState::Denied, "NOT_GRANTED".to_owned())
    );
    assert_eq!(f.stats[0].calls(), 0, "the EHR adapter was never called");

    let access = log.snapshot();
    assert_eq!(access.masters, [42]);
    assert_eq!(access.purpose.as_deref(), Some("HMARKT"));
    let returned: BTreeSet<&str> = access
        .sections_returned
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(
        returned,
        BTreeSet::from(["crm.cases", "marketing.campaigns"])
    );
    assert_eq!(
        access.sections_withheld,
        [("ehr.encounters".to_owned(), "NOT_GRANTED".to_owned())]
    );
    let sources: BTreeSet<&str> = access.sources_returned.iter().map(String::as_str).collect();
    assert_eq!(sources, BTreeSet::from(["crm", "marketing"]));

    let (r, log) = f.request(stream(pb::PurposeOfUse::Marketing), Some(f.marketing()));
    let events = f
        .service
        .stream_patient_view(r)
        .await
        .expect("a stream")
        .into_inner();
    let before = log.snapshot();
    let returned: BTreeSet<&str> = before
        .sections_returned
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(
        returned,
        BTreeSet::from(["crm.cases", "marketing.campaigns"]),
        "noted before the body: the audit record is written when the handler returns"
    );
    assert_eq!(
        before.sections_withheld,
        [("ehr.encounters".to_owned(), "NOT_GRANTED".to_owned())]
    );
    let events: Vec<_> = events.collect().await;
    use pb::stream_patient_view_response::Event;
    let mut sections = BTreeSet::new();
    for event in events {
        match event.expect("test fixture").event.expect("test fixture") {
            Event::Identities(i) => assert!(!systems(Some(&i)).contains("ehr")),
            Event::Section(chunk) => {
                sections.insert(chunk.section);
            }
            Event::Summary(_) => {}
        }
    }
    assert_eq!(
        sections,
        BTreeSet::from(["campaigns".to_owned(), "cases".to_owned()])
    );
    assert_eq!(f.stats[0].calls(), 0, "nor when streamed");

    let (r, log) = f.request(batch(pb::PurposeOfUse::Marketing), Some(f.marketing()));
    let results = f
        .service
        .batch_get_patient_views(r)
        .await
        .expect("test fixture")
        .into_inner();
    let Some(pb::patient_view_result::Result::PatientView(view)) = &results.results[0].result
    else {
        panic!("a view");
    };
    assert!(!view.sections.contains_key("encounters"));
    assert_eq!(log.snapshot().masters, [42]);
    assert_eq!(f.stats[0].calls(), 0, "nor in a batch");
}

async fn consent_database(dir: &Path) {
    let options = SqliteConnectOptions::new()
        .filename(dir.join("consent.db"))
        .create_if_missing(true);
    let pool = SqlitePool::connect_with(options)
        .await
        .expect("test fixture");
    for sql in [
        "CREATE TABLE tessera_consent (system TEXT NOT NULL, local_id TEXT NOT NULL, \
         purpose TEXT NOT NULL, section TEXT NOT NULL, decision TEXT NOT NULL)",
        "INSERT INTO tessera_consent VALUES ('crm', 'C1', 'HMARKT', 'marketing.*', 'deny')",
    ] {
        sqlx::query(sql).execute(&pool).await.expect("test fixture");
    }
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marketing_opt_out_in_the_sql_consent_table_withholds_that_section() {
    let dir = tempfile::tempdir().expect("test fixture");
    consent_database(dir.path()).await;
    let config: tessera_consent::ConsentConfig = serde_yaml_ng::from_str(
        "source: { kind: sql, url: 'sqlite://consent.db' }\ngated: ['marketing.*', 'crm.*']\ntimeout: 2s\n",
    )
    .expect("test fixture");
    config.validate().expect("test fixture");
    let source = tessera_consent::build(&config, dir.path()).expect("test fixture");
    let consent = tessera_consent::Consent::new(&config, source).expect("test fixture");
    let f = Fixture::new(Some(consent));

    let (r, log) = f.request(get(pb::PurposeOfUse::Marketing), Some(f.marketing()));
    let view = f
        .service
        .get_patient_view(r)
        .await
        .expect("test fixture")
        .into_inner();
    assert_eq!(
        state(&view.source_statuses, "marketing"),
        (pb::SourceState::Withheld, "CONSENT_OPT_OUT".to_owned()),
        "a reason code, no detail"
    );
    assert!(!view.sections.contains_key("campaigns"));
    assert_eq!(state(&view.source_statuses, "crm").0, pb::SourceState::Ok);
    assert!(view.sections.contains_key("cases"), "gated, but no opt-out");
    assert_eq!(
        f.stats[2].calls(),
        0,
        "the withheld section was not fetched"
    );
    let access = log.snapshot();
    assert!(
        access.sections_withheld.contains(&(
            "marketing.campaigns".to_owned(),
            "CONSENT_OPT_OUT".to_owned()
        )),
        "{:?}",
        access.sections_withheld
    );
    assert!(
        !access
            .sections_returned
            .contains(&"marketing.campaigns".to_owned())
    );

    let (r, _) = f.request(get(pb::PurposeOfUse::Treatment), Some(f.clinician()));
    let view = f
        .service
        .get_patient_view(r)
        .await
        .expect("test fixture")
        .into_inner();
    assert_eq!(
        state(&view.source_statuses, "marketing").0,
        pb::SourceState::Ok,
        "the opt-out is for marketing only"
    );
}
