//! `tessera bench ...`: the harness in [`tessera_bench`], driving this
//! binary's own server and identity lookup.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use tessera_aggregator::IdentityLookup;
use tessera_bench::{BoxFuture, Gateway, Services};
use tessera_resolver::Resolver;
use tessera_telemetry::rpc::RpcLayer;
use tokio::net::TcpListener;

pub use tessera_bench::BenchCommand;

use crate::adapters::ResolverLookup;
use crate::server::{self, ServeOptions};

/// The gateway as the benchmarks see it: [`server::serve`] without TLS or
/// reflection (the anonymous loopback grant, no audit trail), the same with the
/// security a config file sets up, and the aggregator's [`ResolverLookup`].
#[derive(Debug, Clone, Copy)]
pub struct ThisGateway;

impl Gateway for ThisGateway {
    fn serve(
        &self,
        listener: TcpListener,
        services: Services,
        rpc: RpcLayer,
        shutdown: BoxFuture<()>,
    ) -> BoxFuture<anyhow::Result<()>> {
        let services = server::Services {
            identity: services.identity,
            patient_view: services.patient_view,
        };
        let options = ServeOptions {
            grace_period: Duration::from_secs(5),
            rpc,
            tls: None,
            reflection: false,
            guard: None,
        };
        let guard = crate::security::anonymous_loopback_guard();
        Box::pin(async move {
            let options = ServeOptions {
                guard: Some(guard?),
                ..options
            };
            server::serve(
                listener,
                services,
                options,
                async { Ok(()) },
                shutdown,
                || {},
            )
            .await?;
            Ok(())
        })
    }

    fn serve_secure(
        &self,
        listener: TcpListener,
        services: Services,
        rpc: RpcLayer,
        config: std::path::PathBuf,
        shutdown: BoxFuture<()>,
    ) -> BoxFuture<anyhow::Result<()>> {
        let services = server::Services {
            identity: services.identity,
            patient_view: services.patient_view,
        };
        Box::pin(async move {
            let parsed = crate::config::Config::load(&config)?;
            let addr = listener.local_addr()?;
            let security = crate::security::build(&parsed, &config, addr).await?;
            let options = ServeOptions {
                grace_period: Duration::from_secs(5),
                rpc,
                tls: server::tls_acceptor(&parsed.server, &config)?,
                reflection: false,
                guard: Some(security.guard()),
            };
            server::serve(
                listener,
                services,
                options,
                async { Ok(()) },
                shutdown,
                || {},
            )
            .await?;
            Ok(())
        })
    }

    fn lookup(&self, resolver: Arc<Resolver>) -> Arc<dyn IdentityLookup> {
        Arc::new(ResolverLookup::new(resolver))
    }
}

/// Runs a benchmark and prints its report, one JSON object.
pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    let report = tessera_bench::run(command, Arc::new(ThisGateway))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{report}")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole view benchmark, tiny, over this binary's server, with the
    /// servers on CPUs of their own: it runs to the end, every call succeeds,
    /// coalescing holds, and the servers' CPU per view is counted. Nothing
    /// here is timed.
    #[test]
    fn split_cores_runs_every_phase_and_counts_the_servers_cpu() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(subcommand)]
            command: BenchCommand,
        }
        let cli = Cli::parse_from([
            "bench",
            "view",
            "--adapters",
            "2",
            "--latency-ms",
            "1",
            "--rate",
            "100",
            "--duration",
            "1",
            "--cached-rate",
            "200",
            "--coalesce",
            "20",
            "--split-cores",
        ]);
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let report =
            std::thread::spawn(move || tessera_bench::run(cli.command, Arc::new(ThisGateway)))
                .join()
                .expect("the benchmark thread panicked");
        if cpus < 2 {
            let err = report.expect_err("one CPU cannot be split");
            assert!(err.to_string().contains("at least 2 CPUs"), "{err}");
            return;
        }
        let report = report.expect("the benchmark failed");
        assert_eq!(report["errors"], 0);
        assert_eq!(report["coalescing_ratio"], 1.0);
        assert_eq!(report["coalesce_ok"], 20);
        assert_eq!(report["split_cores"], true);
        for field in [
            "server_cpu_us_per_cold_view",
            "server_cpu_us_per_cached_view",
            "server_cpu_us_per_bare_view",
        ] {
            let value = report[field].as_f64();
            assert!(value.is_some_and(|v| v >= 0.0), "{field}: {report}");
        }
        assert!(report["cpu_us_per_cached_view"].is_null());
        assert!(
            report["cached_achieved_rate"]
                .as_f64()
                .is_some_and(|r| r > 0.0)
        );
    }
}
