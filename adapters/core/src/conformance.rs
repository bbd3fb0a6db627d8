//! The conformance kit: what every adapter must do, checked against a running
//! silo. Each adapter's tests run it, and `tessera adapter check` runs it
//! against a configured silo before a platform team ships an adapter.
//!
//! The basic checks need only the adapter and one known local ID. The fault
//! checks (a silo that stalls, a silo that returns malformed data) need
//! fixtures only a test harness can set up; without them they are reported as
//! skipped, never as passed.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::{
    Adapter, FetchError, FetchRequest, FetchResult, MEDIA_TYPE_FHIR_JSON, MEDIA_TYPE_JSON,
    valid_section_name,
};

/// How late past its deadline an adapter may return.
pub const DEADLINE_GRACE: Duration = Duration::from_millis(100);
/// The deadline of the checks that expect an answer.
const GENEROUS: Duration = Duration::from_secs(10);
/// The deadline of the stalled-silo check.
const SHORT: Duration = Duration::from_millis(300);

/// What the kit needs to know about the silo behind an adapter.
pub struct Fixture {
    /// A local ID the silo has records for.
    pub known_local_id: String,
    /// A local ID the silo does not know.
    pub unknown_local_id: String,
    /// Patient data of the known record (names, birth dates, identifiers) that
    /// must never appear in an error; the local IDs are checked too.
    pub sensitive: Vec<String>,
    /// An instance of the adapter whose silo stalls, if the harness has one.
    pub slow: Option<SlowUpstream>,
    /// An instance of the adapter whose silo returns malformed data, if any.
    pub malformed: Option<MalformedUpstream>,
}

/// An adapter whose silo never answers.
pub struct SlowUpstream {
    /// The adapter, pointed at the stalled silo.
    pub adapter: Arc<dyn Adapter>,
    /// A local ID to ask for.
    pub local_id: String,
    /// A section to ask for.
    pub section: String,
    /// How many requests the silo is still working on (it sees a dropped
    /// connection or cancelled statement as finished).
    pub upstream_in_flight: Arc<dyn Fn() -> u64 + Send + Sync>,
}

/// An adapter whose silo returns malformed records for one local ID.
pub struct MalformedUpstream {
    /// The adapter, pointed at the silo.
    pub adapter: Arc<dyn Adapter>,
    /// The local ID whose records are malformed.
    pub local_id: String,
    /// The section to ask for.
    pub section: String,
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The adapter did what it must.
    Passed,
    /// It did not; why.
    Failed(String),
    /// Not checked; why (a fixture was missing).
    Skipped(String),
}

/// One check's name and outcome.
#[derive(Debug, Clone)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// How it went.
    pub outcome: Outcome,
}

/// Every check's outcome.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// In the order run.
    pub checks: Vec<Check>,
}

impl Report {
    /// Whether no check failed.
    pub fn passed(&self) -> bool {
        self.failed() == 0
    }

    /// How many checks failed.
    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Failed(_)))
    }

    /// How many checks were skipped.
    pub fn skipped(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Skipped(_)))
    }

    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.checks.iter().filter(|c| f(&c.outcome)).count()
    }

    /// Panics with the report unless every check passed or was skipped.
    #[allow(clippy::panic)]
    pub fn assert_passed(&self) {
        assert!(self.passed(), "conformance failed:\n{self}");
    }

    fn push(&mut self, name: &'static str, outcome: Outcome) {
        self.checks.push(Check { name, outcome });
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for check in &self.checks {
            match &check.outcome {
                Outcome::Passed => writeln!(f, "pass  {}", check.name)?,
                Outcome::Failed(why) => writeln!(f, "FAIL  {}: {why}", check.name)?,
                Outcome::Skipped(why) => writeln!(f, "skip  {}: {why}", check.name)?,
            }
        }
        write!(
            f,
            "{} passed, {} failed, {} skipped",
            self.checks.len() - self.failed() - self.skipped(),
            self.failed(),
            self.skipped()
        )
    }
}

/// Runs every check against `adapter`.
pub async fn run(adapter: Arc<dyn Adapter>, fixture: &Fixture) -> Report {
    let mut kit = Kit {
        report: Report::default(),
        errors: Vec::new(),
    };
    kit.describes_itself(&*adapter);
    kit.fetches_a_known_record(&adapter, fixture).await;
    kit.unknown_local_id(&adapter, fixture).await;
    kit.unknown_section(&adapter, fixture).await;
    kit.expired_deadline(&adapter, fixture).await;
    kit.stalled_silo(fixture).await;
    kit.cancellation(fixture).await;
    kit.malformed(fixture).await;
    kit.no_patient_data_in_errors(fixture);
    kit.report
}

struct Kit {
    report: Report,
    /// Every error seen, rendered with Display and Debug.
    errors: Vec<String>,
}

type Fetched = Result<Result<Vec<FetchResult>, FetchError>, String>;

impl Kit {
    /// Calls `fetch` on its own task so a panic is a failed check, not a crash.
    async fn fetch(&mut self, adapter: &Arc<dyn Adapter>, request: FetchRequest) -> Fetched {
        let adapter = adapter.clone();
        let outcome = tokio::spawn(async move { adapter.fetch(request).await })
            .await
            .map_err(|e| format!("fetch panicked or was cancelled: {e}"))?;
        match &outcome {
            Err(e) => self.errors.push(format!("{e} / {e:?}")),
            Ok(results) => {
                for e in results.iter().filter_map(|r| r.records.as_ref().err()) {
                    self.errors.push(format!("{e} / {e:?}"));
                }
            }
        }
        Ok(outcome)
    }

    fn describes_itself(&mut self, adapter: &dyn Adapter) {
        let d = adapter.describe();
        let mut names = BTreeSet::new();
        let problem = if d.system.is_empty() {
            Some("empty system".to_owned())
        } else if d.sections.is_empty() {
            Some("no sections".to_owned())
        } else if let Some(s) = d.sections.iter().find(|s| !valid_section_name(&s.name)) {
            Some(format!("invalid section name {:?}", s.name))
        } else if let Some(s) = d.sections.iter().find(|s| !names.insert(&s.name)) {
            Some(format!("section {:?} listed twice", s.name))
        } else if let Some(s) = d
            .sections
            .iter()
            .find(|s| s.media_type != MEDIA_TYPE_JSON && s.media_type != MEDIA_TYPE_FHIR_JSON)
        {
            Some(format!("section {:?}: unknown media type", s.name))
        } else if d.capabilities.batch_fetch && d.capabilities.max_batch_size == 0 {
            Some("batch fetch with a max batch size of 0".to_owned())
        } else {
            None
        };
        self.report.push("describes itself", outcome(problem));
    }

    async fn fetches_a_known_record(&mut self, adapter: &Arc<dyn Adapter>, fixture: &Fixture) {
        let sections: Vec<String> = section_names(&**adapter);
        let request = FetchRequest {
            local_ids: vec![fixture.known_local_id.clone()],
            sections: sections.clone(),
            deadline: Instant::now() + GENEROUS,
        };
        let problem = match self.fetch(adapter, request).await {
            Err(panic) => Some(panic),
            Ok(Err(e)) => Some(format!("call failed: {e}")),
            Ok(Ok(results)) => check_known(&results, &fixture.known_local_id, &sections),
        };
        self.report
            .push("fetches every section of a known record", outcome(problem));
    }

    async fn unknown_local_id(&mut self, adapter: &Arc<dyn Adapter>, fixture: &Fixture) {
        let sections = section_names(&**adapter);
        let request = FetchRequest {
            local_ids: vec![fixture.unknown_local_id.clone()],
            sections,
            deadline: Instant::now() + GENEROUS,
        };
        let problem = match self.fetch(adapter, request).await {
            Err(panic) => Some(panic),
            Ok(Err(FetchError::NotFound)) => None,
            Ok(Err(e)) => Some(format!("expected not found, got: {e}")),
            Ok(Ok(results)) => results.iter().find_map(|r| match &r.records {
                Ok(records) if records.is_empty() => None,
                Err(FetchError::NotFound) => None,
                Ok(_) => Some(format!(
                    "section {:?}: records for an unknown ID",
                    r.section
                )),
                Err(e) => Some(format!(
                    "section {:?}: expected not found, got: {e}",
                    r.section
                )),
            }),
        };
        self.report.push(
            "an unknown local ID is not found or empty",
            outcome(problem),
        );
    }

    async fn unknown_section(&mut self, adapter: &Arc<dyn Adapter>, fixture: &Fixture) {
        let request = FetchRequest::one(
            &fixture.known_local_id,
            "no_such_section",
            Instant::now() + GENEROUS,
        );
        let problem = match self.fetch(adapter, request).await {
            Err(panic) => Some(panic),
            Ok(Err(FetchError::UnknownSection { .. })) => None,
            Ok(Ok(results))
                if results.len() == 1
                    && matches!(results[0].records, Err(FetchError::UnknownSection { .. })) =>
            {
                None
            }
            Ok(other) => Some(format!("expected an unknown-section error, got {other:?}")),
        };
        self.report
            .push("an unknown section is a typed error", outcome(problem));
    }

    async fn expired_deadline(&mut self, adapter: &Arc<dyn Adapter>, fixture: &Fixture) {
        let sections = section_names(&**adapter);
        let start = Instant::now();
        let request = FetchRequest {
            local_ids: vec![fixture.known_local_id.clone()],
            sections,
            deadline: start,
        };
        let problem = match self.fetch(adapter, request).await {
            Err(panic) => Some(panic),
            Ok(_) if start.elapsed() > DEADLINE_GRACE => Some(format!(
                "returned {:?} after an expired deadline",
                start.elapsed()
            )),
            Ok(_) => None,
        };
        self.report.push(
            "returns promptly when the deadline has passed",
            outcome(problem),
        );
    }

    async fn stalled_silo(&mut self, fixture: &Fixture) {
        let Some(slow) = &fixture.slow else {
            self.report.push(
                "stops at the deadline when the silo stalls",
                Outcome::Skipped("no stalled-silo fixture".to_owned()),
            );
            return;
        };
        let start = Instant::now();
        let request = FetchRequest::one(&slow.local_id, &slow.section, start + SHORT);
        let fetch = self.fetch(&slow.adapter, request);
        let problem = match tokio::time::timeout(SHORT + DEADLINE_GRACE, fetch).await {
            Err(_) => Some(format!(
                "still running {:?} after a {SHORT:?} deadline",
                SHORT + DEADLINE_GRACE
            )),
            Ok(Err(panic)) => Some(panic),
            Ok(Ok(Ok(results))) if results.iter().any(|r| r.records.is_ok()) => {
                Some("a stalled silo produced records".to_owned())
            }
            Ok(Ok(_)) => None,
        };
        self.report.push(
            "stops at the deadline when the silo stalls",
            outcome(problem),
        );
    }

    async fn cancellation(&mut self, fixture: &Fixture) {
        const NAME: &str = "stops upstream work when the caller goes away";
        let Some(slow) = &fixture.slow else {
            self.report
                .push(NAME, Outcome::Skipped("no stalled-silo fixture".to_owned()));
            return;
        };
        // The stalled-silo check's request may still be winding down upstream
        // (a connection closes a few milliseconds after the deadline): let the
        // count settle before taking it as the baseline.
        wait_until(|| (slow.upstream_in_flight)() == 0).await;
        let before = (slow.upstream_in_flight)();
        let adapter = slow.adapter.clone();
        let request = FetchRequest::one(&slow.local_id, &slow.section, Instant::now() + GENEROUS);
        let call = tokio::spawn(async move { adapter.fetch(request).await });
        let started = wait_until(|| (slow.upstream_in_flight)() > before).await;
        call.abort();
        let _ = call.await;
        let stopped = wait_until(|| (slow.upstream_in_flight)() <= before).await;
        let problem = if !started {
            Some("the silo never saw the request".to_owned())
        } else if !stopped {
            Some("the silo was still working 2s after the call was dropped".to_owned())
        } else {
            None
        };
        self.report.push(NAME, outcome(problem));
    }

    async fn malformed(&mut self, fixture: &Fixture) {
        const NAME: &str = "skips and counts malformed records";
        let Some(bad) = &fixture.malformed else {
            self.report.push(
                NAME,
                Outcome::Skipped("no malformed-data fixture".to_owned()),
            );
            return;
        };
        let request = FetchRequest::one(&bad.local_id, &bad.section, Instant::now() + GENEROUS);
        let problem = match self.fetch(&bad.adapter, request).await {
            Err(panic) => Some(panic),
            Ok(Err(e)) => Some(format!("the whole call failed: {e}")),
            Ok(Ok(results)) => match results.as_slice() {
                [r] if r.skipped_malformed > 0 && r.records.is_ok() => None,
                [r] if matches!(r.records, Err(FetchError::Malformed { .. })) => None,
                [r] => Some(format!(
                    "expected skipped records, got {} skipped and {:?}",
                    r.skipped_malformed,
                    r.records.as_ref().map(Vec::len)
                )),
                _ => Some(format!("expected one result, got {}", results.len())),
            },
        };
        self.report.push(NAME, outcome(problem));
    }

    fn no_patient_data_in_errors(&mut self, fixture: &Fixture) {
        let needles: Vec<String> = fixture
            .sensitive
            .iter()
            .chain([&fixture.known_local_id, &fixture.unknown_local_id])
            .chain(fixture.slow.iter().map(|s| &s.local_id))
            .chain(fixture.malformed.iter().map(|m| &m.local_id))
            .filter(|s| s.len() >= 3)
            .map(|s| s.to_lowercase())
            .collect();
        let leak = self.errors.iter().find_map(|e| {
            let lower = e.to_lowercase();
            needles
                .iter()
                .any(|n| lower.contains(n.as_str()))
                .then(|| "an error message carries patient data or a local ID".to_owned())
        });
        let problem = if leak.is_none() && self.errors.is_empty() {
            self.report.push(
                "puts no patient data in errors",
                Outcome::Skipped("no errors were produced to inspect".to_owned()),
            );
            return;
        } else {
            leak
        };
        self.report
            .push("puts no patient data in errors", outcome(problem));
    }
}

fn outcome(problem: Option<String>) -> Outcome {
    problem.map_or(Outcome::Passed, Outcome::Failed)
}

fn section_names(adapter: &dyn Adapter) -> Vec<String> {
    adapter
        .describe()
        .sections
        .iter()
        .map(|s| s.name.clone())
        .collect()
}

fn check_known(results: &[FetchResult], local_id: &str, sections: &[String]) -> Option<String> {
    for section in sections {
        let Some(result) = results
            .iter()
            .find(|r| r.local_id == local_id && &r.section == section)
        else {
            return Some(format!("no result for section {section:?}"));
        };
        let records = match &result.records {
            Ok(records) => records,
            Err(e) => return Some(format!("section {section:?} failed: {e}")),
        };
        if let Some(bad) = records
            .iter()
            .find(|r| serde_json::from_str::<serde_json::Value>(&r.json).is_err())
        {
            return Some(format!(
                "section {section:?}: a record ({:?}) is not JSON",
                bad.record_id
            ));
        }
    }
    if results.len() != sections.len() {
        return Some(format!(
            "{} results for {} requested pairs",
            results.len(),
            sections.len()
        ));
    }
    if results
        .iter()
        .all(|r| r.records.as_ref().is_ok_and(Vec::is_empty))
    {
        return Some("no records in any section of the known record".to_owned());
    }
    None
}

async fn wait_until(condition: impl Fn() -> bool) -> bool {
    let give_up = Instant::now() + Duration::from_secs(2);
    while Instant::now() < give_up {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    condition()
}
