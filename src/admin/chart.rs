//! The page's picture of the last hour: the migration's rate (the whole
//! deployment's, from the progress samples every replica shares) and this
//! worker's edit latency p99, sampled every [`EVERY`] and drawn as a
//! server-rendered SVG, so that an operator sees at a glance whether the
//! migration yields when edits slow down.

use crate::context::Ctx;
use crate::ops::status;
use plotters::prelude::*;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often a point is taken.
pub const EVERY: Duration = Duration::from_secs(30);

/// How far back the picture goes.
const SPAN_MS: u64 = 3_600_000;

/// One sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// When, milliseconds since the epoch.
    pub at_ms: u64,
    /// Documents migrated or failed per second (no migration: `None`).
    pub rate: Option<f64>,
    /// This worker's edit p99 in milliseconds (no edits lately: `None`).
    pub edit_p99_ms: Option<u64>,
}

/// The samples of the last hour.
#[derive(Debug, Default)]
pub struct Recent {
    points: Mutex<VecDeque<Point>>,
}

impl Recent {
    /// Adds a point and forgets those older than an hour before it.
    pub fn record(&self, p: Point) {
        let Ok(mut points) = self.points.lock() else {
            return;
        };
        points.push_back(p);
        while points
            .front()
            .is_some_and(|old| p.at_ms.saturating_sub(old.at_ms) > SPAN_MS)
        {
            points.pop_front();
        }
    }

    /// The points, oldest first.
    pub fn points(&self) -> Vec<Point> {
        self.points
            .lock()
            .map(|p| p.iter().copied().collect())
            .unwrap_or_default()
    }
}

/// Takes a point every [`EVERY`] until shutdown.
pub async fn sample(
    ctx: std::sync::Arc<Ctx>,
    recent: std::sync::Arc<Recent>,
    shutdown: CancellationToken,
) {
    loop {
        let rate = match ctx
            .alias_state()
            .await
            .ok()
            .and_then(|st| st.migration_index())
        {
            Some(m) => ctx
                .control
                .samples(m.as_str())
                .await
                .ok()
                .flatten()
                .and_then(|s| status::rate(&s)),
            None => None,
        };
        recent.record(Point {
            at_ms: crate::stores::control::now_ms(),
            rate,
            edit_p99_ms: ctx.pace.state().edit_p99_ms,
        });
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}

/// The picture as SVG: edit p99 above, the rate below, minutes on the x
/// axis (0 is now); `None` until some point has a value.
pub fn svg(points: &[Point]) -> Option<String> {
    let now = points.last()?.at_ms;
    let minutes = |p: &Point| -((now.saturating_sub(p.at_ms)) as f64 / 60_000.0);
    let p99: Vec<(f64, f64)> = points
        .iter()
        .filter_map(|p| Some((minutes(p), p.edit_p99_ms? as f64)))
        .collect();
    let rate: Vec<(f64, f64)> = points
        .iter()
        .filter_map(|p| Some((minutes(p), p.rate?)))
        .collect();
    if p99.is_empty() && rate.is_empty() {
        return None;
    }
    let mut out = String::new();
    draw(&mut out, &p99, &rate).ok()?;
    Some(out)
}

fn draw(
    out: &mut String,
    p99: &[(f64, f64)],
    rate: &[(f64, f64)],
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::with_string(out, (640, 320)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(160);
    for (area, points, label, colour) in [
        (&top, p99, "edit p99 (ms)", RED),
        (&bottom, rate, "migration (docs/s)", BLUE),
    ] {
        let high = points.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
        let mut chart = ChartBuilder::on(area)
            .margin(6)
            .caption(label, ("sans-serif", 13))
            .x_label_area_size(18)
            .y_label_area_size(44)
            .build_cartesian_2d(-60.0..0.0, 0.0..high)?;
        chart
            .configure_mesh()
            .x_labels(7)
            .y_labels(4)
            .x_label_formatter(&|m| format!("{m:.0} min"))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .draw()?;
        chart.draw_series(LineSeries::new(points.iter().copied(), colour))?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_hour_is_kept_and_drawn() {
        let recent = Recent::default();
        for i in 0..200u64 {
            recent.record(Point {
                at_ms: i * 30_000,
                rate: Some(i as f64),
                edit_p99_ms: (i % 2 == 0).then_some(100 + i),
            });
        }
        let points = recent.points();
        assert_eq!(points.len(), 121, "an hour of 30 s samples, both ends");
        let svg = svg(&points).expect("a picture");
        assert!(svg.starts_with("<svg") && svg.contains("polyline"), "{svg}");
        assert!(svg.contains("edit p99 (ms)") && svg.contains("migration (docs/s)"));
    }

    #[test]
    fn nothing_to_draw_without_a_value() {
        assert_eq!(svg(&[]), None);
        let empty = Point {
            at_ms: 1,
            rate: None,
            edit_p99_ms: None,
        };
        assert_eq!(svg(&[empty]), None);
    }
}
