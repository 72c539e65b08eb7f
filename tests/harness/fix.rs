//! Documents the new mapping rejects, and the operator's fix.
//!
//! The migration mapping maps `metadata.copyright` as `integer`; nothing
//! the simulated pipeline writes sets it, so only the harness's own
//! "reject" edits (a text copyright override in the DynamoDB item) make
//! a document the new index refuses. Such a document must stay in Current
//! with a failure record for the target, and the checked gate must refuse
//! to complete while it is there. Before completing, the harness stops
//! making them, edits every such document in the stores to drop the
//! override, publishes the edits, and retries the failures that remain.

use super::check::all;
use super::Run;
use ferry::index::records::{self, Outcome};
use ferry::ops::{self, OpsError};
use ferry::queue::{DocKind, DocMessage};
use ferry::stores::StoreError;
use ferry::types::{DocId, Version};
use serde_json::{json, Map, Value};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The value the new mapping rejects.
pub const REJECTED: &str = "all rights reserved";

/// A copy of `infra/mapping.json` with `metadata.copyright` as `integer`.
pub fn rejecting_mapping() -> String {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/infra/mapping.json");
        let mut m: Value =
            serde_json::from_str(&std::fs::read_to_string(shipped).expect("mapping"))
                .expect("mapping JSON");
        m["mappings"]["properties"]["metadata"]["properties"]["copyright"] =
            json!({ "type": "integer" });
        let path = format!(
            "{}/mapping-rejecting-{}.json",
            env!("CARGO_TARGET_TMPDIR"),
            std::process::id()
        );
        std::fs::write(&path, m.to_string()).expect("write the test mapping");
        path
    })
    .clone()
}

/// Read-modify-write of a live document's edits item; `change` returns
/// false to leave it alone. Publishes the edit; `None` if nothing changed.
async fn change_item(
    run: &Run,
    id: &DocId,
    change: impl Fn(&mut Map<String, Value>) -> bool,
) -> Result<Option<Version>, OpsError> {
    let edits = &run.env.ctx.stores.edits;
    for _ in 0..20 {
        let item = match edits.get(id).await {
            Ok(i) if !i.deleted => i,
            Ok(_) | Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut attrs = item.attrs.as_object().cloned().unwrap_or_default();
        if !change(&mut attrs) {
            return Ok(None);
        }
        match edits.put_versioned(id, Some(item.version), &attrs).await {
            Ok(v) => {
                let msg = DocMessage {
                    kind: DocKind::Edit,
                    id: id.clone(),
                    version: Some(v),
                };
                run.broker.publish_event("edit", &msg.to_body()).await?;
                return Ok(Some(v));
            }
            Err(StoreError::VersionConflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(OpsError::Refused(format!("{id} kept changing")))
}

/// A publisher's edit that gives `id` a copyright the new mapping rejects.
pub async fn reject(run: &Run, id: &DocId, p: u64) -> Result<String, OpsError> {
    let r = &run.rejects;
    r.in_flight.fetch_add(1, Ordering::SeqCst);
    let result = if r.open.load(Ordering::SeqCst) {
        change_item(run, id, |attrs| {
            let mut meta = attrs
                .get("metadata")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            meta.insert("copyright".into(), json!(REJECTED));
            attrs.insert("metadata".into(), Value::Object(meta));
            true
        })
        .await
    } else {
        Ok(None)
    };
    if let Ok(Some(_)) = result {
        r.ids.lock().unwrap().insert(id.clone());
    }
    r.in_flight.fetch_sub(1, Ordering::SeqCst);
    result.map(|v| match v {
        Some(v) => format!("p{p} edit with a copyright the new mapping rejects -> v{v}"),
        None => format!("p{p} rejected-value edit skipped (absent or closed)"),
    })
}

fn has_rejected(attrs: &Map<String, Value>) -> bool {
    attrs.get("metadata").and_then(|m| m.get("copyright")) == Some(&json!(REJECTED))
}

/// Stops the rejected-value edits and fixes every document that still has
/// one: the override dropped in the stores, the edit published. Once.
pub async fn close_and_fix(run: &Run) {
    let r = &run.rejects;
    if r.fixed.load(Ordering::SeqCst) {
        return;
    }
    r.open.store(false, Ordering::SeqCst);
    while r.in_flight.load(Ordering::SeqCst) > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let ids: Vec<DocId> = r.ids.lock().unwrap().iter().cloned().collect();
    let mut fixed = 0;
    for id in &ids {
        let result = change_item(run, id, |attrs| {
            if !has_rejected(attrs) {
                return false;
            }
            if let Some(Value::Object(meta)) = attrs.get_mut("metadata") {
                meta.remove("copyright");
            }
            true
        })
        .await;
        match result {
            Ok(Some(v)) => {
                fixed += 1;
                run.note(id, format!("operator fix: copyright dropped -> v{v}"));
            }
            Ok(None) => {}
            Err(e) => run.note(id, format!("operator fix failed: {e}")),
        }
    }
    run.count.fixed.fetch_add(fixed, Ordering::SeqCst);
    r.fixed.store(true, Ordering::SeqCst);
    run.event(format!(
        "operator fix: {fixed} of {} documents with a rejected copyright edited in the stores",
        ids.len()
    ));
}

/// Failed documents of the running migration: (id, message).
async fn failed(run: &Run) -> Vec<(DocId, String)> {
    let ctx = &run.env.ctx;
    let Ok(scope) = ops::failures::scope(ctx, false).await else {
        return Vec::new();
    };
    let Ok(on) = ctx.client_of(&scope.index).await else {
        return Vec::new();
    };
    let _ = on.refresh(&scope.index).await;
    let docs = all(
        on,
        &scope.index,
        records::failed(&scope.target),
        json!(["esInfo"]),
    )
    .await
    .unwrap_or_default();
    docs.into_iter()
        .map(|(id, body)| {
            let msg = match records::outcome_of(&body, &scope.target) {
                Outcome::Failed(m) => m,
                other => format!("{other:?}"),
            };
            (id, format!("failure record for {}: {msg}", scope.target))
        })
        .collect()
}

/// Retries (`ferry failures retry <ID>...`) the failures of documents the
/// harness gave a rejected value, now fixed. Others are left alone: they
/// would be a bug, and the refused completion reports them.
pub async fn retry_failures(run: &Run) {
    let mine = run.rejects.ids.lock().unwrap().clone();
    let ids: Vec<DocId> = failed(run)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .filter(|id| mine.contains(id))
        .collect();
    if ids.is_empty() {
        return;
    }
    let ctx = &run.env.ctx;
    let sel = ops::failures::Selection::Ids(ids.clone());
    let r = ops::failures::retry(ctx, &run.broker, sel).await;
    for id in &ids {
        run.note(
            id,
            format!("operator: failures retry: {:?}", r.as_ref().ok()),
        );
    }
    run.event(format!(
        "failures retry of {} fixed documents: {:?}",
        ids.len(),
        r.map(|r| (r.cleared, r.queued))
    ));
}

/// Every failure record left, and every document still without an
/// outcome, as problem lines.
pub async fn failure_problems(run: &Run) -> Vec<String> {
    let mut out: Vec<String> = failed(run)
        .await
        .into_iter()
        .map(|(id, what)| format!("{id}: {what}"))
        .collect();
    let ctx = &run.env.ctx;
    if let Ok(scope) = ops::failures::scope(ctx, false).await {
        let query = records::unmigrated(&scope.target);
        let on = ctx.client_of(&scope.index).await.unwrap_or(&ctx.index);
        let docs = all(on, &scope.index, query, json!(["esInfo", "version"]))
            .await
            .unwrap_or_default();
        for (id, body) in docs {
            out.push(format!(
                "{id}: in {} at version {} without an outcome for {}: {}",
                scope.index, body["version"], scope.target, body["esInfo"]
            ));
        }
    }
    out
}
