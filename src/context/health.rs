//! Whether the services the worker writes to answer. When a message keeps
//! failing because the index or a store is down, the worker requeues it and
//! stops taking work until they answer again, instead of dead-lettering
//! every message of an outage; readiness (`/readyz`) is red meanwhile.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The worker's view of its dependencies.
#[derive(Debug, Default)]
pub struct Health {
    degraded: AtomicBool,
    /// When the current degraded spell began (notified after a while).
    since: Mutex<Option<Instant>>,
}

impl Health {
    /// True while a dependency is known to be down.
    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    /// Marks the worker degraded (it stops taking work).
    pub fn degrade(&self) {
        if !self.degraded.swap(true, Ordering::Relaxed) {
            self.mark(Some(Instant::now()));
            tracing::warn!("a dependency is down: pausing work until it answers again");
            metrics::gauge!("ferry_degraded").set(1.0);
        }
    }

    /// Marks the worker healthy again (it takes work).
    pub fn recover(&self) {
        if self.degraded.swap(false, Ordering::Relaxed) {
            self.mark(None);
            tracing::info!("dependencies answer again: resuming work");
            metrics::gauge!("ferry_degraded").set(0.0);
        }
    }

    /// How long the worker has been degraded; None while healthy.
    pub fn degraded_for(&self) -> Option<Duration> {
        self.since.lock().ok().and_then(|s| s.map(|t| t.elapsed()))
    }

    fn mark(&self, since: Option<Instant>) {
        if let Ok(mut s) = self.since.lock() {
            *s = since;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Health;

    #[test]
    fn degraded_for_spans_one_spell() {
        let h = Health::default();
        assert_eq!(h.degraded_for(), None);
        h.degrade();
        assert!(h.degraded_for().is_some());
        h.recover();
        assert_eq!(h.degraded_for(), None);
    }
}
