//! Which engine answers, read once from `GET /`, and the one place that
//! decides what differs between the engines ferry supports: OpenSearch
//! 1.x, 2.x and 3.x, Elasticsearch 7.10 and later 7.x, and 8.x. Everything
//! else ferry sends is common to all of them (`require_alias` since
//! Elasticsearch 7.10 and OpenSearch 1.0, typeless mappings and bulk
//! replies, `if_seq_no`, external versions, `version_conflict_engine_exception`).

use serde::Serialize;
use serde_json::Value;
use std::fmt;
use thiserror::Error;

/// The engine family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// OpenSearch (any distribution reporting `distribution: opensearch`).
    OpenSearch,
    /// Elasticsearch.
    Elasticsearch,
}

/// An engine and its version, as `GET /` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Flavor {
    /// The engine family.
    pub engine: Engine,
    /// Major, minor, patch.
    pub version: (u32, u32, u32),
}

/// How ferry reads a whole index consistently on this engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullRead {
    /// Elasticsearch's point in time (`POST /{index}/_pit`) paged with
    /// `search_after` on `_shard_doc` (7.12 and later).
    PointInTime,
    /// A scroll sorted by `_doc`: every engine has it, and it is the one
    /// consistent full read that needs no tiebreaker field. OpenSearch's
    /// point-in-time API has no `_shard_doc` tiebreaker ferry can rely on
    /// across its versions, and Elasticsearch before 7.12 has none either.
    Scroll,
}

/// A cluster ferry cannot work with.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FlavorError {
    /// `GET /` did not say which engine and version answer.
    #[error("the index server's `GET /` reply does not name an engine version ({0}); is this OpenSearch or Elasticsearch?")]
    Unreadable(String),
    /// A version ferry does not support.
    #[error("{0} is not supported: ferry needs OpenSearch 1.x-3.x or Elasticsearch 7.10+/8.x (`require_alias`, typeless bulk replies, compare-and-set by `if_seq_no`)")]
    Unsupported(Flavor),
}

impl Flavor {
    /// Reads the engine and version from a `GET /` reply and checks that
    /// ferry supports it.
    pub fn from_root(root: &Value) -> Result<Self, FlavorError> {
        let version = root.get("version").unwrap_or(&Value::Null);
        let number = version
            .get("number")
            .and_then(Value::as_str)
            .ok_or_else(|| FlavorError::Unreadable("no version.number".into()))?;
        let parsed = parse_version(number)
            .ok_or_else(|| FlavorError::Unreadable(format!("version {number:?}")))?;
        let engine = match version.get("distribution").and_then(Value::as_str) {
            Some("opensearch") => Engine::OpenSearch,
            Some(other) => {
                return Err(FlavorError::Unreadable(format!(
                    "unknown distribution {other:?}"
                )))
            }
            None => Engine::Elasticsearch,
        };
        let flavor = Flavor {
            engine,
            version: parsed,
        };
        if flavor.supported() {
            Ok(flavor)
        } else {
            Err(FlavorError::Unsupported(flavor))
        }
    }

    fn supported(&self) -> bool {
        match (self.engine, self.version) {
            // OpenSearch in compatibility mode reports 7.10.2
            // (`compatibility.override_main_response_version`).
            (Engine::OpenSearch, (1..=3, _, _) | (7, 10, _)) => true,
            (Engine::Elasticsearch, (7, minor, _)) => minor >= 10,
            (Engine::Elasticsearch, (8, _, _)) => true,
            _ => false,
        }
    }

    /// How to read a whole index consistently.
    pub fn full_read(&self) -> FullRead {
        match (self.engine, self.version) {
            (Engine::Elasticsearch, (8, _, _)) => FullRead::PointInTime,
            (Engine::Elasticsearch, (7, minor, _)) if minor >= 12 => FullRead::PointInTime,
            _ => FullRead::Scroll,
        }
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (major, minor, patch) = self.version;
        let name = match self.engine {
            Engine::OpenSearch => "OpenSearch",
            Engine::Elasticsearch => "Elasticsearch",
        };
        write!(f, "{name} {major}.{minor}.{patch}")
    }
}

/// `8.11.1`, `2.11.0`, `7.10.2-SNAPSHOT` -> (major, minor, patch).
fn parse_version(s: &str) -> Option<(u32, u32, u32)> {
    let core = s.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(str::parse::<u32>);
    let major = parts.next()?.ok()?;
    let minor = parts.next().unwrap_or(Ok(0)).ok()?;
    let patch = parts.next().unwrap_or(Ok(0)).ok()?;
    Some((major, minor, patch))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::index::bulk::item_outcome;
    use crate::index::docs::write_outcome;
    use crate::index::{StoredDoc, Write};
    use reqwest::StatusCode;

    /// A reply body in an engine's documented shape (tests/engines/).
    fn body(engine: &str, name: &str) -> Value {
        let path = format!(
            "{}/tests/engines/{engine}/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap()
    }

    fn root(engine: &str) -> Value {
        body(engine, "root")
    }

    const SUPPORTED: [&str; 6] = [
        "opensearch-1.3",
        "opensearch-2.19",
        "opensearch-3.1",
        "elasticsearch-7.10",
        "elasticsearch-7.17",
        "elasticsearch-8.18",
    ];

    #[test]
    fn every_engine_s_write_replies_read_the_same() {
        for engine in SUPPORTED {
            // Bulk: created, external-version conflict, missing alias under
            // require_alias, delete of an absent document, update of a
            // missing one; typed (7.x, OpenSearch 1.x) or not.
            let bulk = body(engine, "bulk");
            let items = bulk["items"].as_array().unwrap();
            let read: Vec<_> = items
                .iter()
                .map(|i| item_outcome(i, Write::Stale))
                .map(|(status, r)| (status.as_u16(), r.unwrap()))
                .collect();
            assert_eq!(
                read,
                [
                    (201, Write::Done),
                    (409, Write::Stale),
                    (404, Write::NoAlias),
                    (404, Write::Done),
                    (404, Write::Missing),
                ],
                "{engine}"
            );
            // A single write's 409 body.
            let conflict = body(engine, "conflict");
            let w = write_outcome("PUT", StatusCode::CONFLICT, &conflict, Write::Conflict);
            assert_eq!(w.unwrap(), Write::Conflict, "{engine}");
            let e = crate::index::client::status_error("PUT", StatusCode::CONFLICT, &conflict);
            assert_eq!(
                e.kind(),
                Some("version_conflict_engine_exception"),
                "{engine}"
            );
            // A document read, with its compare-and-set token.
            let doc = StoredDoc::from_hit(&body(engine, "get")).expect(engine);
            assert_eq!((doc.seq_no, doc.primary_term, doc.version()), (11, 2, 4));
        }
    }

    #[test]
    fn every_supported_engine_is_recognised_with_its_full_read() {
        let cases = [
            ("opensearch-1.3", "OpenSearch 1.3.20", FullRead::Scroll),
            ("opensearch-2.19", "OpenSearch 2.19.1", FullRead::Scroll),
            ("opensearch-3.1", "OpenSearch 3.1.0", FullRead::Scroll),
            (
                "elasticsearch-7.10",
                "Elasticsearch 7.10.2",
                FullRead::Scroll,
            ),
            (
                "elasticsearch-7.17",
                "Elasticsearch 7.17.28",
                FullRead::PointInTime,
            ),
            (
                "elasticsearch-8.18",
                "Elasticsearch 8.18.2",
                FullRead::PointInTime,
            ),
        ];
        for (dir, shown, read) in cases {
            let f = Flavor::from_root(&root(dir)).unwrap_or_else(|e| panic!("{dir}: {e}"));
            assert_eq!(
                (f.to_string().as_str(), f.full_read()),
                (shown, read),
                "{dir}"
            );
        }
    }

    #[test]
    fn unsupported_engines_are_refused_with_the_reason() {
        for dir in ["elasticsearch-6.8", "elasticsearch-9.0"] {
            let e = Flavor::from_root(&root(dir)).unwrap_err();
            assert!(matches!(e, FlavorError::Unsupported(_)), "{dir}: {e}");
            assert!(e.to_string().contains("is not supported"), "{e}");
        }
        let e = Flavor::from_root(&serde_json::json!({"ok": true})).unwrap_err();
        assert!(e.to_string().contains("no version.number"), "{e}");
        let odd = serde_json::json!({"version": {"number": "x.y"}});
        assert!(matches!(
            Flavor::from_root(&odd),
            Err(FlavorError::Unreadable(_))
        ));
    }

    #[test]
    fn opensearch_in_compatibility_mode_is_opensearch() {
        let compat =
            serde_json::json!({"version": {"distribution": "opensearch", "number": "7.10.2"}});
        let f = Flavor::from_root(&compat).unwrap();
        assert_eq!(
            (f.engine, f.full_read()),
            (Engine::OpenSearch, FullRead::Scroll)
        );
    }

    #[test]
    fn versions_parse_with_suffixes() {
        assert_eq!(parse_version("7.10.2-SNAPSHOT"), Some((7, 10, 2)));
        assert_eq!(parse_version("8.0"), Some((8, 0, 0)));
        assert_eq!(parse_version("v8"), None);
    }
}
