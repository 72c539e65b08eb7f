//! Alias state as the worker sees it: read from the index server, cached for
//! a short time, refreshed at once after any write that suggests it changed.

use crate::index::{AliasState, Aliases, IndexClient, IndexError};
use crate::stores::control::{now_ms, Completion, Control};
use crate::types::IndexName;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

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
}

impl Snapshot {
    /// The migration target, if a migration is in progress.
    pub fn migration(&self) -> Option<IndexName> {
        self.aliases.migration_index()
    }

    /// True while edits must also reach the Historical index: a Historical
    /// index exists and the last completion is within the rollback window.
    pub fn historical_writes(&self) -> bool {
        let Some(historical) = self.aliases.historical_index() else {
            return false;
        };
        match &self.completion {
            Some(c) if c.from == historical.as_str() => {
                now_ms()
                    < c.at_ms
                        .saturating_add(self.rollback_window.as_millis() as u64)
            }
            _ => false,
        }
    }
}

/// A briefly cached [`Snapshot`].
#[derive(Debug)]
pub struct StateCache {
    ttl: Duration,
    rollback_window: Duration,
    cached: Mutex<Option<Arc<Snapshot>>>,
}

impl StateCache {
    /// A cache that re-reads after `ttl`.
    pub fn new(ttl: Duration, rollback_window: Duration) -> Self {
        Self {
            ttl,
            rollback_window,
            cached: Mutex::new(None),
        }
    }

    /// The state, re-read if older than the TTL.
    pub async fn get(
        &self,
        index: &IndexClient,
        names: &Aliases,
        control: &Control,
    ) -> Result<Arc<Snapshot>, IndexError> {
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
    ) -> Result<Arc<Snapshot>, IndexError> {
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
    ) -> Result<Arc<Snapshot>, IndexError> {
        let read_at = Instant::now();
        let aliases = index.alias_state(names).await?;
        let completion = if aliases.historical.is_empty() {
            None
        } else {
            // Without the record, edits still reach Current and Migration;
            // only rollback safety depends on it, so a read error is logged.
            control.completion().await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot read the completion record; treating the rollback window as closed");
                None
            })
        };
        let snap = Arc::new(Snapshot {
            aliases,
            completion,
            read_at,
            rollback_window: self.rollback_window,
        });
        *cached = Some(snap.clone());
        Ok(snap)
    }

    /// Forgets the cached state, so the next `get` reads it again.
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }
}
