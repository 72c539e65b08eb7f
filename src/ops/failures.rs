//! Support tools for failure records: an overview grouped by message, a
//! paged list, one document's record, and retry.

use super::healthy_state;
use super::OpsError;
use crate::context::Ctx;
use crate::index::records::{self, Outcome};
use crate::index::scan::TermBucket;
use crate::index::{BulkOp, IndexClient, Target};
use crate::queue::migrate::publish_projections;
use crate::queue::Broker;
use crate::types::{DocId, IndexName};
use serde::Serialize;
use serde_json::{json, Value};

/// Failures listed per page.
pub const PAGE_SIZE: usize = 50;

/// Where failure records are read: the index holding them and the target
/// they are about.
#[derive(Debug, Clone, Serialize)]
pub struct Scope {
    /// Index holding the records (the migration source).
    pub index: IndexName,
    /// The migration target the records are about.
    pub target: IndexName,
}

/// The scope: the running migration, or with `historical` the last
/// completed one (records on the Historical index about Current).
pub async fn scope(ctx: &Ctx, historical: bool) -> Result<Scope, OpsError> {
    let st = healthy_state(ctx).await?;
    let current = st
        .current_index()
        .ok_or_else(|| OpsError::Refused("no Current index".into()))?;
    if historical {
        let index = st.historical_index().ok_or_else(|| {
            OpsError::Refused("there is no Historical index; no migration has completed".into())
        })?;
        return Ok(Scope {
            index,
            target: current,
        });
    }
    let target = st.migration_index().ok_or_else(|| {
        OpsError::Refused(
            "no migration is in progress; use --historical for the last completed one".into(),
        )
    })?;
    Ok(Scope {
        index: current,
        target,
    })
}

/// Failures grouped by message.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    /// Where the records were read.
    pub scope: Scope,
    /// Total failed documents.
    pub total: u64,
    /// One group per message, largest first.
    pub groups: Vec<TermBucket>,
}

/// Groups failures by message with counts and example ids.
pub async fn overview(ctx: &Ctx, scope: Scope) -> Result<Overview, OpsError> {
    ctx.index.refresh(&scope.index).await?;
    let total = ctx
        .index
        .count(&scope.index, records::failed(&scope.target))
        .await?;
    let groups = ctx
        .index
        .terms(
            &scope.index,
            &records::failure_field(&scope.target),
            records::failed(&scope.target),
            100,
            5,
        )
        .await?;
    Ok(Overview {
        scope,
        total,
        groups,
    })
}

/// One page of failed documents.
#[derive(Debug, Clone, Serialize)]
pub struct Page {
    /// Where the records were read.
    pub scope: Scope,
    /// Page number, from 1.
    pub page: usize,
    /// Total matching documents.
    pub total: u64,
    /// Ids and messages on this page.
    pub items: Vec<(DocId, String)>,
}

/// Lists failed documents (optionally only those with `message`), sorted by id.
pub async fn list(
    ctx: &Ctx,
    scope: Scope,
    message: Option<&str>,
    page: usize,
) -> Result<Page, OpsError> {
    let page = page.max(1);
    let query = match message {
        Some(m) => records::failed_with(&scope.target, m),
        None => records::failed(&scope.target),
    };
    ctx.index.refresh(&scope.index).await?;
    let total = ctx.index.count(&scope.index, query.clone()).await?;
    let body = json!({
        "query": query,
        "from": (page - 1) * PAGE_SIZE,
        "size": PAGE_SIZE,
        "sort": [{ "_id": "asc" }],
        "_source": [records::failure_field(&scope.target)],
    });
    let reply = ctx.index.search(&scope.index, body).await?;
    let items = reply
        .pointer("/hits/hits")
        .and_then(Value::as_array)
        .map(|hits| {
            hits.iter()
                .filter_map(|h| {
                    let id = DocId::parse(h.get("_id")?.as_str()?).ok()?;
                    let msg = match records::outcome_of(h.get("_source")?, &scope.target) {
                        Outcome::Failed(m) => m,
                        _ => String::new(),
                    };
                    Some((id, msg))
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Page {
        scope,
        page,
        total,
        items,
    })
}

/// One document's outcome record.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// The document.
    pub id: DocId,
    /// Where it was read.
    pub scope: Scope,
    /// Present in the index at all.
    pub found: bool,
    /// Its outcome for the target.
    pub outcome: Option<Outcome>,
}

/// Looks up one document's record.
pub async fn show(ctx: &Ctx, scope: Scope, id: &DocId) -> Result<Record, OpsError> {
    let doc = ctx.index.get(&scope.index, id).await?;
    Ok(Record {
        id: id.clone(),
        found: doc.is_some(),
        outcome: doc.map(|d| records::outcome_of(&d.source, &scope.target)),
        scope,
    })
}

/// What a retry did.
#[derive(Debug, Clone, Serialize)]
pub struct Retried {
    /// Records cleared.
    pub cleared: usize,
    /// Projections queued.
    pub queued: usize,
}

/// Which failures to retry.
#[derive(Debug, Clone)]
pub enum Selection {
    /// Every failure.
    All,
    /// Every failure with this exact message.
    Message(String),
    /// These documents.
    Ids(Vec<DocId>),
}

impl Selection {
    /// One line for the operations record.
    pub fn describe(&self) -> String {
        match self {
            Selection::All => "all failures".into(),
            Selection::Message(m) => format!("message {m:?}"),
            Selection::Ids(ids) => format!("{} id(s)", ids.len()),
        }
    }
}

/// Clears failure records and queues the documents again.
pub async fn retry(ctx: &Ctx, broker: &Broker, selection: Selection) -> Result<Retried, OpsError> {
    let scope = scope(ctx, false).await?;
    let on = ctx.client_of(&scope.index).await?;
    let query = match selection {
        Selection::Ids(ids) => return retry_ids(ctx, on, broker, &scope, &ids).await,
        Selection::Message(m) => records::failed_with(&scope.target, &m),
        Selection::All => records::failed(&scope.target),
    };
    // The ids first: clearing a record takes the document out of the
    // selection, which a scan still open would then skip or repeat.
    let mut ids = Vec::new();
    let request = crate::index::scan::ScanRequest {
        query,
        page_size: ctx.settings.scan_page.max(1),
        source: Value::Bool(false),
    };
    on.refresh(&scope.index).await?;
    let mut pages = std::pin::pin!(on.scan(&scope.index, request));
    while let Some(page) = futures::TryStreamExt::try_next(&mut pages).await? {
        ids.extend(page.into_iter().map(|d| d.id));
    }
    retry_ids(ctx, on, broker, &scope, &ids).await
}

async fn retry_ids(
    ctx: &Ctx,
    on: &IndexClient,
    broker: &Broker,
    scope: &Scope,
    ids: &[DocId],
) -> Result<Retried, OpsError> {
    let mut cleared = 0;
    let mut queued = 0;
    let at = (&scope.index, &scope.target);
    for chunk in ids.chunks(ctx.settings.scan_page.max(1)) {
        let partial = records::cleared(&scope.target);
        let (c, q) = reset_and_queue(ctx, on, broker, at, chunk, partial).await?;
        cleared += c;
        queued += q;
    }
    Ok(Retried { cleared, queued })
}

/// Applies the partial outcome record `partial` to `ids` in `index` (on
/// `on`) in one bulk, then reads them again and queues their projections
/// for `target`: the update changed `_seq_no`, and the processor only
/// writes documents unchanged since they were queued. Returns (records
/// updated, projections queued).
pub(super) async fn reset_and_queue(
    ctx: &Ctx,
    on: &IndexClient,
    broker: &Broker,
    (index, target): (&IndexName, &IndexName),
    ids: &[DocId],
    partial: Value,
) -> Result<(usize, usize), OpsError> {
    let ops: Vec<BulkOp> = ids
        .iter()
        .map(|id| BulkOp::Update {
            to: Target::Index(index.clone()),
            id: id.clone(),
            partial: partial.clone(),
            seen: None,
        })
        .collect();
    let cleared = on
        .bulk(&ops)
        .await?
        .iter()
        .filter(|i| i.result.is_ok())
        .count();
    let docs = on.mget(index, ids).await?;
    let queued = publish_projections(&ctx.stores, broker, target, &docs).await?;
    Ok((cleared, queued))
}
