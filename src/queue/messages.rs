//! Message kinds and their parsing. Parsing never panics and never loses a
//! message: anything that does not parse is a [`Rejection`] whose reason
//! goes into the dead-letter headers.

use crate::index::records;
use crate::types::{DocId, IndexName, Version};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

/// Why a message was refused; `code()` is the `x-ferry-reason` header.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum Rejection {
    /// Larger than the configured limit.
    #[error("message is {size} bytes; the limit is {limit}")]
    TooLarge { size: usize, limit: usize },
    /// Not JSON at all.
    #[error("message is not valid JSON: {0}")]
    NotJson(String),
    /// A `kind` ferry does not know.
    #[error("unknown message kind {0:?}")]
    UnknownKind(String),
    /// Missing or invalid document id.
    #[error("invalid document id: {0}")]
    InvalidId(String),
    /// Valid JSON of the wrong shape.
    #[error("invalid message: {0}")]
    Invalid(String),
}

impl Rejection {
    /// The reason code carried in the `x-ferry-reason` header.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::TooLarge { .. } => "too-large",
            Rejection::NotJson(_) => "malformed-json",
            Rejection::UnknownKind(_) => "unknown-kind",
            Rejection::InvalidId(_) => "invalid-id",
            Rejection::Invalid(_) => "invalid-message",
        }
    }
}

/// The kind of a high-priority message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DocKind {
    /// A new or replaced original.
    Upload,
    /// A user edit.
    Edit,
    /// A delete (the edits item is a tombstone).
    Delete,
}

impl DocKind {
    /// The routing key and `kind` value.
    pub fn as_str(self) -> &'static str {
        match self {
            DocKind::Upload => "upload",
            DocKind::Edit => "edit",
            DocKind::Delete => "delete",
        }
    }
}

/// An upload, edit or delete: it only names the document; ferry reads the
/// stores for its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocMessage {
    /// What happened.
    pub kind: DocKind,
    /// Which document.
    pub id: DocId,
    /// The version the pipeline wrote (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Version>,
}

/// What a migration message carries: exactly one of these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Payload {
    /// The projected document.
    Document(Value),
    /// The stores hold a tombstone.
    Deleted(bool),
    /// Projection failed, with the normalized reason.
    Failure(String),
}

impl Payload {
    /// What the schema asks beyond the shape serde checks.
    fn check(&self) -> Result<(), Rejection> {
        let bad = |why: &str| Err(Rejection::Invalid(why.into()));
        match self {
            Payload::Document(v) if !v.is_object() => bad("document is not a JSON object"),
            Payload::Deleted(false) => bad("deleted is true when present"),
            Payload::Failure(f) if f.chars().count() > records::MAX_MESSAGE_CHARS => bad(&format!(
                "failure is longer than {} characters",
                records::MAX_MESSAGE_CHARS
            )),
            _ => Ok(()),
        }
    }
}

/// A projection taken by the scanner, to be written by a processor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrateMessage {
    /// Which document.
    pub id: DocId,
    /// The migration index it was projected for.
    pub target: IndexName,
    /// Primary-store version of the projection.
    pub version: Version,
    /// `_seq_no` of the Current document when scanned.
    pub seq_no: u64,
    /// `_primary_term` of the Current document when scanned.
    pub primary_term: u64,
    /// The projection.
    #[serde(flatten)]
    pub payload: Payload,
}

/// Any message ferry consumes.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// High priority.
    Doc(DocMessage),
    /// Low priority.
    Migrate(Box<MigrateMessage>),
}

impl Message {
    /// Parses a message body, checking size, JSON, kind, id and shape in
    /// that order so the reason names the first thing wrong.
    pub fn parse(body: &[u8], limit: usize) -> Result<Message, Rejection> {
        if body.len() > limit {
            return Err(Rejection::TooLarge {
                size: body.len(),
                limit,
            });
        }
        let value: Value =
            serde_json::from_slice(body).map_err(|e| Rejection::NotJson(e.to_string()))?;
        let obj = value
            .as_object()
            .ok_or_else(|| Rejection::Invalid("message is not a JSON object".into()))?;
        let kind = match obj.get("kind") {
            Some(Value::String(k)) => k.clone(),
            Some(_) => return Err(Rejection::Invalid("kind is not a string".into())),
            None => return Err(Rejection::Invalid("kind is missing".into())),
        };
        if !matches!(kind.as_str(), "upload" | "edit" | "delete" | "migrate") {
            return Err(Rejection::UnknownKind(kind.chars().take(64).collect()));
        }
        match obj.get("id") {
            Some(Value::String(id)) => {
                DocId::parse(id.as_str()).map_err(|e| Rejection::InvalidId(e.to_string()))?;
            }
            Some(_) => return Err(Rejection::InvalidId("id is not a string".into())),
            None => return Err(Rejection::InvalidId("id is missing".into())),
        }
        let shape = |e: serde_json::Error| Rejection::Invalid(e.to_string());
        if kind == "migrate" {
            let mut fields = obj.clone();
            fields.remove("kind");
            // A flattened enum takes the first payload it meets; the
            // contract (queues/schemas) says exactly one.
            let payloads = ["document", "deleted", "failure"]
                .iter()
                .filter(|k| fields.contains_key(**k))
                .count();
            if payloads != 1 {
                return Err(Rejection::Invalid(format!(
                    "a migrate message carries exactly one of document, deleted, failure (this one has {payloads})"
                )));
            }
            let m: MigrateMessage = serde_json::from_value(Value::Object(fields)).map_err(shape)?;
            m.payload.check()?;
            Ok(Message::Migrate(Box::new(m)))
        } else {
            serde_json::from_value(value)
                .map(Message::Doc)
                .map_err(shape)
        }
    }

    /// The document this message is about.
    pub fn id(&self) -> &DocId {
        match self {
            Message::Doc(d) => &d.id,
            Message::Migrate(m) => &m.id,
        }
    }
}

impl MigrateMessage {
    /// Where the Current document stood when scanned.
    pub fn seq_term(&self) -> crate::types::SeqTerm {
        crate::types::SeqTerm {
            seq_no: self.seq_no,
            primary_term: self.primary_term,
        }
    }

    /// The body to publish (`kind: migrate` plus the fields).
    pub fn to_body(&self) -> Vec<u8> {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(o) = &mut v {
            o.insert("kind".into(), Value::String("migrate".into()));
        }
        v.to_string().into_bytes()
    }
}

impl DocMessage {
    /// The body to publish.
    pub fn to_body(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(body: &[u8]) -> &'static str {
        Message::parse(body, 1000).unwrap_err().code()
    }

    #[test]
    fn bad_messages_are_refused_with_a_reason() {
        assert_eq!(reason(b"{not json"), "malformed-json");
        assert_eq!(reason(b"[1,2]"), "invalid-message");
        assert_eq!(reason(br#"{"kind":"rename","id":"a"}"#), "unknown-kind");
        assert_eq!(reason(br#"{"kind":"edit"}"#), "invalid-id");
        assert_eq!(reason(br#"{"kind":"edit","id":""}"#), "invalid-id");
        assert_eq!(reason(br#"{"kind":"edit","id":7}"#), "invalid-id");
        assert_eq!(reason(br#"{"kind":"edit","id":"a\u0001"}"#), "invalid-id");
        assert_eq!(
            reason(br#"{"kind":"edit","id":"a","version":"x"}"#),
            "invalid-message"
        );
        assert_eq!(
            reason(br#"{"kind":"migrate","id":"a","target":"t"}"#),
            "invalid-message"
        );
        let migrate = |payload: &str| {
            let body = format!(
                r#"{{"kind":"migrate","id":"a","target":"t","version":1,"seq_no":0,"primary_term":1,{payload}}}"#
            );
            Message::parse(body.as_bytes(), 10_000)
        };
        assert!(migrate(r#""deleted":true"#).is_ok());
        assert!(migrate(r#""failure":"x""#).is_ok());
        assert!(migrate(r#""document":{}"#).is_ok());
        let long = format!(r#""failure":"{}""#, "x".repeat(257));
        for payload in [
            r#""deleted":false"#,
            r#""document":5"#,
            r#""document":{},"deleted":true"#,
            r#""version_only":1"#,
            long.as_str(),
        ] {
            assert_eq!(
                migrate(payload).map_err(|e| e.code()),
                Err("invalid-message"),
                "{payload}"
            );
        }
        assert_eq!(reason(&vec![b' '; 1001]), "too-large");
    }

    #[test]
    fn messages_round_trip() {
        let d = DocMessage {
            kind: DocKind::Delete,
            id: DocId::parse("x/y").unwrap(),
            version: None,
        };
        assert_eq!(Message::parse(&d.to_body(), 1000).unwrap(), Message::Doc(d));
        let m = MigrateMessage {
            id: DocId::parse("a").unwrap(),
            target: IndexName::parse("images_1").unwrap(),
            version: Version::new(2).unwrap(),
            seq_no: 5,
            primary_term: 1,
            payload: Payload::Failure("boom".into()),
        };
        assert_eq!(
            Message::parse(&m.to_body(), 10_000).unwrap(),
            Message::Migrate(Box::new(m))
        );
    }
}
