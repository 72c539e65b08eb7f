//! The migration's pace, never the edits'. Three controls:
//!
//! * the **edit latency budget**: every worker measures its own edits'
//!   latency ([`super::latency`]); when their p99 nears the budget the
//!   migration backs off fast (its rate limit and batch size halve), when
//!   there is room it grows slowly, and when p99 is far over the budget it
//!   pauses until edits are fast again. Edits are what users feel, so this
//!   watches them rather than the index server. When edits stay over the
//!   budget for a whole window with the migration at its floor, and those
//!   delivered meanwhile are slow in the worker too (not only queued
//!   behind earlier ones), the migration is not what slows them (a slow
//!   cluster, a busy store): their
//!   p99 there becomes a baseline, and for the next five minutes the
//!   migration yields only to latency a quarter over it, instead of
//!   crawling at its floor for nothing;
//! * adaptive: batches sized by the time they take (`FERRY_BATCH_TIME`, as
//!   pt-online-schema-change's `--chunk-time`), several in flight while
//!   they are quick ([`super::batches`]), halved with a growing pause
//!   whenever the index answers 429/5xx; all recover step by step;
//! * a fixed cap in documents per second for the whole cluster, set at run
//!   time by an operator (`ferry throttle`, `POST /api/throttle`), kept in the
//!   control table and shared evenly among the workers consuming the
//!   migration queue.

use super::batches::Batches;
use super::latency::{EditLatency, Quantiles};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Longest pause between two batches under pressure.
const MAX_PAUSE_MS: u64 = 5_000;
/// The budget's rate limit never goes below this (documents per second),
/// so a migration under a tight budget still moves. A floor that is a share
/// of the migration's earlier rate was tried and dropped: a fast migration
/// at an eighth of its rate still loads the index, so edits measured there
/// cannot show that something else slows them.
const MIN_RATE: f64 = 1.0;
/// Edit p99 above this share of the budget: back off.
const NEAR: f64 = 0.8;
/// Edit p99 below this share of the budget: room to grow.
const ROOM: f64 = 0.5;
/// Edit p99 above this multiple of the budget: pause the migration.
const FAR: f64 = 2.0;
/// How often a paused migration looks at edit latency again.
const RECHECK: Duration = Duration::from_millis(200);
/// How long at the floor, edits still over the budget, proves that the
/// migration is not what slows them: a whole window of edits measured
/// while it barely ran.
const FLOOR_PROOF: Duration = super::latency::WINDOW;
/// How long such a baseline holds before the budget is tried as set.
const BASELINE_TTL: Duration = Duration::from_secs(300);
/// The share the migration may add to the baseline.
const OVER_BASELINE: f64 = 1.25;

/// The pace of one worker's migration batches.
#[derive(Debug)]
pub struct Pace {
    min: usize,
    max: usize,
    batch_time: Duration,
    size: AtomicUsize,
    pause_ms: AtomicU64,
    cap: AtomicU64,
    workers: AtomicU64,
    bucket: tokio::sync::Mutex<(Instant, f64)>,
    /// The budget in force, in milliseconds (0: off).
    budget_ms: AtomicU64,
    /// The budget's rate limit for this worker, in thousandths of a
    /// document per second (0: none).
    rate_milli: AtomicU64,
    /// This worker's migration throughput, in thousandths of a document
    /// per second (smoothed).
    observed_milli: AtomicU64,
    last_batch: Mutex<Option<Instant>>,
    /// Since when the budget's rate has been at its floor, edits still
    /// over the budget.
    floor_since: Mutex<Option<Instant>>,
    /// Edit p99 with the migration at its floor, and when it was taken.
    baseline: Mutex<Option<(Duration, Instant)>>,
    yielding: Mutex<Option<String>>,
    /// Migration batches in flight.
    batches: Batches,
    /// This worker's edit latencies.
    pub edits: EditLatency,
}

/// What the pace is doing now.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PaceState {
    /// Migration messages per batch now.
    pub batch_size: usize,
    /// Migration batches that may run at once now.
    pub batches_in_flight: usize,
    /// Pause between batches now, in milliseconds.
    pub pause_ms: u64,
    /// Cluster-wide cap in documents per second (None: no cap).
    pub max_docs_per_second: Option<u64>,
    /// This worker's share of the cap.
    pub worker_docs_per_second: Option<f64>,
    /// The edit latency budget in milliseconds (None: off).
    pub edit_latency_budget_ms: Option<u64>,
    /// This worker's edit latency, median, over the last seconds.
    pub edit_p50_ms: Option<u64>,
    /// This worker's edit latency, 99th percentile, over the last seconds.
    pub edit_p99_ms: Option<u64>,
    /// The budget's limit on this worker's migration (None: none).
    pub budget_docs_per_second: Option<f64>,
    /// When the migration yields to edits: why, in an operator's words.
    pub yielding: Option<String>,
    /// Edit p99 measured with the migration at its floor, while it raises
    /// the budget (the migration was not what slowed edits).
    pub edit_baseline_ms: Option<u64>,
}

impl Pace {
    /// A pace that starts at, and never exceeds, `max` per batch, aims at
    /// batches of `batch_time`, and keeps edits within `budget` (None: off).
    pub fn new(max: usize, batch_time: Duration, budget: Option<Duration>) -> Self {
        let max = max.max(1);
        let pace = Self {
            min: 1,
            max,
            batch_time: batch_time.max(Duration::from_millis(1)),
            size: AtomicUsize::new(max),
            pause_ms: AtomicU64::new(0),
            cap: AtomicU64::new(0),
            workers: AtomicU64::new(1),
            bucket: tokio::sync::Mutex::new((Instant::now(), 0.0)),
            budget_ms: AtomicU64::new(0),
            rate_milli: AtomicU64::new(0),
            observed_milli: AtomicU64::new(0),
            last_batch: Mutex::new(None),
            floor_since: Mutex::new(None),
            baseline: Mutex::new(None),
            yielding: Mutex::new(None),
            batches: Batches::new(1),
            edits: EditLatency::default(),
        };
        pace.set_budget(budget);
        pace
    }

    /// The same pace, with up to `most` batches in flight.
    pub fn with_batches(mut self, most: usize) -> Self {
        self.batches = Batches::new(most);
        self
    }

    /// Batches that may run at once now.
    pub fn batches_in_flight(&self) -> usize {
        self.batches.allowed()
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

    /// Sets the edit latency budget (None: off).
    pub fn set_budget(&self, budget: Option<Duration>) {
        let ms = budget.map_or(0, |b| (b.as_millis() as u64).max(1));
        if self.budget_ms.swap(ms, Ordering::Relaxed) != ms && ms == 0 {
            self.rate_milli.store(0, Ordering::Relaxed);
            self.say(None);
        }
        metrics::gauge!("ferry_edit_latency_budget_seconds").set(ms as f64 / 1000.0);
    }

    fn budget(&self) -> Option<Duration> {
        match self.budget_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// Edit p99 measured with the migration at its floor, while it holds.
    fn baseline(&self) -> Option<Duration> {
        let mut b = self.baseline.lock().ok()?;
        if b.is_some_and(|(_, at)| at.elapsed() >= BASELINE_TTL) {
            *b = None;
        }
        b.map(|(p99, _)| p99)
    }

    /// The budget the migration yields to: as set, or a quarter over the
    /// baseline when edits are slower than that without the migration.
    fn effective_budget(&self) -> Option<Duration> {
        let budget = self.budget()?;
        Some(match self.baseline() {
            Some(b) => budget.max(b.mul_f64(OVER_BASELINE)),
            None => budget,
        })
    }

    /// At the floor and still over: once that has lasted [`FLOOR_PROOF`]
    /// and the edits delivered since then are slow in the worker too (not
    /// only waiting in the queue behind edits the migration slowed), the
    /// migration is not what slows them; `p99` becomes the baseline.
    fn floor_proves_innocence(
        &self,
        at_floor: bool,
        budget: Duration,
        p99: Duration,
    ) -> Option<Duration> {
        let mut since = self.floor_since.lock().ok()?;
        if !at_floor {
            *since = None;
            return None;
        }
        let started = *since.get_or_insert_with(Instant::now);
        if started.elapsed() < FLOOR_PROOF {
            return None;
        }
        // None yet: no edit delivered at the floor has finished or been
        // slow for long enough to say; go on waiting.
        let near = budget.mul_f64(NEAR);
        let service = self.edits.service_since(started, near)?;
        *since = None;
        if service.p99 <= near {
            return None;
        }
        if let Ok(mut b) = self.baseline.lock() {
            *b = Some((p99, Instant::now()));
        }
        Some(p99)
    }

    fn budget_rate(&self) -> Option<f64> {
        match self.rate_milli.load(Ordering::Relaxed) {
            0 => None,
            r => Some(r as f64 / 1000.0),
        }
    }

    fn share(&self) -> Option<f64> {
        match self.cap.load(Ordering::Relaxed) {
            0 => None,
            cap => Some(cap as f64 / self.workers.load(Ordering::Relaxed) as f64),
        }
    }

    /// This worker's limit: the lower of its share of the cap and the
    /// budget's rate limit.
    fn limit(&self) -> Option<f64> {
        match (self.share(), self.budget_rate()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn say(&self, why: Option<String>) {
        if let Ok(mut y) = self.yielding.lock() {
            if why.is_some() && *y != why {
                tracing::info!(
                    why = why.as_deref().unwrap_or_default(),
                    "the migration yields to edits"
                );
            }
            *y = why;
        }
    }

    /// Edit p99 over the budget by more than [`FAR`]: the migration waits.
    fn far_over(&self) -> Option<(Quantiles, Duration)> {
        let budget = self.effective_budget()?;
        let q = self.edits.quantiles()?;
        (q.p99.as_secs_f64() > budget.as_secs_f64() * FAR).then_some((q, budget))
    }

    /// Waits until a batch of `n` documents may start: while edits are far
    /// over the budget (up to one latency window), then the adaptive pause, then the token bucket of
    /// the cap and the budget's rate limit.
    pub async fn admit(&self, n: usize) {
        // At most one window: slow edits that the pause does not cure are
        // not the migration's doing, and it moves on at its lowest rate.
        let until = Instant::now() + super::latency::WINDOW;
        while let Some((q, budget)) = self.far_over().filter(|_| Instant::now() < until) {
            self.say(Some(format!(
                "edit p99 {} ms is far over the {} ms budget: migration paused",
                q.p99.as_millis(),
                budget.as_millis()
            )));
            tokio::time::sleep(RECHECK).await;
        }
        let pause = self.pause_ms.load(Ordering::Relaxed);
        if pause > 0 {
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        let Some(rate) = self.limit() else { return };
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

    /// Learns from a finished batch of `n` documents that took `elapsed`:
    /// `pressured` when the index answered 429/5xx during it.
    pub fn record(&self, n: usize, elapsed: Duration, pressured: bool) {
        self.observe(n);
        let size = self.size.load(Ordering::Relaxed);
        let pause = self.pause_ms.load(Ordering::Relaxed);
        if pressured {
            self.size.store((size / 2).max(self.min), Ordering::Relaxed);
            self.pause_ms
                .store((pause * 2).clamp(100, MAX_PAUSE_MS), Ordering::Relaxed);
            self.batches.pressured();
            metrics::counter!("ferry_throttle_backoffs_total").increment(1);
        } else {
            if elapsed > self.batch_time {
                // Sized by time: no single batch holds the index for long.
                // Fewer in flight first, then smaller.
                if !self.batches.overran() {
                    let scaled =
                        size as f64 * self.batch_time.as_secs_f64() / elapsed.as_secs_f64();
                    self.size
                        .store((scaled as usize).max(self.min), Ordering::Relaxed);
                }
            } else if size >= self.max {
                self.batches.quick();
            } else {
                let next = (size + (self.max / 10).max(1)).min(self.max);
                self.size.store(next, Ordering::Relaxed);
            }
            self.pause_ms
                .store(if pause < 20 { 0 } else { pause / 2 }, Ordering::Relaxed);
        }
        self.steer();
        // Under the budget's limit, a batch holds what the limit lets
        // through in one batch time: batches stay frequent, so the limit
        // is steered (and recovers) at every one of them.
        if let Some(rate) = self.budget_rate() {
            self.batches.single();
            let fits = ((rate * self.batch_time.as_secs_f64()).ceil() as usize).max(self.min);
            let size = self.size.load(Ordering::Relaxed);
            self.size.store(size.min(fits), Ordering::Relaxed);
        }
    }

    /// Notes the throughput since the previous batch ended.
    fn observe(&self, n: usize) {
        let now = Instant::now();
        let Ok(mut last) = self.last_batch.lock() else {
            return;
        };
        if let Some(prev) = last.replace(now) {
            let secs = now.duration_since(prev).as_secs_f64().max(1e-3);
            let rate = (n as f64 / secs * 1000.0) as u64;
            let old = self.observed_milli.load(Ordering::Relaxed);
            let smooth = if old == 0 {
                rate
            } else {
                (old * 7 + rate * 3) / 10
            };
            self.observed_milli.store(smooth, Ordering::Relaxed);
        }
    }

    /// Follows the edit latency budget: back off fast near it, grow slowly
    /// with room, lift the limit once it no longer binds.
    pub fn steer(&self) {
        let (budget, q) = match (self.effective_budget(), self.edits.quantiles()) {
            (Some(b), Some(q)) => (b, q),
            (Some(_), None) => {
                // No edits lately: nothing to yield to.
                self.grow(None);
                self.publish_metrics();
                return;
            }
            (None, _) => {
                self.publish_metrics();
                return;
            }
        };
        let share = q.p99.as_secs_f64() / budget.as_secs_f64();
        let at_floor = share > NEAR && self.budget_rate() == Some(MIN_RATE);
        if let Some(p99) = self.floor_proves_innocence(at_floor, budget, q.p99) {
            self.rate_milli.store(0, Ordering::Relaxed);
            self.say(Some(format!(
                "edit p99 {} ms stayed over the {} ms budget with the migration at {MIN_RATE:.0} doc/s for {} s: the migration is not what slows edits; it goes on, yielding to edit p99 over {} ms for {} min",
                p99.as_millis(),
                budget.as_millis(),
                FLOOR_PROOF.as_secs(),
                p99.mul_f64(OVER_BASELINE).max(budget).as_millis(),
                BASELINE_TTL.as_secs() / 60
            )));
        } else if share > NEAR {
            let base = self
                .budget_rate()
                .unwrap_or(self.observed_milli.load(Ordering::Relaxed) as f64 / 1000.0);
            let rate = (base / 2.0).max(MIN_RATE);
            self.rate_milli
                .store((rate * 1000.0) as u64, Ordering::Relaxed);
            let size = self.size.load(Ordering::Relaxed);
            self.size.store((size / 2).max(self.min), Ordering::Relaxed);
            self.batches.single();
            metrics::counter!("ferry_budget_backoffs_total").increment(1);
            self.say(Some(format!(
                "edit p99 {} ms is {} the {} ms budget: migration at {rate:.0} docs/s",
                q.p99.as_millis(),
                if share > 1.0 { "over" } else { "near" },
                budget.as_millis()
            )));
        } else if share < ROOM {
            self.grow(Some(q));
        }
        self.publish_metrics();
    }

    /// Raises the budget's rate limit by a tenth, and lifts it once it is
    /// twice what the migration achieves anyway.
    fn grow(&self, q: Option<Quantiles>) {
        let Some(rate) = self.budget_rate() else {
            self.say(None);
            return;
        };
        let observed = self.observed_milli.load(Ordering::Relaxed) as f64 / 1000.0;
        let next = rate + (rate * 0.1).max(1.0);
        match q {
            Some(q) if next <= observed * 2.0 => {
                self.rate_milli
                    .store((next * 1000.0) as u64, Ordering::Relaxed);
                let budget = self.budget().unwrap_or_default();
                self.say(Some(format!(
                    "edit p99 {} ms is well under the {} ms budget again: migration back up to {next:.0} docs/s",
                    q.p99.as_millis(),
                    budget.as_millis()
                )));
            }
            _ => {
                self.rate_milli.store(0, Ordering::Relaxed);
                self.say(None);
            }
        }
    }

    fn publish_metrics(&self) {
        let q = self.edits.quantiles();
        let secs = |f: fn(&Quantiles) -> Duration| q.as_ref().map_or(0.0, |q| f(q).as_secs_f64());
        metrics::gauge!("ferry_edit_latency_p50_seconds").set(secs(|q| q.p50));
        metrics::gauge!("ferry_edit_latency_p99_seconds").set(secs(|q| q.p99));
        metrics::gauge!("ferry_migration_rate_limit").set(self.limit().unwrap_or(0.0));
        metrics::gauge!("ferry_migration_batch_size").set(self.batch_size() as f64);
        metrics::gauge!("ferry_migration_batches_in_flight").set(self.batches_in_flight() as f64);
    }

    /// When the migration yields to edits: why, in an operator's words.
    pub fn yielding(&self) -> Option<String> {
        self.yielding.lock().ok().and_then(|y| y.clone())
    }

    /// The current state, for the admin API, the page and `status`.
    pub fn state(&self) -> PaceState {
        let q = self.edits.quantiles();
        PaceState {
            batch_size: self.batch_size(),
            batches_in_flight: self.batches_in_flight(),
            pause_ms: self.pause_ms.load(Ordering::Relaxed),
            max_docs_per_second: Some(self.cap.load(Ordering::Relaxed)).filter(|c| *c > 0),
            worker_docs_per_second: self.share(),
            edit_latency_budget_ms: self.budget().map(|b| b.as_millis() as u64),
            edit_p50_ms: q.map(|q| q.p50.as_millis() as u64),
            edit_p99_ms: q.map(|q| q.p99.as_millis() as u64),
            budget_docs_per_second: self.budget_rate(),
            yielding: self.yielding(),
            edit_baseline_ms: self.baseline().map(|b| b.as_millis() as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn pressure_halves_and_recovery_grows_back() {
        let t = Pace::new(100, MS(500), None);
        t.record(10, MS(10), true);
        t.record(10, MS(10), true);
        assert_eq!(t.batch_size(), 25);
        assert!(t.state().pause_ms >= 200);
        for _ in 0..20 {
            t.record(10, MS(10), false);
        }
        assert_eq!(t.batch_size(), 100);
        assert_eq!(t.state().pause_ms, 0);
    }

    #[test]
    fn batches_are_sized_by_the_time_they_take() {
        let t = Pace::new(100, MS(500), None);
        t.record(100, MS(2_000), false);
        assert_eq!(
            t.batch_size(),
            25,
            "four times too slow: a quarter the size"
        );
        t.record(25, MS(400), false);
        assert_eq!(t.batch_size(), 35, "in time: grows by a tenth of the most");
    }

    #[test]
    fn quick_full_batches_run_several_at_once_until_edits_need_room() {
        let t = Pace::new(100, MS(500), Some(MS(300))).with_batches(4);
        t.record(100, MS(2_000), false);
        assert_eq!(t.batch_size(), 25);
        t.record(25, MS(100), false);
        assert_eq!(t.batches_in_flight(), 1, "not full size yet: grows in size");
        for _ in 0..20 {
            t.record(100, MS(100), false);
        }
        assert_eq!(t.batches_in_flight(), 4);
        t.record(100, MS(900), false);
        assert_eq!(t.batches_in_flight(), 3);
        assert_eq!(t.batch_size(), 100, "fewer in flight first, not smaller");
        t.edits.record(MS(290));
        t.steer();
        assert_eq!(t.batches_in_flight(), 1, "edits near the budget: one");
        t.record(100, MS(100), false);
        assert_eq!(t.batches_in_flight(), 1, "held at one under the limit");
        assert_eq!(t.state().batches_in_flight, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_cap_is_shared_among_workers() {
        let t = Pace::new(100, MS(500), None);
        t.set_cap(200, 2);
        assert_eq!(t.state().worker_docs_per_second, Some(100.0));
        let start = Instant::now();
        t.admit(100).await;
        t.admit(50).await;
        // 150 documents at 100/s with an empty bucket take about 1.5 s.
        let took = start.elapsed();
        assert!(took >= MS(1400), "{took:?}");
        t.set_cap(0, 2);
        assert_eq!(t.state().max_docs_per_second, None);
    }

    /// Batches of 100 every 100 ms (1,000 docs/s) while edits take `edit`.
    async fn run(t: &Pace, edit: Duration, batches: usize) {
        for _ in 0..batches {
            t.edits.record(edit);
            tokio::time::advance(MS(100)).await;
            t.record(100, MS(50), false);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn slow_edits_make_the_migration_back_off_fast_and_grow_back_slowly() {
        let t = Pace::new(100, MS(500), Some(MS(300)));
        run(&t, MS(20), 5).await;
        assert_eq!(t.state().budget_docs_per_second, None, "room: no limit");
        assert_eq!(t.state().yielding, None);

        run(&t, MS(290), 1).await;
        let first = t
            .state()
            .budget_docs_per_second
            .expect("near the budget: limited");
        assert!(first <= 600.0, "halved from about 1,000/s: {first}");
        run(&t, MS(290), 3).await;
        let low = t.state().budget_docs_per_second.unwrap();
        assert!(low < first / 4.0, "keeps halving: {first} -> {low}");
        let why = t.state().yielding.expect("says why");
        assert!(
            why.contains("edit p99 290 ms is near the 300 ms budget"),
            "{why}"
        );
        assert!(t.batch_size() < 100);

        // The slow samples leave the window; fast edits give room again.
        tokio::time::advance(crate::context::latency::WINDOW).await;
        run(&t, MS(20), 1).await;
        let up = t.state().budget_docs_per_second.unwrap();
        assert!(
            up > low && up < low * 1.2 + 1.0,
            "grows by a tenth: {low} -> {up}"
        );
        run(&t, MS(20), 100).await;
        assert_eq!(
            t.state().budget_docs_per_second,
            None,
            "lifted once it no longer binds"
        );
        assert_eq!(t.state().yielding, None);
    }

    #[tokio::test(start_paused = true)]
    async fn far_over_the_budget_the_migration_waits_for_edits_to_be_fast() {
        let t = Pace::new(100, MS(500), Some(MS(100)));
        t.edits.record(MS(250));
        let start = Instant::now();
        let admitted = async {
            t.admit(10).await;
            start.elapsed()
        };
        let fast_again = async {
            tokio::time::sleep(MS(3_000)).await;
            assert!(t.state().yielding.unwrap().contains("migration paused"));
            // The slow sample expires with the window.
        };
        let (waited, ()) = tokio::join!(admitted, fast_again);
        assert!(waited >= crate::context::latency::WINDOW, "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn edits_slow_without_the_migration_do_not_hold_it_at_its_floor() {
        let t = Pace::new(100, MS(500), Some(MS(300)));
        // Edits take 2 s whatever the migration does: it halves to its
        // floor within a second or two, and stays there a whole window.
        run(&t, MS(2_000), 20).await;
        assert_eq!(t.state().budget_docs_per_second, Some(MIN_RATE));
        assert_eq!(t.state().edit_baseline_ms, None);
        run(&t, MS(2_000), 100).await;
        let s = t.state();
        assert_eq!(s.edit_baseline_ms, Some(2_000), "{s:?}");
        assert_eq!(s.budget_docs_per_second, None, "the floor is left: {s:?}");
        let why = s.yielding.expect("says why");
        assert!(why.contains("not what slows edits"), "{why}");
        assert!(why.contains("over 2500 ms"), "{why}");

        // With the baseline, the same edits leave the migration alone.
        run(&t, MS(2_000), 50).await;
        assert_eq!(t.state().budget_docs_per_second, None);
        // Edits the migration makes slower than the baseline: it yields.
        run(&t, MS(2_600), 5).await;
        assert!(t.state().budget_docs_per_second.is_some());

        // The baseline expires and the budget counts as set again.
        tokio::time::advance(BASELINE_TTL).await;
        run(&t, MS(400), 1).await;
        let s = t.state();
        assert_eq!(s.edit_baseline_ms, None, "{s:?}");
        assert!(s.yielding.expect("yields").contains("300 ms budget"));
    }

    #[test]
    fn without_a_budget_edits_do_not_steer() {
        let t = Pace::new(100, MS(500), None);
        t.edits.record(MS(5_000));
        t.steer();
        assert_eq!(t.state().budget_docs_per_second, None);
        assert_eq!(t.state().edit_latency_budget_ms, None);
        t.set_budget(Some(MS(300)));
        assert_eq!(t.state().edit_latency_budget_ms, Some(300));
    }
}
