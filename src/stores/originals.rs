//! Originals in S3: one JSON object per document id.

use super::aws::{sdk_error, StoreError};
use crate::types::DocId;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;

/// The bucket of originals.
#[derive(Clone, Debug)]
pub struct Originals {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
}

impl Originals {
    /// A store over `bucket`, keys `<prefix><id>`.
    pub fn new(sdk: &aws_config::SdkConfig, bucket: &str, prefix: &str) -> Self {
        // Path-style addressing works with AWS and with every local S3.
        let conf = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .build();
        Self {
            client: aws_sdk_s3::Client::from_conf(conf),
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        }
    }

    /// The key of a document's original.
    pub fn key(&self, id: &DocId) -> String {
        format!("{}{}", self.prefix, id)
    }

    /// Reads one original; a missing object is [`StoreError::NotFound`].
    pub async fn get(&self, id: &DocId) -> Result<Bytes, StoreError> {
        let key = self.key(id);
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await;
        match out {
            Ok(o) => {
                o.body
                    .collect()
                    .await
                    .map(|b| b.into_bytes())
                    .map_err(|e| StoreError::Transport {
                        op: "S3 GetObject",
                        detail: e.to_string(),
                    })
            }
            Err(e) => {
                if e.as_service_error().is_some_and(|se| se.is_no_such_key()) {
                    return Err(StoreError::NotFound {
                        what: "original",
                        key,
                    });
                }
                match sdk_error("S3 GetObject", e) {
                    StoreError::Service { status: 404, .. } => Err(StoreError::NotFound {
                        what: "original",
                        key,
                    }),
                    other => Err(other),
                }
            }
        }
    }

    /// Writes one original.
    pub async fn put(&self, id: &DocId, body: Bytes) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.key(id))
            .content_type("application/json")
            .body(ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_error("S3 PutObject", e))
    }

    /// Creates the bucket if it does not exist (local stacks and tests).
    pub async fn ensure_bucket(&self) -> Result<(), StoreError> {
        match self
            .client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match sdk_error("S3 CreateBucket", e) {
                StoreError::Service { code, .. }
                    if code == "BucketAlreadyOwnedByYou" || code == "BucketAlreadyExists" =>
                {
                    Ok(())
                }
                other => Err(other),
            },
        }
    }

    /// Checks that the bucket answers (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_error("S3 HeadBucket", e))
    }
}
