//! What users feel: the latency of this worker's edits, from publish (or
//! delivery) to visible, over a short sliding window. The migration's pace
//! follows its 99th percentile (see [`super::pace`]).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// How far back the window reaches. Short, so that the pace reacts within
/// seconds and old samples stop counting once the migration has yielded.
pub const WINDOW: Duration = Duration::from_secs(10);
/// At most this many samples are kept (the newest).
const MAX_SAMPLES: usize = 4096;

/// Edit latencies seen in the last [`WINDOW`].
#[derive(Debug, Default)]
pub struct EditLatency {
    samples: Mutex<VecDeque<(Instant, Duration)>>,
}

/// Quantiles of the window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantiles {
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Samples in the window.
    pub count: usize,
}

impl EditLatency {
    /// Records one edit's latency.
    pub fn record(&self, latency: Duration) {
        let now = Instant::now();
        let Ok(mut s) = self.samples.lock() else {
            return;
        };
        s.push_back((now, latency));
        while s.len() > MAX_SAMPLES {
            s.pop_front();
        }
        metrics::histogram!("ferry_edit_latency_seconds").record(latency.as_secs_f64());
    }

    /// The quantiles of the last [`WINDOW`]; `None` without edits in it.
    pub fn quantiles(&self) -> Option<Quantiles> {
        let now = Instant::now();
        let mut s = self.samples.lock().ok()?;
        while s
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > WINDOW)
        {
            s.pop_front();
        }
        if s.is_empty() {
            return None;
        }
        let mut v: Vec<Duration> = s.iter().map(|(_, l)| *l).collect();
        v.sort_unstable();
        let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
        Some(Quantiles {
            p50: at(0.5),
            p99: at(0.99),
            count: v.len(),
        })
    }
}

/// An edit's latency: from its publish time when the message carries one
/// (milliseconds since the epoch, `precise` unless only whole seconds were
/// known), and never less than the time since it was delivered.
pub fn edit_latency(
    published_ms: Option<(u64, bool)>,
    now_ms: u64,
    delivered: Duration,
) -> Duration {
    let since_publish = published_ms.map(|(ms, precise)| {
        let waited = Duration::from_millis(now_ms.saturating_sub(ms));
        // A whole-second stamp may be up to a second early.
        if precise {
            waited
        } else {
            waited.saturating_sub(Duration::from_secs(1))
        }
    });
    since_publish.map_or(delivered, |p| p.max(delivered))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn quantiles_cover_the_window_only() {
        let l = EditLatency::default();
        assert_eq!(l.quantiles(), None);
        for ms in 1..=100 {
            l.record(Duration::from_millis(ms));
        }
        let q = l.quantiles().unwrap();
        assert_eq!(
            (q.p50, q.p99, q.count),
            (Duration::from_millis(50), Duration::from_millis(99), 100)
        );
        tokio::time::advance(WINDOW + Duration::from_millis(1)).await;
        l.record(Duration::from_millis(7));
        let q = l.quantiles().unwrap();
        assert_eq!((q.p99, q.count), (Duration::from_millis(7), 1));
    }

    #[test]
    fn latency_is_measured_from_publish_and_never_below_delivery() {
        let d = Duration::from_millis;
        assert_eq!(edit_latency(Some((1_000, true)), 1_250, d(40)), d(250));
        assert_eq!(edit_latency(Some((1_000, true)), 1_010, d(40)), d(40));
        assert_eq!(edit_latency(Some((1_000, false)), 3_500, d(40)), d(1_500));
        assert_eq!(edit_latency(None, 9_999, d(40)), d(40));
    }
}
