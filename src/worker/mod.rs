//! The worker: consumes the queues with strict priority ([`dispatch`]),
//! applies each edit to every index a reader may use ([`edit_path`]),
//! writes migration batches ([`migration_path`]), scans for unmigrated
//! documents while it holds the lease ([`scanner`], [`lease`]), rides out
//! outages ([`outage`]) and reconnects to the broker ([`consume`]).

pub mod consume;
pub mod dispatch;
pub mod edit_path;
pub mod laps;
pub mod lease;
pub mod locks;
pub mod migration_path;
pub mod outage;
pub mod scanner;

pub use consume::consume;
