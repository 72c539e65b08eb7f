//! The worker: consumes the queues with strict priority, applies edits with
//! versioned dual writes, writes migration batches, scans for unmigrated
//! documents while it holds the lease, and shuts down gracefully.

pub mod context;
pub mod dispatch;
pub mod edits;
pub mod health;
pub mod laps;
pub mod lease;
pub mod locks;
pub mod migration;
pub mod run;
pub mod scanner;
pub mod state;
pub mod throttle;

pub use context::Ctx;
pub use run::run;
