//! Alias state as the worker sees it: read from the index server, cached for
//! a short time, refreshed at once after any write that suggests it changed.
//! A cached view may be old; the edit path therefore checks its writes
//! against a fresh one (see `edits::apply`).

use crate::index::{AliasState, Aliases, IndexClient, IndexError};
use crate::retry::Transient;
use crate::stores::control::{now_ms, Completion, Control};
use crate::stores::StoreError;
use crate::types::IndexName;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::Mutex;

/// Reads of both clusters' aliases again while they come back torn
/// ([`AliasState::torn`]); the alias changes of one command are a few
/// milliseconds apart.
const TORN_READS: u64 = 5;

/// Why the migration state could not be read.
#[derive(Debug, Error)]
pub enum StateError {
    /// The aliases could not be read.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The completion record could not be read, so nobody knows whether
    /// edits must still reach the Historical index: never guessed.
    #[error("cannot read the completion record (needed to know whether the rollback window is open): {0}")]
    Completion(#[from] StoreError),
    /// A migration goes to a cluster this worker is not configured with:
    /// it cannot write the migration index, so it writes nothing.
    #[error("a migration to another cluster is running (the {marker} alias is on {current}) and this worker has no FERRY_TARGET_INDEX_URL; set it like the other workers' and restart")]
    TargetUnknown {
        /// The marker alias.
        marker: String,
        /// The index carrying it.
        current: String,
    },
}

impl Transient for StateError {
    fn is_transient(&self) -> bool {
        match self {
            StateError::Index(e) => e.is_transient(),
            StateError::Completion(_) | StateError::TargetUnknown { .. } => true,
        }
    }
}

/// When the rollback window of `completion` ends, in ms since the epoch.
pub fn window_end_ms(completion: &Completion, window: Duration) -> u64 {
    completion.at_ms.saturating_add(window.as_millis() as u64)
}

/// One reading of the migration state.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Which indices carry which alias.
    pub aliases: AliasState,
    /// The last completion, if any.
    pub completion: Option<Completion>,
    /// When its read started: it shows every change made before then.
    pub read_at: Instant,
    rollback_window: Duration,
    clock_margin: Duration,
}

impl Snapshot {
    /// The migration target, if a migration is in progress.
    pub fn migration(&self) -> Option<IndexName> {
        self.aliases.migration_index()
    }

    /// True while edits must also reach the Historical index: a Historical
    /// index exists and the last completion is within the rollback window,
    /// plus the clock margin (`rollback` stops a margin early, so a worker
    /// whose clock runs ahead still covers every accepted rollback).
    pub fn historical_writes(&self) -> bool {
        let Some(historical) = self.aliases.historical_index() else {
            return false;
        };
        match &self.completion {
            Some(c) if c.from == historical.as_str() && !self.rollback_window.is_zero() => {
                now_ms()
                    < window_end_ms(c, self.rollback_window)
                        .saturating_add(self.clock_margin.as_millis() as u64)
            }
            _ => false,
        }
    }

    /// The concrete indices a reader may use now and that every edit must
    /// therefore reach: Migration (it becomes Current at the switch),
    /// Current (on each cluster, after a completion across clusters), and
    /// Historical while a rollback may bring it back.
    pub fn readable(&self) -> Vec<IndexName> {
        let mut out: Vec<IndexName> = self.migration().into_iter().collect();
        out.extend(self.aliases.current_indices());
        if self.historical_writes() {
            out.extend(self.aliases.historical_index().filter(|h| !out.contains(h)));
        }
        out
    }
}

/// A briefly cached [`Snapshot`].
#[derive(Debug)]
pub struct StateCache {
    ttl: Duration,
    rollback_window: Duration,
    clock_margin: Duration,
    /// The target cluster, read beside the source.
    target: Option<IndexClient>,
    cached: Mutex<Option<Arc<Snapshot>>>,
}

impl StateCache {
    /// A cache that re-reads after `ttl`.
    pub fn new(ttl: Duration, rollback_window: Duration, clock_margin: Duration) -> Self {
        Self {
            ttl,
            rollback_window,
            clock_margin,
            target: None,
            cached: Mutex::new(None),
        }
    }

    /// The same cache, reading `target`'s aliases too.
    pub fn with_target(mut self, target: Option<IndexClient>) -> Self {
        self.target = target;
        self
    }

    /// The state, re-read if older than the TTL.
    pub async fn get(
        &self,
        index: &IndexClient,
        names: &Aliases,
        control: &Control,
    ) -> Result<Arc<Snapshot>, StateError> {
        let mut cached = self.cached.lock().await;
        match cached.as_ref() {
            Some(s) if s.read_at.elapsed() < self.ttl => Ok(s.clone()),
            _ => self.read(&mut cached, index, names, control).await,
        }
    }

    /// The state as read after this call began, so it shows every change
    /// made before the call. Callers that ask together share one read: the
    /// edits in flight each need a fresh view after their writes, and
    /// reading once for each of them, one at a time, would cap the edit rate
    /// at one alias read per edit.
    pub async fn fresh(
        &self,
        index: &IndexClient,
        names: &Aliases,
        control: &Control,
    ) -> Result<Arc<Snapshot>, StateError> {
        let asked = Instant::now();
        let mut cached = self.cached.lock().await;
        match cached.as_ref() {
            Some(s) if s.read_at >= asked => Ok(s.clone()),
            _ => self.read(&mut cached, index, names, control).await,
        }
    }

    async fn read(
        &self,
        cached: &mut Option<Arc<Snapshot>>,
        index: &IndexClient,
        names: &Aliases,
        control: &Control,
    ) -> Result<Arc<Snapshot>, StateError> {
        let mut read_at = Instant::now();
        let mut aliases = super::read_aliases(index, self.target.as_ref(), names).await?;
        // The two clusters' aliases are two reads: read again while they
        // straddled a completion or rollback. Still torn after that, the
        // aliases are broken by hand, and `status` says so.
        for attempt in 1..=TORN_READS {
            if !aliases.torn() {
                break;
            }
            tracing::info!(
                attempt,
                "the two clusters' aliases were read across an alias change; reading again"
            );
            tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
            read_at = Instant::now();
            aliases = super::read_aliases(index, self.target.as_ref(), names).await?;
        }
        if self.target.is_none() {
            if let Some(current) = aliases.elsewhere.first() {
                return Err(StateError::TargetUnknown {
                    marker: names.elsewhere().to_string(),
                    current: current.to_string(),
                });
            }
        }
        let completion = if aliases.historical.is_empty() {
            None
        } else {
            // An unreadable record is an error, not a closed window: taken
            // as closed, edits would skip Historical while `rollback`
            // still accepts, and a rollback would serve stale documents.
            control.completion().await?
        };
        let snap = Arc::new(Snapshot {
            aliases,
            completion,
            read_at,
            rollback_window: self.rollback_window,
            clock_margin: self.clock_margin,
        });
        *cached = Some(snap.clone());
        Ok(snap)
    }

    /// Forgets the cached state, so the next `get` reads it again.
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }
}
