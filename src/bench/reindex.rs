//! R, the copy ceiling: the index server copies the seeded index into a
//! fresh one by itself (`POST _reindex`), which no client-side migration
//! can beat. Also the untimed copies that give each M run its own Current
//! index, and the ids of the documents every measurement uses.

use super::throughput::Throughput;
use super::{long_client, run_cleaned};
use crate::context::Ctx;
use crate::index::client::Body;
use crate::index::read_mapping;
use crate::index::scan::ScanRequest;
use crate::index::{IndexClient, IndexError};
use crate::ops::OpsError;
use crate::types::{DocId, IndexName};
use futures::TryStreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Instant;

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
    let mut body = json!({
        "source": { "index": from },
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

/// R: `_reindex` of the seeded index (or its first `max_docs` documents)
/// into a fresh index created from the mapping, timed, then deleted.
pub async fn measure(
    ctx: &Ctx,
    source: &IndexName,
    max_docs: Option<usize>,
) -> Result<Throughput, OpsError> {
    let client = long_client(&ctx.settings)?;
    let fresh = IndexName::parse(format!("{}_reindex", ctx.settings.index_prefix))?;
    let work = async {
        client
            .create_index(&fresh, &read_mapping(&ctx.settings.mapping)?)
            .await?;
        let clock = Instant::now();
        let copied = copy(&client, source, &fresh, max_docs, false).await?;
        Ok(Throughput::new(
            copied as usize,
            clock.elapsed().as_secs_f64(),
        ))
    };
    run_cleaned(ctx, work, std::slice::from_ref(&fresh)).await
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
