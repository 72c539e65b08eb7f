//! Per-document locks: never two messages for the same id at once within
//! one worker.

use crate::types::DocId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::OwnedMutexGuard;

/// A lock per document id, created on demand and dropped when unused.
#[derive(Debug, Default, Clone)]
pub struct IdLocks {
    inner: Arc<Mutex<HashMap<DocId, Arc<tokio::sync::Mutex<()>>>>>,
}

/// Holds a document's lock until dropped.
pub struct IdGuard {
    _guard: OwnedMutexGuard<()>,
    id: DocId,
    locks: IdLocks,
}

impl IdLocks {
    /// Waits for the lock of `id`.
    pub async fn lock(&self, id: &DocId) -> IdGuard {
        let m = {
            let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(id.clone()).or_default().clone()
        };
        IdGuard {
            _guard: m.lock_owned().await,
            id: id.clone(),
            locks: self.clone(),
        }
    }

    /// Ids currently locked or waited for.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// True when no id is locked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for IdGuard {
    fn drop(&mut self) {
        let mut map = self.locks.inner.lock().unwrap_or_else(|p| p.into_inner());
        // Two references: the map's and our guard's mutex. Nobody waits.
        if map.get(&self.id).is_some_and(|m| Arc::strong_count(m) <= 2) {
            map.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn one_holder_per_id_and_no_leak() {
        let locks = IdLocks::default();
        let a = DocId::parse("a").unwrap();
        let g = locks.lock(&a).await;
        let l2 = locks.clone();
        let a2 = a.clone();
        let waiter = tokio::spawn(async move {
            l2.lock(&a2).await;
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        let _other = locks.lock(&DocId::parse("b").unwrap()).await;
        drop(g);
        waiter.await.unwrap();
        drop(_other);
        assert!(locks.is_empty());
    }
}
