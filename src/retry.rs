//! Retries with exponential backoff and jitter, within a time budget.
//!
//! The only module that knows the `backoff` crate (unmaintained upstream,
//! RUSTSEC-2025-0012, kept because the product names it). Moving to `backon`
//! means rewriting this file alone.

use std::future::Future;
use std::time::Duration;

/// Errors that say whether trying again may help.
pub trait Transient {
    /// True for failures worth retrying: connection errors, 429, 5xx, throttling.
    fn is_transient(&self) -> bool;
}

/// How long and how often to retry a transient failure.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// First pause after a failure.
    pub initial: Duration,
    /// Longest pause between two attempts.
    pub max_interval: Duration,
    /// Total time after which the last error is returned.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(50),
            max_interval: Duration::from_secs(5),
            budget: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// A policy with the given total budget and default pauses.
    pub fn with_budget(budget: Duration) -> Self {
        Self {
            budget,
            ..Self::default()
        }
    }

    fn backoff(&self) -> backoff::ExponentialBackoff {
        backoff::ExponentialBackoffBuilder::new()
            .with_initial_interval(self.initial)
            .with_max_interval(self.max_interval)
            .with_randomization_factor(0.5)
            .with_multiplier(2.0)
            .with_max_elapsed_time(Some(self.budget))
            .build()
    }
}

/// Runs `op` until it succeeds, fails permanently, or the budget is spent.
///
/// `what` names the operation in the log line written for each retry.
pub async fn retry<T, E, F, Fut>(policy: &RetryPolicy, what: &str, mut op: F) -> Result<T, E>
where
    E: Transient + std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    backoff::future::retry_notify(
        policy.backoff(),
        || {
            let attempt = op();
            async move {
                attempt.await.map_err(|e| {
                    if e.is_transient() {
                        backoff::Error::transient(e)
                    } else {
                        backoff::Error::permanent(e)
                    }
                })
            }
        },
        |e: E, wait: Duration| {
            tracing::warn!(operation = what, error = %e, retry_in_ms = wait.as_millis() as u64, "transient failure, retrying");
        },
    )
    .await
}

/// Pauses for the `attempt`-th retry of a loop that has no end (a consumer
/// reconnecting, a scanner waiting for the cluster): exponential with jitter,
/// capped at `policy.max_interval`.
pub fn pause_for(policy: &RetryPolicy, attempt: u32) -> Duration {
    let base = policy.initial.as_secs_f64() * 2f64.powi(attempt.min(30) as i32);
    let capped = base.min(policy.max_interval.as_secs_f64());
    let jitter = 0.5 + rand::random::<f64>();
    Duration::from_secs_f64((capped * jitter).min(policy.max_interval.as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Debug)]
    struct E(bool);
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "transient={}", self.0)
        }
    }
    impl Transient for E {
        fn is_transient(&self) -> bool {
            self.0
        }
    }

    fn quick() -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_millis(1),
            max_interval: Duration::from_millis(5),
            budget: Duration::from_millis(200),
        }
    }

    #[tokio::test]
    async fn transient_errors_are_retried_until_success() {
        let calls = AtomicU32::new(0);
        let out: Result<u32, E> = retry(&quick(), "t", || async {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            if n < 3 {
                Err(E(true))
            } else {
                Ok(n)
            }
        })
        .await;
        assert_eq!(out.unwrap(), 3);
    }

    #[tokio::test]
    async fn permanent_errors_stop_at_once() {
        let calls = AtomicU32::new(0);
        let out: Result<(), E> = retry(&quick(), "t", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(E(false))
        })
        .await;
        assert!(out.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn the_budget_ends_retries() {
        let calls = AtomicU32::new(0);
        let out: Result<(), E> = retry(&quick(), "t", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(E(true))
        })
        .await;
        assert!(out.is_err());
        assert!(calls.load(Ordering::SeqCst) > 2);
    }

    #[test]
    fn pauses_are_capped() {
        let p = quick();
        for a in 0..40 {
            assert!(pause_for(&p, a) <= p.max_interval);
        }
    }
}
