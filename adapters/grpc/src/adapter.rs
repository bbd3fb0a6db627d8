//! The `grpc` kind, its configuration and its adapter.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures_util::StreamExt;
use hyper_util::rt::TokioIo;
use schemars::JsonSchema;
use serde::Deserialize;
use tessera_adapter_core::trace;
use tessera_adapter_core::{
    Adapter, AdapterKind, BoxFeed, BuildContext, BuildError, BuiltAdapter, Description, FetchError,
    FetchRequest, FetchResult, Health, HealthCheck, HealthState,
};
use tessera_proto::v1 as pb;
use tessera_proto::v1::source_adapter_service_client::SourceAdapterServiceClient;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint, Uri};
use tracing::Instrument;

use crate::convert;
use crate::tls::{self, GrpcTlsConfig, TlsTarget};

/// How much sooner than the caller's deadline the process is told to stop.
const DEADLINE_MARGIN: Duration = Duration::from_millis(20);
/// How long a health check may take.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// Configuration of a `grpc` adapter: where its process listens.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GrpcConfig {
    /// Where the adapter process listens: `http://HOST:PORT`, `https://HOST:PORT`
    /// (TLS; see `tls`), or `unix:PATH` for a Unix domain socket (a relative path
    /// is resolved against the config file's directory).
    pub endpoint: String,
    /// TLS to the process, for an `https://` endpoint: the CA to trust (the
    /// system's trust store when unset), a client certificate and key for mutual
    /// TLS, the name to verify. An `https://` endpoint without it uses the
    /// system's trust store and no client certificate.
    #[serde(default)]
    pub tls: Option<GrpcTlsConfig>,
    /// The source system the process must describe itself as; a different one
    /// fails the build. Unset accepts whatever it describes.
    #[serde(default)]
    pub system: Option<String>,
    /// How long to keep asking the process to describe itself at start, while
    /// it comes up (`10s`).
    #[serde(default = "default_startup_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub startup_timeout: Duration,
    /// How long to wait for a connection (`2s`); a fetch's deadline bounds it too.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub connect_timeout: Duration,
}

fn default_startup_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(2)
}

/// Where the process listens.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Tcp(String),
    Tls(TlsTarget),
    Unix(PathBuf),
}

impl Target {
    fn parse(endpoint: &str, base_dir: &Path) -> Result<Self, String> {
        if let Some(path) = endpoint.strip_prefix("unix:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err("names no socket path".to_owned());
            }
            let path = Path::new(path);
            return Ok(Self::Unix(if path.is_absolute() {
                path.to_owned()
            } else {
                base_dir.join(path)
            }));
        }
        if endpoint.starts_with("http://") && endpoint.parse::<Uri>().is_ok() {
            return Ok(Self::Tcp(endpoint.to_owned()));
        }
        if endpoint.starts_with("https://") {
            return TlsTarget::parse(endpoint).map(Self::Tls);
        }
        Err("must be http://HOST:PORT, https://HOST:PORT or unix:PATH".to_owned())
    }
}

impl GrpcConfig {
    fn check(&self) -> Result<(), BuildError> {
        let target = Target::parse(&self.endpoint, Path::new("."))
            .map_err(|e| BuildError::config("endpoint", e))?;
        if let Some(tls) = &self.tls {
            if !matches!(target, Target::Tls(_)) {
                return Err(BuildError::config(
                    "tls",
                    "is set, but the endpoint is not https://",
                ));
            }
            tls.check()?;
        }
        if self.system.as_deref() == Some("") {
            return Err(BuildError::config("system", "must not be empty"));
        }
        if self.connect_timeout.is_zero() {
            return Err(BuildError::config("connect_timeout", "must be positive"));
        }
        Ok(())
    }
}

/// The `grpc` adapter kind.
#[derive(Debug, Default)]
pub struct GrpcKind;

#[async_trait]
impl AdapterKind for GrpcKind {
    type Config = GrpcConfig;

    fn kind(&self) -> &'static str {
        "grpc"
    }

    fn validate(&self, config: &GrpcConfig) -> Result<(), BuildError> {
        config.check()
    }

    async fn build(
        &self,
        context: &BuildContext,
        config: GrpcConfig,
    ) -> Result<BuiltAdapter, BuildError> {
        let adapter = Arc::new(GrpcAdapter::connect(&config, &context.base_dir).await?);
        Ok(BuiltAdapter {
            health: adapter.clone(),
            adapter,
        })
    }
}

/// An adapter whose silo is reached through a process speaking
/// `SourceAdapterService`.
#[derive(Debug, Clone)]
pub struct GrpcAdapter {
    client: SourceAdapterServiceClient<Channel>,
    description: Description,
}

impl GrpcAdapter {
    /// Connects to the process and asks it to describe itself, retrying until
    /// the startup timeout while it comes up.
    pub async fn connect(config: &GrpcConfig, base_dir: &Path) -> Result<Self, BuildError> {
        config.check()?;
        let target = Target::parse(&config.endpoint, base_dir)
            .map_err(|e| BuildError::config("endpoint", e))?;
        let channel = channel(&target, config, base_dir)?;
        let mut client = SourceAdapterServiceClient::new(channel);
        let give_up = Instant::now() + config.startup_timeout;
        let described = loop {
            let mut request = tonic::Request::new(pb::DescribeAdapterRequest {});
            request.set_timeout(config.connect_timeout);
            match client.describe_adapter(request).await {
                Ok(response) => break response.into_inner(),
                Err(status) if Instant::now() < give_up => {
                    tracing::debug!(code = ?status.code(), "adapter process not ready yet");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(status) => {
                    return Err(BuildError::Setup(format!(
                        "the adapter process did not describe itself within {:?}: {}",
                        config.startup_timeout,
                        convert::status_error(&status)
                    )));
                }
            }
        };
        let description = convert::description(described).map_err(BuildError::Setup)?;
        if let Some(system) = &config.system
            && *system != description.system
        {
            return Err(BuildError::config(
                "system",
                format!(
                    "the adapter process serves {:?}, not {system:?}",
                    description.system
                ),
            ));
        }
        Ok(Self {
            client,
            description,
        })
    }
}

/// A lazily connecting channel to the target (over TLS for `https://`, with the
/// config's `tls` files resolved against `base_dir`).
fn channel(target: &Target, config: &GrpcConfig, base_dir: &Path) -> Result<Channel, BuildError> {
    let connect_timeout = config.connect_timeout;
    match target {
        Target::Tcp(uri) => Ok(Endpoint::from_shared(uri.clone())
            .map_err(|_| BuildError::config("endpoint", "is not a URI"))?
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .connect_lazy()),
        Target::Tls(tls_target) => tls::channel(
            tls_target,
            &config.tls.clone().unwrap_or_default(),
            base_dir,
            connect_timeout,
        ),
        Target::Unix(path) => {
            let path = path.clone();
            // The URI is not used to connect; the connector dials the socket.
            Ok(Endpoint::from_static("http://adapter.local")
                .connect_timeout(connect_timeout)
                .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        let stream = tokio::net::UnixStream::connect(path).await?;
                        Ok::<_, std::io::Error>(TokioIo::new(stream))
                    }
                })))
        }
    }
}

/// The method every fetch calls, as its client span names it.
const FETCH_RECORDS: &str = "tessera.v1.SourceAdapterService/FetchRecords";

/// Adds an ASCII header to a call's metadata (trace headers always are).
fn insert_metadata(metadata: &mut tonic::metadata::MetadataMap, key: &'static str, value: String) {
    if let Ok(value) = value.parse() {
        metadata.insert(key, value);
    }
}

#[async_trait]
impl Adapter for GrpcAdapter {
    fn describe(&self) -> &Description {
        &self.description
    }

    async fn fetch(&self, request: FetchRequest) -> Result<Vec<FetchResult>, FetchError> {
        let now = Instant::now();
        if now >= request.deadline {
            return Err(FetchError::DeadlineExceeded);
        }
        // Sections the process does not serve are answered here, without a call.
        let (known, unknown): (Vec<String>, Vec<String>) = request
            .sections
            .iter()
            .cloned()
            .partition(|s| self.description.section(s).is_some());
        let mut results = Vec::new();
        if !known.is_empty() {
            let mut call = tonic::Request::new(pb::FetchRecordsRequest {
                local_ids: request.local_ids.clone(),
                sections: known.clone(),
            });
            // Sent as grpc-timeout, so the process knows when to stop; a little
            // early, so that its answer (or its DEADLINE_EXCEEDED) is back by
            // the caller's deadline.
            let left = request.deadline - now;
            let sent_timeout = left.saturating_sub(DEADLINE_MARGIN.min(left / 5));
            call.set_timeout(sent_timeout);
            let span = trace::grpc_client_span(FETCH_RECORDS);
            if let Some(headers) = trace::headers(&span) {
                insert_metadata(call.metadata_mut(), "traceparent", headers.traceparent);
                if let Some(state) = headers.tracestate {
                    insert_metadata(call.metadata_mut(), "tracestate", state);
                }
            }
            let mut client = self.client.clone();
            let response = tokio::time::timeout_at(
                request.deadline,
                client.fetch_records(call).instrument(span.clone()),
            )
            .await;
            match response {
                Err(_) => {
                    trace::record_grpc_status(&span, "DEADLINE_EXCEEDED");
                    return Err(FetchError::DeadlineExceeded);
                }
                Ok(Err(status)) => {
                    trace::record_grpc_status(&span, trace::grpc_code_name(status.code() as i32));
                    // A server whose handler outlives the grpc-timeout may end
                    // the call as CANCELLED rather than DEADLINE_EXCEEDED
                    // (grpc-python does, depending on timing): past the
                    // deadline we sent, that is the deadline.
                    if status.code() == tonic::Code::Cancelled
                        && Instant::now() >= now + sent_timeout
                    {
                        return Err(FetchError::DeadlineExceeded);
                    }
                    return Err(convert::status_error(&status));
                }
                Ok(Ok(response)) => {
                    trace::record_grpc_status(&span, "OK");
                    results = convert::results(&request.local_ids, &known, response.into_inner());
                }
            }
        }
        for local_id in &request.local_ids {
            for section in &unknown {
                results.push(FetchResult {
                    local_id: local_id.clone(),
                    section: section.clone(),
                    records: Err(FetchError::UnknownSection {
                        section: section.clone(),
                    }),
                    skipped_malformed: 0,
                });
            }
        }
        Ok(results)
    }

    fn identity_feed(&self, updated_since: Option<SystemTime>) -> BoxFeed<'_> {
        if !self.description.capabilities.identity_feed {
            return Box::pin(futures_util::stream::once(async {
                Err(FetchError::FeedUnsupported)
            }));
        }
        let mut client = self.client.clone();
        let request = pb::StreamSourceRecordsRequest {
            updated_since: updated_since.map(convert::timestamp),
            resume_token: String::new(),
        };
        let feed =
            futures_util::stream::once(async move { client.stream_source_records(request).await })
                .flat_map(|opened| match opened {
                    Ok(response) => response
                        .into_inner()
                        .map(|item| {
                            item.map(convert::feed_record)
                                .map_err(|s| convert::status_error(&s))
                        })
                        .boxed(),
                    Err(status) => futures_util::stream::once(std::future::ready(Err(
                        convert::status_error(&status),
                    )))
                    .boxed(),
                });
        Box::pin(feed)
    }
}

#[async_trait]
impl HealthCheck for GrpcAdapter {
    async fn check(&self) -> Health {
        let mut request = tonic::Request::new(pb::CheckAdapterHealthRequest {});
        request.set_timeout(HEALTH_TIMEOUT);
        let mut client = self.client.clone();
        let answer =
            tokio::time::timeout(HEALTH_TIMEOUT, client.check_adapter_health(request)).await;
        match answer {
            Err(_) => Health::not_serving("the adapter process did not answer in time"),
            Ok(Err(status)) => Health::not_serving(convert::status_error(&status).to_string()),
            Ok(Ok(response)) => {
                let response = response.into_inner();
                let state = match pb::AdapterHealth::try_from(response.health) {
                    Ok(pb::AdapterHealth::Serving) => HealthState::Serving,
                    Ok(pb::AdapterHealth::Degraded) => HealthState::Degraded,
                    _ => HealthState::NotServing,
                };
                Health {
                    state,
                    message: response.message,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_tcp_urls_or_unix_paths() {
        let base = Path::new("/etc/tessera");
        assert_eq!(
            Target::parse("unix:run/a.sock", base),
            Ok(Target::Unix(PathBuf::from("/etc/tessera/run/a.sock")))
        );
        assert_eq!(
            Target::parse("unix:///run/a.sock", base),
            Ok(Target::Unix(PathBuf::from("/run/a.sock")))
        );
        assert_eq!(
            Target::parse("http://127.0.0.1:50061", base),
            Ok(Target::Tcp("http://127.0.0.1:50061".to_owned()))
        );
        assert!(matches!(
            Target::parse("https://127.0.0.1:50061", base),
            Ok(Target::Tls(_))
        ));
        assert!(Target::parse("127.0.0.1:50061", base).is_err());
        assert!(Target::parse("unix:", base).is_err());
    }
}
