//! `setup`, `seed`, `bench` and `demo`: jobs on a local or test stack.

use super::{done, output, Outcome};
use ferry::context::Ctx;
use std::process::ExitCode;

/// `ferry seed`.
#[derive(Debug, clap::Args)]
pub struct SeedArgs {
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
}

/// `ferry demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Documents to seed.
    #[arg(long, default_value_t = 3000)]
    count: usize,
    /// Broken documents among them.
    #[arg(long, default_value_t = 8)]
    broken: usize,
}

pub async fn setup(ctx: &Ctx, json: bool) -> Outcome {
    ferry::stores::setup::ensure_all(&ctx.settings).await?;
    output::line(
        json,
        &serde_json::json!({"done": "bucket and tables exist"}),
        "bucket and tables exist",
    );
    done()
}

pub async fn seed(ctx: &Ctx, a: SeedArgs, json: bool) -> Outcome {
    let opts = ferry::seed::SeedOptions {
        count: a.count,
        seed: a.seed,
        broken: a.broken,
        id_prefix: a.id_prefix,
    };
    output::seeded(json, &ferry::seed::seed(ctx, &opts).await?);
    done()
}

pub async fn bench(ctx: &Ctx, opts: &ferry::bench::BenchOptions, json: bool) -> Outcome {
    let report = match &opts.from {
        Some(saved) => ferry::bench::load(saved)?,
        None => ferry::bench::run(ctx, opts).await?,
    };
    output::bench(json, &report);
    if let Some(path) = &opts.plot {
        ferry::bench::plot::draw(&report, path)?;
        eprintln!("bench: plot written to {}", path.display());
    }
    done()
}

pub async fn demo(ctx: &Ctx, a: DemoArgs, json: bool) -> Outcome {
    let report = ferry::demo::run(ctx, a.count, a.broken).await?;
    output::demo(json, &report);
    if report.ok() {
        done()
    } else {
        Ok(ExitCode::from(1))
    }
}
