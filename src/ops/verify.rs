//! `ferry verify`: compares the target index with a fresh projection of the
//! stores, and (with `--all`) the id sets of the source and target indices.

use super::healthy_state;
use super::OpsError;
use crate::context::Ctx;
use crate::index::records::{self, Outcome};
use crate::index::scan::ScanRequest;
use crate::index::{IndexClient, StoredDoc};
use crate::stores::Projection;
use crate::types::{DocId, IndexName};
use futures::TryStreamExt;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeSet;

/// How much to compare.
#[derive(Debug, Clone, Copy)]
pub enum Scope {
    /// About this many documents, spread over the source index.
    Sample(usize),
    /// Every document, and the id sets.
    All,
}

/// One difference.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Difference {
    /// The document.
    pub id: DocId,
    /// `missing`, `extra`, `stale`, `differs`.
    pub kind: &'static str,
    /// Details for a person.
    pub detail: String,
}

/// The result of a verify.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The index holding the documents readers will see.
    pub target: String,
    /// The migration source, if a migration runs.
    pub source: Option<String>,
    /// Documents compared with a fresh projection.
    pub compared: usize,
    /// Documents whose migration failed (recorded, not differences).
    pub failed: usize,
    /// Everything that differs.
    pub differences: Vec<Difference>,
}

/// Compares the Migration index (or Current, when no migration runs) with
/// fresh projections of the stores.
pub async fn verify(ctx: &Ctx, scope: Scope) -> Result<Report, OpsError> {
    let st = healthy_state(ctx).await?;
    let current = st
        .current_index()
        .ok_or_else(|| OpsError::Refused("no Current index".into()))?;
    let (target, source) = match st.migration_index() {
        Some(m) => (m, Some(current)),
        None => (current, None),
    };
    // Either may live on another cluster than the other.
    let on_target = ctx.client_in(&st, &target);
    on_target.refresh(&target).await?;
    let mut report = Report {
        target: target.to_string(),
        source: source.as_ref().map(|s| s.to_string()),
        compared: 0,
        failed: 0,
        differences: Vec::new(),
    };
    // Which ids to check: those in the source (or target) index.
    let origin = source.clone().unwrap_or_else(|| target.clone());
    let on_origin = ctx.client_in(&st, &origin);
    on_origin.refresh(&origin).await?;
    let origin_docs = match scope {
        Scope::All => all_docs(on_origin, &origin, ctx.settings.scan_page).await?,
        Scope::Sample(n) => sample_docs(ctx, on_origin, &origin, n).await?,
    };
    for chunk in origin_docs.chunks(ctx.settings.scan_page.max(1)) {
        let ids: Vec<DocId> = chunk.iter().map(|d| d.id.clone()).collect();
        let stored = on_target.mget(&target, &ids).await?;
        let projected = ctx.stores.project_many(&ids).await?;
        for ((id, p), origin_doc) in projected.into_iter().zip(chunk) {
            let in_target = stored.iter().find(|d| d.id == id);
            if let (Some(_), Outcome::Failed(_)) =
                (&source, records::outcome_of(&origin_doc.source, &target))
            {
                report.failed += 1;
                continue;
            }
            report.compared += 1;
            if let Some(d) = compare(&id, p, in_target) {
                report.differences.push(d);
            }
        }
    }
    if let (Scope::All, Some(_)) = (scope, &source) {
        let want: BTreeSet<DocId> = origin_docs.iter().map(|d| d.id.clone()).collect();
        for doc in all_docs(on_target, &target, ctx.settings.scan_page).await? {
            if !want.contains(&doc.id) {
                report.differences.push(Difference {
                    id: doc.id,
                    kind: "extra",
                    detail: format!("in {target} but not in the source index"),
                });
            }
        }
    }
    Ok(report)
}

fn compare(
    id: &DocId,
    projected: Result<Projection, crate::stores::ProjectionError>,
    stored: Option<&StoredDoc>,
) -> Option<Difference> {
    let diff = |kind, detail: String| {
        Some(Difference {
            id: id.clone(),
            kind,
            detail,
        })
    };
    match (projected, stored) {
        (Ok(Projection::Document(d)), None) => diff(
            "missing",
            format!(
                "the stores hold version {} but the index has no document",
                d.version
            ),
        ),
        (Ok(Projection::Document(d)), Some(s)) => {
            let mut body = s.source.clone();
            if let Value::Object(o) = &mut body {
                o.remove("esInfo");
            }
            let want = d.to_json();
            if body == want {
                None
            } else if s.version() < d.version.get() {
                diff(
                    "stale",
                    format!(
                        "the index holds version {} but the stores are at {}",
                        s.version(),
                        d.version
                    ),
                )
            } else {
                diff(
                    "differs",
                    format!(
                        "the index document at version {} differs from a fresh projection",
                        s.version()
                    ),
                )
            }
        }
        (Ok(Projection::Deleted { version, .. }), Some(s)) => diff(
            "extra",
            format!(
                "deleted in the stores at version {version} but present in the index (version {})",
                s.version()
            ),
        ),
        (Ok(Projection::Deleted { .. }), None) => None,
        (Err(e), Some(_)) => diff(
            "extra",
            format!("cannot be projected ({e}) but is present in the index"),
        ),
        (Err(_), None) => None,
    }
}

async fn all_docs(
    index: &IndexClient,
    name: &IndexName,
    page: usize,
) -> Result<Vec<StoredDoc>, OpsError> {
    let request = ScanRequest {
        query: serde_json::json!({ "match_all": {} }),
        page_size: page.max(1),
        source: serde_json::json!(["esInfo"]),
    };
    let pages: Vec<Vec<StoredDoc>> = index.scan(name, request).try_collect().await?;
    Ok(pages.into_iter().flatten().collect())
}

/// About `n` documents spread evenly over the index (every k-th of a scan
/// that reads ids only, so memory stays small).
async fn sample_docs(
    ctx: &Ctx,
    on: &IndexClient,
    index: &IndexName,
    n: usize,
) -> Result<Vec<StoredDoc>, OpsError> {
    let total = on
        .count(index, serde_json::json!({ "match_all": {} }))
        .await? as usize;
    let step = (total / n.max(1)).max(1);
    let request = ScanRequest {
        query: serde_json::json!({ "match_all": {} }),
        page_size: ctx.settings.scan_page.max(1),
        source: serde_json::json!(["esInfo"]),
    };
    let mut out = Vec::with_capacity(n);
    let mut seen = 0usize;
    let mut pages = std::pin::pin!(on.scan(index, request));
    while let Some(page) = pages.try_next().await? {
        for d in page {
            if seen.is_multiple_of(step) && out.len() < n {
                out.push(d);
            }
            seen += 1;
        }
        if out.len() >= n {
            break;
        }
    }
    Ok(out)
}
