//! Assembly: the chunks of a view, as they arrived, put in the planned order
//! with each (source, section)'s status and the sources that could not be
//! reached; and the same summary for a streamed view.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use crate::source::Source;
use crate::view::{
    Identities, SectionChunk, SourceOutcome, SourceState, View, ViewError, ViewRecord,
};

/// Assembles chunks into a view, in the planned order.
pub(crate) fn assemble(
    identities: Identities,
    denied: Vec<SourceOutcome>,
    mut chunks: Vec<SectionChunk>,
    sources: &[Arc<Source>],
) -> Result<View, ViewError> {
    let order = |name: &str| sources.iter().position(|s| s.name() == name);
    chunks.sort_by(|a, b| (order(&a.source), &a.section).cmp(&(order(&b.source), &b.section)));
    let any_served = chunks
        .iter()
        .any(|c| matches!(c.status.state, SourceState::Ok | SourceState::Stale));
    if !chunks.is_empty() && !any_served {
        return Err(ViewError::AllFailed {
            statuses: chunks.into_iter().map(|c| c.status).collect(),
        });
    }
    let mut sections: BTreeMap<String, Vec<ViewRecord>> = BTreeMap::new();
    let mut statuses = Vec::with_capacity(chunks.len() + denied.len());
    let mut unreachable: Vec<String> = Vec::new();
    for chunk in chunks {
        if chunk.status.state.is_unreachable() && !unreachable.contains(&chunk.source) {
            unreachable.push(chunk.source.clone());
        }
        // A section appears when a source answered it, even with no records
        // (the person has none); not when its only source failed.
        if matches!(chunk.status.state, SourceState::Ok | SourceState::Stale) {
            sections
                .entry(chunk.section)
                .or_default()
                .extend(chunk.records);
        }
        statuses.push(chunk.status);
    }
    statuses.extend(denied);
    Ok(View {
        identities,
        sections,
        statuses,
        unreachable,
        assembled_at: SystemTime::now(),
    })
}

/// Folds a stream's chunks into the closing summary: statuses and unreachable.
pub fn summarize(
    chunks: &[SourceOutcome],
    denied: &[SourceOutcome],
) -> (Vec<SourceOutcome>, Vec<String>) {
    let mut unreachable: Vec<String> = Vec::new();
    for status in chunks {
        if status.state.is_unreachable() && !unreachable.contains(&status.source) {
            unreachable.push(status.source.clone());
        }
    }
    let statuses = chunks.iter().chain(denied).cloned().collect();
    (statuses, unreachable)
}
