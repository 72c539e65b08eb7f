//! Operator and support commands, shared by the CLI and the admin HTTP API.
//! Each returns a typed, serializable report; refusals say why and what to
//! do next.

pub mod across;
pub mod audit;
pub mod backfill;
pub mod cleanup;
pub mod compare;
pub mod conditions;
pub mod failures;
pub mod input;
pub mod lifecycle;
pub mod queue;
pub mod status;
pub mod throttle;
pub mod trial;
pub mod verify;

use crate::context::Ctx;
use crate::index::{AliasState, IndexError};
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

impl From<crate::queue::migrate::PublishError> for OpsError {
    fn from(e: crate::queue::migrate::PublishError) -> Self {
        use crate::queue::migrate::PublishError;
        match e {
            PublishError::Store(e) => e.into(),
            PublishError::Queue(e) => e.into(),
        }
    }
}

impl From<crate::index::MappingError> for OpsError {
    fn from(e: crate::index::MappingError) -> Self {
        OpsError::Invalid(e.to_string())
    }
}

impl From<crate::types::InvalidValue> for OpsError {
    fn from(e: crate::types::InvalidValue) -> Self {
        OpsError::Invalid(e.to_string())
    }
}

impl From<crate::context::state::StateError> for OpsError {
    fn from(e: crate::context::state::StateError) -> Self {
        use crate::context::state::StateError;
        match e {
            StateError::Index(e) => e.into(),
            StateError::Completion(e) => e.into(),
            e @ StateError::TargetUnknown { .. } => OpsError::Invalid(e.to_string()),
        }
    }
}

/// Reads the state fresh and refuses if it breaks an invariant.
pub async fn healthy_state(ctx: &Ctx) -> Result<AliasState, OpsError> {
    ctx.state.invalidate().await;
    let st = ctx.alias_state().await?;
    let v = st.violations(&ctx.aliases);
    if !v.is_empty() {
        return Err(OpsError::Refused(format!(
            "the aliases break an invariant: {}. Fix them by hand (one _aliases request), then run `ferry status`",
            v.join("; ")
        )));
    }
    Ok(st)
}

/// What a lifecycle command did, for the CLI and the API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Changed {
    /// One sentence: what happened.
    pub done: String,
    /// One sentence: what to do next.
    pub next: String,
    /// The index the command acted on.
    pub index: String,
}

fn changed(done: String, next: &str, index: &impl ToString) -> Changed {
    Changed {
        done,
        next: next.to_string(),
        index: index.to_string(),
    }
}
