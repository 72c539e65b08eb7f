//! Printing results for people (plain text that says what happened and what
//! to do next) or for scripts (`--json`).

use ferry::bench::BenchReport;
use ferry::context::Ctx;
use ferry::demo::DemoReport;
use ferry::ops::cleanup::Cleanup;
use ferry::ops::failures::{Overview, Page, Record, Retried};
use ferry::ops::lifecycle::Changed;
use ferry::ops::queue::{Queued, QueuedByQuery};
use ferry::ops::status::Status;
use ferry::ops::verify::Report;
use ferry::ops::OpsError;
use ferry::queue::Broker;
use ferry::seed::Seeded;
use ferry::stores::control::AuditEntry;
use ferry::types::IndexName;
use serde::Serialize;

/// Pretty JSON on stdout.
pub fn json_out(v: &impl Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    );
}

/// A one-line result.
pub fn line(json: bool, v: &serde_json::Value, text: &str) {
    if json {
        json_out(v)
    } else {
        println!("{text}")
    }
}

/// A refused command: why, and what to do (on stderr for people).
pub fn refusal(json: bool, why: &str) {
    if json {
        json_out(&serde_json::json!({ "refused": why }))
    } else {
        eprintln!("refused: {why}")
    }
}

pub fn changed(json: bool, c: &Changed) {
    if json {
        json_out(c)
    } else {
        println!("{}\nnext: {}", c.done, c.next)
    }
}

pub fn seeded(json: bool, s: &Seeded) {
    if json {
        return json_out(s);
    }
    println!(
        "seeded {} documents into S3, DynamoDB and {}",
        s.documents, s.current
    );
    for (id, how) in &s.broken {
        println!(
            "  broken on purpose: {id} ({})",
            serde_json::to_value(how)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        );
    }
    println!("next: `ferry start` to begin a migration");
}

pub fn status(json: bool, s: &Status) {
    if json {
        return json_out(s);
    }
    println!(
        "state:      {:?}{}",
        s.phase,
        if s.preview { " (preview on)" } else { "" }
    );
    for v in &s.violations {
        println!("  INVARIANT BROKEN: {v}");
    }
    println!("engine:     {}", s.engine);
    if let Some(t) = &s.target {
        println!("target:     {t}");
    }
    println!(
        "read from:  {} alias {} ({})",
        s.read_from.url,
        s.read_from.alias,
        s.read_from.index.as_deref().unwrap_or("-")
    );
    println!("current:    {}", IndexName::list(&s.aliases.current));
    println!("migration:  {}", IndexName::list(&s.aliases.migration));
    println!("historical: {}", IndexName::list(&s.aliases.historical));
    if let Some(p) = &s.progress {
        let pct = if p.total > 0 {
            100.0 * (p.migrated + p.failed) as f64 / p.total as f64
        } else {
            100.0
        };
        println!(
            "documents:  {} total, {} migrated, {} failed, {} to go ({pct:.1}% done)",
            p.total, p.migrated, p.failed, p.to_go
        );
    }
    if let Some(q) = &s.queues {
        println!(
            "queues:     high {}, migration {}, dead letters {}",
            q.high, q.low, q.dead_letters
        );
    } else {
        println!("queues:     broker unreachable");
    }
    if let Some(why) = &s.yielding {
        println!("yielding:   {why}");
    }
    if !s.unaliased.is_empty() {
        println!(
            "cleanup:    {} index(es) no alias names: {} (`ferry cleanup` lists their sizes)",
            s.unaliased.len(),
            s.unaliased.join(", ")
        );
    }
    match &s.lease {
        Some(l) => println!("scanner:    {}", l.owner),
        None => println!("scanner:    none (no worker holds the lease)"),
    }
    let next = match s.phase {
        ferry::index::aliases::Phase::Idle => "`ferry start` to begin a migration",
        ferry::index::aliases::Phase::InProgress => {
            "`ferry status --watch` to follow; `ferry complete` once nothing is left to go"
        }
        ferry::index::aliases::Phase::Paused => "`ferry resume` to continue",
        ferry::index::aliases::Phase::Broken => {
            "fix the aliases by hand (one _aliases request), then check again"
        }
    };
    println!("next:       {next}");
}

/// Redraws progress until interrupted.
pub async fn watch(ctx: &Ctx, broker: Option<&Broker>) -> Result<(), OpsError> {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} {per_sec} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    loop {
        let s = ferry::ops::status::status(ctx, broker).await?;
        match &s.progress {
            Some(p) => {
                bar.set_length(p.total);
                bar.set_position(p.migrated + p.failed);
                let q = s
                    .queues
                    .as_ref()
                    .map(|q| format!("queues h{}/l{}/dl{}", q.high, q.low, q.dead_letters))
                    .unwrap_or_default();
                bar.set_message(format!("{:?}, {} failed, {q}", s.phase, p.failed));
            }
            None => bar.set_message(format!("{:?}: no migration in progress", s.phase)),
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
        }
    }
    bar.abandon();
    Ok(())
}

pub fn queued(json: bool, q: &Queued) {
    if json {
        return json_out(q);
    }
    println!(
        "queued {} document(s) for migration into {}",
        q.queued, q.target
    );
    for id in &q.not_found {
        println!("  not in the Current index: {id}");
    }
}

pub fn failure_overview(json: bool, o: &Overview) {
    if json {
        return json_out(o);
    }
    println!(
        "{} failed document(s) migrating {} -> {}",
        o.total, o.scope.index, o.scope.target
    );
    for g in &o.groups {
        let ex: Vec<String> = g.examples.iter().map(|i| i.to_string()).collect();
        println!(
            "{:>8}  {}\n          e.g. {}",
            g.count,
            g.key,
            ex.join(", ")
        );
    }
    if o.total > 0 {
        println!("next: `ferry failures --message TEXT` lists them; `ferry failures retry --message TEXT` retries them");
    }
}

pub fn failure_page(json: bool, p: &Page) {
    if json {
        return json_out(p);
    }
    println!("page {} of {} failure(s):", p.page, p.total);
    for (id, msg) in &p.items {
        println!("  {id}\t{msg}");
    }
}

pub fn record(json: bool, r: &Record) {
    if json {
        return json_out(r);
    }
    match &r.outcome {
        None => println!("{} is not in {}", r.id, r.scope.index),
        Some(o) => println!(
            "{} in {}: {}",
            r.id,
            r.scope.index,
            serde_json::to_string(o).unwrap_or_default()
        ),
    }
}

pub fn queued_by_query(json: bool, q: &QueuedByQuery) {
    if json {
        return json_out(q);
    }
    println!(
        "{} document(s) matched; cleared {} outcome record(s) and queued {} for migration into {}",
        q.matched, q.cleared, q.queued, q.target
    );
}

pub fn cleanup(json: bool, c: &Cleanup, deleting: bool) {
    if json {
        return json_out(c);
    }
    if c.found.is_empty() {
        println!("no index with ferry's prefix is without an alias");
    }
    for l in &c.found {
        let created = chrono::DateTime::from_timestamp_millis(l.created_ms as i64)
            .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_default();
        println!(
            "  {:<45} {:>10} docs {:>14} bytes  created {created}  on {}",
            l.index, l.docs, l.bytes, l.cluster
        );
    }
    if deleting {
        println!(
            "deleted {} index(es); kept {} (younger than --min-age, or aliased since): {}",
            c.deleted.len(),
            c.kept.len(),
            c.kept.join(", ")
        );
    } else if !c.found.is_empty() {
        println!("next: `ferry cleanup --yes` deletes them (never an index an alias names)");
    }
}

pub fn history(json: bool, entries: &[AuditEntry]) {
    if json {
        return json_out(&entries);
    }
    if entries.is_empty() {
        println!("no operator action recorded yet");
    }
    for e in entries {
        let at = chrono::DateTime::from_timestamp_millis(e.at_ms as i64)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default();
        let detail = if e.detail.is_empty() {
            String::new()
        } else {
            format!(" ({})", e.detail)
        };
        println!(
            "{at}  {:<8} {:<15} {}{detail}: {}",
            format!("{:?}", e.outcome).to_lowercase(),
            e.action,
            e.by,
            e.message
        );
    }
}

pub fn retried(json: bool, r: &Retried) {
    if json {
        return json_out(r);
    }
    println!(
        "cleared {} failure record(s) and queued {} document(s) again",
        r.cleared, r.queued
    );
}

pub fn verified(json: bool, r: &Report) {
    if json {
        return json_out(r);
    }
    println!(
        "compared {} document(s) in {} with the stores ({} recorded failures skipped)",
        r.compared, r.target, r.failed
    );
    for d in &r.differences {
        println!("  {:<8} {}  {}", d.kind, d.id, d.detail);
    }
    if r.differences.is_empty() {
        println!("no differences");
    } else {
        println!("{} difference(s)", r.differences.len());
    }
}

pub fn demo(json: bool, r: &DemoReport) {
    if json {
        return json_out(r);
    }
    println!("\n== ferry demo {} ==", r.run);
    if r.source_cluster == r.target_cluster {
        println!("migrated {} -> {}", r.source, r.target);
    } else {
        println!(
            "migrated {} on {} -> {} on {}",
            r.source, r.source_cluster, r.target, r.target_cluster
        );
    }
    println!("documents:      {}", r.documents);
    println!("migrated:       {}", r.migrated);
    println!("failed:         {}", r.failed);
    for g in &r.failures {
        println!("  {:>5}  {}", g.count, g.key);
    }
    println!(
        "live changes:   {} uploads/edits/deletes during the migration",
        r.live_changes
    );
    println!(
        "duration:       {:.1} s ({:.0} docs/s)",
        r.migration_seconds, r.docs_per_second
    );
    println!(
        "verified:       {} documents against the stores, {} difference(s)",
        r.verified, r.differences
    );
    println!(
        "{}",
        if r.ok() {
            "OK: the new index equals a fresh projection of the stores"
        } else {
            "FAILED: see the differences above"
        }
    );
}

/// The bench report: the table for people, everything for scripts.
pub fn bench(json: bool, r: &BenchReport) {
    if json {
        json_out(r)
    } else {
        print!("{}", r.table())
    }
}
