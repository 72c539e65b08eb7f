//! The edit path (high priority): project from the stores, then write every
//! index a reader may use — Migration (external version), Current
//! (compare-and-set, with the outcome record), and Historical inside the
//! rollback window — in that order, through their aliases.
//!
//! The rule that makes alias changes safe: an edit is done only when, after
//! its writes, a **fresh** read of the aliases shows that every index a
//! reader may use holds the document at the stores' version or newer (or
//! does not hold a deleted one). A worker's cached view can be older than
//! any alias change (start, complete, rollback, abandon); if the aliases
//! moved under the edit, it writes the indices it missed. Then the stores'
//! version is read again: indices written by compare-and-set keep no
//! tombstones, so a write that lost a race with a newer change (a delete)
//! is undone by applying again.

use super::laps::Laps;
use crate::context::state::{Snapshot, StateError};
use crate::context::Ctx;
use crate::index::records;
use crate::index::{IndexClient, IndexError, StoredDoc, Target, Write};
use crate::queue::DocMessage;
use crate::retry::Transient;
use crate::stores::{Projection, ProjectionError, StoreError};
use crate::types::{DocId, IndexName};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use thiserror::Error;

/// Compare-and-set attempts before giving up on a hot document.
const CAS_ATTEMPTS: u32 = 20;

/// Rounds of writes before an edit whose aliases keep moving is retried
/// later (each alias change needs one more round at most).
const ROUNDS: usize = 4;

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
    /// The migration state could not be read.
    #[error(transparent)]
    State(#[from] StateError),
    /// Other writers kept changing the document.
    #[error("document kept changing during {CAS_ATTEMPTS} compare-and-set attempts")]
    Contended,
    /// The stores moved on while this edit was being written: apply again.
    #[error("the document changed in the stores while it was written; applying the newer version")]
    Superseded,
    /// The aliases kept changing during the edit.
    #[error("the aliases changed during each of {ROUNDS} rounds of writes; retrying")]
    Unsettled,
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
            EditError::State(e) => e.is_transient(),
            EditError::Contended
            | EditError::NoCurrent
            | EditError::Superseded
            | EditError::Unsettled => true,
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
    /// Rounds of writes (more than one: the aliases moved during the edit).
    pub rounds: usize,
}

/// Applies one upload, edit or delete.
pub async fn apply(ctx: &Ctx, msg: &DocMessage) -> Result<Applied, EditError> {
    let mut laps = Laps::start();
    let projection = ctx.stores.project_one(&msg.id).await??;
    laps.lap("project");
    let mut edit = Edit {
        ctx,
        id: &msg.id,
        projection: &projection,
        covered: BTreeSet::new(),
        migrated: None,
        rejected: None,
        current: None,
        current_mark: None,
        named: BTreeSet::new(),
        applied: Applied::default(),
    };
    let mut state = ctx
        .state
        .get(&ctx.index, &ctx.aliases, &ctx.control)
        .await?;
    loop {
        edit.round(&state, &mut laps).await?;
        edit.applied.rounds += 1;
        if crate::fault::active("skip-fresh-check") {
            break;
        }
        let fresh = ctx
            .state
            .fresh(&ctx.index, &ctx.aliases, &ctx.control)
            .await?;
        laps.lap("fresh");
        let missed: Vec<String> = fresh
            .readable()
            .into_iter()
            .filter(|i| !edit.covered.contains(i))
            .map(|i| i.to_string())
            .collect();
        if missed.is_empty() {
            break;
        }
        if edit.applied.rounds >= ROUNDS {
            return Err(EditError::Unsettled);
        }
        tracing::info!(id = %msg.id, missed = %missed.join(", "), "the aliases moved during an edit; writing the indices it missed");
        state = fresh;
    }

    // Current and Historical keep no tombstones: if another worker applied
    // a newer state (a delete) just before one of this edit's writes, that
    // write may have brought back an older one. The stores changed before
    // that worker wrote, so reading them now sees it; applying again lets
    // the newer state win.
    if latest_version(ctx, &msg.id).await? > projection.version() {
        return Err(EditError::Superseded);
    }
    laps.lap("recheck");
    laps.report(&msg.id);
    Ok(edit.applied)
}

/// One edit on its way through the indices.
struct Edit<'a> {
    ctx: &'a Ctx,
    id: &'a DocId,
    projection: &'a Projection,
    /// Concrete indices known to hold this version or a newer one (for a
    /// delete: not to hold an older one), or to have refused it with the
    /// refusal recorded.
    covered: BTreeSet<IndexName>,
    /// The migration index this edit covered: Current's record names it.
    migrated: Option<IndexName>,
    /// The migration index that refused the document, and why.
    rejected: Option<(IndexName, String)>,
    /// The index Current resolved to: Historical's record names it.
    current: Option<IndexName>,
    /// The migration index Current's record names, as this edit left it.
    current_mark: Option<IndexName>,
    /// (old, new): old Currents (after a completion across clusters) and
    /// Historical whose record names the new Current, as this edit left
    /// them. Per pair: the Current a record must name can change between
    /// rounds (a view between completion's steps has no new Current yet).
    named: BTreeSet<(IndexName, IndexName)>,
    applied: Applied,
}

impl Edit<'_> {
    /// Writes every index the view `state` names that is not covered yet.
    async fn round(&mut self, state: &Snapshot, laps: &mut Laps) -> Result<(), EditError> {
        let ctx = self.ctx;
        let migration = state
            .migration()
            .filter(|_| !crate::fault::active("skip-dual-write"));
        let cluster = |i: &IndexName| ctx.client_in(&state.aliases, i);
        if let Some(target) = migration.filter(|t| !self.covered.contains(t)) {
            self.migration(cluster(&target), &target).await?;
        }
        laps.lap("migration");

        let currents = state.aliases.current_indices();
        // Unknown in a stale view: the alias is resolved at write time.
        let on_current = currents.first().map_or(&ctx.index, cluster);
        if currents.first().is_some_and(|c| self.covered.contains(c)) {
            self.remark(on_current).await?;
        } else {
            let current = Target::Alias(ctx.aliases.current.clone());
            let mark = match (&self.migrated, &self.rejected) {
                (Some(m), _) => Mark::MigratedTo(m),
                (None, Some((t, why))) => Mark::Failed(t, why),
                (None, None) => Mark::Nothing,
            };
            let done = write_cas(ctx, on_current, &current, self.id, self.projection, mark)
                .await?
                .ok_or(EditError::NoCurrent)?;
            self.applied.current |= done.wrote;
            self.current = Some(done.index.clone());
            // Unwritten (already as new), its record is unknown here.
            self.current_mark = self.migrated.clone().filter(|_| done.wrote);
            self.covered.insert(done.index);
            self.remark(on_current).await?;
        }
        laps.lap("current");

        // Historical, and after a completion across clusters the old index,
        // which keeps Current on its cluster until readers have moved. Their
        // records are about the index that replaced them: this document is
        // in Current, so it counts as migrated there.
        let historical = state
            .aliases
            .historical_index()
            .filter(|_| state.historical_writes())
            .map(|h| (h, &ctx.aliases.historical));
        let old_currents = currents
            .iter()
            .skip(1)
            .map(|c| (c.clone(), &ctx.aliases.current));
        for (index, alias) in old_currents.chain(historical) {
            let to = Target::Alias(alias.clone());
            // The index that replaced this one (never itself: in a view
            // between completion's steps the old index is the only Current
            // and also Historical).
            let new = self.current.clone().filter(|c| c != &index);
            if self.covered.contains(&index) {
                // Written in an earlier round (as the only Current then, or
                // through an alias that had moved to it): its record must
                // name the index that replaced it, or a rollback would
                // queue it again.
                let Some(new) = new else {
                    continue;
                };
                if self.named.insert((index.clone(), new.clone())) {
                    let version = self.projection.version().get();
                    mark_migrated(cluster(&index), &to, self.id, version, &new).await?;
                }
                continue;
            }
            let mark = new.as_ref().map_or(Mark::Nothing, Mark::MigratedTo);
            if let Some(done) =
                write_cas(ctx, cluster(&index), &to, self.id, self.projection, mark).await?
            {
                self.applied.historical |= done.wrote;
                // The alias may have moved since the view was read: what
                // matters is the index it landed on.
                if let Some(new) = new.filter(|n| n != &done.index) {
                    // Unwritten (already as new), its record is whatever an
                    // earlier write left: make sure it names `new`.
                    if !done.wrote {
                        let version = self.projection.version().get();
                        mark_migrated(cluster(&index), &to, self.id, version, &new).await?;
                    }
                    self.named.insert((done.index.clone(), new));
                }
                self.covered.insert(done.index);
            }
        }
        laps.lap("historical");
        Ok(())
    }

    /// Records on Current that this edit covered the migration index when
    /// Current was not rewritten with that record (already as new, or
    /// covered in an earlier round, before the aliases showed the
    /// migration), so the scanner need not queue the document again. Only
    /// while Current still holds this edit's version.
    async fn remark(&mut self, on: &IndexClient) -> Result<(), EditError> {
        let (Some(target), Some(_)) = (&self.migrated, &self.current) else {
            return Ok(());
        };
        if self.current_mark.as_ref() == Some(target) {
            return Ok(());
        }
        let to = Target::Alias(self.ctx.aliases.current.clone());
        let version = self.projection.version().get();
        mark_migrated(on, &to, self.id, version, target).await?;
        self.current_mark = Some(target.clone());
        Ok(())
    }

    /// Writes the Migration index with an external version.
    async fn migration(&mut self, on: &IndexClient, target: &IndexName) -> Result<(), EditError> {
        let ctx = self.ctx;
        let to = Target::Alias(ctx.aliases.migration.clone());
        let landed = match self.projection {
            Projection::Document(d) => {
                match on.put_external(&to, self.id, d.version, &d.to_json()).await {
                    Ok(l) => l,
                    Err(e) if !e.is_transient() => {
                        // The new mapping refuses the document. Current still
                        // gets the edit, with the failure recorded on it, as
                        // the migration path records it; completion waits
                        // for it to be fixed and retried.
                        let why = records::normalize(&e.cause(), self.id);
                        tracing::warn!(id = %self.id, target = %target, error = %why, "the migration index refuses this document; recording the failure");
                        self.rejected = Some((target.clone(), why));
                        self.covered.insert(target.clone());
                        return Ok(());
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Projection::Deleted { version, .. } => {
                on.delete_external(&to, self.id, *version).await?
            }
        };
        let index = match landed.write {
            Write::Done => landed.index,
            // 409 says `_version` is as new or newer; but on an index that
            // has been Current (before a rollback), compare-and-set writes
            // and outcome records raised `_version` above the content
            // version. Compare the stored content version instead.
            Write::Stale => write_cas(ctx, on, &to, self.id, self.projection, Mark::Nothing)
                .await?
                .map(|done| done.index),
            // The alias moved (completion, abandon): the fresh check after
            // this round finds which index still needs the edit.
            Write::NoAlias | Write::Missing | Write::Conflict => None,
        };
        if let Some(index) = index {
            self.applied.migration = true;
            self.rejected = None;
            self.migrated = Some(index.clone());
            self.covered.insert(index);
        }
        Ok(())
    }
}

/// Records on the document behind `to` that it is migrated to `target`,
/// if it still holds `version` and no such record yet.
async fn mark_migrated(
    on: &IndexClient,
    to: &Target,
    id: &DocId,
    version: u64,
    target: &IndexName,
) -> Result<(), EditError> {
    let found = on.lookup(to.name(), id).await?;
    // A record never names the index it is in (the alias moved to it).
    if found.index.as_ref() == Some(target) {
        return Ok(());
    }
    let unmarked = |d: &StoredDoc| {
        d.version() == version
            && records::outcome_of(&d.source, target) != records::Outcome::Migrated
    };
    if let Some(doc) = found.doc.filter(unmarked) {
        let seen = Some(doc.seq_term());
        // A conflict means a newer edit wrote it and leaves its own record.
        on.update_partial(to, id, &records::success(target), seen)
            .await?;
    }
    Ok(())
}

/// The version the stores hold now (a missing item counts as version 0).
async fn latest_version(ctx: &Ctx, id: &DocId) -> Result<crate::types::Version, EditError> {
    match ctx.stores.edits.get(id).await {
        Ok(item) => Ok(item.version),
        Err(StoreError::NotFound { .. }) => Ok(crate::types::Version::ZERO),
        Err(e) => Err(e.into()),
    }
}

/// The outcome record an edit leaves on the document it writes.
#[derive(Debug, Clone, Copy)]
pub enum Mark<'a> {
    /// None: a stored `migratedTo` is removed, since it would claim that an
    /// index this edit did not write holds this version.
    Nothing,
    /// This edit also wrote the named index.
    MigratedTo(&'a IndexName),
    /// The named index refused the document, with this reason.
    Failed(&'a IndexName, &'a str),
}

/// Where a compare-and-set edit landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cas {
    /// The concrete index now holding this version or a newer one.
    pub index: IndexName,
    /// Whether this call wrote it (false: it already was as new).
    pub wrote: bool,
}

/// Writes `projection` into the index behind `to` on the cluster `on`
/// unless that index already holds this version or a newer one. `Ok(None)`
/// when the alias is missing.
pub async fn write_cas(
    ctx: &Ctx,
    on: &IndexClient,
    to: &Target,
    id: &DocId,
    projection: &Projection,
    mark: Mark<'_>,
) -> Result<Option<Cas>, EditError> {
    let version = projection.version().get();
    for _ in 0..CAS_ATTEMPTS {
        let found = match on.lookup(to.name(), id).await {
            Ok(s) => s,
            Err(e) if e.is_missing_index() => return Ok(None),
            Err(e) if e.kind() == Some("invalid_index_name_exception") => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let Some(read_from) = found.index else {
            return Err(EditError::Index(IndexError::Decode {
                op: "GET document".into(),
                detail: "the reply names no index".into(),
            }));
        };
        let stored = found.doc;
        let as_new = |index| {
            Ok(Some(Cas {
                index,
                wrote: false,
            }))
        };
        if stored.as_ref().is_some_and(|s| s.version() >= version) {
            return as_new(read_from);
        }
        let seen = stored.as_ref().map(StoredDoc::seq_term);
        // A record never names the index it is in: the alias moved to the
        // index the view knew as the one that replaced this one.
        let mark = match mark {
            Mark::MigratedTo(t) if *t == read_from => Mark::Nothing,
            other => other,
        };
        let landed = match projection {
            Projection::Document(d) => {
                let body = with_outcome(d.to_json(), stored.as_ref(), mark);
                on.put_cas(to, id, seen, &body).await?
            }
            Projection::Deleted { .. } => match seen {
                None => return as_new(read_from),
                Some(seen) => on.delete_cas(to, id, seen).await?,
            },
        };
        match landed.write {
            Write::Done => {
                return Ok(Some(Cas {
                    index: landed.index.unwrap_or(read_from),
                    wrote: true,
                }))
            }
            Write::Missing => return as_new(read_from),
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

/// The document with the stored outcome records kept, except `migratedTo`,
/// which only `mark` sets (a stored one was about an older version).
fn with_outcome(mut doc: Value, stored: Option<&StoredDoc>, mark: Mark<'_>) -> Value {
    let mut es_info = stored
        .and_then(|s| s.source.get("esInfo").cloned())
        .unwrap_or_else(|| json!({}));
    if let Some(m) = es_info.get_mut("migration").and_then(Value::as_object_mut) {
        m.remove("migratedTo");
    }
    let record = match mark {
        Mark::Nothing => None,
        Mark::MigratedTo(target) => Some(records::success(target)),
        Mark::Failed(target, why) => Some(records::failure(target, why)),
    };
    if let Some(m) = record.as_ref().and_then(|r| r.pointer("/esInfo/migration")) {
        merge(&mut es_info, &json!({ "migration": m }));
    }
    if let Some(m) = es_info.get("migration").and_then(Value::as_object) {
        if m.is_empty() {
            es_info.as_object_mut().map(|o| o.remove("migration"));
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

    fn stored(source: Value) -> StoredDoc {
        StoredDoc {
            index: "old".into(),
            id: DocId::parse("a").unwrap(),
            seq_no: 1,
            primary_term: 1,
            source,
        }
    }

    #[test]
    fn outcome_records_survive_an_edit_and_the_mark_is_added() {
        let stored = stored(json!({"esInfo": {"migration": {"failures": {"old_target": "boom"}}}}));
        let t = IndexName::parse("images_2").unwrap();
        let out = with_outcome(json!({"id": "a"}), Some(&stored), Mark::MigratedTo(&t));
        assert_eq!(out["esInfo"]["migration"]["migratedTo"], "images_2");
        assert_eq!(out["esInfo"]["migration"]["failures"]["old_target"], "boom");
        assert!(out["esInfo"]["migration"]["failures"]["images_2"].is_null());
        assert!(with_outcome(json!({"id": "a"}), None, Mark::Nothing)
            .get("esInfo")
            .is_none());
    }

    #[test]
    fn a_stale_mark_is_dropped_and_a_refusal_recorded() {
        let stored = stored(json!({"esInfo": {"migration": {"migratedTo": "images_2"}}}));
        let t = IndexName::parse("images_2").unwrap();
        let out = with_outcome(json!({"id": "a"}), Some(&stored), Mark::Nothing);
        assert!(out.get("esInfo").is_none(), "{out}");
        let out = with_outcome(json!({"id": "a"}), Some(&stored), Mark::Failed(&t, "bad"));
        assert_eq!(out["esInfo"]["migration"]["failures"]["images_2"], "bad");
        assert!(out["esInfo"]["migration"].get("migratedTo").is_none());
    }
}
