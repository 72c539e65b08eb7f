//! `publish` and `queue`: messages for named documents, as a pipeline
//! sends them (upload, edit, delete) or as an operator queues them for
//! migration by hand.

use super::{broker, done, output, Failure, Outcome};
use anyhow::Context as _;
use ferry::context::Ctx;
use ferry::ops::audit::audited;
use ferry::ops::input;
use ferry::queue::{DocKind, DocMessage};

/// `ferry publish`.
#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// upload, edit or delete.
    #[arg(value_enum)]
    kind: Kind,
    /// Document ids.
    #[arg(required = true)]
    ids: Vec<String>,
}

/// `ferry queue`.
#[derive(Debug, clap::Args)]
#[command(group(
    clap::ArgGroup::new("what")
        .required(true)
        .multiple(true)
        .args(["ids", "file", "query", "since", "until"])
))]
pub struct QueueArgs {
    /// Document ids.
    ids: Vec<String>,
    /// Read ids from a file, one per line (`-` for stdin).
    #[arg(long, conflicts_with_all = ["ids", "query", "since", "until"])]
    file: Option<String>,
    /// Every Current document this search query (JSON) selects: their
    /// outcome records are cleared and they are migrated again.
    #[arg(long, conflicts_with_all = ["ids", "since", "until"])]
    query: Option<String>,
    /// Every Current document uploaded since (a date or RFC 3339 time).
    #[arg(long, conflicts_with = "ids")]
    since: Option<String>,
    /// ... and before this (a date or RFC 3339 time).
    #[arg(long, conflicts_with = "ids")]
    until: Option<String>,
}

/// A message kind, as typed.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Kind {
    Upload,
    Edit,
    Delete,
}

impl From<Kind> for DocKind {
    fn from(k: Kind) -> Self {
        match k {
            Kind::Upload => DocKind::Upload,
            Kind::Edit => DocKind::Edit,
            Kind::Delete => DocKind::Delete,
        }
    }
}

pub async fn publish(ctx: &Ctx, a: PublishArgs, json: bool) -> Outcome {
    let kind = DocKind::from(a.kind);
    let ids = input::ids(&a.ids)?;
    let b = broker(ctx).await?;
    for id in &ids {
        let msg = DocMessage {
            kind,
            id: id.clone(),
            version: None,
        };
        b.publish_event(kind.as_str(), &msg.to_body()).await?;
    }
    b.close().await;
    output::line(
        json,
        &serde_json::json!({"published": ids.len(), "kind": kind.as_str()}),
        &format!("published {} {} message(s)", ids.len(), kind.as_str()),
    );
    done()
}

pub async fn queue(ctx: &Ctx, a: QueueArgs, json: bool, by: &str) -> Outcome {
    if a.query.is_some() || a.since.is_some() || a.until.is_some() {
        return queue_matching(ctx, a, json, by).await;
    }
    let ids = match a.file {
        Some(path) => input::ids_from_lines(&read(&path).map_err(Failure::Other)?)?,
        None => input::ids(&a.ids)?,
    };
    let b = broker(ctx).await?;
    let detail = format!("{} id(s)", ids.len());
    let work = ferry::ops::queue::queue(ctx, &b, &ids);
    let q = audited(ctx, by, "queue", detail, work).await?;
    b.close().await;
    output::queued(json, &q);
    done()
}

/// `queue --query` / `--since` / `--until`, with a progress bar.
async fn queue_matching(ctx: &Ctx, a: QueueArgs, json: bool, by: &str) -> Outcome {
    let query = input::selector(a.query.as_deref(), a.since.as_deref(), a.until.as_deref())?;
    let detail = format!("query {query}");
    let b = broker(ctx).await?;
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} queued")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut progress = |done: usize, matched: u64| {
        bar.set_length(matched);
        bar.set_position(done as u64);
    };
    let work = ferry::ops::queue::queue_matching(ctx, &b, query, &mut progress);
    let q = audited(ctx, by, "queue", detail, work).await;
    bar.finish_and_clear();
    b.close().await;
    output::queued_by_query(json, &q?);
    done()
}

/// A file's text, or standard input's for `-`.
pub fn read(path: &str) -> anyhow::Result<String> {
    if path == "-" {
        std::io::read_to_string(std::io::stdin()).context("cannot read standard input")
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))
    }
}
