//! `status`, `verify`, `history` and `throttle`: looking at a migration
//! and what operators did to it, and setting its speed cap.

use super::{done, output, Outcome};
use ferry::context::Ctx;
use ferry::ops::{self, input};
use ferry::queue::Broker;
use std::process::ExitCode;

/// `ferry status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Redraw every few seconds with a progress bar.
    #[arg(long)]
    watch: bool,
}

/// `ferry verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Compare about this many documents.
    #[arg(long, default_value_t = input::VERIFY_SAMPLE, conflicts_with = "all")]
    sample: usize,
    /// Compare every document and both id sets.
    #[arg(long)]
    all: bool,
}

/// `ferry history`.
#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// Entries to show, newest first.
    #[arg(long, default_value_t = ops::audit::DEFAULT_LIMIT)]
    limit: usize,
}

/// `ferry cleanup`.
#[derive(Debug, clap::Args)]
pub struct CleanupArgs {
    /// Delete them (otherwise only list).
    #[arg(long)]
    yes: bool,
    /// Leave indices younger than this (a `start` creates its index one
    /// request before it aliases it).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    min_age: std::time::Duration,
}

/// `ferry throttle`.
#[derive(Debug, clap::Args)]
pub struct ThrottleArgs {
    /// Documents per second for the whole cluster.
    #[arg(long, conflicts_with = "off")]
    max_docs_per_second: Option<u64>,
    /// Remove the cap.
    #[arg(long)]
    off: bool,
    /// Set the edit latency budget the migration yields to (like 300ms),
    /// or `off`.
    #[arg(long)]
    edit_latency: Option<ferry::config::LatencyBudget>,
}

pub async fn status(ctx: &Ctx, a: StatusArgs, json: bool) -> Outcome {
    // The queue depths are shown when the broker answers; status works without.
    let b = Broker::connect(&ctx.settings).await.ok();
    if a.watch {
        output::watch(ctx, b.as_ref()).await?;
    } else {
        output::status(json, &ops::status::status(ctx, b.as_ref()).await?);
    }
    done()
}

pub async fn verify(ctx: &Ctx, a: VerifyArgs, json: bool) -> Outcome {
    let report = ops::verify::verify(ctx, input::scope(a.all, Some(a.sample))).await?;
    output::verified(json, &report);
    if report.differences.is_empty() {
        done()
    } else {
        Ok(ExitCode::from(1))
    }
}

pub async fn throttle(ctx: &Ctx, a: ThrottleArgs, json: bool, by: &str) -> Outcome {
    let changes = a.edit_latency.is_some() || a.max_docs_per_second.is_some() || a.off;
    let cap = if changes {
        let detail = format!(
            "edit latency {}, max docs/s {}",
            a.edit_latency.map_or("unchanged".into(), |b| b.to_string()),
            match (a.max_docs_per_second, a.off) {
                (Some(c), _) => c.to_string(),
                (None, true) => "off".into(),
                (None, false) => "unchanged".into(),
            }
        );
        let work = async {
            if let Some(b) = a.edit_latency {
                ops::throttle::set_budget(ctx, b).await?;
            }
            match (a.max_docs_per_second, a.off) {
                (None, false) => ops::throttle::get(ctx).await,
                (cap, _) => ops::throttle::set(ctx, cap).await,
            }
        };
        ops::audit::audited(ctx, by, "throttle", detail, work).await?
    } else {
        ops::throttle::get(ctx).await?
    };
    let speed = match cap.max_docs_per_second {
        Some(c) => format!("migration capped at {c} documents/s for the whole cluster"),
        None => "no cap on migration speed (adaptive throttling only)".into(),
    };
    let text = format!(
        "{speed}\nedit latency budget: {}{}\nnext: {}",
        cap.edit_latency_budget,
        if cap.budget_set_at_run_time {
            " (set at run time)"
        } else {
            " (FERRY_EDIT_LATENCY_BUDGET)"
        },
        cap.next
    );
    output::line(json, &serde_json::to_value(&cap).unwrap_or_default(), &text);
    done()
}

pub async fn history(ctx: &Ctx, a: HistoryArgs, json: bool) -> Outcome {
    let entries = ops::audit::history(ctx, a.limit).await?;
    output::history(json, &entries);
    done()
}

pub async fn cleanup(ctx: &Ctx, a: CleanupArgs, json: bool, by: &str) -> Outcome {
    let c = if a.yes {
        let detail = format!("min age {}", humantime::format_duration(a.min_age));
        let work = ops::cleanup::cleanup(ctx, true, a.min_age);
        ops::audit::audited(ctx, by, "cleanup", detail, work).await?
    } else {
        ops::cleanup::cleanup(ctx, false, a.min_age).await?
    };
    output::cleanup(json, &c, a.yes);
    done()
}
