//! The unit of every throughput the benchmark measures.

use serde::{Deserialize, Serialize};

/// Documents, seconds and documents per second.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Throughput {
    /// Documents processed.
    pub docs: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Documents per second.
    pub docs_per_second: f64,
}

impl Throughput {
    /// `docs` in `seconds`.
    pub fn new(docs: usize, seconds: f64) -> Self {
        Self {
            docs,
            seconds,
            docs_per_second: docs as f64 / seconds.max(1e-6),
        }
    }
}
