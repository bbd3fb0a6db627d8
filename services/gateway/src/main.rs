//! The `tessera` command line.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tessera_aggregator::PatientViewGrpc;
use tessera_client::ViewArgs;
use tessera_gateway::commands;
use tessera_gateway::commands::adapter::AdapterCommand;
use tessera_gateway::commands::audit::AuditCommand;
use tessera_gateway::commands::bench::BenchCommand;
use tessera_gateway::commands::dev_certs::DevCertsArgs;
use tessera_gateway::commands::resolver::ResolverCommand;
use tessera_gateway::commands::synth::SynthArgs;
use tessera_gateway::config::Config;
use tessera_gateway::server::{self, ServeOptions, Services, Shutdown};
use tessera_gateway::{security, startup, telemetry};
use tessera_resolver::IdentityGrpc;

/// jemalloc, not glibc's allocator: a view allocates and frees many small
/// buffers across two worker threads, where glibc's per-thread arenas and
/// their consolidation passes cost CPU and stall calls.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Tessera: a gRPC federation layer for patient data across siloed systems.
#[derive(Debug, Parser)]
#[command(name = "tessera", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the gRPC server.
    Serve {
        /// The YAML configuration file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Listen on this address instead of the config's `server.listen`
        /// (`127.0.0.1:0` lets the OS choose a port; the bound address is printed).
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
    },
    /// Checks or describes configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Batch and offline identity resolution: link-batch, train, explain.
    #[command(subcommand)]
    Resolver(ResolverCommand),
    /// Generates a synthetic population across silos, with its truth file.
    Synth(SynthArgs),
    /// Benchmarks over real loopback gRPC; each prints one JSON object.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Prints one person's view across every source from a running gateway
    /// (PatientViewService): a table per section and the source statuses, or JSON.
    View(ViewArgs),
    /// Checks a configured source's adapter against its running silo.
    #[command(subcommand)]
    Adapter(AdapterCommand),
    /// Writes a throwaway CA, a server certificate for localhost and client
    /// certificates for the dev callers (reader, steward, marketing).
    DevCerts(DevCertsArgs),
    /// Verifies or exports a JSONL audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Checks a configuration file: exits 0 if it is valid, else prints each error
    /// with its file, line and field and exits 1.
    Check {
        /// The YAML configuration file.
        file: PathBuf,
    },
    /// Prints the configuration's JSON Schema, with every field documented.
    Schema,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { config, listen } => serve(&config, listen),
        Command::Config(ConfigCommand::Check { file }) => check_config(&file),
        Command::Config(ConfigCommand::Schema) => {
            print_line(&Config::json_schema()).map(|()| ExitCode::SUCCESS)
        }
        Command::Resolver(command) => commands::resolver::run(command).map(|()| ExitCode::SUCCESS),
        Command::Synth(args) => commands::synth::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Bench(command) => commands::bench::run(command).map(|()| ExitCode::SUCCESS),
        Command::View(args) => tessera_client::run(args).map(|()| ExitCode::SUCCESS),
        Command::Adapter(command) => commands::adapter::run(command),
        Command::DevCerts(args) => commands::dev_certs::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Audit(command) => commands::audit::run(&command),
    };
    result.unwrap_or_else(|err| {
        let _ = writeln!(std::io::stderr(), "error: {err:#}");
        ExitCode::FAILURE
    })
}

fn check_config(file: &std::path::Path) -> anyhow::Result<ExitCode> {
    match Config::load(file) {
        Ok(_) => {
            print_line(&format!("{}: ok", file.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            let _ = writeln!(std::io::stderr(), "{err}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn serve(config_path: &std::path::Path, listen: Option<SocketAddr>) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let telemetry = {
        let _runtime = runtime.enter();
        telemetry::Telemetry::init(
            &config.telemetry,
            &config.logging,
            &telemetry::Env::from_process(),
        )?
    };
    tessera_aggregator::record_master_ids(config.telemetry.record_master_ids);
    let code = runtime.block_on(serve_with(&config, config_path, listen, &telemetry));
    telemetry.shutdown();
    code
}

async fn serve_with(
    config: &Config,
    config_path: &std::path::Path,
    listen: Option<SocketAddr>,
    telemetry: &telemetry::Telemetry,
) -> anyhow::Result<ExitCode> {
    {
        let shutdown = shutdown_signal()?;
        let (metrics_addr, _stop_metrics) = start_metrics(config, telemetry).await?;
        let addr = listen.unwrap_or(config.server.listen);
        server::check_listener(addr, &config.server)?;
        let security = security::build(config, config_path, addr).await?;
        let guard = security.guard();
        let page_tokens = security.page_tokens;
        let identity_service = config
            .identity
            .as_ref()
            .map(|_| IdentityGrpc::pending().with_page_tokens(page_tokens));
        let view_service = (config.identity.is_some() && !config.sources.is_empty())
            .then(PatientViewGrpc::pending);
        let services = Services {
            identity: identity_service.clone(),
            patient_view: view_service.clone(),
        };
        let example_slot = std::sync::OnceLock::new();
        // Runs while the server already answers health checks with NOT_SERVING.
        let startup = async {
            if let (Some(identity), Some(service)) = (&config.identity, &identity_service) {
                let started = startup::start(config, config_path, identity)
                    .await
                    .map_err(|e| format!("{e:#}"))?;
                service.set_ready(started.resolver);
                if let Some(example) = started.example {
                    let _ = example_slot.set(example);
                }
                if let (Some(view), Some(aggregator)) = (&view_service, started.aggregator) {
                    view.set_ready(aggregator);
                }
            }
            Ok(())
        };
        let tls = server::tls_acceptor(&config.server, config_path)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let bound = listener.local_addr()?;
        tracing::info!(listen = %bound, "listening");
        let options = ServeOptions {
            grace_period: config.server.shutdown_grace_period.0,
            rpc: telemetry.rpc_layer(),
            tls,
            reflection: config.server.reflection,
            guard: Some(guard),
        };
        let tls_on = config.server.tls.is_some();
        // Printed once health is SERVING, so whoever reads it may call at once.
        let on_ready = || {
            let text = ready_text(bound, metrics_addr, example_slot.get(), tls_on);
            if let Err(err) = print_line(&text) {
                tracing::warn!(error = %err, "cannot print the bound address");
            }
        };
        match server::serve(listener, services, options, startup, shutdown, on_ready).await? {
            Shutdown::Graceful => tracing::info!("stopped"),
            Shutdown::GraceExpired => tracing::warn!("stopped after the grace period expired"),
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Serves Prometheus metrics when configured; the address it listens on, and the
/// sender whose drop stops it.
async fn start_metrics(
    config: &Config,
    telemetry: &telemetry::Telemetry,
) -> anyhow::Result<(Option<SocketAddr>, tokio::sync::oneshot::Sender<()>)> {
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    let (Some(addr), Some(registry)) = (
        config.telemetry.prometheus_listen,
        telemetry.prometheus_registry(),
    ) else {
        return Ok((None, stop_metrics));
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for metrics"))?;
    let bound = listener.local_addr()?;
    tracing::info!(listen = %bound, "serving prometheus metrics");
    tokio::spawn(telemetry::prometheus::serve(listener, registry, async {
        let _ = metrics_stopped.await;
    }));
    Ok((Some(bound), stop_metrics))
}

/// What `serve` prints once SERVING: where it listens, where its metrics are, and for
/// the quickstart two `tessera view` commands to try.
fn ready_text(
    bound: SocketAddr,
    metrics: Option<SocketAddr>,
    example: Option<&(u64, tessera_matching::SourceKey)>,
    tls_on: bool,
) -> String {
    let mut text = format!("tessera listening on {bound}");
    if let Some(addr) = metrics {
        text.push_str(&format!("\nmetrics on http://{addr}/metrics"));
    }
    if let Some((master, key)) = example {
        let exe = std::env::current_exe()
            .map_or_else(|_| "tessera".to_owned(), |p| p.display().to_string());
        let (addr, flags) = if tls_on {
            (
                format!("https://localhost:{}", bound.port()),
                " --ca CA.pem --cert CLIENT.pem --key CLIENT.key",
            )
        } else {
            (bound.to_string(), "")
        };
        text.push_str(&format!(
            "\ntry:\n  {exe} view --addr {addr}{flags} --master masters/{master}\n  \
             {exe} view --addr {addr}{flags} --ref {}/{} --sections demographics,encounters",
            key.system, key.local_id
        ));
    }
    text
}

/// Installs the SIGTERM (Kubernetes' stop signal) and Ctrl-C handlers at once, so a
/// signal that arrives before the server is ready is not lost or fatal, and returns
/// a future that resolves on either.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot install the SIGTERM handler")?;
    #[cfg(unix)]
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("cannot install the SIGINT handler")?;
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = terminate.recv() => tracing::info!(signal = "SIGTERM", "shutdown requested"),
            _ = interrupt.recv() => tracing::info!(signal = "SIGINT", "shutdown requested"),
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!(signal = "ctrl-c", "shutdown requested");
        }
    })
}

/// Writes one line to standard output and flushes it, so a parent process reading
/// a pipe sees it at once.
fn print_line(line: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}
