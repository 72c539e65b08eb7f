//! Queue counts the AMQP protocol does not give: messages ready AND
//! messages delivered but not yet acknowledged, per queue. A passive
//! declare only reports the ready ones, so a queue whose messages sit
//! prefetched in a worker (or in a SIGSTOPped one) looks empty.
//!
//! Read with `rabbitmqctl list_queues` (root on the test machine and in CI),
//! on the node `infra/stack.sh` started (`$FERRY_RABBIT_NODE`, else the node
//! recorded in `~/.cache/ferry/run/rabbitmq.node`, else the default node);
//! if that fails, RabbitMQ's management API on port 15672 (guest/guest),
//! whose numbers lag by its stats interval.
#![allow(dead_code)]

use std::collections::BTreeMap;

/// One queue's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Waiting for a consumer.
    pub ready: u64,
    /// Delivered to a consumer, not acknowledged yet.
    pub unacked: u64,
}

impl Counts {
    /// Nothing ready and nothing in flight.
    pub fn is_empty(&self) -> bool {
        self.ready == 0 && self.unacked == 0
    }
}

fn node() -> Option<String> {
    if let Ok(n) = std::env::var("FERRY_RABBIT_NODE") {
        return Some(n);
    }
    let cache = std::env::var("FERRY_CACHE")
        .unwrap_or_else(|_| format!("{}/.cache/ferry", std::env::var("HOME").unwrap_or_default()));
    std::fs::read_to_string(format!("{cache}/run/rabbitmq.node"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

async fn from_rabbitmqctl() -> Result<BTreeMap<String, Counts>, String> {
    let mut cmd = tokio::process::Command::new("rabbitmqctl");
    if let Some(n) = node() {
        cmd.arg("-n").arg(n);
    }
    cmd.args([
        "list_queues",
        "-q",
        "--no-table-headers",
        "name",
        "messages_ready",
        "messages_unacknowledged",
    ]);
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), cmd.output())
        .await
        .map_err(|_| "rabbitmqctl timed out".to_string())?
        .map_err(|e| format!("cannot run rabbitmqctl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "rabbitmqctl list_queues failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let mut counts = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if let [name, ready, unacked] = f[..] {
            let (Ok(ready), Ok(unacked)) = (ready.trim().parse(), unacked.trim().parse()) else {
                continue;
            };
            counts.insert(name.to_string(), Counts { ready, unacked });
        }
    }
    Ok(counts)
}

async fn from_management_api() -> Result<BTreeMap<String, Counts>, String> {
    let url =
        "http://127.0.0.1:15672/api/queues/%2f?columns=name,messages_ready,messages_unacknowledged";
    let reply: serde_json::Value = reqwest::Client::new()
        .get(url)
        .basic_auth("guest", Some("guest"))
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| format!("management API: {e}"))?
        .error_for_status()
        .map_err(|e| format!("management API: {e}"))?
        .json()
        .await
        .map_err(|e| format!("management API: {e}"))?;
    let mut counts = BTreeMap::new();
    for q in reply.as_array().map(|a| a.as_slice()).unwrap_or(&[]) {
        let n = |k: &str| q.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
        if let Some(name) = q.get("name").and_then(serde_json::Value::as_str) {
            counts.insert(
                name.to_string(),
                Counts {
                    ready: n("messages_ready"),
                    unacked: n("messages_unacknowledged"),
                },
            );
        }
    }
    Ok(counts)
}

/// Ready and unacknowledged counts of every queue on the broker, by name.
pub async fn queue_counts() -> Result<BTreeMap<String, Counts>, String> {
    match from_rabbitmqctl().await {
        Ok(c) => Ok(c),
        Err(ctl) => from_management_api()
            .await
            .map_err(|api| format!("{ctl}; {api}")),
    }
}

/// The counts of `names` (a queue the broker does not list counts as
/// missing: an error, since a test's queues exist while it runs).
pub async fn counts_of(names: &[&str]) -> Result<Vec<(String, Counts)>, String> {
    let all = queue_counts().await?;
    names
        .iter()
        .map(|n| {
            all.get(*n)
                .map(|c| (n.to_string(), *c))
                .ok_or_else(|| format!("queue {n} is not listed by the broker"))
        })
        .collect()
}
