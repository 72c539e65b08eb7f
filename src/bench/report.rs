//! The bench report: every measurement, the ratios, and each target met or
//! missed, as JSON (serde) and as a readable table ([`BenchReport::table`]).

use super::cpu::Machine;
use super::latency::Latency;
use super::migration::MigrationRun;
use super::reindex::RKind;
use super::throughput::Throughput;
use super::write_ceiling::WriteCeiling;
use super::BenchOptions;
use crate::config::Settings;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// The settings that shape the measured work.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchSettings {
    /// Documents of the main run.
    pub count: usize,
    /// Messages processed at once per worker.
    pub concurrency: usize,
    /// Migration batch size.
    pub batch_size: usize,
    /// Scan page (and projection batch) size.
    pub scan_page: usize,
    /// S3 reads in flight.
    pub store_concurrency: usize,
    /// Where S3 was.
    pub s3_endpoint: Option<String>,
    /// Where DynamoDB was.
    pub dynamo_endpoint: Option<String>,
    /// Where the index server (the source cluster) was, without
    /// credentials.
    pub index_url: String,
    /// Where the migration's target cluster was, without credentials
    /// (`None`: the source cluster).
    #[serde(default)]
    pub target_index_url: Option<String>,
}

/// One target: what was asked, what was measured, met or not (`None`
/// when not measured in this run).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Target {
    /// What is compared.
    pub name: String,
    /// The bound, as text (`>= 0.8`).
    pub target: String,
    /// The measured value.
    pub value: Option<f64>,
    /// Whether the bound holds.
    pub met: Option<bool>,
    /// False for a long-term aim that is reported but does not fail the run.
    pub binding: bool,
}

/// Everything `ferry bench` measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchReport {
    /// Names used by this run.
    pub run: String,
    /// When it ran (UTC).
    pub date: String,
    /// The machine before the run.
    pub machine_before: Machine,
    /// The machine after the run.
    pub machine_after: Machine,
    /// The settings that shaped the work.
    pub settings: BenchSettings,
    /// R: the copy ceiling, of the kind `r_kind` says.
    pub reindex: Throughput,
    /// Which copy R is: the server's own `_reindex`, or across clusters
    /// the target's `_reindex` from remote or a bare client's bulk copy.
    #[serde(default)]
    pub r_kind: RKind,
    /// P: reading both stores as the scanner does.
    pub store_reads: Throughput,
    /// S: one document at a time (Thrall's way).
    pub serial: Throughput,
    /// True when S ran on fewer documents than the main run.
    pub serial_subset: bool,
    /// W: a migration's reads and writes by a bare client.
    pub write_ceiling: WriteCeiling,
    /// M: the main run (the first `--replicas` value, `--count` documents,
    /// edits, the budget on).
    pub migration: MigrationRun,
    /// M as the main run with the budget off.
    pub unbudgeted: MigrationRun,
    /// M as the main run without edits.
    pub no_edits: MigrationRun,
    /// Every M run: the three above, the replica curve, the sizes.
    pub runs: Vec<MigrationRun>,
    /// Edit latency with no migration running (visible in Current).
    pub latency_idle: Latency,
    /// Edit latency during M (visible in Current and Migration).
    pub latency_during: Latency,
    /// The ratios and the targets.
    pub targets: Vec<Target>,
}

/// The measurements, as `run` gathered them.
pub(crate) struct Measured {
    /// Which copy R timed.
    pub r_kind: RKind,
    /// R.
    pub reindex: Throughput,
    /// P.
    pub store_reads: Throughput,
    /// S.
    pub serial: Throughput,
    /// W.
    pub write_ceiling: WriteCeiling,
    /// The main run, budget off, no edits, then the curves.
    pub runs: Vec<MigrationRun>,
}

/// The measurements and what they ran on.
pub(crate) struct Parts<'a> {
    pub run: String,
    pub settings: &'a Settings,
    /// The source cluster, without credentials.
    pub index_url: String,
    /// The target cluster, if any, without credentials.
    pub target_index_url: Option<String>,
    pub opts: &'a BenchOptions,
    pub machine_before: Machine,
    pub measured: Measured,
}

fn peak(run: &MigrationRun) -> f64 {
    run.peak_rss_mb.iter().copied().fold(0.0, f64::max)
}

fn target(name: &str, bound: &str, value: Option<f64>, ok: impl Fn(f64) -> bool) -> Target {
    Target {
        name: name.into(),
        target: bound.into(),
        value,
        met: value.map(ok),
        binding: true,
    }
}

/// Builds the report; `all.measured.runs` holds the main run, the run
/// with the budget off and the run without edits, in that order, then the
/// curves.
pub(crate) fn build(all: Parts<'_>) -> BenchReport {
    let (s, parts) = (all.settings, all.measured);
    let nth = |k: usize| parts.runs.get(k).cloned().unwrap_or_default();
    let (main, unbudgeted, no_edits) = (nth(0), nth(1), nth(2));
    let idle = main.idle.clone().unwrap_or_default();
    let during = main.during.clone();
    let m = main.throughput.docs_per_second;
    let p = parts.store_reads.docs_per_second;
    let ceiling = parts.reindex.docs_per_second.min(p);
    let write_ceiling = parts.write_ceiling.best().min(p);
    let m_no_edits = no_edits.throughput.docs_per_second;
    let budget_ms = main.budget_ms.map(|b| b as f64);
    let ratio = |a: f64, b: f64| (b > 0.0).then(|| a / b);
    // Peak memory by size, with the main run's number of workers.
    let mut by_size: Vec<(usize, f64)> = parts
        .runs
        .iter()
        .filter(|r| r.workers == main.workers)
        .map(|r| (r.throughput.docs, peak(r)))
        .collect();
    by_size.sort_by_key(|(docs, _)| *docs);
    by_size.dedup_by_key(|(docs, _)| *docs);
    let rss_ratio = match (by_size.first(), by_size.last()) {
        (Some(small), Some(large)) if large.0 > small.0 && !all.opts.sizes.is_empty() => {
            ratio(large.1, small.1)
        }
        _ => None,
    };
    let rss_name = match (by_size.first(), by_size.last()) {
        (Some(a), Some(b)) if rss_ratio.is_some() => format!("rss_{}_over_{}", b.0, a.0),
        _ => "rss_large_over_small (use --sizes)".into(),
    };
    let max_rss = parts.runs.iter().map(peak).fold(0.0, f64::max);
    let budgeted_p99 = (during.visible > 0).then_some(during.p99_ms);
    let targets = vec![
        target("m_over_ceiling", ">= 0.8", ratio(m, ceiling), |v| v >= 0.8),
        target(
            "m_over_serial",
            ">= 20",
            ratio(m, parts.serial.docs_per_second),
            |v| v >= 20.0,
        ),
        target(
            "edit_p99_during_budget_over_idle",
            "<= 1.5",
            ratio(during.p99_ms, idle.p99_ms),
            |v| v <= 1.5,
        ),
        target(
            "edit_p99_during_budget_ms",
            &format!("<= {}", budget_ms.unwrap_or(0.0)),
            budgeted_p99.filter(|_| budget_ms.is_some()),
            |v| budget_ms.is_some_and(|b| v <= b),
        ),
        target(
            "m_budget_over_m_unbudgeted",
            ">= 0.5",
            ratio(m, unbudgeted.throughput.docs_per_second),
            |v| v >= 0.5,
        ),
        target(
            "m_no_edits_over_write_ceiling",
            ">= 0.8",
            ratio(m_no_edits, write_ceiling),
            |v| v >= 0.8,
        ),
        Target {
            binding: false,
            ..target(
                "m_no_edits_over_ceiling",
                ">= 0.8 (aim)",
                ratio(m_no_edits, ceiling),
                |v| v >= 0.8,
            )
        },
        target(
            "peak_worker_rss_mb",
            "< 150",
            (max_rss > 0.0).then_some(max_rss),
            |v| v < 150.0,
        ),
        target(&rss_name, "<= 1.2", rss_ratio, |v| v <= 1.2),
    ];
    BenchReport {
        run: all.run,
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        machine_before: all.machine_before,
        machine_after: Machine::now(),
        settings: BenchSettings {
            count: all.opts.count,
            concurrency: s.concurrency,
            batch_size: s.batch_size,
            scan_page: s.scan_page,
            store_concurrency: s.store_concurrency,
            s3_endpoint: s.s3_endpoint().map(str::to_string),
            dynamo_endpoint: s.dynamo_endpoint().map(str::to_string),
            index_url: all.index_url,
            target_index_url: all.target_index_url,
        },
        reindex: parts.reindex,
        r_kind: parts.r_kind,
        store_reads: parts.store_reads,
        serial_subset: parts.serial.docs < all.opts.count,
        serial: parts.serial,
        write_ceiling: parts.write_ceiling,
        migration: main,
        unbudgeted,
        no_edits,
        runs: parts.runs,
        latency_idle: idle,
        latency_during: during,
        targets,
    }
}

impl BenchReport {
    /// True when every measured target is met.
    pub fn all_met(&self) -> bool {
        self.targets
            .iter()
            .all(|t| !t.binding || t.met != Some(false))
    }

    /// The report as a table for people.
    pub fn table(&self) -> String {
        let mut o = String::new();
        let m = |o: &mut String, l: &Machine, when: &str| {
            let _ = writeln!(
                o,
                "machine {when}: {} cores, {} MB, load {:.2} {:.2} {:.2}",
                l.cores, l.memory_mb, l.load[0], l.load[1], l.load[2]
            );
        };
        let s = &self.settings;
        let _ = writeln!(o, "== ferry bench {} ({}) ==", self.run, self.date);
        m(&mut o, &self.machine_before, "before");
        m(&mut o, &self.machine_after, "after ");
        // Across clusters, both: which one the new indices were written to.
        let target = match &s.target_index_url {
            Some(t) => format!("\ntarget cluster: {t} (the new indices of R, W, S and M)"),
            None => String::new(),
        };
        let _ = writeln!(
            o,
            "settings: concurrency {}, batch size {}, scan page {}, store concurrency {}\nstores: S3 {}, DynamoDB {}, index {}{target}\n",
            s.concurrency,
            s.batch_size,
            s.scan_page,
            s.store_concurrency,
            s.s3_endpoint.as_deref().unwrap_or("AWS"),
            s.dynamo_endpoint.as_deref().unwrap_or("AWS"),
            s.index_url
        );
        let _ = writeln!(
            o,
            "{:<44} {:>8} {:>9} {:>9}",
            "measurement", "docs", "seconds", "docs/s"
        );
        let serial = if self.serial_subset {
            "S  one at a time (Thrall), on a subset"
        } else {
            "S  one at a time (Thrall)"
        };
        let mut rows = vec![
            (self.r_kind.row().to_string(), self.reindex),
            (
                "P  store reads as the scanner (read ceiling)".into(),
                self.store_reads,
            ),
            (serial.into(), self.serial),
        ];
        for w in &self.write_ceiling.runs {
            let name = format!("W  migration's I/O, bare, batch {}", w.batch_size);
            rows.push((name, w.throughput));
        }
        for r in [&self.migration, &self.unbudgeted, &self.no_edits] {
            rows.push((format!("M  ferry, {}", r.label), r.throughput));
        }
        for (name, t) in rows {
            let _ = writeln!(
                o,
                "{name:<44} {:>8} {:>9.1} {:>9.0}",
                t.docs, t.seconds, t.docs_per_second
            );
        }
        let _ = writeln!(
            o,
            "\nM runs\n{:<16} {:>7} {:>8} {:>9} {:>9} {:>14} {:>24}",
            "run", "workers", "docs", "seconds", "docs/s", "peak RSS MB", "edits p50/p99/max ms"
        );
        for r in &self.runs {
            let rss: Vec<String> = r.peak_rss_mb.iter().map(|v| format!("{v:.0}")).collect();
            let _ = writeln!(
                o,
                "{:<16} {:>7} {:>8} {:>9.1} {:>9.0} {:>14} {:>24}",
                r.label,
                r.workers,
                r.throughput.docs,
                r.throughput.seconds,
                r.throughput.docs_per_second,
                rss.join("/"),
                format!(
                    "{:.0}/{:.0}/{:.0} (n={})",
                    r.during.p50_ms, r.during.p99_ms, r.during.max_ms, r.during.edits
                )
            );
        }
        let _ = writeln!(
            o,
            "\n{:<34} {:>6} {:>8} {:>6} {:>8} {:>8} {:>8}",
            "edit latency (publish to visible)",
            "edits",
            "visible",
            "late",
            "p50 ms",
            "p99 ms",
            "max ms"
        );
        for (name, l) in [
            ("idle (Current)", &self.latency_idle),
            ("during M (Current and Migration)", &self.latency_during),
        ] {
            let _ = writeln!(
                o,
                "{name:<34} {:>6} {:>8} {:>6} {:>8.1} {:>8.1} {:>8.1}",
                l.edits, l.visible, l.late, l.p50_ms, l.p99_ms, l.max_ms
            );
        }
        let _ = writeln!(
            o,
            "\n{:<34} {:>10} {:>10}  result",
            "target", "value", "bound"
        );
        for t in &self.targets {
            let (value, met) = match (t.value, t.met) {
                (Some(v), Some(true)) => (format!("{v:.2}"), "met"),
                (Some(v), _) if !t.binding => (format!("{v:.2}"), "below the aim"),
                (Some(v), _) => (format!("{v:.2}"), "MISSED"),
                (None, _) => ("-".into(), "not measured"),
            };
            let _ = writeln!(o, "{:<34} {value:>10} {:>10}  {met}", t.name, t.target);
        }
        let cpu = &self.migration.cpu;
        let by: Vec<String> = cpu
            .by_process
            .iter()
            .map(|(k, v)| format!("{k} {v:.2}"))
            .collect();
        let _ = writeln!(
            o,
            "\nCPU during M (cores): machine {:.2} busy of {}; {}; other {:.2}",
            cpu.machine_busy_cores,
            self.machine_before.cores,
            by.join(", "),
            cpu.other_cores
        );
        o
    }
}
