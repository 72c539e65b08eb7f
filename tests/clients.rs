//! Integration tests of the typed clients against the real local stack:
//! the index server (osmem), S3 + DynamoDB (moto) and RabbitMQ. Every test
//! works in its own uniquely named indices, bucket, tables and queues.

mod support;

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use ferry::index::aliases::AliasAction;
use ferry::index::records;
use ferry::index::scan::{ScanRequest, TermBucket};
use ferry::index::{BulkOp, IndexClient, Target, Write};
use ferry::queue::broker::header;
use ferry::queue::{Broker, QueueError};
use ferry::stores::{Projection, ProjectionError, StoreError, Stores};
use ferry::types::{DocId, IndexName, SeqTerm, Version};

/// The position of a document's first write.
const FIRST: SeqTerm = SeqTerm {
    seq_no: 0,
    primary_term: 1,
};
use futures::{StreamExt, TryStreamExt};
use lapin::options::{BasicAckOptions, BasicNackOptions};
use reqwest::Method;
use serde_json::{json, Map, Value};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;
use support::{eventually, TestEnv};

// ---------------------------------------------------------------- helpers

fn id(raw: &str) -> DocId {
    DocId::parse(raw).expect("valid id")
}

fn ver(n: u64) -> Version {
    Version::new(n).expect("valid version")
}

fn name(raw: impl Into<String>) -> IndexName {
    IndexName::parse(raw).expect("valid index name")
}

/// `<env>_<suffix>`, a name no other test uses.
fn index_name(env: &TestEnv, suffix: &str) -> IndexName {
    name(format!("{}_{suffix}", env.name))
}

/// Creates `<env>_<suffix>` from `infra/mapping.json`.
async fn mapped_index(env: &TestEnv, suffix: &str) -> IndexName {
    let index = index_name(env, suffix);
    let mapping = ferry::index::read_mapping(&env.settings.mapping).expect("mapping file");
    env.ctx
        .index
        .create_index(&index, &mapping)
        .await
        .expect("create index");
    index
}

/// Every concrete index whose name starts with the environment's stem
/// (`GET /<stem>*`: only this test's indices, cheap for the server).
async fn indices_of(env: &TestEnv) -> BTreeSet<String> {
    let reply = env
        .ctx
        .index
        .call(Method::GET, &format!("/{}*", env.name), None)
        .await
        .expect("GET /<stem>*");
    let found: BTreeSet<String> = reply
        .as_object()
        .expect("an object of indices")
        .keys()
        .cloned()
        .collect();
    assert!(found.iter().all(|i| i.starts_with(&env.name)), "{found:?}");
    found
}

async fn drop_indices(index: &IndexClient, names: &[&IndexName]) {
    for n in names {
        index.delete_index(n).await.expect("delete my index");
    }
}

/// A document the mapping accepts.
fn doc(id: &DocId, version: u64, by: &str) -> Value {
    json!({
        "id": id,
        "version": version,
        "uploadTime": "2026-01-02T03:04:05Z",
        "uploadedBy": by,
        "metadata": { "title": format!("picture {id}"), "dateTaken": "2025-12-31T23:59:59Z" },
    })
}

/// An S3 original in the shape the projection expects.
fn original(title: &str) -> bytes::Bytes {
    json!({
        "uploadTime": "2026-01-02T03:04:05Z",
        "uploadedBy": "ann@example.com",
        "source": { "file": "s3://b/p.jpg", "mimeType": "image/jpeg", "size": 100, "width": 4, "height": 3 },
        "metadata": { "title": title, "byline": "Ann" },
    })
    .to_string()
    .into()
}

fn attrs(v: Value) -> Map<String, Value> {
    v.as_object().expect("an object").clone()
}

fn ids_of(docs: &[ferry::index::StoredDoc]) -> Vec<DocId> {
    docs.iter().map(|d| d.id.clone()).collect()
}

/// Writes `docs` with one external-version bulk request per 500.
async fn bulk_put(index: &IndexClient, to: &IndexName, docs: &[(DocId, u64, Value)]) {
    for chunk in docs.chunks(500) {
        let ops: Vec<BulkOp> = chunk
            .iter()
            .map(|(id, v, body)| BulkOp::PutExternal {
                to: Target::Index(to.clone()),
                id: id.clone(),
                version: ver(*v),
                doc: body.clone(),
            })
            .collect();
        let items = index.bulk(&ops).await.expect("bulk");
        assert_eq!(items.len(), ops.len());
        for item in items {
            assert_eq!(item.result.expect("bulk item"), Write::Done, "{}", item.id);
        }
    }
}

/// Every document of a scan, page by page.
async fn scan_pages(
    index: &IndexClient,
    of: &IndexName,
    query: Value,
    page_size: usize,
) -> Vec<Vec<ferry::index::StoredDoc>> {
    let req = ScanRequest {
        query,
        page_size,
        source: json!(["id"]),
    };
    index.scan(of, req).try_collect().await.expect("scan")
}

/// Takes the next delivery of a consumer, failing after 10 s.
async fn next_delivery(consumer: &mut lapin::Consumer) -> lapin::message::Delivery {
    tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("a delivery within 10 s")
        .expect("consumer still open")
        .expect("delivery")
}

/// Waits until `queue` holds exactly `n` ready messages.
async fn wait_depth(broker: &Broker, queue: &str, n: u32) {
    eventually(
        Duration::from_secs(10),
        &format!("{queue} to hold {n} ready messages"),
        || async { (broker.depth(queue).await.expect("depth") == n).then_some(()) },
    )
    .await;
}

// ---------------------------------------------------------------- index: aliases and indices

#[tokio::test(flavor = "multi_thread")]
async fn aliases_are_read_and_changed_in_one_atomic_request() {
    let env = TestEnv::new("cl").await;
    let ix = &env.ctx.index;
    let names = &env.ctx.aliases;
    let a = mapped_index(&env, "a").await;
    let b = mapped_index(&env, "b").await;

    assert_eq!(
        ix.alias_state(names).await.unwrap(),
        Default::default(),
        "fresh aliases carry nothing"
    );

    ix.update_aliases(&[
        AliasAction::Add {
            index: IndexName::parse(a.to_string()).unwrap(),
            alias: names.current.clone(),
        },
        AliasAction::Add {
            index: IndexName::parse(b.to_string()).unwrap(),
            alias: names.migration.clone(),
        },
        AliasAction::Add {
            index: IndexName::parse(b.to_string()).unwrap(),
            alias: names.paused.clone(),
        },
    ])
    .await
    .unwrap();
    let st = ix.alias_state(names).await.unwrap();
    assert_eq!(st.current, vec![a.to_string()]);
    assert_eq!(st.migration, vec![b.to_string()]);
    assert_eq!(st.paused, vec![b.to_string()]);
    assert!(st.historical.is_empty() && st.preview.is_empty());
    assert!(st.is_paused());
    assert_eq!(st.current_index(), Some(a.clone()));

    // A completion: add and remove in the same request.
    ix.update_aliases(&[
        AliasAction::Remove {
            index: IndexName::parse(a.to_string()).unwrap(),
            alias: names.current.clone(),
        },
        AliasAction::Add {
            index: IndexName::parse(a.to_string()).unwrap(),
            alias: names.historical.clone(),
        },
        AliasAction::Remove {
            index: IndexName::parse(b.to_string()).unwrap(),
            alias: names.migration.clone(),
        },
        AliasAction::Remove {
            index: IndexName::parse(b.to_string()).unwrap(),
            alias: names.paused.clone(),
        },
        AliasAction::Add {
            index: IndexName::parse(b.to_string()).unwrap(),
            alias: names.current.clone(),
        },
    ])
    .await
    .unwrap();
    let after = ix.alias_state(names).await.unwrap();
    assert_eq!(after.current, vec![b.to_string()]);
    assert_eq!(after.historical, vec![a.to_string()]);
    assert!(after.migration.is_empty() && after.paused.is_empty());
    assert!(
        after.violations(names).is_empty(),
        "{:?}",
        after.violations(names)
    );

    // One bad action fails the whole request and changes nothing.
    let missing = index_name(&env, "missing");
    let err = ix
        .update_aliases(&[
            AliasAction::Add {
                index: IndexName::parse(a.to_string()).unwrap(),
                alias: names.migration.clone(),
            },
            AliasAction::Remove {
                index: IndexName::parse(b.to_string()).unwrap(),
                alias: names.current.clone(),
            },
            AliasAction::Add {
                index: IndexName::parse(missing.to_string()).unwrap(),
                alias: names.preview.clone(),
            },
        ])
        .await
        .expect_err("an action on a missing index must fail");
    assert_eq!(err.status(), Some(404), "{err}");
    assert!(err.is_missing_index(), "{err}");
    assert_eq!(
        ix.alias_state(names).await.unwrap(),
        after,
        "a failed request changed the aliases"
    );
    assert!(!ix.exists(&missing).await.unwrap());

    drop_indices(ix, &[&a, &b]).await;
    assert_eq!(
        ix.alias_state(names).await.unwrap(),
        Default::default(),
        "aliases go with their index"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn create_index_applies_the_mapping_file() {
    let env = TestEnv::new("cl").await;
    let ix = &env.ctx.index;
    let index = index_name(&env, "mapped");
    assert!(!ix.exists(&index).await.unwrap());

    let mapping = ferry::index::read_mapping(&env.settings.mapping).unwrap();
    ix.create_index(&index, &mapping).await.unwrap();
    assert!(ix.exists(&index).await.unwrap());

    let got = ix
        .call(Method::GET, &format!("/{index}/_mapping"), None)
        .await
        .unwrap();
    let props = got
        .pointer(&format!("/{index}/mappings/properties"))
        .expect("mapped properties");
    assert_eq!(
        props.pointer("/metadata/properties/dateTaken/type"),
        Some(&json!("date"))
    );
    assert_eq!(props.pointer("/version/type"), Some(&json!("long")));
    assert_eq!(
        props.pointer("/esInfo/properties/migration/properties/migratedTo/type"),
        Some(&json!("keyword"))
    );

    let again = ix
        .create_index(&index, &mapping)
        .await
        .expect_err("the index exists already");
    assert_eq!(again.status(), Some(400), "{again}");
    assert_eq!(again.kind(), Some("resource_already_exists_exception"));

    let unreadable = ferry::index::read_mapping("/nonexistent/mapping.json");
    assert!(unreadable.is_err());

    ix.delete_index(&index).await.unwrap();
    assert!(!ix.exists(&index).await.unwrap());
    let gone = ix.delete_index(&index).await.expect_err("deleting twice");
    assert!(gone.is_missing_index(), "{gone}");
}

// ---------------------------------------------------------------- index: documents

#[tokio::test(flavor = "multi_thread")]
async fn get_and_mget_return_seq_no_and_primary_term() {
    let env = TestEnv::new("cl").await;
    let ix = &env.ctx.index;
    let index = mapped_index(&env, "docs").await;
    let to = Target::Index(index.clone());
    let (a, b, nobody) = (id("a"), id("b"), id("nobody"));

    assert_eq!(
        ix.put_external(&to, &a, ver(3), &doc(&a, 3, "ann"))
            .await
            .unwrap(),
        Write::Done
    );
    assert_eq!(
        ix.put_external(&to, &b, ver(7), &doc(&b, 7, "bo"))
            .await
            .unwrap(),
        Write::Done
    );

    let got_a = ix.get(&index, &a).await.unwrap().expect("a exists");
    assert_eq!(got_a.id, a);
    assert_eq!(got_a.index, index.as_str());
    assert_eq!(got_a.source, doc(&a, 3, "ann"));
    assert_eq!(got_a.version(), 3);
    assert!(got_a.primary_term >= 1);
    let got_b = ix.get(&index, &b).await.unwrap().expect("b exists");
    assert_eq!(got_b.version(), 7);
    assert_ne!(
        got_a.seq_no, got_b.seq_no,
        "two writes, two sequence numbers"
    );

    assert_eq!(ix.get(&index, &nobody).await.unwrap(), None);

    let many = ix
        .mget(&index, &[b.clone(), nobody.clone(), a.clone()])
        .await
        .unwrap();
    assert_eq!(
        ids_of(&many),
        vec![b.clone(), a.clone()],
        "absent ids are left out, order kept"
    );
    assert_eq!(many[0], got_b);
    assert_eq!(many[1], got_a);
    assert!(ix.mget(&index, &[]).await.unwrap().is_empty());
    assert!(ix
        .mget(&index, std::slice::from_ref(&nobody))
        .await
        .unwrap()
        .is_empty());

    // A new write moves the sequence number on.
    assert_eq!(
        ix.put_external(&to, &a, ver(4), &doc(&a, 4, "ann"))
            .await
            .unwrap(),
        Write::Done
    );
    let newer = ix.get(&index, &a).await.unwrap().unwrap();
    assert!(
        newer.seq_no > got_b.seq_no,
        "{} after {}",
        newer.seq_no,
        got_b.seq_no
    );
    assert_eq!(newer.version(), 4);

    // Reads from a missing index are errors, not "absent".
    let missing = index_name(&env, "missing");
    assert!(ix.get(&missing, &a).await.unwrap_err().is_missing_index());
    // mget reports a missing index per item; the client turns it into an error.
    let err = ix
        .mget(&missing, std::slice::from_ref(&a))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Some("index_not_found_exception"), "{err}");

    drop_indices(ix, &[&index]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn put_external_refuses_equal_and_older_versions() {
    let env = TestEnv::new("cl").await;
    let ix = &env.ctx.index;
    let index = mapped_index(&env, "ext").await;
    let to = Target::Index(index.clone());
    let d = id("doc-1");

    assert_eq!(
        ix.put_external(&to, &d, ver(5), &doc(&d, 5, "v5"))
            .await
            .unwrap(),
        Write::Done
    );
    assert_eq!(
        ix.put_external(&to, &d, ver(5), &doc(&d, 5, "again"))
            .await
            .unwrap(),
        Write::Stale
    );
    assert_eq!(
        ix.put_external(&to, &d, ver(4), &doc(&d, 4, "older"))
            .await
            .unwrap(),
        Write::Stale
    );
    assert_eq!(
        ix.get(&index, &d).await.unwrap().unwrap().source,
        doc(&d, 5, "v5"),
        "stale writes change nothing"
    );

    assert_eq!(
        ix.put_external(&to, &d, ver(6), &doc(&d, 6, "v6"))
            .await
            .unwrap(),
        Write::Done
    );
    assert_eq!(
        ix.get(&index, &d).await.unwrap().unwrap().source,
        doc(&d, 6, "v6")
    );

    // The largest external version the servers accept.
    let top = id("doc-max");
    let max = ver(Version::MAX);
    assert_eq!(
        ix.put_external(&to, &top, max, &doc(&top, 1, "max"))
            .await
            .unwrap(),
        Write::Done
    );
    assert_eq!(
        ix.put_external(&to, &top, max, &doc(&top, 1, "max"))
            .await
            .unwrap(),
        Write::Stale
    );

    // A body the mapping rejects is an error, not an outcome.
    let bad = ix
        .put_external(
            &to,
            &id("bad"),
            ver(1),
            &json!({ "metadata": { "dateTaken": "not a date" } }),
        )
        .await
        .expect_err("mapping rejects it");
    assert_eq!(bad.status(), Some(400), "{bad}");
    assert_eq!(bad.kind(), Some("mapper_parsing_exception"));
    assert!(ix.get(&index, &id("bad")).await.unwrap().is_none());

    drop_indices(ix, &[&index]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn put_cas_writes_only_over_what_was_read() {
    let env = TestEnv::new("cl").await;
    let ix = &env.ctx.index;
    let index = mapped_index(&env, "cas").await;
    let to = Target::Index(index.clone());
    let d = id("doc-1");

    // seen = None: op_type=create.
    assert_eq!(
        ix.put_cas(&to, &d, None, &doc(&d, 1, "first"))
            .await
            .unwrap(),
        Write::Done
    );
    let first = ix.get(&index, &d).await.unwrap().unwrap();
    assert_eq!(
        ix.put_cas(&to, &d, None, &doc(&d, 1, "create again"))
            .await
            .unwrap(),
        Write::Conflict,
        "create over an existing document"
    );

    let seen = first.seq_term();
    let wrong = [
        SeqTerm {
            seq_no: first.seq_no + 100,
            ..seen
        },
        SeqTerm {
            primary_term: first.primary_term + 1,
            ..seen
        },
    ];
    for w in wrong {
        assert_eq!(
            ix.put_cas(&to, &d, Some(w), &doc(&d, 2, "wrong"))
                .await
                .unwrap(),
            Write::Conflict,
            "{w:?}"
        );
    }
    assert_eq!(
        ix.get(&index, &d).await.unwrap().unwrap(),
        first,
        "refused writes change nothing"
    );

    assert_eq!(
        ix.put_cas(&to, &d, Some(seen), &doc(&d, 2, "second"))
            .await
            .unwrap(),
        Write::Done
    );
    let second = ix.get(&index, &d).await.unwrap().unwrap();
    assert_eq!(second.source, doc(&d, 2, "second"));
    assert!(second.seq_no > first.seq_no);
    assert_eq!(
        ix.put_cas(&to, &d, Some(seen), &doc(&d, 3, "lost update"))
            .await
            .unwrap(),
        Write::Conflict,
        "the token read before the second write is spent"
    );

    // A compare-and-set against a document that does not exist.
    assert_eq!(
        ix.put_cas(&to, &id("ghost"), Some(seen), &doc(&d, 1, "x"))
            .await
            .unwrap(),
        Write::Conflict
    );
    assert!(ix.get(&index, &id("ghost")).await.unwrap().is_none());

    drop_indices(ix, &[&index]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_external_leaves_a_tombstone_that_refuses_older_writes() {
    let env = TestEnv::new("cl").await;
    let ix = &env.ctx.index;
    let index = mapped_index(&env, "tomb").await;
    let to = Target::Index(index.clone());
    let d = id("doc-1");

    assert_eq!(
        ix.put_external(&to, &d, ver(3), &doc(&d, 3, "v3"))
            .await
            .unwrap(),
        Write::Done
    );
    assert_eq!(
        ix.delete_external(&to, &d, ver(2)).await.unwrap(),
        Write::Stale,
        "older delete"
    );
    assert_eq!(
        ix.delete_external(&to, &d, ver(3)).await.unwrap(),
        Write::Stale,
        "same-version delete"
    );
    assert!(ix.get(&index, &d).await.unwrap().is_some());

    assert_eq!(
        ix.delete_external(&to, &d, ver(4)).await.unwrap(),
        Write::Done
    );
    assert_eq!(ix.get(&index, &d).await.unwrap(), None);
    for v in [3, 4] {
        assert_eq!(
            ix.put_external(&to, &d, ver(v), &doc(&d, v, "resurrected"))
                .await
                .unwrap(),
            Write::Stale,
            "a write at version {v} must not resurrect a delete at 4"
        );
    }
    assert_eq!(ix.get(&index, &d).await.unwrap(), None);
    assert_eq!(
        ix.put_external(&to, &d, ver(5), &doc(&d, 5, "re-upload"))
            .await
            .unwrap(),
        Write::Done
    );
    assert_eq!(ix.get(&index, &d).await.unwrap().unwrap().version(), 5);

    // Deleting a document the index never had still records the tombstone.
    let never = id("never");
    assert_eq!(
        ix.delete_external(&to, &never, ver(2)).await.unwrap(),
        Write::Done
    );
    assert_eq!(
        ix.put_external(&to, &never, ver(1), &doc(&never, 1, "late"))
            .await
            .unwrap(),
        Write::Stale
    );
    assert_eq!(ix.get(&index, &never).await.unwrap(), None);
    assert_eq!(
        ix.count(&index, json!({ "match_all": {} })).await.unwrap(),
        1
    );

    drop_indices(ix, &[&index]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn update_partial_merges_and_never_creates_documents() {
    let env = TestEnv::new("cl").await;
    let ix = &env.ctx.index;
    let index = mapped_index(&env, "upd").await;
    let to = Target::Index(index.clone());
    let d = id("doc-1");
    let target = name("target_index");

    assert_eq!(
        ix.put_external(&to, &d, ver(2), &doc(&d, 2, "ann"))
            .await
            .unwrap(),
        Write::Done
    );
    let before = ix.get(&index, &d).await.unwrap().unwrap();
    let seen = Some(before.seq_term());

    assert_eq!(
        ix.update_partial(&to, &d, &records::success(&target), seen)
            .await
            .unwrap(),
        Write::Done
    );
    let after = ix.get(&index, &d).await.unwrap().unwrap();
    assert_eq!(
        after.source["esInfo"]["migration"]["migratedTo"],
        json!("target_index")
    );
    assert_eq!(
        after.source["uploadedBy"],
        json!("ann"),
        "other fields are kept"
    );
    assert_eq!(after.version(), 2);
    assert_eq!(
        records::outcome_of(&after.source, &target),
        records::Outcome::Migrated
    );

    assert_eq!(
        ix.update_partial(&to, &d, &records::failure(&target, "boom"), seen)
            .await
            .unwrap(),
        Write::Conflict,
        "the document changed since it was read"
    );
    assert_eq!(ix.get(&index, &d).await.unwrap().unwrap(), after);

    // Without a token: merged unconditionally.
    assert_eq!(
        ix.update_partial(&to, &d, &json!({ "uploadedBy": "bo" }), None)
            .await
            .unwrap(),
        Write::Done
    );
    assert_eq!(
        ix.get(&index, &d).await.unwrap().unwrap().source["uploadedBy"],
        json!("bo")
    );

    // A missing document stays missing.
    let gone = id("gone");
    assert_eq!(
        ix.update_partial(&to, &gone, &records::success(&target), None)
            .await
            .unwrap(),
        Write::Missing
    );
    assert_eq!(
        ix.update_partial(&to, &gone, &records::success(&target), seen)
            .await
            .unwrap(),
        Write::Missing,
        "with a token too"
    );
    assert_eq!(ix.get(&index, &gone).await.unwrap(), None);
    assert_eq!(
        ix.count(&index, json!({ "match_all": {} })).await.unwrap(),
        1
    );

    drop_indices(ix, &[&index]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_through_a_missing_alias_are_skipped_and_create_no_index() {
    let env = TestEnv::new("cl").await;
    let ix = &env.ctx.index;
    let d = id("doc-1");
    // A lower-case alias name: without require_alias a write would
    // auto-create an index of that name. And the configured (mixed-case) one.
    let lower = Target::Alias(index_name(&env, "nowhere"));
    let mixed = Target::Alias(env.ctx.aliases.migration.clone());
    let before = indices_of(&env).await;
    assert!(before.is_empty(), "{before:?}");

    for to in [&lower, &mixed] {
        assert_eq!(
            ix.put_external(to, &d, ver(1), &doc(&d, 1, "x"))
                .await
                .unwrap(),
            Write::NoAlias,
            "{to:?}"
        );
        assert_eq!(
            ix.put_cas(to, &d, None, &doc(&d, 1, "x")).await.unwrap(),
            Write::NoAlias,
            "{to:?}"
        );
        assert_eq!(
            ix.put_cas(to, &d, Some(FIRST), &doc(&d, 1, "x"))
                .await
                .unwrap(),
            Write::NoAlias,
            "{to:?}"
        );
        assert_eq!(
            ix.update_partial(to, &d, &json!({ "a": 1 }), None)
                .await
                .unwrap(),
            Write::NoAlias,
            "{to:?}"
        );
        assert_eq!(
            ix.update_partial(to, &d, &json!({ "a": 1 }), Some(FIRST))
                .await
                .unwrap(),
            Write::NoAlias,
            "{to:?}"
        );
        assert_eq!(
            ix.delete_external(to, &d, ver(2)).await.unwrap(),
            Write::NoAlias,
            "{to:?}"
        );
        assert_eq!(
            ix.delete_cas(to, &d, FIRST).await.unwrap(),
            Write::NoAlias,
            "{to:?}"
        );

        let ops = vec![
            BulkOp::PutExternal {
                to: to.clone(),
                id: d.clone(),
                version: ver(1),
                doc: doc(&d, 1, "x"),
            },
            BulkOp::Update {
                to: to.clone(),
                id: d.clone(),
                partial: json!({ "a": 1 }),
                seen: None,
            },
            BulkOp::DeleteExternal {
                to: to.clone(),
                id: id("doc-2"),
                version: ver(2),
            },
        ];
        let items = ix.bulk(&ops).await.unwrap();
        let results: Vec<Write> = items.into_iter().map(|i| i.result.unwrap()).collect();
        assert_eq!(results, vec![Write::NoAlias; 3], "{to:?}");
    }
    let after = indices_of(&env).await;
    assert!(
        after.is_empty(),
        "writes through missing aliases created {after:?}"
    );
    assert!(!ix.exists(lower.name()).await.unwrap());

    // Through an alias that exists, the same writes reach its index.
    let real = mapped_index(&env, "real").await;
    let alias = lower.name().clone();
    ix.update_aliases(&[AliasAction::Add {
        index: IndexName::parse(real.to_string()).unwrap(),
        alias: alias.clone(),
    }])
    .await
    .unwrap();
    assert_eq!(
        ix.put_external(&lower, &d, ver(1), &doc(&d, 1, "x"))
            .await
            .unwrap(),
        Write::Done
    );
    assert_eq!(
        ix.update_partial(&lower, &d, &json!({ "uploadedBy": "y" }), None)
            .await
            .unwrap(),
        Write::Done
    );
    let stored = ix
        .get(&real, &d)
        .await
        .unwrap()
        .expect("written into the aliased index");
    assert_eq!(stored.index, real.as_str());
    assert_eq!(stored.source["uploadedBy"], json!("y"));
    let seen = stored.seq_term();
    assert_eq!(
        ix.put_cas(&lower, &d, Some(seen), &doc(&d, 2, "z"))
            .await
            .unwrap(),
        Write::Done
    );
    // (The CAS and partial writes bumped the internal version to 3.)
    assert_eq!(
        ix.delete_external(&lower, &d, ver(10)).await.unwrap(),
        Write::Done
    );
    assert_eq!(ix.get(&real, &d).await.unwrap(), None);

    // One bulk through both: actions on the missing alias are skipped, the
    // others reach the aliased index, results stay in request order.
    let (e1, e2, e3) = (id("e1"), id("e2"), id("e3"));
    let ops = vec![
        BulkOp::PutExternal {
            to: lower.clone(),
            id: e1.clone(),
            version: ver(1),
            doc: doc(&e1, 1, "x"),
        },
        BulkOp::DeleteExternal {
            to: mixed.clone(),
            id: e1.clone(),
            version: ver(2),
        },
        BulkOp::DeleteExternal {
            to: lower.clone(),
            id: e2.clone(),
            version: ver(5),
        },
        BulkOp::PutExternal {
            to: mixed.clone(),
            id: e3.clone(),
            version: ver(1),
            doc: doc(&e3, 1, "x"),
        },
        BulkOp::PutExternal {
            to: lower.clone(),
            id: e3.clone(),
            version: ver(1),
            doc: doc(&e3, 1, "x"),
        },
        BulkOp::DeleteExternal {
            to: lower.clone(),
            id: e3.clone(),
            version: ver(2),
        },
        BulkOp::DeleteExternal {
            to: lower.clone(),
            id: e3.clone(),
            version: ver(2),
        },
    ];
    let items = ix.bulk(&ops).await.unwrap();
    assert_eq!(
        ids_of_items(&items),
        vec![
            e1.clone(),
            e1.clone(),
            e2.clone(),
            e3.clone(),
            e3.clone(),
            e3.clone(),
            e3
        ]
    );
    let results: Vec<Write> = items.into_iter().map(|i| i.result.unwrap()).collect();
    use Write::{Done, NoAlias, Stale};
    assert_eq!(
        results,
        vec![Done, NoAlias, Done, NoAlias, Done, Done, Stale]
    );
    assert!(
        ix.get(&real, &e1).await.unwrap().is_some(),
        "the skipped delete did not run"
    );
    assert_eq!(
        ix.put_external(&lower, &e2, ver(4), &doc(&e2, 4, "x"))
            .await
            .unwrap(),
        Write::Stale,
        "tombstone"
    );

    // An index name is not an alias.
    let not_alias = Target::Alias(real.clone());
    assert_eq!(
        ix.put_external(&not_alias, &d, ver(20), &doc(&d, 20, "x"))
            .await
            .unwrap(),
        Write::NoAlias
    );
    assert_eq!(
        ix.delete_external(&not_alias, &e1, ver(20)).await.unwrap(),
        Write::NoAlias
    );
    assert!(ix.get(&real, &e1).await.unwrap().is_some());

    ix.refresh(&real).await.unwrap();
    assert_eq!(
        ix.count(&real, json!({ "match_all": {} })).await.unwrap(),
        1
    );
    assert_eq!(indices_of(&env).await, BTreeSet::from([real.to_string()]));

    drop_indices(ix, &[&real]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_reports_every_item_on_its_own() {
    let env = TestEnv::new("cl").await;
    let ix = &env.ctx.index;
    let index = mapped_index(&env, "bulk").await;
    let to = Target::Index(index.clone());
    let (good, bad, stale, gone, edited, missing) = (
        id("good"),
        id("bad"),
        id("stale"),
        id("gone"),
        id("edited"),
        id("missing"),
    );

    // Prepare: `stale` at 5, `gone` at 1, `edited` at 1.
    for (d, v) in [(&stale, 5), (&gone, 1), (&edited, 1)] {
        assert_eq!(
            ix.put_external(&to, d, ver(v), &doc(d, v, "prep"))
                .await
                .unwrap(),
            Write::Done
        );
    }
    let seen = ix.get(&index, &edited).await.unwrap().unwrap();
    let seen = Some(seen.seq_term());

    let mut bad_doc = doc(&bad, 1, "bad");
    bad_doc["metadata"]["dateTaken"] = json!("not a date");
    let ops = vec![
        BulkOp::PutExternal {
            to: to.clone(),
            id: good.clone(),
            version: ver(1),
            doc: doc(&good, 1, "good"),
        },
        BulkOp::PutExternal {
            to: to.clone(),
            id: bad.clone(),
            version: ver(1),
            doc: bad_doc,
        },
        BulkOp::PutExternal {
            to: to.clone(),
            id: stale.clone(),
            version: ver(4),
            doc: doc(&stale, 4, "older"),
        },
        BulkOp::DeleteExternal {
            to: to.clone(),
            id: gone.clone(),
            version: ver(2),
        },
        BulkOp::Update {
            to: to.clone(),
            id: edited.clone(),
            partial: json!({ "uploadedBy": "bulk" }),
            seen,
        },
        BulkOp::Update {
            to: to.clone(),
            id: edited.clone(),
            partial: json!({ "uploadedBy": "again" }),
            seen,
        },
        BulkOp::Update {
            to: to.clone(),
            id: missing.clone(),
            partial: json!({ "uploadedBy": "x" }),
            seen: None,
        },
        BulkOp::DeleteExternal {
            to: to.clone(),
            id: stale.clone(),
            version: ver(5),
        },
    ];
    let items = ix.bulk(&ops).await.unwrap();
    assert_eq!(
        ids_of_items(&items),
        vec![
            good.clone(),
            bad.clone(),
            stale.clone(),
            gone.clone(),
            edited.clone(),
            edited.clone(),
            missing.clone(),
            stale.clone()
        ],
        "one result per action, in order"
    );
    let mut results = items.into_iter().map(|i| i.result);
    assert_eq!(results.next().unwrap().unwrap(), Write::Done);
    let err = results
        .next()
        .unwrap()
        .expect_err("the mapping rejects an invalid date");
    assert_eq!(err.status(), Some(400), "{err}");
    assert_eq!(err.kind(), Some("mapper_parsing_exception"), "{err}");
    assert!(
        err.cause().contains("metadata.dateTaken"),
        "{}",
        err.cause()
    );
    assert_eq!(
        results.next().unwrap().unwrap(),
        Write::Stale,
        "older external version"
    );
    assert_eq!(
        results.next().unwrap().unwrap(),
        Write::Done,
        "versioned delete"
    );
    assert_eq!(
        results.next().unwrap().unwrap(),
        Write::Done,
        "update with the right token"
    );
    assert_eq!(
        results.next().unwrap().unwrap(),
        Write::Conflict,
        "update with a spent token"
    );
    assert_eq!(
        results.next().unwrap().unwrap(),
        Write::Missing,
        "update of a missing document"
    );
    assert_eq!(
        results.next().unwrap().unwrap(),
        Write::Stale,
        "same-version delete"
    );

    assert_eq!(
        ix.get(&index, &good).await.unwrap().unwrap().source,
        doc(&good, 1, "good")
    );
    assert_eq!(ix.get(&index, &bad).await.unwrap(), None);
    assert_eq!(ix.get(&index, &stale).await.unwrap().unwrap().version(), 5);
    assert_eq!(ix.get(&index, &gone).await.unwrap(), None);
    assert_eq!(
        ix.get(&index, &edited).await.unwrap().unwrap().source["uploadedBy"],
        json!("bulk")
    );
    assert_eq!(
        ix.get(&index, &missing).await.unwrap(),
        None,
        "bulk updates never create"
    );
    assert_eq!(
        ix.count(&index, json!({ "match_all": {} })).await.unwrap(),
        3
    );

    assert!(ix.bulk(&[]).await.unwrap().is_empty());
    drop_indices(ix, &[&index]).await;
}

fn ids_of_items(items: &[ferry::index::BulkItem]) -> Vec<DocId> {
    items.iter().map(|i| i.id.clone()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn scan_returns_every_document_exactly_once_across_pages() {
    let env = TestEnv::new("cl").await;
    let ix = &env.ctx.index;
    let index = mapped_index(&env, "scan").await;
    let docs: Vec<(DocId, u64, Value)> = (0..1234u64)
        .map(|i| {
            let d = id(&format!("img-{i:05}"));
            let body = doc(&d, i + 1, "scan");
            (d, i + 1, body)
        })
        .collect();
    bulk_put(ix, &index, &docs).await;
    ix.refresh(&index).await.unwrap();

    let pages = scan_pages(ix, &index, json!({ "match_all": {} }), 100).await;
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes.len(), 13, "{sizes:?}");
    assert!(sizes[..12].iter().all(|&s| s == 100), "{sizes:?}");
    assert_eq!(sizes[12], 34);
    let all: Vec<&ferry::index::StoredDoc> = pages.iter().flatten().collect();
    let unique: HashSet<&DocId> = all.iter().map(|d| &d.id).collect();
    assert_eq!(all.len(), 1234, "no document twice");
    let expected: HashSet<&DocId> = docs.iter().map(|(d, _, _)| d).collect();
    assert_eq!(unique, expected);
    for d in &all {
        assert_eq!(d.index, index.as_str());
        assert!(d.primary_term >= 1);
        assert_eq!(
            d.source,
            json!({ "id": d.id }),
            "only the requested source fields"
        );
    }
    let seq: HashSet<u64> = all.iter().map(|d| d.seq_no).collect();
    assert_eq!(
        seq.len(),
        1234,
        "every document has its own sequence number"
    );
    let one = ix.get(&index, &id("img-00042")).await.unwrap().unwrap();
    let scanned = all.iter().find(|d| d.id == one.id).unwrap();
    assert_eq!(
        (scanned.seq_no, scanned.primary_term),
        (one.seq_no, one.primary_term)
    );

    // A query, and a page size that divides the result exactly.
    let filtered = scan_pages(
        ix,
        &index,
        json!({ "range": { "version": { "gt": 1034 } } }),
        50,
    )
    .await;
    assert_eq!(
        filtered.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![50; 4]
    );
    let got: BTreeSet<DocId> = filtered.into_iter().flatten().map(|d| d.id).collect();
    let want: BTreeSet<DocId> = docs[1034..].iter().map(|(d, _, _)| d.clone()).collect();
    assert_eq!(got, want);

    // Nothing matches: no page at all.
    assert!(scan_pages(
        ix,
        &index,
        json!({ "term": { "uploadedBy": "nobody" } }),
        100
    )
    .await
    .is_empty());

    // A missing index is an error.
    let missing = index_name(&env, "missing");
    let err = ix
        .scan(
            &missing,
            ScanRequest {
                query: json!({ "match_all": {} }),
                page_size: 10,
                source: json!(false),
            },
        )
        .try_collect::<Vec<_>>()
        .await
        .expect_err("scan of a missing index");
    assert!(err.is_missing_index(), "{err}");

    drop_indices(ix, &[&index]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn count_and_terms_group_documents_with_examples() {
    let env = TestEnv::new("cl").await;
    let ix = &env.ctx.index;
    let index = mapped_index(&env, "terms").await;
    let to = Target::Index(index.clone());
    let by = [("ann", 4), ("bo", 2), ("cara", 1)];
    let mut owners: HashMap<&str, Vec<DocId>> = HashMap::new();
    let mut n = 0u64;
    for (who, count) in by {
        for _ in 0..count {
            n += 1;
            let d = id(&format!("{who}-{n}"));
            assert_eq!(
                ix.put_external(&to, &d, ver(n), &doc(&d, n, who))
                    .await
                    .unwrap(),
                Write::Done
            );
            owners.entry(who).or_default().push(d);
        }
    }
    ix.refresh(&index).await.unwrap();

    assert_eq!(
        ix.count(&index, json!({ "match_all": {} })).await.unwrap(),
        7
    );
    assert_eq!(
        ix.count(&index, json!({ "term": { "uploadedBy": "ann" } }))
            .await
            .unwrap(),
        4
    );
    assert_eq!(
        ix.count(&index, json!({ "term": { "uploadedBy": "nobody" } }))
            .await
            .unwrap(),
        0
    );

    let buckets = ix
        .terms(&index, "uploadedBy", json!({ "match_all": {} }), 10, 3)
        .await
        .unwrap();
    let summary: Vec<(&str, u64, usize)> = buckets
        .iter()
        .map(|b| (b.key.as_str(), b.count, b.examples.len()))
        .collect();
    assert_eq!(
        summary,
        vec![("ann", 4, 3), ("bo", 2, 2), ("cara", 1, 1)],
        "by count, examples capped"
    );
    for TermBucket { key, examples, .. } in &buckets {
        for e in examples {
            assert!(
                owners[key.as_str()].contains(e),
                "{e} is not one of {key}'s"
            );
        }
    }
    let top = ix
        .terms(&index, "uploadedBy", json!({ "match_all": {} }), 1, 0)
        .await
        .unwrap();
    assert_eq!(top.len(), 1);
    assert_eq!((top[0].key.as_str(), top[0].count), ("ann", 4));
    assert!(top[0].examples.is_empty());

    // Failure records, grouped the way `ferry failures` groups them.
    let target = name(format!("{}_target", env.name));
    let mapping = json!({ "properties": { "esInfo": { "properties": { "migration": { "properties": {
        "failures": { "properties": { target.as_str(): { "type": "keyword" } } } } } } } } });
    ix.put_mapping(&index, &mapping).await.unwrap();
    for (d, msg) in [
        (&owners["ann"][0], "boom"),
        (&owners["ann"][1], "boom"),
        (&owners["bo"][0], "bang"),
    ] {
        let w = ix
            .update_partial(&to, d, &records::failure(&target, msg), None)
            .await
            .unwrap();
        assert_eq!(w, Write::Done);
    }
    let w = ix
        .update_partial(&to, &owners["cara"][0], &records::success(&target), None)
        .await
        .unwrap();
    assert_eq!(w, Write::Done);
    ix.refresh(&index).await.unwrap();
    assert_eq!(ix.count(&index, records::failed(&target)).await.unwrap(), 3);
    assert_eq!(
        ix.count(&index, records::migrated(&target)).await.unwrap(),
        1
    );
    assert_eq!(
        ix.count(&index, records::unmigrated(&target))
            .await
            .unwrap(),
        3
    );
    let failures = ix
        .terms(
            &index,
            &records::failure_field(&target),
            records::failed(&target),
            10,
            5,
        )
        .await
        .unwrap();
    let grouped: Vec<(&str, u64)> = failures.iter().map(|b| (b.key.as_str(), b.count)).collect();
    assert_eq!(grouped, vec![("boom", 2), ("bang", 1)]);
    let boom: BTreeSet<&DocId> = failures[0].examples.iter().collect();
    assert_eq!(boom, BTreeSet::from([&owners["ann"][0], &owners["ann"][1]]));

    drop_indices(ix, &[&index]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_and_count_see_every_write() {
    let env = TestEnv::new("cl").await;
    let ix = &env.ctx.index;
    let index = mapped_index(&env, "refresh").await;
    let to = Target::Index(index.clone());
    assert_eq!(
        ix.count(&index, json!({ "match_all": {} })).await.unwrap(),
        0
    );
    for i in 0..25u64 {
        let d = id(&format!("r{i}"));
        assert_eq!(
            ix.put_external(&to, &d, ver(i + 1), &doc(&d, i + 1, "r"))
                .await
                .unwrap(),
            Write::Done
        );
    }
    ix.refresh(&index).await.unwrap();
    assert_eq!(
        ix.count(&index, json!({ "match_all": {} })).await.unwrap(),
        25
    );
    assert_eq!(
        ix.count(&index, json!({ "range": { "version": { "lte": 10 } } }))
            .await
            .unwrap(),
        10
    );
    assert_eq!(
        ix.delete_external(&to, &id("r0"), ver(2)).await.unwrap(),
        Write::Done
    );
    ix.refresh(&index).await.unwrap();
    assert_eq!(
        ix.count(&index, json!({ "match_all": {} })).await.unwrap(),
        24
    );

    let missing = index_name(&env, "missing");
    assert!(ix.refresh(&missing).await.unwrap_err().is_missing_index());
    assert!(ix
        .count(&missing, json!({ "match_all": {} }))
        .await
        .unwrap_err()
        .is_missing_index());
    let bad_query = ix
        .count(&index, json!({ "no_such_query": {} }))
        .await
        .expect_err("unknown query");
    assert_eq!(bad_query.status(), Some(400), "{bad_query}");
    ix.ping().await.unwrap();

    drop_indices(ix, &[&index]).await;
}

// ---------------------------------------------------------------- index: ids

/// Ids that break naive URL building.
const AWKWARD_IDS: &[&str] = &[
    "a/b",
    "../../etc/passwd",
    "x/../y",
    "...",
    "q?x=1&y=2",
    "frag#ment",
    "100%",
    "%2F",
    "a%20b",
    "with space",
    " leading and trailing ",
    "plus+sign",
    "semi;colon,comma",
    "_all",
    "_doc",
    "*",
    "ünïcödé 日本語 🚀",
    "a\\b",
    "\"quoted\"",
];

#[tokio::test(flavor = "multi_thread")]
async fn awkward_ids_are_stored_and_read_back_under_exactly_that_id() {
    let env = TestEnv::new("cl").await;
    let ix = &env.ctx.index;
    let index = mapped_index(&env, "ids").await;
    let to = Target::Index(index.clone());
    let ids: Vec<DocId> = AWKWARD_IDS.iter().map(|s| id(s)).collect();

    // One by one: put_external + get.
    for d in &ids {
        assert_eq!(
            ix.put_external(&to, d, ver(1), &doc(d, 1, "single"))
                .await
                .unwrap(),
            Write::Done,
            "{d}"
        );
        let got = ix
            .get(&index, d)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{d:?} not found"));
        assert_eq!(&got.id, d);
        assert_eq!(got.source["id"], json!(d.as_str()));
    }
    ix.refresh(&index).await.unwrap();
    assert_eq!(
        ix.count(&index, json!({ "match_all": {} })).await.unwrap(),
        ids.len() as u64
    );
    // The path tricks reached nothing else.
    for other in ["a", "b", "etc/passwd", "y", "q", "frag", "100", "/", "a b"] {
        assert_eq!(ix.get(&index, &id(other)).await.unwrap(), None, "{other}");
    }

    // mget, in order.
    let many = ix.mget(&index, &ids).await.unwrap();
    assert_eq!(ids_of(&many), ids);
    for m in &many {
        assert_eq!(m.source["id"], json!(m.id.as_str()));
    }

    // Bulk: external writes, partial updates and a versioned delete.
    let mut ops: Vec<BulkOp> = ids
        .iter()
        .map(|d| BulkOp::PutExternal {
            to: to.clone(),
            id: d.clone(),
            version: ver(2),
            doc: doc(d, 2, "bulk"),
        })
        .collect();
    ops.extend(ids.iter().map(|d| BulkOp::Update {
        to: to.clone(),
        id: d.clone(),
        partial: json!({ "lastModifiedBy": d.as_str() }),
        seen: None,
    }));
    let items = ix.bulk(&ops).await.unwrap();
    for item in &items {
        assert_eq!(item.result.as_ref().unwrap(), &Write::Done, "{}", item.id);
    }
    for d in &ids {
        let got = ix.get(&index, d).await.unwrap().unwrap();
        assert_eq!(got.version(), 2, "{d}");
        assert_eq!(got.source["uploadedBy"], json!("bulk"));
        assert_eq!(got.source["lastModifiedBy"], json!(d.as_str()));
    }

    // Scan sees exactly these ids.
    ix.refresh(&index).await.unwrap();
    let scanned: Vec<DocId> = scan_pages(ix, &index, json!({ "match_all": {} }), 7)
        .await
        .into_iter()
        .flatten()
        .map(|d| d.id)
        .collect();
    assert_eq!(scanned.len(), ids.len());
    assert_eq!(
        scanned.into_iter().collect::<BTreeSet<_>>(),
        ids.iter().cloned().collect::<BTreeSet<_>>()
    );

    // Single-document CAS and delete paths with the same ids.
    for d in &ids {
        let got = ix.get(&index, d).await.unwrap().unwrap();
        let seen = Some(got.seq_term());
        assert_eq!(
            ix.put_cas(&to, d, seen, &doc(d, 3, "cas")).await.unwrap(),
            Write::Done,
            "{d}"
        );
        assert_eq!(
            ix.update_partial(&to, d, &json!({ "uploadedBy": "upd" }), None)
                .await
                .unwrap(),
            Write::Done
        );
    }
    let last = ids.last().unwrap();
    assert_eq!(
        ix.delete_external(&to, last, ver(9)).await.unwrap(),
        Write::Done
    );
    assert_eq!(ix.get(&index, last).await.unwrap(), None);
    ix.refresh(&index).await.unwrap();
    assert_eq!(
        ix.count(&index, json!({ "match_all": {} })).await.unwrap(),
        ids.len() as u64 - 1
    );
    assert_eq!(
        ix.count(&index, json!({ "term": { "uploadedBy": "upd" } }))
            .await
            .unwrap(),
        ids.len() as u64 - 1
    );

    // No stray index either.
    assert_eq!(indices_of(&env).await, BTreeSet::from([index.to_string()]));
    drop_indices(ix, &[&index]).await;
}

// ---------------------------------------------------------------- stores

#[tokio::test(flavor = "multi_thread")]
async fn originals_round_trip_and_a_missing_object_is_not_found() {
    let env = TestEnv::new("cl").await;
    let originals = &env.ctx.stores.originals;
    for raw in ["plain", "a/b/../c", "ünï cödé?#%"] {
        let d = id(raw);
        let body = original(raw);
        originals.put(&d, body.clone()).await.unwrap();
        assert_eq!(originals.get(&d).await.unwrap(), body, "{raw}");
    }
    // Overwrite.
    originals
        .put(&id("plain"), bytes::Bytes::from_static(b"{}"))
        .await
        .unwrap();
    assert_eq!(&originals.get(&id("plain")).await.unwrap()[..], b"{}");

    match originals.get(&id("nobody")).await {
        Err(StoreError::NotFound { what, key }) => {
            assert_eq!(what, "original");
            assert_eq!(key, originals.key(&id("nobody")));
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    originals.ping().await.unwrap();
    originals
        .ensure_bucket()
        .await
        .expect("ensure_bucket is idempotent");
}

#[tokio::test(flavor = "multi_thread")]
async fn edits_put_versioned_is_a_compare_and_set_on_the_version() {
    let env = TestEnv::new("cl").await;
    let edits = &env.ctx.stores.edits;
    let d = id("doc/1");

    let v1 = edits
        .put_versioned(&d, None, &attrs(json!({ "labels": ["a"] })))
        .await
        .unwrap();
    assert_eq!(v1, ver(1));
    let item = edits.get(&d).await.unwrap();
    assert_eq!(
        (item.id.clone(), item.version, item.deleted),
        (d.clone(), ver(1), false)
    );
    assert_eq!(item.attrs["labels"], json!(["a"]));
    assert_eq!(item.attrs["version"], json!(1));

    let v2 = edits
        .put_versioned(
            &d,
            Some(v1),
            &attrs(json!({ "labels": ["a", "b"], "archived": true })),
        )
        .await
        .unwrap();
    assert_eq!(v2, ver(2));

    for stale in [None, Some(v1), Some(ver(3))] {
        match edits
            .put_versioned(&d, stale, &attrs(json!({ "labels": ["lost"] })))
            .await
        {
            Err(StoreError::VersionConflict { key, .. }) => assert_eq!(key, d.as_str()),
            other => panic!("expected VersionConflict for {stale:?}, got {other:?}"),
        }
    }
    let item = edits.get(&d).await.unwrap();
    assert_eq!(item.version, ver(2));
    assert_eq!(item.attrs["labels"], json!(["a", "b"]));
    assert_eq!(item.attrs["archived"], json!(true));

    // A delete leaves a tombstone with a bumped version.
    let v3 = edits
        .put_versioned(&d, Some(v2), &attrs(json!({ "deleted": true })))
        .await
        .unwrap();
    assert_eq!(v3, ver(3));
    let tomb = edits.get(&d).await.unwrap();
    assert!(tomb.deleted);
    assert_eq!(tomb.version, ver(3));

    match edits.get(&id("nobody")).await {
        Err(StoreError::NotFound { what, key }) => {
            assert_eq!((what, key.as_str()), ("edits item", "nobody"))
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    edits.ping().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_get_reads_many_batches_and_isolates_malformed_items() {
    let env = TestEnv::new("cl").await;
    let edits = &env.ctx.stores.edits;
    let ids: Vec<DocId> = (0..250).map(|i| id(&format!("b-{i:03}"))).collect();
    let present: Vec<&DocId> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 5 != 0)
        .map(|(_, d)| d)
        .collect();
    assert_eq!(present.len(), 200);
    // Written 25 at a time (BatchWriteItem) at version 2, to keep this quick.
    for chunk in present.chunks(25) {
        let mut requests: Vec<WriteRequest> = chunk
            .iter()
            .map(|d| {
                let item = HashMap::from([
                    ("id".to_string(), AttributeValue::S(d.to_string())),
                    ("version".to_string(), AttributeValue::N("2".into())),
                    (
                        "labels".to_string(),
                        AttributeValue::L(vec![AttributeValue::S(d.to_string())]),
                    ),
                ]);
                WriteRequest::builder()
                    .put_request(PutRequest::builder().set_item(Some(item)).build().unwrap())
                    .build()
            })
            .collect();
        while !requests.is_empty() {
            let out = edits
                .client()
                .batch_write_item()
                .request_items(&env.settings.dynamo_table, requests)
                .send()
                .await
                .unwrap();
            requests = out
                .unprocessed_items
                .and_then(|mut m| m.remove(&env.settings.dynamo_table))
                .unwrap_or_default();
        }
    }
    // One malformed item: `version` is a string.
    let broken = id("b-001");
    edits
        .put_raw(HashMap::from([
            ("id".to_string(), AttributeValue::S(broken.to_string())),
            ("version".to_string(), AttributeValue::S("2".into())),
        ]))
        .await
        .unwrap();

    let mut asked = ids.clone();
    asked.push(ids[1].clone()); // a duplicate in another batch
    let got = edits.batch_get(&asked, &env.ctx.policy).await.unwrap();
    let keys: BTreeSet<&DocId> = got.keys().collect();
    assert_eq!(
        keys,
        present.iter().copied().collect::<BTreeSet<_>>(),
        "exactly the present ids"
    );
    for (d, item) in &got {
        if d == &broken {
            match item {
                Err(StoreError::Malformed { key, detail, .. }) => {
                    assert_eq!(key, broken.as_str());
                    assert!(detail.contains("version"), "{detail}");
                }
                other => panic!("expected Malformed, got {other:?}"),
            }
        } else {
            let item = item.as_ref().unwrap_or_else(|e| panic!("{d}: {e}"));
            assert_eq!(&item.id, d);
            assert_eq!(item.version, ver(2));
            assert_eq!(item.attrs["labels"], json!([d.as_str()]));
        }
    }
    assert!(edits
        .batch_get(&[], &env.ctx.policy)
        .await
        .unwrap()
        .is_empty());
    match edits.get(&broken).await {
        Err(StoreError::Malformed { .. }) => {}
        other => panic!("expected Malformed from get, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn projections_name_the_missing_input() {
    let env = TestEnv::new("cl").await;
    let stores: &Stores = &env.ctx.stores;
    let (full, no_original, no_edits, deleted, malformed) = (
        id("full"),
        id("no-original"),
        id("no-edits"),
        id("deleted"),
        id("bad-edits"),
    );

    stores.originals.put(&full, original("Dawn")).await.unwrap();
    let v = stores
        .edits
        .put_versioned(
            &full,
            None,
            &attrs(json!({ "metadata": { "title": "Dusk" } })),
        )
        .await
        .unwrap();
    stores
        .edits
        .put_versioned(&no_original, None, &attrs(json!({})))
        .await
        .unwrap();
    stores
        .originals
        .put(&no_edits, original("orphan"))
        .await
        .unwrap();
    stores
        .edits
        .put_versioned(&deleted, None, &attrs(json!({ "deleted": true })))
        .await
        .unwrap();
    stores
        .originals
        .put(&malformed, original("m"))
        .await
        .unwrap();
    stores
        .edits
        .put_raw(HashMap::from([
            ("id".to_string(), AttributeValue::S(malformed.to_string())),
            ("version".to_string(), AttributeValue::S("1".into())),
        ]))
        .await
        .unwrap();

    match stores.project_one(&full).await.unwrap().unwrap() {
        Projection::Document(d) => {
            assert_eq!(d.version, v);
            assert_eq!(d.metadata.title.as_deref(), Some("Dusk"));
            assert_eq!(d.original_metadata.title.as_deref(), Some("Dawn"));
        }
        other => panic!("expected a document, got {other:?}"),
    }
    assert_eq!(
        stores.project_one(&no_original).await.unwrap(),
        Err(ProjectionError::MissingOriginal)
    );
    assert_eq!(
        stores.project_one(&no_edits).await.unwrap(),
        Err(ProjectionError::MissingEdits)
    );
    assert_eq!(
        stores.project_one(&id("nothing")).await.unwrap(),
        Err(ProjectionError::MissingEdits)
    );
    assert_eq!(
        stores.project_one(&deleted).await.unwrap(),
        Ok(Projection::Deleted {
            id: deleted.clone(),
            version: ver(1)
        })
    );
    assert!(matches!(
        stores.project_one(&malformed).await.unwrap(),
        Err(ProjectionError::InvalidEdits(_))
    ));

    let asked = vec![
        no_edits.clone(),
        full.clone(),
        malformed.clone(),
        no_original.clone(),
        deleted.clone(),
    ];
    let many = stores.project_many(&asked).await.unwrap();
    assert_eq!(
        many.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>(),
        asked,
        "in the order given"
    );
    assert_eq!(many[0].1, Err(ProjectionError::MissingEdits));
    assert_eq!(
        many[1].1,
        stores.project_one(&full).await.unwrap(),
        "batch and single reads agree"
    );
    assert!(
        matches!(&many[2].1, Err(ProjectionError::InvalidEdits(m)) if !m.contains("bad-edits")),
        "{:?}",
        many[2].1
    );
    assert_eq!(many[3].1, Err(ProjectionError::MissingOriginal));
    assert_eq!(
        many[4].1,
        Ok(Projection::Deleted {
            id: deleted.clone(),
            version: ver(1)
        })
    );
}

// ---------------------------------------------------------------- queue

#[tokio::test(flavor = "multi_thread")]
async fn connecting_twice_declares_the_topology_idempotently() {
    let env = TestEnv::new("cl").await;
    let first = env.broker().await;
    first
        .publish_event("upload", b"{\"kept\":true}")
        .await
        .unwrap();
    let second = env.broker().await;
    assert!(first.is_connected() && second.is_connected());
    let n = &second.names;
    assert_eq!(n.edits, format!("{}.edits", env.name));
    for q in [&n.edits, &n.migration, &n.dead_letters] {
        assert_eq!(second.depth(q).await.unwrap(), 0, "{q}");
    }
    assert_eq!(
        second.depth(&n.uploads).await.unwrap(),
        1,
        "re-declaring keeps queued messages"
    );
    assert_eq!(first.depth(&n.uploads).await.unwrap(), 1);
    assert_eq!(second.high_depth().await.unwrap(), 1);
    // Every routing key of the topology reaches its queue.
    for (kind, queue) in [
        ("edit", &n.edits),
        ("delete", &n.edits),
        ("migrate", &n.migration),
    ] {
        second.publish_event(kind, kind.as_bytes()).await.unwrap();
        assert!(second.depth(queue).await.unwrap() >= 1, "{kind} -> {queue}");
    }
    assert_eq!(second.depth(&n.edits).await.unwrap(), 2);
    assert_eq!(second.depth(&n.migration).await.unwrap(), 1);
    assert_eq!(second.high_depth().await.unwrap(), 3);
    first.close().await;
    second.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn published_events_are_confirmed_and_consumed_with_manual_acks() {
    let env = TestEnv::new("cl").await;
    let broker = env.broker().await;
    let queue = broker.names.edits.clone();
    let body = br#"{"kind":"edit","id":"a/b?c"}"#;
    broker.publish_event("edit", body).await.unwrap();
    wait_depth(&broker, &queue, 1).await;

    let mut consumer = broker.consume(&queue, 1, "cl-consume").await.unwrap();
    let d = next_delivery(&mut consumer).await;
    assert_eq!(d.data, body);
    assert_eq!(d.routing_key.as_str(), "edit");
    assert_eq!(d.exchange.as_str(), broker.names.events);
    assert!(!d.redelivered);
    assert_eq!(d.properties.delivery_mode(), &Some(2), "persistent");
    assert!(d.properties.message_id().is_some());
    assert_eq!(
        broker.depth(&queue).await.unwrap(),
        0,
        "delivered, so not ready"
    );
    assert!(d.acker.ack(BasicAckOptions::default()).await.unwrap());
    broker.close().await;

    // Acked: closing the connection does not bring it back.
    let again = env.broker().await;
    assert_eq!(again.depth(&queue).await.unwrap(), 0);

    // Not acked: closing the connection does.
    again.publish_event("edit", b"unacked").await.unwrap();
    let mut consumer = again.consume(&queue, 1, "cl-unacked").await.unwrap();
    let d = next_delivery(&mut consumer).await;
    assert_eq!(d.data, b"unacked");
    again.close().await;
    let third = env.broker().await;
    wait_depth(&third, &queue, 1).await;
    third.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nacked_message_is_requeued_and_redelivered() {
    let env = TestEnv::new("cl").await;
    let broker = env.broker().await;
    let queue = broker.names.uploads.clone();
    broker.publish_event("upload", b"retry me").await.unwrap();
    let mut consumer = broker.consume(&queue, 1, "cl-nack").await.unwrap();

    let first = next_delivery(&mut consumer).await;
    assert_eq!(first.data, b"retry me");
    assert!(!first.redelivered);
    assert!(first
        .acker
        .nack(BasicNackOptions {
            requeue: true,
            ..Default::default()
        })
        .await
        .unwrap());

    let second = next_delivery(&mut consumer).await;
    assert_eq!(second.data, b"retry me");
    assert!(
        second.redelivered,
        "a requeued message is marked redelivered"
    );
    assert_eq!(
        second.properties.message_id(),
        first.properties.message_id()
    );
    assert!(second.acker.ack(BasicAckOptions::default()).await.unwrap());
    wait_depth(&broker, &queue, 0).await;
    broker.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn publishing_what_no_queue_binds_is_refused() {
    let env = TestEnv::new("cl").await;
    let broker = env.broker().await;
    match broker.publish_event("nobody", b"lost?").await {
        Err(QueueError::Refused {
            routing_key,
            detail,
        }) => {
            assert_eq!(routing_key, "nobody");
            assert!(detail.contains("unroutable"), "{detail}");
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    // The publisher channel still works afterwards.
    broker.publish_event("edit", b"fine").await.unwrap();
    assert_eq!(broker.depth(&broker.names.edits).await.unwrap(), 1);
    for q in [
        &broker.names.uploads,
        &broker.names.migration,
        &broker.names.dead_letters,
    ] {
        assert_eq!(broker.depth(q).await.unwrap(), 0, "{q}");
    }
    broker.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn depth_counts_only_ready_messages() {
    let env = TestEnv::new("cl").await;
    let broker = env.broker().await;
    let queue = broker.names.migration.clone();
    assert_eq!(broker.depth(&queue).await.unwrap(), 0);
    for i in 0..5 {
        broker
            .publish_event("migrate", format!("m{i}").as_bytes())
            .await
            .unwrap();
    }
    wait_depth(&broker, &queue, 5).await;
    assert_eq!(
        broker.high_depth().await.unwrap(),
        0,
        "migration is not high priority"
    );

    let mut consumer = broker.consume(&queue, 2, "cl-depth").await.unwrap();
    let a = next_delivery(&mut consumer).await;
    let b = next_delivery(&mut consumer).await;
    assert_eq!(
        (a.data.as_slice(), b.data.as_slice()),
        (&b"m0"[..], &b"m1"[..])
    );
    wait_depth(&broker, &queue, 3).await; // prefetch 2: two in flight, unacked
    a.acker.ack(BasicAckOptions::default()).await.unwrap();
    let c = next_delivery(&mut consumer).await;
    assert_eq!(c.data, b"m2");
    wait_depth(&broker, &queue, 2).await;

    assert_eq!(broker.purge(&queue).await.unwrap(), 2);
    assert_eq!(broker.depth(&queue).await.unwrap(), 0);
    broker.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_keep_the_body_and_carry_the_reason_in_headers() {
    let env = TestEnv::new("cl").await;
    let broker = env.broker().await;
    let names = broker.names.clone();
    let body = b"{not json";
    broker.publish_event("edit", body).await.unwrap();
    let mut edits = broker.consume(&names.edits, 1, "cl-dl").await.unwrap();
    let d = next_delivery(&mut edits).await;

    let long_error = "e".repeat(1500);
    broker
        .dead_letter(&d, &names.edits, "malformed-json", &long_error)
        .await
        .unwrap();
    d.acker.ack(BasicAckOptions::default()).await.unwrap();
    wait_depth(&broker, &names.dead_letters, 1).await;
    wait_depth(&broker, &names.edits, 0).await;

    let mut dead = broker
        .consume(&names.dead_letters, 1, "cl-dl-read")
        .await
        .unwrap();
    let x = next_delivery(&mut dead).await;
    assert_eq!(x.data, body);
    assert_eq!(
        header(&x.properties, "x-ferry-reason").as_deref(),
        Some("malformed-json")
    );
    assert_eq!(
        header(&x.properties, "x-ferry-error"),
        Some("e".repeat(1000)),
        "error capped at 1000 chars"
    );
    assert_eq!(
        header(&x.properties, "x-ferry-queue").as_deref(),
        Some(names.edits.as_str())
    );
    let at = header(&x.properties, "x-ferry-dead-lettered-at").expect("timestamp header");
    assert!(chrono::DateTime::parse_from_rfc3339(&at).is_ok(), "{at}");
    assert_eq!(
        x.properties.message_id(),
        d.properties.message_id(),
        "original properties kept"
    );
    assert_eq!(header(&x.properties, "x-no-such-header"), None);
    x.acker.ack(BasicAckOptions::default()).await.unwrap();
    wait_depth(&broker, &names.dead_letters, 0).await;
    broker.close().await;
}
