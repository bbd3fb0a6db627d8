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
        probing: bool,
    },
}

/// The breaker.
#[derive(Debug)]
pub(crate) struct Breaker {
    policy: BreakerPolicy,
    state: Mutex<State>,
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

    /// Whether a call may go through now. In half-open, only one probe may.
    pub(crate) fn allow(&self) -> bool {
        if !self.policy.enabled {
            return true;
        }
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => true,
            State::Open { until } if Instant::now() < until => false,
            State::Open { .. } => {
                *state = State::HalfOpen { probing: true };
                true
            }
            State::HalfOpen { ref mut probing } => !std::mem::replace(probing, true),
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
        assert!(!b.allow());
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(b.allow(), "the probe");
        assert!(!b.allow(), "only one probe at a time");
        b.record(false);
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.allow());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens() {
        let b = breaker();
        for _ in 0..4 {
            b.record(true);
        }
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(b.allow());
        b.record(true);
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.allow());
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
