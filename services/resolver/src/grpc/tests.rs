use tessera_matching::{FieldViolation, SourceKey};
use tonic_types::StatusExt;

use super::convert::{link_filter, micros_from, record_name, timestamp};
use super::*;
use crate::store::LinkSource;

#[test]
fn record_names_percent_encode_local_ids() {
    let key = SourceKey::new("ehr", "MRN/00 12");
    assert_eq!(record_name(&key), "systems/ehr/records/MRN%2F00%2012");
}

#[test]
fn filters_accept_known_fields_and_reject_others() {
    let f = link_filter(
        "link_source = MANUAL AND source_record.system = \"ehr\"",
        None,
    )
    .unwrap();
    assert_eq!(f.link_source, Some(LinkSource::Manual));
    assert_eq!(f.system.as_deref(), Some("ehr"));
    let err = link_filter("family_name = \"Smith\"", None).unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        !err.message().contains("Smith"),
        "filter values must not echo back"
    );
}

#[test]
fn invalid_argument_carries_field_violations() {
    let status = Status::from(ResolverError::InvalidArgument(vec![FieldViolation::new(
        "source_record.key.system",
        "is required",
    )]));
    assert_eq!(status.code(), Code::InvalidArgument);
    let bad = status.get_details_bad_request().unwrap();
    assert_eq!(bad.field_violations[0].field, "source_record.key.system");
    let info = status.get_details_error_info().unwrap();
    assert_eq!(
        (info.reason.as_str(), info.domain.as_str()),
        ("INVALID_ARGUMENT", tessera_proto::ERROR_DOMAIN)
    );
    assert!(status.get_details_retry_info().is_none());
}

#[test]
fn a_loading_index_is_unavailable_and_retryable() {
    let err = IdentityGrpc::pending().resolver().unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(
        err.get_details_error_info().unwrap().reason,
        "INDEX_LOADING"
    );
    assert!(err.get_details_retry_info().is_some());
}

#[test]
fn timestamps_round_trip() {
    for micros in [0, 1, 1_700_000_000_123_456, -5] {
        assert_eq!(micros_from(&timestamp(micros)), micros);
    }
}
