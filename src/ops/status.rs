//! `ferry status`: the state read from the aliases, counts, queue depths and
//! the scan lease holder, in one report.

use super::lifecycle::{progress, Progress};
use super::OpsError;
use crate::context::Ctx;
use crate::index::aliases::{AliasState, Phase};
use crate::queue::Broker;
use crate::stores::control::{LeaseHolder, SCAN_LEASE};
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

/// Where readers find Current: what `GET /api/current` serves.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReadFrom {
    /// The cluster's URL, without credentials.
    pub url: String,
    /// The alias to search.
    pub alias: String,
    /// The index behind it now (None while the aliases are broken).
    pub index: Option<String>,
}

/// Where readers find Current in the view `st`: the primary Current's
/// cluster.
pub fn read_from(ctx: &Ctx, st: &AliasState) -> ReadFrom {
    let index = st.current_index();
    ReadFrom {
        url: ctx.on(st.current_cluster()).public_base(),
        alias: ctx.aliases.current.to_string(),
        index: index.map(|i| i.to_string()),
    }
}

/// Reads where readers find Current now.
pub async fn current(ctx: &Ctx) -> Result<ReadFrom, OpsError> {
    Ok(read_from(ctx, &ctx.alias_state().await?))
}

/// Everything `status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// idle, in_progress, paused, broken.
    pub phase: Phase,
    /// The engine and version answering (`OpenSearch 2.19.1`), or why it
    /// is not known or not supported.
    pub engine: String,
    /// The target cluster and its engine, when one is configured.
    pub target: Option<String>,
    /// Where readers find Current.
    pub read_from: ReadFrom,
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
    /// Documents migrated or failed per second over the last minute.
    pub rate_per_second: Option<f64>,
    /// Seconds until nothing is left to go, at that rate.
    pub eta_seconds: Option<u64>,
    /// Why the migration yields to edits, when a worker said so lately
    /// ("edit p99 410 ms is over the 300 ms budget: migration at 40 docs/s").
    pub yielding: Option<String>,
    /// Indices with ferry's prefix that no alias names (`ferry cleanup`).
    pub unaliased: Vec<String>,
}

/// Rate over the last minute from `(ms, done)` samples, oldest first.
pub fn rate(samples: &[(u64, u64)]) -> Option<f64> {
    let (last_t, last_d) = *samples.last()?;
    let (first_t, first_d) = *samples
        .iter()
        .find(|(t, _)| last_t.saturating_sub(*t) <= 60_000)?;
    let secs = (last_t.saturating_sub(first_t)) as f64 / 1000.0;
    (secs >= 1.0).then(|| last_d.saturating_sub(first_d) as f64 / secs)
}

/// A worker's reason for yielding counts this long (workers repeat it every
/// five seconds while it holds).
const YIELD_FRESH: std::time::Duration = std::time::Duration::from_secs(15);

/// Reads the whole status.
pub async fn status(ctx: &Ctx, broker: Option<&Broker>) -> Result<Status, OpsError> {
    ctx.state.invalidate().await;
    let engine = match ctx.index.flavor().await {
        Ok(flavor) => flavor.to_string(),
        Err(e) => e.to_string(),
    };
    let target = match &ctx.target {
        Some(t) => Some(match t.flavor().await {
            Ok(flavor) => format!("{} ({flavor})", t.public_base()),
            Err(e) => format!("{} ({e})", t.public_base()),
        }),
        None => None,
    };
    let aliases = ctx.alias_state().await?;
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
    let rate_per_second = match aliases.migration_index() {
        Some(m) => ctx
            .control
            .samples(m.as_str())
            .await?
            .as_deref()
            .and_then(rate),
        None => None,
    };
    let eta_seconds = match (&progress, rate_per_second) {
        (Some(p), Some(r)) if r > 0.0 => Some((p.to_go as f64 / r).ceil() as u64),
        _ => None,
    };
    let yielding = match aliases.migration_index() {
        Some(_) => ctx.control.yielding(YIELD_FRESH).await?,
        None => None,
    };
    // A hint, not the state: a failed listing must not hide the status.
    let unaliased = match super::cleanup::leftovers(ctx).await {
        Ok(l) => l.into_iter().map(|l| l.index).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "could not list unaliased indices");
            Vec::new()
        }
    };
    Ok(Status {
        engine,
        target,
        read_from: read_from(ctx, &aliases),
        yielding,
        unaliased,
        rate_per_second,
        eta_seconds,
        phase,
        preview: aliases.is_preview(),
        violations,
        aliases,
        progress,
        queues,
        lease,
    })
}

#[cfg(test)]
mod tests {
    use super::rate;

    #[test]
    fn rate_uses_the_last_minute() {
        assert_eq!(rate(&[]), None);
        assert_eq!(rate(&[(0, 0)]), None);
        let r = rate(&[(0, 0), (50_000, 100), (110_000, 700)]).unwrap();
        assert!((r - 10.0).abs() < 1e-9, "{r}");
    }
}
