//! Whether the services the worker writes to answer. When a message keeps
//! failing because the index or a store is down, the worker requeues it and
//! stops taking work until they answer again, instead of dead-lettering
//! every message of an outage; readiness (`/readyz`) is red meanwhile.

use super::context::Ctx;
use crate::retry::pause_for;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio_util::sync::CancellationToken;

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

    fn recover(&self) {
        if self.degraded.swap(false, Ordering::Relaxed) {
            tracing::info!("dependencies answer again: resuming work");
            metrics::gauge!("ferry_degraded").set(0.0);
        }
    }
}

/// Checks the index, S3 and DynamoDB once; the problems found.
pub async fn problems(ctx: &Ctx) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(e) = ctx.index.ping().await {
        problems.push(format!("index: {e}"));
    }
    if let Err(e) = ctx.stores.originals.ping().await {
        problems.push(format!("s3: {e}"));
    }
    if let Err(e) = ctx.stores.edits.ping().await {
        problems.push(format!("dynamodb: {e}"));
    }
    problems
}

/// Waits, with growing pauses (so an outage costs a few requests a
/// second, not a hot loop), until every dependency answers.
pub async fn wait_until_up(ctx: &Ctx, shutdown: &CancellationToken) {
    let mut attempt = 0;
    loop {
        let found = problems(ctx).await;
        if found.is_empty() {
            ctx.health.recover();
            return;
        }
        tracing::debug!(?found, "still waiting for dependencies");
        attempt += 1;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(pause_for(&ctx.policy, attempt)) => {}
        }
    }
}
