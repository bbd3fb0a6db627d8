//! SIGTERM: health turns NOT_SERVING (and health watches end), new calls are
//! refused, an in-flight call completes, and the process exits 0. A call that
//! outlives the grace period is cut off and the process still exits 0.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::time::{Duration, Instant};

use tessera_e2e::Tessera;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, ServerReflectionResponse,
    server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
    server_reflection_response::MessageResponse,
};

fn list_services() -> ServerReflectionRequest {
    ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    }
}

fn is_service_list(response: &ServerReflectionResponse) -> bool {
    matches!(
        response.message_response,
        Some(MessageResponse::ListServicesResponse(_))
    )
}

/// Opens a reflection stream (a long-lived bidirectional call) and completes one
/// exchange on it.
async fn open_reflection_call(
    channel: Channel,
) -> (
    mpsc::Sender<ServerReflectionRequest>,
    tonic::Streaming<ServerReflectionResponse>,
) {
    let (tx, rx) = mpsc::channel(4);
    tx.send(list_services()).await.unwrap();
    let mut responses = ServerReflectionClient::new(channel)
        .server_reflection_info(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    assert!(is_service_list(&responses.next().await.unwrap().unwrap()));
    (tx, responses)
}

#[tokio::test]
async fn sigterm_drains_in_flight_calls_refuses_new_ones_and_exits_zero() {
    let mut tessera = Tessera::start(crate::tessera_bin(), &Tessera::minimal_config("20s"))
        .await
        .unwrap();
    let channel = tessera.connect().await.unwrap();

    let mut watch = HealthClient::new(channel.clone())
        .watch(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.next().await.unwrap().unwrap().status,
        ServingStatus::Serving as i32
    );
    let (in_flight, mut in_flight_responses) = open_reflection_call(channel.clone()).await;

    tessera.terminate().unwrap();
    let signalled = Instant::now();

    // Health flips to NOT_SERVING, and the watch then ends rather than holding
    // the drain open.
    let update = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("no health update after SIGTERM")
        .expect("watch ended without NOT_SERVING")
        .unwrap();
    assert_eq!(update.status, ServingStatus::NotServing as i32);
    let end = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("health watch stayed open during the drain");
    assert!(
        end.as_ref().is_none_or(Result::is_err),
        "watch kept streaming: {end:?}"
    );

    // New calls are refused, on a new connection and on the existing one. Health
    // flips just before the listener closes, so allow the close a moment.
    let refused_by = Instant::now() + Duration::from_secs(5);
    loop {
        let fresh = tonic::transport::Endpoint::from_shared(tessera.url())
            .unwrap()
            .connect_timeout(Duration::from_secs(2))
            .connect()
            .await;
        if fresh.is_err() {
            break;
        }
        assert!(
            Instant::now() < refused_by,
            "new connections still accepted during the drain"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // On the existing connection, HTTP/2's graceful GOAWAY comes in two steps
    // (a provisional one, a PING round trip, then the last stream ID): a call
    // the client starts before it reads the final one may still be served.
    // After that, every new call is refused.
    let refused_by = Instant::now() + Duration::from_secs(5);
    let refused = loop {
        let call = tokio::time::timeout(
            Duration::from_secs(10),
            HealthClient::new(channel.clone()).check(HealthCheckRequest::default()),
        )
        .await
        .expect("a new call hung instead of being refused");
        match call {
            Err(refused) => break refused,
            Ok(_) => assert!(
                Instant::now() < refused_by,
                "new calls on the existing connection still served during the drain"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // tonic reports a stream refused after GOAWAY as CANCELLED; a reconnect to the
    // closed listener as UNAVAILABLE. Either way the server did not serve it.
    assert!(
        matches!(
            refused.code(),
            tonic::Code::Unavailable | tonic::Code::Cancelled
        ),
        "{refused:?}"
    );

    // The in-flight call still works and completes normally.
    in_flight.send(list_services()).await.unwrap();
    let response = in_flight_responses.next().await.unwrap().unwrap();
    assert!(is_service_list(&response));
    drop(in_flight);
    assert!(
        in_flight_responses.next().await.is_none(),
        "in-flight call did not end cleanly"
    );

    let status = tessera.wait(Duration::from_secs(20)).await.unwrap();
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    assert!(
        signalled.elapsed() < Duration::from_secs(15),
        "the drain waited for the grace period instead of the in-flight call"
    );
    let logs = tessera.logs();
    assert!(
        logs.contains("\"drained\""),
        "no graceful drain in logs:\n{logs}"
    );
}

#[tokio::test]
async fn a_call_outliving_the_grace_period_is_cut_off_and_exit_is_zero() {
    let mut tessera = Tessera::start(crate::tessera_bin(), &Tessera::minimal_config("1s"))
        .await
        .unwrap();
    let channel = tessera.connect().await.unwrap();
    // Held open and never finished by the client.
    let (_in_flight, mut responses) = open_reflection_call(channel).await;

    tessera.terminate().unwrap();
    let status = tessera.wait(Duration::from_secs(15)).await.unwrap();
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    let logs = tessera.logs();
    assert!(
        logs.contains("grace period expired"),
        "no grace-period expiry in logs:\n{logs}"
    );
    // The cut-off call ends with an error, not a clean end of stream.
    let end = tokio::time::timeout(Duration::from_secs(5), responses.next())
        .await
        .expect("cut-off call still open");
    assert!(matches!(end, Some(Err(_))), "cut-off call ended as {end:?}");
}
