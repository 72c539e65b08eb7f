//! What happened during one M run, second by second: the migration's rate
//! (documents in its new index, sampled from the index statistics every
//! second) beside each edit's latency, for the report and the plot.

use crate::context::Ctx;
use crate::types::IndexName;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often the migration's rate is sampled.
const EVERY: Duration = Duration::from_secs(1);

/// Samples of one M run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timeline {
    /// `[seconds from start, documents per second over the last sample]`.
    pub rate: Vec<[f64; 2]>,
    /// `[seconds from start at publish, milliseconds to visible]` per edit.
    pub edits: Vec<[f64; 2]>,
}

impl Timeline {
    /// The 99th percentile of the edits published in each whole second,
    /// as `[second, ms]` (seconds without edits are left out).
    pub fn edit_p99_by_second(&self) -> Vec<[f64; 2]> {
        let mut by: std::collections::BTreeMap<u64, Vec<f64>> = Default::default();
        for [at, ms] in &self.edits {
            by.entry(at.max(0.0) as u64).or_default().push(*ms);
        }
        by.into_iter()
            .map(|(second, mut v)| {
                v.sort_by(f64::total_cmp);
                let k = ((0.99 * v.len() as f64).ceil() as usize).clamp(1, v.len());
                [second as f64, v[k - 1]]
            })
            .collect()
    }
}

/// Samples the documents in `target` every second until `stop` is set;
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
    while !stop.load(Ordering::Relaxed) {
        if let Ok(docs) = ctx.index.doc_count(target).await {
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
    fn edit_p99_is_taken_per_second() {
        let t = Timeline {
            rate: vec![],
            edits: (0..100)
                .map(|k| [0.5, k as f64 + 1.0])
                .chain([[2.2, 7.0]])
                .collect(),
        };
        assert_eq!(t.edit_p99_by_second(), vec![[0.0, 99.0], [2.0, 7.0]]);
    }
}
