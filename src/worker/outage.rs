//! Riding out an outage: when a message keeps failing because the index or
//! a store is down, the worker requeues it and stops taking work until
//! every dependency answers again, instead of dead-lettering every message
//! of the outage; readiness (`/readyz`) is red meanwhile.

use crate::context::Ctx;
use crate::retry::pause_for;
use tokio_util::sync::CancellationToken;

/// Waits, with growing pauses (so an outage costs a few requests a
/// second, not a hot loop), until every dependency answers.
pub async fn wait_until_up(ctx: &Ctx, shutdown: &CancellationToken) {
    let mut attempt = 0;
    loop {
        let found = ctx.problems().await;
        if found.is_empty() {
            ctx.health.recover();
            return;
        }
        tracing::debug!(?found, "still waiting for dependencies");
        attempt += 1;
        if !super::lease::nap(pause_for(&ctx.policy, attempt), shutdown).await {
            return;
        }
    }
}
