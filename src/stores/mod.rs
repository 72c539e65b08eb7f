//! The primary stores and the projection: originals in S3, user edits in
//! DynamoDB, and the pure function that rebuilds a document from both.

pub mod aws;
pub mod batch;
pub mod control;
pub mod edits;
pub mod originals;
pub mod projection;
pub mod setup;

pub use aws::StoreError;
pub use batch::{Projected, Stores};
pub use edits::{EditItem, Edits};
pub use originals::Originals;
pub use projection::{project, Document, Projection, ProjectionError};
