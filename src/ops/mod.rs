//! Operator and support commands, shared by the CLI and the admin HTTP API.
//! Each returns a typed, serializable report; refusals say why and what to
//! do next.

pub mod failures;
pub mod lifecycle;
pub mod queue;
pub mod status;
pub mod throttle;
pub mod verify;

use crate::index::IndexError;
use crate::queue::QueueError;
use crate::stores::StoreError;
use thiserror::Error;

/// Why an operator command did not do what was asked.
#[derive(Debug, Error)]
pub enum OpsError {
    /// The command is not safe in the current state; the text says why and
    /// what to do instead.
    #[error("refused: {0}")]
    Refused(String),
    /// Bad input (file, id, option).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// The index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// A store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The broker failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl From<crate::types::InvalidValue> for OpsError {
    fn from(e: crate::types::InvalidValue) -> Self {
        OpsError::Invalid(e.to_string())
    }
}

impl From<crate::worker::scanner::ScanError> for OpsError {
    fn from(e: crate::worker::scanner::ScanError) -> Self {
        use crate::worker::scanner::ScanError;
        match e {
            ScanError::Index(e) => e.into(),
            ScanError::Store(e) => e.into(),
            ScanError::Queue(e) => e.into(),
            ScanError::State(crate::worker::state::StateError::Index(e)) => e.into(),
            ScanError::State(crate::worker::state::StateError::Completion(e)) => e.into(),
        }
    }
}
