//! Where an edit's time went, step by step: a histogram per step, and a
//! warning naming the steps of a slow edit, so that an operator can tell a
//! slow store from a slow index.

use crate::types::DocId;
use std::time::{Duration, Instant};

/// An edit slower than this is logged with the time of each step.
const SLOW_EDIT: Duration = Duration::from_secs(1);

/// Where an edit's time went, step by step: a histogram per step, and a
/// warning naming the steps of a slow edit, so that an operator can tell
/// a slow store from a slow index.
pub struct Laps {
    last: Instant,
    steps: Vec<(&'static str, Duration)>,
}

impl Laps {
    /// Starts timing.
    pub fn start() -> Self {
        Self {
            last: Instant::now(),
            steps: Vec::with_capacity(5),
        }
    }

    /// Ends a step.
    pub fn lap(&mut self, step: &'static str) {
        let now = Instant::now();
        let took = now - self.last;
        self.last = now;
        metrics::histogram!("ferry_edit_step_seconds", "step" => step).record(took.as_secs_f64());
        self.steps.push((step, took));
    }

    /// Called after the last lap, so the steps add up to the whole edit.
    pub fn report(&self, id: &DocId) {
        let total: Duration = self.steps.iter().map(|(_, took)| *took).sum();
        if total >= SLOW_EDIT {
            let steps: Vec<String> = self
                .steps
                .iter()
                .map(|(step, took)| format!("{step} {} ms", took.as_millis()))
                .collect();
            tracing::warn!(%id, total_ms = total.as_millis() as u64, steps = %steps.join(", "), "slow edit");
        }
    }
}
