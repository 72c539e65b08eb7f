//! Command-line definitions and dispatch. Every command prints what it did
//! and what to do next; `--json` prints the same as JSON for scripts.

mod output;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use ferry::config::Settings;
use ferry::ops::lifecycle::Gate;
use ferry::ops::{self, OpsError};
use ferry::queue::{Broker, DocKind, DocMessage};
use ferry::types::DocId;
use ferry::worker::Ctx;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

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
    Seed {
        /// How many documents.
        #[arg(long, default_value_t = 1000)]
        count: usize,
        /// Random seed (same seed, same documents).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// How many are broken on purpose (to see failure records).
        #[arg(long, default_value_t = 0)]
        broken: usize,
        /// Prefix of the generated ids.
        #[arg(long, default_value = "img-")]
        id_prefix: String,
    },
    /// Publish upload/edit/delete messages, as a pipeline does after it
    /// wrote S3 and DynamoDB.
    Publish {
        /// upload, edit or delete.
        #[arg(value_enum)]
        kind: Kind,
        /// Document ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Show the migration state, counts, queue depths and the scanner.
    Status {
        /// Redraw every few seconds with a progress bar.
        #[arg(long)]
        watch: bool,
    },
    /// Start a migration into a new index created from the mapping file.
    Start {
        /// Mapping and settings of the new index (default: FERRY_MAPPING).
        #[arg(long)]
        mapping: Option<String>,
    },
    /// Stop the scanner from queueing documents (edits still dual-write).
    Pause,
    /// Let the scanner queue documents again.
    Resume,
    /// Put the preview alias on the migration index.
    Preview,
    /// Take the preview alias off.
    Unpreview,
    /// Switch Current to the migration index (one atomic alias change).
    Complete {
        /// Complete even with unmigrated or failed documents or verify
        /// differences (logged with who and what was skipped).
        #[arg(long)]
        force: bool,
        /// Documents compared with the stores before switching (0: none).
        #[arg(long, default_value_t = 100)]
        verify_sample: usize,
    },
    /// Drop the migration; queued messages for it are discarded.
    Abandon {
        /// Also delete the half-built index.
        #[arg(long)]
        delete_index: bool,
    },
    /// Switch back to the Historical index, within the rollback window.
    Rollback,
    /// Queue documents for migration by hand (works while paused).
    Queue {
        /// Document ids.
        #[arg(required_unless_present = "file")]
        ids: Vec<String>,
        /// Read ids from a file, one per line (`-` for stdin).
        #[arg(long, conflicts_with = "ids")]
        file: Option<String>,
    },
    /// Look up failure records: grouped by message, a paged list, one id.
    Failures {
        #[command(subcommand)]
        action: Option<FailuresAction>,
        /// Show the last completed migration's failures (on the Historical index).
        #[arg(long)]
        historical: bool,
        /// List the documents that failed with exactly this message.
        #[arg(long)]
        message: Option<String>,
        /// Page of the list (from 1).
        #[arg(long, default_value_t = 1)]
        page: usize,
    },
    /// Show or set the cluster-wide cap on migration speed (edits are never
    /// throttled); workers apply a change within 5 seconds.
    Throttle {
        /// Documents per second for the whole cluster.
        #[arg(long, conflicts_with = "off")]
        max_docs_per_second: Option<u64>,
        /// Remove the cap.
        #[arg(long)]
        off: bool,
    },
    /// Compare the target index with a fresh projection of the stores;
    /// exits 1 when anything differs.
    Verify {
        /// Compare about this many documents.
        #[arg(long, default_value_t = 200, conflicts_with = "all")]
        sample: usize,
        /// Compare every document and both id sets.
        #[arg(long)]
        all: bool,
    },
    /// Measure ferry on the stack it points at: the index server's own
    /// _reindex (R), the store reads (P), one document at a time like
    /// Grid's Thrall (S), a full migration by `ferry worker` processes (M,
    /// with their peak memory) and edit latency idle and during M; report
    /// the ratios against the targets. Uses its own aliases, indices and
    /// queues. --concurrency, --batch-size and --scan-page (global
    /// settings) shape the workers and P.
    Bench(ferry::bench::BenchOptions),
    /// Run the whole job on the local stack: seed, migrate while edits
    /// flow, complete, verify, and report.
    Demo {
        /// Documents to seed.
        #[arg(long, default_value_t = 3000)]
        count: usize,
        /// Broken documents among them.
        #[arg(long, default_value_t = 8)]
        broken: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum FailuresAction {
    /// Show one document's outcome record.
    Show {
        /// Document id.
        id: String,
    },
    /// Clear failure records and queue the documents again.
    Retry {
        /// Retry every failure with exactly this message.
        #[arg(long, conflicts_with = "ids")]
        message: Option<String>,
        /// Or these document ids.
        #[arg(required_unless_present = "message")]
        ids: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Kind {
    Upload,
    Edit,
    Delete,
}

/// Sets up logging once: human-readable by default, JSON with `--log-json`.
pub fn telemetry(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn parse_ids(raw: &[String]) -> anyhow::Result<Vec<DocId>> {
    raw.iter()
        .map(|r| DocId::parse(r.as_str()).with_context(|| format!("invalid document id {r:?}")))
        .collect()
}

/// Runs the command; the exit code says success (0), refusal or failure (1).
pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let json = cli.json;
    let settings = cli.settings;
    if let Command::Worker = cli.command {
        let shutdown = CancellationToken::new();
        tokio::spawn(signals(shutdown.clone()));
        ferry::worker::run(settings, shutdown).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let ctx = Ctx::new(settings).await?;
    let result = run(&ctx, cli.command, json).await;
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

fn other(e: impl Into<anyhow::Error>) -> Failure {
    Failure::Other(e.into())
}

async fn broker(ctx: &Ctx) -> Result<Broker, Failure> {
    Ok(Broker::connect(&ctx.settings).await?)
}

async fn run(ctx: &Ctx, command: Command, json: bool) -> Result<ExitCode, Failure> {
    use Command::*;
    match command {
        Worker => unreachable!("handled before"),
        Setup => {
            ferry::stores::setup::ensure_all(&ctx.settings).await?;
            output::line(
                json,
                &serde_json::json!({"done": "bucket and tables exist"}),
                "bucket and tables exist",
            );
        }
        Seed {
            count,
            seed,
            broken,
            id_prefix,
        } => {
            let opts = ferry::seed::SeedOptions {
                count,
                seed,
                broken,
                id_prefix,
            };
            let s = ferry::seed::seed(ctx, &opts).await?;
            output::seeded(json, &s);
        }
        Publish { kind, ids } => {
            let b = broker(ctx).await?;
            let kind = match kind {
                Kind::Upload => DocKind::Upload,
                Kind::Edit => DocKind::Edit,
                Kind::Delete => DocKind::Delete,
            };
            let ids = parse_ids(&ids).map_err(other)?;
            for id in &ids {
                let msg = DocMessage {
                    kind,
                    id: id.clone(),
                    version: None,
                };
                b.publish_event(kind.as_str(), &msg.to_body()).await?;
            }
            output::line(
                json,
                &serde_json::json!({"published": ids.len(), "kind": kind.as_str()}),
                &format!("published {} {} message(s)", ids.len(), kind.as_str()),
            );
            b.close().await;
        }
        Status { watch } => {
            let b = Broker::connect(&ctx.settings).await.ok();
            if watch {
                output::watch(ctx, b.as_ref()).await?;
            } else {
                let s = ops::status::status(ctx, b.as_ref()).await?;
                output::status(json, &s);
            }
        }
        Start { mapping } => {
            let mapping = mapping.unwrap_or_else(|| ctx.settings.mapping.clone());
            output::changed(json, &ops::lifecycle::start(ctx, &mapping).await?);
        }
        Pause => output::changed(json, &ops::lifecycle::pause(ctx).await?),
        Resume => output::changed(json, &ops::lifecycle::resume(ctx).await?),
        Preview => output::changed(json, &ops::lifecycle::preview(ctx).await?),
        Unpreview => output::changed(json, &ops::lifecycle::unpreview(ctx).await?),
        Complete {
            force,
            verify_sample,
        } => {
            let gate = if force {
                // Whoever ran the command, through sudo or not.
                let by = std::env::var("SUDO_USER")
                    .or_else(|_| std::env::var("USER"))
                    .unwrap_or_else(|_| "unknown".into());
                Gate::Forced { by }
            } else {
                Gate::checked(verify_sample)
            };
            output::changed(json, &ops::lifecycle::complete(ctx, gate).await?)
        }
        Abandon { delete_index } => {
            output::changed(json, &ops::lifecycle::abandon(ctx, delete_index).await?)
        }
        Rollback => output::changed(json, &ops::lifecycle::rollback(ctx).await?),
        Queue { ids, file } => {
            let ids = match file {
                Some(path) => {
                    let text = if path == "-" {
                        std::io::read_to_string(std::io::stdin()).map_err(other)?
                    } else {
                        std::fs::read_to_string(&path)
                            .with_context(|| format!("cannot read {path}"))
                            .map_err(other)?
                    };
                    ops::queue::read_ids(&text)?
                }
                None if ids.is_empty() => {
                    return Err(other(anyhow::anyhow!("name document ids, or --file FILE")))
                }
                None => parse_ids(&ids).map_err(other)?,
            };
            let b = broker(ctx).await?;
            let q = ops::queue::queue(ctx, &b, &ids).await?;
            b.close().await;
            output::queued(json, &q);
        }
        Failures {
            action,
            historical,
            message,
            page,
        } => match action {
            None => {
                let scope = ops::failures::scope(ctx, historical).await?;
                match message {
                    Some(m) => output::failure_page(
                        json,
                        &ops::failures::list(ctx, scope, Some(&m), page).await?,
                    ),
                    None => {
                        output::failure_overview(json, &ops::failures::overview(ctx, scope).await?)
                    }
                }
            }
            Some(FailuresAction::Show { id }) => {
                let id = DocId::parse(id.as_str())
                    .map_err(|e| other(anyhow::anyhow!("invalid document id: {e}")))?;
                let scope = ops::failures::scope(ctx, historical).await?;
                output::record(json, &ops::failures::show(ctx, scope, &id).await?);
            }
            Some(FailuresAction::Retry { message, ids }) => {
                let selection = match message {
                    Some(m) => ops::failures::Selection::Message(m),
                    None if ids.is_empty() => {
                        return Err(other(anyhow::anyhow!(
                            "name document ids, or --message TEXT"
                        )))
                    }
                    None => ops::failures::Selection::Ids(parse_ids(&ids).map_err(other)?),
                };
                let b = broker(ctx).await?;
                let r = ops::failures::retry(ctx, &b, selection).await?;
                b.close().await;
                output::retried(json, &r);
            }
        },
        Throttle {
            max_docs_per_second,
            off,
        } => {
            let cap = match (max_docs_per_second, off) {
                (None, false) => ops::throttle::get(ctx).await?,
                (cap, _) => ops::throttle::set(ctx, cap).await?,
            };
            let text = match cap.max_docs_per_second {
                Some(c) => format!(
                    "migration capped at {c} documents/s for the whole cluster\nnext: {}",
                    cap.next
                ),
                None => format!(
                    "no cap on migration speed (adaptive throttling only)\nnext: {}",
                    cap.next
                ),
            };
            output::line(json, &serde_json::to_value(&cap).unwrap_or_default(), &text);
        }
        Verify { sample, all } => {
            let scope = if all {
                ops::verify::Scope::All
            } else {
                ops::verify::Scope::Sample(sample)
            };
            let report = ops::verify::verify(ctx, scope).await?;
            output::verified(json, &report);
            if !report.differences.is_empty() {
                return Ok(ExitCode::from(1));
            }
        }
        Bench(opts) => output::bench(json, &ferry::bench::run(ctx, &opts).await?),
        Demo { count, broken } => {
            let report = ferry::demo::run(ctx, count, broken).await?;
            output::demo(json, &report);
            if !report.ok() {
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Cancels `token` on SIGTERM or SIGINT.
async fn signals(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    token.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested: finishing in-flight work");
    token.cancel();
}
