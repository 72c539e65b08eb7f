//! R across clusters: the copies that stand for the copy ceiling when the
//! migration's target is another cluster. The target's own `_reindex` from
//! the source is the ceiling when the target may reach the source
//! (`reindex.remote.allowlist`); otherwise the target's bulk ceiling is:
//! what a bare client copying from one cluster to the other achieves.

use super::reindex::{fresh_name, reindex_from, timed, RKind};
use super::throughput::Throughput;
use super::write_ceiling::{failed_items, puts, BEST_BATCH};
use super::{long_client, run_cleaned};
use crate::context::Ctx;
use crate::index::scan::ScanRequest;
use crate::index::{read_mapping, Cluster, IndexClient, IndexError};
use crate::ops::OpsError;
use crate::types::IndexName;
use futures::TryStreamExt;
use serde_json::{json, Value};

/// R across clusters, into a fresh index on the target: the target's
/// `_reindex` from the source, or, when the target answers no to that
/// copy (it cannot reach across), a bare client's bulk copy.
pub async fn measure(
    ctx: &Ctx,
    source: &IndexName,
    max_docs: Option<usize>,
) -> Result<(RKind, Throughput), OpsError> {
    let fresh = fresh_name(ctx)?;
    let work = async {
        let client = long_client(&ctx.settings, Cluster::Target)?;
        let mapping = read_mapping(&ctx.settings.mapping)?;
        client.create_index(&fresh, &mapping).await?;
        match timed(remote(ctx, &client, source, &fresh, max_docs)).await {
            // The server answered no to the copy itself. Anything else
            // (unreachable, failed documents) is a failure of the run.
            Err(OpsError::Index(e @ IndexError::Status { .. })) => {
                eprintln!(
                    "bench {}: the target cannot _reindex from the source ({}); R is a bulk copy instead",
                    ctx.settings.index_prefix,
                    e.cause()
                );
                // From an empty index again, whatever the refused copy left.
                client.delete_index(&fresh).await?;
                client.create_index(&fresh, &mapping).await?;
                let copied = timed(bulk(ctx, &client, source, &fresh, max_docs)).await?;
                Ok((RKind::BulkAcross, copied))
            }
            r => Ok((RKind::RemoteReindex, r?)),
        }
    };
    run_cleaned(ctx, work, &[(Cluster::Target, fresh.clone())]).await
}

/// The target's `_reindex` from the source cluster (`source.remote`, with
/// the source's credentials) of `from` into `to` on `target`; the number
/// of documents created.
async fn remote(
    ctx: &Ctx,
    target: &IndexClient,
    from: &IndexName,
    to: &IndexName,
    max_docs: Option<usize>,
) -> Result<u64, OpsError> {
    let s = &ctx.settings;
    let mut remote = json!({ "host": ctx.index.public_base() });
    if let Some(user) = &s.index_username {
        remote["username"] = json!(user);
    }
    if !s.index_password.is_empty() {
        remote["password"] = json!(s.index_password.expose());
    }
    let source = json!({ "remote": remote, "index": from });
    reindex_from(target, source, to, max_docs, false).await
}

/// A bare client's copy of `from` on the source into `to` on `target`:
/// the source scanned in pages of [`BEST_BATCH`], each page one bulk of
/// external-version puts, one after the other (as `_reindex` does it);
/// the number of documents copied.
async fn bulk(
    ctx: &Ctx,
    target: &IndexClient,
    from: &IndexName,
    to: &IndexName,
    max_docs: Option<usize>,
) -> Result<u64, OpsError> {
    let request = ScanRequest {
        query: json!({ "match_all": {} }),
        page_size: BEST_BATCH,
        source: Value::Bool(true),
    };
    let mut pages = std::pin::pin!(ctx.index.scan(from, request));
    let limit = max_docs.unwrap_or(usize::MAX);
    let mut copied = 0;
    while copied < limit {
        let Some(mut page) = pages.try_next().await? else {
            break;
        };
        page.truncate(limit - copied);
        failed_items(target.bulk(&puts(to, &page)?).await?)?;
        copied += page.len();
    }
    Ok(copied as u64)
}
