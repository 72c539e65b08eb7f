//! `trial` and `compare`: checks of a new mapping before the backfill and
//! before the switch. Both exit 1 when they find a problem, so that a
//! pipeline can gate a mapping change on them.

use super::documents::read;
use super::{output, Failure, Outcome};
use ferry::context::Ctx;
use ferry::ops::compare::{self, Comparison, Spec};
use ferry::ops::trial::{self, TrialOptions, TrialReport};
use std::process::ExitCode;

/// `ferry trial`.
#[derive(Debug, clap::Args)]
pub struct TrialArgs {
    /// The mapping file to try (default: the configured one).
    #[arg(long)]
    mapping: Option<String>,
    /// Documents picked at random from Current.
    #[arg(long, default_value_t = 1000)]
    sample: usize,
    /// Keep the scratch index to look at it (delete it by hand after).
    #[arg(long)]
    keep: bool,
}

/// The searches to compare (shared by `compare` and `complete --compare`).
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// Top ids compared per search.
    #[arg(long, default_value_t = compare::DEFAULT_TOP)]
    top: usize,
    /// Searches whose top-K overlap is below this (0 to 1) are flagged.
    #[arg(long, default_value_t = compare::DEFAULT_MIN_OVERLAP)]
    min_overlap: f64,
}

impl CompareArgs {
    /// The searches of `file` (one JSON object per line, `-` for stdin).
    pub fn spec(&self, file: &str) -> Result<Spec, Failure> {
        let text = read(file).map_err(Failure::Other)?;
        Ok(Spec::new(
            compare::parse_queries(&text)?,
            self.top,
            self.min_overlap,
        )?)
    }
}

/// `ferry compare`.
#[derive(Debug, clap::Args)]
pub struct CompareCommand {
    /// Named search bodies, one JSON object per line:
    /// {"name": "cats", "query": {"match": {"title": "cat"}}}.
    #[arg(long)]
    queries: String,
    #[command(flatten)]
    limits: CompareArgs,
}

pub async fn trial(ctx: &Ctx, a: TrialArgs, json: bool) -> Outcome {
    let opts = TrialOptions {
        mapping: a.mapping,
        sample: a.sample,
        keep: a.keep,
    };
    let r = trial::trial(ctx, &opts).await?;
    print_trial(json, &r);
    Ok(exit(r.passed()))
}

pub async fn compare(ctx: &Ctx, a: CompareCommand, json: bool) -> Outcome {
    let spec = a.limits.spec(&a.queries)?;
    let c = compare::compare(ctx, &spec).await?;
    print_comparison(json, &c);
    Ok(exit(c.flagged == 0))
}

fn exit(passed: bool) -> ExitCode {
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn print_trial(json: bool, r: &TrialReport) {
    if json {
        return output::json_out(r);
    }
    println!(
        "trial of {} on {} sampled document(s): {} accepted, {} failed, {} deleted in the stores",
        r.mapping,
        r.sampled,
        r.accepted,
        r.failures.iter().map(|g| g.count).sum::<usize>(),
        r.deleted
    );
    for g in &r.failures {
        let ex: Vec<String> = g.examples.iter().map(|i| i.to_string()).collect();
        println!(
            "{:>8}  {}\n          e.g. {}",
            g.count,
            g.message,
            ex.join(", ")
        );
    }
    if !r.undeclared_fields.is_empty() {
        println!(
            "fields the engine added that the mapping does not declare: {}",
            r.undeclared_fields.join(", ")
        );
    }
    let s = &r.sizes;
    println!(
        "document size (bytes of JSON): p50 {}, p90 {}, p99 {}, max {}",
        s.p50, s.p90, s.p99, s.max
    );
    if r.kept {
        println!("kept the scratch index {} (delete it when done)", r.index);
    }
    println!(
        "next: {}",
        if r.passed() {
            "`ferry start --mapping FILE` when ready"
        } else {
            "fix the mapping (or the documents) and try again"
        }
    );
}

fn print_comparison(json: bool, c: &Comparison) {
    if json {
        return output::json_out(c);
    }
    println!(
        "{} search(es) on {} (Current) and {}, top {} ids, flagged below {:.2} overlap: {} flagged",
        c.results.len(),
        c.current,
        c.new,
        c.top,
        c.min_overlap,
        c.flagged
    );
    println!(
        "  {:<7} {:>8} {:>8} {:>7} {:>7}  name",
        "", "current", "new", "overlap", "avg"
    );
    for r in &c.results {
        println!(
            "  {:<7} {:>8} {:>8} {:>7.2} {:>7.2}  {}{}",
            if r.flagged { "FLAGGED" } else { "ok" },
            r.current_hits,
            r.new_hits,
            r.overlap,
            r.average_overlap,
            r.name,
            r.error
                .as_ref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        );
    }
}
