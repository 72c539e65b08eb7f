//! `ferry cleanup`: indices with ferry's prefix that no alias names
//! (abandoned targets, old indices past the rollback window, kept trial
//! indices) pile up and count against a cluster's shard limit. Listed with
//! their sizes on both clusters; deleted only when asked, and never while
//! any alias names them or while they are younger than a minimum age (a
//! concurrent `start` creates its index one request before it aliases it).

use super::OpsError;
use crate::context::Ctx;
use crate::index::client::segment;
use crate::index::{Cluster, IndexClient};
use crate::stores::control::now_ms;
use crate::types::IndexName;
use reqwest::Method;
use serde::Serialize;
use serde_json::Value;
use std::time::Duration;

/// Indices younger than this are left alone unless told otherwise.
pub const DEFAULT_MIN_AGE: Duration = Duration::from_secs(3600);

/// An index with ferry's prefix that no alias names.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Leftover {
    /// Its name.
    pub index: String,
    /// The cluster it lives on (URL without credentials).
    pub cluster: String,
    /// Documents in it.
    pub docs: u64,
    /// Bytes on disk (primaries and replicas).
    pub bytes: u64,
    /// When it was created, milliseconds since the epoch.
    pub created_ms: u64,
}

/// What `cleanup` found and did.
#[derive(Debug, Clone, Serialize)]
pub struct Cleanup {
    /// Every unaliased index with ferry's prefix, on either cluster.
    pub found: Vec<Leftover>,
    /// Indices deleted (with `--yes`).
    pub deleted: Vec<String>,
    /// Indices left alone: younger than the minimum age, or aliased by now.
    pub kept: Vec<String>,
}

/// Every index named `<prefix>_*` on either cluster that no alias names.
pub async fn leftovers(ctx: &Ctx) -> Result<Vec<Leftover>, OpsError> {
    let mut out = Vec::new();
    for cluster in clusters(ctx) {
        out.extend(on_cluster(ctx, ctx.on(cluster)).await?);
    }
    out.sort_by_key(|l| l.created_ms);
    Ok(out)
}

/// Lists the leftovers and, with `delete`, deletes those at least
/// `min_age` old that still carry no alias.
pub async fn cleanup(ctx: &Ctx, delete: bool, min_age: Duration) -> Result<Cleanup, OpsError> {
    let found = leftovers(ctx).await?;
    let (mut deleted, mut kept) = (Vec::new(), Vec::new());
    if delete {
        let oldest_allowed = now_ms().saturating_sub(min_age.as_millis() as u64);
        for l in &found {
            let on = clusters(ctx)
                .into_iter()
                .map(|c| ctx.on(c))
                .find(|c| c.public_base() == l.cluster)
                .unwrap_or(&ctx.index);
            let index = IndexName::parse(l.index.clone())?;
            // Read again just before: an alias added since the listing wins.
            if l.created_ms > oldest_allowed || !aliases_of(on, &l.index).await?.is_empty() {
                kept.push(l.index.clone());
                continue;
            }
            match on.delete_index(&index).await {
                Ok(()) => deleted.push(l.index.clone()),
                Err(e) if e.is_missing_index() => {}
                Err(e) => return Err(e.into()),
            }
            tracing::warn!(index = %l.index, cluster = %l.cluster, "unaliased index deleted");
        }
    }
    Ok(Cleanup {
        found,
        deleted,
        kept,
    })
}

fn clusters(ctx: &Ctx) -> Vec<Cluster> {
    match ctx.target {
        Some(_) => vec![Cluster::Source, Cluster::Target],
        None => vec![Cluster::Source],
    }
}

fn pattern(ctx: &Ctx) -> String {
    format!("{}_*", segment(&ctx.settings.index_prefix.to_lowercase()))
}

async fn on_cluster(ctx: &Ctx, on: &IndexClient) -> Result<Vec<Leftover>, OpsError> {
    let pattern = pattern(ctx);
    let aliases = on
        .call(Method::GET, &format!("/{pattern}/_alias"), None)
        .await?;
    let listed = on
        .call(
            Method::GET,
            &format!(
                "/_cat/indices/{pattern}?format=json&bytes=b&h=index,docs.count,store.size,creation.date"
            ),
            None,
        )
        .await?;
    let number = |row: &Value, k: &str| {
        row.get(k)
            .and_then(|v| v.as_str().and_then(|s| s.parse().ok()).or(v.as_u64()))
            .unwrap_or(0)
    };
    Ok(listed
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|row| {
                    let index = row.get("index")?.as_str()?.to_string();
                    let named = aliases
                        .pointer(&format!("/{index}/aliases"))
                        .and_then(Value::as_object)
                        .is_some_and(|a| !a.is_empty());
                    (!named).then(|| Leftover {
                        cluster: on.public_base(),
                        docs: number(row, "docs.count"),
                        bytes: number(row, "store.size"),
                        created_ms: number(row, "creation.date"),
                        index,
                    })
                })
                .collect()
        })
        .unwrap_or_default())
}

/// The aliases `index` carries now.
async fn aliases_of(on: &IndexClient, index: &str) -> Result<Vec<String>, OpsError> {
    let reply = match on
        .call(Method::GET, &format!("/{}/_alias", segment(index)), None)
        .await
    {
        Ok(r) => r,
        Err(e) if e.is_missing_index() => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    Ok(reply
        .pointer(&format!("/{index}/aliases"))
        .and_then(Value::as_object)
        .map(|a| a.keys().cloned().collect())
        .unwrap_or_default())
}

impl super::audit::Summary for Cleanup {
    fn summary(&self) -> String {
        format!(
            "{} unaliased index(es) found, {} deleted, {} kept",
            self.found.len(),
            self.deleted.len(),
            self.kept.len()
        )
    }
}
