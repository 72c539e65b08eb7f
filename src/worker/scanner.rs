//! The scanner: while this replica holds the lease and a migration is in
//! progress and not paused, read the Current index for documents without
//! an outcome for the target, project them in batches, and publish the
//! projections to the low-priority queue. A pass queues at most
//! `FERRY_MAX_QUEUED` documents, so the projections never run more than
//! about one and a half passes ahead of the processors. Passes overlap:
//! the next one starts once the queue holds at most half a pass, and
//! leaves out what the last few passes queued (still waiting, or being
//! processed, and without an outcome yet), so the processors never wait
//! for a scan and nothing is queued twice.

use super::lease::{nap, LeaseHandle};
use crate::context::Ctx;
use crate::index::records;
use crate::index::IndexError;
use crate::queue::migrate::{publish_projections, PublishError};
use crate::queue::{Broker, QueueError};
use crate::retry::pause_for;
use crate::stores::StoreError;
use crate::types::{DocId, IndexName};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

/// A failed scan pass.
#[derive(Debug, Error)]
pub enum ScanError {
    /// The index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// A store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The broker failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// Projecting or publishing failed.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// The migration state could not be read.
    #[error(transparent)]
    State(#[from] crate::context::state::StateError),
}

/// Passes whose ids are left out of the next one. When the next pass
/// starts, the queue holds at most half a pass, all from the last one or
/// two; a document remembered too briefly is at worst queued twice, and
/// its second message then finds the Current document changed (by the
/// first one's outcome record) and is postponed.
const REMEMBERED_PASSES: usize = 3;

/// What the last passes queued for one target: those documents may lack
/// an outcome only because their messages wait or are being processed.
/// Forgotten when newer passes push them out, and all at once when a pass
/// finds nothing new with the queue empty: a document its processor
/// postponed then comes back in the next pass.
#[derive(Debug, Default)]
pub struct Recent {
    target: Option<IndexName>,
    passes: VecDeque<Vec<DocId>>,
}

impl Recent {
    /// Every remembered id for `target` (none for another target).
    fn ids(&mut self, target: &IndexName) -> Vec<&DocId> {
        if self.target.as_ref() != Some(target) {
            self.target = Some(target.clone());
            self.passes.clear();
        }
        self.passes.iter().flatten().collect()
    }

    /// Starts remembering a new pass.
    fn begin(&mut self) {
        self.passes.push_back(Vec::new());
        while self.passes.len() > REMEMBERED_PASSES {
            self.passes.pop_front();
        }
    }

    /// Remembers ids the current pass has queued.
    fn queued(&mut self, ids: impl IntoIterator<Item = DocId>) {
        if let Some(pass) = self.passes.back_mut() {
            pass.extend(ids);
        }
    }

    /// Ends a pass: one that queued nothing is not remembered (it would
    /// push out a pass whose messages may still wait).
    fn end(&mut self) {
        if self.passes.back().is_some_and(Vec::is_empty) {
            self.passes.pop_back();
        }
    }

    /// Forgets everything.
    fn clear(&mut self) {
        self.passes.clear();
    }
}

/// Scans until shutdown.
pub async fn run(ctx: Arc<Ctx>, lease: LeaseHandle, shutdown: CancellationToken) {
    let mut broker: Option<Broker> = None;
    let mut recent = Recent::default();
    let mut failures = 0;
    while !shutdown.is_cancelled() {
        if !lease.held() {
            // Another replica scans meanwhile: what this one queued says
            // nothing of what waits when it gets the lease back.
            recent = Recent::default();
            if !nap(ctx.settings.lease_ttl / 3, &shutdown).await {
                break;
            }
            continue;
        }
        if broker.as_ref().is_none_or(|b| !b.is_connected()) {
            match Broker::connect(&ctx.settings).await {
                Ok(b) => broker = Some(b),
                Err(e) => {
                    tracing::warn!(error = %e, "scanner cannot reach the broker");
                    failures += 1;
                    nap(pause_for(&ctx.policy, failures), &shutdown).await;
                    continue;
                }
            }
        }
        let Some(b) = broker.as_ref() else { continue };
        match pass(&ctx, b, &lease, &shutdown, &mut recent).await {
            Ok(0) => {
                failures = 0;
                nap(ctx.settings.scan_interval, &shutdown).await;
            }
            Ok(found) => {
                failures = 0;
                tracing::info!(found, "scan pass queued documents");
            }
            Err(e) => {
                tracing::warn!(error = %e, "scan pass failed; retrying");
                failures += 1;
                nap(pause_for(&ctx.policy, failures), &shutdown).await;
            }
        }
    }
    if let Some(b) = broker {
        b.close().await;
    }
}

/// One pass over the Current index; returns how many documents it queued.
/// `recent` carries what earlier passes queued from one pass to the next.
pub async fn pass(
    ctx: &Ctx,
    broker: &Broker,
    lease: &LeaseHandle,
    shutdown: &CancellationToken,
    recent: &mut Recent,
) -> Result<usize, ScanError> {
    let state = ctx
        .state
        .fresh(&ctx.index, &ctx.aliases, &ctx.control)
        .await?;
    let (Some(target), Some(current)) = (state.migration(), state.aliases.current_index()) else {
        return Ok(0);
    };
    if state.aliases.is_paused() {
        return Ok(0);
    }
    // Wait for room: half a pass, or an empty queue when nothing is
    // remembered of what waits in it (this pass would queue it again): a
    // scanner that has just taken the lease knows nothing of what its
    // predecessor queued.
    let limit = (ctx.settings.max_queued as usize).max(1);
    let room = if recent.ids(&target).is_empty() {
        0
    } else {
        limit as u32 / 2
    };
    let Some(depth) = wait_for_room(broker, room, lease, shutdown).await else {
        return Ok(0);
    };
    // One request per pass: the first FERRY_MAX_QUEUED documents without an
    // outcome, ids and version tokens only (memory stays bounded by the
    // queue depth, not the index size). A pass has a single page, so it
    // needs no point in time to keep pages consistent. Outcomes written by
    // the last pass's processors take those documents out of this one;
    // documents added or postponed meanwhile come in a later pass. Not
    // holding a point in time across the migration's writes also spares
    // the cluster from pinning superseded segments of its busiest index
    // (and spares in-memory test servers, which copy the index on every
    // write while one is open).
    let query = records::unmigrated_except(&target, &recent.ids(&target));
    let on = ctx.client_in(&state.aliases, &current);
    let found = on.first(&current, query, limit).await?;
    if found.is_empty() && depth == 0 {
        recent.clear();
        return Ok(0);
    }
    recent.begin();
    let queued = queue(ctx, broker, lease, shutdown, &target, &found, recent).await;
    recent.end();
    queued
}

/// Projects and publishes what a pass found, page by page, remembering
/// what was published; stops if the migration is paused or abandoned.
async fn queue(
    ctx: &Ctx,
    broker: &Broker,
    lease: &LeaseHandle,
    shutdown: &CancellationToken,
    target: &IndexName,
    found: &[crate::index::StoredDoc],
    recent: &mut Recent,
) -> Result<usize, ScanError> {
    let mut queued = 0;
    for page in found.chunks(ctx.settings.scan_page.max(1)) {
        if shutdown.is_cancelled() || !lease.held() {
            break;
        }
        // Paused or abandoned meanwhile: stop queueing.
        let now = ctx
            .state
            .get(&ctx.index, &ctx.aliases, &ctx.control)
            .await?;
        if now.migration().as_ref() != Some(target) || now.aliases.is_paused() {
            break;
        }
        queued += publish_projections(&ctx.stores, broker, target, page).await?;
        recent.queued(page.iter().map(|d| d.id.clone()));
        metrics::counter!("ferry_scanned_total").increment(page.len() as u64);
    }
    Ok(queued)
}

/// Waits until the migration queue holds at most `room` ready messages;
/// their number, or None if the wait was cut short (shutdown, lease lost).
async fn wait_for_room(
    broker: &Broker,
    room: u32,
    lease: &LeaseHandle,
    shutdown: &CancellationToken,
) -> Option<u32> {
    loop {
        match broker.depth(&broker.names.migration).await {
            Ok(depth) if depth <= room => return Some(depth),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the migration queue depth");
                return None;
            }
        }
        if !lease.held() || !nap(Duration::from_millis(200), shutdown).await {
            return None;
        }
    }
}
