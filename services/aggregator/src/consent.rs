//! Consent before fetching: the planned (source, section) pairs that are
//! consent-gated are put to the [`Consent`] gate once per view, within its
//! share of the deadline; withheld ones leave the plan (never fetched, never
//! read from the cache) and become `WITHHELD` outcomes whose message is the
//! reason code alone.

use std::time::Duration;

use tessera_consent::{Consent, RecordKey};

use crate::plan::SourcePlan;
use crate::view::{Identities, Inner, SourceOutcome, SourceState, ViewRequest};

/// Removes the withheld sections from `plans`; their outcomes.
pub(crate) async fn withhold(
    inner: &Inner,
    consent: &Consent,
    identities: &Identities,
    request: &ViewRequest,
    plans: &mut Vec<SourcePlan>,
) -> Vec<SourceOutcome> {
    let pairs: Vec<(&str, &str)> = plans
        .iter()
        .flat_map(|p| {
            let source = inner.sources[p.source].name();
            p.sections.iter().map(move |s| (source, &**s))
        })
        .collect();
    // Consent belongs to the person, not the caller: every linked record
    // counts, also those of systems the caller may not see.
    let records: Vec<RecordKey> = identities
        .records
        .iter()
        .map(|r| RecordKey {
            system: r.system.clone(),
            local_id: r.local_id.clone(),
        })
        .collect();
    let verdicts = consent
        .check(&records, request.purpose.code(), &pairs, request.deadline)
        .await;
    let mut withheld = Vec::new();
    let mut verdicts = verdicts.into_iter();
    for plan in plans.iter_mut() {
        let source = inner.sources[plan.source].name();
        plan.sections.retain(|section| {
            let Some(Some(reason)) = verdicts.next() else {
                return true;
            };
            withheld.push(SourceOutcome {
                source: source.to_owned(),
                section: section.to_string(),
                state: SourceState::Withheld,
                message: reason.code().to_owned(),
                record_count: 0,
                latency: Duration::ZERO,
            });
            false
        });
    }
    plans.retain(|p| !p.sections.is_empty());
    withheld
}
