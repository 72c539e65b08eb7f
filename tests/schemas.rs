//! Every schema in `queues/schemas/`, checked with a JSON Schema validator
//! against what ferry produces (the bodies it publishes, the dead-letter
//! headers it sets) and what it accepts (the schemas' examples parse with
//! ferry's parser; a table of bodies that the schema and ferry's parser
//! both accept or both refuse).

mod support;

use ferry::index::records;
use ferry::queue::{DocKind, DocMessage, Message, MigrateMessage, Payload};
use ferry::stores::{project, EditItem, Projection};
use ferry::types::{DocId, IndexName, Version};
use futures::StreamExt;
use lapin::types::AMQPValue;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use support::TestEnv;

const DOCUMENT: &str = "document-message";
const MIGRATE: &str = "migrate-message";
const DEAD_LETTER: &str = "dead-letter-headers";

/// Message size limit used by the parser in these checks.
const LIMIT: usize = 1 << 20;

fn schema(name: &str) -> Value {
    let path = format!(
        "{}/queues/schemas/{name}.schema.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A validator for `queues/schemas/<name>.schema.json`, formats checked.
fn validator(name: &str) -> jsonschema::Validator {
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema(name))
        .unwrap_or_else(|e| panic!("{name}: not a valid schema: {e}"))
}

/// Panics, naming `what` and every error, unless `instance` is valid.
fn assert_valid(v: &jsonschema::Validator, name: &str, what: &str, instance: &Value) {
    let errors: Vec<String> = v.iter_errors(instance).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "{what} does not match {name}: {errors:?}\n{instance}"
    );
}

fn body_json(body: &[u8]) -> Value {
    serde_json::from_slice(body).expect("ferry publishes JSON")
}

/// A migrate message as the scanner builds it from a projection result
/// (src/worker/scanner.rs, `publish_projections`).
fn scanned(id: DocId, result: Result<Projection, String>) -> MigrateMessage {
    let (version, payload) = match result {
        Ok(Projection::Document(d)) => (d.version, Payload::Document(d.to_json())),
        Ok(Projection::Deleted { version, .. }) => (version, Payload::Deleted(true)),
        Err(e) => (
            Version::FIRST,
            Payload::Failure(records::normalize(&e, &id)),
        ),
    };
    MigrateMessage {
        id,
        target: IndexName::parse("images_20250101t000000").unwrap(),
        version,
        seq_no: 12,
        primary_term: 1,
        payload,
    }
}

#[test]
fn the_schemas_examples_are_valid_and_ferry_parses_the_message_examples() {
    for name in [DOCUMENT, MIGRATE, DEAD_LETTER] {
        let v = validator(name);
        let examples = schema(name)["examples"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(examples.len() >= 2, "{name}: give a few examples");
        for (i, example) in examples.iter().enumerate() {
            assert_valid(&v, name, &format!("{name} example {i}"), example);
            if name != DEAD_LETTER {
                let parsed = Message::parse(example.to_string().as_bytes(), LIMIT);
                assert!(
                    parsed.is_ok(),
                    "{name} example {i}: ferry refuses it: {parsed:?}"
                );
            }
        }
    }
}

#[test]
fn the_document_messages_ferry_publishes_match_their_schema() {
    let v = validator(DOCUMENT);
    let long = "i".repeat(DocId::MAX_BYTES);
    let ids = ["a", "x/y", "a?b#c%20d", "..a", "é-ü-日本", long.as_str()];
    for kind in [DocKind::Upload, DocKind::Edit, DocKind::Delete] {
        for id in ids {
            for version in [
                None,
                Some(Version::ZERO),
                Some(Version::new(Version::MAX).unwrap()),
            ] {
                let m = DocMessage {
                    kind,
                    id: DocId::parse(id).unwrap(),
                    version,
                };
                let what = format!("{kind:?} {id:.20} {version:?}");
                assert_valid(&v, DOCUMENT, &what, &body_json(&m.to_body()));
            }
        }
    }
}

#[test]
fn the_migrate_messages_the_scanner_publishes_match_their_schema() {
    let v = validator(MIGRATE);
    let (count, broken) = (40, 8);
    let mut seen = BTreeMap::<&str, usize>::new();
    for i in 0..count {
        let s = ferry::seed::data::sample(7, i, count, broken, "schema-");
        let item = EditItem {
            id: s.id.clone(),
            version: Version::new(s.version).unwrap(),
            deleted: false,
            attrs: Value::Object(s.item),
        };
        let result = project(s.original.as_deref(), &item).map_err(|e| e.to_string());
        let m = scanned(s.id, result);
        *seen.entry(payload_kind(&m.payload)).or_default() += 1;
        assert_valid(
            &v,
            MIGRATE,
            &format!("sample {i}"),
            &body_json(&m.to_body()),
        );
    }
    // A tombstone and a failure far longer than a record keeps.
    let deleted = Projection::Deleted {
        id: DocId::parse("gone").unwrap(),
        version: Version::new(4).unwrap(),
    };
    let cases = [
        scanned(DocId::parse("gone").unwrap(), Ok(deleted)),
        scanned(DocId::parse("long").unwrap(), Err("boom ".repeat(500))),
    ];
    for m in cases {
        *seen.entry(payload_kind(&m.payload)).or_default() += 1;
        assert_valid(
            &v,
            MIGRATE,
            &format!("{:?}", m.payload)
                .chars()
                .take(40)
                .collect::<String>(),
            &body_json(&m.to_body()),
        );
    }
    assert_eq!(seen.len(), 3, "every payload kind was produced: {seen:?}");
}

fn payload_kind(p: &Payload) -> &'static str {
    match p {
        Payload::Document(_) => "document",
        Payload::Deleted(_) => "deleted",
        Payload::Failure(_) => "failure",
    }
}

#[test]
fn the_schemas_and_ferrys_parser_agree_on_what_is_a_message() {
    let migrate = |extra: Value| {
        let mut m = json!({"kind": "migrate", "id": "a", "target": "images_1", "version": 2,
                           "seq_no": 5, "primary_term": 1});
        for (k, v) in extra.as_object().unwrap() {
            m[k] = v.clone();
        }
        m.to_string()
    };
    // (schema, body, the reason ferry refuses it, or None when it accepts it)
    let cases: Vec<(&str, String, Option<&str>)> = vec![
        (
            DOCUMENT,
            r#"{"kind":"upload","id":"a","version":1}"#.into(),
            None,
        ),
        (DOCUMENT, r#"{"kind":"delete","id":"x/y"}"#.into(), None),
        (
            DOCUMENT,
            r#"{"kind":"edit","id":"a","from":"a newer pipeline"}"#.into(),
            None,
        ),
        (
            DOCUMENT,
            format!(r#"{{"kind":"edit","id":"{}"}}"#, "i".repeat(512)),
            None,
        ),
        (DOCUMENT, "[1,2]".into(), Some("invalid-message")),
        (DOCUMENT, r#"{"id":"a"}"#.into(), Some("invalid-message")),
        (
            DOCUMENT,
            r#"{"kind":"rename","id":"a"}"#.into(),
            Some("unknown-kind"),
        ),
        (DOCUMENT, r#"{"kind":"edit"}"#.into(), Some("invalid-id")),
        (
            DOCUMENT,
            r#"{"kind":"edit","id":""}"#.into(),
            Some("invalid-id"),
        ),
        (
            DOCUMENT,
            r#"{"kind":"edit","id":7}"#.into(),
            Some("invalid-id"),
        ),
        (
            DOCUMENT,
            r#"{"kind":"edit","id":".."}"#.into(),
            Some("invalid-id"),
        ),
        (
            DOCUMENT,
            r#"{"kind":"edit","id":"a\u0001"}"#.into(),
            Some("invalid-id"),
        ),
        (
            DOCUMENT,
            r#"{"kind":"edit","id":"a\u0085"}"#.into(),
            Some("invalid-id"),
        ),
        (
            DOCUMENT,
            format!(r#"{{"kind":"edit","id":"{}"}}"#, "i".repeat(513)),
            Some("invalid-id"),
        ),
        (
            DOCUMENT,
            r#"{"kind":"edit","id":"a","version":"x"}"#.into(),
            Some("invalid-message"),
        ),
        (
            DOCUMENT,
            r#"{"kind":"edit","id":"a","version":-1}"#.into(),
            Some("invalid-message"),
        ),
        (
            DOCUMENT,
            r#"{"kind":"edit","id":"a","version":9223372036854775808}"#.into(),
            Some("invalid-message"),
        ),
        (MIGRATE, migrate(json!({"document": {"id": "a"}})), None),
        (MIGRATE, migrate(json!({"deleted": true})), None),
        (
            MIGRATE,
            migrate(json!({"failure": "original not found in S3"})),
            None,
        ),
        (
            MIGRATE,
            r#"{"kind":"migrate","id":"a","target":"t"}"#.into(),
            Some("invalid-message"),
        ),
        (MIGRATE, migrate(json!({})), Some("invalid-message")),
        (
            MIGRATE,
            migrate(json!({"id": "..", "deleted": true})),
            Some("invalid-id"),
        ),
        (
            MIGRATE,
            migrate(json!({"target": "_images", "deleted": true})),
            Some("invalid-message"),
        ),
        (
            MIGRATE,
            migrate(json!({"target": "images/1", "deleted": true})),
            Some("invalid-message"),
        ),
        (
            MIGRATE,
            migrate(json!({"version": -1, "deleted": true})),
            Some("invalid-message"),
        ),
        (
            MIGRATE,
            migrate(json!({"seq_no": "5", "deleted": true})),
            Some("invalid-message"),
        ),
        (
            MIGRATE,
            migrate(json!({"deleted": false})),
            Some("invalid-message"),
        ),
        (
            MIGRATE,
            migrate(json!({"document": 5})),
            Some("invalid-message"),
        ),
        (
            MIGRATE,
            migrate(json!({"document": {}, "failure": "x"})),
            Some("invalid-message"),
        ),
        (
            MIGRATE,
            migrate(json!({"failure": "x".repeat(257)})),
            Some("invalid-message"),
        ),
        (MIGRATE, migrate(json!({"failure": "é".repeat(256)})), None),
    ];
    let validators = BTreeMap::from([
        (DOCUMENT, validator(DOCUMENT)),
        (MIGRATE, validator(MIGRATE)),
    ]);
    for (name, body, refused) in &cases {
        let what = format!("{name} {}", body.chars().take(80).collect::<String>());
        let instance: Option<Value> = serde_json::from_str(body).ok();
        let schema_ok = instance.is_some_and(|i| validators[name].is_valid(&i));
        let ferry = Message::parse(body.as_bytes(), LIMIT)
            .err()
            .map(|r| r.code());
        assert_eq!(ferry, *refused, "{what}: ferry's parser");
        assert_eq!(
            schema_ok,
            refused.is_none(),
            "{what}: the schema {}",
            if schema_ok {
                "accepts it"
            } else {
                "refuses it"
            }
        );
    }
}

/// The headers of a delivery as a JSON object (text and numbers; any other
/// type becomes null, which no schema property accepts).
fn headers_json(props: &lapin::BasicProperties) -> Value {
    let mut out = serde_json::Map::new();
    for (k, v) in props
        .headers()
        .as_ref()
        .map(|h| h.inner().iter())
        .into_iter()
        .flatten()
    {
        let v = match v {
            AMQPValue::LongString(s) => json!(String::from_utf8_lossy(s.as_bytes())),
            AMQPValue::ShortString(s) => json!(s.as_str()),
            AMQPValue::LongLongInt(n) => json!(n),
            AMQPValue::LongInt(n) => json!(n),
            AMQPValue::Boolean(b) => json!(b),
            _ => Value::Null,
        };
        out.insert(k.as_str().to_string(), v);
    }
    Value::Object(out)
}

#[tokio::test]
async fn the_dead_letter_headers_a_worker_sets_match_their_schema() {
    let env = TestEnv::new("sc").await;
    let broker = env.broker().await;
    let limit = 2048;
    let too_large = format!(
        r#"{{"kind":"upload","id":"a","pad":"{}"}}"#,
        "x".repeat(limit)
    );
    // (routing key, body, the reason ferry gives)
    let cases: [(&str, &[u8], &str); 5] = [
        ("upload", b"{not json", "malformed-json"),
        ("upload", br#"{"kind":"rename","id":"a"}"#, "unknown-kind"),
        ("edit", br#"{"kind":"edit","id":""}"#, "invalid-id"),
        (
            "edit",
            br#"{"kind":"edit","id":"a","version":"x"}"#,
            "invalid-message",
        ),
        ("upload", too_large.as_bytes(), "too-large"),
    ];
    for (key, body, _) in &cases {
        broker.publish_event(key, body).await.expect("publish");
    }
    let _worker = env.spawn_worker_with(&[("FERRY_MAX_MESSAGE_BYTES", &limit.to_string())]);

    let v = validator(DEAD_LETTER);
    let mut dead = broker
        .consume(&broker.names.dead_letters, 10, "schemas")
        .await
        .expect("consume the dead letters");
    let mut reasons = BTreeMap::new();
    while reasons.len() < cases.len() {
        let d = tokio::time::timeout(Duration::from_secs(60), dead.next())
            .await
            .unwrap_or_else(|_| panic!("only {} dead letters: {reasons:?}", reasons.len()))
            .expect("a delivery")
            .expect("a dead letter");
        let headers = headers_json(&d.properties);
        assert_valid(&v, DEAD_LETTER, &String::from_utf8_lossy(&d.data), &headers);
        reasons.insert(
            d.data.clone(),
            headers["x-ferry-reason"].as_str().unwrap().to_string(),
        );
    }
    for (_, body, reason) in &cases {
        assert_eq!(
            reasons.get(*body).map(String::as_str),
            Some(*reason),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    broker.close().await;
}
