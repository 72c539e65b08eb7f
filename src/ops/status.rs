//! `ferry status`: the state read from the aliases, counts, queue depths and
//! the scan lease holder, in one report.

use super::lifecycle::{progress, Progress};
use super::OpsError;
use crate::index::aliases::{AliasState, Phase};
use crate::queue::Broker;
use crate::stores::control::{LeaseHolder, SCAN_LEASE};
use crate::worker::Ctx;
use serde::Serialize;

/// Queue depths (ready messages).
#[derive(Debug, Clone, Serialize, Default)]
pub struct Depths {
    /// Uploads + edits + deletes.
    pub high: u32,
    /// Migration.
    pub low: u32,
    /// Dead letters.
    pub dead_letters: u32,
}

/// Everything `status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// idle, in_progress, paused, broken.
    pub phase: Phase,
    /// The preview alias is on the migration index.
    pub preview: bool,
    /// Invariant violations, spelled out.
    pub violations: Vec<String>,
    /// The aliases as read.
    pub aliases: AliasState,
    /// Migration counts, when a migration runs.
    pub progress: Option<Progress>,
    /// Queue depths, when the broker answers.
    pub queues: Option<Depths>,
    /// Who scans.
    pub lease: Option<LeaseHolder>,
}

/// Reads the whole status.
pub async fn status(ctx: &Ctx, broker: Option<&Broker>) -> Result<Status, OpsError> {
    ctx.state.invalidate().await;
    let aliases = ctx.index.alias_state(&ctx.aliases).await?;
    let violations = aliases.violations(&ctx.aliases);
    let phase = aliases.phase(&ctx.aliases);
    let progress = match (aliases.current_index(), aliases.migration_index()) {
        (Some(c), Some(m)) if violations.is_empty() => Some(progress(ctx, &c, &m).await?),
        _ => None,
    };
    let queues = match broker {
        Some(b) => Some(Depths {
            high: b.high_depth().await?,
            low: b.depth(&b.names.migration).await?,
            dead_letters: b.depth(&b.names.dead_letters).await?,
        }),
        None => None,
    };
    let lease = ctx.control.holder(SCAN_LEASE).await?;
    Ok(Status {
        phase,
        preview: aliases.is_preview(),
        violations,
        aliases,
        progress,
        queues,
        lease,
    })
}
