//! The zero-inconsistency harness: from a seed, a random but reproducible
//! schedule of uploads, edits, re-uploads, deletes and duplicate messages
//! from several concurrent publishers, against two real `ferry worker`
//! processes, while a controller changes the migration state. Then a
//! checker asserts DESIGN.md's invariant once the queues drain.
//!
//! Every seed picks a schedule kind (`seed % 3`, see [`schedule::Kind`]):
//!
//! - **plain** (`seed % 3 == 1`): start, pause/resume, sometimes abandon
//!   (deleting the index) and start again, complete while edits flow;
//! - **rollback** (`seed % 3 == 0`): start, complete, roll back while edits
//!   flow (the new index becomes the paused migration target), resume,
//!   complete again;
//! - **second** (`seed % 3 == 2`): start, complete, start a second
//!   migration from the new Current, complete it (the first Current is
//!   then retired: no alias, kept).
//!
//! and, per seed, from its random stream:
//!
//! - worker SIGKILLs and restarts (one or two), stale migration messages
//!   replayed later;
//! - one worker with a long `FERRY_STATE_TTL` (5-10 s), so its cached
//!   alias view is stale across the alias changes;
//! - a SIGSTOP of one worker for longer than the lease TTL (2 s) and its
//!   state TTL, often spanning an alias change, then SIGCONT;
//! - three seconds of index or DynamoDB faults (delay, 503, throttling)
//!   for the second worker, which then reaches both through proxies;
//! - documents the new mapping rejects: some edits set
//!   `metadata.copyright` to text, which the migration mapping maps as
//!   `integer`. Before each completion the harness fixes them the way an
//!   operator would (edits the stores, publishes the edits, retries the
//!   failures) and completes through the checked gate with a verify.
//!
//! The checker ([`check`]) waits until no ferry queue holds a ready or
//! unacknowledged message for 3 s, twice with a 2 s settle between, and
//! each time compares Current, and Historical while a rollback is allowed,
//! with the stores, checks the outcome records and looks for stray indices.
#![allow(dead_code)]

mod check;
mod drain;
mod fix;
mod schedule;
mod workers;

pub use schedule::Kind;

use super::support::TestEnv;
use ferry::ops::OpsError;
use ferry::queue::{Broker, MigrateMessage, Payload};
use ferry::seed::pipeline::Pipeline;
use ferry::stores::Projection;
use ferry::types::{DocId, IndexName};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Knobs of one run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The seed everything is derived from.
    pub seed: u64,
    /// Publisher operations at least (they go on until the schedule ends).
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
    /// The schedule kind; `None`: from the seed.
    pub kind: Option<Kind>,
    /// Whether one worker caches the alias state for long; `None`: from the seed.
    pub stale_worker: Option<bool>,
    /// Whether migrations go to another cluster (the stack's second index
    /// server); the checker then reads each index on its cluster.
    pub across: bool,
}

impl Plan {
    /// The CI plan for a seed.
    pub fn ci(seed: u64) -> Self {
        Self {
            seed,
            ops: 250,
            publishers: 3,
            initial_docs: 40,
            id_space: 70,
            fault: None,
            allow_abandon: true,
            kind: None,
            stale_worker: None,
            across: false,
        }
    }

    /// The CI plan for a seed, migrating to another cluster.
    pub fn across(seed: u64) -> Self {
        Self {
            across: true,
            ..Self::ci(seed)
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
    /// The schedule kind the seed ran.
    pub kind: Kind,
    /// Operations published.
    pub ops: usize,
    /// Worker kills.
    pub kills: usize,
    /// Worker SIGSTOPs (each followed by a SIGCONT).
    pub stops: usize,
    /// Rollbacks done.
    pub rollbacks: usize,
    /// Completions done.
    pub completions: usize,
    /// Migrations started (first, again after abandon, second).
    pub starts: usize,
    /// Abandons done.
    pub abandons: usize,
    /// Index or DynamoDB fault windows.
    pub faults: usize,
    /// The long state TTL of one worker, if the seed has one.
    pub stale_ttl: Option<Duration>,
    /// Documents ever given a value the new mapping rejects.
    pub rejected: usize,
    /// Operator fixes of such documents (store edits published).
    pub fixed: usize,
    /// Completions that passed the gate only once the publishers paused.
    pub quiet_completions: usize,
    /// Inconsistencies (empty when the invariant holds).
    pub problems: Vec<String>,
    /// A replayable report: seed, events, and the history of each bad document.
    pub report: String,
}

/// Counters of what the controller did.
#[derive(Default)]
struct Counters {
    kills: AtomicUsize,
    stops: AtomicUsize,
    rollbacks: AtomicUsize,
    completions: AtomicUsize,
    starts: AtomicUsize,
    abandons: AtomicUsize,
    faults: AtomicUsize,
    fixed: AtomicUsize,
    quiet_completions: AtomicUsize,
}

/// Documents given a value the new mapping rejects.
#[derive(Default)]
struct Rejects {
    /// Publishers may still make such edits.
    open: AtomicBool,
    /// Such edits being made now.
    in_flight: AtomicUsize,
    /// Every id that was given one.
    ids: Mutex<BTreeSet<DocId>>,
    /// The harness fixed them (from then on, their failures are retried).
    fixed: AtomicBool,
}

struct Run {
    env: TestEnv,
    broker: Broker,
    plan: Plan,
    schedule: schedule::Schedule,
    ids: Vec<DocId>,
    history: Mutex<History>,
    done: AtomicUsize,
    /// The controller ran its last step: publishers stop once `plan.ops` ran.
    finished: AtomicBool,
    /// A completion is being tried (publishers slow down).
    completing: AtomicBool,
    /// Publishers wait (a completion refused with edits flowing is tried
    /// once more on quiet queues).
    quiet: AtomicBool,
    stale: Mutex<Vec<MigrateMessage>>,
    rejects: Rejects,
    /// Indices the schedule left without an alias on purpose (a Historical
    /// index replaced by a later completion).
    retired: Mutex<Vec<IndexName>>,
    /// The Historical index before the completion being tried.
    historical_before: Mutex<Option<IndexName>>,
    /// Problems found before the check (a completion that never passed).
    early: Mutex<Vec<String>>,
    count: Counters,
}

impl Run {
    fn note(&self, id: &DocId, what: String) {
        self.history.lock().unwrap().doc(id, what);
    }
    fn event(&self, what: String) {
        self.history.lock().unwrap().event(what);
    }
    fn problem(&self, what: String) {
        self.event(format!("PROBLEM {what}"));
        self.early.lock().unwrap().push(what);
    }
}

/// Sets `finished` when the controller ends, also by a panic, so that the
/// publishers never wait for it forever.
struct Finish(Arc<Run>);

impl Drop for Finish {
    fn drop(&mut self) {
        self.0.finished.store(true, Ordering::SeqCst);
    }
}

/// Runs one seed end to end and checks the invariant.
pub async fn run(plan: Plan) -> Outcomes {
    let mut env = if plan.across {
        TestEnv::across("cx").await
    } else {
        TestEnv::new("cs").await
    };
    env.settings.batch_size = 20;
    env.settings.scan_page = 50;
    env.settings.max_queued = 200;
    env.settings.concurrency = 8;
    env.settings.lease_ttl = Duration::from_secs(2);
    env.settings.scan_interval = Duration::from_millis(200);
    env.settings.rollback_window = Duration::from_secs(3600);
    let broker = env.broker().await;
    env.seed(plan.initial_docs, 0).await;
    // The legacy index has the shipped mapping; migrations use one that
    // rejects some documents.
    env.settings.mapping = fix::rejecting_mapping();
    let ids: Vec<DocId> = (0..plan.id_space)
        .map(|i| ferry::seed::data::id_of(&format!("{}-", env.name), i))
        .collect();
    let schedule = schedule::Schedule::new(&plan);
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
        finished: AtomicBool::new(false),
        completing: AtomicBool::new(false),
        quiet: AtomicBool::new(false),
        stale: Mutex::new(Vec::new()),
        rejects: Rejects {
            open: AtomicBool::new(schedule.rejects),
            ..Default::default()
        },
        retired: Mutex::new(Vec::new()),
        historical_before: Mutex::new(None),
        early: Mutex::new(Vec::new()),
        count: Counters::default(),
        schedule,
    });
    run.event(format!("schedule: {}", run.schedule.describe()));
    let mut workers = workers::Workers::spawn(&run).await;

    let publishers: Vec<_> = (0..plan.publishers)
        .map(|p| tokio::spawn(publish(run.clone(), p as u64)))
        .collect();
    let controller = {
        let finish = Finish(run.clone());
        let run = run.clone();
        let workers = &mut workers;
        async move {
            schedule::control(&run, workers).await;
            drop(finish);
        }
    };
    controller.await;
    for p in publishers {
        p.await.expect("publisher task");
    }
    workers.calm(&run).await;
    // The last completion may still be pending (the controller gave up):
    // try once more, so the check sees the final state.
    schedule::ensure_completed(&run).await;
    // The checker's findings first (they name documents); a completion
    // refused for good is also among the events.
    let mut problems = drain::settle_and_check(&run).await;
    problems.extend(run.early.lock().unwrap().iter().cloned());
    drop(workers);
    let report = report(&run, &problems);
    let rejected = run.rejects.ids.lock().unwrap().len();
    let c = &run.count;
    Outcomes {
        kind: run.schedule.kind,
        ops: run.done.load(Ordering::SeqCst),
        kills: c.kills.load(Ordering::SeqCst),
        stops: c.stops.load(Ordering::SeqCst),
        rollbacks: c.rollbacks.load(Ordering::SeqCst),
        completions: c.completions.load(Ordering::SeqCst),
        starts: c.starts.load(Ordering::SeqCst),
        abandons: c.abandons.load(Ordering::SeqCst),
        faults: c.faults.load(Ordering::SeqCst),
        stale_ttl: run.schedule.stale_ttl,
        rejected,
        fixed: c.fixed.load(Ordering::SeqCst),
        quiet_completions: c.quiet_completions.load(Ordering::SeqCst),
        problems,
        report,
    }
}

/// One publisher: edits (50%), uploads and re-uploads (25%), deletes (15%),
/// duplicate messages without a store change (10%); in seeds with
/// rejected documents, one operation in 25 instead gives a live document a
/// value the migration mapping rejects. Publishers go on until `plan.ops`
/// ran and the controller is done.
async fn publish(run: Arc<Run>, p: u64) {
    let seed = run.plan.seed.wrapping_mul(31).wrapping_add(p);
    let pipeline = Pipeline::new(&run.env.ctx, &run.broker, seed);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    loop {
        let n = run.done.fetch_add(1, Ordering::SeqCst);
        if n >= run.plan.ops && run.finished.load(Ordering::SeqCst) {
            run.done.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        pace(&run).await;
        let id = run.ids[rng.random_range(0..run.ids.len())].clone();
        let roll: f64 = rng.random();
        let reject = rng.random_bool(0.04);
        let result = if reject && run.rejects.open.load(Ordering::SeqCst) {
            fix::reject(&run, &id, p).await
        } else if roll < 0.5 {
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

/// Publishers keep pace with the workers: at most [`BACKLOG`] messages
/// ready on the high queues (the run's length then follows the workers'
/// speed, not the publishers'), and one operation per publisher every
/// 120 ms while a completion is being tried, so that the checked gate's
/// verify can find a moment without an edit in flight; edits still flow.
async fn pace(run: &Run) {
    while run.quiet.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if run.completing.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    for _ in 0..200 {
        match run.broker.high_depth().await {
            Ok(n) if n as usize > BACKLOG => tokio::time::sleep(Duration::from_millis(20)).await,
            _ => return,
        }
    }
}

/// Messages the publishers leave ready on the high queues at most.
const BACKLOG: usize = 8;

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

fn report(run: &Run, problems: &[String]) -> String {
    let h = run.history.lock().unwrap();
    let mut out = format!(
        "seed {} ({} kind, {} ops, replay with FERRY_SEED={})\nevents:\n",
        run.plan.seed,
        run.schedule.kind.name(),
        run.done.load(Ordering::SeqCst),
        run.plan.seed
    );
    for e in &h.events {
        out.push_str(&format!("  {e}\n"));
    }
    if problems.len() > 15 {
        out.push_str(&format!(
            "{} problems, the first 15 with history:\n",
            problems.len()
        ));
    }
    for p in problems.iter().take(15) {
        out.push_str(&format!("problem: {p}\n"));
        if let Some(id) = p.split(": ").next().and_then(|raw| DocId::parse(raw).ok()) {
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
