//! `ferry bench`: measures ferry against its ceilings and the reference
//! system on the stack it is pointed at, all in one run on the same
//! documents, with its own uniquely named aliases, indices and queues (like
//! the demo):
//!
//! 1. **R** ([`reindex`]): the index server's own `_reindex` (copy
//!    ceiling); across clusters the target's `_reindex` from the source,
//!    or, when it cannot reach across, a bare client's bulk copy
//!    ([`across`]);
//! 2. **P** ([`store_reads`]): every original and edits item read the way
//!    the scanner reads them (store-read ceiling);
//! 3. **S** ([`serial`]): one document at a time, the way Grid's Thrall
//!    migrates (baseline);
//! 4. **W** ([`write_ceiling`]): the reads and writes a migration needs,
//!    by a bare client (write ceiling);
//! 5. **M** ([`migration`]): a full migration by real `ferry worker`
//!    processes, with their peak memory: with the edit latency budget, the
//!    same without it, and with no edits;
//! 6. edit latency ([`latency`]): publish-to-visible, idle and during M,
//!    and over time ([`timeline`]).
//!
//! [`report`] turns the numbers into ratios against the targets; [`plot`]
//! draws edit latency and migration rate over time.
//!
//! With a target cluster (`FERRY_TARGET_INDEX_URL`) the bench measures the
//! migration it configures: the seeded index and every old index stay on
//! the source, and every new index (R's copy, W's and S's writes, M's
//! targets) is on the target, as `start` would put it.

pub mod across;
pub mod cpu;
pub mod latency;
pub mod migration;
pub mod plot;
pub mod reindex;
pub mod report;
pub mod serial;
pub mod store_reads;
pub mod throughput;
pub mod timeline;
pub mod write_ceiling;

use crate::config::{LatencyBudget, Settings};
use crate::context::Ctx;
use crate::index::{Cluster, IndexClient};
use crate::ops::OpsError;
use crate::seed::{self, SeedOptions};
use crate::types::{DocId, IndexName};
use migration::Spec;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

pub use report::BenchReport;
pub use throughput::Throughput;

/// What to measure (the `ferry bench` options).
#[derive(Debug, Clone, clap::Args)]
pub struct BenchOptions {
    /// Documents of the main run (R, P, S's pool, M, latency).
    #[arg(long, default_value_t = 20_000)]
    pub count: usize,
    /// Also run M (with the first worker count) at each of these sizes and
    /// compare peak memory (e.g. 20000,100000).
    #[arg(long, value_delimiter = ',')]
    pub sizes: Vec<usize>,
    /// Run M with each of these numbers of worker processes; the first is
    /// the M that the ratios use.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub replicas: Vec<usize>,
    /// S migrates at most this many documents (it is slow by design).
    #[arg(long, default_value_t = 2_000)]
    pub serial_docs: usize,
    /// Edits in the idle latency stream.
    #[arg(long, default_value_t = 200)]
    pub edits: usize,
    /// Edits per second in both latency streams.
    #[arg(long, default_value_t = 20.0)]
    pub edit_rate: f64,
    /// Also draw edit latency and migration rate over time, with the
    /// budget off and on, into this SVG file.
    #[arg(long, value_name = "FILE.svg", value_parser = plot::svg_path)]
    pub plot: Option<PathBuf>,
    /// Measure nothing: print (and with --plot, draw) a report saved
    /// earlier with --json.
    #[arg(long, value_name = "FILE.json")]
    pub from: Option<PathBuf>,
}

/// A report saved earlier with `ferry bench --json`.
pub fn load(path: &std::path::Path) -> Result<BenchReport, OpsError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| OpsError::Invalid(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| {
        OpsError::Invalid(format!(
            "{} is not a report of ferry bench --json: {e}",
            path.display()
        ))
    })
}

/// A client of `cluster` for the long server-side calls (`_reindex` of
/// 100,000 documents takes longer than the per-request timeout workers
/// use); the source's when no target cluster is configured.
pub(crate) fn long_client(s: &Settings, cluster: Cluster) -> Result<IndexClient, OpsError> {
    let (url, user, password) = match (cluster, &s.target_index_url) {
        (Cluster::Target, Some(url)) => (url, &s.target_index_username, &s.target_index_password),
        _ => (&s.index_url, &s.index_username, &s.index_password),
    };
    Ok(IndexClient::new(
        url,
        user.clone(),
        password.clone(),
        Duration::from_secs(3600),
    )?)
}

/// An index the bench created, with the cluster it lives on.
pub(crate) type Placed = (Cluster, IndexName);

fn check(opts: &BenchOptions) -> Result<(), OpsError> {
    let bad = |why: &str| Err(OpsError::Invalid(why.to_string()));
    if opts.count == 0 {
        return bad("--count must be at least 1");
    }
    if opts.replicas.is_empty() || opts.replicas.contains(&0) {
        return bad("--replicas needs worker counts of at least 1");
    }
    if opts.sizes.contains(&0) {
        return bad("--sizes must be at least 1 each");
    }
    if opts.edit_rate.is_nan() || opts.edit_rate <= 0.0 {
        return bad("--edit-rate must be positive");
    }
    Ok(())
}

/// Runs `work`, then deletes `indices` whatever happened: a failed run
/// must not leave 100,000 documents behind in an in-memory index server.
pub(crate) async fn run_cleaned<T>(
    ctx: &Ctx,
    work: impl Future<Output = Result<T, OpsError>>,
    indices: &[Placed],
) -> Result<T, OpsError> {
    let result = work.await;
    delete_indices(ctx, indices).await;
    result
}

/// Deletes a bench's indices, each on its own cluster, whatever happened:
/// a failed run must not leave 100,000 documents behind in an in-memory
/// index server.
pub(crate) async fn delete_indices(ctx: &Ctx, indices: &[Placed]) {
    for (cluster, index) in indices {
        match ctx.on(*cluster).delete_index(index).await {
            Err(e) if !e.is_missing_index() => {
                tracing::warn!(error = %e, index = %index, "could not delete a bench index");
            }
            _ => {}
        }
    }
}

/// Runs every measurement and reports; `progress` lines go to stderr.
pub async fn run(base: &Ctx, opts: &BenchOptions) -> Result<BenchReport, OpsError> {
    check(opts)?;
    let run = format!(
        "bench{}{:04x}",
        chrono::Utc::now().format("%m%d%H%M%S"),
        rand::random::<u16>()
    );
    let machine_before = cpu::Machine::now();
    let settings = base.settings.isolated(&run)?;
    let ctx = Ctx::new(settings.clone()).await?;
    let total = opts.sizes.iter().copied().fold(opts.count, usize::max);
    let across = match &ctx.target {
        Some(t) => format!(", migrating to {}", t.public_base()),
        None => String::new(),
    };
    eprintln!(
        "bench {run}: seeding {total} documents on {}{across}...",
        ctx.index.public_base()
    );
    let seeded = seed::seed(
        &ctx,
        &SeedOptions {
            count: total,
            seed: 42,
            broken: 0,
            id_prefix: format!("{run}-"),
        },
    )
    .await?;
    let source = IndexName::parse(seeded.current.clone())?;
    // Deleted whatever happens: the largest thing a failed run would leave.
    let seeded = [(Cluster::Source, source.clone())];
    let measured = run_cleaned(&ctx, measure(&ctx, opts, &run, &source, total), &seeded).await?;
    Ok(report::build(report::Parts {
        run,
        settings: &settings,
        index_url: ctx.index.public_base(),
        target_index_url: ctx.target.as_ref().map(IndexClient::public_base),
        opts,
        machine_before,
        measured,
    }))
}

/// Every measurement, on the seeded index `source` of `total` documents.
async fn measure(
    ctx: &Ctx,
    opts: &BenchOptions,
    run: &str,
    source: &IndexName,
    total: usize,
) -> Result<report::Measured, OpsError> {
    let limit = (total > opts.count).then_some(opts.count);
    let r_kind = reindex::kind(ctx);
    eprintln!("bench {run}: R, {r_kind} of {} documents...", opts.count);
    let (r_kind, reindex) = match ctx.target {
        Some(_) => across::measure(ctx, source, limit).await?,
        None => reindex::measure(ctx, source, limit).await?,
    };
    let ids: Vec<DocId> = reindex::ids(ctx, source, opts.count).await?;

    eprintln!(
        "bench {run}: P, reading both stores for {} documents...",
        ids.len()
    );
    let store_reads = store_reads::measure(ctx, &ids).await?;

    eprintln!("bench {run}: W, a migration's reads and writes by a bare client...");
    let write_ceiling =
        write_ceiling::measure(ctx, source, opts.count, ctx.settings.batch_size).await?;

    let mut runs = Vec::new();
    for spec in &specs(opts, run, ctx.settings.edit_latency_budget) {
        runs.push(migration::measure(&ctx.settings, source, spec).await?);
    }

    let subset = &ids[..ids.len().min(opts.serial_docs)];
    eprintln!(
        "bench {run}: S, one document at a time for {} documents...",
        subset.len()
    );
    let serial = serial::measure(ctx, source, subset).await?;
    Ok(report::Measured {
        r_kind,
        reindex,
        store_reads,
        serial,
        write_ceiling,
        runs,
    })
}

/// The M runs: the main run (the first worker count, the budget on), the
/// same with the budget off and without edits, then one per further worker
/// count and per further size.
fn specs(opts: &BenchOptions, run: &str, budget: LatencyBudget) -> Vec<Spec> {
    // The budget in force, or the default one when it is off: the main run
    // shows what the budget does, beside the same run without it.
    let budget = match budget {
        LatencyBudget(None) => LatencyBudget::DEFAULT,
        b => b,
    };
    let main_workers = opts.replicas[0];
    let spec = |label: String, name: String, size: usize, workers: usize| Spec {
        label,
        name,
        size,
        workers,
        idle_edits: 0,
        edit_rate: Some(opts.edit_rate),
        budget,
    };
    let mut specs = vec![
        Spec {
            idle_edits: opts.edits,
            ..spec(
                format!("budget {budget}"),
                format!("{run}m0"),
                opts.count,
                main_workers,
            )
        },
        Spec {
            budget: LatencyBudget::OFF,
            ..spec(
                "budget off".into(),
                format!("{run}u"),
                opts.count,
                main_workers,
            )
        },
        Spec {
            edit_rate: None,
            ..spec(
                "no edits".into(),
                format!("{run}n"),
                opts.count,
                main_workers,
            )
        },
    ];
    for (k, &workers) in opts.replicas.iter().enumerate().skip(1) {
        let label = format!("{workers} workers");
        specs.push(spec(label, format!("{run}m{k}"), opts.count, workers));
    }
    for (k, &size) in opts.sizes.iter().enumerate() {
        if size == opts.count || opts.sizes[..k].contains(&size) {
            continue; // the main run (or an earlier one) measured this size
        }
        let label = format!("{size} documents");
        specs.push(spec(label, format!("{run}s{k}"), size, main_workers));
    }
    specs
}
