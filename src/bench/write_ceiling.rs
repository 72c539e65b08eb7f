//! W, the write ceiling: the index server doing exactly the reads and
//! writes a migration needs, by a bare client with nothing else to do. For
//! each batch, one after another: `_mget` of the old documents, one bulk of
//! external-version puts into the new index, one bulk of compare-and-set
//! outcome records on the old index. `_reindex` (R) only copies; a
//! migration must also read and record, so M is judged against W.
//!
//! Each size runs on its own fresh copy of the seeded documents (built the
//! way M's Current is), so that one run's outcome records do not change
//! what the next one reads.
//!
//! Across clusters the old index is on the source (reads and records) and
//! the new one on the target (puts), as in a migration to another cluster.

use super::reindex;
use super::throughput::Throughput;
use super::{long_client, run_cleaned};
use crate::context::Ctx;
use crate::index::{read_mapping, records, BulkItem, BulkOp, Cluster, StoredDoc, Target};
use crate::ops::OpsError;
use crate::types::{DocId, IndexName, Version};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// The largest batch W tries (the best one measured by hand on osmem).
pub const BEST_BATCH: usize = 1000;

/// W at one batch size.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct WriteRun {
    /// Documents per batch.
    pub batch_size: usize,
    /// Documents, seconds, docs/s.
    pub throughput: Throughput,
}

/// W at ferry's batch size and at [`BEST_BATCH`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WriteCeiling {
    /// Every batch size measured.
    pub runs: Vec<WriteRun>,
}

impl WriteCeiling {
    /// The ceiling: the best of the batch sizes.
    pub fn best(&self) -> f64 {
        self.runs
            .iter()
            .map(|r| r.throughput.docs_per_second)
            .fold(0.0, f64::max)
    }
}

/// Measures W on the first `count` documents of `source`, at `batch_size`
/// and at [`BEST_BATCH`] (once when they are equal).
pub async fn measure(
    ctx: &Ctx,
    source: &IndexName,
    count: usize,
    batch_size: usize,
) -> Result<WriteCeiling, OpsError> {
    let mut sizes = vec![batch_size.max(1)];
    if !sizes.contains(&BEST_BATCH) {
        sizes.push(BEST_BATCH);
    }
    let mut runs = Vec::new();
    for (k, size) in sizes.into_iter().enumerate() {
        runs.push(WriteRun {
            batch_size: size,
            throughput: one(ctx, source, count, size, k).await?,
        });
    }
    Ok(WriteCeiling { runs })
}

async fn one(
    ctx: &Ctx,
    source: &IndexName,
    count: usize,
    batch: usize,
    k: usize,
) -> Result<Throughput, OpsError> {
    let prefix = &ctx.settings.index_prefix;
    let old = IndexName::parse(format!("{prefix}_w{k}_old"))?;
    let new = IndexName::parse(format!("{prefix}_w{k}_new"))?;
    let on = ctx.target_cluster();
    let work = async {
        let client = long_client(&ctx.settings, Cluster::Source)?;
        let mapping = read_mapping(&ctx.settings.mapping)?;
        client.create_index(&old, &mapping).await?;
        ctx.on(on).create_index(&new, &mapping).await?;
        reindex::copy(&client, source, &old, Some(count), true).await?;
        ctx.index.refresh(&old).await?;
        let ids = reindex::ids(ctx, &old, count).await?;
        let clock = Instant::now();
        for chunk in ids.chunks(batch) {
            migrate_batch(ctx, &old, &new, chunk).await?;
        }
        Ok(Throughput::new(ids.len(), clock.elapsed().as_secs_f64()))
    };
    run_cleaned(
        ctx,
        work,
        &[(Cluster::Source, old.clone()), (on, new.clone())],
    )
    .await
}

/// What a migration does to one batch, minus the projection: reads and
/// records on the source, puts on the cluster of the new index.
async fn migrate_batch(
    ctx: &Ctx,
    old: &IndexName,
    new: &IndexName,
    ids: &[DocId],
) -> Result<(), OpsError> {
    let docs = ctx.index.mget(old, ids).await?;
    let on_new = ctx.on(ctx.target_cluster());
    failed_items(on_new.bulk(&puts(new, &docs)?).await?)?;
    let outcome = records::success(new);
    let records: Vec<BulkOp> = docs
        .iter()
        .map(|d| BulkOp::Update {
            to: Target::Index(old.clone()),
            id: d.id.clone(),
            partial: outcome.clone(),
            seen: Some(d.seq_term()),
        })
        .collect();
    failed_items(ctx.index.bulk(&records).await?)
}

/// `docs` as external-version puts into `new`, each at the version it
/// carries (at least 1, as a legacy document's is taken).
pub(super) fn puts(new: &IndexName, docs: &[StoredDoc]) -> Result<Vec<BulkOp>, OpsError> {
    docs.iter()
        .map(|d| {
            Ok(BulkOp::PutExternal {
                to: Target::Index(new.clone()),
                id: d.id.clone(),
                version: Version::new(d.version().max(1))?,
                doc: d.source.clone(),
            })
        })
        .collect()
}

/// A bare client on an idle index has no reason to see a failed item.
pub(super) fn failed_items(items: Vec<BulkItem>) -> Result<(), OpsError> {
    match items.into_iter().find_map(|i| i.result.err()) {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}
