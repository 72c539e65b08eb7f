//! The consumers' connection to the broker: serve the queues until shutdown,
//! reconnecting with backoff whenever the broker goes away.

use super::dispatch;
use super::lease::nap;
use crate::context::Ctx;
use crate::queue::Broker;
use crate::retry::pause_for;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Consumes until `shutdown` is cancelled; in-flight work is finished.
pub async fn consume(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        let broker = match Broker::connect(&ctx.settings).await {
            Ok(b) => Arc::new(b),
            Err(e) => {
                tracing::warn!(error = %e, "cannot connect to the broker; retrying");
                failures += 1;
                nap(pause_for(&ctx.policy, failures), &shutdown).await;
                continue;
            }
        };
        if failures > 0 {
            tracing::info!("connected to the broker again");
        }
        failures = 0;
        ctx.broker_up.store(true, Ordering::Relaxed);
        let served = dispatch::serve(ctx.clone(), broker.clone(), shutdown.clone()).await;
        ctx.broker_up.store(false, Ordering::Relaxed);
        match served {
            Ok(()) => broker.close().await,
            Err(e) => {
                tracing::warn!(error = %e, "lost the broker; reconnecting");
                failures += 1;
                nap(pause_for(&ctx.policy, failures), &shutdown).await;
            }
        }
    }
}
