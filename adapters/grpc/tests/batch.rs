//! The `grpc` adapter passes a batch through: a fetch of several local IDs and
//! sections is one FetchRecords call to the process (an in-process
//! SourceAdapterService server here, which records what it was asked), and the
//! process's batch capabilities reach the aggregator through Describe.

use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::Stream;
use tessera_adapter_core::{Adapter, FetchRequest};
use tessera_adapter_grpc::{GrpcAdapter, GrpcConfig};
use tessera_proto::v1 as pb;
use tessera_proto::v1::source_adapter_service_server::{
    SourceAdapterService, SourceAdapterServiceServer,
};
use tokio::time::Instant;
use tonic::{Request, Response, Status};

/// The (local IDs, sections) of one FetchRecords call.
type Call = (Vec<String>, Vec<String>);

/// A process that batches up to 50 local IDs and records each FetchRecords.
#[derive(Default, Clone)]
struct Recording(Arc<Mutex<Vec<Call>>>);

#[tonic::async_trait]
impl SourceAdapterService for Recording {
    async fn describe_adapter(
        &self,
        _: Request<pb::DescribeAdapterRequest>,
    ) -> Result<Response<pb::DescribeAdapterResponse>, Status> {
        let section = |name: &str| pb::SectionDescriptor {
            name: name.to_owned(),
            media_type: "application/json".to_owned(),
            description: "test".to_owned(),
            suggested_ttl: None,
        };
        Ok(Response::new(pb::DescribeAdapterResponse {
            system: "crm".to_owned(),
            sections: vec![section("cases"), section("contacts")],
            capabilities: Some(pb::AdapterCapabilities {
                batch_fetch: true,
                max_batch_size: 50,
                identity_feed: false,
                incremental_identity_feed: false,
            }),
            adapter_version: "recording".to_owned(),
        }))
    }

    async fn fetch_records(
        &self,
        request: Request<pb::FetchRecordsRequest>,
    ) -> Result<Response<pb::FetchRecordsResponse>, Status> {
        let r = request.into_inner();
        self.0
            .lock()
            .map_err(|_| Status::internal("poisoned"))?
            .push((r.local_ids.clone(), r.sections.clone()));
        let results = r
            .local_ids
            .iter()
            .flat_map(|id| r.sections.iter().map(move |s| (id, s)))
            .map(|(id, section)| pb::FetchResult {
                local_id: id.clone(),
                section: section.clone(),
                records: vec![pb::AdapterRecord {
                    record_id: format!("{id}-{section}"),
                    json: format!("{{\"owner\":\"{id}\"}}"),
                    update_time: None,
                }],
                error: None,
                skipped_malformed: 0,
            })
            .collect();
        Ok(Response::new(pb::FetchRecordsResponse { results }))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_one_fetch_records_call_to_the_process() -> anyhow::Result<()> {
    let recording = Recording::default();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = tcp.local_addr()?;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(SourceAdapterServiceServer::new(recording.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(tcp)),
    );
    let config: GrpcConfig =
        serde_json::from_value(serde_json::json!({"endpoint": format!("http://{addr}")}))?;
    let adapter = GrpcAdapter::connect(&config, Path::new(".")).await?;
    let capabilities = adapter.describe().capabilities;
    assert!(capabilities.batch_fetch);
    assert_eq!(capabilities.max_batch_size, 50);

    let results = adapter
        .fetch(FetchRequest {
            local_ids: vec!["C1".to_owned(), "C2".to_owned()],
            sections: vec!["cases".to_owned(), "contacts".to_owned()],
            deadline: Instant::now() + Duration::from_secs(5),
        })
        .await?;

    let calls = recording
        .0
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    assert_eq!(
        calls,
        [(
            vec!["C1".to_owned(), "C2".to_owned()],
            vec!["cases".to_owned(), "contacts".to_owned()]
        )],
        "one call with every local ID and section"
    );
    assert_eq!(results.len(), 4);
    for result in &results {
        let records = result.records.as_ref().expect("records");
        assert_eq!(records.len(), 1);
        assert!(
            records[0].json.contains(&result.local_id),
            "filed under its owner"
        );
    }
    Ok(())
}
