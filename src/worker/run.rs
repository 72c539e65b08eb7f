//! `ferry worker`: starts the lease keeper, the scanner, the admin server
//! and the consumers; reconnects to the broker with backoff; on shutdown
//! stops taking messages, finishes in-flight work and releases the lease.

use super::context::Ctx;
use super::lease::{self, nap, LeaseHandle};
use super::{dispatch, scanner};
use crate::config::Settings;
use crate::index::IndexError;
use crate::queue::Broker;
use crate::retry::pause_for;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Runs a worker until `shutdown` is cancelled.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<(), IndexError> {
    let ctx = Arc::new(Ctx::new(settings).await?);
    let lease = LeaseHandle::new(lease::owner_id());
    tracing::info!(owner = %lease.owner, "worker starting");
    let keeper = tokio::spawn(lease::keep(ctx.clone(), lease.clone(), shutdown.clone()));
    let scan = tokio::spawn(scanner::run(ctx.clone(), lease.clone(), shutdown.clone()));
    let admin = crate::admin::spawn(ctx.clone(), lease.clone(), shutdown.clone()).await;

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
    let _ = scan.await;
    let _ = keeper.await;
    if let Some(a) = admin {
        let _ = a.await;
    }
    tracing::info!("worker stopped");
    Ok(())
}
