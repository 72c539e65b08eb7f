//! The mapping file: mappings and settings of a new index, as JSON.

use serde_json::Value;
use thiserror::Error;

/// Why a mapping file cannot be used.
#[derive(Debug, Error)]
pub enum MappingError {
    /// The file cannot be read.
    #[error("cannot read mapping file {path}: {source}")]
    Unreadable {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not JSON.
    #[error("mapping file {path} is not valid JSON: {source}")]
    NotJson {
        /// The file.
        path: String,
        /// Why.
        source: serde_json::Error,
    },
}

/// Reads a mapping file.
pub fn read_mapping(path: &str) -> Result<Value, MappingError> {
    let text = std::fs::read_to_string(path).map_err(|source| MappingError::Unreadable {
        path: path.into(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| MappingError::NotJson {
        path: path.into(),
        source,
    })
}
