//! `ferry queue`: queue documents for migration by hand, by id or by query
//! (also while paused).

use super::failures::reset_and_queue;
use super::healthy_state;
use super::OpsError;
use crate::context::Ctx;
use crate::index::scan::ScanRequest;
use crate::index::{records, AliasState};
use crate::queue::migrate::publish_projections;
use crate::queue::Broker;
use crate::types::{DocId, IndexName};
use futures::TryStreamExt;
use serde::Serialize;
use serde_json::Value;

/// What `queue` did.
#[derive(Debug, Clone, Serialize)]
pub struct Queued {
    /// Projections published.
    pub queued: usize,
    /// Ids not found in the Current index.
    pub not_found: Vec<DocId>,
    /// The migration target.
    pub target: String,
}

/// Projects the given documents and publishes them to the migration queue.
pub async fn queue(ctx: &Ctx, broker: &Broker, ids: &[DocId]) -> Result<Queued, OpsError> {
    let st = healthy_state(ctx).await?;
    let target = migration_of(&st)?;
    let mut queued = 0;
    let mut not_found = Vec::new();
    for chunk in ids.chunks(ctx.settings.scan_page.max(1)) {
        let docs = ctx.index.mget(&ctx.aliases.current, chunk).await?;
        not_found.extend(
            chunk
                .iter()
                .filter(|id| !docs.iter().any(|d| &d.id == *id))
                .cloned(),
        );
        queued += publish_projections(&ctx.stores, broker, &target, &docs).await?;
    }
    Ok(Queued {
        queued,
        not_found,
        target: target.to_string(),
    })
}

/// What `queue --query` did.
#[derive(Debug, Clone, Serialize)]
pub struct QueuedByQuery {
    /// Current documents the query selected.
    pub matched: u64,
    /// Outcome records cleared.
    pub cleared: usize,
    /// Projections published.
    pub queued: usize,
    /// The migration target.
    pub target: String,
}

/// Re-migrates every Current document `query` selects: streams the
/// selection a page at a time (memory stays one page), clears their
/// outcome records for the running migration, and publishes their
/// projections. `progress` gets (done, matched) after each page.
pub async fn queue_matching(
    ctx: &Ctx,
    broker: &Broker,
    query: Value,
    progress: &mut (dyn FnMut(usize, u64) + Send),
) -> Result<QueuedByQuery, OpsError> {
    let st = healthy_state(ctx).await?;
    let target = migration_of(&st)?;
    let current = st
        .current_index()
        .ok_or_else(|| OpsError::Refused("no Current index".into()))?;
    let on = ctx.client_in(&st, &current);
    on.refresh(&current).await?;
    let matched = on.count(&current, query.clone()).await?;
    let request = ScanRequest {
        query,
        page_size: ctx.settings.scan_page.max(1),
        source: Value::Bool(false),
    };
    let mut pages = std::pin::pin!(on.scan(&current, request));
    let (mut done, mut cleared, mut queued) = (0, 0, 0);
    while let Some(page) = pages.try_next().await? {
        let ids: Vec<DocId> = page.into_iter().map(|d| d.id).collect();
        let partial = records::reset(&target);
        let at = (&current, &target);
        let (c, q) = reset_and_queue(ctx, on, broker, at, &ids, partial).await?;
        cleared += c;
        queued += q;
        done += ids.len();
        progress(done, matched);
    }
    Ok(QueuedByQuery {
        matched,
        cleared,
        queued,
        target: target.to_string(),
    })
}

fn migration_of(st: &AliasState) -> Result<IndexName, OpsError> {
    st.migration_index().ok_or_else(|| {
        OpsError::Refused("no migration is in progress; start one with `ferry start`".into())
    })
}
