//! `publish` and `queue`: messages for named documents, as a pipeline
//! sends them (upload, edit, delete) or as an operator queues them for
//! migration by hand.

use super::{broker, done, output, Failure, Outcome};
use anyhow::Context as _;
use ferry::context::Ctx;
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
pub struct QueueArgs {
    /// Document ids.
    #[arg(required_unless_present = "file")]
    ids: Vec<String>,
    /// Read ids from a file, one per line (`-` for stdin).
    #[arg(long, conflicts_with = "ids")]
    file: Option<String>,
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

pub async fn queue(ctx: &Ctx, a: QueueArgs, json: bool) -> Outcome {
    let ids = match a.file {
        Some(path) => input::ids_from_lines(&read(&path).map_err(Failure::Other)?)?,
        None => input::ids(&a.ids)?,
    };
    let b = broker(ctx).await?;
    let q = ferry::ops::queue::queue(ctx, &b, &ids).await?;
    b.close().await;
    output::queued(json, &q);
    done()
}

/// A file's text, or standard input's for `-`.
fn read(path: &str) -> anyhow::Result<String> {
    if path == "-" {
        std::io::read_to_string(std::io::stdin()).context("cannot read standard input")
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))
    }
}
