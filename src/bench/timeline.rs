//! What happened during one M run, second by second: the migration's rate
//! (documents in its new index, sampled from the index statistics every
//! second) beside each edit's latency, for the report and the plot.

use crate::context::Ctx;
use crate::types::IndexName;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often the migration's rate is sampled.
const EVERY: Duration = Duration::from_secs(1);

/// Samples of one M run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timeline {
    /// `[seconds from start, documents per second over the last sample]`.
    pub rate: Vec<[f64; 2]>,
    /// `[seconds from start at publish, milliseconds to visible]` per edit.
    pub edits: Vec<[f64; 2]>,
}

impl Timeline {
    /// At each whole second, the 99th percentile of the edits published in
    /// the `window` before it, as `[second, ms]` (seconds with none left
    /// out): what a worker's own window shows, without one second's noise.
    pub fn edit_p99(&self, window: Duration) -> Vec<[f64; 2]> {
        let w = window.as_secs_f64();
        let end = self.edits.iter().map(|e| e[0]).fold(0.0, f64::max);
        let mut out = Vec::new();
        for second in 0..=end.ceil() as u64 {
            let t = second as f64;
            let mut v: Vec<f64> = (self.edits.iter())
                .filter(|e| e[0] <= t && e[0] > t - w)
                .map(|e| e[1])
                .collect();
            if v.is_empty() {
                continue;
            }
            v.sort_by(f64::total_cmp);
            let k = ((0.99 * v.len() as f64).ceil() as usize).clamp(1, v.len());
            out.push([t, v[k - 1]]);
        }
        out
    }

    /// The migration's rate averaged over the `window` before each sample.
    pub fn rate_mean(&self, window: Duration) -> Vec<[f64; 2]> {
        let w = window.as_secs_f64();
        (self.rate.iter())
            .map(|[t, _]| {
                let v: Vec<f64> = (self.rate.iter())
                    .filter(|r| r[0] <= *t && r[0] > t - w)
                    .map(|r| r[1])
                    .collect();
                [*t, v.iter().sum::<f64>() / v.len().max(1) as f64]
            })
            .collect()
    }
}

/// Samples the documents in `target` (on the target cluster, if any)
/// every second until `stop` is set;
/// returns the rate between samples, timed from `origin`. A failed sample
/// (an index server busy with the migration) is skipped, not fatal.
pub async fn sample_rate(
    ctx: &Ctx,
    target: &IndexName,
    origin: Instant,
    stop: &AtomicBool,
) -> Vec<[f64; 2]> {
    let mut rate = Vec::new();
    let mut last: Option<(f64, u64)> = None;
    let on = ctx.on(ctx.target_cluster());
    while !stop.load(Ordering::Relaxed) {
        if let Ok(docs) = on.doc_count(target).await {
            let at = origin.elapsed().as_secs_f64();
            if let Some((then, before)) = last {
                if at > then {
                    rate.push([at, docs.saturating_sub(before) as f64 / (at - then)]);
                }
            }
            last = Some((at, docs));
        }
        tokio::time::sleep(EVERY).await;
    }
    rate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_p99_and_rate_are_taken_over_a_window() {
        let t = Timeline {
            rate: vec![[1.0, 10.0], [2.0, 30.0], [3.0, 50.0]],
            edits: (0..100)
                .map(|k| [0.5, k as f64 + 1.0])
                .chain([[2.2, 7.0], [9.0, 3.0]])
                .collect(),
        };
        let w = Duration::from_secs(2);
        // Seconds 1 and 2 see the hundred; 3 and 4 the 7 ms one; 5 to 8
        // none; 9 the last.
        assert_eq!(
            t.edit_p99(w),
            vec![[1.0, 99.0], [2.0, 99.0], [3.0, 7.0], [4.0, 7.0], [9.0, 3.0]]
        );
        assert_eq!(t.rate_mean(w), vec![[1.0, 10.0], [2.0, 20.0], [3.0, 40.0]]);
    }
}
