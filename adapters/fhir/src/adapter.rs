//! The adapter: finding the patient, searching each section (paged, same origin
//! only), the identity feed and the health check.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures_util::future::join_all;
use tessera_adapter_core::{
    Adapter, BoxFeed, Description, FeedRecord, FetchError, FetchRequest, FetchResult, Health,
    HealthCheck, Record,
};
use tokio::time::Instant;
use tracing::Instrument;
use url::Url;

use crate::client::{Call, FhirHttp, Trace};
use crate::config::{FhirConfig, PatientIdConfig, Section};
use crate::mapping::{self, Checked};

/// A FHIR R4 server, as Tessera reaches it.
pub struct FhirAdapter {
    inner: Arc<Inner>,
}

struct Inner {
    http: FhirHttp,
    config: FhirConfig,
    description: Description,
}

/// What one section's search produced.
struct SectionOutcome {
    records: Result<Vec<Record>, FetchError>,
    skipped: u32,
}

impl FhirAdapter {
    pub(crate) fn new(http: FhirHttp, config: FhirConfig, description: Description) -> Self {
        Self {
            inner: Arc::new(Inner {
                http,
                config,
                description,
            }),
        }
    }

    /// Its health check, sharing its client.
    pub(crate) fn health_check(&self) -> FhirHealth {
        FhirHealth {
            inner: self.inner.clone(),
        }
    }
}

#[async_trait]
impl Adapter for FhirAdapter {
    fn describe(&self) -> &Description {
        &self.inner.description
    }

    async fn fetch(&self, request: FetchRequest) -> Result<Vec<FetchResult>, FetchError> {
        if Instant::now() >= request.deadline {
            return Err(FetchError::DeadlineExceeded);
        }
        let trace = Trace::new();
        let span = tracing::info_span!(
            "fhir.fetch",
            tessera.source = %self.inner.description.system,
            tessera.local_ids = request.local_ids.len(),
            tessera.sections = request.sections.len(),
        );
        let inner = &self.inner;
        let per_patient = request.local_ids.iter().map(|local_id| {
            inner.fetch_patient(local_id, &request.sections, request.deadline, trace)
        });
        let results = join_all(per_patient).instrument(span).await;
        Ok(results.into_iter().flatten().collect())
    }

    fn identity_feed(&self, updated_since: Option<SystemTime>) -> BoxFeed<'_> {
        self.inner.identity_feed(updated_since)
    }
}

impl Inner {
    async fn fetch_patient(
        &self,
        local_id: &str,
        sections: &[String],
        deadline: Instant,
        trace: Trace,
    ) -> Vec<FetchResult> {
        let result = |section: &str, records, skipped| FetchResult {
            local_id: local_id.to_owned(),
            section: section.to_owned(),
            records,
            skipped_malformed: skipped,
        };
        let patient =
            tokio::time::timeout_at(deadline, self.find_patient(local_id, trace, deadline))
                .await
                .unwrap_or(Err(FetchError::DeadlineExceeded));
        let searches = sections.iter().map(|name| {
            let section = Section::from_name(name).filter(|s| self.config.sections.contains(s));
            let patient = &patient;
            async move {
                let outcome = match (section, patient) {
                    (None, _) => SectionOutcome {
                        records: Err(FetchError::UnknownSection {
                            section: name.clone(),
                        }),
                        skipped: 0,
                    },
                    (Some(_), Err(e)) => SectionOutcome {
                        records: Err(e.clone()),
                        skipped: 0,
                    },
                    (Some(Section::Demographics), Ok(patient)) => SectionOutcome {
                        records: Ok(vec![patient.record()]),
                        skipped: 0,
                    },
                    (Some(section), Ok(patient)) => {
                        let id = patient.resource.as_base_resource().id().clone();
                        let search = self.search_section(
                            section,
                            id.as_deref().unwrap_or(""),
                            trace,
                            deadline,
                        );
                        tokio::time::timeout_at(deadline, search)
                            .await
                            .unwrap_or(SectionOutcome {
                                records: Err(FetchError::DeadlineExceeded),
                                skipped: 0,
                            })
                    }
                };
                result(name, outcome.records, outcome.skipped)
            }
        });
        join_all(searches).await
    }

    /// The Patient a local ID names.
    async fn find_patient(
        &self,
        local_id: &str,
        trace: Trace,
        deadline: Instant,
    ) -> Result<Checked, FetchError> {
        let (param, value) = match &self.config.patient_id {
            PatientIdConfig::LogicalId => {
                if !mapping::is_logical_id(local_id) {
                    return Err(FetchError::NotFound);
                }
                ("_id", local_id.to_owned())
            }
            PatientIdConfig::Identifier { system } => (
                "identifier",
                format!("{system}|{}", escape_search_value(local_id)),
            ),
        };
        let params = vec![
            (param.to_owned(), value),
            ("_count".to_owned(), "2".to_owned()),
        ];
        let call = self.search_call("Patient", params)?;
        let body = self
            .http
            .send(&call, trace, deadline)
            .instrument(tracing::info_span!(
                "fhir.find_patient",
                fhir.resource_type = "Patient"
            ))
            .await?;
        let page = mapping::parse_bundle(&body)?;
        let mut patients = page
            .resources
            .into_iter()
            .filter(|r| matches!(r.resource, fhir_sdk::r4b::resources::Resource::Patient(_)));
        match (patients.next(), patients.next()) {
            (Some(patient), None) => Ok(patient),
            (None, _) if page.skipped > 0 => Err(FetchError::Malformed {
                message: "the patient resource is malformed".to_owned(),
            }),
            (None, _) => Err(FetchError::NotFound),
            (Some(_), Some(_)) => Err(FetchError::Malformed {
                message: "the local ID matches more than one patient".to_owned(),
            }),
        }
    }

    /// Every page of one section for one patient.
    async fn search_section(
        &self,
        section: Section,
        patient_id: &str,
        trace: Trace,
        deadline: Instant,
    ) -> SectionOutcome {
        let resource_type = section.resource_type();
        let span = tracing::info_span!(
            "fhir.search",
            tessera.section = section.name(),
            fhir.resource_type = resource_type,
            tessera.pages = tracing::field::Empty,
            tessera.records = tracing::field::Empty,
            tessera.skipped_malformed = tracing::field::Empty,
        );
        let options = self.config.options(section);
        let mut params = vec![
            ("patient".to_owned(), patient_id.to_owned()),
            ("_count".to_owned(), self.config.page_size.to_string()),
        ];
        if let Some(within) = options.last_updated_within {
            params.push((
                "_lastUpdated".to_owned(),
                format!("ge{}", rfc3339(SystemTime::now() - within)),
            ));
        }
        for include in &options.include {
            params.push(("_include".to_owned(), include.clone()));
        }
        let mut outcome = SectionOutcome {
            records: Ok(Vec::new()),
            skipped: 0,
        };
        let run = async {
            let mut call = self.search_call(resource_type, params)?;
            let mut records = Vec::new();
            for page_number in 1..=self.config.max_pages {
                let body = self.http.send(&call, trace, deadline).await?;
                let page = mapping::parse_bundle(&body)?;
                outcome.skipped += page.skipped;
                for checked in page.resources {
                    let keep =
                        checked.resource_type() == resource_type || !options.include.is_empty();
                    if !keep {
                        continue;
                    }
                    if section == Section::Documents {
                        match mapping::without_attachment_data(&checked.json) {
                            Some(json) => records.push(Checked { json, ..checked }.record()),
                            None => outcome.skipped += 1,
                        }
                    } else {
                        records.push(checked.record());
                    }
                }
                tracing::Span::current().record("tessera.pages", page_number);
                let Some(next) = page.next else {
                    return Ok(records);
                };
                call = Call::Get(self.next_link(&next)?);
                if page_number == self.config.max_pages {
                    tracing::warn!(
                        max_pages = self.config.max_pages,
                        "section cut short at max_pages"
                    );
                }
            }
            Ok(records)
        };
        let records = run.instrument(span.clone()).await;
        span.record("tessera.skipped_malformed", outcome.skipped);
        if let Ok(records) = &records {
            span.record("tessera.records", records.len());
        }
        outcome.records = records;
        outcome
    }

    /// A search of `resource_type` by GET or by POST `_search`.
    fn search_call(
        &self,
        resource_type: &str,
        params: Vec<(String, String)>,
    ) -> Result<Call, FetchError> {
        let join = |path: &str| {
            self.http
                .base()
                .join(path)
                .map_err(|_| FetchError::Malformed {
                    message: "cannot form a search URL".to_owned(),
                })
        };
        if self.config.search_via_post {
            Ok(Call::SearchPost {
                url: join(&format!("{resource_type}/_search"))?,
                form: params,
            })
        } else {
            let mut url = join(resource_type)?;
            url.query_pairs_mut().extend_pairs(params);
            Ok(Call::Get(url))
        }
    }

    /// A `next` link, if it is on the server's origin.
    fn next_link(&self, link: &str) -> Result<Url, FetchError> {
        let url = self
            .http
            .base()
            .join(link)
            .map_err(|_| FetchError::Malformed {
                message: "a next link is not a URL".to_owned(),
            })?;
        if !self.http.same_origin(&url) {
            tracing::warn!("refused a next link on another origin than the server's");
            return Err(FetchError::Malformed {
                message: "refused a next link on another origin than the server's".to_owned(),
            });
        }
        Ok(url)
    }

    fn identity_feed(self: &Arc<Self>, updated_since: Option<SystemTime>) -> BoxFeed<'static> {
        let mut params = vec![("_count".to_owned(), self.config.page_size.to_string())];
        if let Some(since) = updated_since {
            params.push(("_lastUpdated".to_owned(), format!("ge{}", rfc3339(since))));
        }
        let first = self.search_call("Patient", params);
        let state = FeedState {
            inner: self.clone(),
            next: Some(first),
            buffer: VecDeque::new(),
            trace: Trace::new(),
        };
        Box::pin(futures_util::stream::unfold(state, FeedState::step))
    }
}

struct FeedState {
    inner: Arc<Inner>,
    next: Option<Result<Call, FetchError>>,
    buffer: VecDeque<FeedRecord>,
    trace: Trace,
}

impl FeedState {
    async fn step(mut self) -> Option<(Result<FeedRecord, FetchError>, Self)> {
        loop {
            if let Some(record) = self.buffer.pop_front() {
                return Some((Ok(record), self));
            }
            let call = match self.next.take()? {
                Ok(call) => call,
                Err(e) => return Some((Err(e), self)),
            };
            match self.page(&call).await {
                Ok(()) => {}
                Err(e) => {
                    self.next = None;
                    return Some((Err(e), self));
                }
            }
        }
    }

    async fn page(&mut self, call: &Call) -> Result<(), FetchError> {
        let deadline = Instant::now() + self.inner.config.request_timeout;
        let body = self.inner.http.send(call, self.trace, deadline).await?;
        let page = mapping::parse_bundle(&body)?;
        if page.skipped > 0 {
            tracing::warn!(
                skipped = page.skipped,
                "identity feed skipped malformed patients"
            );
        }
        for checked in &page.resources {
            let fhir_sdk::r4b::resources::Resource::Patient(patient) = &checked.resource else {
                continue;
            };
            let local_id = match &self.inner.config.patient_id {
                PatientIdConfig::LogicalId => patient.id.clone(),
                PatientIdConfig::Identifier { system } => {
                    mapping::identifier_value(patient, system)
                }
            };
            let Some(local_id) = local_id else { continue };
            self.buffer.push_back(FeedRecord {
                local_id,
                demographics: mapping::demographics(patient),
                update_time: checked.record().update_time,
            });
        }
        if let Some(next) = page.next {
            self.next = Some(self.inner.next_link(&next).map(Call::Get));
        }
        Ok(())
    }
}

/// The health check: `GET [base]/metadata`.
pub(crate) struct FhirHealth {
    inner: Arc<Inner>,
}

#[async_trait]
impl HealthCheck for FhirHealth {
    async fn check(&self) -> Health {
        let Ok(url) = self.inner.http.base().join("metadata") else {
            return Health::not_serving("cannot form the metadata URL");
        };
        let deadline = Instant::now()
            + self
                .inner
                .config
                .request_timeout
                .min(Duration::from_secs(5));
        match self
            .inner
            .http
            .send(&Call::Get(url), Trace::new(), deadline)
            .await
        {
            Ok(_) => Health::serving(),
            Err(e) => Health::not_serving(e.to_string()),
        }
    }
}

/// A search parameter value with FHIR's reserved characters escaped.
fn escape_search_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | '|' | ',' | '$') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `time` as an RFC 3339 instant in UTC, to the second.
fn rfc3339(at: SystemTime) -> String {
    let odt = time::OffsetDateTime::from(at);
    let odt = odt.replace_nanosecond(0).unwrap_or(odt);
    odt.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
