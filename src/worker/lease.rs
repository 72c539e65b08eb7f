//! Keeping the scan lease: exactly one replica scans at a time. The keeper
//! renews at a third of the lease time; the scanner checks `held()` between
//! pages, so a replica that stops renewing stops scanning before its lease
//! can be taken.

use crate::context::Ctx;
use crate::stores::control::SCAN_LEASE;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How often, at most, the lease holder samples progress for `status`'s
/// rate and ETA. Counting is a search on the busiest index (on some servers
/// a pass over every document under write load), so not at every renewal,
/// and never more than a tenth of the time: a slow count widens the gap.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// Whether this replica holds the scan lease, shared with the scanner.
#[derive(Debug, Clone)]
pub struct LeaseHandle {
    /// This replica's identity.
    pub owner: String,
    valid_until: Arc<Mutex<Option<Instant>>>,
}

impl LeaseHandle {
    /// A handle for `owner`, not holding the lease.
    pub fn new(owner: String) -> Self {
        Self {
            owner,
            valid_until: Arc::new(Mutex::new(None)),
        }
    }

    /// A handle that holds the lease until `until` without asking the
    /// table: for a scan pass run outside a worker (tests, one-off tools).
    pub fn assumed(owner: String, until: Instant) -> Self {
        let handle = Self::new(owner);
        handle.set(Some(until));
        handle
    }

    /// True while the lease is ours and not about to expire.
    pub fn held(&self) -> bool {
        self.valid_until
            .lock()
            .map(|v| v.is_some_and(|t| Instant::now() < t))
            .unwrap_or(false)
    }

    fn set(&self, until: Option<Instant>) {
        if let Ok(mut v) = self.valid_until.lock() {
            *v = until;
        }
    }
}

/// A unique identity for this process.
pub fn owner_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into());
    format!(
        "{host}-{}-{}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// Takes and renews the lease until shutdown, then releases it.
pub async fn keep(ctx: Arc<Ctx>, lease: LeaseHandle, shutdown: CancellationToken) {
    let ttl = ctx.settings.lease_ttl;
    // Stop trusting the lease a little before it expires on the server.
    let margin = ttl / 5;
    let mut was_held = false;
    let mut sampler: Option<tokio::task::JoinHandle<()>> = None;
    let mut sampled_at: Option<Instant> = None;
    let took = Arc::new(Mutex::new(Duration::ZERO));
    loop {
        let asked = Instant::now();
        match ctx.control.acquire(SCAN_LEASE, &lease.owner, ttl).await {
            Ok(true) => {
                lease.set(Some(asked + ttl - margin));
                // Beside the renewal, one at a time: a slow index or table
                // must not delay the next renewal, or the lease lapses.
                let gap = took.lock().map(|t| *t * 10).unwrap_or_default();
                let due = sampled_at.is_none_or(|t| t.elapsed() >= gap.max(SAMPLE_EVERY));
                if due && sampler.as_ref().is_none_or(|s| s.is_finished()) {
                    sampled_at = Some(Instant::now());
                    let (ctx, took) = (ctx.clone(), took.clone());
                    sampler = Some(tokio::spawn(async move {
                        let clock = Instant::now();
                        record_progress(&ctx).await;
                        if let Ok(mut t) = took.lock() {
                            *t = clock.elapsed();
                        }
                    }));
                }
                if !was_held {
                    tracing::info!(owner = %lease.owner, "took the scan lease");
                }
                was_held = true;
            }
            Ok(false) => {
                lease.set(None);
                if was_held {
                    tracing::warn!(owner = %lease.owner, "lost the scan lease");
                }
                was_held = false;
            }
            Err(e) => {
                lease.set(None);
                was_held = false;
                tracing::warn!(error = %e, "cannot reach the lease table; not scanning");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(ttl / 3) => {}
        }
    }
    lease.set(None);
    if was_held {
        if let Err(e) = ctx.control.release(SCAN_LEASE, &lease.owner).await {
            tracing::warn!(error = %e, "could not release the scan lease; it expires by itself");
        }
    }
}

/// The lease holder samples the migration's progress, so that `status`
/// can show a rate and an ETA from any replica or the CLI.
async fn record_progress(ctx: &Ctx) {
    let Ok(state) = ctx.state.get(&ctx.index, &ctx.aliases, &ctx.control).await else {
        return;
    };
    let (Some(current), Some(target)) = (state.aliases.current_index(), state.migration()) else {
        return;
    };
    let done = async {
        let migrated = ctx
            .index
            .count(&current, crate::index::records::migrated(&target))
            .await?;
        let failed = ctx
            .index
            .count(&current, crate::index::records::failed(&target))
            .await?;
        metrics::gauge!("ferry_migration_documents", "outcome" => "migrated").set(migrated as f64);
        metrics::gauge!("ferry_migration_documents", "outcome" => "failed").set(failed as f64);
        Ok::<u64, crate::index::IndexError>(migrated + failed)
    };
    match done.await {
        Ok(done) => {
            if let Err(e) = ctx.control.add_sample(target.as_str(), done).await {
                tracing::debug!(error = %e, "cannot record a progress sample");
            }
        }
        Err(e) => tracing::debug!(error = %e, "cannot count progress"),
    }
}

/// Sleeps for `d` unless shutdown comes first; returns false on shutdown.
pub async fn nap(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}
