//! Edits across alias changes, one deterministic test per hole that the
//! consistency-holes issue found (the number in each test's doc). A stale
//! alias view is made certain with a `Ctx` whose state cache never expires;
//! a write is placed after an alias change by sending a worker's index
//! requests through the fault proxy, which holds the request that must
//! come after it until the change is made.

mod support;

use ferry::context::Ctx;
use ferry::index::{records, Target};
use ferry::ops::lifecycle::{self, Gate};
use ferry::ops::OpsError;
use ferry::queue::{DocKind, DocMessage, MigrateMessage, Payload};
use ferry::seed::pipeline::Pipeline;
use ferry::types::{DocId, IndexName, Version};
use ferry::worker::edit_path::{apply, Applied, EditError};
use ferry::worker::migration_path as migration;
use serde_json::json;
use std::time::Duration;
use support::docs::{doc, own_indices, start_migration, version_in};
use support::proxy::{Mode, Proxy};
use support::TestEnv;

fn message(kind: DocKind, id: &DocId) -> DocMessage {
    DocMessage {
        kind,
        id: id.clone(),
        version: None,
    }
}

/// Applies a message as the worker does: transient failures (a superseded
/// write, moving aliases) are tried again.
async fn settle(ctx: &Ctx, kind: DocKind, id: &DocId) -> Applied {
    let msg = message(kind, id);
    for _ in 0..10 {
        match apply(ctx, &msg).await {
            Ok(a) => return a,
            Err(e @ (EditError::Superseded | EditError::Unsettled)) => eprintln!("again: {e}"),
            Err(e) => panic!("apply {id}: {e}"),
        }
    }
    panic!("{id} did not settle in 10 attempts");
}

/// A worker context whose alias view, read now, never expires.
async fn stale_ctx(env: &TestEnv) -> Ctx {
    let mut settings = env.settings.clone();
    settings.state_ttl = Duration::from_secs(3600);
    let ctx = Ctx::new(settings).await.expect("ctx");
    ctx.state
        .get(&ctx.index, &ctx.aliases, &ctx.control)
        .await
        .expect("alias view");
    ctx
}

/// A worker context whose index requests go through a proxy (passing
/// them until told to hold one).
async fn proxied_ctx(env: &TestEnv) -> (Ctx, Proxy) {
    let proxy = Proxy::before(&env.settings.index_url).await;
    let mut settings = env.settings.clone();
    settings.index_url = proxy.url.clone();
    (Ctx::new(settings).await.expect("ctx"), proxy)
}

/// Starts a migration, migrates `ids` through the edit path, completes.
/// Returns the new Current index.
async fn migrate_and_complete(ctx: &Ctx, mapping: &str, ids: &[DocId]) -> IndexName {
    let target = lifecycle::start(ctx, mapping).await.expect("start").index;
    for id in ids {
        settle(ctx, DocKind::Edit, id).await;
    }
    lifecycle::complete(ctx, Gate::checked(0))
        .await
        .expect("complete");
    IndexName::parse(target).expect("index name")
}

/// 1. A worker whose view predates `rollback` still reaches the rolled-back
///    index (the migration target again) and the index that became Current;
///    after resume + complete, Current has every edit and no deleted document.
#[tokio::test]
async fn an_edit_with_a_view_from_before_a_rollback_reaches_every_index() {
    let env = TestEnv::new("ac").await;
    let ids = env.seed(3, 0).await;
    let old = env.current_index().await;
    let new = migrate_and_complete(&env.ctx, &env.settings.mapping, &ids).await;
    // One stale worker per message: a fresh read refreshes a worker's view.
    let (stale, stale_delete) = (stale_ctx(&env).await, stale_ctx(&env).await);
    lifecycle::rollback(&env.ctx).await.expect("rollback");

    let broker = env.broker().await;
    let pipeline = Pipeline::new(&env.ctx, &broker, 1);
    let v = pipeline.edit(&ids[0]).await.unwrap().unwrap().get();
    settle(&stale, DocKind::Edit, &ids[0]).await;
    assert_eq!(version_in(&env, &old, &ids[0]).await, Some(v), "Current");
    assert_eq!(
        version_in(&env, &new, &ids[0]).await,
        Some(v),
        "the rolled-back index missed the edit: completing again loses it"
    );
    pipeline.delete(&ids[1]).await.unwrap().unwrap();
    settle(&stale_delete, DocKind::Delete, &ids[1]).await;
    assert!(doc(&env, &old, &ids[1]).await.is_none());
    assert!(doc(&env, &new, &ids[1]).await.is_none(), "delete missed");

    lifecycle::resume(&env.ctx).await.expect("resume");
    lifecycle::complete(&env.ctx, Gate::checked(0))
        .await
        .expect("complete again: every document carries its record");
    assert_eq!(env.current_index().await, new);
    let cur = &env.settings.current_alias;
    assert_eq!(version_in(&env, cur, &ids[0]).await, Some(v));
    assert!(doc(&env, cur, &ids[1]).await.is_none());
}

/// 1. An edit that wrote Current just before a rollback, and then finds the
///    Historical alias gone, still reaches the index that became Current.
#[tokio::test]
async fn an_edit_straddling_a_rollback_reaches_the_index_that_became_current() {
    let env = TestEnv::new("ac").await;
    let ids = env.seed(2, 0).await;
    let old = env.current_index().await;
    let new = migrate_and_complete(&env.ctx, &env.settings.mapping, &ids).await;
    let broker = env.broker().await;
    let pipeline = Pipeline::new(&env.ctx, &broker, 2);
    let v = pipeline.edit(&ids[0]).await.unwrap().unwrap().get();

    // The worker's index requests: alias read (1), Current read (2) and
    // write (3), then Historical read (4), held until after the rollback.
    let (worker, proxy) = proxied_ctx(&env).await;
    let held = proxy.hold_after(3);
    let id = ids[0].clone();
    let edit = tokio::spawn(async move { settle(&worker, DocKind::Edit, &id).await });
    held.arrived().await;
    lifecycle::rollback(&env.ctx).await.expect("rollback");
    proxy.release();
    edit.await.expect("edit task");
    assert_eq!(version_in(&env, &new, &ids[0]).await, Some(v));
    assert_eq!(
        version_in(&env, &old, &ids[0]).await,
        Some(v),
        "the index that became Current missed the edit"
    );
}

/// 2. A document the new mapping rejects still gets its edits in Current,
///    with the failure recorded for the target.
#[tokio::test]
async fn a_document_the_new_mapping_rejects_still_gets_its_edits() {
    let env = TestEnv::new("ac").await;
    let ids = env.seed(1, 0).await;
    let rejected = ids[0].clone();
    // A new mapping that refuses every document (ids are not numbers).
    let dir = tempfile::tempdir().unwrap();
    let mapping = dir.path().join("numeric-ids.json");
    let body = json!({ "mappings": { "properties": { "id": { "type": "long" } } } });
    std::fs::write(&mapping, body.to_string()).unwrap();
    let target = lifecycle::start(&env.ctx, &mapping.to_string_lossy())
        .await
        .expect("start")
        .index;
    let target = IndexName::parse(target).unwrap();
    let broker = env.broker().await;
    let pipeline = Pipeline::new(&env.ctx, &broker, 3);
    let v = pipeline.edit(&rejected).await.unwrap().unwrap().get();
    let applied = settle(&env.ctx, DocKind::Edit, &rejected).await;
    assert!(applied.current && !applied.migration, "{applied:?}");
    let cur = doc(&env, &env.settings.current_alias, &rejected)
        .await
        .expect("in Current");
    assert_eq!(cur.version(), v, "Current missed the edit");
    match records::outcome_of(&cur.source, &target) {
        records::Outcome::Failed(why) => assert!(!why.is_empty()),
        other => panic!("expected a failure record, got {other:?}"),
    }
    assert!(doc(&env, &target, &rejected).await.is_none());
}

/// 3. A worker that has not yet seen `start` neither loses an edit (it must
///    not keep a `migratedTo` for a version it did not write) nor leaves a
///    deleted document in the new index.
#[tokio::test]
async fn edits_with_a_view_from_before_the_start_reach_the_new_index() {
    let env = TestEnv::new("ac").await;
    let ids = env.seed(3, 0).await;
    // One stale worker per message: a fresh read refreshes a worker's view.
    let (stale, stale_delete) = (stale_ctx(&env).await, stale_ctx(&env).await);
    let target = start_migration(&env).await;
    for id in &ids {
        // Migrated (and recorded) as the migration path would.
        settle(&env.ctx, DocKind::Edit, id).await;
    }
    let broker = env.broker().await;
    let pipeline = Pipeline::new(&env.ctx, &broker, 4);
    let v = pipeline.edit(&ids[0]).await.unwrap().unwrap().get();
    settle(&stale, DocKind::Edit, &ids[0]).await;
    assert_eq!(
        version_in(&env, &target, &ids[0]).await,
        Some(v),
        "the edit missed the new index while Current says migrated"
    );
    pipeline.delete(&ids[1]).await.unwrap().unwrap();
    settle(&stale_delete, DocKind::Delete, &ids[1]).await;
    assert!(
        doc(&env, &target, &ids[1]).await.is_none(),
        "a deleted document stayed in the new index"
    );
    lifecycle::complete(&env.ctx, Gate::checked(0))
        .await
        .expect("complete");
    let cur = &env.settings.current_alias;
    assert_eq!(version_in(&env, cur, &ids[0]).await, Some(v));
    assert!(doc(&env, cur, &ids[1]).await.is_none());
}

/// 3. A document deleted after the migration path checked it, and whose
///    tombstone is gone by the time the batch writes, does not stay in the
///    new index: the batch reads the stores' version back after its write,
///    sees it moved on, and hands the document to the edit path.
#[tokio::test]
async fn a_document_deleted_while_its_batch_runs_does_not_stay_in_the_new_index() {
    let env = TestEnv::new("ac").await;
    let ids = env.seed(2, 0).await;
    let target = start_migration(&env).await;
    let id = ids[0].clone();
    let batch = vec![scanned(&env, &target, &id).await];
    // The batch's index requests: alias read (1), Current mget (2), then the
    // bulk write (3), held until the document is deleted: from the stores
    // and Current, and (as if its tombstone had expired) not from the new
    // index.
    let (run, proxy) = held_batch(&env, batch).await;
    delete_in_stores(&env, &id).await;
    delete_raw(&env, &env.current_index().await, &id).await;
    proxy.release();
    let (_, report) = run.await.expect("batch task");
    assert_eq!(report.migrated, 1, "{report:?}");
    assert!(
        doc(&env, &target, &id).await.is_none(),
        "the deleted document stayed in the new index"
    );
}

/// Starts `batch` on a worker whose index requests pass a proxy that holds
/// the bulk write (its third request: alias read, Current mget, bulk);
/// returns once the write is held.
async fn held_batch(
    env: &TestEnv,
    batch: Vec<MigrateMessage>,
) -> (
    tokio::task::JoinHandle<(Vec<migration::Disposition>, migration::BatchReport)>,
    Proxy,
) {
    let (worker, proxy) = proxied_ctx(env).await;
    let held = proxy.hold_after(2);
    let run = tokio::spawn(async move { migration::process(&worker, &batch).await });
    held.arrived().await;
    (run, proxy)
}

/// Deletes `id` in the stores (its message is not applied).
async fn delete_in_stores(env: &TestEnv, id: &DocId) {
    let broker = env.broker().await;
    Pipeline::new(&env.ctx, &broker, 5)
        .delete(id)
        .await
        .unwrap()
        .unwrap();
}

/// Deletes `id` from one index without a tombstone, as a compare-and-set
/// delete by a worker with an older alias view would.
async fn delete_raw(env: &TestEnv, index: &IndexName, id: &DocId) {
    let path = format!(
        "/{index}/_doc/{}?refresh=true",
        ferry::index::client::segment(id.as_str())
    );
    env.ctx
        .index
        .call(reqwest::Method::DELETE, &path, None)
        .await
        .expect("delete");
}

/// What the scanner would publish for `id` now.
async fn scanned(env: &TestEnv, target: &IndexName, id: &DocId) -> MigrateMessage {
    let cur = env
        .ctx
        .index
        .get(&env.settings.current_alias, id)
        .await
        .unwrap()
        .expect("in Current");
    MigrateMessage {
        id: id.clone(),
        target: target.clone(),
        version: Version::new(cur.version()).unwrap(),
        seq_no: cur.seq_no,
        primary_term: cur.primary_term,
        payload: Payload::Document(cur.source.clone()),
    }
}

/// Found by the model check: a batch checked against Current before a
/// `complete`, and written after a `rollback` into the rolled-back index
/// (which keeps no tombstone for a delete made while it was Current), does
/// not leave the deleted document there when it becomes Current again.
#[tokio::test]
async fn a_batch_delayed_across_complete_and_rollback_does_not_resurrect_a_delete() {
    let env = TestEnv::new("ac").await;
    let ids = env.seed(2, 0).await;
    let old = env.current_index().await;
    let target = start_migration(&env).await;
    let (id, other) = (ids[0].clone(), ids[1].clone());
    settle(&env.ctx, DocKind::Edit, &other).await;
    let batch = vec![scanned(&env, &target, &id).await];
    // The batch's index requests: alias read (1), Current mget (2), then the
    // bulk write (3), held while the document is deleted from the stores
    // and from Current (the index it was checked in), and the migration
    // completes and is rolled back.
    let (run, proxy) = held_batch(&env, batch).await;
    delete_in_stores(&env, &id).await;
    // The delete's worker had not seen the start: it deletes from Current
    // only; before its fresh check, the migration completes, so the delete
    // then finds the new index Current and leaves no tombstone in it.
    delete_raw(&env, &old, &id).await;
    lifecycle::complete(&env.ctx, Gate::checked(0))
        .await
        .expect("complete: the deleted document needs no outcome");
    settle(&env.ctx, DocKind::Delete, &id).await;
    assert!(doc(&env, &target, &id).await.is_none());
    lifecycle::rollback(&env.ctx).await.expect("rollback");
    assert_eq!(env.current_index().await, old);
    proxy.release();
    let (_, report) = run.await.expect("batch task");
    assert_eq!(report.migrated, 1, "{report:?}");
    lifecycle::resume(&env.ctx).await.expect("resume");
    lifecycle::complete(&env.ctx, Gate::checked(0))
        .await
        .expect("complete again");
    assert!(
        doc(&env, &env.settings.current_alias, &id).await.is_none(),
        "the delayed batch brought a deleted document back into Current"
    );
}

/// 4. A slow message that writes nothing to Current, then creates the
///    document in Historical after a concurrent delete, is undone: the
///    stores are read again after every write to an index without
///    tombstones.
#[tokio::test]
async fn a_late_message_does_not_bring_a_deleted_document_back_into_historical() {
    let env = TestEnv::new("ac").await;
    let ids = env.seed(2, 0).await;
    let old = env.current_index().await;
    migrate_and_complete(&env.ctx, &env.settings.mapping, &ids).await;
    let id = ids[0].clone();
    // The late worker's index requests: alias read (1), Current read (2,
    // already as new), then the Historical read (3), held until the delete
    // is applied everywhere.
    let (worker, proxy) = proxied_ctx(&env).await;
    let held = proxy.hold_after(2);
    let late = id.clone();
    let upload = tokio::spawn(async move { settle(&worker, DocKind::Upload, &late).await });
    held.arrived().await;
    let broker = env.broker().await;
    Pipeline::new(&env.ctx, &broker, 6)
        .delete(&id)
        .await
        .unwrap()
        .unwrap();
    settle(&env.ctx, DocKind::Delete, &id).await;
    proxy.release();
    upload.await.expect("upload task");
    assert!(doc(&env, &env.settings.current_alias, &id).await.is_none());
    assert!(
        doc(&env, &old, &id).await.is_none(),
        "a rollback would serve a deleted document"
    );
}

/// 5. A completion record that cannot be read is an error, not a closed
///    rollback window.
#[tokio::test]
async fn an_unreadable_completion_record_is_an_error_not_a_closed_window() {
    let env = TestEnv::new("ac").await;
    let ids = env.seed(1, 0).await;
    migrate_and_complete(&env.ctx, &env.settings.mapping, &ids).await;
    let dynamo = env
        .settings
        .dynamo_endpoint()
        .expect("a DynamoDB endpoint is set by infra/stack.sh env")
        .to_string();
    let proxy = Proxy::before(&dynamo).await;
    let mut settings = env.settings.clone();
    settings.dynamo_endpoint = Some(proxy.url.clone());
    let ctx = Ctx::new(settings).await.unwrap();
    let view = ctx
        .state
        .fresh(&ctx.index, &ctx.aliases, &ctx.control)
        .await
        .expect("readable");
    assert!(view.historical_writes(), "the window is open");
    proxy.set(Mode::Status(500));
    let broken = ctx
        .state
        .fresh(&ctx.index, &ctx.aliases, &ctx.control)
        .await;
    assert!(
        broken.is_err(),
        "taken as a closed window: {:?}",
        broken.map(|v| v.historical_writes())
    );
}

/// 6. A 409 from an index whose `_version` runs ahead of its content (it
///    was Current, and outcome records were written on it, before a
///    rollback) is not taken as "already newer".
#[tokio::test]
async fn a_rolled_back_index_with_inflated_versions_still_takes_newer_edits() {
    let env = TestEnv::new("ac").await;
    let ids = env.seed(1, 0).await;
    let new = migrate_and_complete(&env.ctx, &env.settings.mapping, &ids).await;
    let id = &ids[0];
    // Outcome records of a later migration raise `_version`, not content.
    for n in 0..3 {
        let partial = json!({ "esInfo": { "migration": { "failures": { "some_target": format!("try {n}") } } } });
        env.ctx
            .index
            .update_partial(&Target::Index(new.clone()), id, &partial, None)
            .await
            .expect("partial update");
    }
    lifecycle::rollback(&env.ctx).await.expect("rollback");
    let broker = env.broker().await;
    let v = Pipeline::new(&env.ctx, &broker, 7)
        .edit(id)
        .await
        .unwrap()
        .unwrap()
        .get();
    settle(&env.ctx, DocKind::Edit, id).await;
    assert_eq!(
        version_in(&env, &new, id).await,
        Some(v),
        "a 409 from inflated _version was taken as already newer"
    );
}

/// 7. `start` refuses a mapping whose `index.gc_deletes` is shorter than
///    FERRY_MIN_GC_DELETES, and sets it when the mapping leaves it out.
#[tokio::test]
async fn start_keeps_tombstones_long_enough() {
    let env = TestEnv::new("ac").await;
    env.seed(1, 0).await;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, settings: serde_json::Value| {
        let path = dir.path().join(name);
        let mapping = json!({ "settings": settings, "mappings": { "properties": { "id": { "type": "keyword" } } } });
        std::fs::write(&path, mapping.to_string()).unwrap();
        path.to_string_lossy().to_string()
    };
    let short = write("short.json", json!({ "index": { "gc_deletes": "60s" } }));
    match lifecycle::start(&env.ctx, &short).await {
        Err(OpsError::Invalid(why)) => assert!(why.contains("gc_deletes"), "{why}"),
        other => panic!("a 60 s gc_deletes was accepted: {other:?}"),
    }
    let unset = write("unset.json", json!({ "index": { "number_of_shards": 1 } }));
    let target = lifecycle::start(&env.ctx, &unset)
        .await
        .expect("start")
        .index;
    let settings = env
        .ctx
        .index
        .call(
            reqwest::Method::GET,
            &format!("/{target}/_settings/index.gc_deletes"),
            None,
        )
        .await
        .unwrap();
    let kept = settings
        .pointer(&format!("/{target}/settings/index/gc_deletes"))
        .and_then(|v| v.as_str())
        .map(humantime::parse_duration);
    assert!(
        matches!(kept, Some(Ok(d)) if d >= env.settings.min_gc_deletes),
        "{settings}"
    );
}

/// 8. `abandon --delete-index` racing a versioned delete leaves no stray
///    index behind (the delete re-creates it; the worker removes it).
#[tokio::test]
async fn abandon_racing_a_versioned_delete_leaves_no_stray_index() {
    let env = TestEnv::new("ac").await;
    let ids = env.seed(1, 0).await;
    let target = start_migration(&env).await;
    // The delete resolves the alias (1); the delete itself (2) is held
    // until the index is gone.
    let (worker, proxy) = proxied_ctx(&env).await;
    let held = proxy.hold_after(1);
    let to = Target::Alias(env.settings.migration_alias.clone());
    let id = ids[0].clone();
    let delete = tokio::spawn(async move {
        worker
            .index
            .delete_external(&to, &id, Version::new(99).unwrap())
            .await
    });
    held.arrived().await;
    lifecycle::abandon(&env.ctx, true).await.expect("abandon");
    proxy.release();
    delete.await.expect("delete task").expect("delete");
    assert!(
        !own_indices(&env).await.contains(target.as_str()),
        "a stray {target} was left: {:?}",
        own_indices(&env).await
    );
}

/// 9. Rollback stops a clock margin before the window ends, and workers
///    keep writing Historical a margin after it.
#[tokio::test]
async fn rollback_and_historical_writes_keep_a_clock_margin() {
    let env = TestEnv::new("ac").await;
    let ids = env.seed(1, 0).await;
    let mut settings = env.settings.clone();
    settings.rollback_window = Duration::from_secs(10);
    settings.clock_margin = Duration::from_secs(5);
    let ctx = Ctx::new(settings).await.unwrap();
    migrate_and_complete(&ctx, &env.settings.mapping, &ids).await;
    let completed = ctx
        .control
        .completion()
        .await
        .unwrap()
        .expect("recorded")
        .at_ms;
    // Each check holds whenever it runs after its instant, with seconds of
    // slack before the next boundary.
    let after = |ms: u64| {
        let wait = (completed + ms).saturating_sub(ferry::stores::control::now_ms());
        tokio::time::sleep(Duration::from_millis(wait))
    };
    let view = || ctx.state.fresh(&ctx.index, &ctx.aliases, &ctx.control);

    after(6_000).await;
    match lifecycle::rollback(&ctx).await {
        Err(OpsError::Refused(why)) => assert!(why.contains("clock margin"), "{why}"),
        other => panic!("rollback accepted in the last margin of the window: {other:?}"),
    }
    after(11_000).await;
    assert!(
        view().await.unwrap().historical_writes(),
        "workers stopped writing Historical at the window's end"
    );
    after(16_000).await;
    assert!(!view().await.unwrap().historical_writes());
}
