//! The `ferry worker` process, wired in one place: the shared context, the
//! lease keeper, the scanner, the admin server and the consumers, all
//! stopped by one shutdown token that SIGTERM or SIGINT cancels. On
//! shutdown the consumers stop taking messages and finish in-flight work,
//! and the lease is released.

use crate::config::Settings;
use crate::context::Ctx;
use crate::index::{IndexClient, IndexError};
use crate::worker::lease::{self, LeaseHandle};
use crate::worker::{consume, scanner};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Runs a worker until `shutdown` is cancelled.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<(), IndexError> {
    let ctx = Arc::new(Ctx::new(settings).await?);
    let lease = LeaseHandle::new(lease::owner_id());
    tracing::info!(owner = %lease.owner, "worker starting");
    // The admin server answers (readiness red) while the engine is checked.
    let admin = crate::admin::spawn(ctx.clone(), lease.clone(), shutdown.clone()).await;
    if engine_checked(&ctx, &shutdown).await? {
        let keeper = tokio::spawn(lease::keep(ctx.clone(), lease.clone(), shutdown.clone()));
        let watch = ctx.notify.is_on().then(|| {
            tokio::spawn(crate::ops::conditions::run(
                ctx.clone(),
                lease.clone(),
                shutdown.clone(),
            ))
        });
        let scan = tokio::spawn(scanner::run(ctx.clone(), lease, shutdown.clone()));
        consume(ctx.clone(), shutdown).await;
        let _ = scan.await;
        let _ = keeper.await;
        if let Some(w) = watch {
            let _ = w.await;
        }
    }
    flush_notifications(&ctx).await;
    if let Some(a) = admin {
        let _ = a.await;
    }
    tracing::info!("worker stopped");
    Ok(())
}

/// Longest a process waits at exit for its notifications to go out: a
/// receiver that is down must not hold a command or a shutdown.
pub const NOTIFY_FLUSH: std::time::Duration = std::time::Duration::from_secs(2);

/// Gives the queued notifications [`NOTIFY_FLUSH`] to go out, and says how
/// many did not.
pub async fn flush_notifications(ctx: &Ctx) {
    let left = ctx.notify.flush(NOTIFY_FLUSH).await;
    if left > 0 {
        tracing::warn!(
            left,
            "notifications not delivered before exit (receiver slow or down)"
        );
    }
}

/// Waits until each index server (the source, and the target cluster if
/// any) says which engine it is: an engine ferry does not support is
/// refused before any work, one that does not answer is waited out like any
/// outage. False on shutdown.
async fn engine_checked(ctx: &Ctx, shutdown: &CancellationToken) -> Result<bool, IndexError> {
    for client in std::iter::once(&ctx.index).chain(&ctx.target) {
        if !engine_of(ctx, client, shutdown).await? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// [`engine_checked`] for one server.
async fn engine_of(
    ctx: &Ctx,
    client: &IndexClient,
    shutdown: &CancellationToken,
) -> Result<bool, IndexError> {
    let mut failures = 0;
    loop {
        match client.flavor().await {
            Ok(flavor) => {
                tracing::info!(engine = %flavor, url = %client.public_base(), "index server");
                return Ok(true);
            }
            Err(e @ IndexError::Engine { .. }) => return Err(e),
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, "cannot read the index server's version yet; waiting");
            }
        }
        let pause = crate::retry::pause_for(&ctx.policy, failures);
        if !crate::worker::lease::nap(pause, shutdown).await {
            return Ok(false);
        }
    }
}

/// Runs a worker until SIGTERM or SIGINT.
pub async fn run_until_signalled(settings: Settings) -> Result<(), IndexError> {
    let shutdown = CancellationToken::new();
    tokio::spawn(signals(shutdown.clone()));
    run(settings, shutdown).await
}

/// Cancels `token` on SIGTERM or SIGINT.
async fn signals(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    token.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested: finishing in-flight work");
    token.cancel();
}
