//! How fast the JSONL trail takes appends, and what each costs this process's CPU.
//!
//! `cargo run --release -p tessera-audit --example append_rate -- [TASKS] [SECONDS] [WORK_US]`
//!
//! TASKS concurrent callers (default 32) on a one-thread runtime, as one server core
//! would run them, each in a loop: spend WORK_US microseconds of CPU (default 40, about
//! what a cached view costs the server), then append a view-shaped record; for SECONDS
//! (default 3) each. Prints calls per second and CPU microseconds per call (user +
//! system, all threads of this process, the trail's writer included) for the
//! in-memory sink (the floor) and the JSONL trail. Pin it to one CPU (`taskset -c 0`)
//! to see what the trail takes from a busy server core.

#![allow(clippy::print_stdout)] // a command-line tool reports on stdout

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tessera_audit::{AuditRecord, AuditSink, AuthMethod, JsonlSink, MemorySink};

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name's closing parenthesis; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn record(n: u64) -> AuditRecord {
    let mut record = AuditRecord::now(
        "bench",
        AuthMethod::Jwt,
        "/tessera.v1.PatientViewService/GetPatientView",
        "TREAT",
    );
    record.masters = vec![format!("masters/{}", n % 100)];
    record.sections_returned = vec!["ehr.encounters".into(), "crm.contacts".into()];
    record.sources_returned = vec!["ehr".into(), "crm".into()];
    record.request_id = format!("{n:032x}");
    record
}

/// Spins for `micros` of CPU.
fn work(micros: u64) {
    let until = Instant::now() + Duration::from_micros(micros);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

async fn run(sink: Arc<dyn AuditSink>, (tasks, seconds, work_us): (u64, u64, u64)) -> (f64, f64) {
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(seconds);
    let cpu = cpu_seconds();
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (sink, done) = (sink.clone(), done.clone());
        handles.push(tokio::spawn(async move {
            let mut n = t;
            while Instant::now() < until {
                work(work_us);
                sink.append(record(n)).await.expect("append");
                // Let the other callers in, as a server's tasks would.
                tokio::task::yield_now().await;
                done.fetch_add(1, Ordering::Relaxed);
                n += tasks;
            }
        }));
    }
    for h in handles {
        h.await.expect("appender");
    }
    let appends = done.load(Ordering::Relaxed) as f64;
    let rate = appends / start.elapsed().as_secs_f64();
    let cpu_us = (cpu_seconds() - cpu) * 1e6 / appends.max(1.0);
    (rate, cpu_us)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let tasks: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(32);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let work_us: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(40);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let file: Arc<dyn AuditSink> =
        Arc::new(JsonlSink::open(&dir.path().join("audit.jsonl")).expect("trail"));
    let memory: Arc<dyn AuditSink> = Arc::new(MemorySink::default());
    let shape = (tasks, seconds, work_us);
    for (name, sink) in [("memory", memory), ("jsonl file", file)] {
        let (rate, cpu_us) = runtime.block_on(run(sink, shape));
        println!(
            "{name:>20}: {rate:>7.0} calls/s  {cpu_us:>6.1} CPU µs/call  \
             ({tasks} callers, {work_us} µs work each)"
        );
    }
}
