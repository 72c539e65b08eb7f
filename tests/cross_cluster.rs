//! A migration to another cluster (`FERRY_TARGET_INDEX_URL`), on the two
//! index servers of the local stack: `start` creates the new index on the
//! target and marks the source; a worker configured without the target
//! refuses edits; edits reach both clusters; the migration path writes the
//! target and records outcomes on the source; verify compares across; a
//! target that goes away is waited out; abandon leaves neither cluster
//! changed; completion leaves the old index Current on its cluster, getting
//! every edit until `retire-source`, and rollback switches back. (`ferry
//! bench` across clusters: `tests/bench_smoke.rs`.)

mod support;

use ferry::context::Ctx;
use ferry::index::{Cluster, IndexClient};
use ferry::ops::verify::{self, Scope};
use ferry::queue::{DocKind, DocMessage};
use ferry::retry::Transient;
use ferry::seed::pipeline::Pipeline;
use ferry::types::{DocId, IndexName};
use ferry::worker::edit_path::apply;
use std::time::Duration;
use support::docs::progress;
use support::proxy::{Mode, Proxy};
use support::{eventually, TestEnv};

const LONG: Duration = Duration::from_secs(180);

/// Edits `id` in the stores and publishes it, as a pipeline does: the new
/// version.
async fn edit(pipeline: &Pipeline<'_>, id: &DocId) -> u64 {
    pipeline.edit(id).await.expect("edit").expect("live").get()
}

/// Waits until `id` is at version `v` in `new` on the target cluster and
/// in `old` on the source.
async fn on_both(env: &TestEnv, new: &IndexName, old: &IndexName, id: &DocId, v: u64) {
    let second = env.ctx.target.as_ref().expect("a target cluster");
    eventually(LONG, &format!("{id} v{v} on both clusters"), || async {
        let there = version_on(second, new, id).await == Some(v);
        let here = version_on(&env.ctx.index, old, id).await == Some(v);
        (there && here).then_some(())
    })
    .await
}

/// The stored version of `id` in `index` on the cluster `on`.
async fn version_on(on: &IndexClient, index: &IndexName, id: &DocId) -> Option<u64> {
    on.get(index, id)
        .await
        .expect("read a document")
        .map(|d| d.version())
}

#[tokio::test]
async fn a_migration_to_another_cluster_runs_on_both_and_is_abandoned_cleanly() {
    let env = TestEnv::across("xc").await;
    let ids = env.seed(200, 0).await;
    let current = env.current_index().await;
    let second = env.ctx.target.clone().expect("a target cluster");

    let (code, out, err) = env.cli(&["start"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&second.public_base()), "says where: {out}");
    let st = env
        .ctx
        .alias_state()
        .await
        .expect("aliases of both clusters");
    let target = st.migration_index().expect("a migration index");
    assert_eq!(st.cluster_of(&target), Cluster::Target);
    assert_eq!(st.cluster_of(&current), Cluster::Source);
    assert!(
        second.exists(&target).await.expect("exists"),
        "on the target"
    );
    assert!(!env.ctx.index.exists(&target).await.expect("exists"));
    assert_eq!(st.elsewhere, vec![current.clone()], "the source is marked");
    assert!(st.violations(&env.ctx.aliases).is_empty(), "{st:?}");

    // A worker configured without the target cluster cannot write the
    // migration index: it refuses edits (retried, never acked) instead.
    let mut alone = env.settings.clone();
    alone.target_index_url = None;
    let alone = Ctx::new(alone).await.expect("clients");
    let msg = DocMessage {
        kind: DocKind::Edit,
        id: ids[0].clone(),
        version: None,
    };
    let refused = apply(&alone, &msg).await.expect_err("refused");
    assert!(refused.is_transient(), "retried, not dead-lettered");
    assert!(
        refused.to_string().contains("FERRY_TARGET_INDEX_URL"),
        "{refused}"
    );

    // Edits and deletes during the migration reach both clusters.
    let broker = env.broker().await;
    let _worker = env.spawn_worker();
    let pipeline = Pipeline::new(&env.ctx, &broker, 5);
    let (edited, deleted) = (&ids[3], &ids[4]);
    let v = edit(&pipeline, edited).await;
    pipeline.delete(deleted).await.expect("delete");
    on_both(&env, &target, &current, edited, v).await;

    // The migration path fills the target; outcomes land on the source.
    let p = eventually(LONG, "every document has an outcome", || async {
        let p = progress(&env, &current, &target).await;
        (p.to_go == 0).then_some(p)
    })
    .await;
    assert_eq!((p.total, p.migrated, p.failed), (199, 199, 0), "{p:?}");
    assert_eq!(version_on(&second, &target, deleted).await, None);
    assert_eq!(version_on(&env.ctx.index, &current, deleted).await, None);
    let report = verify::verify(&env.ctx, Scope::All).await.expect("verify");
    assert_eq!(report.compared, 199, "{report:?}");
    assert!(report.differences.is_empty(), "{report:?}");

    let (code, out, err) = env.cli(&["status"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("target:     {}", second.public_base())),
        "{out}"
    );
    assert!(
        out.contains(&format!("read from:  {}", env.ctx.index.public_base())),
        "{out}"
    );

    let (code, out, err) = env.cli(&["abandon", "--delete-index"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(!second.exists(&target).await.expect("exists"), "deleted");
    let st = env.ctx.alias_state().await.expect("aliases");
    assert!(st.elsewhere.is_empty() && st.migration.is_empty(), "{st:?}");
    // With the marker gone, a worker without the target may edit again.
    apply(&alone, &msg).await.expect("applied");
}

#[tokio::test]
async fn completion_and_rollback_across_clusters_keep_both_clusters_current() {
    let env = TestEnv::across("xr").await;
    let ids = env.seed(120, 0).await;
    let current = env.current_index().await;
    let second = env.ctx.target.clone().expect("a target cluster");
    let (code, out, err) = env.cli(&["start"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let target = env
        .ctx
        .alias_state()
        .await
        .expect("aliases")
        .migration_index()
        .expect("migrating");
    let broker = env.broker().await;
    let _worker = env.spawn_worker();
    eventually(LONG, "every document has an outcome", || async {
        (progress(&env, &current, &target).await.to_go == 0).then_some(())
    })
    .await;

    let (code, out, err) = env.cli(&["complete"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("until readers have moved"), "{out}");
    let st = env.ctx.alias_state().await.expect("aliases");
    assert!(st.violations(&env.ctx.aliases).is_empty(), "{st:?}");
    assert_eq!(st.current_indices(), vec![target.clone(), current.clone()]);
    let read = ferry::ops::status::current(&env.ctx)
        .await
        .expect("current");
    assert_eq!(
        read.url,
        second.public_base(),
        "readers are sent to the target"
    );
    assert_eq!(read.index.as_deref(), Some(target.as_str()));

    // Readers of either cluster see every edit: the old index keeps Current.
    let pipeline = Pipeline::new(&env.ctx, &broker, 9);
    let v = edit(&pipeline, &ids[1]).await;
    on_both(&env, &target, &current, &ids[1], v).await;

    // Rollback: the source's index is the only Current again, the target's
    // the paused migration index, and edits still reach both.
    let (code, out, err) = env.cli(&["rollback"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let st = env.ctx.alias_state().await.expect("aliases");
    assert!(st.violations(&env.ctx.aliases).is_empty(), "{st:?}");
    assert_eq!(st.current_indices(), vec![current.clone()]);
    assert_eq!(st.migration_index(), Some(target.clone()));
    assert!(st.is_paused() && st.historical.is_empty(), "{st:?}");
    let read = ferry::ops::status::current(&env.ctx)
        .await
        .expect("current");
    assert_eq!(read.url, env.ctx.index.public_base(), "readers go back");
    let v = edit(&pipeline, &ids[2]).await;
    on_both(&env, &target, &current, &ids[2], v).await;

    // And forward again.
    let (code, out, err) = env.cli(&["resume"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = env.cli(&["complete"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let report = verify::verify(&env.ctx, Scope::All).await.expect("verify");
    assert!(report.differences.is_empty(), "{report:?}");
    assert_eq!(report.target, target.as_str());

    // A new migration waits until readers have left the old cluster.
    let (code, _, err) = env.cli(&["start"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("retire-source"), "{err}");
    let (code, out, err) = env.cli(&["retire-source"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let st = env.ctx.alias_state().await.expect("aliases");
    assert!(st.violations(&env.ctx.aliases).is_empty(), "{st:?}");
    assert_eq!(st.current, vec![target.clone()]);
    assert!(
        st.historical.is_empty() && st.elsewhere.is_empty(),
        "{st:?}"
    );
    let v = edit(&pipeline, &ids[5]).await;
    let old = version_on(&env.ctx.index, &current, &ids[5]).await;
    eventually(LONG, "the edit on the target only", || async {
        (version_on(&second, &target, &ids[5]).await == Some(v)).then_some(())
    })
    .await;
    assert_ne!(version_on(&env.ctx.index, &current, &ids[5]).await, Some(v));
    assert_eq!(version_on(&env.ctx.index, &current, &ids[5]).await, old);
    let (code, out, err) = env.cli(&["rollback"]).await;
    assert_ne!(code, 0, "no rollback after retiring: {out}");
    assert!(!err.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_cluster_that_goes_away_is_waited_out() {
    let mut env = TestEnv::across("xo").await;
    let ids = env.seed(200, 0).await;
    let current = env.current_index().await;
    let second = env.ctx.target.clone().expect("a target cluster");
    // Workers and the CLI reach the target through the proxy; this test
    // reads it directly.
    let url = env.settings.target_index_url.clone().expect("target url");
    let proxy = Proxy::before(&url).await;
    env.settings.target_index_url = Some(proxy.url.clone());
    let (code, out, err) = env.cli(&["start"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let target = env
        .ctx
        .alias_state()
        .await
        .expect("aliases")
        .migration_index()
        .expect("migrating");
    let _worker = env.spawn_worker();
    eventually(LONG, "the migration under way", || async {
        (progress(&env, &current, &target).await.migrated > 0).then_some(())
    })
    .await;

    proxy.set(Mode::Cut);
    let broker = env.broker().await;
    let pipeline = Pipeline::new(&env.ctx, &broker, 6);
    let mut edited = Vec::new();
    for id in &ids[..5] {
        edited.push((id, edit(&pipeline, id).await));
    }
    // Longer than the retry budget (5 s in tests): messages wait.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let dead = broker
        .depth(&broker.names.dead_letters)
        .await
        .expect("depth");
    assert_eq!(dead, 0, "dead-lettered during the target's outage");
    proxy.set(Mode::Pass);

    for (id, v) in edited {
        eventually(LONG, "an edit made during the outage", || async {
            (version_on(&second, &target, id).await == Some(v)).then_some(())
        })
        .await;
    }
    let p = eventually(LONG, "every document has an outcome", || async {
        let p = progress(&env, &current, &target).await;
        (p.to_go == 0).then_some(p)
    })
    .await;
    assert_eq!(p.failed, 0, "{p:?}");
    let report = verify::verify(&env.ctx, Scope::All).await.expect("verify");
    assert!(report.differences.is_empty(), "{report:?}");
    let dead = broker
        .depth(&broker.names.dead_letters)
        .await
        .expect("depth");
    assert_eq!(dead, 0);
}
