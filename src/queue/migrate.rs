//! Migrate messages: scanned documents, projected from the stores and
//! published to the low-priority queue, one message each (by the scanner,
//! and by operators queueing or retrying documents by hand). A document
//! that cannot be projected is published as a failure, so that the
//! migration path records why.

use super::{Broker, MigrateMessage, Payload, QueueError};
use crate::index::{records, StoredDoc};
use crate::stores::{Projection, StoreError, Stores};
use crate::types::{DocId, IndexName, Version};
use futures::{StreamExt, TryStreamExt};
use thiserror::Error;

/// Publishes in flight at once.
const PUBLISH_CONCURRENCY: usize = 64;

/// Why documents could not be queued for migration.
#[derive(Debug, Error)]
pub enum PublishError {
    /// The stores failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The broker failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// Projects the scanned documents and publishes one migrate message each.
pub async fn publish_projections(
    stores: &Stores,
    broker: &Broker,
    target: &IndexName,
    docs: &[StoredDoc],
) -> Result<usize, PublishError> {
    let ids: Vec<DocId> = docs.iter().map(|d| d.id.clone()).collect();
    let projected = stores.project_many(&ids).await?;
    let messages: Vec<MigrateMessage> = docs
        .iter()
        .zip(projected)
        .map(|(doc, (id, p))| {
            let (version, payload) = match p {
                Ok(Projection::Document(d)) => (d.version, Payload::Document(d.to_json())),
                Ok(Projection::Deleted { version, .. }) => (version, Payload::Deleted(true)),
                Err(e) => (
                    Version::new(doc.version()).unwrap_or(Version::FIRST),
                    Payload::Failure(records::normalize(&e.to_string(), &id)),
                ),
            };
            MigrateMessage {
                id,
                target: target.clone(),
                version,
                seq_no: doc.seq_no,
                primary_term: doc.primary_term,
                payload,
            }
        })
        .collect();
    let n = messages.len();
    futures::stream::iter(messages)
        .map(|m| async move { broker.publish_event("migrate", &m.to_body()).await })
        .buffer_unordered(PUBLISH_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(n)
}
