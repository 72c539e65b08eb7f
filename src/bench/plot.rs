//! `ferry bench --plot FILE.svg`: edit latency (p99 over the last 10 s,
//! the window workers steer by; log scale, with the budget as a line) above
//! the migration's rate (mean over the same window), over time, for the
//! main M runs (budget on, budget off, no edits), so that the trade-off the
//! budget makes is seen at a glance.
//!
//! SVG only: it needs no fonts on the machine (the text is left to the
//! viewer), where a PNG would need a font file to render its labels.

use super::migration::MigrationRun;
use super::report::BenchReport;
use crate::context::latency::WINDOW;
use crate::ops::OpsError;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// Parses `--plot`: a file name ending in `.svg`, in a directory that
/// exists (refused at once, not after hours of bench).
pub fn svg_path(raw: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(raw);
    if path.extension().and_then(|e| e.to_str()) != Some("svg") {
        return Err("the plot is drawn as SVG: give a file name ending in .svg".into());
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(format!("no directory {}", dir.display()));
    }
    Ok(path)
}

/// The colour each main run is drawn in.
fn colour(k: usize) -> RGBColor {
    [RED, BLUE, RGBColor(0, 140, 0)][k % 3]
}

/// Draws the report's main runs into `path`.
pub fn draw(report: &BenchReport, path: &Path) -> Result<(), OpsError> {
    let runs = [&report.unbudgeted, &report.migration, &report.no_edits];
    chart(&runs, report.migration.budget_ms, path)
        .map_err(|e| OpsError::Invalid(format!("cannot draw {}: {e}", path.display())))
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// The latency axis starts here (ms): faster edits are drawn on it.
const FLOOR_MS: f64 = 10.0;

/// Axis labels without decimals.
fn whole(v: &f64) -> String {
    format!("{v:.0}")
}

fn chart(runs: &[&MigrationRun], budget_ms: Option<u64>, path: &Path) -> DrawResult {
    let end = runs
        .iter()
        .map(|r| r.throughput.seconds)
        .fold(1.0, f64::max);
    let p99: Vec<Vec<(f64, f64)>> = runs
        .iter()
        .map(|r| {
            let points = r.timeline.edit_p99(WINDOW).into_iter();
            points.map(|[t, ms]| (t, ms.max(FLOOR_MS))).collect()
        })
        .collect();
    let top_ms = p99
        .iter()
        .flatten()
        .map(|p| p.1)
        .chain(budget_ms.map(|b| b as f64))
        .fold(10.0, f64::max)
        * 2.0;
    let top_rate = runs
        .iter()
        .flat_map(|r| r.timeline.rate_mean(WINDOW).into_iter().map(|p| p[1]))
        .fold(1.0, f64::max)
        * 1.1;

    let root = SVGBackend::new(path, (1000, 760)).into_drawing_area();
    root.fill(&WHITE)?;
    let (upper, lower) = root.split_vertically(380);

    let mut latency = ChartBuilder::on(&upper)
        .caption(
            "edit latency, publish to visible: p99 over the last 10 s",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..end, (FLOOR_MS..top_ms).log_scale())?;
    latency
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc("ms")
        .x_label_formatter(&whole)
        .y_label_formatter(&whole)
        .draw()?;
    for (k, (run, points)) in runs.iter().zip(&p99).enumerate() {
        if points.is_empty() {
            continue; // the run without edits
        }
        let c = colour(k);
        latency
            .draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2)))?
            .label(run.label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c));
    }
    if let Some(b) = budget_ms {
        let line = [(0.0, b as f64), (end, b as f64)];
        latency
            .draw_series(LineSeries::new(line, BLACK.mix(0.5)))?
            .label(format!("budget {b} ms"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.5)));
    }
    latency
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;

    let mut rate = ChartBuilder::on(&lower)
        .caption(
            "migration rate, documents into the new index: mean over the last 10 s",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..end, 0f64..top_rate)?;
    rate.configure_mesh()
        .x_desc("seconds since start")
        .y_desc("docs/s")
        .x_label_formatter(&whole)
        .y_label_formatter(&whole)
        .draw()?;
    for (k, run) in runs.iter().enumerate() {
        let c = colour(k);
        let points = run.timeline.rate_mean(WINDOW).into_iter();
        let points = points.map(|p| (p[0], p[1]));
        rate.draw_series(LineSeries::new(points, c.stroke_width(2)))?
            .label(format!(
                "{} ({:.0} docs/s overall)",
                run.label, run.throughput.docs_per_second
            ))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c));
    }
    rate.configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::throughput::Throughput;
    use crate::bench::timeline::Timeline;

    fn run(label: &str, rate: f64, ms: f64) -> MigrationRun {
        MigrationRun {
            label: label.into(),
            throughput: Throughput::new(100, 10.0),
            timeline: Timeline {
                rate: (1..10).map(|t| [t as f64, rate]).collect(),
                edits: (0..50).map(|k| [k as f64 / 5.0, ms]).collect(),
            },
            ..MigrationRun::default()
        }
    }

    #[test]
    fn the_plot_has_both_charts_every_run_and_the_budget() {
        let dir = std::env::temp_dir().join(format!("ferry-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bench.svg");
        let runs = [
            &run("budget off", 90.0, 4000.0),
            &run("budget 500ms", 60.0, 300.0),
            &MigrationRun {
                timeline: Timeline {
                    edits: vec![],
                    ..run("no edits", 120.0, 0.0).timeline
                },
                ..run("no edits", 120.0, 0.0)
            },
        ];
        chart(&runs, Some(500), &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        for text in [
            "edit latency",
            "migration rate",
            "budget off",
            "budget 500ms",
            "no edits (10 docs/s overall)",
            "budget 500 ms",
        ] {
            assert!(svg.contains(text), "{text} missing from the plot");
        }
        // Three rate lines, two latency lines, the budget, the legends.
        assert!(svg.matches("<polyline").count() >= 6, "{svg}");
    }

    #[test]
    fn only_svg_files_in_existing_directories() {
        assert_eq!(svg_path("out.svg"), Ok(PathBuf::from("out.svg")));
        assert!(svg_path("out.png").unwrap_err().contains(".svg"));
        assert!(svg_path("/no/such/dir/out.svg").is_err());
    }
}
