//! Benchmark: what the out-of-process hop costs. The same instant adapter is
//! called in process, then through the `grpc` adapter to a
//! SourceAdapterService server (in this process, so only the hop is measured)
//! over TCP and over a Unix socket. Prints one JSON object with p50 and p99 per
//! path and the overhead over in-process.
//!
//! Ignored by default (timings want a release build on a quiet machine):
//!
//! ```sh
//! cargo test --release -p tessera-adapter-grpc --test overhead -- --ignored --nocapture
//! ```

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use tessera_adapter_core::{
    Adapter, Capabilities, Description, FetchError, FetchRequest, FetchResult, Record,
    SectionDescriptor,
};
use tessera_adapter_grpc::{GrpcAdapter, GrpcConfig};
use tessera_proto::v1 as pb;
use tessera_proto::v1::source_adapter_service_server::{
    SourceAdapterService, SourceAdapterServiceServer,
};
use tokio::time::Instant;
use tonic::{Request, Response, Status};

/// Serves a fake adapter over the contract.
struct Served(Arc<Instant0>);

#[tonic::async_trait]
impl SourceAdapterService for Served {
    async fn describe_adapter(
        &self,
        _: Request<pb::DescribeAdapterRequest>,
    ) -> Result<Response<pb::DescribeAdapterResponse>, Status> {
        let d = self.0.describe();
        Ok(Response::new(pb::DescribeAdapterResponse {
            system: d.system.clone(),
            sections: d
                .sections
                .iter()
                .map(|s| pb::SectionDescriptor {
                    name: s.name.clone(),
                    media_type: s.media_type.clone(),
                    description: s.description.clone(),
                    suggested_ttl: None,
                })
                .collect(),
            capabilities: Some(pb::AdapterCapabilities {
                batch_fetch: false,
                max_batch_size: 0,
                identity_feed: false,
                incremental_identity_feed: false,
            }),
            adapter_version: "fake".to_owned(),
        }))
    }

    async fn fetch_records(
        &self,
        request: Request<pb::FetchRecordsRequest>,
    ) -> Result<Response<pb::FetchRecordsResponse>, Status> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let r = request.into_inner();
        let results = self
            .0
            .fetch(FetchRequest {
                local_ids: r.local_ids,
                sections: r.sections,
                deadline,
            })
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(pb::FetchRecordsResponse {
            results: results
                .into_iter()
                .map(|r| pb::FetchResult {
                    local_id: r.local_id,
                    section: r.section,
                    records: r
                        .records
                        .unwrap_or_default()
                        .into_iter()
                        .map(|rec| pb::AdapterRecord {
                            record_id: rec.record_id.unwrap_or_default(),
                            json: rec.json.to_string(),
                            update_time: None,
                        })
                        .collect(),
                    error: None,
                    skipped_malformed: 0,
                })
                .collect(),
        }))
    }

    async fn check_adapter_health(
        &self,
        _: Request<pb::CheckAdapterHealthRequest>,
    ) -> Result<Response<pb::CheckAdapterHealthResponse>, Status> {
        Ok(Response::new(pb::CheckAdapterHealthResponse {
            health: pb::AdapterHealth::Serving as i32,
            message: String::new(),
        }))
    }

    type StreamSourceRecordsStream =
        Pin<Box<dyn Stream<Item = Result<pb::StreamSourceRecordsResponse, Status>> + Send>>;

    async fn stream_source_records(
        &self,
        _: Request<pb::StreamSourceRecordsRequest>,
    ) -> Result<Response<Self::StreamSourceRecordsStream>, Status> {
        Err(Status::unimplemented("no feed"))
    }
}

/// The silo: answers at once with two small records (the fake kind sleeps on
/// the timer wheel even for zero latency, which would swamp the hop).
struct Instant0(Description);

#[async_trait::async_trait]
impl Adapter for Instant0 {
    fn describe(&self) -> &Description {
        &self.0
    }

    async fn fetch(&self, request: FetchRequest) -> Result<Vec<FetchResult>, FetchError> {
        let record = |n: u32| Record {
            record_id: Some(format!("C-{n}")),
            json: format!(
                "{{\"purpose\":\"newsletters\",\"status\":\"granted\",\"n\":{n},\"pad\":\"{}\"}}",
                "x".repeat(200)
            )
            .into(),
            update_time: None,
        };
        Ok(request
            .local_ids
            .iter()
            .flat_map(|id| {
                request.sections.iter().map(move |s| FetchResult {
                    local_id: id.clone(),
                    section: s.clone(),
                    records: Ok(vec![record(1), record(2)]),
                    skipped_malformed: 0,
                })
            })
            .collect())
    }
}

fn fake() -> Arc<Instant0> {
    Arc::new(Instant0(Description {
        system: "marketing".to_owned(),
        sections: vec![SectionDescriptor::json("consents", "consents")],
        capabilities: Capabilities::default(),
        version: "instant".to_owned(),
    }))
}

/// Per-call latencies in microseconds, sorted.
async fn measure(adapter: &dyn Adapter, calls: usize) -> Vec<f64> {
    let mut micros = Vec::with_capacity(calls);
    for i in 0..calls + calls / 10 {
        let start = Instant::now();
        let request = FetchRequest::one("M-100", "consents", start + Duration::from_secs(5));
        let results = adapter.fetch(request).await.expect("fetch");
        assert_eq!(results[0].records.as_ref().map(Vec::len), Ok(2));
        // The first tenth warms up connections and caches.
        if i >= calls / 10 {
            micros.push(start.elapsed().as_secs_f64() * 1e6);
        }
    }
    micros.sort_by(f64::total_cmp);
    micros
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run with --release -- --ignored --nocapture"]
async fn out_of_process_call_overhead() -> anyhow::Result<()> {
    const CALLS: usize = 2000;
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("bench.sock");
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let tcp_addr = tcp.local_addr()?;
    let unix = tokio::net::UnixListener::bind(&socket)?;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(SourceAdapterServiceServer::new(Served(fake())))
            // As gRPC servers do (grpcio included): no Nagle delay on small replies.
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(tcp).map(
                |stream| {
                    stream.and_then(|s| {
                        s.set_nodelay(true)?;
                        Ok(s)
                    })
                },
            )),
    );
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(SourceAdapterServiceServer::new(Served(fake())))
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(unix)),
    );
    let connect = |endpoint: String| async move {
        let config: GrpcConfig = serde_json::from_value(serde_json::json!({"endpoint": endpoint}))?;
        anyhow::Ok(GrpcAdapter::connect(&config, Path::new(".")).await?)
    };
    let over_tcp = connect(format!("http://{tcp_addr}")).await?;
    let over_unix = connect(format!("unix:{}", socket.display())).await?;
    let in_process = measure(&*fake(), CALLS).await;
    let tcp_times = measure(&over_tcp, CALLS).await;
    let unix_times = measure(&over_unix, CALLS).await;
    let stats = |t: &[f64]| {
        serde_json::json!({
            "p50_us": quantile(t, 0.5).round(),
            "p99_us": quantile(t, 0.99).round(),
            "overhead_p50_us": (quantile(t, 0.5) - quantile(&in_process, 0.5)).round(),
            "overhead_p99_us": (quantile(t, 0.99) - quantile(&in_process, 0.99)).round(),
        })
    };
    let report = serde_json::json!({
        "benchmark": "out_of_process_call_overhead",
        "calls": CALLS,
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
        "in_process": {"p50_us": quantile(&in_process, 0.5), "p99_us": quantile(&in_process, 0.99)},
        "grpc_tcp": stats(&tcp_times),
        "grpc_unix_socket": stats(&unix_times),
        "anchor": "Apollo Router coprocessor hop, ~350 us",
    });
    #[allow(clippy::print_stdout)]
    {
        println!("{report}");
    }
    Ok(())
}
