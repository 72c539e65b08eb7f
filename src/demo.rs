//! `ferry demo`: the whole job on the local stack. Seeds documents (a few
//! broken on purpose), starts a migration, runs a worker while a stream of
//! uploads, edits and deletes goes on, completes, verifies every document
//! against the stores and reports. It uses its own uniquely named aliases,
//! indices and queues, so it never touches anything else on the stack.

use crate::context::Ctx;
use crate::index::scan::TermBucket;
use crate::ops::lifecycle::Gate;
use crate::ops::{self, OpsError};
use crate::queue::Broker;
use crate::seed::pipeline::Pipeline;
use crate::seed::{self, SeedOptions};
use crate::types::{DocId, IndexName};
use rand::Rng;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// What the demo did and found.
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    /// Names used by this run.
    pub run: String,
    /// The index migrated from.
    pub source: String,
    /// The index migrated into (Current at the end).
    pub target: String,
    /// The source cluster's URL (no credentials).
    pub source_cluster: String,
    /// The target cluster's URL: another one when the demo ran across.
    pub target_cluster: String,
    /// Documents seeded.
    pub documents: usize,
    /// Migrated by the scanner/processor path.
    pub migrated: u64,
    /// Failed, grouped by message.
    pub failed: u64,
    /// Failure groups.
    pub failures: Vec<TermBucket>,
    /// Edits, uploads and deletes published during the migration.
    pub live_changes: usize,
    /// Seconds from start to everything migrated.
    pub migration_seconds: f64,
    /// Documents per second.
    pub docs_per_second: f64,
    /// Documents verified against the stores after completion.
    pub verified: usize,
    /// Differences found by verify (should be none).
    pub differences: usize,
}

impl DemoReport {
    /// True when verify found nothing wrong.
    pub fn ok(&self) -> bool {
        self.differences == 0
    }
}

/// Runs the demo.
pub async fn run(base: &Ctx, count: usize, broken: usize) -> Result<DemoReport, OpsError> {
    let run = format!("demo{}", chrono::Utc::now().format("%m%d%H%M%S"));
    let mut settings = base.settings.isolated(&run)?;
    // The demo shows correctness under a heavy stream of live changes (50 a
    // second, often on a debug build), where edits are slow with or without
    // a migration: the budget would hold the migration at its floor. Its
    // effect is measured by `tests/latency_budget.rs` instead.
    settings.edit_latency_budget = crate::config::LatencyBudget::OFF;
    let ctx = Ctx::new(settings.clone()).await?;
    eprintln!("demo {run}: seeding {count} documents ({broken} broken on purpose)...");
    let seeded = seed::seed(
        &ctx,
        &SeedOptions {
            count,
            seed: 42,
            broken,
            id_prefix: format!("{run}-"),
        },
    )
    .await?;
    let started = ops::lifecycle::start(&ctx, &settings.mapping).await?;
    eprintln!("demo {run}: {}", started.done);
    let clock = Instant::now();

    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(crate::app::run(settings.clone(), shutdown.clone()));
    let broker = Broker::connect(&settings).await?;

    let stop_changes = Arc::new(AtomicBool::new(false));
    let changes = Arc::new(AtomicUsize::new(0));
    let ids: Vec<DocId> = (0..count)
        .map(|i| seed::data::id_of(&format!("{run}-"), i))
        .collect();
    let live = live_changes(&ctx, &broker, &ids, stop_changes.clone(), changes.clone());
    let watch = async {
        let current = IndexName::parse(seeded.current.clone())?;
        let target = IndexName::parse(started.index.clone())?;
        let bar = indicatif::ProgressBar::new(count as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {pos}/{len} migrated or failed {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        loop {
            let p = ops::lifecycle::progress(&ctx, &current, &target).await?;
            bar.set_length(p.total);
            bar.set_position(p.migrated + p.failed);
            bar.set_message(format!(
                "({} failed, {} live changes)",
                p.failed,
                changes.load(Ordering::Relaxed)
            ));
            if p.to_go == 0 {
                bar.finish();
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        stop_changes.store(true, Ordering::Relaxed);
        Ok::<_, OpsError>(())
    };
    let (live, watched) = tokio::join!(live, watch);
    live?;
    watched?;
    let migration_seconds = clock.elapsed().as_secs_f64();

    // Let the edit path catch up before the switch.
    wait_drained(&broker).await?;
    let st = ops::status::status(&ctx, Some(&broker)).await?;
    let progress = st.progress.clone();
    let failures = ops::failures::overview(&ctx, ops::failures::scope(&ctx, false).await?).await?;
    match ops::lifecycle::complete(&ctx, Gate::checked(100)).await {
        Ok(c) => eprintln!("demo {run}: {}", c.done),
        Err(OpsError::Refused(why)) => {
            eprintln!("demo {run}: complete refused, as it should with failures: {why}");
            eprintln!("demo {run}: completing with --force (the broken documents stay out of the new index)");
            let c = ops::lifecycle::complete(&ctx, Gate::forced("ferry demo")).await?;
            eprintln!("demo {run}: {}", c.done);
        }
        Err(e) => return Err(e),
    }
    let verify = ops::verify::verify(&ctx, ops::verify::Scope::All).await?;
    shutdown.cancel();
    let _ = worker.await;
    broker.close().await;
    let migrated = progress.as_ref().map(|p| p.migrated).unwrap_or(0);
    Ok(DemoReport {
        run,
        source: seeded.current,
        target: started.index,
        source_cluster: ctx.index.public_base(),
        target_cluster: ctx.on(ctx.target_cluster()).public_base(),
        documents: seeded.documents,
        migrated,
        failed: failures.total,
        failures: failures.groups,
        live_changes: changes.load(Ordering::Relaxed),
        migration_seconds,
        docs_per_second: count as f64 / migration_seconds.max(0.001),
        verified: verify.compared,
        differences: verify.differences.len(),
    })
}

/// Publishes a stream of edits (70%), uploads of new documents (20%) and
/// deletes (10%) until told to stop.
async fn live_changes(
    ctx: &Ctx,
    broker: &Broker,
    ids: &[DocId],
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
) -> Result<(), OpsError> {
    let pipeline = Pipeline::new(ctx, broker, 7);
    let mut rng = seed::data::rng(99);
    let mut fresh = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let roll: f64 = rng.random();
        let id = &ids[rng.random_range(0..ids.len())];
        if roll < 0.7 {
            pipeline.edit(id).await?;
        } else if roll < 0.9 {
            fresh += 1;
            let new_id = DocId::parse(format!("{id}-new{fresh}"))?;
            pipeline.upload(&new_id).await?;
        } else {
            pipeline.delete(id).await?;
        }
        done.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn wait_drained(broker: &Broker) -> Result<(), OpsError> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if broker.high_depth().await? == 0 && broker.depth(&broker.names.migration).await? == 0 {
            // Delivered-but-unacked work finishes within a batch or two.
            tokio::time::sleep(Duration::from_secs(1)).await;
            if broker.high_depth().await? == 0 {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(OpsError::Refused(
        "the queues did not drain within two minutes".into(),
    ))
}
