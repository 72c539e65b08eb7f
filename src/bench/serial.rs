//! S, the one-at-a-time baseline: a migration the way the reference system
//! (Grid's Thrall) does it. For each document, in turn: read the Current
//! document, project it (one DynamoDB GetItem, one S3 GetObject), index it
//! into the new index with its external version, record the outcome on the
//! Current document with a partial update. No batching, no concurrency.
//! Across clusters the new index is on the target, as a migration's is.

use super::run_cleaned;
use super::throughput::Throughput;
use crate::context::Ctx;
use crate::index::read_mapping;
use crate::index::{records, Target};
use crate::ops::OpsError;
use crate::stores::Projection;
use crate::types::{DocId, IndexName};
use std::time::Instant;

/// Migrates `ids` from `source` into a fresh index (on the target cluster,
/// if any), one at a time, timed; the fresh index is deleted afterwards.
pub async fn measure(ctx: &Ctx, source: &IndexName, ids: &[DocId]) -> Result<Throughput, OpsError> {
    let target = IndexName::parse(format!("{}_serial", ctx.settings.index_prefix))?;
    let on = ctx.target_cluster();
    let work = async {
        ctx.on(on)
            .create_index(&target, &read_mapping(&ctx.settings.mapping)?)
            .await?;
        let clock = Instant::now();
        let migrated = migrate_each(ctx, source, &target, ids).await?;
        Ok(Throughput::new(migrated, clock.elapsed().as_secs_f64()))
    };
    run_cleaned(ctx, work, &[(on, target.clone())]).await
}

async fn migrate_each(
    ctx: &Ctx,
    source: &IndexName,
    target: &IndexName,
    ids: &[DocId],
) -> Result<usize, OpsError> {
    let (from, to) = (Target::Index(source.clone()), Target::Index(target.clone()));
    let on_target = ctx.on(ctx.target_cluster());
    let mut migrated = 0;
    for id in ids {
        // Thrall reads the document it is about to migrate first.
        if ctx.index.get(source, id).await?.is_none() {
            continue;
        }
        let record = match ctx.stores.project_one(id).await? {
            Ok(Projection::Document(doc)) => {
                on_target
                    .put_external(&to, id, doc.version, &doc.to_json())
                    .await?;
                migrated += 1;
                records::success(target)
            }
            Ok(Projection::Deleted { version, .. }) => {
                on_target.delete_external(&to, id, version).await?;
                migrated += 1;
                records::success(target)
            }
            Err(e) => records::failure(target, &records::normalize(&e.to_string(), id)),
        };
        ctx.index.update_partial(&from, id, &record, None).await?;
    }
    Ok(migrated)
}
