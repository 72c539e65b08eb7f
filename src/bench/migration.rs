//! M: a full migration by real `ferry worker` processes (this binary, run
//! with `worker` and the isolated settings as `FERRY_*` variables), timed
//! from `start` until no document is left to migrate, with each worker's
//! peak resident memory (VmHWM, read just before it is stopped with
//! SIGTERM), the CPU each process used, and the edit latency idle (before
//! `start`) and during the migration. Across clusters the workers get the
//! target cluster's settings too: each run's Current is on the source and
//! `start` puts its new index on the target.

use super::cpu;
use super::latency::{self, Latency, Stream};
use super::long_client;
use super::reindex;
use super::throughput::Throughput;
use super::timeline::{self, Timeline};
use crate::config::{LatencyBudget, Settings};
use crate::context::Ctx;
use crate::index::aliases::AliasAction;
use crate::index::records;
use crate::index::{read_mapping, Cluster};
use crate::ops::{self, OpsError};
use crate::queue::Broker;
use crate::retry::Transient;
use crate::types::{DocId, IndexName};
use serde::{Deserialize, Serialize};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// About this many documents, spread over the index, take the edits.
const EDITED_DOCS: usize = 1000;
/// A migration that makes no progress for this long is reported as stuck.
const STALL: Duration = Duration::from_secs(180);

/// One M run.
#[derive(Debug, Clone)]
pub struct Spec {
    /// What the run shows, for people (`budget off`).
    pub label: String,
    /// Name stem of its aliases, indices and queues.
    pub name: String,
    /// Documents in its Current index.
    pub size: usize,
    /// Worker processes.
    pub workers: usize,
    /// Edits published before `start` (idle latency); 0 for none.
    pub idle_edits: usize,
    /// Edits per second, before and during the migration; `None` for a
    /// run without edits.
    pub edit_rate: Option<f64>,
    /// The workers' edit latency budget.
    pub budget: LatencyBudget,
}

/// What one M run measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MigrationRun {
    /// What the run shows (`budget off`).
    pub label: String,
    /// Worker processes.
    pub workers: usize,
    /// Edits per second during the run (0 for none).
    pub edit_rate: f64,
    /// The workers' edit latency budget, ms (`None`: off).
    pub budget_ms: Option<u64>,
    /// Documents migrated, seconds from `start` to none left, docs/s.
    pub throughput: Throughput,
    /// Peak resident memory of each worker, MB.
    pub peak_rss_mb: Vec<f64>,
    /// Edit latency before `start` (only in the run that measures it).
    pub idle: Option<Latency>,
    /// Edit latency during the migration.
    pub during: Latency,
    /// Where the CPU went during the migration.
    pub cpu: cpu::Profile,
    /// The migration's rate and each edit's latency over time.
    pub timeline: Timeline,
}

/// Worker processes, killed if dropped before they are stopped.
struct Workers(Vec<tokio::process::Child>);

impl Workers {
    fn spawn(settings: &Settings, n: usize) -> Result<Self, OpsError> {
        let exe = std::env::current_exe()
            .map_err(|e| OpsError::Invalid(format!("cannot find the ferry binary: {e}")))?;
        let mut children = Vec::with_capacity(n);
        for _ in 0..n {
            let child = tokio::process::Command::new(&exe)
                .arg("worker")
                // Exactly the isolated settings: no FERRY_* from our own
                // environment may leak into the worker.
                .env_clear()
                .envs(std::env::vars().filter(|(k, _)| !k.starts_with("FERRY_")))
                .envs(settings.to_env())
                .env("FERRY_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| OpsError::Invalid(format!("cannot start a ferry worker: {e}")))?;
            children.push(child);
        }
        Ok(Self(children))
    }

    fn pids(&self) -> Vec<u32> {
        self.0.iter().filter_map(|c| c.id()).collect()
    }

    /// SIGTERM to each (our own children, by pid), then wait; a worker
    /// still running after the deadline is killed.
    async fn stop(mut self, deadline: Duration) {
        for pid in self.pids() {
            let _ = tokio::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        for child in &mut self.0 {
            if tokio::time::timeout(deadline, child.wait()).await.is_err() {
                let _ = child.kill().await;
            }
        }
    }
}

/// Runs one M: its own Current index (an untimed server-side copy of the
/// first `size` seeded documents, versions kept), its own queues, `workers`
/// worker processes; then cleans up its indices.
pub async fn measure(
    base: &Settings,
    source: &IndexName,
    spec: &Spec,
) -> Result<MigrationRun, OpsError> {
    let mut settings = base.isolated(&spec.name)?;
    settings.edit_latency_budget = spec.budget;
    let ctx = Ctx::new(settings.clone()).await?;
    let current = IndexName::parse(format!("{}_legacy", settings.index_prefix))?;
    let mut target = None;
    let result = prepare_and_run(&ctx, source, &current, spec, &mut target).await;
    let on = ctx.target_cluster();
    let indices: Vec<_> = [Some((Cluster::Source, current)), target.map(|t| (on, t))]
        .into_iter()
        .flatten()
        .collect();
    super::delete_indices(&ctx, &indices).await;
    result
}

/// Fills `current` (on the source) and runs the workers; `target` gets
/// the new index `start` created, for the caller to delete with `current`
/// whatever happened.
async fn prepare_and_run(
    ctx: &Ctx,
    source: &IndexName,
    current: &IndexName,
    spec: &Spec,
    target: &mut Option<IndexName>,
) -> Result<MigrationRun, OpsError> {
    let settings = &ctx.settings;
    let client = long_client(settings, Cluster::Source)?;
    client
        .create_index(current, &read_mapping(&settings.mapping)?)
        .await?;
    let size = reindex::copy(&client, source, current, Some(spec.size), true).await? as usize;
    ctx.index.refresh(current).await?;
    ctx.index
        .update_aliases(&[AliasAction::Add {
            index: current.clone(),
            alias: settings.current_alias.clone(),
        }])
        .await?;
    // Spread over the whole index, as real edits are: the first documents
    // in scan order are also the first the scanner queues, and editing only
    // those would make every edit collide with the migration's writes.
    let all = reindex::ids(ctx, current, size).await?;
    let step = (all.len() / EDITED_DOCS).max(1);
    let edited: Vec<DocId> = all.into_iter().step_by(step).collect();
    let broker = Broker::connect(settings).await?;
    eprintln!(
        "bench {}: M, {} worker(s) migrating {} documents...",
        spec.name, spec.workers, spec.size
    );
    let result = with_workers(ctx, &broker, current, &edited, spec, size, target).await;
    broker.close().await;
    result
}

async fn with_workers(
    ctx: &Ctx,
    broker: &Broker,
    current: &IndexName,
    edited: &[DocId],
    spec: &Spec,
    size: usize,
    target: &mut Option<IndexName>,
) -> Result<MigrationRun, OpsError> {
    let workers = Workers::spawn(&ctx.settings, spec.workers)?;
    let outcome = async {
        wait_for_consumers(broker, spec.workers).await?;
        let never = AtomicBool::new(false);
        let idle = match (spec.idle_edits, spec.edit_rate) {
            (0, _) | (_, None) => None,
            (n, Some(rate)) => {
                let stream = Stream {
                    ids: edited,
                    watch: vec![(Cluster::Source, ctx.settings.current_alias.clone())],
                    rate,
                    max: Some(n),
                    stop: &never,
                    origin: Instant::now(),
                };
                let mut idle = latency::run(ctx, broker, stream).await?;
                idle.timeline.clear(); // only the migration's is plotted
                Some(idle)
            }
        };
        let before = cpu::snapshot(&workers.pids());
        let clock = Instant::now();
        let started = ops::lifecycle::start(ctx, &ctx.settings.mapping).await?;
        let target = target.insert(IndexName::parse(started.index)?).clone();
        let stop = AtomicBool::new(false);
        let stream = async {
            let Some(rate) = spec.edit_rate else {
                return Ok(Latency::default());
            };
            let watch = vec![
                (Cluster::Source, ctx.settings.current_alias.clone()),
                (ctx.target_cluster(), ctx.settings.migration_alias.clone()),
            ];
            let stream = Stream {
                ids: edited,
                watch,
                rate,
                max: None,
                stop: &stop,
                origin: clock,
            };
            latency::run(ctx, broker, stream).await
        };
        let rate = timeline::sample_rate(ctx, &target, clock, &stop);
        let watch = async {
            let r = until_migrated(ctx, broker, current, &target).await;
            // From `start` (index creation included) to none left.
            let seconds = clock.elapsed().as_secs_f64();
            stop.store(true, Ordering::Relaxed);
            r.map(|()| seconds)
        };
        let (during, migrated, rate) = tokio::join!(stream, watch, rate);
        let seconds = migrated?;
        let mut during = during?;
        let edits = std::mem::take(&mut during.timeline);
        let after = cpu::snapshot(&workers.pids());
        let peak_rss_mb = workers
            .pids()
            .into_iter()
            .filter_map(cpu::peak_rss_mb)
            .collect();
        Ok::<_, OpsError>(MigrationRun {
            label: spec.label.clone(),
            workers: spec.workers,
            edit_rate: spec.edit_rate.unwrap_or(0.0),
            budget_ms: spec.budget.0.map(|d| d.as_millis() as u64),
            throughput: Throughput::new(size, seconds),
            peak_rss_mb,
            idle,
            during,
            cpu: cpu::profile(&before, &after),
            timeline: Timeline { rate, edits },
        })
    }
    .await;
    workers
        .stop(ctx.settings.shutdown_deadline + Duration::from_secs(5))
        .await;
    outcome
}

async fn wait_for_consumers(broker: &Broker, workers: usize) -> Result<(), OpsError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while broker.consumers(&broker.names.edits).await? < workers as u32 {
        if Instant::now() > deadline {
            return Err(OpsError::Refused(
                "the worker processes did not start consuming within a minute".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Polls until no document of `current` lacks an outcome for `target`.
///
/// Counting is not free (osmem scans every document for it), so it is
/// kept off the migration's back: the cheap migration queue depth is
/// polled often, and documents are counted only when that queue is empty
/// (or every few seconds, to notice a stall), never more than a fifth of
/// the time.
async fn until_migrated(
    ctx: &Ctx,
    broker: &Broker,
    current: &IndexName,
    target: &IndexName,
) -> Result<(), OpsError> {
    let (mut last, mut moved) = (u64::MAX, Instant::now());
    let mut counted_at = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let queued = broker.depth(&broker.names.migration).await.unwrap_or(1);
        if queued > 0 && counted_at.elapsed() < Duration::from_secs(5) {
            continue;
        }
        let clock = Instant::now();
        // No refresh per poll: a refresh costs the index server seconds
        // under write load. Counts can only lag behind (outcomes not yet
        // visible), never run ahead, so a zero is confirmed after one.
        let counted = async {
            let n = ctx
                .index
                .count(current, records::unmigrated(target))
                .await?;
            if n > 0 {
                return Ok(n);
            }
            ctx.index.refresh(current).await?;
            ctx.index.count(current, records::unmigrated(target)).await
        };
        let to_go = match counted.await {
            Ok(n) => n,
            // A slow or busy index server is not the end of the run: the
            // stall check below bounds how long we keep asking.
            Err(e) if e.is_transient() && moved.elapsed() < STALL => {
                tracing::warn!(error = %e, "cannot count the documents left; asking again");
                counted_at = Instant::now();
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if to_go == 0 {
            return Ok(());
        }
        if to_go < last {
            (last, moved) = (to_go, Instant::now());
        } else if moved.elapsed() > STALL {
            return Err(OpsError::Refused(format!(
                "the migration into {target} made no progress for {}s ({to_go} documents left)",
                STALL.as_secs()
            )));
        }
        tokio::time::sleep(clock.elapsed() * 4).await;
        counted_at = Instant::now();
    }
}
