//! `ferry throttle`: the migration's limits, changeable at run time (edits
//! are never throttled): a cluster-wide cap on its speed, and the edit
//! latency budget it yields to.

use super::OpsError;
use crate::config::LatencyBudget;
use crate::context::Ctx;
use serde::Serialize;

/// The limits in force, after a change.
#[derive(Debug, Clone, Serialize)]
pub struct Cap {
    /// Documents per second for the whole cluster (None: no cap).
    pub max_docs_per_second: Option<u64>,
    /// The edit latency budget in force (`300ms`, or `off`).
    pub edit_latency_budget: String,
    /// Whether an operator set the budget at run time (else each worker's
    /// `FERRY_EDIT_LATENCY_BUDGET`).
    pub budget_set_at_run_time: bool,
    /// What to expect.
    pub next: String,
}

async fn report(ctx: &Ctx, next: &str) -> Result<Cap, OpsError> {
    let (b, set) = ctx.budget_in_force().await?;
    Ok(Cap {
        max_docs_per_second: ctx.control.cap().await?,
        edit_latency_budget: b.to_string(),
        budget_set_at_run_time: set,
        next: next.into(),
    })
}

/// Reads the limits.
pub async fn get(ctx: &Ctx) -> Result<Cap, OpsError> {
    report(ctx, "workers apply changes within 5 seconds").await
}

/// Sets the cap (`None` or 0 removes it).
pub async fn set(ctx: &Ctx, docs_per_second: Option<u64>) -> Result<Cap, OpsError> {
    let cap = docs_per_second.filter(|c| *c > 0);
    ctx.control.set_cap(cap).await?;
    tracing::info!(cap = ?cap, "migration cap changed");
    report(
        ctx,
        "workers apply the change within 5 seconds, sharing the cap evenly",
    )
    .await
}

/// Sets the edit latency budget for every worker (`off` turns it off).
pub async fn set_budget(ctx: &Ctx, budget: LatencyBudget) -> Result<Cap, OpsError> {
    let ms = budget.0.map_or(0, |d| (d.as_millis() as u64).max(1));
    ctx.control.set_budget(Some(ms)).await?;
    tracing::info!(%budget, "edit latency budget changed");
    report(
        ctx,
        "workers apply the change within 5 seconds; each keeps its own edits within it",
    )
    .await
}
