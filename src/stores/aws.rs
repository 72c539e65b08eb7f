//! AWS set-up shared by S3 and DynamoDB, and the typed [`StoreError`] that
//! keeps each service's error code and says whether a retry may help.

use crate::config::Settings;
use crate::retry::Transient;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use std::time::Duration;
use thiserror::Error;

/// A failed store call.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The object or item does not exist.
    #[error("{what} {key:?} not found")]
    NotFound { what: &'static str, key: String },
    /// The service answered with an error.
    #[error("{op} failed: HTTP {status} {code}: {message}")]
    Service {
        op: &'static str,
        status: u16,
        code: String,
        message: String,
    },
    /// The service could not be reached or did not answer in time.
    #[error("{op} failed: service unreachable: {detail}")]
    Transport { op: &'static str, detail: String },
    /// A conditional write found another version than expected.
    #[error("version conflict on {key:?}: the item is not at version {expected}")]
    VersionConflict { key: String, expected: String },
    /// The stored data does not have the shape ferry expects.
    #[error("{what} {key:?} is malformed: {detail}")]
    Malformed {
        what: &'static str,
        key: String,
        detail: String,
    },
}

impl StoreError {
    /// The cause without the key, for failure records that group by cause.
    pub fn cause(&self) -> String {
        match self {
            StoreError::NotFound { what, .. } => format!("{what} not found"),
            StoreError::Service {
                op,
                status,
                code,
                message,
            } => format!("{op} failed: HTTP {status} {code}: {message}"),
            StoreError::Transport { op, detail } => {
                format!("{op} failed: service unreachable: {detail}")
            }
            StoreError::VersionConflict { .. } => "version conflict".into(),
            StoreError::Malformed { what, detail, .. } => format!("{what} is malformed: {detail}"),
        }
    }
}

const THROTTLING: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "SlowDown",
    "InternalServerError",
    "InternalError",
    "ServiceUnavailable",
    "TransactionConflictException",
];

impl Transient for StoreError {
    fn is_transient(&self) -> bool {
        match self {
            StoreError::Transport { .. } => true,
            StoreError::Service { status, code, .. } => {
                *status == 429 || *status >= 500 || THROTTLING.contains(&code.as_str())
            }
            _ => false,
        }
    }
}

/// Maps any SDK error to a [`StoreError`], keeping status and error code.
pub fn sdk_error<E>(
    op: &'static str,
    e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match e {
        SdkError::DispatchFailure(f) => StoreError::Transport {
            op,
            detail: if f.is_timeout() {
                "timed out".into()
            } else {
                "connection failed".into()
            },
        },
        SdkError::TimeoutError(_) => StoreError::Transport {
            op,
            detail: "timed out".into(),
        },
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let err = se.err();
            StoreError::Service {
                op,
                status,
                code: err.code().unwrap_or("Unknown").to_string(),
                message: err.message().unwrap_or_default().to_string(),
            }
        }
        SdkError::ResponseError(r) => StoreError::Transport {
            op,
            detail: format!("unreadable response (HTTP {})", r.raw().status().as_u16()),
        },
        other => StoreError::Service {
            op,
            status: 0,
            code: "ClientError".into(),
            message: other.to_string(),
        },
    }
}

/// Loads the AWS configuration: the standard credential chain, the
/// configured region, the endpoint override and per-call timeouts.
///
/// With an endpoint override (LocalStack, moto) and no credentials in the
/// environment, the local default `test`/`test` is used, so that a local run
/// never waits on the instance-metadata service.
pub async fn sdk_config(s: &Settings) -> aws_config::SdkConfig {
    load(s, s.aws_endpoint.as_deref()).await
}

/// The AWS configuration for S3 clients: as [`sdk_config`], with the S3
/// endpoint override (`FERRY_S3_ENDPOINT`, else `FERRY_AWS_ENDPOINT`).
pub async fn s3_config(s: &Settings) -> aws_config::SdkConfig {
    load(s, s.s3_endpoint()).await
}

/// The AWS configuration for DynamoDB clients: as [`sdk_config`], with the
/// DynamoDB endpoint override (`FERRY_DYNAMO_ENDPOINT`, else
/// `FERRY_AWS_ENDPOINT`).
pub async fn dynamo_config(s: &Settings) -> aws_config::SdkConfig {
    load(s, s.dynamo_endpoint()).await
}

async fn load(s: &Settings, endpoint: Option<&str>) -> aws_config::SdkConfig {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .operation_attempt_timeout(Duration::from_secs(10))
        .operation_timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(3))
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(s.aws_region.clone()))
        .timeout_config(timeouts);
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none()
            && std::env::var_os("AWS_PROFILE").is_none()
        {
            loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                "test",
                "test",
                None,
                None,
                "ferry-local",
            ));
        }
    }
    loader.load().await
}
