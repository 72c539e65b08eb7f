//! Whether the services the worker writes to answer. When a message keeps
//! failing because the index or a store is down, the worker requeues it and
//! stops taking work until they answer again, instead of dead-lettering
//! every message of an outage; readiness (`/readyz`) is red meanwhile.

use std::sync::atomic::{AtomicBool, Ordering};

/// The worker's view of its dependencies.
#[derive(Debug, Default)]
pub struct Health {
    degraded: AtomicBool,
}

impl Health {
    /// True while a dependency is known to be down.
    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    /// Marks the worker degraded (it stops taking work).
    pub fn degrade(&self) {
        if !self.degraded.swap(true, Ordering::Relaxed) {
            tracing::warn!("a dependency is down: pausing work until it answers again");
            metrics::gauge!("ferry_degraded").set(1.0);
        }
    }

    /// Marks the worker healthy again (it takes work).
    pub fn recover(&self) {
        if self.degraded.swap(false, Ordering::Relaxed) {
            tracing::info!("dependencies answer again: resuming work");
            metrics::gauge!("ferry_degraded").set(0.0);
        }
    }
}
