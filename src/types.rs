//! Small types that carry meaning: document ids, index names, versions.
//!
//! Parsing validates once, at the edge; everything inside ferry can trust them.

use serde::{Deserialize, Serialize};
use std::fmt;
use thiserror::Error;

/// Why a value was rejected at the edge.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum InvalidValue {
    #[error("document id is empty")]
    EmptyId,
    #[error("document id is {0} bytes long; the limit is 512")]
    IdTooLong(usize),
    #[error("document id contains a control character")]
    IdControlChar,
    #[error("document id must not be '.' or '..'")]
    IdDotSegment,
    #[error("index name {0:?} is not valid: {1}")]
    IndexName(String, &'static str),
    #[error("version {0} is out of range (0..=9223372036854775807)")]
    Version(i128),
}

/// A document id, valid as an OpenSearch/Elasticsearch `_id`.
///
/// Any byte sequence the server accepts is allowed, including `/`, `?`, `#`,
/// `%` and `..` inside an id: paths always percent-encode it. Whole ids `.`
/// and `..` are refused because URL normalisation would turn them into a
/// different path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct DocId(String);

impl DocId {
    /// Longest id the index servers accept, in bytes.
    pub const MAX_BYTES: usize = 512;

    /// Validates an id.
    pub fn parse(raw: impl Into<String>) -> Result<Self, InvalidValue> {
        let raw = raw.into();
        if raw.is_empty() {
            return Err(InvalidValue::EmptyId);
        }
        if raw.len() > Self::MAX_BYTES {
            return Err(InvalidValue::IdTooLong(raw.len()));
        }
        if raw.chars().any(char::is_control) {
            return Err(InvalidValue::IdControlChar);
        }
        if raw == "." || raw == ".." {
            return Err(InvalidValue::IdDotSegment);
        }
        Ok(Self(raw))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for DocId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        DocId::parse(raw).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A concrete index name or an alias name, as used in request paths.
///
/// Alias names may contain upper case (`Images_Current`), concrete index
/// names created by ferry never do; both share the other rules.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct IndexName(String);

impl IndexName {
    /// Names as a comma-separated list ("a, b"; "-" for none), for
    /// messages and pages.
    pub fn list(names: &[IndexName]) -> String {
        if names.is_empty() {
            return "-".into();
        }
        names
            .iter()
            .map(IndexName::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// This name with `suffix` (valid characters only) appended.
    pub fn with_suffix(&self, suffix: &str) -> Self {
        Self(format!("{}{suffix}", self.0))
    }

    /// Validates an index or alias name.
    pub fn parse(raw: impl Into<String>) -> Result<Self, InvalidValue> {
        let raw = raw.into();
        let bad = |why| Err(InvalidValue::IndexName(raw.clone(), why));
        if raw.is_empty() || raw.len() > 255 {
            return bad("it must be 1 to 255 bytes long");
        }
        if raw == "." || raw == ".." {
            return bad("it must not be '.' or '..'");
        }
        if raw.starts_with(['-', '_', '+']) {
            return bad("it must not start with '-', '_' or '+'");
        }
        if raw.chars().any(|c| {
            matches!(
                c,
                '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ' ' | ',' | '#' | ':'
            ) || c.is_control()
        }) {
            return bad("it must not contain \\ / * ? \" < > | , # : space or control characters");
        }
        Ok(Self(raw))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for IndexName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        IndexName::parse(raw).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for IndexName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An index name reads as the text it is (`&IndexName` where `&str` is
/// wanted), so that validated names flow into URLs and messages unchanged.
impl std::ops::Deref for IndexName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<String> for IndexName {
    fn eq(&self, other: &String) -> bool {
        self.0 == *other
    }
}

impl PartialEq<&str> for IndexName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl std::str::FromStr for IndexName {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The primary-store version of a document: orders every write everywhere.
///
/// Stored in DynamoDB, carried by every projection, used as the external
/// version in the Migration index. Always within `0..=i64::MAX`, the range
/// the index servers accept for external versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Version(u64);

impl Version {
    /// Largest version the index servers accept.
    pub const MAX: u64 = i64::MAX as u64;
    /// The version an upload creates.
    pub const FIRST: Version = Version(1);
    /// Before any upload.
    pub const ZERO: Version = Version(0);

    /// Validates a version number.
    pub fn new(v: u64) -> Result<Self, InvalidValue> {
        if v > Self::MAX {
            return Err(InvalidValue::Version(v as i128));
        }
        Ok(Self(v))
    }

    /// The version as a number.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The next version (what a store update writes).
    pub fn next(self) -> Self {
        Self(self.0.saturating_add(1).min(Self::MAX))
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = i128::deserialize(d)?;
        u64::try_from(raw)
            .map_err(|_| InvalidValue::Version(raw))
            .and_then(Version::new)
            .map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where a document stood in its index when it was read: its `_seq_no`
/// and `_primary_term`, which a compare-and-set write names so that it
/// lands only if nothing changed the document since.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeqTerm {
    /// `_seq_no`.
    pub seq_no: u64,
    /// `_primary_term`.
    pub primary_term: u64,
}

impl SeqTerm {
    /// The query parameters of a write conditional on this position.
    pub fn condition(self) -> String {
        format!(
            "if_seq_no={}&if_primary_term={}",
            self.seq_no, self.primary_term
        )
    }
}

/// A secret setting: never printed by `Debug` or `Display`.
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// True when no secret was configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_string()))
    }
}

/// Replaces the password in a URL (`amqp://user:pw@host`) with `***`.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "<unparseable url>".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_with_path_characters_are_valid() {
        for id in ["a/b", "a?b", "a#b", "100%", "../x", "_all", "*", "a b"] {
            assert_eq!(DocId::parse(id).unwrap().as_str(), id);
        }
    }

    #[test]
    fn bad_ids_are_refused_with_reason() {
        assert_eq!(DocId::parse(""), Err(InvalidValue::EmptyId));
        assert_eq!(DocId::parse(".."), Err(InvalidValue::IdDotSegment));
        assert_eq!(DocId::parse("a\nb"), Err(InvalidValue::IdControlChar));
        assert_eq!(
            DocId::parse("x".repeat(513)),
            Err(InvalidValue::IdTooLong(513))
        );
    }

    #[test]
    fn versions_outside_the_external_range_are_refused() {
        assert!(serde_json::from_str::<Version>("-1").is_err());
        assert!(serde_json::from_str::<Version>("9223372036854775808").is_err());
        assert_eq!(serde_json::from_str::<Version>("7").unwrap().get(), 7);
    }

    #[test]
    fn secrets_and_url_passwords_are_never_printed() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?} {s}").contains("hunter2"));
        let red = redact_url("amqp://guest:hunter2@127.0.0.1:5672/%2f");
        assert!(!red.contains("hunter2") && red.contains("***"), "{red}");
    }

    #[test]
    fn index_names_reject_path_tricks() {
        for bad in ["", "a/b", "*", "_all", "a,b", "..", "a#b"] {
            assert!(IndexName::parse(bad).is_err(), "{bad}");
        }
        assert!(IndexName::parse("Images_Current").is_ok());
    }
}
