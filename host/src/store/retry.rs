//! Retrying store calls that failed for a passing reason (a lost connection, a
//! serialization failure, a lock or statement timeout, a busy or full store): the one
//! backoff every background worker uses (projection workers, verification, warming,
//! leases, heartbeats, the notice follower), so they all wait alike and all give up
//! after the same documented budget.
//!
//! Waits double from 100 ms up to a cap (5 s unless the caller's cadence is shorter),
//! each with jitter, so hosts that lost the database together do not come back in
//! step. What counts as passing is `fault::classify`'s call (`StoreFault::is_retryable`);
//! anything else is returned at once, as before.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The first wait after a failure.
pub const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The longest wait between two attempts.
pub const MAX_DELAY: Duration = Duration::from_secs(5);
/// How long a store error may persist, by default, before a worker stops waiting in
/// silence: a projection build is then shown as waiting for the store (it still
/// retries, every `MAX_DELAY`, and resumes on its own).
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(60);

/// The budget in milliseconds, set once at start-up (`--store-retry-budget-secs`).
static BUDGET_MS: AtomicU64 = AtomicU64::new(DEFAULT_BUDGET.as_millis() as u64);

/// Sets the retry budget for this process (start-up only).
pub fn set_budget(budget: Duration) {
    BUDGET_MS.store(budget.as_millis() as u64, Ordering::Relaxed);
}

/// How long store errors may persist before a worker gives up waiting in silence.
pub fn budget() -> Duration {
    Duration::from_millis(BUDGET_MS.load(Ordering::Relaxed))
}

/// An error that may be retried unchanged: the store's kind of failure says so.
pub trait Transient {
    fn is_transient(&self) -> bool;
}

impl Transient for anyhow::Error {
    fn is_transient(&self) -> bool {
        super::fault::classify(self).is_retryable()
    }
}

/// The waits of one worker between failed attempts, and how long it has failed.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    cap: Duration,
    /// When the failures since the last success began.
    failing_since: Option<Instant>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

impl Backoff {
    /// 100 ms doubling to 5 s.
    pub fn new() -> Backoff {
        Backoff::capped(MAX_DELAY)
    }

    /// 100 ms doubling to `cap` (for loops whose own cadence is shorter than 5 s).
    pub fn capped(cap: Duration) -> Backoff {
        Backoff {
            next: FIRST_DELAY.min(cap),
            cap,
            failing_since: None,
        }
    }

    /// Records a failure and says how long to wait before the next attempt: the
    /// current step with jitter (between half of it and all of it), the step doubling
    /// up to the cap.
    pub fn failed(&mut self) -> Duration {
        self.failing_since.get_or_insert_with(Instant::now);
        let step = self.next;
        self.next = (self.next * 2).min(self.cap);
        let half = step / 2;
        half + half.mul_f64(rand::random::<f64>())
    }

    /// An attempt succeeded: the next failure starts again from the first step.
    pub fn succeeded(&mut self) {
        self.next = FIRST_DELAY.min(self.cap);
        self.failing_since = None;
    }

    /// How long the failures since the last success have lasted, if failing.
    pub fn failing_for(&self) -> Option<Duration> {
        self.failing_since.map(|since| since.elapsed())
    }

    /// Whether the failures since the last success have lasted past the budget.
    pub fn past_budget(&self) -> bool {
        self.failing_for()
            .is_some_and(|failing| failing >= budget())
    }
}

/// Runs `call` until it succeeds, fails with an error that is not transient, or has
/// failed for longer than the budget (then its last error is returned). Each retry is
/// logged at `debug`, the giving up by the caller.
pub async fn retry<T, E, F, Fut>(what: &str, mut call: F) -> Result<T, E>
where
    E: Transient + std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut backoff = Backoff::new();
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(error) if error.is_transient() && !backoff.past_budget() => {
                let wait = backoff.failed();
                tracing::debug!("{what} failed, retrying in {wait:?}: {error:#}");
                tokio::time::sleep(wait).await;
            }
            Err(error) => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_with_jitter_up_to_the_cap() {
        let mut backoff = Backoff::new();
        let mut steps = Vec::new();
        for _ in 0..10 {
            steps.push(backoff.failed());
        }
        // Each wait is between half its step and its step: 100, 200, 400… ms, 5 s at most.
        let mut step = FIRST_DELAY;
        for wait in steps {
            assert!(
                wait >= step / 2 && wait <= step,
                "{wait:?} for a {step:?} step"
            );
            step = (step * 2).min(MAX_DELAY);
        }
        assert!(backoff.failing_for().is_some());
        backoff.succeeded();
        assert!(backoff.failing_for().is_none());
        assert!(backoff.failed() <= FIRST_DELAY);
    }

    #[test]
    fn a_short_cap_holds_from_the_first_step() {
        let mut backoff = Backoff::capped(Duration::from_millis(50));
        assert!(backoff.failed() <= Duration::from_millis(50));
        assert!(backoff.failed() <= Duration::from_millis(50));
    }

    #[tokio::test]
    async fn only_transient_errors_are_retried() {
        let mut calls = 0;
        let answer: anyhow::Result<u32> = retry("a read", || {
            calls += 1;
            let attempt = calls;
            async move {
                if attempt < 3 {
                    Err(anyhow::Error::new(sqlx::Error::PoolTimedOut))
                } else {
                    Ok(attempt)
                }
            }
        })
        .await;
        assert_eq!(answer.unwrap(), 3);

        let mut calls = 0;
        let answer: anyhow::Result<()> = retry("a read", || {
            calls += 1;
            async { Err(anyhow::anyhow!("a bug")) }
        })
        .await;
        assert!(answer.is_err());
        assert_eq!(calls, 1, "a bug is not retried");
    }
}
