//! The edit path (high priority) against the real local stack: priority over
//! a full migration queue, dual writes, ordering by version, delete safety,
//! bad input going to the dead-letter queue, graceful shutdown, and an edit
//! straddling the completion switch (with the state cache that serves it).

mod support;

use ferry::context::Ctx;
use ferry::index::{records, Target, Write};
use ferry::ops::lifecycle::{self, Gate};
use ferry::queue::{Broker, DocKind, DocMessage, MigrateMessage, Payload};
use ferry::seed::pipeline::Pipeline;
use ferry::stores::Projection;
use ferry::types::{DocId, IndexName, Version};
use ferry::worker::edit_path::{apply, write_cas, Mark};
use futures::StreamExt;
use lapin::types::FieldTable;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::docs::{
    doc, json_of, own_indices, projection, start_migration, version_in, wait_absent, wait_version,
    without_es_info,
};
use support::{eventually, Signal, TestEnv};

/// Deadline of every poll: generous, tests share two cores.
const WAIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------- helpers

/// Documents behind the Current alias marked migrated into `target`,
/// leaving out `except`.
async fn migrated_count(env: &TestEnv, target: &IndexName, except: Option<&DocId>) -> u64 {
    let current = &env.settings.current_alias;
    env.ctx.index.refresh(current).await.expect("refresh");
    let except: Vec<&DocId> = except.into_iter().collect();
    let query = json!({ "bool": {
        "filter": [records::migrated(target)],
        "must_not": [{ "ids": { "values": except } }]
    }});
    env.ctx.index.count(current, query).await.expect("count")
}

/// Publishes a raw body to the events exchange.
async fn publish_raw(broker: &Broker, routing_key: &str, body: &[u8]) {
    broker
        .publish(
            &broker.names.events,
            routing_key,
            body,
            FieldTable::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("publish to {routing_key}: {e}"));
}

/// The body of an upload/edit/delete message.
fn doc_message(kind: DocKind, id: &DocId) -> Vec<u8> {
    DocMessage {
        kind,
        id: id.clone(),
        version: None,
    }
    .to_body()
}

// ------------------------------------------------------------------ tests

/// 1. Strict priority: an edit published behind 500 waiting migration
///    messages (batches of 25) is applied while the migration queue is far
///    from drained: it overtakes most of the migration work queued ahead of
///    it, and the migration that goes on never undoes it.
#[tokio::test]
async fn an_edit_overtakes_a_full_migration_queue() {
    let mut env = TestEnv::new("ep").await;
    let ids = env.seed(500, 0).await;
    let target = start_migration(&env).await;
    // Paused: the scanner queues nothing; only our manual queueing counts.
    lifecycle::pause(&env.ctx).await.expect("pause");
    let broker = env.broker().await;
    let queued = ferry::ops::queue::queue(&env.ctx, &broker, &ids)
        .await
        .expect("queue by hand");
    assert_eq!(queued.queued, 500);
    assert!(queued.not_found.is_empty());
    assert_eq!(broker.depth(&broker.names.migration).await.unwrap(), 500);

    let batch = 25;
    env.settings.batch_size = batch;
    let _worker = env.spawn_worker();
    eventually(WAIT, "the first migration batches", || async {
        (migrated_count(&env, &target, None).await > 0).then_some(())
    })
    .await;

    // The document queued last that is still unmigrated.
    let mut edited = None;
    for id in ids.iter().rev() {
        let d = doc(&env, &env.settings.current_alias, id)
            .await
            .expect("seeded");
        if records::outcome_of(&d.source, &target) == records::Outcome::Pending {
            edited = Some((id.clone(), d.version()));
            break;
        }
    }
    let (id, before) = edited.expect("some document still waits for migration");
    let pipeline = Pipeline::new(&env.ctx, &broker, 11);
    let v = pipeline.edit(&id).await.expect("edit").expect("live");
    assert!(v.get() > before);
    let m0 = migrated_count(&env, &target, Some(&id)).await;
    let published = Instant::now();

    let (m1, depth) = eventually(WAIT, "the edit in the Current index", || async {
        if version_in(&env, &env.settings.current_alias, &id).await != Some(v.get()) {
            return None;
        }
        let m1 = migrated_count(&env, &target, Some(&id)).await;
        let depth = broker.depth(&broker.names.migration).await.unwrap();
        Some((m1, depth))
    })
    .await;
    eprintln!(
        "priority: m0={m0} m1={m1} depth={depth} edit visible after {:?}",
        published.elapsed()
    );

    // Had the edit waited for the migration queue (FIFO, no priority), all
    // 500 documents would have been migrated before it became visible.
    assert!(
        depth > 0 || m1 < 500,
        "the edit was applied only after the whole migration queue drained (m1={m1}, depth={depth})"
    );
    // How much migration work overtook the edit? Between its publication
    // (m0) and its visibility (m1):
    // - the batch in flight when it arrived is not interrupted;
    // - a batch may start whenever no high-priority message is *ready*
    //   (docs/design.md, "Priority"): once the worker has taken the edit off the
    //   queue, batches go on while it is projected and written, and each of
    //   its index requests can queue behind a batch's bulk request;
    // - we poll every 100 ms and count afterwards.
    // Batches take 25-650 ms here depending on load, so the naive bound
    // "in flight + one" (2 batches) fails on a correct worker (observed: 0
    // to 5 batches, edit visible after 30-460 ms). What no correct worker
    // does is make the edit wait for the queue: without priority (FIFO) it
    // would wait for all 500 - m0 documents queued before it. So: the edit
    // overtook at least half of the migration work that was ahead of it.
    let ahead = 500 - m0;
    assert!(
        m1 - m0 <= ahead / 2,
        "{} of the {ahead} documents queued ahead of the edit were migrated before it (m0={m0}, m1={m1})",
        m1 - m0,
    );

    // The edit reached the Migration index too, and the migration that goes
    // on afterwards never overwrites it with its older queued projection.
    wait_version(&env, &env.settings.migration_alias, &id, v.get()).await;
    eventually(WAIT, "all 500 documents migrated", || async {
        (migrated_count(&env, &target, None).await == 500).then_some(())
    })
    .await;
    let m = doc(&env, &env.settings.migration_alias, &id).await.unwrap();
    assert_eq!(m.version(), v.get());
    assert_eq!(m.source, json_of(&projection(&env, &id).await));
}

/// 2a. During a migration an edit reaches the Current and the Migration
///     index at the same version, and marks the Current document migrated.
#[tokio::test]
async fn during_a_migration_an_edit_reaches_both_indices() {
    let env = TestEnv::new("ep").await;
    let ids = env.seed(5, 0).await;
    let target = start_migration(&env).await;
    // Paused, so anything in the Migration index came from the edit path.
    lifecycle::pause(&env.ctx).await.expect("pause");
    let broker = env.broker().await;
    let _worker = env.spawn_worker();
    let pipeline = Pipeline::new(&env.ctx, &broker, 21);
    let id = &ids[2];
    let v = pipeline.edit(id).await.expect("edit").expect("live").get();

    let current = wait_version(&env, &env.settings.current_alias, id, v).await;
    let migration = wait_version(&env, &env.settings.migration_alias, id, v).await;
    assert_eq!(migration.index, target.as_str());
    let expected = json_of(&projection(&env, id).await);
    assert_eq!(migration.source, expected, "Migration holds the projection");
    assert_eq!(
        without_es_info(&current.source),
        expected,
        "Current holds the projection"
    );
    assert_eq!(
        current.source.pointer("/esInfo/migration/migratedTo"),
        Some(&json!(target.as_str()))
    );
    assert_eq!(
        records::outcome_of(&current.source, &target),
        records::Outcome::Migrated
    );
    // The other documents were neither edited nor queued.
    for other in ids.iter().filter(|o| *o != id) {
        assert!(doc(&env, &env.settings.migration_alias, other)
            .await
            .is_none());
    }
}

/// 2b. Without a migration an edit reaches only the Current index: the
///     migration alias does not exist and no index is auto-created, even
///     with a lower-case migration alias name (a valid index name).
#[tokio::test]
async fn without_a_migration_an_edit_reaches_only_current() {
    let mut env = TestEnv::new("ep").await;
    let lower = IndexName::parse(format!("{}_migration", env.name)).unwrap();
    env.settings.migration_alias = lower.clone();
    env.ctx = Ctx::new(env.settings.clone()).await.expect("clients");
    let ids = env.seed(3, 0).await;
    let legacy = format!("{}_legacy", env.name);
    assert_eq!(own_indices(&env).await, BTreeSet::from([legacy.clone()]));

    let broker = env.broker().await;
    let _worker = env.spawn_worker();
    let pipeline = Pipeline::new(&env.ctx, &broker, 22);
    let id = &ids[0];
    let v = pipeline.edit(id).await.expect("edit").expect("live").get();
    let current = wait_version(&env, &env.settings.current_alias, id, v).await;
    assert_eq!(current.index, legacy);
    assert_eq!(current.source, json_of(&projection(&env, id).await));
    assert!(current.source.get("esInfo").is_none(), "no outcome record");

    // A delete without a migration: gone from Current, and no tombstone
    // index appears under the migration alias name.
    let d = pipeline
        .delete(&ids[1])
        .await
        .expect("delete")
        .expect("live");
    assert!(d.get() > 1);
    wait_absent(&env, &env.settings.current_alias, &ids[1]).await;

    let state = env.ctx.index.alias_state(&env.ctx.aliases).await.unwrap();
    assert!(state.migration.is_empty(), "no migration alias: {state:?}");
    assert!(!env.ctx.index.exists(&lower).await.unwrap());

    // The library writes through the missing alias are skipped, not errors.
    let p = projection(&env, id).await;
    let to = Target::Alias(lower.clone());
    let ver = p.version();
    assert_eq!(
        env.ctx
            .index
            .put_external(&to, id, ver, &json_of(&p))
            .await
            .unwrap(),
        Write::NoAlias
    );
    assert_eq!(
        env.ctx.index.delete_external(&to, id, ver).await.unwrap(),
        Write::NoAlias
    );
    assert_eq!(
        write_cas(&env.ctx, &env.ctx.index, &to, id, &p, Mark::Nothing)
            .await
            .unwrap(),
        None
    );
    assert_eq!(own_indices(&env).await, BTreeSet::from([legacy]));
}

/// 3. Two edits of one document applied out of order leave the newer
///    version in both indices.
#[tokio::test]
async fn stale_edits_never_overwrite_newer_ones() {
    let env = TestEnv::new("ep").await;
    let ids = env.seed(4, 0).await;
    start_migration(&env).await;
    lifecycle::pause(&env.ctx).await.expect("pause");
    let broker = env.broker().await;
    let pipeline = Pipeline::new(&env.ctx, &broker, 33);
    let (cur, mig) = (&env.settings.current_alias, &env.settings.migration_alias);

    // Library level: the stores reach v2 (we keep that projection), then v3;
    // the worker applies v3; then the v2 projection arrives late.
    let id = &ids[1];
    let v2 = pipeline.edit(id).await.unwrap().unwrap();
    let stale = projection(&env, id).await;
    assert_eq!(stale.version(), v2);
    let v3 = pipeline.edit(id).await.unwrap().unwrap();
    assert!(v3 > v2);
    let mut worker = env.spawn_worker();
    wait_version(&env, cur, id, v3.get()).await;
    wait_version(&env, mig, id, v3.get()).await;
    let fresh = json_of(&projection(&env, id).await);
    assert_ne!(fresh, json_of(&stale), "the two versions differ");

    let current = Target::Alias(cur.clone());
    let migration = Target::Alias(mig.clone());
    let before = doc(&env, cur, id).await.unwrap();
    assert_eq!(
        write_cas(
            &env.ctx,
            &env.ctx.index,
            &current,
            id,
            &stale,
            Mark::Nothing
        )
        .await
        .unwrap()
        .map(|c| c.wrote),
        Some(false),
        "stale compare-and-set write is skipped"
    );
    assert_eq!(
        env.ctx
            .index
            .put_external(&migration, id, v2, &json_of(&stale))
            .await
            .unwrap(),
        Write::Stale
    );
    // A stale tombstone is refused too.
    let stale_delete = Projection::Deleted {
        id: id.clone(),
        version: v2,
    };
    assert_eq!(
        write_cas(
            &env.ctx,
            &env.ctx.index,
            &current,
            id,
            &stale_delete,
            Mark::Nothing
        )
        .await
        .unwrap()
        .map(|c| c.wrote),
        Some(false)
    );
    assert_eq!(
        env.ctx
            .index
            .delete_external(&migration, id, v2)
            .await
            .unwrap(),
        Write::Stale
    );
    // Redelivery of the newest projection is idempotent.
    let newest = projection(&env, id).await;
    assert_eq!(
        write_cas(
            &env.ctx,
            &env.ctx.index,
            &current,
            id,
            &newest,
            Mark::Nothing
        )
        .await
        .unwrap()
        .map(|c| c.wrote),
        Some(false)
    );
    let after = doc(&env, cur, id).await.unwrap();
    assert_eq!(
        (after.seq_no, after.primary_term),
        (before.seq_no, before.primary_term),
        "the Current document was not rewritten"
    );
    assert_eq!(after.version(), v3.get());
    assert_eq!(without_es_info(&after.source), fresh);
    let m = doc(&env, mig, id).await.unwrap();
    assert_eq!((m.version(), &m.source), (v3.get(), &fresh));

    // Worker level: two edits in quick succession on another document.
    let other = &ids[2];
    let a = pipeline.edit(other).await.unwrap().unwrap();
    let b = pipeline.edit(other).await.unwrap().unwrap();
    assert!(b > a);
    let c = wait_version(&env, cur, other, b.get()).await;
    let m = wait_version(&env, mig, other, b.get()).await;
    let fresh = json_of(&projection(&env, other).await);
    assert_eq!(without_es_info(&c.source), fresh);
    assert_eq!(m.source, fresh);

    worker.signal(Signal::SIGTERM);
    assert_eq!(worker.wait(Duration::from_secs(20)).await, Some(0));
}

/// 4. A delete followed by a stale upload message, a stale versioned write
///    or a stale migration message never brings the document back.
#[tokio::test]
async fn deletes_stay_deleted() {
    let mut env = TestEnv::new("ep").await;
    // One message at a time, so a later message on the same queue proves
    // that an earlier one was handled.
    env.settings.concurrency = 1;
    let ids = env.seed(6, 0).await;
    let target = start_migration(&env).await;
    lifecycle::pause(&env.ctx).await.expect("pause");
    let broker = env.broker().await;
    let pipeline = Pipeline::new(&env.ctx, &broker, 44);
    let _worker = env.spawn_worker();
    let (cur, mig) = (&env.settings.current_alias, &env.settings.migration_alias);
    let (x, s1, s2) = (&ids[0], &ids[1], &ids[2]);

    // x is live in both indices; keep its projection and Current position.
    let live = pipeline.edit(x).await.unwrap().unwrap();
    let old_current = wait_version(&env, cur, x, live.get()).await;
    wait_version(&env, mig, x, live.get()).await;
    let old = projection(&env, x).await;
    assert_eq!(old.version(), live);

    // (a) The delete reaches both indices.
    let deleted = pipeline.delete(x).await.unwrap().unwrap();
    assert!(deleted > live);
    wait_absent(&env, cur, x).await;
    wait_absent(&env, mig, x).await;

    // A late plain upload message: the stores still say deleted.
    publish_raw(&broker, "upload", &doc_message(DocKind::Upload, x)).await;
    let sentinel = projection(&env, s1).await.version().get();
    publish_raw(&broker, "upload", &doc_message(DocKind::Upload, s1)).await;
    wait_version(&env, mig, s1, sentinel).await;
    assert!(
        doc(&env, cur, x).await.is_none(),
        "upload resurrected {x} in Current"
    );
    assert!(
        doc(&env, mig, x).await.is_none(),
        "upload resurrected {x} in Migration"
    );
    assert_eq!(
        projection(&env, x).await,
        Projection::Deleted {
            id: x.clone(),
            version: deleted
        }
    );

    // A late versioned write of the older projection hits the tombstone.
    let w = env
        .ctx
        .index
        .put_external(&Target::Alias(mig.clone()), x, live, &json_of(&old))
        .await
        .unwrap();
    assert_eq!(w, Write::Stale);
    assert!(doc(&env, mig, x).await.is_none());

    // (b) A stale migration message (scanned before the delete).
    let stale = MigrateMessage {
        id: x.clone(),
        target: target.clone(),
        version: live,
        seq_no: old_current.seq_no,
        primary_term: old_current.primary_term,
        payload: Payload::Document(json_of(&old)),
    };
    publish_raw(&broker, "migrate", &stale.to_body()).await;
    let q = ferry::ops::queue::queue(&env.ctx, &broker, std::slice::from_ref(s2))
        .await
        .unwrap();
    assert_eq!(q.queued, 1);
    let s2_version = projection(&env, s2).await.version().get();
    wait_version(&env, mig, s2, s2_version).await;
    assert!(doc(&env, cur, x).await.is_none());
    assert!(doc(&env, mig, x).await.is_none());
    assert_eq!(broker.depth(&broker.names.dead_letters).await.unwrap(), 0);
}

/// 5. Bad input is dead-lettered with its reason and its original body;
///    the valid edit after it is applied.
#[tokio::test]
async fn bad_messages_are_dead_lettered_with_their_reason() {
    let mut env = TestEnv::new("ep").await;
    env.settings.max_message_bytes = 4096;
    // In order, so that the valid edit published last is handled last.
    env.settings.concurrency = 1;
    let ids = env.seed(2, 0).await;
    let broker = env.broker().await;
    let migrate = MigrateMessage {
        id: ids[0].clone(),
        target: IndexName::parse(format!("{}_target", env.name)).unwrap(),
        version: Version::FIRST,
        seq_no: 0,
        primary_term: 1,
        payload: Payload::Deleted(true),
    };
    let big = format!(r#"{{"kind":"edit","id":"a","pad":"{}"}}"#, "x".repeat(5000));
    let ghost = format!("{}-ghost", env.name);
    let edits_q = broker.names.edits.clone();
    let migration_q = broker.names.migration.clone();
    // (routing key, body, expected reason, queue it was taken from)
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        ("edit", b"{not json".to_vec(), "malformed-json", &edits_q),
        ("edit", b"\xff\xfe{}".to_vec(), "malformed-json", &edits_q),
        ("edit", b"[1,2]".to_vec(), "invalid-message", &edits_q),
        (
            "edit",
            br#"{"kind":"rename","id":"a"}"#.to_vec(),
            "unknown-kind",
            &edits_q,
        ),
        (
            "edit",
            br#"{"kind":"edit"}"#.to_vec(),
            "invalid-id",
            &edits_q,
        ),
        (
            "edit",
            br#"{"kind":"edit","id":""}"#.to_vec(),
            "invalid-id",
            &edits_q,
        ),
        (
            "edit",
            br#"{"kind":"edit","id":"a\u0001b"}"#.to_vec(),
            "invalid-id",
            &edits_q,
        ),
        (
            "edit",
            br#"{"kind":"edit","id":".."}"#.to_vec(),
            "invalid-id",
            &edits_q,
        ),
        (
            "edit",
            br#"{"kind":"edit","id":"a","version":"x"}"#.to_vec(),
            "invalid-message",
            &edits_q,
        ),
        ("edit", big.into_bytes(), "too-large", &edits_q),
        ("edit", migrate.to_body(), "invalid-message", &edits_q),
        (
            "delete",
            br#"{"kind":"edit","id":7}"#.to_vec(),
            "invalid-id",
            &edits_q,
        ),
        (
            "edit",
            doc_message(DocKind::Edit, &DocId::parse(ghost).unwrap()),
            "projection-failed",
            &edits_q,
        ),
        (
            "migrate",
            doc_message(DocKind::Edit, &ids[1]),
            "invalid-message",
            &migration_q,
        ),
    ];
    for (key, body, _, _) in &cases {
        publish_raw(&broker, key, body).await;
    }
    let _worker = env.spawn_worker();
    let pipeline = Pipeline::new(&env.ctx, &broker, 55);
    let v = pipeline.edit(&ids[0]).await.unwrap().unwrap();
    let applied = wait_version(&env, &env.settings.current_alias, &ids[0], v.get()).await;
    assert_eq!(applied.source, json_of(&projection(&env, &ids[0]).await));

    let mut dlq = broker
        .consume(&broker.names.dead_letters, 50, "t")
        .await
        .expect("consume the dead letters");
    let deadline = Instant::now() + WAIT;
    let mut got: Vec<(Vec<u8>, Option<String>, Option<String>)> = Vec::new();
    while got.len() < cases.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let next = tokio::time::timeout(left, dlq.next()).await;
        let Ok(Some(Ok(d))) = next else {
            panic!(
                "only {} of {} dead letters arrived: {got:?}",
                got.len(),
                cases.len()
            )
        };
        let header = |n| ferry::queue::broker::header(&d.properties, n);
        got.push((
            d.data.clone(),
            header("x-ferry-reason"),
            header("x-ferry-queue"),
        ));
    }
    for (key, body, reason, queue) in &cases {
        let matching: Vec<_> = got.iter().filter(|(b, _, _)| b == body).collect();
        assert_eq!(
            matching.len(),
            1,
            "{key} message {:?}: dead-lettered {} times",
            String::from_utf8_lossy(body),
            matching.len()
        );
        let (_, r, q) = matching[0];
        assert_eq!(
            (r.as_deref(), q.as_deref()),
            (Some(*reason), Some(*queue)),
            "reason and queue of {:?}",
            String::from_utf8_lossy(body)
        );
    }
    // Nothing else was dead-lettered (the valid edit in particular).
    assert_eq!(broker.depth(&broker.names.dead_letters).await.unwrap(), 0);
}

/// 6. SIGTERM in the middle of a stream of edits: the worker exits 0 within
///    its shutdown deadline, and a new worker brings every document to the
///    fresh projection of the stores.
#[tokio::test]
async fn sigterm_mid_stream_loses_no_edit() {
    let env = TestEnv::new("ep").await;
    let ids = env.seed(50, 0).await;
    let broker = env.broker().await;
    let pipeline = Pipeline::new(&env.ctx, &broker, 66);
    let mut worker = env.spawn_worker();
    // The worker is up once it has applied a first edit.
    let first = pipeline.edit(&ids[0]).await.unwrap().unwrap();
    wait_version(&env, &env.settings.current_alias, &ids[0], first.get()).await;

    let published = AtomicUsize::new(0);
    let total = 200;
    let stream = futures::stream::iter(0..total).for_each_concurrent(4, |i| {
        let (pipeline, published, id) = (&pipeline, &published, &ids[i % ids.len()]);
        async move {
            pipeline.edit(id).await.expect("edit").expect("live");
            published.fetch_add(1, Ordering::SeqCst);
        }
    });
    let stopper = async {
        eventually(WAIT, "half the edits published", || async {
            (published.load(Ordering::SeqCst) >= total / 2).then_some(())
        })
        .await;
        worker.signal(Signal::SIGTERM);
        let limit = env.settings.shutdown_deadline + Duration::from_secs(5);
        let started = Instant::now();
        let code = worker.wait(limit).await;
        (code, started.elapsed())
    };
    let ((), (code, took)) = tokio::join!(stream, stopper);
    eprintln!("sigterm: exit {code:?} after {took:?}");
    assert_eq!(code, Some(0), "exit code after SIGTERM");
    assert_eq!(published.load(Ordering::SeqCst), total);

    let _worker = env.spawn_worker();
    let cur = &env.settings.current_alias;
    eventually(WAIT, "every document equal to its projection", || async {
        if broker.high_depth().await.unwrap() > 0 {
            return None;
        }
        let stored = env.ctx.index.mget(cur, &ids).await.unwrap();
        let projected = env.ctx.stores.project_many(&ids).await.unwrap();
        let stored: BTreeMap<_, _> = stored.into_iter().map(|d| (d.id.clone(), d)).collect();
        if stored.len() != ids.len() {
            return None;
        }
        projected
            .iter()
            .all(|(id, p)| {
                let p = p.as_ref().expect("projects");
                stored[id].version() == p.version().get()
                    && without_es_info(&stored[id].source) == json_of(p)
            })
            .then_some(())
    })
    .await;
    let current = env.ctx.index.alias_state(&env.ctx.aliases).await.unwrap();
    let index = current.current_index().unwrap();
    env.ctx.index.refresh(&index).await.unwrap();
    let count = env
        .ctx
        .index
        .count(&index, json!({ "match_all": {} }))
        .await
        .unwrap();
    assert_eq!(count, ids.len() as u64, "the id sets are equal");
    assert_eq!(broker.depth(&broker.names.dead_letters).await.unwrap(), 0);
}

/// 7. An edit and a delete whose worker still believes a migration is in
///    progress (alias state cached before the completion switch) reach the
///    new Current index and the Historical one, as a rollback needs.
#[tokio::test]
async fn edits_straddling_the_completion_switch_reach_both_indices() {
    let env = TestEnv::new("ep").await;
    let ids = env.seed(4, 0).await;
    let old = env.current_index().await;
    let target = start_migration(&env).await;
    lifecycle::pause(&env.ctx).await.expect("pause");
    let broker = env.broker().await;
    let pipeline = Pipeline::new(&env.ctx, &broker, 77);
    let msg = |kind, id: &DocId| DocMessage {
        kind,
        id: id.clone(),
        version: None,
    };
    // Every document is edited and reaches the target through the edit
    // path (library), so all are migrated.
    for id in &ids {
        pipeline.edit(id).await.unwrap().unwrap();
        let a = apply(&env.ctx, &msg(DocKind::Edit, id))
            .await
            .expect("apply");
        assert!(a.migration && a.current, "{a:?}");
    }
    // Two workers whose alias state was read before the switch (one per
    // message below: a write that finds the migration alias gone refreshes
    // its worker's state, so each message needs its own stale worker).
    let mut stale_settings = env.settings.clone();
    stale_settings.state_ttl = Duration::from_secs(600);
    let stale_edit = Ctx::new(stale_settings.clone()).await.unwrap();
    let stale_delete = Ctx::new(stale_settings).await.unwrap();
    for stale in [&stale_edit, &stale_delete] {
        let seen = stale
            .state
            .get(&stale.index, &stale.aliases, &stale.control)
            .await
            .unwrap();
        assert_eq!(seen.migration(), Some(target.clone()));
    }

    lifecycle::complete(&env.ctx, Gate::checked(0))
        .await
        .expect("complete");
    let (cur, hist) = (&env.settings.current_alias, &env.settings.historical_alias);
    assert_eq!(
        doc(&env, cur, &ids[0]).await.unwrap().index,
        target.as_str()
    );
    assert_eq!(doc(&env, hist, &ids[0]).await.unwrap().index, old.as_str());

    // An edit handled with the pre-switch state.
    let v = pipeline.edit(&ids[0]).await.unwrap().unwrap().get();
    apply(&stale_edit, &msg(DocKind::Edit, &ids[0]))
        .await
        .expect("edit applied");
    let expected = json_of(&projection(&env, &ids[0]).await);
    let c = doc(&env, cur, &ids[0]).await.unwrap();
    assert_eq!(
        (c.version(), without_es_info(&c.source)),
        (v, expected.clone())
    );
    let h = doc(&env, hist, &ids[0]).await.unwrap();
    assert_eq!(
        (h.version(), without_es_info(&h.source)),
        (v, expected),
        "the Historical index missed an edit: a rollback would lose it"
    );

    // A delete handled with the pre-switch state.
    pipeline.delete(&ids[1]).await.unwrap().unwrap();
    apply(&stale_delete, &msg(DocKind::Delete, &ids[1]))
        .await
        .expect("delete applied");
    assert!(
        doc(&env, cur, &ids[1]).await.is_none(),
        "deleted doc left in Current"
    );
    assert!(
        doc(&env, hist, &ids[1]).await.is_none(),
        "deleted doc left in Historical"
    );

    // Only the two indices exist: nothing was auto-created on the way.
    assert_eq!(
        own_indices(&env).await,
        BTreeSet::from([old.to_string(), target.to_string()])
    );
}

#[tokio::test]
async fn a_fresh_state_read_sees_what_the_cache_hides_and_is_shared() {
    let env = TestEnv::new("ep").await;
    env.seed(1, 0).await;
    let mut settings = env.settings.clone();
    settings.state_ttl = Duration::from_secs(600);
    let ctx = Ctx::new(settings).await.unwrap();
    let cached = || ctx.state.get(&ctx.index, &ctx.aliases, &ctx.control);
    let fresh = || ctx.state.fresh(&ctx.index, &ctx.aliases, &ctx.control);
    assert_eq!(cached().await.unwrap().migration(), None);

    let target = start_migration(&env).await;
    assert_eq!(cached().await.unwrap().migration(), None, "within the TTL");
    assert_eq!(fresh().await.unwrap().migration(), Some(target.clone()));
    assert_eq!(cached().await.unwrap().migration(), Some(target));

    // Sixteen edits asking at once: the first reads, the others share the
    // one read that started after they asked.
    let snaps = futures::future::join_all((0..16).map(|_| fresh())).await;
    let mut reads: Vec<Instant> = snaps.iter().map(|s| s.as_ref().unwrap().read_at).collect();
    reads.dedup();
    assert!(reads.len() <= 2, "{} reads for 16 callers", reads.len());
}
