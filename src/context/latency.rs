//! What users feel: the latency of this worker's edits, from publish (or
//! delivery) to visible, over a short sliding window. The migration's pace
//! follows its 99th percentile (see [`super::pace`]). Edits still in
//! flight count too, at their age so far, once they are slower than the
//! finished ones: an edit stuck for longer than the window would
//! otherwise leave the window empty, and an empty window reads as room.
//! Each edit's time in the worker (from delivery) is kept apart as well:
//! it tells what an edit costs now, without the wait in the queue that
//! earlier, slower edits left behind.

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

/// One finished edit.
#[derive(Debug, Clone, Copy)]
struct Sample {
    finished: Instant,
    latency: Duration,
    delivered: Instant,
}

/// One edit in flight.
#[derive(Debug, Clone, Copy)]
struct Running {
    published: Instant,
    delivered: Instant,
}

/// Edit latencies seen in the last [`WINDOW`], and the edits in flight.
#[derive(Debug, Default)]
pub struct EditLatency {
    samples: Mutex<VecDeque<Sample>>,
    in_flight: Mutex<BTreeMap<u64, Running>>,
    next: AtomicU64,
}

/// An edit in flight: [`InFlight::done`] records it; dropped without
/// (failed and requeued: its latency counts when it is done), it just
/// stops counting.
#[derive(Debug)]
pub struct InFlight<'a> {
    latency: &'a EditLatency,
    key: u64,
    published_ms: Option<(u64, bool)>,
    delivered: Instant,
}

impl InFlight<'_> {
    /// Records the edit as done now.
    pub fn done(self) {
        let latency = edit_latency(
            self.published_ms,
            crate::stores::control::now_ms(),
            self.delivered.elapsed(),
        );
        self.latency.push(latency, self.delivered);
    }
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
    /// Records one edit's latency, as if it was delivered when published.
    pub fn record(&self, latency: Duration) {
        let delivered = Instant::now()
            .checked_sub(latency)
            .unwrap_or_else(Instant::now);
        self.push(latency, delivered);
    }

    fn push(&self, latency: Duration, delivered: Instant) {
        let finished = Instant::now();
        let Ok(mut s) = self.samples.lock() else {
            return;
        };
        s.push_back(Sample {
            finished,
            latency,
            delivered,
        });
        while s.len() > MAX_SAMPLES {
            s.pop_front();
        }
        metrics::histogram!("ferry_edit_latency_seconds").record(latency.as_secs_f64());
    }

    /// Counts an edit as in flight: published at `published_ms` (ms since
    /// the epoch, precise or whole seconds; see [`edit_latency`]) and
    /// delivered at `delivered`.
    pub fn start(&self, published_ms: Option<(u64, bool)>, delivered: Instant) -> InFlight<'_> {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        let age = edit_latency(
            published_ms,
            crate::stores::control::now_ms(),
            delivered.elapsed(),
        );
        let published = Instant::now().checked_sub(age).unwrap_or(delivered);
        if let Ok(mut f) = self.in_flight.lock() {
            f.insert(
                key,
                Running {
                    published,
                    delivered,
                },
            );
        }
        InFlight {
            latency: self,
            key,
            published_ms,
            delivered,
        }
    }

    /// The finished samples of the window, and the edits in flight.
    fn read(&self) -> Option<(Vec<Sample>, Vec<Running>)> {
        let now = Instant::now();
        let samples = {
            let mut s = self.samples.lock().ok()?;
            while s
                .front()
                .is_some_and(|x| now.duration_since(x.finished) > WINDOW)
            {
                s.pop_front();
            }
            s.iter().copied().collect()
        };
        let running = self.in_flight.lock().ok()?.values().copied().collect();
        Some((samples, running))
    }

    /// The quantiles of the last [`WINDOW`], from publish to visible;
    /// `None` without edits in it.
    pub fn quantiles(&self) -> Option<Quantiles> {
        let now = Instant::now();
        let (samples, running) = self.read()?;
        let finished = samples.iter().map(|x| x.latency).collect();
        let ages = running.iter().map(|r| now.duration_since(r.published));
        with_stuck(finished, ages)
    }

    /// The quantiles of the time in the worker (from delivery) of the edits
    /// delivered at `since` or later: the finished ones, and those in flight
    /// for longer than `slow` (younger ones say nothing yet); `None` when
    /// there is none.
    pub fn service_since(&self, since: Instant, slow: Duration) -> Option<Quantiles> {
        let now = Instant::now();
        let (samples, running) = self.read()?;
        let finished = samples
            .iter()
            .filter(|x| x.delivered >= since)
            .map(|x| x.finished.duration_since(x.delivered))
            .collect();
        let ages = running
            .iter()
            .filter(|r| r.delivered >= since)
            .map(|r| now.duration_since(r.delivered))
            .filter(|age| *age > slow);
        with_stuck(finished, ages)
    }
}

/// Quantiles of `finished` with the edits in flight whose `ages` exceed
/// the finished ones' p99 (younger ones would only dilute it).
fn with_stuck(mut v: Vec<Duration>, ages: impl Iterator<Item = Duration>) -> Option<Quantiles> {
    v.sort_unstable();
    let finished_p99 = quantile(&v, 0.99).unwrap_or_default();
    let before = v.len();
    v.extend(ages.filter(|age| *age > finished_p99));
    if v.len() > before {
        v.sort_unstable();
    }
    Some(Quantiles {
        p50: quantile(&v, 0.5)?,
        p99: quantile(&v, 0.99)?,
        count: v.len(),
    })
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
        let stuck = l.start(None, Instant::now() - ms(500));
        let young = l.start(None, Instant::now());
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
        let _fresh = l.start(None, Instant::now());
        assert_eq!(l.quantiles().unwrap().count, 50);
    }

    #[tokio::test(start_paused = true)]
    async fn service_time_counts_from_delivery_for_edits_delivered_since() {
        let ms = Duration::from_millis;
        let l = EditLatency::default();
        let publish_ms = crate::stores::control::now_ms();
        // Published 3 s before its delivery, then 200 ms in the worker.
        tokio::time::advance(ms(3_000)).await;
        let old = l.start(Some((publish_ms, true)), Instant::now());
        tokio::time::advance(ms(200)).await;
        old.done();
        let t = Instant::now();
        let slow = ms(100);
        assert_eq!(l.service_since(t, slow), None, "nothing delivered since");
        let stuck = l.start(None, Instant::now());
        tokio::time::advance(ms(50)).await;
        assert_eq!(l.service_since(t, slow), None, "too young to say");
        tokio::time::advance(ms(1_450)).await;
        let q = l.service_since(t, slow).expect("one slow in flight");
        assert_eq!(q.p99, ms(1_500), "its time in the worker");
        stuck.done();
        assert_eq!(l.service_since(t, slow).unwrap().p99, ms(1_500));
        assert_eq!(l.service_since(t - ms(1_000), slow).unwrap().count, 2);
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
