//! The zero-inconsistency harness: from a seed, a random but reproducible
//! schedule of uploads, edits, re-uploads, deletes and duplicate messages
//! from several concurrent publishers, against real `ferry worker`
//! processes, with a migration started at a random moment, pause/resume,
//! worker SIGKILLs and restarts, stale migration messages, an optional
//! abandon and restart, and the completion switch while edits still flow.
//! Then a checker asserts DESIGN.md's invariant once the queues drain.
#![allow(dead_code)]

use super::support::{TestEnv, Worker};
use ferry::index::records::{self, Outcome};
use ferry::index::scan::ScanRequest;
use ferry::ops::{self, OpsError};
use ferry::queue::{Broker, MigrateMessage, Payload};
use ferry::seed::pipeline::Pipeline;
use ferry::stores::{Projection, ProjectionError};
use ferry::types::{DocId, IndexName};
use futures::TryStreamExt;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Knobs of one run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The seed everything is derived from.
    pub seed: u64,
    /// Publisher operations in total.
    pub ops: usize,
    /// Concurrent publishers.
    pub publishers: usize,
    /// Documents seeded before the run.
    pub initial_docs: usize,
    /// Size of the id space (collisions are the point).
    pub id_space: usize,
    /// Rules to break in the workers (`FERRY_FAULT`), for the checker test.
    pub fault: Option<String>,
    /// Whether the schedule may abandon and restart the migration.
    pub allow_abandon: bool,
}

impl Plan {
    /// The CI plan for a seed.
    pub fn ci(seed: u64) -> Self {
        Self {
            seed,
            ops: 500,
            publishers: 3,
            initial_docs: 40,
            id_space: 70,
            fault: None,
            allow_abandon: true,
        }
    }
}

/// What happened, per document and overall, to explain a failure.
#[derive(Default)]
pub struct History {
    started: Option<Instant>,
    by_id: BTreeMap<DocId, Vec<String>>,
    events: Vec<String>,
}

impl History {
    fn at(&self) -> String {
        format!(
            "{:>7.3}s",
            self.started
                .map(|s| s.elapsed().as_secs_f64())
                .unwrap_or(0.0)
        )
    }
    fn doc(&mut self, id: &DocId, what: String) {
        let line = format!("{} {what}", self.at());
        self.by_id.entry(id.clone()).or_default().push(line);
    }
    fn event(&mut self, what: String) {
        let line = format!("{} {what}", self.at());
        self.events.push(line);
    }
}

/// What a run proved or found.
#[derive(Debug)]
pub struct Outcomes {
    /// Operations published.
    pub ops: usize,
    /// Worker kills.
    pub kills: usize,
    /// Inconsistencies (empty when the invariant holds).
    pub problems: Vec<String>,
    /// A replayable report: seed, events, and the history of each bad document.
    pub report: String,
}

struct Run {
    env: TestEnv,
    broker: Broker,
    plan: Plan,
    ids: Vec<DocId>,
    history: Mutex<History>,
    done: AtomicUsize,
    switched: AtomicBool,
    stale: Mutex<Vec<MigrateMessage>>,
}

impl Run {
    fn note(&self, id: &DocId, what: String) {
        self.history.lock().unwrap().doc(id, what);
    }
    fn event(&self, what: String) {
        self.history.lock().unwrap().event(what);
    }
}

/// Runs one seed end to end and checks the invariant.
pub async fn run(plan: Plan) -> Outcomes {
    let mut env = TestEnv::new("cs").await;
    env.settings.batch_size = 20;
    env.settings.scan_page = 50;
    env.settings.max_queued = 200;
    env.settings.concurrency = 8;
    env.settings.lease_ttl = Duration::from_secs(2);
    env.settings.scan_interval = Duration::from_millis(200);
    env.settings.rollback_window = Duration::from_secs(3600);
    let broker = env.broker().await;
    env.seed(plan.initial_docs, 0).await;
    let ids: Vec<DocId> = (0..plan.id_space)
        .map(|i| ferry::seed::data::id_of(&format!("{}-", env.name), i))
        .collect();
    let run = Arc::new(Run {
        env,
        broker,
        plan: plan.clone(),
        ids,
        history: Mutex::new(History {
            started: Some(Instant::now()),
            ..Default::default()
        }),
        done: AtomicUsize::new(0),
        switched: AtomicBool::new(false),
        stale: Mutex::new(Vec::new()),
    });
    let fault: Vec<(&str, &str)> = plan
        .fault
        .as_deref()
        .map(|f| vec![("FERRY_FAULT", f)])
        .unwrap_or_default();
    let workers = Arc::new(tokio::sync::Mutex::new(vec![
        run.env.spawn_worker_with(&fault),
        run.env.spawn_worker_with(&fault),
    ]));

    let publishers: Vec<_> = (0..plan.publishers)
        .map(|p| tokio::spawn(publish(run.clone(), p as u64)))
        .collect();
    let controller = control(
        run.clone(),
        workers.clone(),
        fault
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    let kills = controller.await;
    for p in publishers {
        p.await.expect("publisher task");
    }
    // Make sure the switch happened, then let everything drain and check.
    ensure_completed(&run).await;
    let problems = settle_and_check(&run).await;
    drop(workers);
    let report = report(&run, &problems);
    Outcomes {
        ops: run.done.load(Ordering::SeqCst),
        kills,
        problems,
        report,
    }
}

/// One publisher: edits (50%), uploads and re-uploads (25%), deletes (15%),
/// duplicate messages without a store change (10%).
async fn publish(run: Arc<Run>, p: u64) {
    let seed = run.plan.seed.wrapping_mul(31).wrapping_add(p);
    let pipeline = Pipeline::new(&run.env.ctx, &run.broker, seed);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    while run.done.fetch_add(1, Ordering::SeqCst) < run.plan.ops {
        let id = run.ids[rng.random_range(0..run.ids.len())].clone();
        let roll: f64 = rng.random();
        let result = if roll < 0.5 {
            pipeline.edit(&id).await.map(|v| {
                v.map(|v| format!("p{p} edit -> v{v}"))
                    .unwrap_or_else(|| format!("p{p} edit skipped (absent)"))
            })
        } else if roll < 0.75 {
            pipeline
                .upload(&id)
                .await
                .map(|v| format!("p{p} upload -> v{v}"))
        } else if roll < 0.9 {
            pipeline.delete(&id).await.map(|v| {
                v.map(|v| format!("p{p} delete -> v{v}"))
                    .unwrap_or_else(|| format!("p{p} delete skipped (absent)"))
            })
        } else {
            let kind = if rng.random_bool(0.5) {
                ferry::queue::DocKind::Edit
            } else {
                ferry::queue::DocKind::Upload
            };
            let msg = ferry::queue::DocMessage {
                kind,
                id: id.clone(),
                version: None,
            };
            run.broker
                .publish_event(kind.as_str(), &msg.to_body())
                .await
                .map(|_| format!("p{p} duplicate {} message", kind.as_str()))
                .map_err(OpsError::from)
        };
        match result {
            Ok(line) => run.note(&id, line),
            Err(e) => run.note(&id, format!("p{p} operation failed: {e}")),
        }
        // Capture stale migration messages to replay later.
        if rng.random_bool(0.05) {
            if let Some(m) = stale_message(&run, &id).await {
                run.stale.lock().unwrap().push(m);
            }
        }
    }
}

/// A migrate message for `id` as the scanner would build it now; replayed
/// later it is stale.
async fn stale_message(run: &Run, id: &DocId) -> Option<MigrateMessage> {
    let ctx = &run.env.ctx;
    let st = ctx.index.alias_state(&ctx.aliases).await.ok()?;
    let target = st.migration_index()?;
    let doc = ctx.index.get(&ctx.aliases.current, id).await.ok()??;
    let payload = match ctx.stores.project_one(id).await.ok()?.ok()? {
        Projection::Document(d) => Payload::Document(d.to_json()),
        Projection::Deleted { .. } => Payload::Deleted(true),
    };
    let version = ferry::types::Version::new(doc.version()).ok()?;
    Some(MigrateMessage {
        id: id.clone(),
        target,
        version,
        seq_no: doc.seq_no,
        primary_term: doc.primary_term,
        payload,
    })
}

fn at(rng: &mut ChaCha8Rng, ops: usize, from: f64, to: f64) -> usize {
    (ops as f64 * rng.random_range(from..to)) as usize
}

/// The controller: performs the schedule's events when the publishers reach
/// the chosen operation counts. Returns how many workers it killed.
async fn control(
    run: Arc<Run>,
    workers: Arc<tokio::sync::Mutex<Vec<Worker>>>,
    fault: Vec<(String, String)>,
) -> usize {
    let ops = run.plan.ops;
    let mut rng = ChaCha8Rng::seed_from_u64(run.plan.seed ^ 0xC0FFEE);
    let start_at = at(&mut rng, ops, 0.0, 0.3);
    let pause_at = at(&mut rng, ops, 0.3, 0.45);
    let resume_at = pause_at + ops / 20;
    let kill_at = at(&mut rng, ops, 0.3, 0.7);
    let second_kill = rng.random_bool(0.5).then(|| at(&mut rng, ops, 0.4, 0.8));
    let abandon = rng
        .random_bool(0.2)
        .then(|| at(&mut rng, ops, 0.35, 0.5))
        .filter(|_| run.plan.allow_abandon);
    let replay_at = at(&mut rng, ops, 0.5, 0.7);
    let complete_at = at(&mut rng, ops, 0.75, 0.9);
    let mut kills = 0;
    let wait_for = |n: usize| {
        let run = run.clone();
        async move {
            while run.done.load(Ordering::SeqCst) < n.min(run.plan.ops) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    let ctx = &run.env.ctx;
    let fault_env: Vec<(&str, &str)> = fault
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();

    wait_for(start_at).await;
    let started = ops::lifecycle::start(ctx, &run.env.settings.mapping)
        .await
        .expect("start");
    run.event(format!("start -> {}", started.index));

    let mut steps: Vec<(usize, &str)> = vec![
        (pause_at, "pause"),
        (resume_at, "resume"),
        (kill_at, "kill"),
        (replay_at, "replay"),
    ];
    if let Some(k) = second_kill {
        steps.push((k, "kill"));
    }
    if let Some(a) = abandon {
        steps.push((a, "abandon"));
        steps.push((a + ops / 25, "restart"));
    }
    steps.sort();
    for (n, what) in steps {
        wait_for(n).await;
        match what {
            "pause" => run.event(format!(
                "pause: {:?}",
                ops::lifecycle::pause(ctx).await.map(|c| c.done)
            )),
            "resume" => run.event(format!(
                "resume: {:?}",
                ops::lifecycle::resume(ctx).await.map(|c| c.done)
            )),
            "kill" => {
                let mut ws = workers.lock().await;
                let victim = rng.random_range(0..ws.len());
                ws[victim].signal("KILL");
                let _ = ws[victim].wait(Duration::from_secs(10)).await;
                ws[victim] = run.env.spawn_worker_with(&fault_env);
                kills += 1;
                run.event(format!("SIGKILL worker {victim} and restart it"));
            }
            "replay" => {
                let stale: Vec<MigrateMessage> = run.stale.lock().unwrap().drain(..).collect();
                for m in &stale {
                    let _ = run.broker.publish_event("migrate", &m.to_body()).await;
                    run.note(
                        &m.id,
                        format!(
                            "replayed a stale migrate message (v{} seq {})",
                            m.version, m.seq_no
                        ),
                    );
                }
                run.event(format!("replayed {} stale migrate messages", stale.len()));
            }
            "abandon" => run.event(format!(
                "abandon: {:?}",
                ops::lifecycle::abandon(ctx, true).await.map(|c| c.done)
            )),
            "restart" => run.event(format!(
                "start again: {:?}",
                ops::lifecycle::start(ctx, &run.env.settings.mapping)
                    .await
                    .map(|c| c.done)
            )),
            _ => unreachable!(),
        }
    }
    if ops::lifecycle::healthy_state(ctx)
        .await
        .map(|s| s.is_paused())
        .unwrap_or(false)
    {
        let _ = ops::lifecycle::resume(ctx).await;
    }
    wait_for(complete_at).await;
    // The switch, while the publishers keep going.
    complete_when_ready(&run, Duration::from_secs(90)).await;
    kills
}

/// Completes as soon as nothing is left to go (edits keep flowing).
async fn complete_when_ready(run: &Run, limit: Duration) {
    let ctx = &run.env.ctx;
    let deadline = Instant::now() + limit;
    loop {
        match ops::lifecycle::complete(ctx, ops::lifecycle::Gate::checked(0)).await {
            Ok(c) => {
                run.switched.store(true, Ordering::SeqCst);
                run.event(format!("complete: {}", c.done));
                return;
            }
            Err(OpsError::Refused(why)) if Instant::now() < deadline => {
                if why.contains("no migration is in progress") {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("seed {}: complete failed: {e}", run.plan.seed),
        }
    }
}

async fn ensure_completed(run: &Run) {
    if !run.switched.load(Ordering::SeqCst) {
        complete_when_ready(run, Duration::from_secs(90)).await;
    }
}

/// Waits for the queues to drain, then checks; with in-flight work the
/// check is retried until it passes or the deadline ends.
async fn settle_and_check(run: &Run) -> Vec<String> {
    let deadline =
        Instant::now() + Duration::from_secs(if run.plan.fault.is_some() { 25 } else { 90 });
    loop {
        let drained = run.broker.high_depth().await.unwrap_or(1) == 0
            && run
                .broker
                .depth(&run.broker.names.migration)
                .await
                .unwrap_or(1)
                == 0;
        let problems = if drained {
            check(run).await
        } else {
            vec!["queues not drained".to_string()]
        };
        if problems.is_empty() || Instant::now() > deadline {
            return problems;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The invariant: the index behind the Current alias holds exactly the ids
/// alive in the stores, each equal to a fresh projection at the stores'
/// version; and every document of the old index that existed before the
/// switch carries its outcome record for the new index.
async fn check(run: &Run) -> Vec<String> {
    let ctx = &run.env.ctx;
    let mut problems = Vec::new();
    let st = match ctx.index.alias_state(&ctx.aliases).await {
        Ok(s) => s,
        Err(e) => return vec![format!("cannot read aliases: {e}")],
    };
    let Some(current) = st.current_index() else {
        return vec!["no Current index".into()];
    };
    let _ = ctx.index.refresh(&current).await;
    let in_index: BTreeMap<DocId, Value> = match all(ctx, &current, Value::Bool(true)).await {
        Ok(docs) => docs,
        Err(e) => return vec![format!("cannot scan {current}: {e}")],
    };
    let expected = match ctx.stores.project_many(&run.ids).await {
        Ok(p) => p,
        Err(e) => return vec![format!("cannot read the stores: {e}")],
    };
    for (id, projected) in expected {
        let stored = in_index.get(&id);
        match (projected, stored) {
            (Ok(Projection::Document(d)), Some(body)) => {
                let mut body = body.clone();
                if let Value::Object(o) = &mut body {
                    o.remove("esInfo");
                }
                if body != d.to_json() {
                    problems.push(format!(
                        "{id}: index holds version {} but the stores are at {}",
                        body["version"], d.version
                    ));
                }
            }
            (Ok(Projection::Document(d)), None) => problems.push(format!(
                "{id}: alive at version {} in the stores but missing from {current}",
                d.version
            )),
            (Ok(Projection::Deleted { version, .. }), Some(_)) => problems.push(format!(
                "{id}: deleted at version {version} but present in {current}"
            )),
            (Err(ProjectionError::MissingEdits), Some(_)) => {
                problems.push(format!("{id}: never created but present in {current}"))
            }
            (Err(e), Some(_)) => {
                problems.push(format!("{id}: cannot be projected ({e}) but present"))
            }
            (_, None) => {}
        }
    }
    let known: BTreeSet<&DocId> = run.ids.iter().collect();
    for id in in_index.keys().filter(|id| !known.contains(id)) {
        problems.push(format!("{id}: stray document in {current}"));
    }
    if let Some(old) = st.historical_index() {
        let _ = ctx.index.refresh(&old).await;
        match all(ctx, &old, serde_json::json!(["esInfo"])).await {
            Ok(docs) => {
                for (id, body) in docs {
                    if records::outcome_of(&body, &current) != Outcome::Migrated {
                        problems.push(format!(
                            "{id}: in {old} without a migratedTo {current} record"
                        ));
                    }
                }
            }
            Err(e) => problems.push(format!("cannot scan {old}: {e}")),
        }
    }
    problems
}

async fn all(
    ctx: &ferry::worker::Ctx,
    index: &IndexName,
    source: Value,
) -> Result<BTreeMap<DocId, Value>, ferry::index::IndexError> {
    let req = ScanRequest {
        query: serde_json::json!({ "match_all": {} }),
        page_size: 500,
        source,
    };
    let pages: Vec<_> = ctx.index.scan(index, req).try_collect().await?;
    Ok(pages
        .into_iter()
        .flatten()
        .map(|d| (d.id, d.source))
        .collect())
}

fn report(run: &Run, problems: &[String]) -> String {
    let h = run.history.lock().unwrap();
    let mut out = format!(
        "seed {} ({} ops, replay with FERRY_SEED={})\nevents:\n",
        run.plan.seed, run.plan.ops, run.plan.seed
    );
    for e in &h.events {
        out.push_str(&format!("  {e}\n"));
    }
    for p in problems.iter().take(10) {
        out.push_str(&format!("problem: {p}\n"));
        if let Some(id) = p.split(':').next().and_then(|raw| DocId::parse(raw).ok()) {
            for line in h.by_id.get(&id).map(|v| v.as_slice()).unwrap_or(&[]) {
                out.push_str(&format!("    {line}\n"));
            }
        }
    }
    out
}

/// Seeds to run: `FERRY_SEED` replays one; otherwise `count` seeds from `base`.
pub fn seeds(base: u64, count: u64) -> Vec<u64> {
    match std::env::var("FERRY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(one) => vec![one],
        None => (base..base + count).collect(),
    }
}
