//! Command-line definitions and dispatch, one file per command group:
//! [`lifecycle`] (start to rollback), [`checks`] (trial, compare),
//! [`documents`] (publish, queue),
//! [`failures`], [`inspect`] (status, verify, throttle) and [`local`] (jobs
//! on a local stack: setup, seed, bench, demo). Every command prints what
//! it did and what to do next; `--json` prints the same as JSON for
//! scripts. Input is shaped by `ferry::ops::input`, as for the admin API.

mod checks;
mod documents;
mod failures;
mod inspect;
mod lifecycle;
mod local;
mod output;

use clap::{Parser, Subcommand};
use ferry::config::Settings;
use ferry::context::Ctx;
use ferry::ops::OpsError;
use ferry::queue::Broker;
use std::process::ExitCode;

/// ferry: migrate a live search index to a new one, rebuilt from its
/// primary stores, without readers noticing.
///
/// Settings come from flags or FERRY_* environment variables (see
/// `ferry help worker` for the full list; every command accepts them).
#[derive(Debug, Parser)]
#[command(name = "ferry", version, about, long_about)]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,
    /// Print results as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// Who runs the command, for the operations record (`ferry history`;
    /// default: the user, through sudo or not).
    #[arg(long, env = "FERRY_BY", global = true)]
    pub by: Option<String>,
    /// Write logs as JSON lines (for log shippers).
    #[arg(long, env = "FERRY_LOG_JSON", global = true)]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a worker: consume the queues, apply edits, migrate, scan while
    /// holding the lease, serve the admin API. Stops cleanly on SIGTERM.
    Worker,
    /// Create the bucket and tables if they are missing (local stacks).
    Setup,
    /// Write deterministic sample documents into S3, DynamoDB and the
    /// Current index.
    Seed(local::SeedArgs),
    /// Publish upload/edit/delete messages, as a pipeline does after it
    /// wrote S3 and DynamoDB.
    Publish(documents::PublishArgs),
    /// Show the migration state, counts, queue depths and the scanner.
    Status(inspect::StatusArgs),
    /// Try a mapping on a random sample of Current in a scratch index
    /// (deleted after): what it refuses, fields it does not declare,
    /// document sizes. Touches no alias; exits 1 when anything failed.
    Trial(checks::TrialArgs),
    /// Start a migration into a new index created from the mapping file.
    Start(lifecycle::StartArgs),
    /// Stop the scanner from queueing documents (edits still dual-write).
    Pause,
    /// Let the scanner queue documents again.
    Resume,
    /// Put the preview alias on the migration index.
    Preview,
    /// Take the preview alias off.
    Unpreview,
    /// Switch Current to the migration index (one atomic alias change).
    Complete(lifecycle::CompleteArgs),
    /// Drop the migration; queued messages for it are discarded.
    Abandon(lifecycle::AbandonArgs),
    /// Switch back to the Historical index, within the rollback window.
    Rollback,
    /// After a completion across clusters, once readers use the new
    /// cluster: stop edits reaching the old index (ends rollback).
    RetireSource,
    /// Queue documents for migration by hand, by id or by query (works
    /// while paused).
    Queue(documents::QueueArgs),
    /// Look up failure records: grouped by message, a paged list, one id.
    Failures(failures::FailuresArgs),
    /// Show or set the migration's limits: a cluster-wide cap on its speed
    /// and the edit latency budget it yields to (edits are never
    /// throttled); workers apply a change within 5 seconds.
    Throttle(inspect::ThrottleArgs),
    /// Run named searches against Current and the migration index and
    /// compare their top hits; exits 1 when a search is flagged.
    Compare(checks::CompareCommand),
    /// List indices with ferry's prefix that no alias names (abandoned
    /// targets, old indices), with their sizes; delete them with --yes.
    Cleanup(inspect::CleanupArgs),
    /// Show the operations record: who did what and when, newest first.
    History(inspect::HistoryArgs),
    /// Compare the target index with a fresh projection of the stores;
    /// exits 1 when anything differs.
    Verify(inspect::VerifyArgs),
    /// Measure ferry on the stack it points at: the index server's own
    /// _reindex (R; across clusters the target's, or a bulk copy), the
    /// store reads (P), one document at a time like
    /// Grid's Thrall (S), a full migration by `ferry worker` processes (M,
    /// with their peak memory) and edit latency idle and during M; report
    /// the ratios against the targets. Uses its own aliases, indices and
    /// queues. --concurrency, --batch-size and --scan-page (global
    /// settings) shape the workers and P.
    Bench(ferry::bench::BenchOptions),
    /// Run the whole job on the local stack: seed, migrate while edits
    /// flow, complete, verify, and report.
    Demo(local::DemoArgs),
}

/// Sets up logging once: human-readable by default, JSON with `--log-json`;
/// to standard error, or appended to `FERRY_LOG_FILE` when it is set (the
/// demo does that, so that its progress and report stand alone).
pub fn telemetry(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let file =
        std::env::var_os("FERRY_LOG_FILE").and_then(|path| {
            match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
            {
                Ok(f) => Some(f),
                Err(e) => {
                    eprintln!(
                        "cannot open FERRY_LOG_FILE {path:?} ({e}); logging to standard error"
                    );
                    None
                }
            }
        });
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match (file, json) {
        (Some(f), true) => builder.json().with_writer(std::sync::Mutex::new(f)).init(),
        (Some(f), false) => builder
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(f))
            .init(),
        (None, true) => builder.json().with_writer(std::io::stderr).init(),
        (None, false) => builder.with_writer(std::io::stderr).init(),
    }
}

/// Runs the command; the exit code says success (0), refusal or failure (1).
pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let json = cli.json;
    if let Command::Worker = cli.command {
        ferry::app::run_until_signalled(cli.settings).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let by = cli.by.clone().unwrap_or_else(operator);
    let ctx = Ctx::new(cli.settings).await?;
    let result = run(&ctx, cli.command, json, &by).await;
    // The action is done and printed; its notification gets a short,
    // bounded time to go out before the process ends.
    ferry::app::flush_notifications(&ctx).await;
    match result {
        Ok(code) => Ok(code),
        Err(Failure::Ops(OpsError::Refused(why))) => {
            output::refusal(json, &why);
            Ok(ExitCode::from(1))
        }
        Err(Failure::Ops(e)) => Err(e.into()),
        Err(Failure::Other(e)) => Err(e),
    }
}

/// Whoever ran the command, through sudo or not.
fn operator() -> String {
    std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into())
}

async fn run(ctx: &Ctx, command: Command, json: bool, by: &str) -> Result<ExitCode, Failure> {
    use ferry::ops::lifecycle::Simple;
    use Command::*;
    match command {
        Worker => unreachable!("handled before"),
        Setup => local::setup(ctx, json).await,
        Seed(a) => local::seed(ctx, a, json).await,
        Bench(opts) => local::bench(ctx, &opts, json).await,
        Demo(a) => local::demo(ctx, a, json).await,
        Publish(a) => documents::publish(ctx, a, json).await,
        Queue(a) => documents::queue(ctx, a, json, by).await,
        Status(a) => inspect::status(ctx, a, json).await,
        Throttle(a) => inspect::throttle(ctx, a, json, by).await,
        History(a) => inspect::history(ctx, a, json).await,
        Cleanup(a) => inspect::cleanup(ctx, a, json, by).await,
        Verify(a) => inspect::verify(ctx, a, json).await,
        Trial(a) => checks::trial(ctx, a, json).await,
        Compare(a) => checks::compare(ctx, a, json).await,
        Failures(a) => failures::run(ctx, a, json, by).await,
        Start(a) => lifecycle::start(ctx, a, json, by).await,
        Complete(a) => lifecycle::complete(ctx, a, json, by).await,
        Abandon(a) => lifecycle::abandon(ctx, a, json, by).await,
        Pause => lifecycle::simple(ctx, Simple::Pause, json, by).await,
        Resume => lifecycle::simple(ctx, Simple::Resume, json, by).await,
        Preview => lifecycle::simple(ctx, Simple::Preview, json, by).await,
        Unpreview => lifecycle::simple(ctx, Simple::Unpreview, json, by).await,
        Rollback => lifecycle::simple(ctx, Simple::Rollback, json, by).await,
        RetireSource => lifecycle::simple(ctx, Simple::RetireSource, json, by).await,
    }
}

/// An error from a command: refusals are printed as such, not as crashes.
pub enum Failure {
    Ops(OpsError),
    Other(anyhow::Error),
}

impl<E: Into<OpsError>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Ops(e.into())
    }
}

/// What a command returns: an exit code, or why it failed.
type Outcome = Result<ExitCode, Failure>;

/// Success, after the command printed its result.
fn done() -> Outcome {
    Ok(ExitCode::SUCCESS)
}

/// A connection to the broker for one command.
async fn broker(ctx: &Ctx) -> Result<Broker, Failure> {
    Ok(Broker::connect(&ctx.settings).await?)
}
