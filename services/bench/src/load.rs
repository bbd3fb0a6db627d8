//! The load generator of `tessera bench view` and `bench telemetry`: tonic
//! clients over several connections, an open loop that sends each call at its
//! scheduled time and times it from then (no coordinated omission), and a
//! closed loop of concurrent callers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use tessera_client::connect::{ConnectOptions, Connection};
use tessera_proto::v1::{self as pb, patient_view_service_client::PatientViewServiceClient};
use tokio::time::Instant;

/// Every call's deadline.
const DEADLINE: Duration = Duration::from_secs(2);

pub(super) fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

pub(super) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

pub(super) fn ms(v: u64) -> f64 {
    v as f64 / 1000.0
}

pub(super) fn request(
    master: &str,
    max_staleness: Option<Duration>,
) -> tonic::Request<pb::GetPatientViewRequest> {
    let mut request = tonic::Request::new(pb::GetPatientViewRequest {
        subject: Some(pb::PatientSubject {
            subject: Some(pb::patient_subject::Subject::Master(master.to_owned())),
        }),
        purpose: pb::PurposeOfUse::Treatment.into(),
        max_staleness: max_staleness.and_then(|d| prost_types::Duration::try_from(d).ok()),
        ..pb::GetPatientViewRequest::default()
    });
    request.set_timeout(DEADLINE);
    request
}

/// How long a benchmark client waits to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Clients over several connections, handed out round-robin.
#[derive(Clone)]
pub(super) struct Clients {
    clients: Arc<Vec<PatientViewServiceClient<Connection>>>,
    next: Arc<AtomicU64>,
}

impl Clients {
    pub(super) async fn connect(
        addr: std::net::SocketAddr,
        connections: usize,
    ) -> anyhow::Result<Self> {
        Self::connect_with(
            &format!("http://{addr}"),
            &ConnectOptions::default(),
            connections,
        )
        .await
    }

    /// Clients of `target` (`http://`, `https://` or `HOST:PORT`) with `options`' TLS
    /// files and bearer token, as `tessera view` connects.
    pub(super) async fn connect_with(
        target: &str,
        options: &ConnectOptions,
        connections: usize,
    ) -> anyhow::Result<Self> {
        let mut clients = Vec::new();
        for _ in 0..connections.max(1) {
            let channel = tessera_client::connect::channel(target, options, CONNECT_TIMEOUT)
                .await
                .context("cannot connect to the in-process server")?;
            clients.push(PatientViewServiceClient::new(channel));
        }
        Ok(Self {
            clients: Arc::new(clients),
            next: Arc::default(),
        })
    }

    pub(super) fn get(&self) -> PatientViewServiceClient<Connection> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) as usize % self.clients.len();
        self.clients[i].clone()
    }
}

/// Results of an open-loop phase.
pub(super) struct OpenLoop {
    pub(super) latency: Histogram<u64>,
    pub(super) completed: u64,
    pub(super) errors: u64,
    pub(super) partial: u64,
    pub(super) elapsed: Duration,
    /// From each request's scheduled time to its handing to the runtime: how
    /// well the generator kept its schedule.
    pub(super) send_lag: Histogram<u64>,
}

impl OpenLoop {
    pub(super) fn new() -> anyhow::Result<Self> {
        Ok(Self {
            latency: histogram()?,
            completed: 0,
            errors: 0,
            partial: 0,
            elapsed: Duration::ZERO,
            send_lag: histogram()?,
        })
    }

    /// Adds another run's counts and times to these.
    pub(super) fn absorb(&mut self, other: &OpenLoop) -> anyhow::Result<()> {
        self.latency.add(&other.latency)?;
        self.send_lag.add(&other.send_lag)?;
        self.completed += other.completed;
        self.errors += other.errors;
        self.partial += other.partial;
        self.elapsed += other.elapsed;
        Ok(())
    }
}

/// How the open-loop generator keeps its schedule.
#[derive(Debug, Clone, Copy)]
pub(super) enum Pacing {
    /// An OS thread sleeping on the kernel's timer hands each call to the
    /// runtime. tokio's own timer fires on whole-millisecond ticks, and only
    /// when a worker gets round to it: requests left about 1 ms after their
    /// time (2 ms at p99), and that delay was counted as the server's
    /// latency. The thread costs no CPU while it waits, but every call costs
    /// a wake-up of the thread and one of a parked worker.
    Sleep,
    /// A task on the generator's runtime yields until each call's time and
    /// spawns the call where it runs: no wake-ups, but the task keeps the
    /// generator's CPUs busy, so only for a generator with CPUs of its own
    /// (`--split-cores`).
    Spin,
}

/// One call of an open loop: whether it succeeded, whether the view was
/// partial, its latency from `scheduled`, and how late it was sent.
async fn call(
    mut client: PatientViewServiceClient<Connection>,
    request: tonic::Request<pb::GetPatientViewRequest>,
    scheduled: std::time::Instant,
) -> (bool, bool, Duration, Duration) {
    let send_lag = scheduled.elapsed();
    let result = client.get_patient_view(request).await;
    let latency = scheduled.elapsed();
    let partial = result
        .as_ref()
        .is_ok_and(|v| !v.get_ref().unreachable.is_empty());
    (result.is_ok(), partial, latency, send_lag)
}

/// Sends `total` requests at `rate` per second, each at its scheduled time
/// whatever the previous ones did, timing each from that scheduled time.
/// Request `i` asks for `masters[i % masters.len()]`.
pub(super) async fn open_loop(
    clients: &Clients,
    pacing: Pacing,
    rate: u64,
    total: usize,
    masters: Arc<Vec<String>>,
    max_staleness: Option<Duration>,
) -> anyhow::Result<OpenLoop> {
    anyhow::ensure!(total == 0 || !masters.is_empty(), "no masters to ask for");
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let runtime = tokio::runtime::Handle::current();
    let clients = clients.clone();
    let start = std::time::Instant::now();
    let send = move |calls: &mut tokio::task::JoinSet<_>, i: usize, scheduled| {
        let request = request(&masters[i % masters.len()], max_staleness);
        calls.spawn_on(call(clients.get(), request, scheduled), &runtime);
    };
    let mut calls = match pacing {
        Pacing::Sleep => {
            tokio::task::spawn_blocking(move || {
                let mut calls = tokio::task::JoinSet::new();
                for i in 0..total {
                    let scheduled = start + interval.mul_f64(i as f64);
                    let now = std::time::Instant::now();
                    if scheduled > now {
                        std::thread::sleep(scheduled - now);
                    }
                    send(&mut calls, i, scheduled);
                }
                calls
            })
            .await?
        }
        Pacing::Spin => {
            // On a worker, not on the thread blocked on the benchmark.
            tokio::spawn(async move {
                let mut calls = tokio::task::JoinSet::new();
                for i in 0..total {
                    let scheduled = start + interval.mul_f64(i as f64);
                    while std::time::Instant::now() < scheduled {
                        tokio::task::yield_now().await;
                    }
                    send(&mut calls, i, scheduled);
                }
                calls
            })
            .await?
        }
    };
    let mut out = OpenLoop::new()?;
    while let Some(joined) = calls.join_next().await {
        let (ok, partial, latency, send_lag) = joined?;
        out.send_lag.record(micros(send_lag))?;
        out.latency.record(micros(latency))?;
        out.completed += u64::from(ok);
        out.errors += u64::from(!ok);
        out.partial += u64::from(partial);
    }
    out.elapsed = start.elapsed();
    Ok(out)
}

/// Calls per second with `concurrency` callers in a closed loop for `duration`.
pub(super) async fn closed_loop(
    clients: &Clients,
    concurrency: usize,
    duration: Duration,
    masters: Arc<Vec<String>>,
) -> anyhow::Result<(f64, u64)> {
    let stop = Instant::now() + duration;
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..concurrency {
        let mut client = clients.get();
        let masters = masters.clone();
        workers.spawn(async move {
            let (mut done, mut errors, mut i) = (0u64, 0u64, w);
            while Instant::now() < stop {
                match client
                    .get_patient_view(request(&masters[i % masters.len()], None))
                    .await
                {
                    Ok(_) => done += 1,
                    Err(_) => errors += 1,
                }
                i += concurrency;
            }
            (done, errors)
        });
    }
    let start = Instant::now();
    let (mut done, mut errors) = (0, 0);
    while let Some(joined) = workers.join_next().await {
        let (d, e) = joined?;
        done += d;
        errors += e;
    }
    Ok((done as f64 / start.elapsed().as_secs_f64(), errors))
}
