//! Between the contract's messages and the adapter SDK's types.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tessera_adapter_core::{
    Capabilities, Description, FeedRecord, FetchError, FetchResult, Record, SectionDescriptor,
    valid_section_name,
};
use tessera_proto::v1 as pb;
use tessera_types::{Address, Demographics, Sex};
use tonic::Code;

/// The longest message from the process passed on in a pair's error.
const MAX_MESSAGE: usize = 200;

/// The process's description, checked.
pub(crate) fn description(d: pb::DescribeAdapterResponse) -> Result<Description, String> {
    if d.system.is_empty() {
        return Err("the adapter describes an empty system".to_owned());
    }
    if d.sections.is_empty() {
        return Err("the adapter describes no sections".to_owned());
    }
    let mut sections = Vec::with_capacity(d.sections.len());
    for s in d.sections {
        if !valid_section_name(&s.name) {
            return Err(format!(
                "the adapter describes an invalid section name {:?}",
                s.name
            ));
        }
        let suggested_ttl = s
            .suggested_ttl
            .and_then(|t| Duration::try_from(t).ok())
            .filter(|t| !t.is_zero());
        sections.push(SectionDescriptor {
            name: s.name,
            media_type: s.media_type,
            description: s.description,
            suggested_ttl,
        });
    }
    let caps = d.capabilities.unwrap_or_default();
    Ok(Description {
        system: d.system,
        sections,
        capabilities: Capabilities {
            batch_fetch: caps.batch_fetch,
            max_batch_size: usize::try_from(caps.max_batch_size.max(0)).unwrap_or_default(),
            identity_feed: caps.identity_feed,
            incremental_identity_feed: caps.incremental_identity_feed,
        },
        version: format!(
            "grpc/{} ({})",
            env!("CARGO_PKG_VERSION"),
            if d.adapter_version.is_empty() {
                "unnamed"
            } else {
                &d.adapter_version
            }
        ),
    })
}

/// A call's status as a fetch error: the code, never the process's message.
pub(crate) fn status_error(status: &tonic::Status) -> FetchError {
    let code = status.code();
    match code {
        Code::DeadlineExceeded => FetchError::DeadlineExceeded,
        // The caller never sees its own cancellation (the call is dropped), so a
        // CANCELLED is the connection's doing: a process that went away.
        Code::ResourceExhausted => FetchError::RateLimited { retry_after: None },
        Code::PermissionDenied | Code::Unauthenticated => FetchError::Denied {
            message: format!(
                "the adapter process answered {}",
                tessera_proto::error::grpc_code_name(code as i32)
            ),
        },
        Code::NotFound => FetchError::NotFound,
        _ => FetchError::unavailable(format!(
            "the adapter process answered {}",
            tessera_proto::error::grpc_code_name(code as i32)
        )),
    }
}

fn time(t: Option<prost_types::Timestamp>) -> Option<SystemTime> {
    let t = t?;
    let secs = u64::try_from(t.seconds).ok()?;
    let nanos = u32::try_from(t.nanos).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// A time as the contract's timestamp.
pub(crate) fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(t)
}

fn pair_error(e: pb::FetchError) -> FetchError {
    let mut message = e.message;
    if message.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    let retry_after = e.retry_after.and_then(|d| Duration::try_from(d).ok());
    match pb::FetchErrorKind::try_from(e.kind) {
        Ok(pb::FetchErrorKind::NotFound) => FetchError::NotFound,
        Ok(pb::FetchErrorKind::RateLimited) => FetchError::RateLimited { retry_after },
        Ok(pb::FetchErrorKind::Denied) => FetchError::Denied { message },
        Ok(pb::FetchErrorKind::Malformed) => FetchError::Malformed { message },
        Ok(pb::FetchErrorKind::UnknownSection) => FetchError::UnknownSection {
            section: String::new(),
        },
        _ => FetchError::Unavailable {
            message,
            retry_after,
        },
    }
}

/// The process's results, one per requested pair in the order asked; a pair it
/// did not answer is malformed, and a record whose payload is not JSON is
/// skipped and counted.
pub(crate) fn results(
    local_ids: &[String],
    sections: &[String],
    response: pb::FetchRecordsResponse,
) -> Vec<FetchResult> {
    let mut answered: HashMap<(String, String), pb::FetchResult> = response
        .results
        .into_iter()
        .map(|r| ((r.local_id.clone(), r.section.clone()), r))
        .collect();
    let mut out = Vec::with_capacity(local_ids.len() * sections.len());
    for local_id in local_ids {
        for section in sections {
            let key = (local_id.clone(), section.clone());
            let mut result = FetchResult {
                local_id: local_id.clone(),
                section: section.clone(),
                records: Ok(Vec::new()),
                skipped_malformed: 0,
            };
            match answered.remove(&key) {
                None => {
                    result.records = Err(FetchError::Malformed {
                        message: "the adapter process returned no result for a requested pair"
                            .to_owned(),
                    });
                }
                Some(r) => {
                    result.skipped_malformed = u32::try_from(r.skipped_malformed).unwrap_or(0);
                    if let Some(e) = r.error {
                        let mut e = pair_error(e);
                        if let FetchError::UnknownSection { section: s } = &mut e {
                            s.clone_from(section);
                        }
                        result.records = Err(e);
                    } else {
                        let mut records = Vec::with_capacity(r.records.len());
                        for record in r.records {
                            if serde_json::from_str::<serde::de::IgnoredAny>(&record.json).is_err()
                            {
                                result.skipped_malformed += 1;
                                continue;
                            }
                            records.push(Record {
                                record_id: Some(record.record_id).filter(|id| !id.is_empty()),
                                json: record.json.into(),
                                update_time: time(record.update_time),
                            });
                        }
                        result.records = Ok(records);
                    }
                }
            }
            out.push(result);
        }
    }
    out
}

/// One identity-feed message as a feed record.
pub(crate) fn feed_record(m: pb::StreamSourceRecordsResponse) -> FeedRecord {
    let d = m.demographics.unwrap_or_default();
    let national_id = d
        .identifiers
        .iter()
        .find(|i| i.r#type == pb::PersonIdentifierType::NationalId as i32)
        .map(|i| i.value.clone())
        .unwrap_or_default();
    let sex = match pb::AdministrativeSex::try_from(d.sex) {
        Ok(pb::AdministrativeSex::Male) => Sex::Male,
        Ok(pb::AdministrativeSex::Female) => Sex::Female,
        Ok(pb::AdministrativeSex::Other) => Sex::Other,
        Ok(pb::AdministrativeSex::Unknown) => Sex::Unknown,
        _ => Sex::Unspecified,
    };
    FeedRecord {
        local_id: m.local_id,
        demographics: Demographics {
            given_names: d.given_names,
            family_name: d.family_name,
            name_suffix: d.name_suffix,
            previous_family_names: d.previous_family_names,
            birth_date: d.birth_date,
            sex,
            addresses: d
                .addresses
                .into_iter()
                .map(|a| Address {
                    lines: a.lines,
                    city: a.city,
                    state: a.state,
                    postal_code: a.postal_code,
                    country: a.country,
                })
                .collect(),
            phones: d.phones,
            emails: d.emails,
            national_id,
        },
        update_time: time(m.update_time),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unanswered_pairs_and_non_json_records_are_malformed() {
        let response = pb::FetchRecordsResponse {
            results: vec![pb::FetchResult {
                local_id: "a".to_owned(),
                section: "consents".to_owned(),
                records: vec![
                    pb::AdapterRecord {
                        record_id: "1".to_owned(),
                        json: "{\"ok\":true}".to_owned(),
                        update_time: None,
                    },
                    pb::AdapterRecord {
                        record_id: String::new(),
                        json: "{nope".to_owned(),
                        update_time: None,
                    },
                ],
                error: None,
                skipped_malformed: 1,
            }],
        };
        let ids = ["a".to_owned(), "b".to_owned()];
        let out = results(&ids, &["consents".to_owned()], response);
        assert_eq!(out[0].skipped_malformed, 2);
        assert_eq!(out[0].records.as_ref().map(Vec::len), Ok(1));
        assert!(matches!(out[1].records, Err(FetchError::Malformed { .. })));
    }

    #[test]
    fn statuses_map_by_code_without_the_message() {
        let e = status_error(&tonic::Status::unavailable("patient Jane Doe"));
        assert_eq!(
            e.to_string(),
            "source unavailable: the adapter process answered UNAVAILABLE"
        );
        assert_eq!(
            status_error(&tonic::Status::deadline_exceeded("x")),
            FetchError::DeadlineExceeded
        );
    }
}
