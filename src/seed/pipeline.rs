//! A simulated upload/edit pipeline that follows the publisher contract:
//! write S3 and DynamoDB first (bumping the version), then publish.
//! Used by the demo, the benchmark and the tests.

use super::data;
use crate::context::Ctx;
use crate::ops::OpsError;
use crate::queue::{Broker, DocKind, DocMessage};
use crate::stores::edits::EditItem;
use crate::stores::StoreError;
use crate::types::{DocId, Version};
use rand::Rng;
use serde_json::{json, Map, Value};
use std::sync::Mutex;

/// Read-modify-write attempts before a store conflict is an error.
const ATTEMPTS: usize = 20;

/// Publishes uploads, edits and deletes the way real pipelines do.
pub struct Pipeline<'a> {
    ctx: &'a Ctx,
    broker: &'a Broker,
    rng: Mutex<rand_chacha::ChaCha8Rng>,
}

impl<'a> Pipeline<'a> {
    /// A pipeline with its own deterministic random source.
    pub fn new(ctx: &'a Ctx, broker: &'a Broker, seed: u64) -> Self {
        Self {
            ctx,
            broker,
            rng: Mutex::new(data::rng(seed)),
        }
    }

    fn with_rng<T>(&self, f: impl FnOnce(&mut rand_chacha::ChaCha8Rng) -> T) -> T {
        let mut g = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    async fn current(&self, id: &DocId) -> Result<Option<EditItem>, StoreError> {
        match self.ctx.stores.edits.get(id).await {
            Ok(i) => Ok(Some(i)),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Read-modify-write of the edits item; `change` returns the new
    /// attributes, or `None` to leave the item alone.
    async fn update(
        &self,
        id: &DocId,
        change: impl Fn(Option<&EditItem>) -> Option<Map<String, Value>>,
    ) -> Result<Option<Version>, OpsError> {
        for _ in 0..ATTEMPTS {
            let item = self.current(id).await?;
            let Some(attrs) = change(item.as_ref()) else {
                return Ok(None);
            };
            match self
                .ctx
                .stores
                .edits
                .put_versioned(id, item.map(|i| i.version), &attrs)
                .await
            {
                Ok(v) => return Ok(Some(v)),
                Err(StoreError::VersionConflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(OpsError::Refused(format!(
            "document {id} kept changing under the simulated pipeline"
        )))
    }

    async fn publish(&self, kind: DocKind, id: &DocId, version: Version) -> Result<(), OpsError> {
        let msg = DocMessage {
            kind,
            id: id.clone(),
            version: Some(version),
        };
        self.broker
            .publish_event(kind.as_str(), &msg.to_body())
            .await?;
        Ok(())
    }

    /// Uploads (or re-uploads) a document: new original, bumped version.
    pub async fn upload(&self, id: &DocId) -> Result<Version, OpsError> {
        let original = self.with_rng(|r| data::original(r, id));
        self.ctx
            .stores
            .originals
            .put(id, original.to_string().into_bytes().into())
            .await?;
        let attrs = self.with_rng(data::edits);
        let v = self
            .update(id, |_| Some(attrs.clone()))
            .await?
            .ok_or_else(|| OpsError::Refused("upload skipped".into()))?;
        self.publish(DocKind::Upload, id, v).await?;
        Ok(v)
    }

    /// Edits a live document's title and labels; `None` if it is deleted or absent.
    pub async fn edit(&self, id: &DocId) -> Result<Option<Version>, OpsError> {
        let title = self.with_rng(|r| format!("edited {}", r.random_range(0..1_000_000u32)));
        let label = self.with_rng(|r| format!("l{}", r.random_range(0..20u32)));
        let v = self
            .update(id, |item| {
                let item = item.filter(|i| !i.deleted)?;
                let mut attrs = item.attrs.as_object().cloned().unwrap_or_default();
                attrs.insert("metadata".into(), json!({ "title": title }));
                attrs.insert("labels".into(), json!([label]));
                attrs.insert(
                    "lastModified".into(),
                    json!(chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()),
                );
                Some(attrs)
            })
            .await?;
        if let Some(v) = v {
            self.publish(DocKind::Edit, id, v).await?;
        }
        Ok(v)
    }

    /// Deletes a document: a tombstone with a bumped version.
    pub async fn delete(&self, id: &DocId) -> Result<Option<Version>, OpsError> {
        let v = self
            .update(id, |item| {
                item.filter(|i| !i.deleted)?;
                let mut attrs = Map::new();
                attrs.insert("deleted".into(), json!(true));
                Some(attrs)
            })
            .await?;
        if let Some(v) = v {
            self.publish(DocKind::Delete, id, v).await?;
        }
        Ok(v)
    }
}
