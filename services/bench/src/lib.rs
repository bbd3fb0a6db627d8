//! The load harness behind `tessera bench`: each benchmark drives real
//! loopback gRPC and returns one JSON object (the binary prints it).
//!
//! `resolver` measures IdentityService over a large index of synthetic
//! records; `view` measures PatientViewService over fake silos against a bare
//! tonic server, with the load generator in `load` and the optional split of
//! servers and generator onto disjoint CPUs in `placement`; `telemetry`
//! measures what tracing costs a view. The servers measured are the ones
//! `tessera serve` runs: the binary passes them in as a [`Gateway`], so this
//! crate does not depend on the gateway.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;
use tessera_aggregator::{IdentityLookup, PatientViewGrpc};
use tessera_resolver::{IdentityGrpc, Resolver};
use tessera_telemetry::rpc::RpcLayer;
use tokio::net::TcpListener;

mod load;
mod placement;
mod resolver;
mod secure;
mod telemetry;
mod view;

pub use resolver::ResolverBenchArgs;
pub use telemetry::TelemetryBenchArgs;
pub use view::ViewBenchArgs;

/// A boxed future that may move across threads.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What the benchmarks take from the binary that runs them, so that they
/// measure the server `tessera serve` runs.
pub trait Gateway: Send + Sync {
    /// Serves `services` on `listener` (services left out answer
    /// UNIMPLEMENTED), every call through `rpc`, until `shutdown` resolves.
    fn serve(
        &self,
        listener: TcpListener,
        services: Services,
        rpc: RpcLayer,
        shutdown: BoxFuture<()>,
    ) -> BoxFuture<anyhow::Result<()>>;

    /// Serves `services` as [`Gateway::serve`] does, with the security the config file
    /// at `config` sets up (its `server.tls`, `policy`, `auth` and `audit` sections) —
    /// built as `tessera serve` builds it.
    fn serve_secure(
        &self,
        listener: TcpListener,
        services: Services,
        rpc: RpcLayer,
        config: std::path::PathBuf,
        shutdown: BoxFuture<()>,
    ) -> BoxFuture<anyhow::Result<()>>;

    /// The identity lookup the aggregator uses over `resolver`.
    fn lookup(&self, resolver: Arc<Resolver>) -> Arc<dyn IdentityLookup>;
}

/// The services a benchmark serves through [`Gateway::serve`].
#[derive(Debug, Default)]
pub struct Services {
    /// IdentityService over a loaded resolver.
    pub identity: Option<IdentityGrpc>,
    /// PatientViewService over fake silos.
    pub patient_view: Option<PatientViewGrpc>,
}

/// Benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// IdentityService latency over loopback gRPC with a large index.
    Resolver(ResolverBenchArgs),
    /// PatientViewService over loopback gRPC with fake silos, against a bare
    /// tonic server: cold and cached latency, throughput, coalescing.
    View(ViewBenchArgs),
    /// What tracing costs: cached-view throughput with tracing off, at 1 % and
    /// at 100 % sampling, in one run.
    Telemetry(TelemetryBenchArgs),
}

/// Runs a benchmark against `gateway`'s server and returns its report.
pub fn run(command: BenchCommand, gateway: Arc<dyn Gateway>) -> anyhow::Result<serde_json::Value> {
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    };
    match command {
        BenchCommand::Resolver(args) => runtime()?.block_on(resolver::run(&args, &*gateway)),
        BenchCommand::View(args) => view::run(&args, gateway),
        BenchCommand::Telemetry(args) => runtime()?.block_on(telemetry::run(&args, gateway)),
    }
}

/// CPU time (user and system) this process has used, in seconds.
pub(crate) fn cpu_seconds() -> anyhow::Result<f64> {
    cpu_seconds_in("/proc/self/stat")
}

/// CPU time (user and system) of each of these threads of this process that
/// is still running, in seconds.
pub(crate) fn thread_cpu_seconds(
    threads: &[nix::unistd::Pid],
) -> anyhow::Result<std::collections::HashMap<nix::unistd::Pid, f64>> {
    let mut seconds = std::collections::HashMap::new();
    for &tid in threads {
        let path = format!("/proc/self/task/{tid}/stat");
        if std::path::Path::new(&path).exists() {
            seconds.insert(tid, cpu_seconds_in(&path)?);
        }
    }
    Ok(seconds)
}

/// The CPU time in a `/proc` `stat` file, in seconds.
fn cpu_seconds_in(path: &str) -> anyhow::Result<f64> {
    // Linux's clock ticks for these fields: USER_HZ, 100 on every architecture.
    const TICKS_PER_SECOND: f64 = 100.0;
    let stat = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {path} for the CPU time"))?;
    // After the command name (in parentheses), fields 3 onwards: utime is 14,
    // stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |index: usize| -> anyhow::Result<f64> {
        let value = fields
            .get(index)
            .with_context(|| format!("{path} has too few fields"))?;
        Ok(value
            .parse::<u64>()
            .with_context(|| format!("{path} is not numeric"))? as f64)
    };
    Ok((ticks(11)? + ticks(12)?) / TICKS_PER_SECOND)
}
