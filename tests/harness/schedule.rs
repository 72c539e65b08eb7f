//! The schedule of one seed and the controller that performs it: alias
//! changes (start, pause, resume, abandon, complete, rollback, a second
//! migration), worker kills and stops, proxy faults and stale messages,
//! each when the publishers reach an operation count drawn from the seed.

use super::workers::Workers;
use super::{fix, Plan, Run};
use ferry::ops::{self, OpsError};
use ferry::queue::MigrateMessage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a completion is tried with edits flowing before the
/// publishers pause for one more try.
const COMPLETE_LIMIT: Duration = Duration::from_secs(30);
/// Documents the checked gate's verify samples.
pub const VERIFY_SAMPLE: usize = 5;

/// The shape of a seed's migration history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Start, sometimes abandon and start again, complete.
    Plain,
    /// Start, complete, roll back while edits flow, resume, complete again.
    Rollback,
    /// Start, complete, start a second migration, complete it.
    Second,
}

impl Kind {
    /// The kind a seed runs: `seed % 3` of 0 rolls back, 1 is plain, 2
    /// migrates twice (so any 30 consecutive seeds hold 10 rollbacks).
    pub fn of_seed(seed: u64) -> Kind {
        match seed % 3 {
            0 => Kind::Rollback,
            1 => Kind::Plain,
            _ => Kind::Second,
        }
    }

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Plain => "plain",
            Kind::Rollback => "rollback",
            Kind::Second => "second-migration",
        }
    }
}

/// A fault of the second worker's index or DynamoDB traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Every index request delayed by 300 ms.
    IndexDelay,
    /// Every index request answered 503.
    IndexUnavailable,
    /// Every DynamoDB request throttled.
    DynamoThrottle,
}

/// One step of the controller; at the same operation count, steps run in
/// this order (a stop just before the alias change it spans).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    Start,
    Pause,
    Resume,
    Kill,
    Fault,
    Replay,
    Stop,
    Abandon,
    StartAgain,
    Complete,
    Rollback,
}

/// Everything a seed decides before the run.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub kind: Kind,
    /// Steps at publisher operation counts, in order.
    pub steps: Vec<(usize, Step)>,
    /// Worker 0's `FERRY_STATE_TTL`, when long.
    pub stale_ttl: Option<Duration>,
    /// The worker a `Stop` step stops.
    pub stop_slot: usize,
    /// What a `Fault` step does (worker 1 then runs behind proxies).
    pub fault: Option<Fault>,
    /// Whether publishers make documents the new mapping rejects.
    pub rejects: bool,
}

impl Schedule {
    /// The schedule of `plan.seed`.
    pub fn new(plan: &Plan) -> Schedule {
        let mut rng = ChaCha8Rng::seed_from_u64(plan.seed ^ 0xC0FFEE);
        let n = plan.ops;
        let mut at = |from: f64, to: f64| (n as f64 * rng.random_range(from..to)) as usize;
        let kind = plan.kind.unwrap_or(Kind::of_seed(plan.seed));
        let pause = at(0.15, 0.25);
        let mut steps = vec![
            (at(0.0, 0.15), Step::Start),
            (pause, Step::Pause),
            (pause + n / 20, Step::Resume),
            (at(0.2, 0.7), Step::Kill),
            (at(0.4, 0.6), Step::Replay),
        ];
        match kind {
            Kind::Plain => {
                let abandon = at(0.35, 0.45);
                steps.push((at(0.6, 0.75), Step::Complete));
                if plan.allow_abandon && rng.random_bool(0.35) {
                    steps.push((abandon, Step::Abandon));
                    steps.push((abandon + n / 25, Step::StartAgain));
                }
            }
            Kind::Rollback => {
                let (complete, rollback, again) = (at(0.3, 0.4), at(0.5, 0.6), at(0.7, 0.8));
                steps.push((complete, Step::Complete));
                steps.push((rollback, Step::Rollback));
                steps.push((rollback + n / 20, Step::Resume));
                steps.push((again, Step::Complete));
            }
            Kind::Second => {
                let (complete, second, again) = (at(0.3, 0.4), at(0.45, 0.55), at(0.7, 0.8));
                steps.push((complete, Step::Complete));
                steps.push((second, Step::StartAgain));
                steps.push((again, Step::Complete));
            }
        }
        if rng.random_bool(0.5) {
            let k = (n as f64 * rng.random_range(0.3..0.8)) as usize;
            steps.push((k, Step::Kill));
        }
        let stale_p = if kind == Kind::Rollback { 0.7 } else { 0.35 };
        let stale = rng.random_bool(stale_p);
        let stale = plan.stale_worker.unwrap_or(stale);
        let stale_ttl = stale.then(|| Duration::from_millis(rng.random_range(5_000..=10_000)));
        let stop_slot = rng.random_range(0..2);
        if rng.random_bool(0.5) {
            // Mostly across an alias change: the stopped worker wakes up
            // with work it planned under the old aliases.
            let changes: Vec<usize> = steps
                .iter()
                .filter(|(_, s)| {
                    matches!(
                        s,
                        Step::Complete | Step::Rollback | Step::StartAgain | Step::Abandon
                    )
                })
                .map(|(n, _)| *n)
                .collect();
            let pick = rng.random_range(0..changes.len());
            let op = if rng.random_bool(0.6) {
                changes[pick]
            } else {
                (n as f64 * rng.random_range(0.2..0.7)) as usize
            };
            steps.push((op, Step::Stop));
        }
        let fault = rng.random_bool(0.5).then(|| {
            [
                Fault::IndexDelay,
                Fault::IndexUnavailable,
                Fault::DynamoThrottle,
            ][rng.random_range(0..3)]
        });
        if fault.is_some() {
            steps.push((
                (n as f64 * rng.random_range(0.2..0.8)) as usize,
                Step::Fault,
            ));
        }
        let rejects = rng.random_bool(0.5);
        steps.sort();
        Schedule {
            kind,
            steps,
            stale_ttl,
            stop_slot,
            fault,
            rejects,
        }
    }

    /// One line for the report.
    pub fn describe(&self) -> String {
        let steps: Vec<String> = self
            .steps
            .iter()
            .map(|(n, s)| format!("{s:?}@{n}"))
            .collect();
        format!(
            "{} kind; worker 0 state TTL {}; {}; {}; steps {}",
            self.kind.name(),
            self.stale_ttl
                .map(|t| format!("{t:?} (stale)"))
                .unwrap_or_else(|| "200ms".into()),
            self.fault
                .map(|f| format!("fault {f:?} on worker 1"))
                .unwrap_or_else(|| "no proxy fault".into()),
            if self.rejects {
                "documents the new mapping rejects"
            } else {
                "no rejected documents"
            },
            steps.join(" ")
        )
    }
}

async fn wait_for(run: &Run, n: usize) {
    while run.done.load(Ordering::SeqCst) < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Performs the schedule's steps as the publishers reach their counts.
pub async fn control(run: &Arc<Run>, workers: &mut Workers) {
    let mut rng = ChaCha8Rng::seed_from_u64(run.plan.seed ^ 0xBADC0DE);
    let ctx = &run.env.ctx;
    let c = &run.count;
    // Steps come at their counts, and never back to back: when a step
    // took long (a completion waits for the migration), the publishers'
    // count ran ahead, and the next steps would all fire at once.
    let gap = run.plan.ops / 30;
    let mut last = 0;
    for (n, step) in run.schedule.steps.clone() {
        wait_for(run, n.max(last + gap)).await;
        match step {
            Step::Start | Step::StartAgain => {
                retire_source(run).await;
                let r = ops::lifecycle::start(ctx, &run.env.settings.mapping).await;
                if r.is_ok() {
                    c.starts.fetch_add(1, Ordering::SeqCst);
                }
                let what = if step == Step::Start {
                    "start"
                } else {
                    "start again"
                };
                run.event(format!("{what}: {:?}", r.map(|c| c.done)));
            }
            Step::Pause => run.event(format!(
                "pause: {:?}",
                ops::lifecycle::pause(ctx).await.map(|c| c.done)
            )),
            Step::Resume => run.event(format!(
                "resume: {:?}",
                ops::lifecycle::resume(ctx).await.map(|c| c.done)
            )),
            Step::Kill => workers.kill(run, rng.random_range(0..2)).await,
            Step::Stop => workers.stop(run).await,
            Step::Fault => workers.fault(run),
            Step::Replay => replay(run).await,
            Step::Abandon => {
                let r = ops::lifecycle::abandon(ctx, true).await;
                if r.is_ok() {
                    c.abandons.fetch_add(1, Ordering::SeqCst);
                }
                run.event(format!("abandon: {:?}", r.map(|c| c.done)));
            }
            Step::Complete => complete_when_ready(run, COMPLETE_LIMIT).await,
            Step::Rollback => {
                let r = ops::lifecycle::rollback(ctx).await;
                if r.is_ok() {
                    c.rollbacks.fetch_add(1, Ordering::SeqCst);
                }
                run.event(format!("rollback: {:?}", r.map(|c| c.done)));
            }
        }
        last = run.done.load(Ordering::SeqCst);
    }
}

/// After a completion across clusters, a new migration waits for the old
/// index to be retired: done here as an operator would once readers moved.
async fn retire_source(run: &Run) {
    let ctx = &run.env.ctx;
    let Ok(st) = ctx.alias_state().await else {
        return;
    };
    let Some((old, _)) = st.both_current() else {
        return;
    };
    let old = old.clone();
    let r = ops::across::retire_source(ctx).await;
    if r.is_ok() {
        run.retired.lock().unwrap().push(old);
    }
    run.event(format!("retire source: {:?}", r.map(|c| c.done)));
}

async fn replay(run: &Run) {
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

/// Completes through the checked gate (nothing unmigrated or failed, a
/// sampled verify clean) as soon as it lets us, while edits keep flowing.
/// Documents the new mapping rejected are fixed first, the way an operator
/// would. A completion still refused after `limit` is a problem.
pub async fn complete_when_ready(run: &Run, limit: Duration) {
    run.completing.store(true, Ordering::SeqCst);
    try_complete(run, limit).await;
    run.completing.store(false, Ordering::SeqCst);
}

async fn try_complete(run: &Run, limit: Duration) {
    let ctx = &run.env.ctx;
    if run.schedule.rejects {
        fix::close_and_fix(run).await;
    }
    let historical_before = ctx
        .alias_state()
        .await
        .ok()
        .and_then(|s| s.historical_index());
    *run.historical_before.lock().unwrap() = historical_before.clone();
    let began = Instant::now();
    let deadline = began + limit;
    let mut retried = Instant::now();
    let mut refusals: Vec<String> = Vec::new();
    loop {
        if ops::healthy_state(ctx)
            .await
            .map(|s| s.is_paused())
            .unwrap_or(false)
        {
            run.event(format!(
                "resume before completing: {:?}",
                ops::lifecycle::resume(ctx).await.map(|c| c.done)
            ));
        }
        let gate = ops::lifecycle::Gate::checked(VERIFY_SAMPLE);
        match ops::lifecycle::complete(ctx, gate).await {
            Ok(c) => {
                run.count.completions.fetch_add(1, Ordering::SeqCst);
                run.event(format!(
                    "complete after {:.1}s and {} refusals{}: {}",
                    began.elapsed().as_secs_f64(),
                    refusals.len(),
                    refusals
                        .last()
                        .map(|w| format!(" (last: {w})"))
                        .unwrap_or_default(),
                    c.done
                ));
                if let Some(old) = historical_before {
                    run.event(format!("{old} retired (no alias, kept)"));
                    run.retired.lock().unwrap().push(old);
                }
                return;
            }
            Err(OpsError::Refused(why)) if why.contains("no migration is in progress") => {
                run.event(format!("complete: nothing to complete ({why})"));
                return;
            }
            Err(e) if Instant::now() < deadline => {
                if run.rejects.fixed.load(Ordering::SeqCst)
                    && retried.elapsed() > Duration::from_secs(2)
                {
                    fix::retry_failures(run).await;
                    retried = Instant::now();
                }
                refusals.push(e.to_string().chars().take(120).collect());
                if std::env::var_os("FERRY_HARNESS_TRACE").is_some() {
                    run.event(format!("complete refused: {e}"));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => {
                run.event(format!(
                    "complete refused for {limit:?} with edits flowing: {e}"
                ));
                complete_quietly(run, e).await;
                return;
            }
        }
    }
}

/// The gate refused for the whole limit while edits flowed (on a loaded
/// machine, a sampled verify may always meet an edit in flight): pause the
/// publishers, let the queues drain, and try once more. Refused then, it
/// is a problem, reported with the documents failed or without an outcome
/// and the verify's differences (nothing is in flight any more).
async fn complete_quietly(run: &Run, first: OpsError) {
    let ctx = &run.env.ctx;
    run.quiet.store(true, Ordering::SeqCst);
    let drained = super::drain::drained(run, Instant::now() + Duration::from_secs(30)).await;
    let gate = ops::lifecycle::Gate::checked(VERIFY_SAMPLE);
    let result = match drained {
        Ok(()) => ops::lifecycle::complete(ctx, gate).await,
        Err(e) => Err(OpsError::Refused(e)),
    };
    match result {
        Ok(c) => {
            run.count.completions.fetch_add(1, Ordering::SeqCst);
            run.count.quiet_completions.fetch_add(1, Ordering::SeqCst);
            run.event(format!("complete with the publishers paused: {}", c.done));
            if let Some(old) = run.historical_before.lock().unwrap().take() {
                run.event(format!("{old} retired (no alias, kept)"));
                run.retired.lock().unwrap().push(old);
            }
        }
        Err(e) => {
            run.problem(format!(
                "complete refused with edits flowing ({first}) and on quiet queues: {e}"
            ));
            for p in fix::failure_problems(run).await {
                run.problem(p);
            }
            if let Ok(r) = ops::verify::verify(ctx, ops::verify::Scope::All).await {
                for d in r.differences {
                    let (id, kind, detail) = (d.id, d.kind, d.detail);
                    run.problem(format!("{id}: verify of {}: {kind}: {detail}", r.target));
                }
            }
        }
    }
    run.quiet.store(false, Ordering::SeqCst);
}

/// Completes a migration still in progress at the end (unless a completion
/// was already reported as refused).
pub async fn ensure_completed(run: &Run) {
    let ctx = &run.env.ctx;
    let open = ctx
        .alias_state()
        .await
        .map(|s| s.migration_index().is_some())
        .unwrap_or(true);
    if open && run.early.lock().unwrap().is_empty() {
        complete_when_ready(run, COMPLETE_LIMIT).await;
    }
}
