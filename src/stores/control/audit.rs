//! The operations record: one control-table item per state-changing action
//! (who, when, what, the outcome), kept beside the other control data so
//! that every replica and the CLI read the same history.

use super::{number, text, Control};
use crate::stores::aws::{sdk_error, StoreError};
use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

/// Item names of the record start with this, after the scope.
const PREFIX: &str = "audit/";

/// How an action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    /// It did what was asked.
    Done,
    /// It was refused, or its input was invalid; nothing changed.
    Refused,
    /// It failed (a store, the index, the broker); it may have done part.
    Failed,
}

impl AuditOutcome {
    fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Done => "done",
            AuditOutcome::Refused => "refused",
            AuditOutcome::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "done" => AuditOutcome::Done,
            "refused" => AuditOutcome::Refused,
            _ => AuditOutcome::Failed,
        }
    }
}

/// One action in the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When it ended, milliseconds since the epoch.
    pub at_ms: u64,
    /// Who: the CLI's user or `--by`, the API caller's `by`.
    pub by: String,
    /// What: the command (`start`, `complete`, `throttle`...).
    pub action: String,
    /// Its arguments, as given.
    pub detail: String,
    /// How it ended.
    pub outcome: AuditOutcome,
    /// What it did, or why it was refused or failed.
    pub message: String,
}

impl Control {
    /// Appends `e` to the operations record.
    pub async fn record_action(&self, e: &AuditEntry) -> Result<(), StoreError> {
        // Time first, so names sort by time; the random tail keeps two
        // actions in the same millisecond apart.
        let name = format!("{PREFIX}{:013}-{:08x}", e.at_ms, rand::random::<u32>());
        self.client
            .put_item()
            .table_name(&self.table)
            .item("name", self.key(&name))
            .item("at", AttributeValue::N(e.at_ms.to_string()))
            .item("by", AttributeValue::S(e.by.clone()))
            .item("action", AttributeValue::S(e.action.clone()))
            .item("detail", AttributeValue::S(e.detail.clone()))
            .item("outcome", AttributeValue::S(e.outcome.as_str().into()))
            .item("message", AttributeValue::S(e.message.clone()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_error("DynamoDB PutItem (operations record)", e))
    }

    /// The latest `limit` actions, newest first. A scan of the control
    /// table, which holds a few items per deployment besides the record.
    pub async fn actions(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let prefix = format!("{}/{PREFIX}", self.scope);
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("begins_with(#n, :p)")
                .expression_attribute_names("#n", "name")
                .expression_attribute_values(":p", AttributeValue::S(prefix.clone()))
                .set_exclusive_start_key(start)
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| sdk_error("DynamoDB Scan (operations record)", e))?;
            for item in page.items() {
                let name = text(item, "name").unwrap_or_default();
                out.push((
                    name,
                    AuditEntry {
                        at_ms: number(item, "at").unwrap_or(0),
                        by: text(item, "by").unwrap_or_default(),
                        action: text(item, "action").unwrap_or_default(),
                        detail: text(item, "detail").unwrap_or_default(),
                        outcome: AuditOutcome::parse(&text(item, "outcome").unwrap_or_default()),
                        message: text(item, "message").unwrap_or_default(),
                    },
                ));
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        out.sort_by(|a, b| b.0.cmp(&a.0));
        Ok(out.into_iter().take(limit).map(|(_, e)| e).collect())
    }
}
