//! What every part of ferry shares: settings, the clients of the index,
//! the stores and the control table, the cached alias state, and the
//! worker's live signals (pace, health, broker connection). The worker,
//! the operator commands, the admin server, the benchmark and the seeder
//! all take a `Ctx`.

pub mod batches;
pub mod health;
pub mod latency;
pub mod pace;
pub mod state;

use crate::config::Settings;
use crate::index::{Aliases, IndexClient, IndexError};
use crate::retry::RetryPolicy;
use crate::stores::control::Control;
use crate::stores::Stores;
use state::StateCache;

/// Shared, cheap to clone behind an `Arc`.
#[derive(Debug)]
pub struct Ctx {
    /// The settings.
    pub settings: Settings,
    /// The index server.
    pub index: IndexClient,
    /// The primary stores.
    pub stores: Stores,
    /// The control table (lease, completion).
    pub control: Control,
    /// Configured alias names.
    pub aliases: Aliases,
    /// Alias state, cached briefly.
    pub state: StateCache,
    /// Retry policy for transient failures.
    pub policy: RetryPolicy,
    /// The migration's pace (adaptive, and the operator's cap).
    pub pace: pace::Pace,
    /// Transient index failures seen by the migration path (pressure).
    pub index_pressure: std::sync::atomic::AtomicU64,
    /// Whether the index and stores answer.
    pub health: health::Health,
    /// True while the consumers are connected to the broker (readiness).
    pub broker_up: std::sync::atomic::AtomicBool,
}

impl Ctx {
    /// Builds the clients from the settings (no network calls yet).
    pub async fn new(settings: Settings) -> Result<Self, IndexError> {
        let index = IndexClient::from_settings(&settings)?;
        let stores = Stores::from_settings(&settings).await;
        let sdk = crate::stores::aws::dynamo_config(&settings).await;
        let control = Control::new(&sdk, &settings.lease_table, &settings.queue_prefix);
        let aliases = Aliases::from_settings(&settings);
        let pace = pace::Pace::new(
            settings.batch_size,
            settings.batch_time,
            settings.edit_latency_budget.0,
        )
        .with_batches(settings.max_batches);
        let state = StateCache::new(
            settings.state_ttl,
            settings.rollback_window,
            settings.clock_margin,
        );
        Ok(Self {
            policy: settings.retry_policy(),
            settings,
            index,
            stores,
            control,
            aliases,
            state,
            pace,
            broker_up: Default::default(),
            health: Default::default(),
            index_pressure: Default::default(),
        })
    }

    /// The edit latency budget in force: an operator's run-time setting
    /// from the control table (0 ms: off), else this process's setting;
    /// and whether it was set at run time.
    pub async fn budget_in_force(
        &self,
    ) -> Result<(crate::config::LatencyBudget, bool), crate::stores::StoreError> {
        use crate::config::LatencyBudget;
        Ok(match self.control.budget().await? {
            Some(0) => (LatencyBudget::OFF, true),
            Some(ms) => (
                LatencyBudget(Some(std::time::Duration::from_millis(ms))),
                true,
            ),
            None => (self.settings.edit_latency_budget, false),
        })
    }

    /// Checks the index, S3 and DynamoDB once; the problems found.
    pub async fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = self.index.ping().await {
            problems.push(format!("index: {e}"));
        }
        if let Err(e) = self.stores.originals.ping().await {
            problems.push(format!("s3: {e}"));
        }
        if let Err(e) = self.stores.edits.ping().await {
            problems.push(format!("dynamodb: {e}"));
        }
        problems
    }
}
