//! User edits in DynamoDB: one item per document id with a numeric
//! `version` that every change increments; deletes leave a tombstone
//! (`deleted: true`) with a bumped version.

use super::aws::{sdk_error, StoreError};
use crate::types::{DocId, Version};
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use serde_json::{Map, Number, Value};
use std::collections::HashMap;

/// BatchGetItem takes at most this many keys.
const BATCH_GET_MAX: usize = 100;

/// A document's edits item, with its attributes as JSON for the projection.
#[derive(Debug, Clone, PartialEq)]
pub struct EditItem {
    /// The document id.
    pub id: DocId,
    /// Its primary-store version.
    pub version: Version,
    /// True for a tombstone left by a delete.
    pub deleted: bool,
    /// Every attribute, as JSON (DynamoDB types mapped to JSON types).
    pub attrs: Value,
}

/// The table of edits items.
#[derive(Clone, Debug)]
pub struct Edits {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl Edits {
    /// A store over `table`.
    pub fn new(sdk: &aws_config::SdkConfig, table: &str) -> Self {
        Self {
            client: aws_sdk_dynamodb::Client::new(sdk),
            table: table.to_string(),
        }
    }

    /// The DynamoDB client (shared with the lease).
    pub fn client(&self) -> &aws_sdk_dynamodb::Client {
        &self.client
    }

    /// Reads one item; a missing item is [`StoreError::NotFound`].
    pub async fn get(&self, id: &DocId) -> Result<EditItem, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(id.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("DynamoDB GetItem", e))?;
        match out.item {
            Some(item) => parse_item(id, &item),
            None => Err(StoreError::NotFound {
                what: "edits item",
                key: id.to_string(),
            }),
        }
    }

    /// Reads many items, 100 keys per request, retrying unprocessed keys
    /// with backoff. Missing ids are absent from the map; a malformed item
    /// is returned as its error so one bad item spoils nothing else.
    pub async fn batch_get(
        &self,
        ids: &[DocId],
        policy: &crate::retry::RetryPolicy,
    ) -> Result<HashMap<DocId, Result<EditItem, StoreError>>, StoreError> {
        let mut found = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(BATCH_GET_MAX) {
            let mut pending: Vec<HashMap<String, AttributeValue>> = chunk
                .iter()
                .map(|id| HashMap::from([("id".to_string(), AttributeValue::S(id.to_string()))]))
                .collect();
            pending.dedup();
            let mut attempt = 0u32;
            while !pending.is_empty() {
                let keys = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut pending)))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| StoreError::Malformed {
                        what: "batch request",
                        key: String::new(),
                        detail: e.to_string(),
                    })?;
                let out = crate::retry::retry(policy, "DynamoDB BatchGetItem", || async {
                    self.client
                        .batch_get_item()
                        .request_items(&self.table, keys.clone())
                        .send()
                        .await
                        .map_err(|e| sdk_error("DynamoDB BatchGetItem", e))
                })
                .await?;
                for item in out
                    .responses
                    .unwrap_or_default()
                    .remove(&self.table)
                    .unwrap_or_default()
                {
                    let Some(AttributeValue::S(raw)) = item.get("id") else {
                        continue;
                    };
                    let Ok(id) = DocId::parse(raw.clone()) else {
                        continue;
                    };
                    let parsed = parse_item(&id, &item);
                    found.insert(id, parsed);
                }
                if let Some(mut rest) = out.unprocessed_keys {
                    if let Some(k) = rest.remove(&self.table) {
                        pending = k.keys;
                    }
                }
                if !pending.is_empty() {
                    // DynamoDB asks us to slow down: back off before the rest.
                    tokio::time::sleep(crate::retry::pause_for(policy, attempt)).await;
                    attempt += 1;
                }
            }
        }
        Ok(found)
    }

    /// Writes an item if it is still at `expected` (or absent when `None`),
    /// stamping `version = expected + 1` (or 1). Returns the new version.
    pub async fn put_versioned(
        &self,
        id: &DocId,
        expected: Option<Version>,
        attrs: &Map<String, Value>,
    ) -> Result<Version, StoreError> {
        let version = expected.map(Version::next).unwrap_or(Version::FIRST);
        let mut item: HashMap<String, AttributeValue> =
            attrs.iter().map(|(k, v)| (k.clone(), to_attr(v))).collect();
        item.insert("id".into(), AttributeValue::S(id.to_string()));
        item.insert("version".into(), AttributeValue::N(version.to_string()));
        let mut req = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        req = match expected {
            Some(v) => req
                .condition_expression("#v = :expected")
                .expression_attribute_names("#v", "version")
                .expression_attribute_values(":expected", AttributeValue::N(v.to_string())),
            None => req.condition_expression("attribute_not_exists(id)"),
        };
        match req.send().await {
            Ok(_) => Ok(version),
            Err(e) => {
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception())
                {
                    return Err(StoreError::VersionConflict {
                        key: id.to_string(),
                        expected: expected
                            .map(|v| v.to_string())
                            .unwrap_or_else(|| "absent".into()),
                    });
                }
                Err(sdk_error("DynamoDB PutItem", e))
            }
        }
    }

    /// Writes an item as given, unconditionally (test fixtures that need
    /// deliberately malformed items).
    pub async fn put_raw(&self, item: HashMap<String, AttributeValue>) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_error("DynamoDB PutItem", e))
    }

    /// Checks that the table answers (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_error("DynamoDB DescribeTable", e))
    }
}

fn parse_item(id: &DocId, item: &HashMap<String, AttributeValue>) -> Result<EditItem, StoreError> {
    let malformed = |detail: String| StoreError::Malformed {
        what: "edits item",
        key: id.to_string(),
        detail,
    };
    let version = match item.get("version") {
        Some(AttributeValue::N(n)) => n
            .parse::<u64>()
            .ok()
            .and_then(|v| Version::new(v).ok())
            .ok_or_else(|| malformed(format!("version {n:?} is not a valid version")))?,
        Some(_) => return Err(malformed("version is not a number".into())),
        None => return Err(malformed("version is missing".into())),
    };
    let deleted = match item.get("deleted") {
        None | Some(AttributeValue::Null(_)) => false,
        Some(AttributeValue::Bool(b)) => *b,
        Some(_) => return Err(malformed("deleted is not a boolean".into())),
    };
    let attrs = Value::Object(
        item.iter()
            .map(|(k, v)| (k.clone(), from_attr(v)))
            .collect(),
    );
    Ok(EditItem {
        id: id.clone(),
        version,
        deleted,
        attrs,
    })
}

/// DynamoDB value to JSON: numbers stay numbers, sets become arrays.
pub fn from_attr(v: &AttributeValue) -> Value {
    match v {
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::N(n) => n
            .parse::<i64>()
            .map(Value::from)
            .ok()
            .or_else(|| {
                n.parse::<f64>()
                    .ok()
                    .and_then(Number::from_f64)
                    .map(Value::Number)
            })
            .unwrap_or_else(|| Value::String(n.clone())),
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::L(l) => Value::Array(l.iter().map(from_attr).collect()),
        AttributeValue::M(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), from_attr(v))).collect())
        }
        AttributeValue::Ss(ss) => {
            let mut v = ss.clone();
            v.sort();
            Value::Array(v.into_iter().map(Value::String).collect())
        }
        AttributeValue::Ns(ns) => Value::Array(
            ns.iter()
                .map(|n| from_attr(&AttributeValue::N(n.clone())))
                .collect(),
        ),
        _ => Value::Null,
    }
}

/// JSON value to DynamoDB.
pub fn to_attr(v: &Value) -> AttributeValue {
    match v {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::String(s) => AttributeValue::S(s.clone()),
        Value::Array(a) => AttributeValue::L(a.iter().map(to_attr).collect()),
        Value::Object(o) => {
            AttributeValue::M(o.iter().map(|(k, v)| (k.clone(), to_attr(v))).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip_through_json() {
        let v = serde_json::json!({"a": "x", "n": 3, "f": 1.5, "b": true, "l": ["p", 2], "m": {"k": null}});
        assert_eq!(from_attr(&to_attr(&v)), v);
    }

    #[test]
    fn items_with_bad_versions_are_malformed() {
        let id = DocId::parse("d").unwrap();
        let mut item = HashMap::from([("version".to_string(), AttributeValue::S("3".into()))]);
        assert!(matches!(
            parse_item(&id, &item),
            Err(StoreError::Malformed { .. })
        ));
        item.insert("version".into(), AttributeValue::N("-1".into()));
        assert!(parse_item(&id, &item).is_err());
        item.insert("version".into(), AttributeValue::N("4".into()));
        assert_eq!(parse_item(&id, &item).unwrap().version.get(), 4);
    }
}
