//! Which cluster an index lives on. A migration's target may be another
//! cluster (`FERRY_TARGET_INDEX_URL`); every other index ferry touches is
//! on the source cluster (`FERRY_INDEX_URL`).

use serde::Serialize;

/// The cluster an index lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cluster {
    /// `FERRY_INDEX_URL`: where Current lives before a migration.
    Source,
    /// `FERRY_TARGET_INDEX_URL`: where a migration to another cluster goes.
    Target,
}

impl Cluster {
    /// The other one.
    pub fn other(self) -> Cluster {
        match self {
            Cluster::Source => Cluster::Target,
            Cluster::Target => Cluster::Source,
        }
    }
}
