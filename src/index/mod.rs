//! The search index over HTTP: client, alias state, documents, bulk, scan,
//! mapping files, and the outcome records ferry keeps on the old index.

pub mod aliases;
pub mod bulk;
pub mod client;
pub mod cluster;
pub mod docs;
pub mod flavor;
pub mod mapping;
pub mod records;
pub mod scan;

pub use aliases::{AliasState, Aliases};
pub use bulk::{BulkItem, BulkOp};
pub use client::{IndexClient, IndexError, Target};
pub use cluster::Cluster;
pub use docs::{Landed, Lookup, StoredDoc, Write};
pub use mapping::{read_mapping, MappingError};
