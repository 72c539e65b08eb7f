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
use crate::index::{AliasState, Aliases, Cluster, IndexClient, IndexError};
use crate::retry::RetryPolicy;
use crate::stores::control::Control;
use crate::stores::Stores;
use crate::types::IndexName;
use state::{StateCache, StateError};

/// Shared, cheap to clone behind an `Arc`.
#[derive(Debug)]
pub struct Ctx {
    /// The settings.
    pub settings: Settings,
    /// The index server (the source cluster).
    pub index: IndexClient,
    /// The target cluster, when a migration goes to another one.
    pub target: Option<IndexClient>,
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
    /// Webhook notifications (actions and conditions).
    pub notify: crate::notify::Notifier,
}

impl Ctx {
    /// Builds the clients from the settings (no network calls yet).
    pub async fn new(settings: Settings) -> Result<Self, IndexError> {
        let index = IndexClient::from_settings(&settings)?;
        let target = IndexClient::target_from_settings(&settings)?;
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
        )
        .with_target(target.clone());
        Ok(Self {
            notify: crate::notify::Notifier::from_settings(&settings),
            policy: settings.retry_policy(),
            settings,
            index,
            target,
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

    /// The client of the cluster `cluster` (the target is the source when
    /// no target cluster is configured).
    pub fn on(&self, cluster: Cluster) -> &IndexClient {
        match (cluster, &self.target) {
            (Cluster::Target, Some(t)) => t,
            _ => &self.index,
        }
    }

    /// The client of the cluster `index` lives on in the view `st`.
    pub fn client_in(&self, st: &AliasState, index: &IndexName) -> &IndexClient {
        self.on(st.cluster_of(index))
    }

    /// The client of the cluster `index` lives on, from the cached view
    /// (the source when no target cluster is configured).
    pub async fn client_of(&self, index: &IndexName) -> Result<&IndexClient, StateError> {
        if self.target.is_none() {
            return Ok(&self.index);
        }
        let st = self
            .state
            .get(&self.index, &self.aliases, &self.control)
            .await?;
        Ok(self.client_in(&st.aliases, index))
    }

    /// The cluster new indices are created on.
    pub fn target_cluster(&self) -> Cluster {
        match self.target {
            Some(_) => Cluster::Target,
            None => Cluster::Source,
        }
    }

    /// Reads the aliases of both clusters (one when no target is
    /// configured) as one view, uncached.
    pub async fn alias_state(&self) -> Result<AliasState, IndexError> {
        read_aliases(&self.index, self.target.as_ref(), &self.aliases).await
    }

    /// Checks the index, S3 and DynamoDB once; the problems found.
    pub async fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = self.index.ping().await {
            problems.push(format!("index: {e}"));
        }
        if let Some(t) = &self.target {
            if let Err(e) = t.ping().await {
                problems.push(format!("target index: {e}"));
            }
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

/// The aliases of `source` and, if any, `target`, read in parallel and
/// merged into one view.
pub async fn read_aliases(
    source: &IndexClient,
    target: Option<&IndexClient>,
    names: &Aliases,
) -> Result<AliasState, IndexError> {
    match target {
        None => source.alias_state(names).await,
        Some(t) => {
            let (s, t) = tokio::try_join!(source.alias_state(names), t.alias_state(names))?;
            Ok(AliasState::merge(s, t))
        }
    }
}
