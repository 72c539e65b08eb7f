//! Changing the migration state: start, pause, resume, preview, unpreview,
//! complete, abandon, rollback. Each change is one atomic `_aliases` request
//! (one per cluster, in a safe order, when the migration goes to another
//! cluster: `super::across`).

use super::compare::Spec;
pub use super::Changed;
use super::{changed, healthy_state, OpsError};
use crate::context::Ctx;
use crate::index::aliases::{AliasAction, AliasState, Flag};
use crate::index::read_mapping;
use crate::index::records;
use crate::stores::control::{now_ms, Completion};
use crate::types::IndexName;
use serde::Serialize;
use serde_json::{json, Value};

fn need_migration(st: &AliasState, ctx: &Ctx) -> Result<IndexName, OpsError> {
    st.migration_index().ok_or_else(|| {
        OpsError::Refused(format!(
            "no migration is in progress (no index carries {}); start one with `ferry start`",
            ctx.aliases.migration
        ))
    })
}

fn need_current(st: &AliasState) -> Result<IndexName, OpsError> {
    st.current_index()
        .ok_or_else(|| OpsError::Refused("no Current index".into()))
}

/// The name `start` gives a new index: `<prefix>_<UTC timestamp>`.
pub fn new_index_name(prefix: &str) -> Result<IndexName, OpsError> {
    let stamp = chrono::Utc::now().format("%Y%m%dt%H%M%S%3fz");
    IndexName::parse(format!("{}_{stamp}", prefix.to_lowercase())).map_err(OpsError::from)
}

/// Makes the new index keep delete tombstones for at least `min`: a
/// versioned delete's tombstone is what refuses an older write that
/// arrives later, and the engine's default (60 s) is shorter than a message
/// can wait. Sets `index.gc_deletes` when the mapping file does not;
/// refuses a shorter one.
pub fn keep_tombstones(mapping: &mut Value, min: std::time::Duration) -> Result<(), OpsError> {
    let invalid = |why: String| OpsError::Invalid(why);
    let Some(root) = mapping.as_object_mut() else {
        return Err(invalid("the mapping file must hold a JSON object".into()));
    };
    let settings = root.entry("settings").or_insert_with(|| json!({}));
    let given = [
        settings.pointer("/index/gc_deletes"),
        settings.get("index.gc_deletes"),
        settings.get("gc_deletes"),
    ]
    .into_iter()
    .flatten()
    .next()
    .cloned();
    match given {
        None => {
            let kept = json!(format!("{}ms", min.as_millis()));
            if let Some(index) = settings.get_mut("index").and_then(Value::as_object_mut) {
                index.insert("gc_deletes".into(), kept);
                return Ok(());
            }
            let Some(s) = settings.as_object_mut() else {
                return Err(invalid(
                    "the mapping file's \"settings\" must be an object".into(),
                ));
            };
            s.insert("index.gc_deletes".into(), kept);
            Ok(())
        }
        Some(v) => {
            let text = v
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string());
            let kept = humantime::parse_duration(&text).map_err(|e| {
                invalid(format!(
                    "index.gc_deletes \"{text}\" in the mapping file is not a duration: {e}"
                ))
            })?;
            if kept < min {
                return Err(invalid(format!(
                    "index.gc_deletes is {text} in the mapping file, shorter than FERRY_MIN_GC_DELETES ({}): deletes would stop refusing older writes that are still queued. Raise it or leave it out (ferry sets it)",
                    humantime::format_duration(min)
                )));
            }
            Ok(())
        }
    }
}

/// Creates a new index from the mapping and puts the Migration alias on it.
pub async fn start(ctx: &Ctx, mapping_path: &str) -> Result<Changed, OpsError> {
    start_with(ctx, mapping_path, &super::backfill::Profile::default()).await
}

/// [`start`], with a bulk-load profile for the new index (the mapping
/// file's `backfill` object, overridden by `backfill`'s values).
pub async fn start_with(
    ctx: &Ctx,
    mapping_path: &str,
    backfill: &super::backfill::Profile,
) -> Result<Changed, OpsError> {
    // Refuses an engine ferry does not support, before anything changes.
    ctx.index.flavor().await?;
    let on_target = ctx.on(ctx.target_cluster());
    on_target.flavor().await?;
    let st = healthy_state(ctx).await?;
    if let Some(m) = st.migration_index() {
        return Err(OpsError::Refused(format!(
            "a migration into {m} is already in progress; complete it (`ferry complete`) or abandon it (`ferry abandon`) first"
        )));
    }
    if let Some((old, _)) = st.both_current() {
        return Err(OpsError::Refused(format!(
            "readers may still use {old} on {} (the last completion was across clusters); once they have moved, `ferry retire-source`, then start",
            ctx.client_in(&st, old).public_base()
        )));
    }
    let current = need_current(&st)?;
    let mut mapping = read_mapping(mapping_path)?;
    keep_tombstones(&mut mapping, ctx.settings.min_gc_deletes)?;
    let profile = super::backfill::apply(&mut mapping, backfill)?;
    let target = new_index_name(&ctx.settings.index_prefix)?;
    // The old index must map the outcome fields so the scanner can query them.
    let outcome_fields = json!({ "properties": { "esInfo": { "properties": { "migration": { "properties": {
        "migratedTo": { "type": "keyword" },
        "failures": { "properties": { target.as_str(): { "type": "keyword", "ignore_above": 1024 } } }
    }}}}}});
    let on_current = ctx.client_in(&st, &current);
    on_current.put_mapping(&current, &outcome_fields).await?;
    on_target.create_index(&target, &mapping).await?;
    let across = st.cluster_of(&current) != ctx.target_cluster();
    if across {
        // Before the Migration alias exists anywhere: from here on a worker
        // configured without the target cluster refuses edits instead of
        // skipping an index it cannot see.
        on_current
            .update_aliases(&[AliasAction::Add {
                index: current.clone(),
                alias: ctx.aliases.elsewhere(),
            }])
            .await?;
    }
    on_target
        .update_aliases(&[AliasAction::Add {
            index: target.clone(),
            alias: ctx.aliases.migration.clone(),
        }])
        .await?;
    tracing::info!(target = %target, source = %current, across, "migration started");
    let place = if across {
        format!(" on {}", on_target.public_base())
    } else {
        String::new()
    };
    let bulk_load = profile
        .map(|p| {
            format!(
                " with a bulk-load profile ({}; `complete` restores the mapping's values)",
                serde_json::to_string(&p).unwrap_or_default()
            )
        })
        .unwrap_or_default();
    Ok(changed(
        format!("started a migration from {current} into {target}{place}{bulk_load}"),
        "workers now queue and migrate every document; watch with `ferry status --watch`",
        &target,
    ))
}

async fn toggle(ctx: &Ctx, flag: Flag, on: bool, next: &str) -> Result<Changed, OpsError> {
    let st = healthy_state(ctx).await?;
    let target = need_migration(&st, ctx)?;
    let what = flag.describe();
    let not = if on { "" } else { "not " };
    if st.has(flag) == on {
        return Err(OpsError::Refused(format!(
            "the migration into {target} is already {not}{what}"
        )));
    }
    let (index, alias) = (target.clone(), flag.alias(&ctx.aliases).clone());
    let action = if on {
        AliasAction::Add { index, alias }
    } else {
        AliasAction::Remove { index, alias }
    };
    ctx.client_in(&st, &target)
        .update_aliases(&[action])
        .await?;
    tracing::info!(target = %target, what, on, "migration state changed");
    Ok(changed(
        format!("the migration into {target} is now {not}{what}"),
        next,
        &target,
    ))
}

/// Stops the scanner from queueing (manual `queue` still works).
pub async fn pause(ctx: &Ctx) -> Result<Changed, OpsError> {
    let next = "edits still reach both indices; `ferry resume` to continue";
    toggle(ctx, Flag::Paused, true, next).await
}

/// Lets the scanner queue again.
pub async fn resume(ctx: &Ctx) -> Result<Changed, OpsError> {
    toggle(
        ctx,
        Flag::Paused,
        false,
        "the scanner queues documents again",
    )
    .await
}

/// Lets readers preview the migration index.
pub async fn preview(ctx: &Ctx) -> Result<Changed, OpsError> {
    let next = "readers of the preview alias now see the new index";
    toggle(ctx, Flag::Preview, true, next).await
}

/// Ends the preview.
pub async fn unpreview(ctx: &Ctx) -> Result<Changed, OpsError> {
    toggle(ctx, Flag::Preview, false, "the preview alias is gone").await
}

/// Counts that decide whether completion is safe.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    /// Documents in the Current index.
    pub total: u64,
    /// Migrated into the target.
    pub migrated: u64,
    /// Failed.
    pub failed: u64,
    /// Neither yet.
    pub to_go: u64,
}

/// Counts the outcomes of the migration from `current` into `target`.
pub async fn progress(
    ctx: &Ctx,
    current: &IndexName,
    target: &IndexName,
) -> Result<Progress, OpsError> {
    let on = ctx.client_of(current).await?;
    on.refresh(current).await?;
    // One request, so that every count comes from the same view of the
    // index: counted one after the other, a document whose outcome is
    // recorded between two counts (to_go -> failed) is in neither, and
    // `complete` would not see that failure.
    let body = json!({
        "size": 0,
        "track_total_hits": true,
        "query": { "match_all": {} },
        "aggs": { "outcome": { "filters": { "filters": {
            "migrated": records::migrated(target),
            "failed": records::failed(target),
            "to_go": records::unmigrated(target),
        }}}}
    });
    let reply = on.search(current, body).await?;
    let count = |pointer: &str| {
        reply
            .pointer(pointer)
            .and_then(Value::as_u64)
            .ok_or_else(|| crate::index::IndexError::Decode {
                op: "progress search".into(),
                detail: format!("no {pointer} in the reply"),
            })
    };
    Ok(Progress {
        total: count("/hits/total/value")?,
        migrated: count("/aggregations/outcome/buckets/migrated/doc_count")?,
        failed: count("/aggregations/outcome/buckets/failed/doc_count")?,
        to_go: count("/aggregations/outcome/buckets/to_go/doc_count")?,
    })
}

/// What `complete` checks before it switches.
#[derive(Debug, Clone)]
pub enum Gate {
    /// Refuse while documents are unmigrated or failed, while a sampled
    /// verify of this many documents (0: none) finds differences, or while
    /// a search of `compare` is flagged.
    Checked {
        /// Documents the verify samples.
        verify_sample: usize,
        /// Searches compared between Current and the new index.
        compare: Option<Spec>,
    },
    /// Switch anyway, logging who asked and what was skipped.
    Forced {
        /// The operator, for the log line (a user name, or how they came in).
        by: String,
        /// Searches that would have been compared (logged as skipped).
        compare: Option<Spec>,
    },
}

impl Gate {
    /// The checked gate with a verify of `verify_sample` documents.
    pub fn checked(verify_sample: usize) -> Self {
        Gate::Checked {
            verify_sample,
            compare: None,
        }
    }

    /// The gate forced by `by`.
    pub fn forced(by: impl Into<String>) -> Self {
        Gate::Forced {
            by: by.into(),
            compare: None,
        }
    }

    /// The same gate, also comparing `spec`'s searches before the switch.
    pub fn with_compare(mut self, spec: Option<Spec>) -> Self {
        match &mut self {
            Gate::Checked { compare, .. } | Gate::Forced { compare, .. } => *compare = spec,
        }
        self
    }
}

/// Switches Current to the migration index in one atomic request.
pub async fn complete(ctx: &Ctx, gate: Gate) -> Result<Changed, OpsError> {
    let st = healthy_state(ctx).await?;
    let target = need_migration(&st, ctx)?;
    let current = need_current(&st)?;
    let across = st.cluster_of(&current) != st.cluster_of(&target);
    let p = progress(ctx, &current, &target).await?;
    match &gate {
        Gate::Checked {
            verify_sample,
            compare,
        } => {
            if p.to_go > 0 || p.failed > 0 {
                return Err(OpsError::Refused(format!(
                    "{} documents are not migrated yet and {} failed (of {}). Wait for the workers, retry failures (`ferry failures`, `ferry failures retry`), or complete anyway with `ferry complete --force`",
                    p.to_go, p.failed, p.total
                )));
            }
            if *verify_sample > 0 {
                let scope = super::verify::Scope::Sample(*verify_sample);
                let report = super::verify::verify(ctx, scope).await?;
                if !report.differences.is_empty() {
                    return Err(OpsError::Refused(format!(
                        "a sampled verify found {} differences between {target} and the stores (see `ferry verify`); fix them or complete anyway with `ferry complete --force`",
                        report.differences.len()
                    )));
                }
            }
            if let Some(spec) = compare {
                let c = super::compare::compare(ctx, spec).await?;
                if c.flagged > 0 {
                    let names: Vec<&str> = c
                        .results
                        .iter()
                        .filter(|r| r.flagged)
                        .map(|r| r.name.as_str())
                        .collect();
                    return Err(OpsError::Refused(format!(
                        "{} of {} searches find different results in {target} (top-{} overlap below {}): {}; see `ferry compare`, or complete anyway with `ferry complete --force`",
                        c.flagged,
                        c.results.len(),
                        c.top,
                        c.min_overlap,
                        names.join(", ")
                    )));
                }
            }
        }
        Gate::Forced { by, compare } => {
            let skipped_searches = compare.as_ref().map_or(0, |c| c.queries.len());
            tracing::warn!(by = %by, at = %chrono::Utc::now().to_rfc3339(), skipped_unmigrated = p.to_go, skipped_failed = p.failed, skipped_searches, from = %current, to = %target, "migration completed with --force");
        }
    }
    // Readers get the mapping's refresh interval and replicas, all
    // allocated, before they get the index.
    let on_target = ctx.client_in(&st, &target);
    super::backfill::restore(on_target, &target, ctx.settings.restore_wait).await?;
    // Recorded first: if the switch then fails, a record naming an index
    // that is not Historical is ignored.
    ctx.control
        .record_completion(&Completion {
            from: current.to_string(),
            to: target.to_string(),
            at_ms: now_ms(),
        })
        .await?;
    let a = &ctx.aliases;
    let mut actions = Vec::new();
    // Across clusters the old index keeps Current (readers move over at
    // their own pace) and goes on getting every edit.
    if !across {
        actions.push(AliasAction::Remove {
            index: current.clone(),
            alias: a.current.clone(),
        });
    }
    actions.extend([
        AliasAction::Add {
            index: target.clone(),
            alias: a.current.clone(),
        },
        AliasAction::Remove {
            index: target.clone(),
            alias: a.migration.clone(),
        },
        AliasAction::Add {
            index: current.clone(),
            alias: a.historical.clone(),
        },
    ]);
    for old in &st.historical {
        actions.push(AliasAction::Remove {
            index: old.clone(),
            alias: a.historical.clone(),
        });
    }
    for flag in [Flag::Paused, Flag::Preview] {
        for i in flag.carriers(&st) {
            actions.push(AliasAction::Remove {
                index: i.clone(),
                alias: flag.alias(a).clone(),
            });
        }
    }
    super::across::update_in_order(ctx, &st, actions, st.cluster_of(&current)).await?;
    tracing::info!(from = %current, to = %target, across, "migration completed");
    let window = humantime::format_duration(ctx.settings.rollback_window);
    let mut next = if across {
        format!("{current} keeps Current on {} and gets every edit until readers have moved to {} (`GET /api/current`); `ferry rollback` switches back within the rollback window ({window})", ctx.client_in(&st, &current).public_base(), ctx.client_in(&st, &target).public_base())
    } else {
        format!("edits keep reaching {current} for the rollback window ({window}); `ferry rollback` switches back within it")
    };
    // The gate and the switch are two requests: a document the new mapping
    // refuses, edited in between, was recorded as failed after the gate
    // passed, and is stale in the new Current. Said while rollback can undo it.
    let after = progress(ctx, &current, &target).await?;
    if after.failed > p.failed {
        let late = after.failed - p.failed;
        tracing::warn!(from = %current, to = %target, late, "documents failed between the completion check and the switch");
        next = format!("WARNING: {late} documents failed between the check and the switch and are stale in {target} (`ferry failures --historical`); fix them and `ferry rollback`, or retry them. {next}");
    }
    Ok(changed(
        if across {
            format!("{target} is now Current; {current} is Historical and stays Current on its cluster until `ferry retire-source`")
        } else {
            format!("{target} is now Current; {current} is Historical")
        },
        &next,
        &target,
    ))
}

/// Drops the migration; optionally deletes the half-built index.
pub async fn abandon(ctx: &Ctx, delete_index: bool) -> Result<Changed, OpsError> {
    let st = healthy_state(ctx).await?;
    let target = need_migration(&st, ctx)?;
    let a = &ctx.aliases;
    let mut actions = vec![AliasAction::Remove {
        index: target.clone(),
        alias: a.migration.clone(),
    }];
    for flag in [Flag::Paused, Flag::Preview] {
        if st.has(flag) {
            actions.push(AliasAction::Remove {
                index: target.clone(),
                alias: flag.alias(a).clone(),
            });
        }
    }
    let on = ctx.client_in(&st, &target);
    on.update_aliases(&actions).await?;
    // The marker goes last: until the Migration alias is gone, a worker
    // without the target cluster must go on refusing edits.
    for marked in &st.elsewhere {
        ctx.client_in(&st, marked)
            .update_aliases(&[AliasAction::Remove {
                index: marked.clone(),
                alias: a.elsewhere(),
            }])
            .await?;
    }
    if delete_index {
        on.delete_index(&target).await?;
    }
    tracing::warn!(target = %target, delete_index, "migration abandoned");
    Ok(changed(
        format!(
            "abandoned the migration into {target}{}",
            if delete_index {
                " and deleted the index"
            } else {
                ""
            }
        ),
        "messages still queued for it are discarded as they arrive; `ferry start` begins a new one",
        &target,
    ))
}

/// Switches back to the Historical index within the rollback window. The
/// rolled-back index becomes the (paused) migration target again, so edits
/// keep reaching it and the operator can complete again or abandon.
pub async fn rollback(ctx: &Ctx) -> Result<Changed, OpsError> {
    let st = healthy_state(ctx).await?;
    if let Some(m) = st.migration_index() {
        return Err(OpsError::Refused(format!(
            "a migration into {m} is in progress; abandon it first (`ferry abandon`)"
        )));
    }
    let current = need_current(&st)?;
    let Some(historical) = st.historical_index() else {
        return Err(OpsError::Refused(
            "there is no Historical index to roll back to".into(),
        ));
    };
    let completion = ctx.control.completion().await?;
    // Refused a clock margin before the window ends: workers keep writing
    // Historical a margin after it, so clocks that disagree by less than
    // the margin cannot let a rollback serve an index that missed edits.
    let margin_ms = ctx.settings.clock_margin.as_millis() as u64;
    let within = completion.as_ref().is_some_and(|c| {
        c.from == historical.as_str()
            && c.to == current.as_str()
            && now_ms().saturating_add(margin_ms)
                < crate::context::state::window_end_ms(c, ctx.settings.rollback_window)
    });
    if !within {
        return Err(OpsError::Refused(format!(
            "the rollback window ({}) after the completion that made {current} Current has closed (rollback ends a clock margin of {} early), or no completion was recorded; edits since then did not reach {historical}. Start a new migration instead",
            humantime::format_duration(ctx.settings.rollback_window),
            humantime::format_duration(ctx.settings.clock_margin)
        )));
    }
    let a = &ctx.aliases;
    let mut actions = vec![AliasAction::Remove {
        index: current.clone(),
        alias: a.current.clone(),
    }];
    // Across clusters the old index never lost Current.
    if !st.current.contains(&historical) {
        actions.push(AliasAction::Add {
            index: historical.clone(),
            alias: a.current.clone(),
        });
    }
    actions.extend([
        AliasAction::Remove {
            index: historical.clone(),
            alias: a.historical.clone(),
        },
        AliasAction::Add {
            index: current.clone(),
            alias: a.migration.clone(),
        },
        AliasAction::Add {
            index: current.clone(),
            alias: a.paused.clone(),
        },
    ]);
    super::across::update_in_order(ctx, &st, actions, st.cluster_of(&current)).await?;
    ctx.control.clear_completion().await?;
    tracing::warn!(from = %current, to = %historical, "rolled back");
    Ok(changed(
        format!("{historical} is Current again; {current} is the paused migration target"),
        "edits reach both; `ferry resume` + `ferry complete` to switch again, or `ferry abandon`",
        &historical,
    ))
}

/// A change of state without arguments, named as the CLI names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Simple {
    /// `pause`.
    Pause,
    /// `resume`.
    Resume,
    /// `preview`.
    Preview,
    /// `unpreview`.
    Unpreview,
    /// `rollback`.
    Rollback,
    /// `retire-source`.
    RetireSource,
}

impl Simple {
    /// The command's name.
    pub fn name(self) -> &'static str {
        match self {
            Simple::Pause => "pause",
            Simple::Resume => "resume",
            Simple::Preview => "preview",
            Simple::Unpreview => "unpreview",
            Simple::Rollback => "rollback",
            Simple::RetireSource => "retire-source",
        }
    }
}

/// Runs `op` for `by`, recorded in the operations record.
pub async fn simple(ctx: &Ctx, op: Simple, by: &str) -> Result<Changed, OpsError> {
    let work = async {
        match op {
            Simple::Pause => pause(ctx).await,
            Simple::Resume => resume(ctx).await,
            Simple::Preview => preview(ctx).await,
            Simple::Unpreview => unpreview(ctx).await,
            Simple::Rollback => rollback(ctx).await,
            Simple::RetireSource => super::across::retire_source(ctx).await,
        }
    };
    super::audit::audited(ctx, by, op.name(), String::new(), work).await
}
