//! The planner: which source serves which requested section for which of the
//! subject's local IDs, and which (source, section) pairs the caller may not
//! see (those sources are never called for them).

use std::sync::Arc;
use std::time::Duration;

use crate::authz::permitted;
use crate::view::{Identities, Inner, SourceOutcome, SourceState, ViewError, ViewRequest};

/// The reason code of a section the caller may not see.
pub(crate) const NOT_GRANTED: &str = "NOT_GRANTED";

/// What one source is asked for in a view: its sections the caller may see,
/// for the subject's local IDs in its system.
pub(crate) struct SourcePlan {
    /// The source's index in the aggregator.
    pub(crate) source: usize,
    pub(crate) local_ids: Vec<Arc<str>>,
    pub(crate) sections: Vec<Arc<str>>,
}

/// Checks a request before its subject is resolved, so that neither answer
/// depends on whether the subject exists: every requested section is served
/// by some source, and the caller may see at least one requested section of
/// some source.
pub(crate) fn precheck(inner: &Inner, request: &ViewRequest) -> Result<(), ViewError> {
    for (index, section) in request.sections.iter().enumerate() {
        if !inner.known_sections.contains(section) {
            return Err(ViewError::UnknownSection {
                section: section.clone(),
                index,
            });
        }
    }
    let any_permitted = inner.sources.iter().any(|source| {
        source
            .sections()
            .filter(|s| wanted(request, s))
            .any(|section| {
                permitted(
                    &*inner.authorizer,
                    &request.caller,
                    request.purpose,
                    source.name(),
                    section,
                )
            })
    });
    if any_permitted {
        Ok(())
    } else {
        Err(ViewError::AllDenied)
    }
}

fn wanted(request: &ViewRequest, section: &str) -> bool {
    request.sections.is_empty() || request.sections.iter().any(|s| s == section)
}

/// Plans a view (checked by [`precheck`]): requested sections the caller may
/// see, from the sources that serve them, for the master's local IDs in their
/// systems; and the denied (source, section) pairs.
pub(crate) fn plan(
    inner: &Inner,
    identities: &Identities,
    request: &ViewRequest,
) -> Result<(Vec<SourcePlan>, Vec<SourceOutcome>), ViewError> {
    let wanted = |section: &str| wanted(request, section);
    let (mut plans, mut denied) = (Vec::new(), Vec::new());
    for (index, source) in inner.sources.iter().enumerate() {
        let local_ids: Vec<Arc<str>> = identities
            .records
            .iter()
            .filter(|r| r.system == source.system())
            .map(|r| Arc::from(r.local_id.as_str()))
            .collect();
        if local_ids.is_empty() {
            continue;
        }
        let mut sections = Vec::new();
        for section in source.sections().filter(|s| wanted(s)) {
            if permitted(
                &*inner.authorizer,
                &request.caller,
                request.purpose,
                source.name(),
                section,
            ) {
                sections.push(Arc::from(section));
            } else {
                denied.push(SourceOutcome {
                    source: source.name().to_owned(),
                    section: section.to_owned(),
                    state: SourceState::Denied,
                    message: NOT_GRANTED.to_owned(),
                    record_count: 0,
                    latency: Duration::ZERO,
                });
            }
        }
        if !sections.is_empty() {
            plans.push(SourcePlan {
                source: index,
                local_ids,
                sections,
            });
        }
    }
    if plans.is_empty() && !denied.is_empty() {
        return Err(ViewError::AllDenied);
    }
    Ok((plans, denied))
}
