//! `grpc.health.v1`, overall and per service, with a drain that ends every open
//! `Watch` stream on shutdown.
//!
//! tonic-health's own `Watch` streams never end, so one load balancer watching
//! health would hold a graceful shutdown open for the whole grace period. Here a
//! drain first sends each watcher a final NOT_SERVING and then closes its stream.

use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse, health_check_response};
use tonic_health::server::{HealthReporter, HealthService};

/// The overall server's entry in the health service, per the gRPC health spec.
const OVERALL: &str = "";

/// Owns the serving status of the server and each of its services.
#[derive(Debug, Clone)]
pub struct HealthState {
    reporter: HealthReporter,
    services: Vec<&'static str>,
    drain: watch::Sender<bool>,
}

impl HealthState {
    /// Creates the health state with everything NOT_SERVING, and the tonic service
    /// that serves it.
    pub async fn new(services: Vec<&'static str>) -> (Self, HealthServer<DrainingHealth>) {
        let reporter = HealthReporter::new();
        let (drain, drain_rx) = watch::channel(false);
        let health = Self {
            reporter: reporter.clone(),
            services,
            drain,
        };
        health.set_all(ServingStatus::NotServing).await;
        let service = DrainingHealth {
            inner: HealthService::from_health_reporter(reporter),
            drain: drain_rx,
        };
        (health, HealthServer::new(service))
    }

    /// Marks the server and every service SERVING.
    pub async fn set_serving(&self) {
        self.set_all(ServingStatus::Serving).await;
    }

    /// Marks everything NOT_SERVING, keeping `Watch` streams open (the server may
    /// become ready again).
    pub async fn set_not_serving(&self) {
        self.set_all(ServingStatus::NotServing).await;
    }

    /// Marks everything NOT_SERVING and ends every open `Watch` stream.
    pub async fn drain(&self) {
        self.drain.send_replace(true);
        self.set_all(ServingStatus::NotServing).await;
    }

    async fn set_all(&self, status: ServingStatus) {
        for name in self.services.iter().copied().chain([OVERALL]) {
            self.reporter.set_service_status(name, status).await;
        }
    }
}

/// tonic-health's service, with `Watch` streams that end on drain.
#[derive(Debug)]
pub struct DrainingHealth {
    inner: HealthService,
    drain: watch::Receiver<bool>,
}

#[tonic::async_trait]
impl Health for DrainingHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        self.inner.check(request).await
    }

    type WatchStream = ReceiverStream<Result<HealthCheckResponse, Status>>;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let mut updates = self.inner.watch(request).await?.into_inner();
        let mut drain = self.drain.clone();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    () = tx.closed() => break,
                    () = async { drop(drain.wait_for(|draining| *draining).await) } => {
                        let last = HealthCheckResponse {
                            status: health_check_response::ServingStatus::NotServing.into(),
                        };
                        let _ = tx.send(Ok(last)).await;
                        break;
                    }
                    update = updates.next() => match update {
                        Some(update) => {
                            if tx.send(update).await.is_err() {
                                break;
                            }
                        }
                        None => break,
                    },
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

#[cfg(test)]
mod tests {
    use tokio_stream::StreamExt;
    use tonic::Request;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus as Wire;
    use tonic_health::pb::health_server::Health;

    use super::*;

    const SERVICE: &str = "tessera.v1.IdentityService";

    fn request(service: &str) -> Request<HealthCheckRequest> {
        Request::new(HealthCheckRequest {
            service: service.to_owned(),
        })
    }

    async fn status_of(service: &DrainingHealth, name: &str) -> i32 {
        service
            .check(request(name))
            .await
            .unwrap()
            .into_inner()
            .status
    }

    #[tokio::test]
    async fn not_serving_until_ready_then_serving() {
        let (state, server) = HealthState::new(vec![SERVICE]).await;
        let service = DrainingHealth {
            inner: HealthService::from_health_reporter(state.reporter.clone()),
            drain: state.drain.subscribe(),
        };
        drop(server);
        assert_eq!(status_of(&service, "").await, Wire::NotServing as i32);
        assert_eq!(status_of(&service, SERVICE).await, Wire::NotServing as i32);
        state.set_serving().await;
        assert_eq!(status_of(&service, "").await, Wire::Serving as i32);
        assert_eq!(status_of(&service, SERVICE).await, Wire::Serving as i32);
    }

    #[tokio::test]
    async fn drain_sends_not_serving_then_ends_every_watch() {
        let (state, _server) = HealthState::new(vec![SERVICE]).await;
        let service = DrainingHealth {
            inner: HealthService::from_health_reporter(state.reporter.clone()),
            drain: state.drain.subscribe(),
        };
        state.set_serving().await;
        let mut overall = service.watch(request("")).await.unwrap().into_inner();
        let mut per_service = service.watch(request(SERVICE)).await.unwrap().into_inner();
        assert_eq!(
            overall.next().await.unwrap().unwrap().status,
            Wire::Serving as i32
        );
        assert_eq!(
            per_service.next().await.unwrap().unwrap().status,
            Wire::Serving as i32
        );

        state.drain().await;
        for watch in [&mut overall, &mut per_service] {
            let updates = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                let mut statuses = Vec::new();
                while let Some(update) = watch.next().await {
                    statuses.push(update.unwrap().status);
                }
                statuses
            })
            .await
            .expect("watch stayed open after the drain");
            assert_eq!(updates.last(), Some(&(Wire::NotServing as i32)));
        }
    }
}
