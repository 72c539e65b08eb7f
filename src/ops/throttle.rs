//! `ferry throttle`: the cluster-wide cap on migration speed, changeable at
//! run time (edits are never throttled).

use super::OpsError;
use crate::context::Ctx;
use serde::Serialize;

/// The cap as stored, after a change.
#[derive(Debug, Clone, Serialize)]
pub struct Cap {
    /// Documents per second for the whole cluster (None: no cap).
    pub max_docs_per_second: Option<u64>,
    /// What to expect.
    pub next: String,
}

/// Reads the cap.
pub async fn get(ctx: &Ctx) -> Result<Cap, OpsError> {
    let cap = ctx.control.cap().await?;
    Ok(Cap {
        max_docs_per_second: cap,
        next: "workers apply changes within 5 seconds".into(),
    })
}

/// Sets the cap (`None` or 0 removes it).
pub async fn set(ctx: &Ctx, docs_per_second: Option<u64>) -> Result<Cap, OpsError> {
    let cap = docs_per_second.filter(|c| *c > 0);
    ctx.control.set_cap(cap).await?;
    tracing::info!(cap = ?cap, "migration cap changed");
    Ok(Cap {
        max_docs_per_second: cap,
        next: "workers apply the change within 5 seconds, sharing the cap evenly".into(),
    })
}
