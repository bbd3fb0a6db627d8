//! The adapter: finding the patient, searching each section (paged, same origin
//! only), the identity feed and the health check.

use std::collections::{HashMap, VecDeque};
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
use crate::filing::{self, malformed_owners, patient_references};
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
    /// For a search of several patients: the patients each skipped resource
    /// references, so its skip is counted under them.
    skipped_owners: Vec<Vec<String>>,
}

impl SectionOutcome {
    fn new(records: Result<Vec<Record>, FetchError>) -> Self {
        Self {
            records,
            skipped: 0,
            skipped_owners: Vec::new(),
        }
    }
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
        let results = self
            .inner
            .fetch_batch(
                &request.local_ids,
                &request.sections,
                request.deadline,
                trace,
            )
            .instrument(span)
            .await;
        Ok(results)
    }

    fn identity_feed(&self, updated_since: Option<SystemTime>) -> BoxFeed<'_> {
        self.inner.identity_feed(updated_since)
    }
}

impl Inner {
    /// Every (local ID, section) pair: one Patient search for all the local
    /// IDs, then one search per section for all the patients found.
    async fn fetch_batch(
        &self,
        local_ids: &[String],
        sections: &[String],
        deadline: Instant,
        trace: Trace,
    ) -> Vec<FetchResult> {
        let patients =
            tokio::time::timeout_at(deadline, self.find_patients(local_ids, trace, deadline))
                .await
                .unwrap_or_else(|_| {
                    local_ids
                        .iter()
                        .map(|id| (id.clone(), Err(FetchError::DeadlineExceeded)))
                        .collect()
                });
        // The logical ids of the patients found, for the section searches.
        let mut found: Vec<String> = Vec::new();
        for patient in patients.values().flatten() {
            if let Some(id) = patient.resource.as_base_resource().id()
                && !found.contains(id)
            {
                found.push(id.clone());
            }
        }
        let searches = sections.iter().map(|name| {
            let (patients, found) = (&patients, &found);
            async move {
                let section = Section::from_name(name).filter(|s| self.config.sections.contains(s));
                let mut by_patient = match section {
                    Some(section) if section != Section::Demographics && !found.is_empty() => {
                        let search = self.search_sections(section, found, trace, deadline);
                        tokio::time::timeout_at(deadline, search)
                            .await
                            .unwrap_or_default()
                    }
                    _ => HashMap::new(),
                };
                local_ids
                    .iter()
                    .map(|local_id| {
                        let patient = patients.get(local_id);
                        let outcome = section_outcome(name, section, patient, &mut by_patient);
                        FetchResult {
                            local_id: local_id.clone(),
                            section: name.clone(),
                            records: outcome.records,
                            skipped_malformed: outcome.skipped,
                        }
                    })
                    .collect::<Vec<_>>()
            }
        });
        join_all(searches).await.into_iter().flatten().collect()
    }

    /// The Patient each local ID names, in one search (paged): `_id=a,b` or
    /// `identifier=system|a,system|b`.
    async fn find_patients(
        &self,
        local_ids: &[String],
        trace: Trace,
        deadline: Instant,
    ) -> HashMap<String, Result<Checked, FetchError>> {
        let mut wanted: Vec<&str> = Vec::new();
        let mut results: HashMap<String, Result<Checked, FetchError>> = HashMap::new();
        for local_id in local_ids {
            let valid = match &self.config.patient_id {
                PatientIdConfig::LogicalId => mapping::is_logical_id(local_id),
                PatientIdConfig::Identifier { .. } => true,
            };
            if valid {
                wanted.push(local_id);
            } else {
                results.insert(local_id.clone(), Err(FetchError::NotFound));
            }
        }
        if wanted.is_empty() {
            return results;
        }
        let (param, values): (&str, Vec<String>) = match &self.config.patient_id {
            PatientIdConfig::LogicalId => ("_id", wanted.iter().map(|&id| id.to_owned()).collect()),
            PatientIdConfig::Identifier { system } => (
                "identifier",
                wanted
                    .iter()
                    .map(|id| format!("{system}|{}", escape_search_value(id)))
                    .collect(),
            ),
        };
        // Twice as many as asked for, to see a local ID matching two patients.
        let params = vec![
            (param.to_owned(), values.join(",")),
            ("_count".to_owned(), (2 * wanted.len()).to_string()),
        ];
        let span = tracing::info_span!("fhir.find_patient", fhir.resource_type = "Patient");
        let pages = self
            .all_pages("Patient", params, self.config.max_pages, trace, deadline)
            .instrument(span)
            .await;
        let (resources, skipped) = match pages {
            Ok(found) => found,
            Err(e) => {
                for local_id in wanted {
                    results.insert(local_id.to_owned(), Err(e.clone()));
                }
                return results;
            }
        };
        for (local_id, result) in
            filing::file_patients(&self.config.patient_id, &wanted, resources, skipped)
        {
            results.insert(local_id, result);
        }
        results
    }

    /// Every page of a search, up to `max_pages`: the resources and how many
    /// were skipped as malformed.
    async fn all_pages(
        &self,
        resource_type: &str,
        params: Vec<(String, String)>,
        max_pages: u32,
        trace: Trace,
        deadline: Instant,
    ) -> Result<(Vec<Checked>, u32), FetchError> {
        let mut call = self.search_call(resource_type, params)?;
        let (mut resources, mut skipped) = (Vec::new(), 0);
        for page_number in 1..=max_pages {
            let body = self.http.send(&call, trace, deadline).await?;
            let page = mapping::parse_bundle(&body)?;
            skipped += page.skipped;
            resources.extend(page.resources);
            let Some(next) = page.next else {
                break;
            };
            if page_number == max_pages {
                tracing::warn!(max_pages, "search cut short at max_pages");
                break;
            }
            call = Call::Get(self.next_link(&next)?);
        }
        Ok((resources, skipped))
    }

    /// One section for several patients, by logical id: one search for all of
    /// them, its records split by the patient each references. A section with
    /// `_include`s is searched patient by patient (an included resource names
    /// no patient to file it under).
    async fn search_sections(
        &self,
        section: Section,
        patients: &[String],
        trace: Trace,
        deadline: Instant,
    ) -> HashMap<String, SectionOutcome> {
        if patients.len() == 1 || !self.config.options(section).include.is_empty() {
            let each = patients.iter().map(|id| async move {
                let outcome = self
                    .search_section(section, std::slice::from_ref(id), trace, deadline)
                    .await;
                (id.clone(), outcome)
            });
            return join_all(each).await.into_iter().collect();
        }
        let outcome = self
            .search_section(section, patients, trace, deadline)
            .await;
        let records = match outcome.records {
            Ok(records) => records,
            Err(e) => {
                return patients
                    .iter()
                    .map(|id| (id.clone(), SectionOutcome::new(Err(e.clone()))))
                    .collect();
            }
        };
        let mut by_patient: HashMap<String, SectionOutcome> = patients
            .iter()
            .map(|id| (id.clone(), SectionOutcome::new(Ok(Vec::new()))))
            .collect();
        // A skipped resource counts under the patients it references; one
        // that names none of them (or a record filed under none), under the
        // first patient, so the skips add up.
        let mut unfiled = outcome
            .skipped
            .saturating_sub(u32::try_from(outcome.skipped_owners.len()).unwrap_or(u32::MAX));
        for owners in &outcome.skipped_owners {
            let mut filed = false;
            for owner in owners {
                if let Some(of) = by_patient.get_mut(owner) {
                    of.skipped += 1;
                    filed = true;
                }
            }
            if !filed {
                unfiled += 1;
            }
        }
        for record in records {
            let mut filed = false;
            for owner in patient_references(&record.json) {
                if let Some(SectionOutcome {
                    records: Ok(list), ..
                }) = by_patient.get_mut(&owner)
                {
                    list.push(record.clone());
                    filed = true;
                }
            }
            if !filed {
                unfiled += 1;
            }
        }
        if let Some(first) = patients.first().and_then(|id| by_patient.get_mut(id)) {
            first.skipped += unfiled;
        }
        by_patient
    }

    /// Every page of one section for some patients (`patient=a,b`), up to
    /// `max_pages` per patient.
    async fn search_section(
        &self,
        section: Section,
        patient_ids: &[String],
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
            ("patient".to_owned(), patient_ids.join(",")),
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
        let mut outcome = SectionOutcome::new(Ok(Vec::new()));
        let run = async {
            let mut call = self.search_call(resource_type, params)?;
            let mut records = Vec::new();
            let max_pages = self
                .config
                .max_pages
                .saturating_mul(u32::try_from(patient_ids.len()).unwrap_or(u32::MAX));
            for page_number in 1..=max_pages {
                let body = self.http.send(&call, trace, deadline).await?;
                let page = mapping::parse_bundle(&body)?;
                outcome.skipped += page.skipped;
                if page.skipped > 0 && patient_ids.len() > 1 {
                    outcome.skipped_owners.extend(malformed_owners(&body));
                }
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
                if page_number == max_pages {
                    tracing::warn!(max_pages, "section cut short at max_pages");
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

/// One section's outcome for one local ID, from its patient and the
/// section's search.
fn section_outcome(
    name: &str,
    section: Option<Section>,
    patient: Option<&Result<Checked, FetchError>>,
    by_patient: &mut HashMap<String, SectionOutcome>,
) -> SectionOutcome {
    let failed = |e: FetchError| SectionOutcome::new(Err(e));
    let Some(section) = section else {
        return failed(FetchError::UnknownSection {
            section: name.to_owned(),
        });
    };
    let patient = match patient {
        Some(Ok(patient)) => patient,
        Some(Err(e)) => return failed(e.clone()),
        None => return failed(FetchError::NotFound),
    };
    if section == Section::Demographics {
        return SectionOutcome::new(Ok(vec![patient.record()]));
    }
    let id = patient.resource.as_base_resource().id().clone();
    // Two local IDs naming one patient share its records: cloned, not moved.
    id.and_then(|id| by_patient.get(&id))
        .map(|outcome| SectionOutcome {
            skipped: outcome.skipped,
            ..SectionOutcome::new(outcome.records.clone())
        })
        .unwrap_or_else(|| failed(FetchError::DeadlineExceeded))
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
