//! `start`, `pause`, `resume`, `preview`, `unpreview`, `complete`,
//! `abandon`, `rollback`, `retire-source`: the migration's life, one alias
//! change each.

use super::{done, output, Outcome};
use ferry::context::Ctx;
use ferry::ops::{input, lifecycle};

/// `ferry start`.
#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Mapping and settings of the new index (default: FERRY_MAPPING).
    #[arg(long)]
    mapping: Option<String>,
}

/// `ferry complete`.
#[derive(Debug, clap::Args)]
pub struct CompleteArgs {
    /// Complete even with unmigrated or failed documents or verify
    /// differences (logged with who and what was skipped).
    #[arg(long)]
    force: bool,
    /// Documents compared with the stores before switching (0: none).
    #[arg(long, default_value_t = input::GATE_SAMPLE)]
    verify_sample: usize,
    /// Also compare these searches between Current and the new index
    /// first (see `ferry compare`); refused while one is flagged.
    #[arg(long, value_name = "FILE")]
    compare: Option<String>,
    #[command(flatten)]
    limits: super::checks::CompareArgs,
}

/// `ferry abandon`.
#[derive(Debug, clap::Args)]
pub struct AbandonArgs {
    /// Also delete the half-built index.
    #[arg(long)]
    delete_index: bool,
}

pub async fn start(ctx: &Ctx, a: StartArgs, json: bool) -> Outcome {
    let mapping = a.mapping.unwrap_or_else(|| ctx.settings.mapping.clone());
    output::changed(json, &lifecycle::start(ctx, &mapping).await?);
    done()
}

pub async fn complete(ctx: &Ctx, a: CompleteArgs, json: bool) -> Outcome {
    let compare = a.compare.map(|f| a.limits.spec(&f)).transpose()?;
    let gate = input::gate(a.force, Some(operator()), Some(a.verify_sample)).with_compare(compare);
    output::changed(json, &lifecycle::complete(ctx, gate).await?);
    done()
}

pub async fn abandon(ctx: &Ctx, a: AbandonArgs, json: bool) -> Outcome {
    output::changed(json, &lifecycle::abandon(ctx, a.delete_index).await?);
    done()
}

pub async fn pause(ctx: &Ctx, json: bool) -> Outcome {
    output::changed(json, &lifecycle::pause(ctx).await?);
    done()
}

pub async fn resume(ctx: &Ctx, json: bool) -> Outcome {
    output::changed(json, &lifecycle::resume(ctx).await?);
    done()
}

pub async fn preview(ctx: &Ctx, json: bool) -> Outcome {
    output::changed(json, &lifecycle::preview(ctx).await?);
    done()
}

pub async fn unpreview(ctx: &Ctx, json: bool) -> Outcome {
    output::changed(json, &lifecycle::unpreview(ctx).await?);
    done()
}

pub async fn rollback(ctx: &Ctx, json: bool) -> Outcome {
    output::changed(json, &lifecycle::rollback(ctx).await?);
    done()
}

pub async fn retire_source(ctx: &Ctx, json: bool) -> Outcome {
    output::changed(json, &ferry::ops::across::retire_source(ctx).await?);
    done()
}

/// Whoever ran the command, through sudo or not (for a forced completion's
/// log line).
fn operator() -> String {
    std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into())
}
