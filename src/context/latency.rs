//! What users feel: the latency of this worker's edits, from publish (or
//! delivery) to visible, over a short sliding window. The migration's pace
//! follows its 99th percentile (see [`super::pace`]). Edits still in
//! flight count too, at their age so far, once they are slower than the
//! finished ones: an edit stuck for longer than the window would
//! otherwise leave the window empty, and an empty window reads as room.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// How far back the window reaches. Short, so that the pace reacts within
/// seconds and old samples stop counting once the migration has yielded.
pub const WINDOW: Duration = Duration::from_secs(10);
/// At most this many samples are kept (the newest).
const MAX_SAMPLES: usize = 4096;

/// Edit latencies seen in the last [`WINDOW`], and the edits in flight.
#[derive(Debug, Default)]
pub struct EditLatency {
    /// When each finished, and its latency.
    samples: Mutex<VecDeque<(Instant, Duration)>>,
    /// When each edit in flight started (was published).
    in_flight: Mutex<BTreeMap<u64, Instant>>,
    next: AtomicU64,
}

/// An edit in flight; dropping it (done or failed) stops counting it.
#[derive(Debug)]
pub struct InFlight<'a> {
    latency: &'a EditLatency,
    key: u64,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Ok(mut f) = self.latency.in_flight.lock() {
            f.remove(&self.key);
        }
    }
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

    /// Counts an edit as in flight from `age` ago (its publish time) until
    /// the returned guard is dropped.
    pub fn start(&self, age: Duration) -> InFlight<'_> {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
        if let Ok(mut f) = self.in_flight.lock() {
            f.insert(key, started);
        }
        InFlight { latency: self, key }
    }

    /// The quantiles of the last [`WINDOW`]; `None` without edits in it.
    pub fn quantiles(&self) -> Option<Quantiles> {
        self.quantiles_since(None)
    }

    /// The quantiles of the edits in the window that started at `since` or
    /// later (all of them with `None`), edits in flight included at their
    /// age once it exceeds the finished ones' p99 (younger ones would only
    /// dilute it).
    pub fn quantiles_since(&self, since: Option<Instant>) -> Option<Quantiles> {
        let now = Instant::now();
        let started_in = |start: Instant| since.is_none_or(|t| start >= t);
        let mut v: Vec<Duration> = {
            let mut s = self.samples.lock().ok()?;
            while s
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > WINDOW)
            {
                s.pop_front();
            }
            s.iter()
                .filter(|(t, l)| t.checked_sub(*l).is_none_or(started_in))
                .map(|(_, l)| *l)
                .collect()
        };
        v.sort_unstable();
        let finished_p99 = quantile(&v, 0.99).unwrap_or_default();
        let stuck: Vec<Duration> = self
            .in_flight
            .lock()
            .ok()?
            .values()
            .filter(|s| started_in(**s))
            .map(|s| now.duration_since(*s))
            .filter(|age| *age > finished_p99)
            .collect();
        if !stuck.is_empty() {
            v.extend(stuck);
            v.sort_unstable();
        }
        Some(Quantiles {
            p50: quantile(&v, 0.5)?,
            p99: quantile(&v, 0.99)?,
            count: v.len(),
        })
    }
}

/// The `q` quantile of sorted `v` (nearest rank).
fn quantile(v: &[Duration], q: f64) -> Option<Duration> {
    let rank = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len().max(1));
    v.get(rank - 1).copied()
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

    #[tokio::test(start_paused = true)]
    async fn an_edit_stuck_in_flight_counts_at_its_age() {
        let ms = Duration::from_millis;
        let l = EditLatency::default();
        let stuck = l.start(ms(500));
        let young = l.start(ms(0));
        tokio::time::advance(WINDOW * 2).await;
        // Nothing finished in the window: the stuck edits still count.
        let q = l.quantiles().expect("in flight: not an empty window");
        assert_eq!((q.p99, q.count), (WINDOW * 2 + ms(500), 2));
        drop(young);
        for _ in 0..50 {
            l.record(ms(20));
        }
        let q = l.quantiles().unwrap();
        assert_eq!(q.p99, WINDOW * 2 + ms(500), "the stuck one is the p99");
        drop(stuck);
        assert_eq!(l.quantiles().unwrap().p99, ms(20));
        // An edit younger than the finished ones' p99 does not dilute it.
        let _fresh = l.start(ms(0));
        assert_eq!(l.quantiles().unwrap().count, 50);
    }

    #[tokio::test(start_paused = true)]
    async fn quantiles_since_count_only_edits_started_then() {
        let ms = Duration::from_millis;
        let l = EditLatency::default();
        tokio::time::advance(ms(5_000)).await;
        l.record(ms(3_000)); // started 3 s ago
        let t = Instant::now() - ms(1_000);
        l.record(ms(500)); // started 0.5 s ago
        let q = l.quantiles_since(Some(t)).unwrap();
        assert_eq!((q.p99, q.count), (ms(500), 1));
        assert_eq!(l.quantiles().unwrap().count, 2);
        assert_eq!(l.quantiles_since(Some(Instant::now() + ms(1))), None);
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
