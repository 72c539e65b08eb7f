//! `ferry queue`: queue documents for migration by hand (also while paused).

use super::healthy_state;
use super::OpsError;
use crate::context::Ctx;
use crate::queue::migrate::publish_projections;
use crate::queue::Broker;
use crate::types::DocId;
use serde::Serialize;

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
    let target = st.migration_index().ok_or_else(|| {
        OpsError::Refused("no migration is in progress; start one with `ferry start`".into())
    })?;
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
