//! The contract's services that this process does not serve: every RPC of a
//! service the config does not enable, or that the gateway does not implement,
//! answers UNIMPLEMENTED, naming what is missing. Nothing here pretends to work.

use std::pin::Pin;

use std::collections::HashMap;
use tessera_proto::v1::{
    self as pb, identity_service_server::IdentityService,
    patient_view_service_server::PatientViewService,
    source_adapter_service_server::SourceAdapterService,
};

use tessera_proto::error;
use tokio_stream::Stream;
use tonic::{Code, Request, Response, Status};

/// An RPC of the contract whose implementation is not in this process; its message
/// says what is missing, for the caller and the operator, without patient data.
#[derive(Debug, thiserror::Error)]
#[error("{method} is not implemented in this build: {missing}")]
pub struct NotImplemented {
    /// The full method name, `tessera.v1.Service/Method`.
    pub method: &'static str,
    /// What is missing.
    pub missing: &'static str,
}

impl error::ServiceError for NotImplemented {
    fn code(&self) -> Code {
        Code::Unimplemented
    }

    fn reason(&self) -> &'static str {
        "NOT_IMPLEMENTED"
    }

    fn metadata(&self) -> HashMap<String, String> {
        HashMap::from([("method".to_owned(), self.method.to_owned())])
    }
}

const RESOLVER_MISSING: &str = "the identity resolver is not configured: add an `identity` \
     section (with `identity.store`) to the config file";
const AGGREGATOR_MISSING: &str = "the patient view is not configured: it needs an `identity` \
     section and at least one entry in `sources` in the config file";
const ADAPTER_MISSING: &str = "the gateway is not a source adapter; SourceAdapterService is \
     implemented by out-of-process adapters, and the gateway does not yet re-export its own sources";

/// A boxed response stream for server-streaming RPCs.
pub type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn missing<T>(method: &'static str, missing: &'static str) -> Result<T, Status> {
    Err(error::status(&NotImplemented { method, missing }))
}

/// Implements a service trait whose every RPC answers UNIMPLEMENTED. The
/// `async_trait` attribute is applied inside the macro so it sees the methods.
macro_rules! unimplemented_service {
    (
        $trait:ident for $ty:ty, $service:literal, $missing:expr;
        [$(type $assoc:ident = $assoc_ty:ty;)*]
        $($method:ident: $name:literal ($req:ty) -> $resp:ty;)*
    ) => {
        #[tonic::async_trait]
        impl $trait for $ty {
            $(type $assoc = $assoc_ty;)*
            $(
                async fn $method(&self, _: Request<$req>) -> Result<Response<$resp>, Status> {
                    missing(concat!("tessera.v1.", $service, "/", $name), $missing)
                }
            )*
        }
    };
}

/// IdentityService when the config has no `identity` section.
#[derive(Debug, Default)]
pub struct IdentityStub;

unimplemented_service! { IdentityService for IdentityStub, "IdentityService", RESOLVER_MISSING;
        []
        resolve_record: "ResolveRecord"(pb::ResolveRecordRequest) -> pb::ResolveRecordResponse;
        upsert_source_record: "UpsertSourceRecord"(pb::UpsertSourceRecordRequest) -> pb::UpsertSourceRecordResponse;
        match_demographics: "MatchDemographics"(pb::MatchDemographicsRequest) -> pb::MatchDemographicsResponse;
        get_master: "GetMaster"(pb::GetMasterRequest) -> pb::Master;
        list_links: "ListLinks"(pb::ListLinksRequest) -> pb::ListLinksResponse;
        list_review_items: "ListReviewItems"(pb::ListReviewItemsRequest) -> pb::ListReviewItemsResponse;
        resolve_review_item: "ResolveReviewItem"(pb::ResolveReviewItemRequest) -> pb::ReviewItem;
        link_source_record: "LinkSourceRecord"(pb::LinkSourceRecordRequest) -> pb::Link;
        merge_masters: "MergeMasters"(pb::MergeMastersRequest) -> pb::Master;
        unmerge_source_record: "UnmergeSourceRecord"(pb::UnmergeSourceRecordRequest) -> pb::UnmergeSourceRecordResponse;
        list_link_events: "ListLinkEvents"(pb::ListLinkEventsRequest) -> pb::ListLinkEventsResponse;
}

/// PatientViewService when the config has no `identity` section or no `sources`.
#[derive(Debug, Default)]
pub struct PatientViewStub;

unimplemented_service! { PatientViewService for PatientViewStub, "PatientViewService", AGGREGATOR_MISSING;
        [type StreamPatientViewStream = BoxStream<pb::StreamPatientViewResponse>;]
        get_patient_view: "GetPatientView"(pb::GetPatientViewRequest) -> pb::PatientView;
        stream_patient_view: "StreamPatientView"(pb::StreamPatientViewRequest) -> Self::StreamPatientViewStream;
        batch_get_patient_views: "BatchGetPatientViews"(pb::BatchGetPatientViewsRequest) -> pb::BatchGetPatientViewsResponse;
}

/// SourceAdapterService as served by the gateway itself.
#[derive(Debug, Default)]
pub struct SourceAdapterStub;

unimplemented_service! { SourceAdapterService for SourceAdapterStub, "SourceAdapterService", ADAPTER_MISSING;
        [type StreamSourceRecordsStream = BoxStream<pb::StreamSourceRecordsResponse>;]
        describe_adapter: "DescribeAdapter"(pb::DescribeAdapterRequest) -> pb::DescribeAdapterResponse;
        fetch_records: "FetchRecords"(pb::FetchRecordsRequest) -> pb::FetchRecordsResponse;
        check_adapter_health: "CheckAdapterHealth"(pb::CheckAdapterHealthRequest) -> pb::CheckAdapterHealthResponse;
        stream_source_records: "StreamSourceRecords"(pb::StreamSourceRecordsRequest) -> Self::StreamSourceRecordsStream;
}

#[cfg(test)]
mod tests {
    use tessera_proto::ERROR_DOMAIN;
    use tonic_types::StatusExt;

    use super::*;

    #[test]
    fn not_implemented_carries_error_info() {
        let status = error::status(&NotImplemented {
            method: "tessera.v1.IdentityService/GetMaster",
            missing: "the identity resolver",
        });
        assert_eq!(status.code(), Code::Unimplemented);
        assert_eq!(
            status.message(),
            "tessera.v1.IdentityService/GetMaster is not implemented in this build: the identity resolver"
        );
        let info = status.get_details_error_info().expect("ErrorInfo detail");
        assert_eq!(info.reason, "NOT_IMPLEMENTED");
        assert_eq!(info.domain, ERROR_DOMAIN);
        assert_eq!(
            info.metadata["method"],
            "tessera.v1.IdentityService/GetMaster"
        );
        assert!(
            status.get_details_retry_info().is_none(),
            "a missing implementation is not worth retrying"
        );
    }
}
