//! What a view tells the audit trail, through the request's [`AccessLog`]:
//! the master, the sections returned (`source.section`), the sections
//! withheld with their reason code (`NOT_GRANTED`, `CONSENT_OPT_OUT`,
//! `CONSENT_UNAVAILABLE`) and the sources returned. Never local IDs or
//! demographics.

use tessera_auth::AccessLog;

use crate::plan::NOT_GRANTED;
use crate::view::{Identities, SourceOutcome, SourceState, View};

/// Notes the master and the sections refused before any fetch.
pub(crate) fn note_start(log: &AccessLog, identities: &Identities, refused: &[SourceOutcome]) {
    if let Ok(master) = identities.master.parse::<u64>() {
        log.master(master);
    }
    log.note(|a| {
        for outcome in refused {
            let reason = match outcome.state {
                SourceState::Denied => NOT_GRANTED,
                _ => outcome.message.as_str(),
            };
            a.sections_withheld
                .push((qualified(outcome), reason.to_owned()));
        }
    });
}

/// Notes one (source, section) as it was served, if it was.
pub(crate) fn note_served(log: &AccessLog, outcome: &SourceOutcome) {
    if !matches!(outcome.state, SourceState::Ok | SourceState::Stale) {
        return;
    }
    log.note(|a| {
        let section = qualified(outcome);
        if !a.sections_returned.contains(&section) {
            a.sections_returned.push(section);
        }
        if !a.sources_returned.contains(&outcome.source) {
            a.sources_returned.push(outcome.source.clone());
        }
    });
}

/// Notes the sections a stream is about to send, before it sends them: the
/// audit record is written when the handler returns, before the stream's
/// body, so a streamed view is recorded with every section it may return.
pub(crate) fn note_planned(log: &AccessLog, planned: &[(String, String)]) {
    log.note(|a| {
        for (source, section) in planned {
            let qualified = format!("{source}.{section}");
            if !a.sections_returned.contains(&qualified) {
                a.sections_returned.push(qualified);
            }
            if !a.sources_returned.contains(source) {
                a.sources_returned.push(source.clone());
            }
        }
    });
}

/// Notes a whole view.
pub(crate) fn note_view(log: &AccessLog, view: &View) {
    let refused: Vec<SourceOutcome> = view
        .statuses
        .iter()
        .filter(|s| matches!(s.state, SourceState::Denied | SourceState::Withheld))
        .cloned()
        .collect();
    note_start(log, &view.identities, &refused);
    for outcome in &view.statuses {
        note_served(log, outcome);
    }
}

fn qualified(outcome: &SourceOutcome) -> String {
    format!("{}.{}", outcome.source, outcome.section)
}
