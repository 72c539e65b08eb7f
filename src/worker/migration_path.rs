//! The migration path (low priority): a small batch of projections taken by
//! the scanner is checked against the Current index (gone: drop; changed
//! since the scan: postpone; unchanged: write), bulk-written into the
//! Migration index with external versions, and its outcomes recorded on the
//! Current documents with compare-and-set partial updates.
//!
//! A redelivered message, and two races, are handed to the edit path, which
//! writes every index by the stores' latest version: a message whose earlier
//! delivery may have written and died before checking (see
//! [`process_deliveries`]), a 409 from a Migration index whose `_version`
//! runs ahead of its content (it was Current before a rollback), and a
//! written document whose stores' version moved on after the scan (the
//! write may have landed after a delete, in an index with no tombstone).

use super::edit_path::{apply, EditError};
use crate::context::Ctx;
use crate::index::records;
use crate::index::{BulkItem, BulkOp, IndexClient, IndexError, StoredDoc, Target, Write};
use crate::queue::{DocKind, DocMessage, MigrateMessage, Payload};
use crate::retry::{retry, Transient};
use crate::types::{DocId, SeqTerm};
use futures::StreamExt;
use std::collections::HashMap;

/// What to do with each message of a batch once processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Done (written, recorded, dropped or postponed): acknowledge.
    Ack,
    /// A transient failure outlived the retry budget: requeue.
    Requeue,
}

/// Counts for one batch, for logs, metrics and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Written into the Migration index and recorded.
    pub migrated: usize,
    /// Recorded as failed.
    pub failed: usize,
    /// Changed since the scan: left for the next pass.
    pub postponed: usize,
    /// Deleted since the scan, or for a target no longer migrating.
    pub dropped: usize,
    /// Requeued after transient failures.
    pub requeued: usize,
}

/// Processes one batch of deliveries; `redelivered[i]` says whether the
/// broker delivered `batch[i]` before. A redelivered message's earlier
/// delivery may have written the Migration index and died before its
/// stores re-read (`moved_on`): in a rolled-back index, which keeps no
/// tombstone of a delete, that write brought a deleted document back, and
/// no later check can tell (the redelivery may even come after the index
/// became Current). So a redelivered message goes to the edit path, which
/// writes every index by the stores' version; a fresh one is processed.
pub async fn process_deliveries(
    ctx: &Ctx,
    batch: &[MigrateMessage],
    redelivered: &[bool],
) -> (Vec<Disposition>, BatchReport) {
    let (again, fresh): (Vec<usize>, Vec<usize>) =
        (0..batch.len()).partition(|&i| redelivered.get(i).copied().unwrap_or(false));
    let pick = |at: &[usize]| at.iter().map(|&i| batch[i].clone()).collect::<Vec<_>>();
    let (fresh_out, mut report) = process(ctx, &pick(&fresh)).await;
    let mut out = vec![Disposition::Ack; batch.len()];
    for (&i, d) in fresh.iter().zip(fresh_out) {
        out[i] = d;
    }
    let ids: Vec<(usize, DocId)> = again.iter().map(|&i| (i, batch[i].id.clone())).collect();
    for (i, settled) in settle(ctx, ids).await {
        match settled {
            Ok(()) => report.migrated += 1,
            // Cannot be projected: the next scan pass queues it afresh and
            // the migration path records the failure.
            Err(false) => report.dropped += 1,
            Err(true) => {
                out[i] = Disposition::Requeue;
                report.requeued += 1;
            }
        }
    }
    (out, report)
}

/// Processes one batch of fresh deliveries; returns a disposition per
/// message, in order.
pub async fn process(ctx: &Ctx, batch: &[MigrateMessage]) -> (Vec<Disposition>, BatchReport) {
    let mut report = BatchReport::default();
    let mut out = vec![Disposition::Ack; batch.len()];
    match process_inner(ctx, batch, &mut report, &mut out).await {
        Ok(()) => (out, report),
        Err(e) => {
            tracing::warn!(error = %e, batch = batch.len(), "migration batch failed after retries; requeueing it");
            (
                vec![Disposition::Requeue; batch.len()],
                BatchReport {
                    requeued: batch.len(),
                    ..Default::default()
                },
            )
        }
    }
}

async fn process_inner(
    ctx: &Ctx,
    batch: &[MigrateMessage],
    report: &mut BatchReport,
    out: &mut [Disposition],
) -> Result<(), EditError> {
    let state = ctx
        .state
        .get(&ctx.index, &ctx.aliases, &ctx.control)
        .await?;
    let Some(target) = state.migration() else {
        report.dropped = batch.len();
        return Ok(());
    };
    // The migration index may live on another cluster; the outcome records
    // live on Current's.
    let on_target = ctx.client_in(&state.aliases, &target);
    let on_current = ctx.on(state.aliases.current_cluster());
    let ids: Vec<DocId> = batch
        .iter()
        .filter(|m| m.target == target)
        .map(|m| m.id.clone())
        .collect();
    let current: HashMap<DocId, StoredDoc> = retry(&ctx.policy, "mget Current", || async {
        let r = on_current.mget(&ctx.aliases.current, &ids).await;
        if r.as_ref().is_err_and(|e| e.is_transient()) {
            pressure(ctx);
        }
        r
    })
    .await?
    .into_iter()
    .map(|d| (d.id.clone(), d))
    .collect();

    let migration = Target::Alias(ctx.aliases.migration.clone());
    let current_alias = Target::Alias(ctx.aliases.current.clone());
    let mut writes = Vec::new();
    let mut write_pos = Vec::new();
    let mut outcomes = Vec::new();
    for (pos, m) in batch.iter().enumerate() {
        if m.target != target {
            report.dropped += 1;
            continue;
        }
        let Some(doc) = current.get(&m.id) else {
            report.dropped += 1;
            continue;
        };
        if doc.seq_term() != m.seq_term() {
            report.postponed += 1;
            continue;
        }
        let seen = Some(m.seq_term());
        match &m.payload {
            Payload::Document(body) => writes.push(BulkOp::PutExternal {
                to: migration.clone(),
                id: m.id.clone(),
                version: m.version,
                doc: body.clone(),
            }),
            Payload::Deleted(_) => writes.push(BulkOp::DeleteExternal {
                to: migration.clone(),
                id: m.id.clone(),
                version: m.version,
            }),
            Payload::Failure(reason) => {
                report.failed += 1;
                outcomes.push(BulkOp::Update {
                    to: current_alias.clone(),
                    id: m.id.clone(),
                    partial: records::failure(&target, reason),
                    seen,
                });
                continue;
            }
        }
        write_pos.push((pos, seen));
    }

    let results = bulk_with_retry(ctx, on_target, &writes).await?;
    let mut racing = behind_on_409(ctx, on_target, batch, &write_pos, &results).await?;
    racing.extend(moved_on(ctx, batch, &write_pos, &results).await?);
    let racing_at: Vec<(usize, DocId)> = results
        .iter()
        .zip(&write_pos)
        .filter(|(item, _)| item.result.is_ok() && racing.contains(&item.id))
        .map(|(item, (pos, _))| (*pos, item.id.clone()))
        .collect();
    for (pos, settled) in settle(ctx, racing_at).await {
        if settled.is_ok() {
            report.migrated += 1;
        } else {
            out[pos] = Disposition::Requeue;
            report.requeued += 1;
        }
    }
    for (item, (pos, seen)) in results.into_iter().zip(write_pos) {
        let partial = match item.result {
            // Settled by the edit path above, with its own outcome record.
            Ok(_) if racing.contains(&item.id) => continue,
            Ok(Write::Done) | Ok(Write::Stale) => {
                report.migrated += 1;
                records::success(&target)
            }
            Ok(_) => {
                // The migration alias went away (abandon, completion).
                report.dropped += 1;
                continue;
            }
            Err(e) if e.is_transient() => {
                out[pos] = Disposition::Requeue;
                report.requeued += 1;
                continue;
            }
            Err(e) => {
                report.failed += 1;
                records::failure(&target, &records::normalize(&e.cause(), &item.id))
            }
        };
        outcomes.push(BulkOp::Update {
            to: current_alias.clone(),
            id: item.id,
            partial,
            seen,
        });
    }

    // Conflicts (changed since the scan) and missing documents (deleted
    // meanwhile) are fine: the edit path wrote those, and records never
    // create documents.
    for item in bulk_with_retry(ctx, on_current, &outcomes).await? {
        if let Err(e) = item.result {
            tracing::warn!(id = %item.id, error = %e, "could not record the migration outcome; the next pass retries");
        }
    }
    Ok(())
}

/// The ids written by this batch whose stores' version has moved past the
/// scanned one. The check against Current happened before the write, and
/// the write may land much later (a frozen worker, a batch delayed across
/// complete and rollback) in an index without a tombstone for a later
/// delete (tombstones expire; an index that was Current keeps none). A
/// write of the stores' latest version is right wherever it lands; any
/// other goes to the edit path. A change after this read brings its own
/// message, applied after it.
async fn moved_on(
    ctx: &Ctx,
    batch: &[MigrateMessage],
    write_pos: &[(usize, Option<SeqTerm>)],
    results: &[BulkItem],
) -> Result<Vec<DocId>, EditError> {
    let written = answered(batch, write_pos, results, Write::Done);
    if written.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<DocId> = written.iter().map(|m| m.id.clone()).collect();
    let items = ctx.stores.edits.batch_get(&ids, &ctx.policy).await?;
    Ok(written
        .into_iter()
        .filter(|m| match items.get(&m.id) {
            Some(Ok(item)) => item.version > m.version,
            // Gone or unreadable: let the edit path decide.
            _ => true,
        })
        .map(|m| m.id.clone())
        .collect())
}

/// The messages whose write was answered with `want`.
fn answered<'a>(
    batch: &'a [MigrateMessage],
    write_pos: &[(usize, Option<SeqTerm>)],
    results: &[BulkItem],
    want: Write,
) -> Vec<&'a MigrateMessage> {
    results
        .iter()
        .zip(write_pos)
        .filter(|(item, _)| matches!(&item.result, Ok(w) if *w == want))
        .map(|(_, (pos, _))| &batch[*pos])
        .collect()
}

/// The ids whose external write got a 409 although the Migration index
/// holds an older content version than the message (one `_mget`).
async fn behind_on_409(
    ctx: &Ctx,
    on: &IndexClient,
    batch: &[MigrateMessage],
    write_pos: &[(usize, Option<SeqTerm>)],
    results: &[BulkItem],
) -> Result<Vec<DocId>, IndexError> {
    let stale = answered(batch, write_pos, results, Write::Stale);
    if stale.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<DocId> = stale.iter().map(|m| m.id.clone()).collect();
    let stored: HashMap<DocId, u64> = retry(&ctx.policy, "mget Migration", || {
        on.mget(&ctx.aliases.migration, &ids)
    })
    .await?
    .into_iter()
    .map(|d| (d.id.clone(), d.version()))
    .collect();
    Ok(stale
        .into_iter()
        .filter(|m| {
            let live = matches!(m.payload, Payload::Document(_));
            // A live document absent behind a 409 sits on a tombstone whose
            // `_version` may have been inflated the same way.
            stored.get(&m.id).map_or(live, |v| *v < m.version.get())
        })
        .map(|m| m.id.clone())
        .collect())
}

/// How many racing documents of one batch the edit path settles at once.
const SETTLE_CONCURRENCY: usize = 8;

/// Runs the edit path for the racing documents of a batch (by position),
/// a few at a time and all within one retry budget, so that a batch full of
/// races cannot hold its messages unacknowledged for minutes; returns
/// whether each one settled, or whether its failure was transient.
async fn settle(ctx: &Ctx, racing: Vec<(usize, DocId)>) -> Vec<(usize, Result<(), bool>)> {
    let deadline = tokio::time::Instant::now() + ctx.policy.budget;
    futures::stream::iter(racing)
        .map(|(pos, id)| async move {
            let msg = DocMessage {
                kind: DocKind::Edit,
                id: id.clone(),
                version: None,
            };
            let run = retry(&ctx.policy, "apply edit", || apply(ctx, &msg));
            let settled = match tokio::time::timeout_at(deadline, run).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => {
                    tracing::warn!(%id, error = %e, "the edit path could not settle a document for the migration path");
                    Err(e.is_transient())
                }
                Err(_) => {
                    tracing::warn!(%id, "the batch's retry budget ran out before the edit path settled this document; requeued");
                    Err(true)
                }
            };
            (pos, settled)
        })
        .buffer_unordered(SETTLE_CONCURRENCY)
        .collect()
        .await
}

/// Notes a sign of index overload, for the throttle.
fn pressure(ctx: &Ctx) {
    ctx.index_pressure
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Sends a bulk request, retrying transient failures of the request and of
/// single items within the budget; returns one result per op, in order.
async fn bulk_with_retry(
    ctx: &Ctx,
    on: &IndexClient,
    ops: &[BulkOp],
) -> Result<Vec<BulkItem>, IndexError> {
    let mut results: Vec<Option<BulkItem>> = (0..ops.len()).map(|_| None).collect();
    let mut todo: Vec<usize> = (0..ops.len()).collect();
    let started = std::time::Instant::now();
    let mut attempt = 0;
    while !todo.is_empty() {
        let batch: Vec<BulkOp> = todo.iter().map(|&i| ops[i].clone()).collect();
        let items = retry(&ctx.policy, "bulk", || async {
            let r = on.bulk(&batch).await;
            if r.as_ref().is_err_and(|e| e.is_transient()) {
                pressure(ctx);
            }
            r
        })
        .await?;
        let mut again = Vec::new();
        for (i, item) in todo.iter().copied().zip(items) {
            let transient = matches!(&item.result, Err(e) if e.is_transient());
            if transient {
                pressure(ctx);
            }
            if transient && started.elapsed() < ctx.policy.budget {
                again.push(i);
            } else {
                results[i] = Some(item);
            }
        }
        if !again.is_empty() {
            tokio::time::sleep(crate::retry::pause_for(&ctx.policy, attempt)).await;
            attempt += 1;
        }
        todo = again;
    }
    Ok(results.into_iter().flatten().collect())
}
