//! A circuit breaker per source: closed, open, half-open with one probe.

use std::sync::Mutex;

use tokio::time::Instant;

use crate::policy::BreakerPolicy;

/// The breaker's state, as metrics and tests see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are refused until the pause ends.
    Open,
    /// One probe call is allowed; its outcome closes or reopens the breaker.
    HalfOpen,
}

#[derive(Debug)]
enum State {
    Closed {
        window_start: Instant,
        calls: u32,
        failures: u32,
    },
    Open {
        until: Instant,
    },
    HalfOpen {
        /// The probe in flight, by number.
        probing: Option<u64>,
    },
}

/// The breaker.
#[derive(Debug)]
pub(crate) struct Breaker {
    policy: BreakerPolicy,
    state: Mutex<State>,
    /// Numbers probes, so that only the probe in flight can give its turn back.
    probes: std::sync::atomic::AtomicU64,
}

/// A call the breaker let through (see [`Breaker::allow`]); keep it for the whole call.
/// A probe dropped before the breaker heard its outcome (the call was cancelled, or
/// found no free slot and never reached the source) gives its turn back, so the next
/// call probes: the breaker never stays half-open with a probe that will not report.
#[derive(Debug)]
pub(crate) struct Admission<'a> {
    breaker: &'a Breaker,
    probe: Option<u64>,
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        let Some(probe) = self.probe else {
            return;
        };
        let mut state = self.breaker.lock();
        if let State::HalfOpen { probing } = &mut *state
            && *probing == Some(probe)
        {
            *probing = None;
        }
    }
}

impl Breaker {
    pub(crate) fn new(policy: BreakerPolicy) -> Self {
        Self {
            policy,
            state: Mutex::new(State::Closed {
                window_start: Instant::now(),
                calls: 0,
                failures: 0,
            }),
            probes: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn state(&self) -> BreakerState {
        match *self.lock() {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { until } if Instant::now() < until => BreakerState::Open,
            State::Open { .. } | State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Whether a call may go through now: `None` while open; in half-open, only one
    /// probe at a time is admitted.
    pub(crate) fn allow(&self) -> Option<Admission<'_>> {
        let admitted = |probe| {
            Some(Admission {
                breaker: self,
                probe,
            })
        };
        if !self.policy.enabled {
            return admitted(None);
        }
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => admitted(None),
            State::Open { until } if Instant::now() < until => None,
            State::Open { .. } | State::HalfOpen { probing: None } => {
                let probe = self
                    .probes
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                *state = State::HalfOpen {
                    probing: Some(probe),
                };
                admitted(Some(probe))
            }
            State::HalfOpen { probing: Some(_) } => None,
        }
    }

    /// Records a call's outcome: `failed` for unavailability and timeouts, not
    /// for answers such as "not found".
    pub(crate) fn record(&self, failed: bool) {
        if !self.policy.enabled {
            return;
        }
        let now = Instant::now();
        let mut state = self.lock();
        match *state {
            State::Closed {
                ref mut window_start,
                ref mut calls,
                ref mut failures,
            } => {
                if now.duration_since(*window_start) > self.policy.window {
                    (*window_start, *calls, *failures) = (now, 0, 0);
                }
                *calls += 1;
                *failures += u32::from(failed);
                if *calls >= self.policy.min_calls
                    && f64::from(*failures) >= self.policy.failure_ratio * f64::from(*calls)
                {
                    tracing::warn!(
                        calls = *calls,
                        failures = *failures,
                        "circuit breaker opened"
                    );
                    *state = State::Open {
                        until: now + self.policy.open_for,
                    };
                }
            }
            State::HalfOpen { .. } if failed => {
                *state = State::Open {
                    until: now + self.policy.open_for,
                };
            }
            State::HalfOpen { .. } => {
                tracing::info!("circuit breaker closed");
                *state = State::Closed {
                    window_start: now,
                    calls: 0,
                    failures: 0,
                };
            }
            // A call that started before the breaker opened.
            State::Open { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerPolicy {
            min_calls: 4,
            ..BreakerPolicy::default()
        })
    }

    #[tokio::test(start_paused = true)]
    async fn opens_on_failures_then_probes_once_and_closes() {
        let b = breaker();
        for _ in 0..2 {
            b.record(false);
        }
        b.record(true);
        assert_eq!(
            b.state(),
            BreakerState::Closed,
            "1 of 3 failed, too few calls"
        );
        b.record(true);
        assert_eq!(b.state(), BreakerState::Open, "2 of 4 failed");
        assert!(b.allow().is_none());
        tokio::time::advance(Duration::from_secs(5)).await;
        let probe = b.allow();
        assert!(probe.is_some(), "the probe");
        assert!(b.allow().is_none(), "only one probe at a time");
        b.record(false);
        drop(probe);
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.allow().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_dropped_unheard_lets_the_next_call_probe() {
        let b = breaker();
        for _ in 0..4 {
            b.record(true);
        }
        tokio::time::advance(Duration::from_secs(6)).await;
        let first = b.allow();
        assert!(first.is_some());
        assert!(b.allow().is_none());
        drop(first);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let second = b.allow();
        assert!(second.is_some(), "the next call probes");
        assert!(b.allow().is_none(), "still one at a time");
        b.record(true);
        drop(second);
        assert_eq!(b.state(), BreakerState::Open, "its failure reopened");
    }

    #[tokio::test(start_paused = true)]
    async fn an_old_probe_cannot_free_a_newer_probes_turn() {
        let b = breaker();
        for _ in 0..4 {
            b.record(true);
        }
        tokio::time::advance(Duration::from_secs(6)).await;
        let old = b.allow();
        b.record(true); // the old probe failed: open again
        tokio::time::advance(Duration::from_secs(6)).await;
        let new = b.allow();
        assert!(new.is_some());
        drop(old); // the old call ends later, after retrying
        assert!(b.allow().is_none(), "the new probe still holds the turn");
        drop(new);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens() {
        let b = breaker();
        for _ in 0..4 {
            b.record(true);
        }
        tokio::time::advance(Duration::from_secs(6)).await;
        let probe = b.allow();
        assert!(probe.is_some());
        b.record(true);
        drop(probe);
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.allow().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn old_failures_leave_the_window() {
        let b = breaker();
        for _ in 0..3 {
            b.record(true);
        }
        tokio::time::advance(Duration::from_secs(11)).await;
        b.record(true);
        assert_eq!(b.state(), BreakerState::Closed, "a new window has one call");
    }
}
