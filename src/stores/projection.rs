//! The projection: a pure function `(original, edits item) -> document`.
//!
//! It never reads the old index. The same inputs at the same version give a
//! byte-identical document (fixed field order, sorted maps and labels).

use super::edits::EditItem;
use crate::types::{DocId, Version};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use thiserror::Error;

/// Why a document could not be projected. Messages never name the document,
/// so failure records group by cause.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ProjectionError {
    /// No original in S3 for a live document.
    #[error("original not found in S3")]
    MissingOriginal,
    /// No edits item in DynamoDB.
    #[error("edits item not found in DynamoDB")]
    MissingEdits,
    /// The original is not the JSON ferry expects.
    #[error("original is not valid: {0}")]
    InvalidOriginal(String),
    /// The edits item has attributes of the wrong type.
    #[error("edits item is not valid: {0}")]
    InvalidEdits(String),
}

/// What the stores say a document is now.
#[derive(Debug, Clone, PartialEq)]
pub enum Projection {
    /// A live document.
    Document(Box<Document>),
    /// Deleted at this version (a tombstone).
    Deleted { id: DocId, version: Version },
}

impl Projection {
    /// The primary-store version this projection is at.
    pub fn version(&self) -> Version {
        match self {
            Projection::Document(d) => d.version,
            Projection::Deleted { version, .. } => *version,
        }
    }
}

/// The original file's description, as the upload pipeline stored it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceFile {
    /// Where the file lives.
    pub file: String,
    /// Its MIME type.
    pub mime_type: String,
    /// Size in bytes.
    pub size: u64,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// Descriptive metadata (from the file, or overridden by users).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    /// Headline or title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Caption.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Photographer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub byline: Option<String>,
    /// Credit line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credit: Option<String>,
    /// Copyright notice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copyright: Option<String>,
    /// Keywords.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keywords: Option<Vec<String>>,
    /// When the picture was taken (ISO 8601).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date_taken: Option<String>,
}

impl Metadata {
    /// `self` with every field set in `over` replaced.
    fn overlaid(&self, over: &Metadata) -> Metadata {
        Metadata {
            title: over.title.clone().or_else(|| self.title.clone()),
            description: over
                .description
                .clone()
                .or_else(|| self.description.clone()),
            byline: over.byline.clone().or_else(|| self.byline.clone()),
            credit: over.credit.clone().or_else(|| self.credit.clone()),
            copyright: over.copyright.clone().or_else(|| self.copyright.clone()),
            keywords: over.keywords.clone().or_else(|| self.keywords.clone()),
            date_taken: over.date_taken.clone().or_else(|| self.date_taken.clone()),
        }
    }
}

/// Who may use the picture, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UsageRights {
    /// Category (`staff-photographer`, `agency`, `handout`, ...).
    pub category: String,
    /// Free-text restrictions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restrictions: Option<String>,
}

/// The original as stored in S3 by the upload pipeline.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Original {
    upload_time: String,
    uploaded_by: String,
    source: SourceFile,
    #[serde(default)]
    metadata: Metadata,
    usage_rights: Option<UsageRights>,
    #[serde(default)]
    file_metadata: BTreeMap<String, Value>,
}

/// User edits as stored in the DynamoDB item.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserEdits {
    #[serde(default)]
    metadata: Option<Metadata>,
    #[serde(default)]
    labels: Option<Vec<String>>,
    #[serde(default)]
    usage_rights: Option<UsageRights>,
    #[serde(default)]
    archived: Option<bool>,
    #[serde(default)]
    last_modified: Option<String>,
    #[serde(default)]
    last_modified_by: Option<String>,
}

/// What users changed, kept apart from the merged view.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserMetadata {
    /// Labels, sorted and without duplicates.
    pub labels: Vec<String>,
    /// Archived by a user.
    pub archived: bool,
    /// The metadata fields users overrode.
    pub metadata_overrides: Metadata,
}

/// The index document of one picture.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Document {
    /// Document id.
    pub id: DocId,
    /// Primary-store version; orders every write.
    pub version: Version,
    /// When it was uploaded.
    pub upload_time: String,
    /// Who uploaded it.
    pub uploaded_by: String,
    /// Last change (upload or edit).
    pub last_modified: String,
    /// Who changed it last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_modified_by: Option<String>,
    /// The original file.
    pub source: SourceFile,
    /// Raw file metadata (EXIF, IPTC, ...), as extracted at upload.
    pub file_metadata: BTreeMap<String, Value>,
    /// Metadata as read from the file.
    pub original_metadata: Metadata,
    /// Metadata as readers see it: the original overlaid with user overrides.
    pub metadata: Metadata,
    /// Effective usage rights.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_rights: Option<UsageRights>,
    /// User edits.
    pub user_metadata: UserMetadata,
}

impl Document {
    /// The document as JSON, ready to index.
    pub fn to_json(&self) -> Value {
        // Serializing plain structs, strings and BTreeMaps cannot fail.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// Rebuilds a document from its original (absent when missing in S3) and
/// its edits item.
pub fn project(original: Option<&[u8]>, edits: &EditItem) -> Result<Projection, ProjectionError> {
    if edits.deleted {
        return Ok(Projection::Deleted {
            id: edits.id.clone(),
            version: edits.version,
        });
    }
    let raw = original.ok_or(ProjectionError::MissingOriginal)?;
    let original: Original =
        serde_json::from_slice(raw).map_err(|e| ProjectionError::InvalidOriginal(e.to_string()))?;
    let user: UserEdits = serde_json::from_value(edits.attrs.clone())
        .map_err(|e| ProjectionError::InvalidEdits(e.to_string()))?;
    let overrides = user.metadata.unwrap_or_default();
    let mut labels = user.labels.unwrap_or_default();
    labels.sort();
    labels.dedup();
    Ok(Projection::Document(Box::new(Document {
        id: edits.id.clone(),
        version: edits.version,
        last_modified: user
            .last_modified
            .unwrap_or_else(|| original.upload_time.clone()),
        last_modified_by: user.last_modified_by,
        upload_time: original.upload_time,
        uploaded_by: original.uploaded_by,
        source: original.source,
        file_metadata: original.file_metadata,
        metadata: original.metadata.overlaid(&overrides),
        original_metadata: original.metadata,
        usage_rights: user.usage_rights.or(original.usage_rights),
        user_metadata: UserMetadata {
            labels,
            archived: user.archived.unwrap_or(false),
            metadata_overrides: overrides,
        },
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(attrs: Value, deleted: bool) -> EditItem {
        EditItem {
            id: DocId::parse("p1").unwrap(),
            version: Version::new(3).unwrap(),
            deleted,
            attrs,
        }
    }

    fn original() -> Vec<u8> {
        json!({
            "uploadTime": "2026-01-02T03:04:05Z", "uploadedBy": "ann@example.com",
            "source": {"file": "s3://b/p1.jpg", "mimeType": "image/jpeg", "size": 100, "width": 4, "height": 3},
            "metadata": {"title": "Dawn", "byline": "Ann", "keywords": ["sun"]},
            "fileMetadata": {"exif": {"iso": 100}}
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn user_overrides_win_and_originals_are_kept() {
        let p = project(
            Some(&original()),
            &item(
                json!({"metadata": {"title": "Dusk"}, "labels": ["b", "a", "b"], "archived": true}),
                false,
            ),
        )
        .unwrap();
        let Projection::Document(d) = p else {
            panic!("deleted")
        };
        assert_eq!(d.metadata.title.as_deref(), Some("Dusk"));
        assert_eq!(d.metadata.byline.as_deref(), Some("Ann"));
        assert_eq!(d.original_metadata.title.as_deref(), Some("Dawn"));
        assert_eq!(d.user_metadata.labels, vec!["a", "b"]);
        assert!(d.user_metadata.archived);
        assert_eq!(d.version.get(), 3);
        assert_eq!(d.last_modified, "2026-01-02T03:04:05Z");
    }

    #[test]
    fn same_inputs_give_identical_bytes() {
        let it = item(
            json!({"labels": ["x"], "usageRights": {"category": "agency"}}),
            false,
        );
        let bytes = || match project(Some(&original()), &it).unwrap() {
            Projection::Document(d) => serde_json::to_vec(&d.to_json()).unwrap(),
            other => panic!("not a document: {other:?}"),
        };
        let (a, b) = (bytes(), bytes());
        assert_eq!(a, b);
    }

    #[test]
    fn tombstones_need_no_original() {
        assert_eq!(
            project(None, &item(json!({}), true)).unwrap(),
            Projection::Deleted {
                id: DocId::parse("p1").unwrap(),
                version: Version::new(3).unwrap()
            }
        );
    }

    #[test]
    fn broken_inputs_are_typed_errors() {
        assert_eq!(
            project(None, &item(json!({}), false)),
            Err(ProjectionError::MissingOriginal)
        );
        assert!(matches!(
            project(Some(b"not json"), &item(json!({}), false)),
            Err(ProjectionError::InvalidOriginal(_))
        ));
        assert!(matches!(
            project(Some(&original()), &item(json!({"labels": "a"}), false)),
            Err(ProjectionError::InvalidEdits(_))
        ));
        assert!(matches!(
            project(Some(&original()), &item(json!({"archived": "yes"}), false)),
            Err(ProjectionError::InvalidEdits(_))
        ));
    }
}
