//! Bulk writes with per-item results: a 200 for the whole request says
//! nothing about each item, so every item's status is read and returned.

use super::client::{Body, IndexClient, IndexError, Target};
use super::docs::{write_outcome, Resolved, Write};
use crate::types::{DocId, IndexName, SeqTerm, Version};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::HashMap;

/// One bulk action.
#[derive(Debug, Clone)]
pub enum BulkOp {
    /// Index with an external version.
    PutExternal {
        to: Target,
        id: DocId,
        version: Version,
        doc: Value,
    },
    /// Delete with an external version (tombstone).
    DeleteExternal {
        to: Target,
        id: DocId,
        version: Version,
    },
    /// Partial update of an existing document, optionally compare-and-set.
    Update {
        to: Target,
        id: DocId,
        partial: Value,
        seen: Option<SeqTerm>,
    },
}

impl BulkOp {
    /// The document this action touches.
    pub fn id(&self) -> &DocId {
        match self {
            BulkOp::PutExternal { id, .. }
            | BulkOp::DeleteExternal { id, .. }
            | BulkOp::Update { id, .. } => id,
        }
    }

    fn write_lines(&self, out: &mut String) {
        let (action, to, id) = match self {
            BulkOp::PutExternal { to, id, .. } => ("index", to, id),
            BulkOp::DeleteExternal { to, id, .. } => ("delete", to, id),
            BulkOp::Update { to, id, .. } => ("update", to, id),
        };
        let mut meta = json!({ "_index": to.name(), "_id": id });
        if to.require_alias() && action != "delete" {
            meta["require_alias"] = json!(true);
        }
        match self {
            BulkOp::PutExternal { version, .. } | BulkOp::DeleteExternal { version, .. } => {
                meta["version"] = json!(version.get());
                meta["version_type"] = json!("external");
            }
            BulkOp::Update {
                seen: Some(seen), ..
            } => {
                meta["if_seq_no"] = json!(seen.seq_no);
                meta["if_primary_term"] = json!(seen.primary_term);
            }
            BulkOp::Update { seen: None, .. } => {}
        }
        out.push_str(&json!({ action: meta }).to_string());
        out.push('\n');
        match self {
            BulkOp::PutExternal { doc, .. } => out.push_str(&doc.to_string()),
            BulkOp::Update { partial, .. } => out.push_str(&json!({ "doc": partial }).to_string()),
            BulkOp::DeleteExternal { .. } => return,
        }
        out.push('\n');
    }

    fn on_conflict(&self) -> Write {
        match self {
            BulkOp::Update { .. } => Write::Conflict,
            _ => Write::Stale,
        }
    }
}

/// The result of one bulk item, in request order.
#[derive(Debug)]
pub struct BulkItem {
    /// The document.
    pub id: DocId,
    /// Its outcome, or the error the server gave for this item alone.
    pub result: Result<Write, IndexError>,
}

impl IndexClient {
    /// Sends actions in one `_bulk` request and returns one result per
    /// action, in order. The request itself failing is an error; items
    /// failing are reported per item.
    pub async fn bulk(&self, ops: &[BulkOp]) -> Result<Vec<BulkItem>, IndexError> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        // Versioned deletes ignore `require_alias` and would auto-create a
        // missing alias as an index: send them to the index their alias
        // points to now, and skip them when it points nowhere.
        let mut resolved: HashMap<IndexName, Option<Resolved>> = HashMap::new();
        let mut sent: Vec<bool> = Vec::with_capacity(ops.len());
        let mut body = String::with_capacity(ops.len() * 512);
        for op in ops {
            match op {
                BulkOp::DeleteExternal {
                    to: to @ Target::Alias(alias),
                    id,
                    version,
                } => {
                    if !resolved.contains_key(alias) {
                        let index = self.delete_target(to).await?;
                        resolved.insert(alias.clone(), index);
                    }
                    match &resolved[alias] {
                        Some(r) => {
                            BulkOp::DeleteExternal {
                                to: Target::Index(r.index.clone()),
                                id: id.clone(),
                                version: *version,
                            }
                            .write_lines(&mut body);
                            sent.push(true);
                        }
                        None => sent.push(false),
                    }
                }
                _ => {
                    op.write_lines(&mut body);
                    sent.push(true);
                }
            }
        }
        let expected = sent.iter().filter(|s| **s).count();
        let reply = if expected == 0 {
            json!({ "items": [] })
        } else {
            self.call(Method::POST, "/_bulk", Some(Body::NdJson(body)))
                .await?
        };
        let items = reply
            .get("items")
            .and_then(Value::as_array)
            .ok_or_else(|| IndexError::Decode {
                op: "POST _bulk".into(),
                detail: "no items array".into(),
            })?;
        if items.len() != expected {
            return Err(IndexError::Decode {
                op: "POST _bulk".into(),
                detail: format!("{} items for {} actions", items.len(), expected),
            });
        }
        let mut items = items.iter();
        let mut found_nothing = false;
        let results: Vec<BulkItem> = ops
            .iter()
            .zip(sent)
            .map(|(op, sent)| {
                // Only sent actions have an item (their count was checked).
                let Some(item) = sent.then(|| items.next()).flatten() else {
                    return BulkItem {
                        id: op.id().clone(),
                        result: Ok(Write::NoAlias),
                    };
                };
                let (status, result) = item_outcome(item, op.on_conflict());
                if matches!(op, BulkOp::DeleteExternal { .. }) && status == StatusCode::NOT_FOUND {
                    found_nothing = true;
                }
                BulkItem {
                    id: op.id().clone(),
                    result,
                }
            })
            .collect();
        // A versioned delete that found nothing may have re-created an index
        // deleted since its alias was resolved (see `delete_target`).
        if found_nothing {
            for r in resolved.values().flatten() {
                self.remove_if_recreated(r).await?;
            }
        }
        Ok(results)
    }
}

/// One item of a bulk reply (`{"index": {...}}`, whatever the action) as
/// its status and write outcome; `on_conflict` says what a 409 means.
pub(crate) fn item_outcome(
    item: &Value,
    on_conflict: Write,
) -> (StatusCode, Result<Write, IndexError>) {
    let inner = item
        .as_object()
        .and_then(|o| o.values().next())
        .unwrap_or(&Value::Null);
    let status = inner
        .get("status")
        .and_then(Value::as_u64)
        .and_then(|s| StatusCode::from_u16(s as u16).ok())
        .unwrap_or(StatusCode::BAD_GATEWAY);
    let result = if inner.get("error").is_some() || !status.is_success() {
        write_outcome("bulk item", status, inner, on_conflict)
    } else {
        Ok(Write::Done)
    };
    (status, result)
}
