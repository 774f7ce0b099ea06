//! A tenant's compile CPU per hour (`compile_cpu_ms_per_hour`): every compile of its
//! uploads is charged the CPU time its compiler process used (a compile killed at its
//! timeout included), and while the last hour's charges reach the budget its uploads
//! are refused before compiling (`429 over_limit`, with when to retry). It lives in the
//! tenant's `Usage`, so a change of limits keeps the hour's charges.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

const HOUR: Duration = Duration::from_secs(3600);

/// The last hour's compiles and what they cost.
#[derive(Default)]
pub struct CompileBudget {
    /// When each compile ended and its CPU milliseconds, oldest first.
    charges: Mutex<VecDeque<(Instant, u64)>>,
    /// CPU milliseconds of every compile since the server started.
    pub cpu_ms: AtomicU64,
    /// Uploads refused because the budget was spent.
    pub refused: AtomicU64,
}

/// The budget is spent: no compile until `retry_after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileBudgetSpent {
    pub used_ms: u64,
    pub budget_ms: u64,
    pub retry_after: Duration,
}

impl CompileBudget {
    /// Admits one compile, or says when the hour's charges fall below `budget_ms`.
    pub fn admit(&self, budget_ms: u64) -> Result<(), CompileBudgetSpent> {
        self.admit_at(budget_ms, Instant::now())
    }

    fn admit_at(&self, budget_ms: u64, now: Instant) -> Result<(), CompileBudgetSpent> {
        let mut charges = self.charges.lock().expect("compile budget lock");
        while charges
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) >= HOUR)
        {
            charges.pop_front();
        }
        let used_ms: u64 = charges.iter().map(|(_, ms)| ms).sum();
        if used_ms < budget_ms {
            return Ok(());
        }
        // The oldest charges leave the window first: the budget is free again once
        // enough of them have.
        let mut left = used_ms;
        let mut retry_after = HOUR;
        for (at, ms) in charges.iter() {
            left -= ms;
            if left < budget_ms {
                retry_after = (*at + HOUR).saturating_duration_since(now);
                break;
            }
        }
        self.refused.fetch_add(1, Relaxed);
        Err(CompileBudgetSpent {
            used_ms,
            budget_ms,
            retry_after,
        })
    }

    /// Charges one compile's CPU time.
    pub fn charge(&self, cpu: Duration) {
        self.charge_at(cpu, Instant::now());
    }

    fn charge_at(&self, cpu: Duration, now: Instant) {
        let ms = cpu.as_millis() as u64;
        self.cpu_ms.fetch_add(ms, Relaxed);
        self.charges
            .lock()
            .expect("compile budget lock")
            .push_back((now, ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_hours_budget_compiles_wait_for_the_oldest_to_leave_the_window() {
        let budget = CompileBudget::default();
        let start = Instant::now();
        budget.charge_at(Duration::from_millis(600), start);
        budget.charge_at(Duration::from_millis(600), start + Duration::from_secs(60));
        assert!(
            budget
                .admit_at(2000, start + Duration::from_secs(61))
                .is_ok()
        );
        let spent = budget
            .admit_at(1000, start + Duration::from_secs(61))
            .unwrap_err();
        assert_eq!(spent.used_ms, 1200);
        // The first charge leaves the window an hour after it was made.
        assert_eq!(spent.retry_after, HOUR - Duration::from_secs(61));
        assert!(budget.admit_at(1000, start + HOUR).is_ok());
        assert_eq!(budget.refused.load(Relaxed), 1);
        assert_eq!(budget.cpu_ms.load(Relaxed), 1200);
    }
}
