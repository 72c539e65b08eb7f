//! `ferry trial`: try a mapping on a random sample of Current before
//! committing hours of backfill to it. The sample is projected from the
//! stores and written into a scratch index created from the mapping, on the
//! cluster a migration would create its index on; no alias is touched and
//! nothing is recorded on the old index.

use super::lifecycle::{keep_tombstones, new_index_name};
use super::{healthy_state, OpsError};
use crate::context::Ctx;
use crate::index::client::segment;
use crate::index::{read_mapping, records, BulkOp, IndexClient, Target};
use crate::stores::Projection;
use crate::types::{DocId, IndexName};
use reqwest::Method;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// The largest sample: one search page.
pub const MAX_SAMPLE: usize = 10_000;

/// Example ids kept per failure group.
const EXAMPLES: usize = 5;

/// What to try.
#[derive(Debug, Clone)]
pub struct TrialOptions {
    /// The mapping file (the configured one when `None`).
    pub mapping: Option<String>,
    /// Documents to sample from Current.
    pub sample: usize,
    /// Keep the scratch index to look at it.
    pub keep: bool,
}

/// Documents that failed for one reason.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FailureGroup {
    /// The normalized message, as failure records group it.
    pub message: String,
    /// Documents with this message.
    pub count: usize,
    /// A few of their ids.
    pub examples: Vec<DocId>,
}

/// Sizes of the projected documents, in bytes of JSON.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Sizes {
    /// Median.
    pub p50: usize,
    /// 90th percentile.
    pub p90: usize,
    /// 99th percentile.
    pub p99: usize,
    /// Largest.
    pub max: usize,
}

/// What a trial found.
#[derive(Debug, Clone, Serialize)]
pub struct TrialReport {
    /// The mapping file tried.
    pub mapping: String,
    /// The scratch index (deleted unless `kept`).
    pub index: String,
    /// The scratch index was kept (`--keep`).
    pub kept: bool,
    /// Documents sampled from Current.
    pub sampled: usize,
    /// Documents the new index accepted.
    pub accepted: usize,
    /// Sampled documents the stores say are deleted (not written).
    pub deleted: usize,
    /// Failures grouped by message, largest first.
    pub failures: Vec<FailureGroup>,
    /// Fields the engine added that the mapping does not declare.
    pub undeclared_fields: Vec<String>,
    /// Sizes of the accepted and refused documents.
    pub sizes: Sizes,
}

impl TrialReport {
    /// Every sampled document that exists was accepted.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Runs a trial; the scratch index is deleted whatever happens unless
/// `keep` is set.
pub async fn trial(ctx: &Ctx, opts: &TrialOptions) -> Result<TrialReport, OpsError> {
    if opts.sample == 0 || opts.sample > MAX_SAMPLE {
        return Err(OpsError::Invalid(format!(
            "--sample must be between 1 and {MAX_SAMPLE}"
        )));
    }
    let path = opts
        .mapping
        .clone()
        .unwrap_or_else(|| ctx.settings.mapping.clone());
    let mut mapping = read_mapping(&path)?;
    keep_tombstones(&mut mapping, ctx.settings.min_gc_deletes)?;
    let st = healthy_state(ctx).await?;
    let current = st
        .current_index()
        .ok_or_else(|| OpsError::Refused("no Current index to sample".into()))?;
    let ids = sample(ctx.client_in(&st, &current), &current, opts.sample).await?;
    let on = ctx.on(ctx.target_cluster());
    let scratch = IndexName::parse(format!(
        "{}_trial",
        new_index_name(&ctx.settings.index_prefix)?
    ))?;
    on.create_index(&scratch, &mapping).await?;
    let result = write_sample(ctx, on, &scratch, &ids, &mapping).await;
    if !opts.keep {
        if let Err(e) = on.delete_index(&scratch).await {
            tracing::warn!(error = %e, index = %scratch, "could not delete the trial index");
        }
    }
    let mut report = result?;
    report.mapping = path;
    report.kept = opts.keep;
    Ok(report)
}

/// `n` ids of `index` picked at random by the engine.
async fn sample(on: &IndexClient, index: &IndexName, n: usize) -> Result<Vec<DocId>, OpsError> {
    let body = json!({
        "size": n,
        "_source": false,
        "query": { "function_score": {
            "query": { "match_all": {} },
            "random_score": { "seed": rand::random::<u32>(), "field": "_seq_no" }
        }}
    });
    let reply = on.search(index, body).await?;
    Ok(reply
        .pointer("/hits/hits")
        .and_then(Value::as_array)
        .map(|hits| {
            hits.iter()
                .filter_map(|h| DocId::parse(h.get("_id")?.as_str()?).ok())
                .collect()
        })
        .unwrap_or_default())
}

/// Projects `ids`, writes them into `scratch` and reads back its mapping.
async fn write_sample(
    ctx: &Ctx,
    on: &IndexClient,
    scratch: &IndexName,
    ids: &[DocId],
    mapping: &Value,
) -> Result<TrialReport, OpsError> {
    let mut failures: BTreeMap<String, (usize, Vec<DocId>)> = BTreeMap::new();
    let mut fail = |message: String, id: &DocId| {
        let g = failures.entry(message).or_default();
        g.0 += 1;
        if g.1.len() < EXAMPLES {
            g.1.push(id.clone());
        }
    };
    let (mut deleted, mut accepted, mut sizes) = (0, 0, Vec::new());
    for chunk in ids.chunks(ctx.settings.batch_size.max(1)) {
        let mut ops = Vec::new();
        for (id, projected) in ctx.stores.project_many(chunk).await? {
            match projected {
                Ok(Projection::Document(d)) => {
                    let doc = d.to_json();
                    sizes.push(doc.to_string().len());
                    ops.push(BulkOp::PutExternal {
                        to: Target::Index(scratch.clone()),
                        id,
                        version: d.version,
                        doc,
                    });
                }
                Ok(Projection::Deleted { .. }) => deleted += 1,
                Err(e) => fail(records::normalize(&e.to_string(), &id), &id),
            }
        }
        for item in on.bulk(&ops).await? {
            match item.result {
                Ok(_) => accepted += 1,
                Err(e) => fail(records::normalize(&e.cause(), &item.id), &item.id),
            }
        }
    }
    let mut failures: Vec<FailureGroup> = failures
        .into_iter()
        .map(|(message, (count, examples))| FailureGroup {
            message,
            count,
            examples,
        })
        .collect();
    failures.sort_by(|a, b| b.count.cmp(&a.count).then(a.message.cmp(&b.message)));
    let engine = on
        .call(
            Method::GET,
            &format!("/{}/_mapping", segment(scratch.as_str())),
            None,
        )
        .await?;
    let found = engine
        .pointer(&format!("/{scratch}/mappings"))
        .map(field_paths)
        .unwrap_or_default();
    let declared = mapping.get("mappings").map(field_paths).unwrap_or_default();
    Ok(TrialReport {
        mapping: String::new(),
        index: scratch.to_string(),
        kept: false,
        sampled: ids.len(),
        accepted,
        deleted,
        failures,
        undeclared_fields: undeclared(&declared, &found),
        sizes: percentiles(sizes),
    })
}

/// Every field path a `mappings` object declares (`a`, `a.b`; multi-fields
/// as `a.keyword`).
pub fn field_paths(mappings: &Value) -> BTreeSet<String> {
    fn walk(props: &Value, prefix: &str, out: &mut BTreeSet<String>) {
        let Some(props) = props.as_object() else {
            return;
        };
        for (name, field) in props {
            let path = format!("{prefix}{name}");
            out.insert(path.clone());
            for nested in ["properties", "fields"] {
                if let Some(p) = field.get(nested) {
                    walk(p, &format!("{path}."), out);
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    if let Some(p) = mappings.get("properties") {
        walk(p, "", &mut out);
    }
    out
}

/// Paths the engine mapped that the mapping does not declare, without the
/// children of an undeclared path (a dynamic `title` brings `title.keyword`).
pub fn undeclared(declared: &BTreeSet<String>, found: &BTreeSet<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for path in found.difference(declared) {
        if !out.iter().any(|p| path.starts_with(&format!("{p}."))) {
            out.push(path.clone());
        }
    }
    out
}

/// Nearest-rank percentiles.
fn percentiles(mut sizes: Vec<usize>) -> Sizes {
    if sizes.is_empty() {
        return Sizes::default();
    }
    sizes.sort_unstable();
    let at = |q: f64| sizes[((q * sizes.len() as f64).ceil() as usize).clamp(1, sizes.len()) - 1];
    Sizes {
        p50: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
        max: sizes[sizes.len() - 1],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undeclared_fields_are_named_once_at_their_top() {
        let declared = field_paths(&json!({"properties": {
            "title": {"type": "text", "fields": {"raw": {"type": "keyword"}}},
            "meta": {"properties": {"a": {"type": "long"}}}
        }}));
        let found = field_paths(&json!({"properties": {
            "title": {"type": "text", "fields": {"raw": {"type": "keyword"}}},
            "meta": {"properties": {"a": {"type": "long"}, "b": {"type": "text", "fields": {"keyword": {"type": "keyword"}}}}},
            "extra": {"properties": {"x": {"type": "long"}}}
        }}));
        assert_eq!(undeclared(&declared, &found), vec!["extra", "meta.b"]);
    }

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let s = percentiles((1..=100).collect());
        assert_eq!(
            s,
            Sizes {
                p50: 50,
                p90: 90,
                p99: 99,
                max: 100
            }
        );
        assert_eq!(percentiles(vec![]), Sizes::default());
        assert_eq!(percentiles(vec![7]).p50, 7);
    }
}
