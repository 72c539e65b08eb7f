//! Migration end to end, against the real local stack and real `ferry worker`
//! processes: a full migration under live traffic and an alias switch,
//! projections racing edits in both orders, broken documents and their
//! failure records, two workers sharing the scan lease (and losing one), and
//! a worker killed and replaced mid-migration.
//!
//! Worker-side memory is not measured here: the benchmark does that.

mod support;

use ferry::index::records::{self, Outcome};
use ferry::index::scan::ScanRequest;
use ferry::index::{StoredDoc, Target};
use ferry::ops::lifecycle::{self, Gate, Progress};
use ferry::ops::verify::{self, Report, Scope};
use ferry::ops::{failures, OpsError};
use ferry::queue::{Broker, Message, Payload};
use ferry::seed::data::Broken;
use ferry::seed::pipeline::Pipeline;
use ferry::stores::control::SCAN_LEASE;
use ferry::stores::Projection;
use ferry::types::{DocId, IndexName};
use ferry::worker::lease::LeaseHandle;
use ferry::worker::scanner;
use futures::{StreamExt, TryStreamExt};
use rand::Rng;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::admin::Admin;
use support::docs::progress;
use support::{eventually, Signal, TestEnv};
use tokio_util::sync::CancellationToken;

/// Deadline of the long polls (whole migrations, verify): the machine is
/// small and other tests share the stack.
const LONG: Duration = Duration::from_secs(180);
/// Deadline of short polls (one message, one document).
const SHORT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------- helpers

/// `ferry_messages_total{queue, outcome}` of a worker.
async fn messages(admin: &Admin, queue: &str, outcome: &str) -> u64 {
    let labels = [("queue", queue), ("outcome", outcome)];
    admin.metric("ferry_messages_total", &labels).await
}

/// High-priority changes the worker has finished with: applied or
/// dead-lettered.
async fn handled(admin: &Admin) -> u64 {
    messages(admin, "high", "applied").await
        + admin
            .metric("ferry_messages_total", &[("outcome", "dead_lettered")])
            .await
}

/// The worker's migration outcomes (migrated, postponed, dropped,
/// requeued, failed) once at least `n` messages have one.
async fn migration_outcomes(admin: &Admin, n: u64) -> Option<[u64; 5]> {
    let mut out = [0; 5];
    for (slot, o) in out
        .iter_mut()
        .zip(["migrated", "postponed", "dropped", "requeued", "failed"])
    {
        *slot = messages(admin, "migration", o).await;
    }
    (out.iter().sum::<u64>() >= n).then_some(out)
}

/// The pid inside a lease owner identity (`<host>-<pid>-<random>`).
fn owner_pid(owner: &str) -> Option<u32> {
    owner.rsplit('-').nth(1)?.parse().ok()
}

/// The pid of the scan lease holder, if the lease is held.
async fn lease_holder_pid(env: &TestEnv) -> Option<u32> {
    let holder = env
        .ctx
        .control
        .holder(SCAN_LEASE)
        .await
        .expect("read the lease");
    holder
        .map(|h| owner_pid(&h.owner).unwrap_or_else(|| panic!("owner {:?} names no pid", h.owner)))
}

/// The indices behind Current and Migration.
async fn indices(env: &TestEnv) -> (IndexName, IndexName) {
    (env.current_index().await, env.migration_index().await)
}

/// Seeds, starts a migration and returns (ids, Current index, target index).
async fn seeded_migration(
    env: &TestEnv,
    count: usize,
    broken: usize,
) -> (Vec<DocId>, IndexName, IndexName) {
    let ids = env.seed(count, broken).await;
    lifecycle::start(&env.ctx, &env.settings.mapping)
        .await
        .expect("start");
    let (current, target) = indices(env).await;
    (ids, current, target)
}

/// Polls until every document of the Current index carries an outcome;
/// reports progress (and the counters of `workers`) now and
/// then, so that a slow run and a stall can be told apart.
async fn all_have_outcomes(
    env: &TestEnv,
    current: &IndexName,
    target: &IndexName,
    workers: &[&Admin],
) -> Progress {
    let since = Instant::now();
    let last = std::sync::Mutex::new(Instant::now());
    let last = &last;
    eventually(
        LONG,
        "every document carries its migration outcome",
        move || async move {
            let p = progress(env, current, target).await;
            let report = {
                let mut l = last.lock().unwrap_or_else(|e| e.into_inner());
                let due = l.elapsed() > Duration::from_secs(20);
                if due {
                    *l = Instant::now();
                }
                due
            };
            if report {
                let mut counters = Vec::new();
                for admin in workers {
                    let mut c = Vec::new();
                    for o in ["migrated", "postponed", "dropped", "requeued", "failed"] {
                        c.push(format!("{o} {}", messages(admin, "migration", o).await));
                    }
                    c.push(format!(
                        "edits {}",
                        messages(admin, "high", "applied").await
                    ));
                    c.push(format!(
                        "scanned {}",
                        admin.metric("ferry_scanned_total", &[]).await
                    ));
                    counters.push(c.join(", "));
                }
                eprintln!(
                    "{}: {p:?} after {:?} {counters:?}",
                    env.name,
                    since.elapsed()
                );
            }
            (p.to_go == 0).then_some(p)
        },
    )
    .await
}

/// Polls until the high-priority and migration queues hold no ready message.
async fn queues_empty(broker: &Broker) {
    eventually(
        LONG,
        "the high-priority and migration queues are empty",
        move || async move {
            let high = broker.high_depth().await.ok()?;
            let low = broker.depth(&broker.names.migration).await.ok()?;
            (high == 0 && low == 0).then_some(())
        },
    )
    .await
}

/// Polls `verify --all` until it reports no difference (in-flight work, if
/// any, settles meanwhile); prints what still differs while it waits.
async fn verify_clean(env: &TestEnv) -> Report {
    eventually(
        LONG,
        "verify --all reports no difference",
        move || async move {
            let r = verify::verify(&env.ctx, Scope::All).await.expect("verify");
            if r.differences.is_empty() {
                return Some(r);
            }
            eprintln!(
                "verify of {}: {} differences, e.g. {:?}",
                r.target,
                r.differences.len(),
                &r.differences[..r.differences.len().min(5)]
            );
            None
        },
    )
    .await
}

/// Every id in `index`.
async fn ids_in(env: &TestEnv, index: &IndexName) -> BTreeSet<DocId> {
    env.ctx.index.refresh(index).await.expect("refresh");
    let request = ScanRequest {
        query: json!({ "match_all": {} }),
        page_size: 1000,
        source: Value::Bool(false),
    };
    let pages: Vec<Vec<StoredDoc>> = env
        .ctx
        .index
        .scan(index, request)
        .try_collect()
        .await
        .expect("scan");
    pages.into_iter().flatten().map(|d| d.id).collect()
}

/// A document as stored (real-time get through an alias or index name).
async fn stored(env: &TestEnv, index: &IndexName, id: &DocId) -> Option<StoredDoc> {
    env.ctx.index.get(index, id).await.expect("get document")
}

/// Polls until the document behind `index` is at `version`.
async fn at_version(env: &TestEnv, index: &IndexName, id: &DocId, version: u64) -> StoredDoc {
    let what = format!("{id} at version {version} in {index}");
    eventually(SHORT, &what, move || async move {
        stored(env, index, id)
            .await
            .filter(|d| d.version() == version)
    })
    .await
}

/// Asserts that `doc` (without its outcome records) is exactly a fresh
/// projection of the stores, and returns that projection.
async fn assert_fresh(env: &TestEnv, doc: &StoredDoc) -> Value {
    let Projection::Document(want) = env
        .ctx
        .stores
        .project_one(&doc.id)
        .await
        .expect("stores")
        .expect("projects")
    else {
        panic!("{} is deleted in the stores", doc.id)
    };
    let mut body = doc.source.clone();
    if let Value::Object(o) = &mut body {
        o.remove("esInfo");
    }
    assert_eq!(
        body,
        want.to_json(),
        "{} in {} differs from a fresh projection",
        doc.id,
        doc.index
    );
    want.to_json()
}

/// Takes `n` messages off `queue` (acknowledging them) and returns their
/// bodies by document id: the test then decides when the worker sees them.
async fn take(env: &TestEnv, queue: &str, n: usize) -> BTreeMap<DocId, Vec<u8>> {
    let thief = env.broker().await;
    let mut consumer = thief
        .consume(queue, n as u16, "migration-test")
        .await
        .expect("consume");
    let mut out = BTreeMap::new();
    while out.len() < n {
        let d = tokio::time::timeout(SHORT, consumer.next())
            .await
            .unwrap_or_else(|_| panic!("no message on {queue} within {SHORT:?}"))
            .expect("consumer open")
            .expect("delivery");
        d.acker.ack(Default::default()).await.expect("ack");
        let msg = Message::parse(&d.data, usize::MAX).expect("a valid message");
        out.insert(msg.id().clone(), d.data.clone());
    }
    thief.close().await;
    out
}

/// Deletes this test's indices once it has passed, so that the in-memory
/// index server does not keep every run's documents (a failed test leaves
/// them for inspection).
async fn drop_indices(env: &TestEnv, indices: &[&IndexName]) {
    for i in indices {
        env.ctx
            .index
            .delete_index(i)
            .await
            .expect("delete a test index");
    }
}

// ------------------------------------------------- 1. live full migration

/// What the live stream did, so that the end state can be predicted.
#[derive(Default)]
struct Stream {
    published: u64,
    edits: u64,
    uploads: u64,
    deletes: u64,
    /// Ids the stores hold as live documents at the end.
    live: BTreeSet<DocId>,
}

/// Live changes published and not yet handled, at most.
const IN_FLIGHT: u64 = 4;

/// Publishes edits, deletes, new uploads, re-uploads (some resurrect a
/// deleted document) and edits of fresh uploads, at most 20 a second and
/// at most `IN_FLIGHT` not yet handled by the worker `admin`,
/// until told to stop or `cap` changes are done.
///
/// Few in flight because under strict priority a backlog of edits would
/// stall the migration instead of racing it, and a queue's ready depth
/// does not show the messages the worker has prefetched. It also keeps
/// osmem's segment merging, which every single-document write can set off
/// (docs/benchmark.md), from stalling the tests running beside this one.
async fn live_changes(
    pipeline: &Pipeline<'_>,
    admin: &Admin,
    seeded: &[DocId],
    stop: &AtomicBool,
    cap: u64,
) -> Stream {
    let mut s = Stream {
        live: seeded.iter().cloned().collect(),
        ..Default::default()
    };
    let mut fresh: Vec<DocId> = Vec::new();
    let mut rng = ferry::seed::data::rng(99);
    let mut pace = tokio::time::interval(Duration::from_millis(50));
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) && n < cap {
        pace.tick().await;
        if handled(admin).await + IN_FLIGHT <= s.published {
            continue;
        }
        n += 1;
        let id = seeded[rng.random_range(0..seeded.len())].clone();
        match rng.random_range(0..100) {
            0..60 => {
                if pipeline.edit(&id).await.expect("edit").is_some() {
                    s.edits += 1;
                    s.published += 1;
                }
            }
            60..75 => {
                let new = DocId::parse(format!("{id}-new{n}")).expect("id");
                pipeline.upload(&new).await.expect("upload");
                s.uploads += 1;
                s.published += 1;
                s.live.insert(new.clone());
                fresh.push(new);
            }
            75..80 => {
                pipeline.upload(&id).await.expect("re-upload");
                s.uploads += 1;
                s.published += 1;
                s.live.insert(id);
            }
            80..90 if !fresh.is_empty() => {
                let f = fresh[rng.random_range(0..fresh.len())].clone();
                if pipeline
                    .edit(&f)
                    .await
                    .expect("edit a fresh upload")
                    .is_some()
                {
                    s.edits += 1;
                    s.published += 1;
                }
            }
            _ => {
                if pipeline.delete(&id).await.expect("delete").is_some() {
                    s.deletes += 1;
                    s.published += 1;
                    s.live.remove(&id);
                }
            }
        }
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_migration_under_live_traffic_then_completion() {
    let clock = Instant::now();
    let env = TestEnv::new("mg").await;
    let (seeded, current, target) = seeded_migration(&env, 5000, 0).await;
    eprintln!("live: seeded 5000 and started in {:?}", clock.elapsed());
    let broker = env.broker().await;
    let admin = Admin::spawn(&env, &[]);

    let pipeline = Pipeline::new(&env.ctx, &broker, 5);
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let watch = async {
        let p = all_have_outcomes(&env, &current, &target, &[&admin]).await;
        stop.store(true, Ordering::Relaxed);
        p
    };
    let (stream, _) = tokio::join!(live_changes(&pipeline, &admin, &seeded, &stop, 400), watch);
    eprintln!(
        "live: migrated in {:?} with {} live changes ({} edits, {} uploads, {} deletes)",
        started.elapsed(),
        stream.published,
        stream.edits,
        stream.uploads,
        stream.deletes
    );
    assert!(
        stream.published >= 100,
        "only {} live changes ran during the migration",
        stream.published
    );
    assert!(stream.deletes > 0 && stream.uploads > 0 && stream.edits > 0);

    // Drain: every published change applied (a ready depth of 0 does not
    // count delivered-but-unacked messages; the worker's counter does).
    let published = stream.published;
    eventually(
        LONG,
        "the worker handled every published change",
        || async { (handled(&admin).await >= published).then_some(()) },
    )
    .await;
    eprintln!("live: drained {:?} after the start", started.elapsed());
    // Every applied edit timed each of its steps (a retried attempt may
    // time some twice).
    let applied = messages(&admin, "high", "applied").await;
    for step in [
        "project",
        "migration",
        "current",
        "historical",
        "fresh",
        "recheck",
    ] {
        let timed = admin
            .metric("ferry_edit_step_seconds_count", &[("step", step)])
            .await;
        assert!(timed >= applied, "{step}: {timed} timed, {applied} applied");
    }
    queues_empty(&broker).await;
    assert_eq!(
        broker
            .depth(&broker.names.dead_letters)
            .await
            .expect("depth"),
        0,
        "nothing is dead-lettered"
    );

    let report = verify_clean(&env).await;
    eprintln!("live: verified {:?} after the start", started.elapsed());
    assert_eq!(report.target, target.to_string());
    assert_eq!(report.failed, 0);
    assert_eq!(
        report.compared,
        stream.live.len(),
        "verify compared every live document"
    );
    let p = progress(&env, &current, &target).await;
    assert_eq!((p.to_go, p.failed), (0, 0), "{p:?}");
    assert_eq!(p.migrated, p.total, "{p:?}");
    assert_eq!(
        p.total as usize,
        stream.live.len(),
        "the Current index holds exactly the live documents"
    );
    assert_eq!(
        ids_in(&env, &target).await,
        stream.live,
        "the Migration index holds exactly the live documents"
    );
    assert!(messages(&admin, "migration", "migrated").await > 0);

    let done = lifecycle::complete(&env.ctx, Gate::checked(100))
        .await
        .expect("complete");
    assert_eq!(done.index, target.to_string());
    let st = env
        .ctx
        .index
        .alias_state(&env.ctx.aliases)
        .await
        .expect("alias state");
    assert_eq!(st.current_index(), Some(target.clone()));
    assert_eq!(st.historical_index(), Some(current.clone()));
    assert_eq!(st.migration_index(), None);

    let after = verify::verify(&env.ctx, Scope::All)
        .await
        .expect("verify after completion");
    assert_eq!(after.target, target.to_string());
    assert_eq!(after.source, None);
    assert!(
        after.differences.is_empty(),
        "after completion: {:?}",
        &after.differences[..after.differences.len().min(5)]
    );
    assert_eq!(after.compared, stream.live.len());
    assert_eq!(ids_in(&env, &env.ctx.aliases.current).await, stream.live);
    broker.close().await;
    drop(admin);
    drop_indices(&env, &[&current, &target]).await;
    eprintln!("live: done in {:?}", clock.elapsed());
}

// ------------------------------- 2. a projection older than an edit, twice

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_taken_before_an_edit_never_overwrites_it_in_either_order() {
    let env = TestEnv::new("mg").await;
    let (ids, current, target) = seeded_migration(&env, 20, 0).await;
    lifecycle::pause(&env.ctx).await.expect("pause");
    let broker = env.broker().await;
    let (a, b) = (ids[3].clone(), ids[13].clone()); // ids[13] has `/?#%` in it
    let old_a = stored(&env, &current, &a)
        .await
        .expect("a in Current")
        .version();
    let old_b = stored(&env, &current, &b)
        .await
        .expect("b in Current")
        .version();

    // Projections at the old versions, queued by hand while paused...
    let queued = ferry::ops::queue::queue(&env.ctx, &broker, &[a.clone(), b.clone()])
        .await
        .expect("queue");
    assert_eq!(queued.queued, 2);
    let migrate = take(&env, &broker.names.migration, 2).await;
    for (id, old) in [(&a, old_a), (&b, old_b)] {
        let Ok(Message::Migrate(m)) = Message::parse(&migrate[id], usize::MAX) else {
            panic!("not a migrate message")
        };
        assert_eq!(
            m.version.get(),
            old,
            "{id} was projected at its old version"
        );
    }
    // ...then both edited (stores first, then the message).
    let pipeline = Pipeline::new(&env.ctx, &broker, 11);
    let new_a = pipeline
        .edit(&a)
        .await
        .expect("edit a")
        .expect("a is live")
        .get();
    let new_b = pipeline
        .edit(&b)
        .await
        .expect("edit b")
        .expect("b is live")
        .get();
    assert!(new_a > old_a && new_b > old_b);
    let edits = take(&env, &broker.names.edits, 2).await;

    let admin = Admin::spawn(&env, &[]);
    let migration = env.ctx.aliases.migration.clone();
    let current_alias = env.ctx.aliases.current.clone();

    // Order A: the edit is applied first, then the stale projection arrives.
    broker
        .publish_event("edit", &edits[&a])
        .await
        .expect("publish the edit of a");
    at_version(&env, &current_alias, &a, new_a).await;
    at_version(&env, &migration, &a, new_a).await;
    broker
        .publish_event("migrate", &migrate[&a])
        .await
        .expect("publish the stale projection of a");
    let outcomes = eventually(SHORT, "the stale projection of a is processed", || {
        migration_outcomes(&admin, 1)
    })
    .await;
    assert_eq!(
        outcomes,
        [0, 1, 0, 0, 0],
        "the stale projection was postponed: it wrote nothing (migrated, postponed, dropped, requeued, failed)"
    );

    // Order B: the stale projection is written first (the stores already
    // hold the edit), then the edit arrives.
    broker
        .publish_event("migrate", &migrate[&b])
        .await
        .expect("publish the stale projection of b");
    let outcomes = eventually(SHORT, "the stale projection of b is processed", || {
        migration_outcomes(&admin, 2)
    })
    .await;
    assert_eq!(
        outcomes,
        [1, 1, 0, 0, 0],
        "the stale projection of b was written (migrated, postponed, dropped, requeued, failed)"
    );
    // The batch read the stores back after its write, saw them at the
    // edit's version, and handed b to the edit path: the stale version did
    // not stay, even before the edit's own message arrives.
    assert_eq!(
        stored(&env, &migration, &b)
            .await
            .expect("b migrated")
            .version(),
        new_b
    );
    broker
        .publish_event("edit", &edits[&b])
        .await
        .expect("publish the edit of b");
    at_version(&env, &current_alias, &b, new_b).await;

    for (id, version) in [(&a, new_a), (&b, new_b)] {
        let in_migration = at_version(&env, &migration, id, version).await;
        let doc = assert_fresh(&env, &in_migration).await;
        assert!(
            doc.pointer("/metadata/title")
                .and_then(Value::as_str)
                .is_some_and(|t| t.starts_with("edited ")),
            "{id} carries the edited title: {doc}"
        );
        let in_current = at_version(&env, &current_alias, id, version).await;
        assert_fresh(&env, &in_current).await;
        assert_eq!(
            records::outcome_of(&in_current.source, &target),
            Outcome::Migrated,
            "{id}"
        );
    }
    assert_eq!(
        broker
            .depth(&broker.names.dead_letters)
            .await
            .expect("depth"),
        0
    );
    broker.close().await;
    drop(admin);
    drop_indices(&env, &[&current, &target]).await;
}

// ------------------------------------------------- 3. broken documents

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_documents_become_grouped_failure_records_and_block_completion() {
    let env = TestEnv::new("mg").await;
    let (ids, current, target) = seeded_migration(&env, 300, 5).await;
    let prefix = format!("{}-", env.name);
    let broken: BTreeMap<DocId, Broken> = (0..300)
        .filter_map(|i| {
            let d = ferry::seed::data::sample(7, i, 300, 5, &prefix);
            d.broken.map(|b| (d.id, b))
        })
        .collect();
    assert_eq!(broken.len(), 5);
    let _worker = env.spawn_worker();

    let p = all_have_outcomes(&env, &current, &target, &[]).await;
    assert_eq!((p.total, p.migrated, p.failed), (300, 295, 5), "{p:?}");

    let scope = failures::scope(&env.ctx, false).await.expect("scope");
    let overview = failures::overview(&env.ctx, scope).await.expect("overview");
    assert_eq!(overview.total, 5);
    for g in &overview.groups {
        eprintln!(
            "failure group ({}): {:?} e.g. {:?}",
            g.count, g.key, g.examples
        );
    }
    assert_eq!(
        overview.groups.len(),
        5,
        "one message per kind of breakage: {:?}",
        overview.groups
    );
    let mut examples = BTreeSet::new();
    for g in &overview.groups {
        assert_eq!(g.count, 1, "{g:?}");
        assert_eq!(g.examples.len(), 1, "{g:?}");
        assert!(!g.key.trim().is_empty());
        assert!(
            g.key.chars().count() <= records::MAX_MESSAGE_CHARS,
            "too long: {:?}",
            g.key
        );
        for id in &ids {
            let encoded = ferry::index::client::segment(id.as_str());
            assert!(
                !g.key.contains(id.as_str()) && !g.key.contains(&encoded),
                "the message {:?} names document {id}",
                g.key
            );
        }
        let kind = broken
            .get(&g.examples[0])
            .unwrap_or_else(|| panic!("{:?} is not a broken document", g.examples[0]));
        let expect = match kind {
            Broken::MissingOriginal => "original not found",
            Broken::InvalidOriginalJson | Broken::WrongOriginalTypes => "original is not valid",
            Broken::WrongEditTypes => "edits item is not valid",
            Broken::MappingRejects => "dateTaken",
        };
        assert!(g.key.contains(expect), "{kind:?} gave {:?}", g.key);
        examples.extend(g.examples.iter().cloned());
    }
    assert_eq!(examples, broken.keys().cloned().collect::<BTreeSet<_>>());

    let report = verify::verify(&env.ctx, Scope::All).await.expect("verify");
    assert!(report.differences.is_empty(), "{:?}", report.differences);
    assert_eq!((report.compared, report.failed), (295, 5));

    match lifecycle::complete(&env.ctx, Gate::checked(100)).await {
        Err(OpsError::Refused(why)) => assert!(why.contains("5 failed"), "{why}"),
        other => panic!("complete must be refused while failures exist, got {other:?}"),
    }
    assert_eq!(
        indices(&env).await,
        (current.clone(), target.clone()),
        "a refused completion changes nothing"
    );
    lifecycle::complete(&env.ctx, Gate::forced("test"))
        .await
        .expect("complete --force");
    let st = env
        .ctx
        .index
        .alias_state(&env.ctx.aliases)
        .await
        .expect("alias state");
    assert_eq!(st.current_index(), Some(target.clone()));
    assert_eq!(st.historical_index(), Some(current.clone()));
    let in_new: BTreeSet<DocId> = ids_in(&env, &target).await;
    let want: BTreeSet<DocId> = ids
        .into_iter()
        .filter(|id| !broken.contains_key(id))
        .collect();
    assert_eq!(
        in_new, want,
        "the new Current holds every document but the broken ones"
    );
    drop(_worker);
    drop_indices(&env, &[&current, &target]).await;
}

/// Point-in-time ids still open on `index` (the id encodes the index name).
async fn open_pits_on(env: &TestEnv, index: &IndexName) -> usize {
    use base64::Engine as _;
    let url = format!("{}/_search/point_in_time/_all", env.settings.index_url);
    let all: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    let name = index.as_str().as_bytes();
    all["pits"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["pit_id"].as_str())
        .filter_map(|id| base64::engine::general_purpose::URL_SAFE.decode(id).ok())
        .filter(|raw| raw.windows(name.len()).any(|w| w == name))
        .count()
}

/// Takes `n` messages off the migration queue (acked, not processed) and
/// returns the ids they name; its own connection, closed after, gives any
/// message prefetched beyond `n` back.
async fn take_migrate_ids(env: &TestEnv, n: usize) -> Vec<DocId> {
    let broker = env.broker().await;
    let mut consumer = broker
        .consume(&broker.names.migration, 10, "test-take")
        .await
        .unwrap();
    let mut ids = Vec::new();
    while ids.len() < n {
        let d = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .expect("a message within 10 s")
            .unwrap()
            .unwrap();
        match Message::parse(&d.data, usize::MAX).unwrap() {
            Message::Migrate(m) => ids.push(m.id),
            other => panic!("not a migrate message: {other:?}"),
        }
        d.ack(Default::default()).await.unwrap();
    }
    broker.close().await;
    ids
}

#[tokio::test]
async fn scan_passes_overlap_without_queueing_a_document_twice() {
    let mut env = TestEnv::new("mg").await;
    env.settings.scan_page = 30;
    env.settings.max_queued = 70;
    let (_, current, _) = seeded_migration(&env, 200, 0).await;
    let ctx = ferry::context::Ctx::new(env.settings.clone())
        .await
        .unwrap();
    let broker = env.broker().await;
    let lease = LeaseHandle::assumed("test".into(), Instant::now() + Duration::from_secs(600));
    let shutdown = CancellationToken::new();
    let mut recent = scanner::Recent::default();

    let queued = scanner::pass(&ctx, &broker, &lease, &shutdown, &mut recent)
        .await
        .unwrap();
    assert_eq!(queued, 70, "one pass queues FERRY_MAX_QUEUED documents");
    assert_eq!(broker.depth(&broker.names.migration).await.unwrap(), 70);
    // A point in time open while the migration writes pins superseded
    // segments (and makes osmem copy the index on every write).
    assert_eq!(open_pits_on(&env, &current).await, 0);
    // More than half a pass waits: the next pass waits for room.
    let early = tokio::time::timeout(
        Duration::from_secs(2),
        scanner::pass(&ctx, &broker, &lease, &shutdown, &mut recent),
    )
    .await;
    assert!(early.is_err(), "a pass started with the queue full");

    // 40 taken (none has an outcome yet): 30 wait, under half a pass. The
    // next pass starts now and leaves out all 70 of the first.
    let taken = take_migrate_ids(&env, 40).await;
    let queued = scanner::pass(&ctx, &broker, &lease, &shutdown, &mut recent)
        .await
        .unwrap();
    assert_eq!(queued, 70);
    let waiting = take_migrate_ids(&env, 100).await;
    let all: BTreeSet<&DocId> = taken.iter().chain(&waiting).collect();
    assert_eq!(all.len(), 140, "no document queued twice");

    // The queue is empty, but what was taken has no outcome yet (as if
    // still being processed): the next pass leaves it out.
    let queued = scanner::pass(&ctx, &broker, &lease, &shutdown, &mut recent)
        .await
        .unwrap();
    assert_eq!(queued, 60, "the rest, none of the 140");
    // A scanner that has just taken the lease remembers nothing: it waits
    // for an empty queue, whatever its depth.
    let mut fresh = scanner::Recent::default();
    let after_takeover = tokio::time::timeout(
        Duration::from_secs(2),
        scanner::pass(&ctx, &broker, &lease, &shutdown, &mut fresh),
    )
    .await;
    assert!(after_takeover.is_err(), "a new scanner did not wait");
    let rest = take_migrate_ids(&env, 60).await;
    assert!(rest.iter().all(|id| !all.contains(id)));

    // Nothing new and the queue empty: what is remembered is forgotten, so
    // documents whose processors postponed them come back.
    let nothing = scanner::pass(&ctx, &broker, &lease, &shutdown, &mut recent)
        .await
        .unwrap();
    assert_eq!(nothing, 0, "all 200 are remembered");
    let again = scanner::pass(&ctx, &broker, &lease, &shutdown, &mut recent)
        .await
        .unwrap();
    assert_eq!(again, 70, "forgotten, and queued again");
}

// --------------------------------------------------------- 4. two workers

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_the_work_and_the_survivor_takes_the_lease() {
    let mut env = TestEnv::new("mg").await;
    // Short, but with room for a slow renewal on a busy machine.
    env.settings.lease_ttl = Duration::from_secs(5);
    env.settings.batch_size = 20;
    env.settings.scan_page = 100;
    env.settings.max_queued = 200;
    let (_, current, target) = seeded_migration(&env, 2000, 0).await;
    let broker = env.broker().await;
    let (w1, w2) = (Admin::spawn(&env, &[]), Admin::spawn(&env, &[]));
    let mut workers = BTreeMap::from([(w1.worker.pid(), w1), (w2.worker.pid(), w2)]);
    let pids: Vec<u32> = workers.keys().copied().collect();

    let envr = &env;
    let first = eventually(SHORT, "one of the workers holds the scan lease", || async {
        lease_holder_pid(envr).await.filter(|p| pids.contains(p))
    })
    .await;
    // Both consume while one scans.
    let (wa, wb) = (&workers[&pids[0]], &workers[&pids[1]]);
    let moved = std::sync::atomic::AtomicBool::new(false);
    eventually(LONG, "both workers migrated documents", || async {
        let now = lease_holder_pid(envr).await;
        assert!(
            now.is_none_or(|p| pids.contains(&p)),
            "a stranger holds the lease: {now:?}"
        );
        if now != Some(first) {
            moved.store(true, Ordering::Relaxed);
        }
        (messages(wa, "migration", "migrated").await > 0
            && messages(wb, "migration", "migrated").await > 0)
            .then_some(())
    })
    .await;
    let holder = eventually(SHORT, "the lease is held", || async {
        lease_holder_pid(envr).await
    })
    .await;
    assert!(pids.contains(&holder));
    let before = progress(&env, &current, &target).await;
    assert!(
        before.to_go > 0,
        "the migration ended before the kill: {before:?}"
    );

    let mut dead = workers.remove(&holder).expect("the holder");
    let (survivor, survivor_admin) = workers.pop_first().expect("the survivor");
    if moved.load(Ordering::Relaxed) || holder != first {
        eprintln!("two workers: the lease changed hands before the kill (a slow renewal); skipping the exclusivity check");
    } else {
        // Exactly one scanned: the other never queued a page.
        assert!(
            dead.metric("ferry_scanned_total", &[]).await > 0,
            "the lease holder scanned"
        );
        assert_eq!(
            survivor_admin.metric("ferry_scanned_total", &[]).await,
            0,
            "only the lease holder scans"
        );
    }
    let survivor_before = messages(&survivor_admin, "migration", "migrated").await;
    dead.worker.signal(Signal::SIGKILL);
    let killed = Instant::now();
    assert!(
        dead.worker.wait(SHORT).await.is_none(),
        "killed by a signal, no exit code"
    );

    let ttl = env.settings.lease_ttl;
    eventually(
        ttl + Duration::from_secs(6),
        "the survivor takes the lease",
        || async { (lease_holder_pid(envr).await == Some(survivor)).then_some(()) },
    )
    .await;
    eprintln!(
        "two workers: lease taken over {:?} after the kill ({before:?} at the kill)",
        killed.elapsed()
    );

    let p = all_have_outcomes(&env, &current, &target, &[&survivor_admin]).await;
    assert_eq!((p.total, p.migrated, p.failed), (2000, 2000, 0), "{p:?}");
    queues_empty(&broker).await;
    let report = verify_clean(&env).await;
    assert_eq!(report.compared, 2000);
    assert!(
        messages(&survivor_admin, "migration", "migrated").await > survivor_before,
        "the survivor kept migrating"
    );
    broker.close().await;
    drop((dead, survivor_admin));
    drop_indices(&env, &[&current, &target]).await;
}

// ------------------------------------------------ 5. SIGKILL and restart

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_is_replaced_and_the_migration_finishes_clean() {
    let mut env = TestEnv::new("mg").await;
    env.settings.batch_size = 20;
    env.settings.scan_page = 100;
    env.settings.max_queued = 200;
    let (_, current, target) = seeded_migration(&env, 2000, 0).await;
    let broker = env.broker().await;
    let mut first = env.spawn_worker();
    let (envr, c, t) = (&env, &current, &target);
    let at_kill = eventually(LONG, "some documents migrated", || async {
        let p = progress(envr, c, t).await;
        (p.migrated >= 200).then_some(p)
    })
    .await;
    first.signal(Signal::SIGKILL);
    assert!(
        first.wait(SHORT).await.is_none(),
        "killed by a signal, no exit code"
    );
    assert!(
        at_kill.to_go > 0,
        "the migration ended before the kill: {at_kill:?}"
    );

    let second = env.spawn_worker();
    let pid = second.pid();
    eventually(SHORT, "the new worker takes the scan lease", || async {
        (lease_holder_pid(envr).await == Some(pid)).then_some(())
    })
    .await;
    let p = all_have_outcomes(&env, &current, &target, &[]).await;
    assert_eq!((p.total, p.migrated, p.failed), (2000, 2000, 0), "{p:?}");
    queues_empty(&broker).await;
    let report = verify_clean(&env).await;
    assert_eq!(report.compared, 2000);
    eprintln!("restart: killed at {at_kill:?}, finished clean");
    broker.close().await;
    drop((first, second));
    drop_indices(&env, &[&current, &target]).await;
}

/// A migrate message delivered again (its worker died between its write
/// and its stores re-read) goes to the edit path: that write may have
/// brought a deleted document back into a Migration index with no
/// tombstone (rolled back), and the document is already gone from Current,
/// so the processor's own checks would drop the message and leave it there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_migrate_message_goes_to_the_edit_path() {
    let env = TestEnv::new("rd").await;
    let ids = env.seed(10, 0).await;
    let current = env.current_index().await;
    let target = support::docs::start_migration(&env).await;
    lifecycle::pause(&env.ctx).await.expect("pause");
    let broker = env.broker().await;
    let a = ids[4].clone();
    ferry::ops::queue::queue(&env.ctx, &broker, std::slice::from_ref(&a))
        .await
        .expect("queue");
    let migrate = take(&env, &broker.names.migration, 1).await;
    let Ok(Message::Migrate(m)) = Message::parse(&migrate[&a], usize::MAX) else {
        panic!("not a migrate message")
    };
    let Payload::Document(body) = &m.payload else {
        panic!("a live projection")
    };
    // The document is deleted (stores, then Current); the delete's own
    // message is taken away, and what the dead delivery wrote is put back.
    Pipeline::new(&env.ctx, &broker, 5)
        .delete(&a)
        .await
        .expect("delete")
        .expect("a was live");
    take(&env, &broker.names.edits, 1).await;
    let path = format!(
        "/{}/_doc/{}",
        current,
        ferry::index::client::segment(a.as_str())
    );
    env.ctx
        .index
        .call(reqwest::Method::DELETE, &path, None)
        .await
        .expect("delete from Current");
    env.ctx
        .index
        .put_external(&Target::Index(target.clone()), &a, m.version, body)
        .await
        .expect("the dead delivery's write");

    // Delivered once and returned: the broker marks it redelivered.
    broker
        .publish_event("migrate", &migrate[&a])
        .await
        .expect("publish");
    let thief = env.broker().await;
    let mut consumer = thief
        .consume(&broker.names.migration, 1, "redelivery-test")
        .await
        .expect("consume");
    let d = tokio::time::timeout(SHORT, consumer.next())
        .await
        .expect("a delivery")
        .expect("consumer open")
        .expect("delivery");
    d.acker
        .nack(lapin::options::BasicNackOptions {
            requeue: true,
            multiple: false,
        })
        .await
        .expect("nack");
    thief.close().await;

    let admin = Admin::spawn(&env, &[]);
    let outcomes = eventually(SHORT, "the redelivered message is processed", || {
        migration_outcomes(&admin, 1)
    })
    .await;
    assert_eq!(
        outcomes,
        [1, 0, 0, 0, 0],
        "settled by the edit path (migrated, postponed, dropped, requeued, failed)"
    );
    assert!(
        stored(&env, &target, &a).await.is_none(),
        "the deleted document left the Migration index"
    );
    drop_indices(&env, &[&current, &target]).await;
}
