//! The real `tessera` binary over loopback gRPC, through Rust (tonic) clients:
//! health, reflection v1 and v1alpha, and UNIMPLEMENTED answers from RPCs whose
//! implementations have not landed.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use tessera_e2e::Tessera;
use tessera_proto::v1::{
    self as pb, identity_service_client::IdentityServiceClient,
    patient_view_service_client::PatientViewServiceClient,
};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::{v1, v1alpha};
use tonic_types::StatusExt;

const SERVICES: [&str; 3] = [
    "tessera.v1.IdentityService",
    "tessera.v1.PatientViewService",
    "tessera.v1.SourceAdapterService",
];

async fn health_of(
    channel: &tonic::transport::Channel,
    service: &str,
) -> Result<i32, tonic::Status> {
    let response = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await?;
    Ok(response.into_inner().status)
}

#[tokio::test]
async fn health_is_serving_overall_and_per_service() {
    let tessera = Tessera::start(crate::tessera_bin(), &Tessera::minimal_config("5s"))
        .await
        .unwrap();
    let channel = tessera.connect().await.unwrap();

    assert_eq!(
        health_of(&channel, "").await.unwrap(),
        ServingStatus::Serving as i32
    );
    for service in SERVICES {
        assert_eq!(
            health_of(&channel, service).await.unwrap(),
            ServingStatus::Serving as i32,
            "{service} is not SERVING"
        );
    }
    let unknown = health_of(&channel, "tessera.v1.NoSuchService")
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
}

#[tokio::test]
async fn reflection_v1_lists_and_describes_the_services() {
    let tessera = Tessera::start(crate::tessera_bin(), &Tessera::minimal_config("5s"))
        .await
        .unwrap();
    let mut client =
        v1::server_reflection_client::ServerReflectionClient::new(tessera.connect().await.unwrap());
    let requests = [
        v1::server_reflection_request::MessageRequest::ListServices(String::new()),
        v1::server_reflection_request::MessageRequest::FileContainingSymbol(
            "tessera.v1.IdentityService".to_owned(),
        ),
    ]
    .map(|message| v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(message),
    });
    let mut responses = client
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();

    let listed = match responses.next().await.unwrap().unwrap().message_response {
        Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect::<Vec<_>>()
        }
        other => panic!("expected a service list, got {other:?}"),
    };
    for service in SERVICES.into_iter().chain([
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ]) {
        assert!(
            listed.iter().any(|s| s == service),
            "{service} not in {listed:?}"
        );
    }

    match responses.next().await.unwrap().unwrap().message_response {
        Some(v1::server_reflection_response::MessageResponse::FileDescriptorResponse(files)) => {
            assert!(!files.file_descriptor_proto.is_empty());
        }
        other => panic!("expected file descriptors, got {other:?}"),
    }
}

#[tokio::test]
async fn reflection_v1alpha_lists_the_services() {
    let tessera = Tessera::start(crate::tessera_bin(), &Tessera::minimal_config("5s"))
        .await
        .unwrap();
    let mut client = v1alpha::server_reflection_client::ServerReflectionClient::new(
        tessera.connect().await.unwrap(),
    );
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let listed = match responses.next().await.unwrap().unwrap().message_response {
        Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect::<Vec<_>>()
        }
        other => panic!("expected a service list, got {other:?}"),
    };
    for service in SERVICES {
        assert!(
            listed.iter().any(|s| s == service),
            "{service} not in {listed:?}"
        );
    }
}

#[tokio::test]
async fn unimplemented_rpcs_say_what_is_missing_and_the_server_stays_up() {
    let tessera = Tessera::start(crate::tessera_bin(), &Tessera::minimal_config("5s"))
        .await
        .unwrap();
    let channel = tessera.connect().await.unwrap();

    let err = IdentityServiceClient::new(channel.clone())
        .resolve_record(pb::ResolveRecordRequest {
            source_record: Some(pb::SourceRecordKey {
                system: "ehr".to_owned(),
                local_id: "p-1".to_owned(),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    assert!(
        err.message().contains("IdentityService/ResolveRecord")
            && err.message().contains("identity resolver"),
        "message does not name what is missing: {}",
        err.message()
    );
    let info = err.get_details_error_info().expect("ErrorInfo detail");
    assert_eq!(info.reason, "NOT_IMPLEMENTED");

    // A server-streaming RPC answers the same way rather than hanging or crashing.
    let err = PatientViewServiceClient::new(channel.clone())
        .stream_patient_view(pb::StreamPatientViewRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    assert!(
        err.message().contains("patient view is not configured")
            && err.message().contains("sources"),
        "message does not name what is missing: {}",
        err.message()
    );

    // Still serving afterwards.
    assert_eq!(
        health_of(&channel, "").await.unwrap(),
        ServingStatus::Serving as i32
    );
}
