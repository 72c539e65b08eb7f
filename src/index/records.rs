//! Outcome records on the old index: `esInfo.migration.migratedTo` on
//! success, `esInfo.migration.failures.<target>` on failure, and the queries
//! that find documents by outcome.

use crate::types::{DocId, IndexName};
use serde_json::{json, Value};

/// Longest failure message kept, in characters.
pub const MAX_MESSAGE_CHARS: usize = 256;

/// Field holding the success record.
pub const MIGRATED_TO: &str = "esInfo.migration.migratedTo";

/// Field holding the failure record for `target`.
pub fn failure_field(target: &IndexName) -> String {
    format!("esInfo.migration.failures.{target}")
}

/// Documents with no outcome yet for `target`: what the scanner queues.
pub fn unmigrated(target: &IndexName) -> Value {
    json!({ "bool": { "must_not": [
        { "term": { MIGRATED_TO: target } },
        { "exists": { "field": failure_field(target) } }
    ]}})
}

/// Documents without an outcome for `target`, except `ids` (queued by
/// earlier scan passes and not processed yet).
pub fn unmigrated_except(target: &IndexName, ids: &[&DocId]) -> Value {
    if ids.is_empty() {
        return unmigrated(target);
    }
    json!({ "bool": { "must_not": [
        { "term": { MIGRATED_TO: target } },
        { "exists": { "field": failure_field(target) } },
        { "ids": { "values": ids } }
    ]}})
}

/// Documents migrated into `target`.
pub fn migrated(target: &IndexName) -> Value {
    json!({ "term": { MIGRATED_TO: target } })
}

/// Documents whose migration into `target` failed (and was not since
/// migrated by an edit).
pub fn failed(target: &IndexName) -> Value {
    json!({ "bool": {
        "filter": [{ "exists": { "field": failure_field(target) } }],
        "must_not": [{ "term": { MIGRATED_TO: target } }]
    }})
}

/// Failed documents whose message is exactly `message`.
pub fn failed_with(target: &IndexName, message: &str) -> Value {
    json!({ "bool": {
        "filter": [{ "term": { failure_field(target): message } }],
        "must_not": [{ "term": { MIGRATED_TO: target } }]
    }})
}

/// Partial document recording success (and clearing an older failure).
pub fn success(target: &IndexName) -> Value {
    json!({ "esInfo": { "migration": { "migratedTo": target, "failures": { target.as_str(): Value::Null } } } })
}

/// Partial document recording a failure.
pub fn failure(target: &IndexName, message: &str) -> Value {
    json!({ "esInfo": { "migration": { "failures": { target.as_str(): message } } } })
}

/// Partial document clearing a failure, so the scanner picks the document
/// up again (`failures retry`).
pub fn cleared(target: &IndexName) -> Value {
    json!({ "esInfo": { "migration": { "failures": { target.as_str(): Value::Null } } } })
}

/// Partial document clearing both outcomes for `target`, so the document
/// counts as unmigrated again (`queue --query`).
pub fn reset(target: &IndexName) -> Value {
    json!({ "esInfo": { "migration": { "migratedTo": Value::Null, "failures": { target.as_str(): Value::Null } } } })
}

/// The outcome recorded on a stored document for `target`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", content = "detail", rename_all = "snake_case")]
pub enum Outcome {
    /// Migrated into the target.
    Migrated,
    /// Failed, with the recorded message.
    Failed(String),
    /// Not handled yet.
    Pending,
}

/// Reads the outcome for `target` from a document body.
pub fn outcome_of(source: &Value, target: &IndexName) -> Outcome {
    let m = source.pointer("/esInfo/migration");
    if m.and_then(|m| m.get("migratedTo")).and_then(Value::as_str) == Some(target.as_str()) {
        return Outcome::Migrated;
    }
    match m
        .and_then(|m| m.get("failures"))
        .and_then(|f| f.get(target.as_str()))
        .and_then(Value::as_str)
    {
        Some(msg) => Outcome::Failed(msg.to_string()),
        None => Outcome::Pending,
    }
}

/// Turns an error into a failure message that groups by cause: the
/// document id removed, per-document value previews dropped, whitespace
/// collapsed, at most [`MAX_MESSAGE_CHARS`] characters.
pub fn normalize(message: &str, id: &DocId) -> String {
    let mut m = message.to_string();
    // Servers quote the value that failed to parse; it differs per document.
    for marker in ["Preview of field's value:", "preview of field's value:"] {
        if let Some(at) = m.find(marker) {
            m.truncate(at);
        }
    }
    // Parser positions differ per document too.
    if let Some(at) = m.find(" at line ") {
        m.truncate(at);
    }
    let encoded = crate::index::client::segment(id.as_str());
    for form in [id.as_str(), encoded.as_str()] {
        if !form.is_empty() {
            m = m.replace(form, "<id>");
        }
    }
    let collapsed = m.split_whitespace().collect::<Vec<_>>().join(" ");
    let trimmed = collapsed.trim_end_matches(['.', ' ']).to_string();
    trimmed.chars().take(MAX_MESSAGE_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t() -> IndexName {
        IndexName::parse("images_2026").unwrap()
    }

    #[test]
    fn messages_group_by_cause() {
        let a = normalize("[img-1]: failed to parse field [x] of type [date] in document with id 'img-1'. Preview of field's value: '2021-13'", &DocId::parse("img-1").unwrap());
        let b = normalize("[img-2]: failed to parse field [x] of type [date] in document with id 'img-2'. Preview of field's value: 'abc'", &DocId::parse("img-2").unwrap());
        assert_eq!(a, b);
        assert!(!a.contains("img-1"));
    }

    #[test]
    fn outcome_reads_both_records() {
        assert_eq!(outcome_of(&json!({}), &t()), Outcome::Pending);
        assert_eq!(outcome_of(&success(&t()), &t()), Outcome::Migrated);
        assert_eq!(
            outcome_of(&failure(&t(), "boom"), &t()),
            Outcome::Failed("boom".into())
        );
        assert_eq!(outcome_of(&cleared(&t()), &t()), Outcome::Pending);
    }

    proptest! {
        #[test]
        fn normalized_messages_are_short_and_never_name_the_document(id in "[a-zA-Z0-9/?#%._-]{3,40}", msg in ".{0,600}") {
            let id = DocId::parse(id.clone()).unwrap();
            let full = format!("{msg} while writing {id} ({id})");
            let n = normalize(&full, &id);
            prop_assert!(n.chars().count() <= MAX_MESSAGE_CHARS);
            prop_assert!(!n.contains(id.as_str()));
        }
    }
}
