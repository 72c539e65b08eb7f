//! The operations record of who did what and when: every state-changing
//! command, from the CLI or the admin API, goes through [`audited`], which
//! records it with its outcome (also when refused or failed) in the control
//! table. `ferry history`, `GET /api/history` and the page read it back;
//! each entry is also notified (`crate::notify`).

use super::OpsError;
use crate::context::Ctx;
use crate::stores::control::{now_ms, AuditEntry, AuditOutcome};
use std::future::Future;

/// Entries shown when no limit is given.
pub const DEFAULT_LIMIT: usize = 20;

/// What an action did, in one line for the record.
pub trait Summary {
    /// One line: what happened.
    fn summary(&self) -> String;
}

/// Runs `work` and records it as `action` by `by` with `detail` (its
/// arguments), whatever the outcome. A failure to write the record is
/// logged, not returned: the action itself already happened.
pub async fn audited<T: Summary>(
    ctx: &Ctx,
    by: &str,
    action: &str,
    detail: String,
    work: impl Future<Output = Result<T, OpsError>>,
) -> Result<T, OpsError> {
    let result = work.await;
    let (outcome, message) = match &result {
        Ok(v) => (AuditOutcome::Done, v.summary()),
        Err(OpsError::Refused(why) | OpsError::Invalid(why)) => {
            (AuditOutcome::Refused, why.clone())
        }
        Err(e) => (AuditOutcome::Failed, e.to_string()),
    };
    let entry = AuditEntry {
        at_ms: now_ms(),
        by: by.to_string(),
        action: action.to_string(),
        detail,
        outcome,
        message,
    };
    if let Err(e) = ctx.control.record_action(&entry).await {
        tracing::warn!(error = %e, action, by, "could not write the operations record");
    }
    tracing::info!(action, by, outcome = ?entry.outcome, "operator action");
    ctx.notify.action(&entry);
    result
}

/// The latest `limit` actions, newest first.
pub async fn history(ctx: &Ctx, limit: usize) -> Result<Vec<AuditEntry>, OpsError> {
    Ok(ctx.control.actions(limit).await?)
}

impl Summary for super::Changed {
    fn summary(&self) -> String {
        self.done.clone()
    }
}

impl Summary for super::throttle::Cap {
    fn summary(&self) -> String {
        format!(
            "cap {}, edit latency budget {}",
            self.max_docs_per_second
                .map_or("none".to_string(), |c| format!("{c} docs/s")),
            self.edit_latency_budget
        )
    }
}

impl Summary for super::failures::Retried {
    fn summary(&self) -> String {
        format!(
            "cleared {} failure record(s), queued {}",
            self.cleared, self.queued
        )
    }
}

impl Summary for super::queue::Queued {
    fn summary(&self) -> String {
        format!(
            "queued {} for {} ({} not found)",
            self.queued,
            self.target,
            self.not_found.len()
        )
    }
}

impl Summary for super::queue::QueuedByQuery {
    fn summary(&self) -> String {
        format!(
            "{} matched, {} queued for {}",
            self.matched, self.queued, self.target
        )
    }
}
