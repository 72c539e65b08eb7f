//! What every part of the worker shares: settings, clients, alias state.

use super::state::StateCache;
use crate::config::Settings;
use crate::index::{Aliases, IndexClient, IndexError};
use crate::retry::RetryPolicy;
use crate::stores::control::Control;
use crate::stores::Stores;

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
    /// The migration throttle.
    pub throttle: super::throttle::Throttle,
    /// Transient index failures seen by the migration path (pressure).
    pub index_pressure: std::sync::atomic::AtomicU64,
    /// Whether the index and stores answer.
    pub health: super::health::Health,
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
        let throttle = super::throttle::Throttle::new(settings.batch_size);
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
            throttle,
            broker_up: Default::default(),
            health: Default::default(),
            index_pressure: Default::default(),
        })
    }
}
