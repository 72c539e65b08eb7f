//! The control table in DynamoDB: the scan lease (one scanner across all
//! replicas), the record of the last completion (for the rollback window),
//! progress samples, and the operator's pace settings (cap, edit latency
//! budget) with the workers' latest reason for yielding, the latest search
//! comparison, and the operations record ([`audit`]).

mod audit;

pub use audit::{AuditEntry, AuditOutcome};

use super::aws::{sdk_error, StoreError};
use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Name of the scan lease item.
pub const SCAN_LEASE: &str = "scan-lease";
/// Name of the completion item.
pub const COMPLETION: &str = "completion";
/// Name of the throttle item (the operator's cap).
pub const THROTTLE: &str = "throttle";
/// Name of the run-time edit latency budget item.
pub const BUDGET: &str = "budget";
/// Name of the item saying why the migration last yielded to edits.
pub const YIELDING: &str = "yielding";
/// Name of the progress item (samples for rate and ETA).
pub const PROGRESS: &str = "progress";
/// Name of the latest search comparison item (`ferry compare`).
pub const COMPARISON: &str = "comparison";
/// How far back progress samples are kept.
const SAMPLE_WINDOW_MS: u64 = 120_000;

/// Who holds a lease, and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaseHolder {
    /// Owner identity (`host-pid-random`).
    pub owner: String,
    /// Expiry, milliseconds since the epoch.
    pub expires_at_ms: u64,
}

/// The last completion: which index replaced which, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Completion {
    /// The index that was Current before.
    pub from: String,
    /// The index that became Current.
    pub to: String,
    /// When, milliseconds since the epoch.
    pub at_ms: u64,
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The control table.
#[derive(Clone, Debug)]
pub struct Control {
    client: aws_sdk_dynamodb::Client,
    table: String,
    /// Keys are namespaced by this (the queue prefix), so that several
    /// deployments or tests can share a table.
    scope: String,
}

impl Control {
    /// The control table `table`, items scoped by `scope`.
    pub fn new(sdk: &aws_config::SdkConfig, table: &str, scope: &str) -> Self {
        Self {
            client: aws_sdk_dynamodb::Client::new(sdk),
            table: table.to_string(),
            scope: scope.to_string(),
        }
    }

    fn key(&self, name: &str) -> AttributeValue {
        AttributeValue::S(format!("{}/{name}", self.scope))
    }

    /// Takes or renews the lease `name` for `owner` if it is free, expired,
    /// or already ours. Returns whether we hold it now.
    pub async fn acquire(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("name", self.key(name))
            .item("owner", AttributeValue::S(owner.to_string()))
            .item(
                "expires_at",
                AttributeValue::N((now + ttl.as_millis() as u64).to_string()),
            )
            .condition_expression("attribute_not_exists(#n) OR #o = :me OR expires_at < :now")
            .expression_attribute_names("#n", "name")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":me", AttributeValue::S(owner.to_string()))
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(sdk_error("DynamoDB PutItem (lease)", e)),
        }
    }

    /// Gives the lease up if we hold it, so another replica takes over at once.
    pub async fn release(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("name", self.key(name))
            .condition_expression("#o = :me")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":me", AttributeValue::S(owner.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(sdk_error("DynamoDB DeleteItem (lease)", e)),
        }
    }

    /// The current holder of a lease, if it has not expired.
    pub async fn holder(&self, name: &str) -> Result<Option<LeaseHolder>, StoreError> {
        let Some(item) = self.get(name).await? else {
            return Ok(None);
        };
        let holder = LeaseHolder {
            owner: text(&item, "owner").unwrap_or_default(),
            expires_at_ms: number(&item, "expires_at").unwrap_or(0),
        };
        Ok((holder.expires_at_ms > now_ms()).then_some(holder))
    }

    /// Records a completion.
    pub async fn record_completion(&self, c: &Completion) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("name", self.key(COMPLETION))
            .item("from", AttributeValue::S(c.from.clone()))
            .item("to", AttributeValue::S(c.to.clone()))
            .item("at", AttributeValue::N(c.at_ms.to_string()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_error("DynamoDB PutItem (completion)", e))
    }

    /// Forgets the completion (after a rollback).
    pub async fn clear_completion(&self) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("name", self.key(COMPLETION))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_error("DynamoDB DeleteItem (completion)", e))
    }

    /// The last completion, if any.
    pub async fn completion(&self) -> Result<Option<Completion>, StoreError> {
        let Some(item) = self.get(COMPLETION).await? else {
            return Ok(None);
        };
        Ok(Some(Completion {
            from: text(&item, "from").unwrap_or_default(),
            to: text(&item, "to").unwrap_or_default(),
            at_ms: number(&item, "at").unwrap_or(0),
        }))
    }

    /// Appends a progress sample `(now, done)` for `target`, keeping the
    /// last two minutes; samples of another target are dropped.
    pub async fn add_sample(&self, target: &str, done: u64) -> Result<(), StoreError> {
        let now = now_ms();
        let mut samples = self.samples(target).await?.unwrap_or_default();
        samples.retain(|(t, _)| now.saturating_sub(*t) <= SAMPLE_WINDOW_MS);
        samples.push((now, done));
        let list = samples
            .iter()
            .map(|(t, d)| {
                AttributeValue::L(vec![
                    AttributeValue::N(t.to_string()),
                    AttributeValue::N(d.to_string()),
                ])
            })
            .collect();
        self.client
            .put_item()
            .table_name(&self.table)
            .item("name", self.key(PROGRESS))
            .item("target", AttributeValue::S(target.to_string()))
            .item("samples", AttributeValue::L(list))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_error("DynamoDB PutItem (progress)", e))
    }

    /// The progress samples `(ms, done)` recorded for `target`, oldest first.
    pub async fn samples(&self, target: &str) -> Result<Option<Vec<(u64, u64)>>, StoreError> {
        let Some(item) = self.get(PROGRESS).await? else {
            return Ok(None);
        };
        if text(&item, "target").as_deref() != Some(target) {
            return Ok(None);
        }
        let list = item
            .get("samples")
            .and_then(|v| v.as_l().ok())
            .cloned()
            .unwrap_or_default();
        Ok(Some(
            list.iter()
                .filter_map(|p| {
                    let pair = p.as_l().ok()?;
                    let n = |i: usize| {
                        pair.get(i)
                            .and_then(|v| v.as_n().ok())
                            .and_then(|n| n.parse::<u64>().ok())
                    };
                    Some((n(0)?, n(1)?))
                })
                .collect(),
        ))
    }

    /// Sets (or with `None` removes) the cluster-wide migration cap.
    pub async fn set_cap(&self, docs_per_second: Option<u64>) -> Result<(), StoreError> {
        self.put_number(THROTTLE, "cap", docs_per_second).await
    }

    /// The cluster-wide migration cap, if an operator set one.
    pub async fn cap(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.get(THROTTLE).await?.and_then(|i| number(&i, "cap")))
    }

    /// Sets the run-time edit latency budget in milliseconds (0: off), or
    /// with `None` goes back to each worker's `FERRY_EDIT_LATENCY_BUDGET`.
    pub async fn set_budget(&self, ms: Option<u64>) -> Result<(), StoreError> {
        self.put_number(BUDGET, "ms", ms).await
    }

    /// The run-time edit latency budget in milliseconds (0: off), if an
    /// operator set one.
    pub async fn budget(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.get(BUDGET).await?.and_then(|i| number(&i, "ms")))
    }

    /// Records why a worker's migration yields to edits, now.
    pub async fn report_yielding(&self, why: &str) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("name", self.key(YIELDING))
            .item("why", AttributeValue::S(why.to_string()))
            .item("at", AttributeValue::N(now_ms().to_string()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_error("DynamoDB PutItem (yielding)", e))
    }

    /// The latest reason a worker gave for yielding, if given within `fresh`.
    pub async fn yielding(&self, fresh: Duration) -> Result<Option<String>, StoreError> {
        let Some(item) = self.get(YIELDING).await? else {
            return Ok(None);
        };
        let at = number(&item, "at").unwrap_or(0);
        let recent = now_ms().saturating_sub(at) <= fresh.as_millis() as u64;
        Ok(text(&item, "why").filter(|_| recent))
    }

    /// Keeps the latest search comparison (its JSON report), for every
    /// replica's page and API.
    pub async fn set_comparison(&self, report: &str) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("name", self.key(COMPARISON))
            .item("report", AttributeValue::S(report.to_string()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_error("DynamoDB PutItem (comparison)", e))
    }

    /// The latest search comparison's JSON report, if one ran.
    pub async fn comparison(&self) -> Result<Option<String>, StoreError> {
        Ok(self.get(COMPARISON).await?.and_then(|i| text(&i, "report")))
    }

    /// Puts `{attr: value}` under `name`, or deletes the item for `None`.
    async fn put_number(
        &self,
        name: &str,
        attr: &str,
        value: Option<u64>,
    ) -> Result<(), StoreError> {
        match value {
            Some(v) => self
                .client
                .put_item()
                .table_name(&self.table)
                .item("name", self.key(name))
                .item(attr, AttributeValue::N(v.to_string()))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| sdk_error("DynamoDB PutItem (control)", e)),
            None => self
                .client
                .delete_item()
                .table_name(&self.table)
                .key("name", self.key(name))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| sdk_error("DynamoDB DeleteItem (control)", e)),
        }
    }

    async fn get(&self, name: &str) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
        self.client
            .get_item()
            .table_name(&self.table)
            .key("name", self.key(name))
            .consistent_read(true)
            .send()
            .await
            .map(|o| o.item)
            .map_err(|e| sdk_error("DynamoDB GetItem (control)", e))
    }
}

fn text(item: &HashMap<String, AttributeValue>, k: &str) -> Option<String> {
    item.get(k).and_then(|v| v.as_s().ok()).cloned()
}

fn number(item: &HashMap<String, AttributeValue>, k: &str) -> Option<u64> {
    item.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
}
