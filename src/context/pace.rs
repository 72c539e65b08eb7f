//! The migration's pace, never the edits'. Two controls:
//!
//! * adaptive: additive increase, multiplicative decrease of the batch size
//!   (and a growing pause between batches) whenever the index answers 429/5xx
//!   or a batch is slow, so that the edit path keeps its latency; both
//!   recover step by step when the index does;
//! * a fixed cap in documents per second for the whole cluster, set at run
//!   time by an operator (`ferry throttle`, `POST /api/throttle`), kept in the
//!   control table and shared evenly among the workers consuming the
//!   migration queue.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// A batch slower than this counts as index pressure.
const SLOW_BATCH: Duration = Duration::from_secs(2);
/// Longest pause between two batches under pressure.
const MAX_PAUSE_MS: u64 = 5_000;

/// The throttle of one worker.
#[derive(Debug)]
pub struct Pace {
    min: usize,
    max: usize,
    size: AtomicUsize,
    pause_ms: AtomicU64,
    cap: AtomicU64,
    workers: AtomicU64,
    bucket: tokio::sync::Mutex<(Instant, f64)>,
}

/// What the throttle is doing now.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PaceState {
    /// Migration messages per batch now.
    pub batch_size: usize,
    /// Pause between batches now, in milliseconds.
    pub pause_ms: u64,
    /// Cluster-wide cap in documents per second (None: no cap).
    pub max_docs_per_second: Option<u64>,
    /// This worker's share of the cap.
    pub worker_docs_per_second: Option<f64>,
}

impl Pace {
    /// A throttle that starts at, and never exceeds, `max` per batch.
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        Self {
            min: 1,
            max,
            size: AtomicUsize::new(max),
            pause_ms: AtomicU64::new(0),
            cap: AtomicU64::new(0),
            workers: AtomicU64::new(1),
            bucket: tokio::sync::Mutex::new((Instant::now(), 0.0)),
        }
    }

    /// Messages to put in the next batch.
    pub fn batch_size(&self) -> usize {
        self.size.load(Ordering::Relaxed)
    }

    /// Sets the cluster-wide cap (0: none) and how many workers share it.
    pub fn set_cap(&self, docs_per_second: u64, workers: u64) {
        self.cap.store(docs_per_second, Ordering::Relaxed);
        self.workers.store(workers.max(1), Ordering::Relaxed);
    }

    fn share(&self) -> Option<f64> {
        match self.cap.load(Ordering::Relaxed) {
            0 => None,
            cap => Some(cap as f64 / self.workers.load(Ordering::Relaxed) as f64),
        }
    }

    /// Waits until a batch of `n` documents may start: the adaptive pause,
    /// then the cap's token bucket.
    pub async fn admit(&self, n: usize) {
        let pause = self.pause_ms.load(Ordering::Relaxed);
        if pause > 0 {
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        let Some(rate) = self.share() else { return };
        let mut bucket = self.bucket.lock().await;
        let (last, tokens) = *bucket;
        // At most one second of burst.
        let mut tokens = (tokens + last.elapsed().as_secs_f64() * rate).min(rate.max(n as f64));
        let need = n as f64;
        if tokens < need {
            let wait = Duration::from_secs_f64((need - tokens) / rate);
            tokio::time::sleep(wait).await;
            tokens = need;
        }
        *bucket = (Instant::now(), tokens - need);
    }

    /// Learns from a finished batch: `pressured` when the index answered
    /// 429/5xx during it.
    pub fn record(&self, elapsed: Duration, pressured: bool) {
        let size = self.size.load(Ordering::Relaxed);
        let pause = self.pause_ms.load(Ordering::Relaxed);
        if pressured || elapsed > SLOW_BATCH {
            self.size.store((size / 2).max(self.min), Ordering::Relaxed);
            self.pause_ms
                .store((pause * 2).clamp(100, MAX_PAUSE_MS), Ordering::Relaxed);
            metrics::counter!("ferry_throttle_backoffs_total").increment(1);
        } else {
            self.size.store(
                (size + (self.max / 10).max(1)).min(self.max),
                Ordering::Relaxed,
            );
            self.pause_ms
                .store(if pause < 20 { 0 } else { pause / 2 }, Ordering::Relaxed);
        }
        metrics::gauge!("ferry_migration_batch_size").set(self.batch_size() as f64);
    }

    /// The current state, for the admin API and `status`.
    pub fn state(&self) -> PaceState {
        PaceState {
            batch_size: self.batch_size(),
            pause_ms: self.pause_ms.load(Ordering::Relaxed),
            max_docs_per_second: Some(self.cap.load(Ordering::Relaxed)).filter(|c| *c > 0),
            worker_docs_per_second: self.share(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pressure_halves_and_recovery_grows_back() {
        let t = Pace::new(100);
        t.record(Duration::from_millis(10), true);
        t.record(Duration::from_millis(10), true);
        assert_eq!(t.batch_size(), 25);
        assert!(t.state().pause_ms >= 200);
        t.record(Duration::from_secs(3), false);
        assert_eq!(t.batch_size(), 12, "a slow batch is pressure too");
        for _ in 0..20 {
            t.record(Duration::from_millis(10), false);
        }
        assert_eq!(t.batch_size(), 100);
        assert_eq!(t.state().pause_ms, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_cap_is_shared_among_workers() {
        let t = Pace::new(100);
        t.set_cap(200, 2);
        assert_eq!(t.state().worker_docs_per_second, Some(100.0));
        let start = Instant::now();
        t.admit(100).await;
        t.admit(50).await;
        // 150 documents at 100/s with an empty bucket take about 1.5 s.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(1400), "{took:?}");
        t.set_cap(0, 2);
        assert_eq!(t.state().max_docs_per_second, None);
    }
}
