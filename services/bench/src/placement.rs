//! Where `tessera bench view` runs its servers and its load generator: on one
//! runtime sharing every CPU, or on two runtimes pinned to disjoint halves of
//! them, with the servers' own CPU time read per thread.

use std::sync::{Arc, Mutex};

use anyhow::Context;

use crate::load::Pacing;

/// Where the servers run: on the load generator's runtime, or on a runtime of
/// their own pinned to CPUs of their own.
pub(super) struct Placement {
    servers: Option<tokio::runtime::Runtime>,
    /// The servers' runtime threads, for their CPU time.
    server_threads: Arc<Mutex<Vec<nix::unistd::Pid>>>,
}

impl Placement {
    /// The load generator's runtime and where the servers go: with `split`,
    /// each on a runtime pinned to its half of this process's CPUs (the
    /// calling thread joins the generator's half); without, one runtime for
    /// both.
    pub(super) fn new(split: bool) -> anyhow::Result<(tokio::runtime::Runtime, Self)> {
        let server_threads = Arc::default();
        if !split {
            let generator = runtime("bench-view", Vec::new(), None)?;
            let placement = Self {
                servers: None,
                server_threads,
            };
            return Ok((generator, placement));
        }
        let (servers, generator) = split_cpus()?;
        pin(&generator)?;
        let servers = runtime("bench-servers", servers, Some(Arc::clone(&server_threads)))?;
        let generator = runtime("bench-load", generator, None)?;
        let placement = Self {
            servers: Some(servers),
            server_threads,
        };
        Ok((generator, placement))
    }

    /// Stops the servers' own runtime, if any, without waiting for its tasks.
    pub(super) fn shutdown(self) {
        if let Some(servers) = self.servers {
            servers.shutdown_background();
        }
    }

    /// Runs `future` where the servers run.
    pub(super) async fn spawn<F>(&self, future: F) -> anyhow::Result<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        Ok(match &self.servers {
            Some(runtime) => runtime.spawn(future).await?,
            None => tokio::spawn(future).await?,
        })
    }

    /// How the generator keeps its schedule: spinning when it has CPUs of its
    /// own.
    pub(super) fn pacing(&self) -> Pacing {
        if self.servers.is_some() {
            Pacing::Spin
        } else {
            Pacing::Sleep
        }
    }

    /// CPU seconds of each of the servers' own runtime threads; `None` when
    /// the servers share the load generator's runtime.
    pub(super) fn server_cpu(&self) -> anyhow::Result<Option<ThreadCpu>> {
        if self.servers.is_none() {
            return Ok(None);
        }
        let threads = self
            .server_threads
            .lock()
            .map_err(|_| anyhow::anyhow!("server thread list poisoned"))?
            .clone();
        crate::thread_cpu_seconds(&threads).map(Some)
    }
}

/// CPU seconds by thread.
pub(super) type ThreadCpu = std::collections::HashMap<nix::unistd::Pid, f64>;

/// CPU seconds the threads used between two readings: a thread started
/// meanwhile counts in full; one that ended meanwhile (an idle blocking-pool
/// thread) drops out, with what little it used.
pub(super) fn cpu_between(before: Option<&ThreadCpu>, after: Option<&ThreadCpu>) -> Option<f64> {
    let (before, after) = (before?, after?);
    Some(
        after
            .iter()
            .map(|(tid, seconds)| seconds - before.get(tid).copied().unwrap_or(0.0))
            .sum(),
    )
}

/// Pins the calling thread to `cpus`.
fn pin(cpus: &[usize]) -> anyhow::Result<()> {
    let mut set = nix::sched::CpuSet::new();
    for &cpu in cpus {
        set.set(cpu)?;
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .context("cannot pin a benchmark thread to its CPUs")
}

/// This process's CPUs, split in two halves: the servers', the generator's.
fn split_cpus() -> anyhow::Result<(Vec<usize>, Vec<usize>)> {
    let allowed = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
        .context("cannot read this process's CPUs")?;
    let cpus: Vec<usize> = (0..nix::sched::CpuSet::count())
        .filter(|&cpu| allowed.is_set(cpu).unwrap_or(false))
        .collect();
    anyhow::ensure!(
        cpus.len() >= 2,
        "--split-cores needs at least 2 CPUs; this process may use {}",
        cpus.len()
    );
    let (servers, generator) = cpus.split_at(cpus.len() / 2);
    Ok((servers.to_vec(), generator.to_vec()))
}

/// A multi-threaded runtime of threads called `name`, one worker per CPU in
/// `cpus`, every thread pinned to them and its ID pushed to `threads` if
/// given; when `cpus` is empty, tokio's default workers, unpinned.
fn runtime(
    name: &str,
    cpus: Vec<usize>,
    threads: Option<Arc<Mutex<Vec<nix::unistd::Pid>>>>,
) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if !cpus.is_empty() {
        builder.worker_threads(cpus.len());
    }
    builder
        .enable_all()
        .thread_name(name)
        .on_thread_start(move || {
            // A thread that cannot be pinned runs unpinned: the figures stay
            // true, only less separated.
            if !cpus.is_empty() {
                let _ = pin(&cpus);
            }
            if let Some(Ok(mut threads)) = threads.as_ref().map(|t| t.lock()) {
                threads.push(nix::unistd::gettid());
            }
        })
        .build()
        .context("cannot start the benchmark's runtime")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tid(n: i32) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(n)
    }

    #[test]
    fn cpu_between_counts_new_threads_in_full_and_drops_ended_ones() {
        let before: ThreadCpu = [(tid(1), 1.0), (tid(2), 5.0)].into();
        // Thread 2 ended, thread 3 started.
        let after: ThreadCpu = [(tid(1), 1.5), (tid(3), 0.25)].into();
        assert_eq!(cpu_between(Some(&before), Some(&after)), Some(0.75));
        assert_eq!(cpu_between(None, Some(&after)), None);
        assert_eq!(cpu_between(Some(&before), None), None);
    }
}
