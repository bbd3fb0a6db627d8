//! PatientViewService, the aggregator's gRPC edge: the one module that converts
//! between the contract's generated types and the aggregator's own, reads the
//! caller's deadline from `grpc-timeout`, and maps [`ViewError`] to
//! `tonic::Status` with google.rpc details.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use futures_util::{Stream, StreamExt, stream};
use prost::Message;
use tessera_auth::access::{access_log, authorize};
use tessera_auth::{AccessLog, Grant};
use tessera_proto::error::{self, EdgeError, ServiceError, Violation};
use tessera_proto::google::rpc;
use tessera_proto::v1::{self as pb, patient_view_service_server::PatientViewService};
use tokio::time::Instant;
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Response, Status};

use crate::access::{note_planned, note_start, note_view};
use crate::authz::{Caller, Purpose};
use crate::view::{
    Aggregator, Identities, LookupError, SectionChunk, SourceOutcome, SourceRef, SourceState,
    Subject, View, ViewError, ViewRecord, ViewRequest, summarize,
};

/// The most subjects in one BatchGetPatientViews.
const MAX_BATCH: usize = 100;

/// GetPatientView's full method name, as the policy knows it.
const GET_METHOD: &str = "/tessera.v1.PatientViewService/GetPatientView";
/// StreamPatientView's full method name.
const STREAM_METHOD: &str = "/tessera.v1.PatientViewService/StreamPatientView";
/// BatchGetPatientViews's full method name.
const BATCH_METHOD: &str = "/tessera.v1.PatientViewService/BatchGetPatientViews";

/// PatientViewService over an [`Aggregator`], which may still be starting (it
/// needs the identity index): until it is set, calls answer UNAVAILABLE.
#[derive(Debug, Clone, Default)]
pub struct PatientViewGrpc {
    aggregator: Arc<OnceLock<Aggregator>>,
}

impl PatientViewGrpc {
    /// Serves `aggregator`.
    pub fn new(aggregator: Aggregator) -> Self {
        let service = Self::pending();
        service.set_ready(aggregator);
        service
    }

    /// A service still starting; see [`PatientViewGrpc::set_ready`].
    pub fn pending() -> Self {
        Self::default()
    }

    /// Starts serving. Returns false if an aggregator was already set.
    pub fn set_ready(&self, aggregator: Aggregator) -> bool {
        self.aggregator.set(aggregator).is_ok()
    }

    fn aggregator(&self) -> Result<&Aggregator, Status> {
        self.aggregator.get().ok_or_else(|| {
            EdgeError::NotReady {
                reason: "STARTING",
                message: "the patient view is still starting",
            }
            .into()
        })
    }
}

impl ServiceError for ViewError {
    fn code(&self) -> Code {
        match self {
            Self::Lookup(LookupError::NotFound { .. }) => Code::NotFound,
            Self::Lookup(LookupError::Invalid { .. }) | Self::UnknownSection { .. } => {
                Code::InvalidArgument
            }
            Self::Lookup(LookupError::Unavailable(_)) | Self::AllFailed { .. } => Code::Unavailable,
            Self::AllDenied => Code::PermissionDenied,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Self::Lookup(LookupError::NotFound { .. }) => "NOT_FOUND",
            Self::Lookup(LookupError::Invalid { .. }) | Self::UnknownSection { .. } => {
                "INVALID_ARGUMENT"
            }
            Self::Lookup(LookupError::Unavailable(_)) => "STORE_UNAVAILABLE",
            Self::AllDenied => "SECTIONS_DENIED",
            Self::AllFailed { .. } => "ALL_SOURCES_FAILED",
        }
    }

    /// Invalid fields read `field: description`; the store's own error is not
    /// passed on.
    fn message(&self) -> String {
        match self {
            Self::Lookup(LookupError::Unavailable(_)) => {
                "the identity store is unavailable".to_owned()
            }
            Self::Lookup(LookupError::Invalid { .. }) | Self::UnknownSection { .. } => self
                .violations()
                .iter()
                .map(|v| format!("{}: {}", v.field, v.description))
                .collect::<Vec<_>>()
                .join("; "),
            other => other.to_string(),
        }
    }

    fn metadata(&self) -> HashMap<String, String> {
        match self {
            Self::Lookup(LookupError::NotFound { what }) => {
                HashMap::from([("resource".to_owned(), (*what).to_owned())])
            }
            Self::AllFailed { statuses } => statuses
                .iter()
                .map(|s| {
                    (
                        format!("sources/{}/{}", s.source, s.section),
                        SourceState::name(s.state).to_owned(),
                    )
                })
                .collect(),
            _ => HashMap::new(),
        }
    }

    fn violations(&self) -> Vec<Violation> {
        match self {
            Self::Lookup(LookupError::Invalid { field, description }) => {
                vec![Violation::new(field.clone(), description.clone())]
            }
            Self::UnknownSection { index, .. } => vec![Violation::new(
                format!("read_mask.paths[{index}]"),
                "no source serves this section",
            )],
            _ => Vec::new(),
        }
    }
}

impl From<ViewError> for Status {
    fn from(err: ViewError) -> Self {
        error::status(&err)
    }
}

fn invalid(field: &str, description: &str) -> Status {
    EdgeError::invalid(field, description).into()
}

// ---- requests -----------------------------------------------------------------

/// The caller's timeout from the `grpc-timeout` header (`100m`, `2S`).
fn grpc_timeout(metadata: &MetadataMap) -> Option<Duration> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

fn subject_from(subject: Option<pb::PatientSubject>, field: &str) -> Result<Subject, Status> {
    match subject.and_then(|s| s.subject) {
        None => Err(invalid(field, "is required: a master or a source record")),
        Some(pb::patient_subject::Subject::Master(name)) => name
            .strip_prefix("masters/")
            .filter(|id| !id.is_empty() && !id.contains('/'))
            .map(|id| Subject::Master(id.to_owned()))
            .ok_or_else(|| invalid(&format!("{field}.master"), "must be `masters/{master}`")),
        Some(pb::patient_subject::Subject::SourceRecord(key)) => {
            if key.system.is_empty() {
                return Err(invalid(
                    &format!("{field}.source_record.system"),
                    "is required",
                ));
            }
            if key.local_id.is_empty() {
                return Err(invalid(
                    &format!("{field}.source_record.local_id"),
                    "is required",
                ));
            }
            Ok(Subject::SourceRecord(SourceRef {
                system: key.system,
                local_id: key.local_id,
            }))
        }
    }
}

fn sections_from(mask: Option<prost_types::FieldMask>) -> Result<Vec<String>, Status> {
    let paths = mask.map(|m| m.paths).unwrap_or_default();
    let mut sections = Vec::with_capacity(paths.len());
    for (i, path) in paths.iter().enumerate() {
        let section = path
            .strip_prefix("sections.")
            .filter(|s| tessera_adapter_core::valid_section_name(s))
            .ok_or_else(|| {
                invalid(
                    &format!("read_mask.paths[{i}]"),
                    "must be `sections.{section}`, a section name",
                )
            })?;
        if !sections.iter().any(|s| s == section) {
            sections.push(section.to_owned());
        }
    }
    Ok(sections)
}

fn purpose_from(value: i32) -> Result<Purpose, Status> {
    use pb::PurposeOfUse as P;
    match P::try_from(value) {
        Ok(P::Treatment) => Ok(Purpose::Treatment),
        Ok(P::EmergencyTreatment) => Ok(Purpose::EmergencyTreatment),
        Ok(P::Payment) => Ok(Purpose::Payment),
        Ok(P::Operations) => Ok(Purpose::Operations),
        Ok(P::Marketing) => Ok(Purpose::Marketing),
        Ok(P::PatientRequest) => Ok(Purpose::PatientRequest),
        Ok(P::PublicHealth) => Ok(Purpose::PublicHealth),
        Ok(P::Research) => Ok(Purpose::Research),
        Ok(P::Unspecified) => Err(invalid("purpose", "is required")),
        Err(_) => Err(invalid("purpose", "is not a known purpose of use")),
    }
}

fn staleness_from(d: Option<prost_types::Duration>) -> Result<Option<Duration>, Status> {
    let Some(d) = d else { return Ok(None) };
    Duration::try_from(d)
        .map(Some)
        .map_err(|_| invalid("max_staleness", "must not be negative"))
}

/// The request's parts the three RPCs share.
struct Common {
    sections: Vec<String>,
    purpose: Purpose,
    max_staleness: Option<Duration>,
    deadline: Instant,
    caller: Caller,
}

/// Checks the request's purpose (which reveals nothing) and then the
/// caller's right to make this call for it (deny by default: a request
/// without a grant is refused), before anything touches identities.
fn admit<T>(
    request: &Request<T>,
    method: &str,
    purpose: i32,
) -> Result<(Purpose, Grant, AccessLog), Status> {
    let purpose = purpose_from(purpose)?;
    let grant = authorize(request, method, purpose.code())?;
    Ok((purpose, grant, access_log(request)))
}

fn common(
    aggregator: &Aggregator,
    metadata: &MetadataMap,
    mask: Option<prost_types::FieldMask>,
    purpose: Purpose,
    grant: Grant,
    max_staleness: Option<prost_types::Duration>,
) -> Result<Common, Status> {
    Ok(Common {
        sections: sections_from(mask)?,
        purpose,
        max_staleness: staleness_from(max_staleness)?,
        deadline: aggregator.deadline(grpc_timeout(metadata)),
        caller: Caller::granted(grant),
    })
}

impl Common {
    fn request(&self, subject: Subject) -> ViewRequest {
        ViewRequest {
            subject,
            sections: self.sections.clone(),
            purpose: self.purpose,
            max_staleness: self.max_staleness,
            deadline: self.deadline,
            caller: self.caller.clone(),
        }
    }
}

// ---- responses ------------------------------------------------------------------

fn state_to(state: SourceState) -> pb::SourceState {
    match state {
        SourceState::Ok => pb::SourceState::Ok,
        SourceState::Stale => pb::SourceState::Stale,
        SourceState::Timeout => pb::SourceState::Timeout,
        SourceState::Unavailable => pb::SourceState::Unavailable,
        SourceState::CircuitOpen => pb::SourceState::CircuitOpen,
        SourceState::Denied => pb::SourceState::Denied,
        SourceState::Withheld => pb::SourceState::Withheld,
    }
}

fn source_name(name: &str) -> String {
    format!("sources/{name}")
}

fn duration_to(d: Duration) -> prost_types::Duration {
    prost_types::Duration::try_from(d).unwrap_or(prost_types::Duration {
        seconds: i64::MAX,
        nanos: 0,
    })
}

fn key_to(r: &SourceRef) -> pb::SourceRecordKey {
    pb::SourceRecordKey {
        system: r.system.clone(),
        local_id: r.local_id.clone(),
    }
}

fn identities_to(i: &Identities) -> pb::PatientIdentities {
    pb::PatientIdentities {
        master: format!("masters/{}", i.master),
        source_records: i.records.iter().map(key_to).collect(),
    }
}

/// Takes the view's records by value: the strings move into the message
/// rather than being copied a second time on every view.
fn record_to(r: ViewRecord) -> pb::ViewRecord {
    pb::ViewRecord {
        json: r.record.json.to_string(),
        media_type: r.media_type,
        provenance: Some(pb::RecordProvenance {
            source: source_name(&r.source),
            // An empty local ID: a system the caller may not see.
            source_record: (!r.source_record.local_id.is_empty()).then_some(pb::SourceRecordKey {
                system: r.source_record.system,
                local_id: r.source_record.local_id,
            }),
            record_id: r.record.record_id.unwrap_or_default(),
            fetch_time: Some(r.fetched_at.into()),
            cache_hit: r.cache_hit,
            age: Some(duration_to(r.age)),
            source_update_time: r.record.update_time.map(Into::into),
        }),
    }
}

fn status_to(s: &SourceOutcome) -> pb::SourceStatus {
    pb::SourceStatus {
        source: source_name(&s.source),
        section: s.section.clone(),
        state: state_to(s.state).into(),
        message: s.message.clone(),
        record_count: i32::try_from(s.record_count).unwrap_or(i32::MAX),
        latency: Some(duration_to(s.latency)),
    }
}

fn view_to(view: View) -> pb::PatientView {
    pb::PatientView {
        name: format!("masters/{}/view", view.identities.master),
        identities: Some(identities_to(&view.identities)),
        sections: view
            .sections
            .into_iter()
            .map(|(name, records)| {
                let records = records.into_iter().map(record_to).collect();
                (name, pb::Section { records })
            })
            .collect(),
        source_statuses: view.statuses.iter().map(status_to).collect(),
        unreachable: view.unreachable.iter().map(|s| source_name(s)).collect(),
        assemble_time: Some(view.assembled_at.into()),
    }
}

fn chunk_to(chunk: SectionChunk) -> pb::SectionChunk {
    pb::SectionChunk {
        source: source_name(&chunk.source),
        status: Some(status_to(&chunk.status)),
        section: chunk.section,
        records: chunk.records.into_iter().map(record_to).collect(),
    }
}

/// A `tonic::Status` as a `google.rpc.Status`, its details kept.
fn rpc_status(status: &Status) -> rpc::Status {
    rpc::Status::decode(status.details())
        .ok()
        .filter(|s| s.code != 0)
        .unwrap_or_else(|| rpc::Status {
            code: status.code() as i32,
            message: status.message().to_owned(),
            details: Vec::new(),
        })
}

type ViewEvents = Pin<Box<dyn Stream<Item = Result<pb::StreamPatientViewResponse, Status>> + Send>>;

fn event(
    e: pb::stream_patient_view_response::Event,
) -> Result<pb::StreamPatientViewResponse, Status> {
    Ok(pb::StreamPatientViewResponse { event: Some(e) })
}

#[tonic::async_trait]
impl PatientViewService for PatientViewGrpc {
    async fn get_patient_view(
        &self,
        request: Request<pb::GetPatientViewRequest>,
    ) -> Result<Response<pb::PatientView>, Status> {
        let (purpose, grant, log) = admit(&request, GET_METHOD, request.get_ref().purpose)?;
        let aggregator = self.aggregator()?;
        let (metadata, _, r) = request.into_parts();
        let subject = subject_from(r.subject, "subject")?;
        let common = common(
            aggregator,
            &metadata,
            r.read_mask,
            purpose,
            grant,
            r.max_staleness,
        )?;
        let view = aggregator.view(common.request(subject)).await?;
        note_view(&log, &view);
        Ok(Response::new(view_to(view)))
    }

    type StreamPatientViewStream = ViewEvents;

    async fn stream_patient_view(
        &self,
        request: Request<pb::StreamPatientViewRequest>,
    ) -> Result<Response<Self::StreamPatientViewStream>, Status> {
        use pb::stream_patient_view_response::Event;
        let (purpose, grant, log) = admit(&request, STREAM_METHOD, request.get_ref().purpose)?;
        let aggregator = self.aggregator()?;
        let (metadata, _, r) = request.into_parts();
        let subject = subject_from(r.subject, "subject")?;
        let common = common(
            aggregator,
            &metadata,
            r.read_mask,
            purpose,
            grant,
            r.max_staleness,
        )?;
        let view = aggregator.stream(common.request(subject)).await?;
        note_start(&log, &view.identities, &view.denied);
        note_planned(&log, &view.planned);
        let seen: Arc<Mutex<Vec<SourceOutcome>>> = Arc::default();
        let identities = event(Event::Identities(identities_to(&view.identities)));
        let chunks = view.chunks.map({
            let seen = seen.clone();
            move |chunk| {
                seen.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(chunk.status.clone());
                event(Event::Section(chunk_to(chunk)))
            }
        });
        let denied = view.denied;
        // Lazy: runs once every chunk has been sent.
        let summary = stream::once(async move {
            let seen = std::mem::take(
                &mut *seen
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
            let (statuses, unreachable) = summarize(&seen, &denied);
            event(Event::Summary(pb::ViewSummary {
                source_statuses: statuses.iter().map(status_to).collect(),
                unreachable: unreachable.iter().map(|s| source_name(s)).collect(),
                assemble_time: Some(SystemTime::now().into()),
            }))
        });
        let events = stream::iter([identities]).chain(chunks).chain(summary);
        Ok(Response::new(Box::pin(events)))
    }

    async fn batch_get_patient_views(
        &self,
        request: Request<pb::BatchGetPatientViewsRequest>,
    ) -> Result<Response<pb::BatchGetPatientViewsResponse>, Status> {
        let (purpose, grant, log) = admit(&request, BATCH_METHOD, request.get_ref().purpose)?;
        let aggregator = self.aggregator()?;
        let (metadata, _, r) = request.into_parts();
        if r.subjects.is_empty() {
            return Err(invalid("subjects", "is required: at least one subject"));
        }
        if r.subjects.len() > MAX_BATCH {
            return Err(invalid(
                "subjects",
                &format!("at most {MAX_BATCH} subjects"),
            ));
        }
        let common = common(
            aggregator,
            &metadata,
            r.read_mask,
            purpose,
            grant,
            r.max_staleness,
        )?;
        let subjects = r
            .subjects
            .into_iter()
            .enumerate()
            .map(|(i, s)| subject_from(Some(s), &format!("subjects[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let views = futures_util::future::join_all(
            subjects
                .into_iter()
                .map(|subject| aggregator.view(common.request(subject))),
        )
        .await;
        let results = views
            .into_iter()
            .map(|result| pb::PatientViewResult {
                result: Some(match result {
                    Ok(view) => {
                        note_view(&log, &view);
                        pb::patient_view_result::Result::PatientView(view_to(view))
                    }
                    Err(e) => pb::patient_view_result::Result::Error(rpc_status(&Status::from(e))),
                }),
            })
            .collect();
        Ok(Response::new(pb::BatchGetPatientViewsResponse { results }))
    }
}

#[cfg(test)]
mod tests {
    use tonic_types::StatusExt;

    use super::*;

    fn metadata(timeout: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("grpc-timeout", timeout.parse().expect("ascii"));
        m
    }

    #[test]
    fn grpc_timeouts_parse_in_every_unit() {
        assert_eq!(
            grpc_timeout(&metadata("100m")),
            Some(Duration::from_millis(100))
        );
        assert_eq!(grpc_timeout(&metadata("2S")), Some(Duration::from_secs(2)));
        assert_eq!(
            grpc_timeout(&metadata("1H")),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(
            grpc_timeout(&metadata("250u")),
            Some(Duration::from_micros(250))
        );
        assert_eq!(grpc_timeout(&metadata("bogus")), None);
        assert_eq!(grpc_timeout(&MetadataMap::new()), None);
    }

    #[test]
    fn read_masks_name_sections() {
        let mask = |paths: &[&str]| {
            Some(prost_types::FieldMask {
                paths: paths.iter().map(|p| (*p).to_owned()).collect(),
            })
        };
        assert_eq!(
            sections_from(mask(&[
                "sections.encounters",
                "sections.invoices",
                "sections.encounters"
            ]))
            .expect("valid"),
            ["encounters", "invoices"]
        );
        let err = sections_from(mask(&["sections.encounters", "identities"])).unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        let violations = err.get_details_bad_request().expect("field violations");
        assert_eq!(violations.field_violations[0].field, "read_mask.paths[1]");
    }

    #[test]
    fn subjects_are_validated_field_by_field() {
        let err = subject_from(None, "subject").unwrap_err();
        assert_eq!(
            err.get_details_bad_request()
                .expect("bad request")
                .field_violations[0]
                .field,
            "subject"
        );
        let master = |name: &str| {
            Some(pb::PatientSubject {
                subject: Some(pb::patient_subject::Subject::Master(name.to_owned())),
            })
        };
        assert_eq!(
            subject_from(master("masters/42"), "subject").expect("valid"),
            Subject::Master("42".to_owned())
        );
        let err = subject_from(master("42"), "subject").unwrap_err();
        assert_eq!(
            err.get_details_bad_request()
                .expect("bad request")
                .field_violations[0]
                .field,
            "subject.master"
        );
        let record = Some(pb::PatientSubject {
            subject: Some(pb::patient_subject::Subject::SourceRecord(
                pb::SourceRecordKey {
                    system: "ehr".to_owned(),
                    local_id: String::new(),
                },
            )),
        });
        let err = subject_from(record, "subjects[3]").unwrap_err();
        assert_eq!(
            err.get_details_bad_request()
                .expect("bad request")
                .field_violations[0]
                .field,
            "subjects[3].source_record.local_id"
        );
        assert_eq!(purpose_from(0).unwrap_err().code(), Code::InvalidArgument);
        assert_eq!(purpose_from(99).unwrap_err().code(), Code::InvalidArgument);
    }

    #[test]
    fn every_source_failing_is_unavailable_with_the_states() {
        let status = Status::from(ViewError::AllFailed {
            statuses: vec![SourceOutcome {
                source: "ehr".to_owned(),
                section: "encounters".to_owned(),
                state: SourceState::Timeout,
                message: "no answer within the deadline".to_owned(),
                record_count: 0,
                latency: Duration::from_millis(95),
            }],
        });
        assert_eq!(status.code(), Code::Unavailable);
        let info = status.get_details_error_info().expect("error info");
        assert_eq!(info.reason, "ALL_SOURCES_FAILED");
        assert_eq!(info.domain, tessera_proto::ERROR_DOMAIN);
        assert!(
            status.get_details_retry_info().is_some(),
            "the caller may retry when the sources recover"
        );
        assert_eq!(info.metadata["sources/ehr/encounters"], "TIMEOUT");
        let rpc = rpc_status(&status);
        assert_eq!(rpc.code, Code::Unavailable as i32);
        assert!(
            !rpc.details.is_empty(),
            "details survive into the batch result"
        );
    }
}
