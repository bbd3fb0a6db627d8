//! A source's live latency distribution, for its hedge delay: an HDR histogram
//! of the current and the previous period, in microseconds.
//!
//! Every call asks for the hedge delay, and a quantile walks the histogram's
//! buckets (~0.7 % of a cold view's CPU when it was computed each time). The
//! previous period no longer changes, so its quantile is computed once per
//! period and kept.

use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

const PERIOD: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Windows {
    current: Histogram<u64>,
    previous: Histogram<u64>,
    /// The previous period's quantile, once asked: (q's bits, value).
    previous_quantile: Option<(u64, Duration)>,
    rotated: Instant,
}

/// Rotating latency histograms.
#[derive(Debug)]
pub(crate) struct LatencyTracker {
    windows: Mutex<Windows>,
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 1 hour at 2 significant digits: a few kilobytes.
    Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("constant bounds are valid")
}

impl LatencyTracker {
    pub(crate) fn new() -> Self {
        Self {
            windows: Mutex::new(Windows {
                current: histogram(),
                previous: histogram(),
                previous_quantile: None,
                rotated: Instant::now(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Windows> {
        let mut w = self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if now.duration_since(w.rotated) >= PERIOD {
            let current = std::mem::replace(&mut w.current, histogram());
            w.previous = current;
            w.previous_quantile = None;
            w.rotated = now;
        }
        w
    }

    pub(crate) fn record(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        self.lock().current.saturating_record(micros);
    }

    /// The `q` quantile over the last one to two periods, once there are
    /// `min_samples` samples.
    pub(crate) fn quantile(&self, q: f64, min_samples: u64) -> Option<Duration> {
        let mut w = self.lock();
        let at = |h: &Histogram<u64>| Duration::from_micros(h.value_at_quantile(q));
        if w.previous.len() >= min_samples.max(1) {
            return Some(match w.previous_quantile {
                Some((bits, value)) if bits == q.to_bits() => value,
                _ => {
                    let value = at(&w.previous);
                    w.previous_quantile = Some((q.to_bits(), value));
                    value
                }
            });
        }
        (w.current.len() >= min_samples.max(1)).then(|| at(&w.current))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn quantile_needs_samples_and_tracks_the_tail() {
        let t = LatencyTracker::new();
        for ms in 1..=99 {
            t.record(Duration::from_millis(ms));
        }
        assert_eq!(t.quantile(0.95, 100), None);
        t.record(Duration::from_millis(100));
        let p95 = t.quantile(0.95, 100).expect("100 samples");
        assert!(
            (Duration::from_millis(94)..=Duration::from_millis(96)).contains(&p95),
            "{p95:?}"
        );
        tokio::time::advance(PERIOD).await;
        t.record(Duration::from_millis(1));
        assert_eq!(
            t.quantile(0.95, 100),
            Some(p95),
            "the previous period still counts"
        );
        let p50 = t.quantile(0.5, 100).expect("100 samples");
        assert!(p50 < p95, "another quantile is not the kept one: {p50:?}");
        assert_eq!(t.quantile(0.95, 100), Some(p95));
    }

    #[tokio::test(start_paused = true)]
    async fn the_kept_quantile_follows_each_new_period() {
        let t = LatencyTracker::new();
        for _ in 0..100 {
            t.record(Duration::from_millis(10));
        }
        tokio::time::advance(PERIOD).await;
        t.record(Duration::from_millis(50));
        let first = t.quantile(0.95, 100).expect("previous period");
        for _ in 0..99 {
            t.record(Duration::from_millis(50));
        }
        assert_eq!(t.quantile(0.95, 100), Some(first), "kept within the period");
        tokio::time::advance(PERIOD).await;
        let second = t.quantile(0.95, 100).expect("the new previous period");
        assert!(second > first, "{first:?} then {second:?}");
    }
}
