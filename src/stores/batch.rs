//! Reading both stores and projecting, one document or a batch at a time:
//! one BatchGetItem per 100 ids and S3 reads with bounded concurrency.

use super::aws::{dynamo_config, s3_config, StoreError};
use super::edits::{EditItem, Edits};
use super::originals::Originals;
use super::projection::{project, Projection, ProjectionError};
use crate::config::Settings;
use crate::retry::{retry, RetryPolicy};
use crate::types::DocId;
use futures::{StreamExt, TryStreamExt};

/// A projection, or why this document cannot be projected.
pub type Projected = Result<Projection, ProjectionError>;

/// Both primary stores, with the retry policy and read concurrency to use.
#[derive(Clone, Debug)]
pub struct Stores {
    /// Originals in S3.
    pub originals: Originals,
    /// Edits in DynamoDB.
    pub edits: Edits,
    /// Retry policy for transient store failures.
    pub policy: RetryPolicy,
    /// S3 reads in flight at once.
    pub concurrency: usize,
}

impl Stores {
    /// Stores from the settings.
    pub async fn from_settings(s: &Settings) -> Self {
        // S3 and DynamoDB may be served by different endpoints (the fast
        // local stack), so each client gets its own configuration.
        let (s3, ddb) = (s3_config(s).await, dynamo_config(s).await);
        Self {
            originals: Originals::new(&s3, &s.s3_bucket, &s.s3_prefix),
            edits: Edits::new(&ddb, &s.dynamo_table),
            policy: s.retry_policy(),
            concurrency: s.store_concurrency.max(1),
        }
    }

    /// Projects one document. The outer error is a store failure that
    /// outlived the retry budget; the inner one is about the document.
    pub async fn project_one(&self, id: &DocId) -> Result<Projected, StoreError> {
        let item = retry(&self.policy, "DynamoDB GetItem", || self.edits.get(id)).await;
        let item = match item {
            Ok(item) => item,
            Err(StoreError::NotFound { .. }) => return Ok(Err(ProjectionError::MissingEdits)),
            Err(e @ StoreError::Malformed { .. }) => {
                return Ok(Err(ProjectionError::InvalidEdits(e.cause())))
            }
            Err(e) => return Err(e),
        };
        self.project_item(&item).await
    }

    /// Projects many documents, in the order given.
    pub async fn project_many(&self, ids: &[DocId]) -> Result<Vec<(DocId, Projected)>, StoreError> {
        let mut items = self.edits.batch_get(ids, &self.policy).await?;
        futures::stream::iter(ids.iter().cloned())
            .map(|id| {
                let item = items.remove(&id);
                async move {
                    let projected = match item {
                        None => Err(ProjectionError::MissingEdits),
                        Some(Err(e)) => Err(ProjectionError::InvalidEdits(e.cause())),
                        Some(Ok(item)) => self.project_item(&item).await?,
                    };
                    Ok::<_, StoreError>((id, projected))
                }
            })
            .buffered(self.concurrency)
            .try_collect()
            .await
    }

    async fn project_item(&self, item: &EditItem) -> Result<Projected, StoreError> {
        if item.deleted {
            return Ok(project(None, item));
        }
        match retry(&self.policy, "S3 GetObject", || {
            self.originals.get(&item.id)
        })
        .await
        {
            Ok(bytes) => Ok(project(Some(&bytes), item)),
            Err(StoreError::NotFound { .. }) => Ok(project(None, item)),
            Err(e) => Err(e),
        }
    }
}
