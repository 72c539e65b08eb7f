//! R, the copy ceiling: the index server copies the seeded index into a
//! fresh one by itself (`POST _reindex`), which no client-side migration
//! can beat. Across clusters the fresh index is on the target, which copies
//! from the source with `_reindex` from remote, or, when it cannot reach
//! the source, a bare client does the copy ([`super::across`], which uses
//! this file's copies). Also the
//! untimed copies that give each M run its own Current index, and the ids
//! of the documents every measurement uses.

use super::throughput::Throughput;
use super::{long_client, run_cleaned};
use crate::context::Ctx;
use crate::index::client::Body;
use crate::index::read_mapping;
use crate::index::scan::ScanRequest;
use crate::index::{Cluster, IndexClient, IndexError};
use crate::ops::OpsError;
use crate::types::{DocId, IndexName};
use futures::TryStreamExt;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::time::Instant;

/// Which copy R timed, and so which ceiling it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RKind {
    /// The index server's own `_reindex` (one cluster; reports saved
    /// before R had kinds).
    #[default]
    Reindex,
    /// The target cluster's `_reindex` from the source (`source.remote`).
    RemoteReindex,
    /// A bare client scanning the source and bulk-writing the target, when
    /// the target's `_reindex` cannot reach the source.
    BulkAcross,
}

impl RKind {
    /// The report's row name for R of this kind.
    pub fn row(self) -> &'static str {
        match self {
            RKind::Reindex => "R  server's own _reindex (copy ceiling)",
            RKind::RemoteReindex => "R  _reindex from remote (copy ceiling)",
            RKind::BulkAcross => "R  bare bulk across clusters (copy ceiling)",
        }
    }
}

impl std::fmt::Display for RKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RKind::Reindex => "the server's own _reindex",
            RKind::RemoteReindex => "the target's _reindex from the source",
            RKind::BulkAcross => "a bare client's bulk copy across clusters",
        })
    }
}

/// The R tried first on `ctx`'s clusters.
pub fn kind(ctx: &Ctx) -> RKind {
    match ctx.target {
        Some(_) => RKind::RemoteReindex,
        None => RKind::Reindex,
    }
}

/// Copies `from` into the existing index `to` on the server; returns the
/// number of documents created. `max_docs` copies only that many;
/// `external` keeps the source's versions (as a legacy index has them).
pub async fn copy(
    client: &IndexClient,
    from: &IndexName,
    to: &IndexName,
    max_docs: Option<usize>,
    external: bool,
) -> Result<u64, OpsError> {
    reindex_from(client, json!({ "index": from }), to, max_docs, external).await
}

/// `POST _reindex` from `source` (the request's `source` object: an index
/// on this server, or on a remote one) into the existing index `to`.
pub(super) async fn reindex_from(
    client: &IndexClient,
    source: Value,
    to: &IndexName,
    max_docs: Option<usize>,
    external: bool,
) -> Result<u64, OpsError> {
    let mut body = json!({
        "source": source,
        "dest": { "index": to },
    });
    if let Some(n) = max_docs {
        body["max_docs"] = json!(n);
    }
    if external {
        body["dest"]["version_type"] = json!("external");
    }
    let reply = client
        .call(
            Method::POST,
            "/_reindex?wait_for_completion=true",
            Some(Body::Json(body)),
        )
        .await?;
    let failures = reply.get("failures").and_then(Value::as_array);
    if let Some(f) = failures.filter(|f| !f.is_empty()) {
        return Err(IndexError::Decode {
            op: "POST _reindex".into(),
            detail: format!("{} documents failed, first: {}", f.len(), f[0]),
        }
        .into());
    }
    Ok(reply.get("created").and_then(Value::as_u64).unwrap_or(0))
}

/// R on one cluster: `_reindex` of the seeded index (or its first
/// `max_docs` documents) into a fresh index created from the mapping,
/// timed, then deleted. Across clusters see [`super::across::measure`].
pub async fn measure(
    ctx: &Ctx,
    source: &IndexName,
    max_docs: Option<usize>,
) -> Result<(RKind, Throughput), OpsError> {
    let fresh = fresh_name(ctx)?;
    let work = async {
        let client = long_client(&ctx.settings, Cluster::Source)?;
        client
            .create_index(&fresh, &read_mapping(&ctx.settings.mapping)?)
            .await?;
        let copied = timed(copy(&client, source, &fresh, max_docs, false)).await?;
        Ok((RKind::Reindex, copied))
    };
    run_cleaned(ctx, work, &[(Cluster::Source, fresh.clone())]).await
}

/// The fresh index R copies into.
pub(super) fn fresh_name(ctx: &Ctx) -> Result<IndexName, OpsError> {
    Ok(IndexName::parse(format!(
        "{}_reindex",
        ctx.settings.index_prefix
    ))?)
}

/// Times a copy that returns the number of documents it copied.
pub(super) async fn timed(
    copy: impl std::future::Future<Output = Result<u64, OpsError>>,
) -> Result<Throughput, OpsError> {
    let clock = Instant::now();
    let copied = copy.await?;
    Ok(Throughput::new(
        copied as usize,
        clock.elapsed().as_secs_f64(),
    ))
}

/// The first `count` ids of an index, in scan order.
pub async fn ids(ctx: &Ctx, index: &IndexName, count: usize) -> Result<Vec<DocId>, OpsError> {
    let request = ScanRequest {
        query: json!({ "match_all": {} }),
        page_size: ctx.settings.scan_page.clamp(1, 10_000),
        source: Value::Bool(false),
    };
    let mut pages = std::pin::pin!(ctx.index.scan(index, request));
    let mut ids = Vec::with_capacity(count);
    while let Some(page) = pages.try_next().await? {
        ids.extend(page.into_iter().map(|d| d.id));
        if ids.len() >= count {
            break;
        }
    }
    ids.truncate(count);
    Ok(ids)
}
