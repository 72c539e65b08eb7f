//! Sample data: `ferry seed` writes N realistic documents — originals in S3,
//! edits items in DynamoDB and the matching legacy documents in the index
//! behind the Current alias — deterministically for a given seed. A few can
//! be deliberately broken so that failure reports show something real.

pub mod data;
pub mod pipeline;

use crate::context::Ctx;
use crate::index::aliases::AliasAction;
use crate::index::read_mapping;
use crate::index::{BulkOp, Target};
use crate::ops::OpsError;
use crate::stores::edits::to_attr;
use crate::types::{DocId, IndexName, Version};
use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

pub use data::{Broken, SampleDoc};

/// What `seed` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct Seeded {
    /// The index behind the Current alias.
    pub current: String,
    /// Documents written.
    pub documents: usize,
    /// The deliberately broken ones, with how.
    pub broken: Vec<(DocId, Broken)>,
}

/// Options of `ferry seed`.
#[derive(Debug, Clone)]
pub struct SeedOptions {
    /// How many documents.
    pub count: usize,
    /// Random seed: the same seed writes the same documents.
    pub seed: u64,
    /// How many of them are broken on purpose.
    pub broken: usize,
    /// Prefix of the generated ids.
    pub id_prefix: String,
}

/// Writes the sample documents; creates the Current index (from the mapping
/// file) and the bucket and tables if they are missing.
pub async fn seed(ctx: &Ctx, opts: &SeedOptions) -> Result<Seeded, OpsError> {
    crate::stores::setup::ensure_all(&ctx.settings).await?;
    let current = ensure_current(ctx).await?;
    let docs: Vec<SampleDoc> = (0..opts.count)
        .map(|i| data::sample(opts.seed, i, opts.count, opts.broken, &opts.id_prefix))
        .collect();
    let conc = ctx.settings.store_concurrency.max(1);

    futures::stream::iter(
        docs.iter()
            .filter_map(|d| d.original.clone().map(|o| (d.id.clone(), o))),
    )
    .map(|(id, body)| async move { ctx.stores.originals.put(&id, body.into()).await })
    .buffer_unordered(conc)
    .try_collect::<Vec<()>>()
    .await?;

    let table = ctx.settings.dynamo_table.clone();
    let ddb = ctx.stores.edits.client().clone();
    futures::stream::iter(docs.chunks(25).map(|c| c.to_vec()))
        .map(|chunk| {
            let (ddb, table) = (ddb.clone(), table.clone());
            async move {
                let mut requests: Vec<WriteRequest> = chunk
                    .iter()
                    .filter_map(|d| {
                        let item = d
                            .item
                            .iter()
                            .map(|(k, v)| (k.clone(), to_attr(v)))
                            .collect();
                        PutRequest::builder().set_item(Some(item)).build().ok()
                    })
                    .map(|p| WriteRequest::builder().put_request(p).build())
                    .collect();
                while !requests.is_empty() {
                    let out = ddb
                        .batch_write_item()
                        .request_items(&table, requests)
                        .send()
                        .await
                        .map_err(|e| crate::stores::aws::sdk_error("DynamoDB BatchWriteItem", e))?;
                    requests = out
                        .unprocessed_items
                        .and_then(|mut m| m.remove(&table))
                        .unwrap_or_default();
                }
                Ok::<(), crate::stores::StoreError>(())
            }
        })
        .buffer_unordered(conc)
        .try_collect::<Vec<()>>()
        .await?;

    for chunk in docs.chunks(500) {
        let ops: Vec<BulkOp> = chunk
            .iter()
            .map(|d| BulkOp::PutExternal {
                to: Target::Index(current.clone()),
                id: d.id.clone(),
                version: Version::new(d.version).unwrap_or(Version::FIRST),
                doc: d.legacy.clone(),
            })
            .collect();
        for item in ctx.index.bulk(&ops).await? {
            item.result?;
        }
    }
    ctx.index.refresh(&current).await?;
    Ok(Seeded {
        current: current.to_string(),
        documents: docs.len(),
        broken: docs
            .iter()
            .filter_map(|d| d.broken.map(|b| (d.id.clone(), b)))
            .collect(),
    })
}

/// The index behind the Current alias, created as `<prefix>_legacy` with the
/// mapping file if no index carries the alias yet.
pub async fn ensure_current(ctx: &Ctx) -> Result<IndexName, OpsError> {
    let st = ctx.index.alias_state(&ctx.aliases).await?;
    if let Some(c) = st.current_index() {
        return Ok(c);
    }
    if !st.current.is_empty() {
        return Err(OpsError::Refused(format!(
            "{} indices carry the Current alias; fix the aliases first",
            st.current.len()
        )));
    }
    let name = IndexName::parse(format!(
        "{}_legacy",
        ctx.settings.index_prefix.to_lowercase()
    ))?;
    if !ctx.index.exists(&name).await? {
        ctx.index
            .create_index(&name, &read_mapping(&ctx.settings.mapping)?)
            .await?;
    }
    ctx.index
        .update_aliases(&[AliasAction::Add {
            index: name.clone(),
            alias: ctx.aliases.current.clone(),
        }])
        .await?;
    Ok(name)
}
