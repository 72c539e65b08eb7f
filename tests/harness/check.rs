//! The checker: DESIGN.md's invariant for every index a reader may be
//! switched to, the outcome records, and stray indices.
//!
//! - Current holds exactly the ids alive in the stores, each equal to a
//!   fresh projection at the stores' version (`esInfo` aside).
//! - Historical, while a rollback is allowed (it exists and the recorded
//!   completion that made it Historical is within the window), the same:
//!   a rollback must lose nothing.
//! - Every document of Historical carries `migratedTo <Current>`.
//! - No migration is left in progress.
//! - No index of the test's prefix is without an alias, except those the
//!   schedule retired on purpose (abandoned indices are deleted).

use super::Run;
use ferry::index::records::{self, Outcome};
use ferry::index::scan::ScanRequest;
use ferry::index::IndexClient;
use ferry::stores::control::now_ms;
use ferry::stores::{Projection, ProjectionError};
use ferry::types::{DocId, IndexName};
use futures::TryStreamExt;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Every document of `index` matching `query`, by id.
pub async fn all(
    on: &IndexClient,
    index: &IndexName,
    query: Value,
    source: Value,
) -> Result<BTreeMap<DocId, Value>, ferry::index::IndexError> {
    let req = ScanRequest {
        query,
        page_size: 500,
        source,
    };
    let pages: Vec<_> = on.scan(index, req).try_collect().await?;
    Ok(pages
        .into_iter()
        .flatten()
        .map(|d| (d.id, d.source))
        .collect())
}

/// Runs every check; an empty list means the invariant holds.
pub async fn check(run: &Run) -> Vec<String> {
    let ctx = &run.env.ctx;
    let st = match ctx.alias_state().await {
        Ok(s) => s,
        Err(e) => return vec![format!("cannot read aliases: {e}")],
    };
    let on = |i: &IndexName| ctx.client_in(&st, i);
    let Some(current) = st.current_index() else {
        return vec!["no Current index".into()];
    };
    // Every Current: after a completion across clusters, the old index
    // keeps Current on its cluster until it is retired.
    let mut problems = Vec::new();
    for c in st.current_indices() {
        problems.extend(equals_stores(run, on(&c), &c, "Current").await);
    }
    if let Some(m) = st.migration_index() {
        problems.push(format!("a migration into {m} is still in progress"));
        problems.extend(equals_stores(run, on(&m), &m, "Migration").await);
    }
    if let Some(old) = st.historical_index() {
        let also_current = st.current.contains(&old);
        if !also_current && rollback_allowed(run, &old, &current).await {
            problems.extend(equals_stores(run, on(&old), &old, "Historical").await);
        }
        problems.extend(outcome_records(on(&old), &old, &current).await);
    }
    problems.extend(strays(run, &ctx.index).await);
    if let Some(t) = &ctx.target {
        problems.extend(strays(run, t).await);
    }
    problems
}

/// A Historical index is kept up to date while the completion that made
/// it Historical is recorded and within the rollback window.
async fn rollback_allowed(run: &Run, old: &IndexName, current: &IndexName) -> bool {
    let ctx = &run.env.ctx;
    let window = ctx.settings.rollback_window.as_millis() as u64;
    match ctx.control.completion().await {
        Ok(Some(c)) => {
            c.from == old.as_str()
                && c.to == current.as_str()
                && now_ms() < c.at_ms.saturating_add(window)
        }
        _ => false,
    }
}

/// `index` holds exactly the live ids of the stores, each at the stores'
/// version and equal to a fresh projection.
async fn equals_stores(run: &Run, on: &IndexClient, index: &IndexName, role: &str) -> Vec<String> {
    let ctx = &run.env.ctx;
    let mut problems = Vec::new();
    let _ = on.refresh(index).await;
    let all_docs = serde_json::json!({ "match_all": {} });
    let in_index = match all(on, index, all_docs, Value::Bool(true)).await {
        Ok(docs) => docs,
        Err(e) => return vec![format!("cannot scan {role} {index}: {e}")],
    };
    let expected = match ctx.stores.project_many(&run.ids).await {
        Ok(p) => p,
        Err(e) => return vec![format!("cannot read the stores: {e}")],
    };
    let here = format!("{role} {index}");
    let legacy = legacy_bodies(run, index);
    for (id, projected) in expected {
        let stored = in_index.get(&id);
        match (projected, stored) {
            (Ok(Projection::Document(d)), Some(body)) => {
                let mut body = body.clone();
                if let Value::Object(o) = &mut body {
                    o.remove("esInfo");
                }
                let at_version = body["version"] == serde_json::json!(d.version.get());
                if body == d.to_json() || (at_version && legacy.get(&id) == Some(&body)) {
                } else if body["version"] == serde_json::json!(d.version.get()) {
                    problems.push(format!(
                        "{id}: {here} holds version {} unlike a fresh projection",
                        d.version
                    ));
                } else {
                    problems.push(format!(
                        "{id}: {here} holds version {} but the stores are at {}",
                        body["version"], d.version
                    ));
                }
            }
            (Ok(Projection::Document(d)), None) => problems.push(format!(
                "{id}: alive at version {} in the stores but missing from {here}",
                d.version
            )),
            (Ok(Projection::Deleted { version, .. }), Some(_)) => problems.push(format!(
                "{id}: deleted at version {version} but present in {here}"
            )),
            (Err(ProjectionError::MissingEdits), Some(_)) => {
                problems.push(format!("{id}: never created but present in {here}"))
            }
            (Err(e), Some(_)) => problems.push(format!(
                "{id}: cannot be projected ({e}) but present in {here}"
            )),
            (_, None) => {}
        }
    }
    let known: BTreeSet<&DocId> = run.ids.iter().collect();
    for id in in_index.keys().filter(|id| !known.contains(id)) {
        problems.push(format!("{id}: stray document in {here}"));
    }
    problems
}

/// The seeded documents as the legacy index holds them until ferry first
/// writes them (not a projection: the old system's shape), when `index`
/// is that legacy index. The stores still hold the seeded version of such
/// a document exactly when its legacy body carries that version, so the
/// equality stays exact.
fn legacy_bodies(run: &Run, index: &IndexName) -> BTreeMap<DocId, Value> {
    if !index.as_str().ends_with("_legacy") {
        return BTreeMap::new();
    }
    let prefix = format!("{}-", run.env.name);
    let count = run.plan.initial_docs;
    (0..count)
        .map(|i| ferry::seed::data::sample(7, i, count, 0, &prefix))
        .map(|d| (d.id, d.legacy))
        .collect()
}

/// Every document of the Historical index records that it reached Current.
async fn outcome_records(on: &IndexClient, old: &IndexName, current: &IndexName) -> Vec<String> {
    let _ = on.refresh(old).await;
    let all_docs = serde_json::json!({ "match_all": {} });
    match all(on, old, all_docs, serde_json::json!(["esInfo"])).await {
        Ok(docs) => docs
            .into_iter()
            .filter(|(_, body)| records::outcome_of(body, current) != Outcome::Migrated)
            .map(|(id, _)| format!("{id}: in {old} without a migratedTo {current} record"))
            .collect(),
        Err(e) => vec![format!("cannot scan {old}: {e}")],
    }
}

/// Indices of the test's prefix that carry no alias and that the schedule
/// did not retire on purpose: an auto-created index (a write that missed
/// `require_alias`), or an abandoned index that was not deleted.
async fn strays(run: &Run, on: &IndexClient) -> Vec<String> {
    let reply = match on.call(reqwest::Method::GET, "/_alias", None).await {
        Ok(r) => r,
        Err(e) => return vec![format!("cannot list indices: {e}")],
    };
    let prefix = format!("{}_", run.env.settings.index_prefix.to_lowercase());
    let retired = run.retired.lock().unwrap().clone();
    let mut out = Vec::new();
    for (index, entry) in reply.as_object().into_iter().flatten() {
        let bare = entry
            .get("aliases")
            .and_then(Value::as_object)
            .is_none_or(|a| a.is_empty());
        if index.starts_with(&prefix) && bare && !retired.iter().any(|r| r.as_str() == index) {
            out.push(format!(
                "stray index {index}: no alias and not retired by the schedule"
            ));
        }
    }
    out
}
