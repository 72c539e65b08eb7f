//! `start`, `pause`, `resume`, `preview`, `unpreview`, `complete`,
//! `abandon`, `rollback`, `retire-source`: the migration's life, one alias
//! change each.

use super::{done, output, Outcome};
use ferry::context::Ctx;
use ferry::ops::audit::audited;
use ferry::ops::{input, lifecycle};

/// `ferry start`.
#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Mapping and settings of the new index (default: FERRY_MAPPING).
    #[arg(long)]
    mapping: Option<String>,
    /// Refresh interval while the backfill runs (`-1`: none); `complete`
    /// restores the mapping's. Overrides the mapping file's `backfill`.
    #[arg(long, allow_hyphen_values = true)]
    backfill_refresh_interval: Option<String>,
    /// Replicas while the backfill runs; `complete` restores the mapping's
    /// and waits for them.
    #[arg(long)]
    backfill_replicas: Option<u64>,
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

pub async fn start(ctx: &Ctx, a: StartArgs, json: bool, by: &str) -> Outcome {
    let mapping = a.mapping.unwrap_or_else(|| ctx.settings.mapping.clone());
    let backfill = ferry::ops::backfill::Profile {
        refresh_interval: a.backfill_refresh_interval,
        number_of_replicas: a.backfill_replicas,
    };
    let detail = format!("mapping {mapping}");
    let work = lifecycle::start_with(ctx, &mapping, &backfill);
    let c = audited(ctx, by, "start", detail, work).await?;
    output::changed(json, &c);
    done()
}

pub async fn complete(ctx: &Ctx, a: CompleteArgs, json: bool, by: &str) -> Outcome {
    let compare = a.compare.as_ref().map(|f| a.limits.spec(f)).transpose()?;
    let detail = format!(
        "force {}, verify sample {}{}",
        a.force,
        a.verify_sample,
        a.compare
            .as_ref()
            .map(|f| format!(", compare {f}"))
            .unwrap_or_default()
    );
    let gate =
        input::gate(a.force, Some(by.to_string()), Some(a.verify_sample)).with_compare(compare);
    let c = audited(ctx, by, "complete", detail, lifecycle::complete(ctx, gate)).await?;
    output::changed(json, &c);
    done()
}

pub async fn abandon(ctx: &Ctx, a: AbandonArgs, json: bool, by: &str) -> Outcome {
    let detail = format!("delete index {}", a.delete_index);
    let work = lifecycle::abandon(ctx, a.delete_index);
    output::changed(json, &audited(ctx, by, "abandon", detail, work).await?);
    done()
}

pub async fn simple(ctx: &Ctx, op: lifecycle::Simple, json: bool, by: &str) -> Outcome {
    output::changed(json, &lifecycle::simple(ctx, op, by).await?);
    done()
}
