//! The edit path (high priority): project from the stores, then write the
//! Migration index (external version), the Current index (compare-and-set,
//! marking `migratedTo`), and the Historical index inside the rollback
//! window — in that order, each through its alias so that an alias switch
//! in the middle of a message still reaches every index it must.

use super::context::Ctx;
use crate::index::records;
use crate::index::{IndexError, StoredDoc, Target, Write};
use crate::queue::DocMessage;
use crate::retry::Transient;
use crate::stores::{Projection, ProjectionError, StoreError};
use crate::types::{DocId, IndexName};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use thiserror::Error;

/// Compare-and-set attempts before giving up on a hot document.
const CAS_ATTEMPTS: u32 = 20;

/// Why an edit could not be applied.
#[derive(Debug, Error)]
pub enum EditError {
    /// The stores do not yield a document: permanent for this message.
    #[error("cannot project the document: {0}")]
    Projection(#[from] ProjectionError),
    /// A store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// Other writers kept changing the document.
    #[error("document kept changing during {CAS_ATTEMPTS} compare-and-set attempts")]
    Contended,
    /// The stores moved on while this edit was being written: apply again.
    #[error("the document changed in the stores while it was written; applying the newer version")]
    Superseded,
    /// The Current alias is missing: nothing can be written safely.
    #[error("the Current alias does not exist; fix the aliases (see `ferry status`)")]
    NoCurrent,
}

impl Transient for EditError {
    fn is_transient(&self) -> bool {
        match self {
            EditError::Projection(_) => false,
            EditError::Store(e) => e.is_transient(),
            EditError::Index(e) => e.is_transient(),
            EditError::Contended | EditError::NoCurrent | EditError::Superseded => true,
        }
    }
}

/// What an applied edit did, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Written into the Migration index (or already newer there).
    pub migration: bool,
    /// Written into the Current index (false: already as new).
    pub current: bool,
    /// Written into the Historical index.
    pub historical: bool,
}

/// Applies one upload, edit or delete.
pub async fn apply(ctx: &Ctx, msg: &DocMessage) -> Result<Applied, EditError> {
    let mut laps = Laps::start();
    let projection = ctx.stores.project_one(&msg.id).await??;
    laps.lap("project");
    let mut state = ctx
        .state
        .get(&ctx.index, &ctx.aliases, &ctx.control)
        .await?;
    let mut applied = Applied::default();

    // 1. Migration first: once the alias switch happens, this is Current.
    let mut marked: Option<IndexName> = None;
    let migration = state
        .migration()
        .filter(|_| !crate::fault::active("skip-dual-write"));
    if let Some(target) = migration {
        let to = Target::Alias(ctx.aliases.migration.clone());
        let w = match &projection {
            Projection::Document(d) => {
                ctx.index
                    .put_external(&to, &msg.id, d.version, &d.to_json())
                    .await?
            }
            Projection::Deleted { version, .. } => {
                ctx.index.delete_external(&to, &msg.id, *version).await?
            }
        };
        match w {
            Write::Done | Write::Stale => {
                applied.migration = true;
                marked = Some(target);
            }
            _ => {
                // The alias moved under us (completion or abandon): read the
                // state again, so the Historical decision below is current.
                state = ctx
                    .state
                    .fresh(&ctx.index, &ctx.aliases, &ctx.control)
                    .await?;
            }
        }
    }

    laps.lap("migration");

    // 2. Current, compare-and-set, carrying the outcome record.
    let current = Target::Alias(ctx.aliases.current.clone());
    applied.current = write_cas(ctx, &current, &msg.id, &projection, marked.as_ref())
        .await?
        .ok_or(EditError::NoCurrent)?;
    laps.lap("current");

    // Current keeps no tombstones: if another worker applied a newer state
    // (a delete) just before this write, this write may have brought back
    // an older one. The stores changed before that worker wrote, so reading
    // them now sees it; applying again lets the newer state win.
    if applied.current && latest_version(ctx, &msg.id).await? > projection.version() {
        return Err(EditError::Superseded);
    }
    laps.lap("recheck");

    // 3. Historical, while a rollback is still possible. An edit that wrote
    // a migration may straddle the completion switch: read the state afresh
    // so that it also reaches the index that just became Historical.
    if applied.migration {
        state = ctx
            .state
            .fresh(&ctx.index, &ctx.aliases, &ctx.control)
            .await?;
    }
    if state.historical_writes() {
        let historical = Target::Alias(ctx.aliases.historical.clone());
        // Historical's records are about the index that replaced it: this
        // document is now in Current, so it counts as migrated there.
        let current = state.aliases.current_index();
        applied.historical = write_cas(ctx, &historical, &msg.id, &projection, current.as_ref())
            .await?
            .unwrap_or(false);
    }
    laps.lap("historical");
    laps.report(&msg.id);
    Ok(applied)
}

/// An edit slower than this is logged with the time of each step.
const SLOW_EDIT: Duration = Duration::from_secs(1);

/// Where an edit's time went, step by step: a histogram per step, and a
/// warning naming the steps of a slow edit, so that an operator can tell
/// a slow store from a slow index.
struct Laps {
    last: Instant,
    steps: Vec<(&'static str, Duration)>,
}

impl Laps {
    fn start() -> Self {
        Self {
            last: Instant::now(),
            steps: Vec::with_capacity(5),
        }
    }

    fn lap(&mut self, step: &'static str) {
        let now = Instant::now();
        let took = now - self.last;
        self.last = now;
        metrics::histogram!("ferry_edit_step_seconds", "step" => step).record(took.as_secs_f64());
        self.steps.push((step, took));
    }

    /// Called after the last lap, so the steps add up to the whole edit.
    fn report(&self, id: &DocId) {
        let total: Duration = self.steps.iter().map(|(_, took)| *took).sum();
        if total >= SLOW_EDIT {
            let steps: Vec<String> = self
                .steps
                .iter()
                .map(|(step, took)| format!("{step} {} ms", took.as_millis()))
                .collect();
            tracing::warn!(%id, total_ms = total.as_millis() as u64, steps = %steps.join(", "), "slow edit");
        }
    }
}

/// The version the stores hold now (a missing item counts as version 0).
async fn latest_version(ctx: &Ctx, id: &DocId) -> Result<crate::types::Version, EditError> {
    match ctx.stores.edits.get(id).await {
        Ok(item) => Ok(item.version),
        Err(StoreError::NotFound { .. }) => Ok(crate::types::Version::ZERO),
        Err(e) => Err(e.into()),
    }
}

/// Writes `projection` into the index behind `to` unless that index already
/// holds this version or a newer one. `Ok(None)` when the alias is missing,
/// `Ok(Some(written))` otherwise.
pub async fn write_cas(
    ctx: &Ctx,
    to: &Target,
    id: &DocId,
    projection: &Projection,
    mark: Option<&IndexName>,
) -> Result<Option<bool>, EditError> {
    let version = projection.version().get();
    for _ in 0..CAS_ATTEMPTS {
        let stored = match ctx.index.get(to.name(), id).await {
            Ok(s) => s,
            Err(e) if e.is_missing_index() => return Ok(None),
            Err(e) if e.kind() == Some("invalid_index_name_exception") => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if stored.as_ref().is_some_and(|s| s.version() >= version) {
            return Ok(Some(false));
        }
        let seen = stored.as_ref().map(|s| (s.seq_no, s.primary_term));
        let w = match projection {
            Projection::Document(d) => {
                let body = with_outcome(d.to_json(), stored.as_ref(), mark);
                ctx.index.put_cas(to, id, seen, &body).await?
            }
            Projection::Deleted { .. } => match seen {
                None => return Ok(Some(false)),
                Some((seq, term)) => ctx.index.delete_cas(to, id, seq, term).await?,
            },
        };
        match w {
            Write::Done => return Ok(Some(true)),
            Write::Missing => return Ok(Some(false)),
            Write::NoAlias => {
                ctx.state.invalidate().await;
                return Ok(None);
            }
            // Changed since we read it, or the alias moved: read again.
            Write::Conflict | Write::Stale => ctx.state.invalidate().await,
        }
    }
    Err(EditError::Contended)
}

/// The document with the stored outcome records kept, and `migratedTo`
/// set when this edit also reached the migration index.
fn with_outcome(mut doc: Value, stored: Option<&StoredDoc>, mark: Option<&IndexName>) -> Value {
    let mut es_info = stored
        .and_then(|s| s.source.get("esInfo").cloned())
        .unwrap_or_else(|| json!({}));
    if let Some(target) = mark {
        if let Some(m) = records::success(target).pointer("/esInfo/migration") {
            merge(&mut es_info, &json!({ "migration": m }));
        }
    }
    if es_info.as_object().is_some_and(|o| !o.is_empty()) {
        doc["esInfo"] = es_info;
    }
    doc
}

/// Deep-merges `patch` into `base` (objects merged, everything else replaced).
pub fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_records_survive_an_edit_and_the_mark_is_added() {
        let stored = StoredDoc {
            index: "old".into(),
            id: DocId::parse("a").unwrap(),
            seq_no: 1,
            primary_term: 1,
            source: json!({"esInfo": {"migration": {"failures": {"old_target": "boom"}}}}),
        };
        let t = IndexName::parse("images_2").unwrap();
        let out = with_outcome(json!({"id": "a"}), Some(&stored), Some(&t));
        assert_eq!(out["esInfo"]["migration"]["migratedTo"], "images_2");
        assert_eq!(out["esInfo"]["migration"]["failures"]["old_target"], "boom");
        assert!(out["esInfo"]["migration"]["failures"]["images_2"].is_null());
        assert!(with_outcome(json!({"id": "a"}), None, None)
            .get("esInfo")
            .is_none());
    }
}
