//! `failures`: what support staff look up and retry.

use super::{broker, done, output, Outcome};
use ferry::context::Ctx;
use ferry::ops::{self, input};

/// `ferry failures`.
#[derive(Debug, clap::Args)]
pub struct FailuresArgs {
    #[command(subcommand)]
    action: Option<Action>,
    /// Show the last completed migration's failures (on the Historical index).
    #[arg(long)]
    historical: bool,
    /// List the documents that failed with exactly this message.
    #[arg(long)]
    message: Option<String>,
    /// Page of the list (from 1).
    #[arg(long, default_value_t = 1)]
    page: usize,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
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
        /// Retry every failure of the running migration.
        #[arg(long, conflicts_with_all = ["ids", "message"])]
        all: bool,
        /// Or these document ids.
        #[arg(required_unless_present_any = ["message", "all"])]
        ids: Vec<String>,
    },
}

pub async fn run(ctx: &Ctx, a: FailuresArgs, json: bool, by: &str) -> Outcome {
    match a.action {
        None => {
            let scope = ops::failures::scope(ctx, a.historical).await?;
            match a.message {
                Some(m) => output::failure_page(
                    json,
                    &ops::failures::list(ctx, scope, Some(&m), a.page).await?,
                ),
                None => output::failure_overview(json, &ops::failures::overview(ctx, scope).await?),
            }
        }
        Some(Action::Show { id }) => {
            let id = input::ids(&[id])?.remove(0);
            let scope = ops::failures::scope(ctx, a.historical).await?;
            output::record(json, &ops::failures::show(ctx, scope, &id).await?);
        }
        Some(Action::Retry { message, all, ids }) => {
            let selection = input::selection(all, message, &ids)?;
            let detail = selection.describe();
            let b = broker(ctx).await?;
            let work = ops::failures::retry(ctx, &b, selection);
            let r = ops::audit::audited(ctx, by, "failures retry", detail, work).await?;
            b.close().await;
            output::retried(json, &r);
        }
    }
    done()
}
