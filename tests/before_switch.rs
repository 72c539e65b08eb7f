//! Before the switch (issue #20), against the real stack: a trial of a
//! mapping on a sample, searches compared between Current and the new
//! index, and a subset re-migrated by query.

mod support;

use ferry::index::records;
use ferry::ops::compare::{self, NamedQuery, Spec};
use ferry::ops::lifecycle;
use ferry::stores::Projection;
use ferry::types::{DocId, IndexName};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;
use support::docs::{mapping_with, own_indices, progress, projection};
use support::{eventually, TestEnv};

const LONG: Duration = Duration::from_secs(180);

/// Labels as numbers: every document with labels is refused. And
/// `usageRights` left out: the engine maps it dynamically.
fn rejecting_mapping() -> String {
    mapping_with("labels-long", |m| {
        let props = &mut m["mappings"]["properties"];
        props["userMetadata"]["properties"]["labels"] = json!({ "type": "long" });
        props
            .as_object_mut()
            .expect("properties")
            .remove("usageRights");
    })
}

/// Whether the stores' projection of `id` has labels (the rejecting
/// mapping refuses it).
async fn has_labels(env: &TestEnv, id: &DocId) -> bool {
    match projection(env, id).await {
        Projection::Document(d) => d
            .to_json()
            .pointer("/userMetadata/labels")
            .and_then(Value::as_array)
            .is_some_and(|l| !l.is_empty()),
        Projection::Deleted { .. } => false,
    }
}

async fn aliases_untouched(env: &TestEnv, current: &IndexName) {
    let st = env.ctx.alias_state().await.expect("aliases");
    assert_eq!(st.current, vec![current.clone()]);
    assert!(
        st.migration.is_empty() && st.historical.is_empty(),
        "{st:?}"
    );
    assert_eq!(
        own_indices(env).await,
        BTreeSet::from([current.to_string()]),
        "the trial left an index behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trial_groups_refusals_exits_1_and_leaves_nothing_behind() {
    let env = TestEnv::new("tr").await;
    let ids = env.seed(40, 0).await;
    let current = env.current_index().await;
    let mut refused = 0;
    for id in &ids {
        refused += has_labels(&env, id).await as usize;
    }
    assert!(
        refused > 0 && refused < ids.len(),
        "{refused} of 40 have labels"
    );

    let (code, out, err) = env
        .cli(&[
            "trial",
            "--mapping",
            &rejecting_mapping(),
            "--sample",
            "40",
            "--json",
        ])
        .await;
    assert_eq!(code, 1, "a refusing trial exits 1\n{out}\n{err}");
    let r: Value = serde_json::from_str(&out).expect("trial JSON");
    assert_eq!(r["sampled"], 40, "{r}");
    assert_eq!(r["accepted"], 40 - refused as u64, "{r}");
    let groups = r["failures"].as_array().expect("failures");
    assert_eq!(groups.len(), 1, "one cause, one group: {r}");
    assert_eq!(groups[0]["count"], refused as u64, "{r}");
    let message = groups[0]["message"].as_str().expect("message");
    assert!(message.contains("userMetadata.labels"), "{message}");
    assert!(
        !ids.iter().any(|id| message.contains(id.as_str())),
        "normalized like failure records: {message}"
    );
    assert_eq!(r["undeclared_fields"], json!(["usageRights"]), "{r}");
    assert!(r["sizes"]["p50"].as_u64().unwrap_or(0) > 100, "{r}");
    aliases_untouched(&env, &current).await;

    let (code, out, err) = env.cli(&["trial", "--sample", "25"]).await;
    assert_eq!(code, 0, "a clean trial exits 0\n{out}\n{err}");
    assert!(out.contains("25 accepted, 0 failed"), "{out}");
    aliases_untouched(&env, &current).await;

    let (code, _, err) = env.cli(&["trial", "--sample", "0"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--sample must be between"), "{err}");
    // Nothing is recorded on the old index.
    let recorded = env
        .ctx
        .index
        .count(
            &current,
            json!({ "exists": { "field": "esInfo.migration" } }),
        )
        .await
        .expect("count");
    assert_eq!(recorded, 0);
}

/// Starts a migration with `mapping`, runs a worker until nothing is to go.
async fn migrate(env: &TestEnv, mapping: &str) -> (IndexName, IndexName) {
    let current = env.current_index().await;
    let target = IndexName::parse(
        lifecycle::start(&env.ctx, mapping)
            .await
            .expect("start")
            .index,
    )
    .expect("target");
    let mut worker = env.spawn_worker();
    eventually(LONG, "every document has an outcome", || async {
        let p = progress(env, &current, &target).await;
        (p.to_go == 0).then_some(())
    })
    .await;
    worker.child.kill().await.expect("stop the worker");
    // The scanner may have queued a document again before its outcome was
    // recorded: what the test queues next must be all there is.
    let broker = env.broker().await;
    let queue = broker.names.migration.clone();
    eventually(LONG, "the stopped worker's messages are back", || async {
        (broker.consumers(&queue).await.ok()? == 0).then_some(())
    })
    .await;
    broker.purge(&queue).await.expect("purge");
    (current, target)
}

fn search(name: &str, body: Value) -> NamedQuery {
    NamedQuery {
        name: name.into(),
        body,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_finds_the_same_results_and_flags_a_changed_analyzer() {
    let env = TestEnv::new("cmp").await;
    env.seed(40, 0).await;
    // Titles as keywords: a word no longer matches a title.
    let keyword_titles = mapping_with("title-keyword", |m| {
        m["mappings"]["properties"]["metadata"]["properties"]["title"] =
            json!({ "type": "keyword" });
    });
    let (current, target) = migrate(&env, &keyword_titles).await;
    // A word of a title in Current.
    let any = env
        .ctx
        .index
        .search(&current, json!({ "size": 1, "sort": [{ "id": "asc" }] }))
        .await
        .expect("search");
    let title = any["hits"]["hits"][0]["_source"]["metadata"]["title"]
        .as_str()
        .expect("a title")
        .to_string();
    let word = title.split_whitespace().next().expect("a word");
    let by_id = |q: Value| json!({ "query": q, "sort": [{ "id": "asc" }] });
    let queries = vec![
        search("all by id", by_id(json!({ "match_all": {} }))),
        search(
            "before 2018 by id",
            by_id(json!({ "range": { "uploadTime": { "lt": "2018-01-01" } } })),
        ),
        search(
            "a title word",
            by_id(json!({ "match": { "metadata.title": word } })),
        ),
    ];
    let spec = Spec::new(queries.clone(), 10, 0.8).expect("spec");
    let c = compare::compare(&env.ctx, &spec).await.expect("compare");
    assert_eq!(c.new, target.as_str());
    assert_eq!(c.flagged, 1, "{c:#?}");
    let worst = &c.results[0];
    assert_eq!(worst.name, "a title word", "worst first: {c:#?}");
    assert!(
        worst.flagged && worst.current_hits > 0 && worst.new_hits == 0,
        "{c:#?}"
    );
    for r in &c.results[1..] {
        assert!(!r.flagged, "{r:?}");
        assert_eq!((r.overlap, r.average_overlap), (1.0, 1.0), "{r:?}");
        assert_eq!(r.current_hits, r.new_hits, "{r:?}");
    }
    assert_eq!(compare::latest(&env.ctx).await.expect("latest"), Some(c));

    // The CLI: exit 1 while flagged; `complete --compare` refuses, and
    // without the flagged search it passes that gate.
    let file = |qs: &[NamedQuery]| {
        let path = format!("{}/queries-{}.jsonl", env!("CARGO_TARGET_TMPDIR"), env.name);
        let lines: Vec<String> = qs
            .iter()
            .map(|q| {
                let mut o = q.body.clone();
                o["name"] = json!(q.name);
                o.to_string()
            })
            .collect();
        std::fs::write(&path, lines.join("\n")).expect("queries file");
        path
    };
    let all = file(&queries);
    let (code, out, _) = env.cli(&["compare", "--queries", &all]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FLAGGED") && out.contains("a title word"),
        "{out}"
    );
    let (code, _, err) = env
        .cli(&["complete", "--verify-sample", "0", "--compare", &all])
        .await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("1 of 3 searches") && err.contains("a title word"),
        "{err}"
    );
    let same = file(&queries[..2]);
    let (code, out, err) = env
        .cli(&["complete", "--verify-sample", "0", "--compare", &same])
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.current_index().await, target);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_by_query_remigrates_exactly_the_selection() {
    let env = TestEnv::new("qq").await;
    let ids = env.seed(60, 0).await;
    let (current, target) = migrate(&env, &rejecting_mapping()).await;
    assert!(progress(&env, &current, &target).await.failed > 0);

    // The selection, computed here from the documents themselves.
    let (since, until) = ("2016-01-01", "2020-01-01");
    let mut selected = BTreeSet::new();
    for id in &ids {
        let doc = env
            .ctx
            .index
            .get(&current, id)
            .await
            .expect("get")
            .expect("doc");
        let at = doc.source["uploadTime"].as_str().expect("uploadTime");
        if (since..until).contains(&&at[..10]) {
            selected.insert(id.clone());
        }
    }
    assert!(!selected.is_empty() && selected.len() < ids.len());

    let (code, out, err) = env
        .cli(&["queue", "--since", since, "--until", until, "--json"])
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    let q: Value = serde_json::from_str(&out).expect("queue JSON");
    assert_eq!(q["matched"].as_u64(), Some(selected.len() as u64), "{q}");
    assert_eq!(q["queued"].as_u64(), Some(selected.len() as u64), "{q}");

    // Exactly the selection lost its outcome records (migrated or
    // failed), and is queued.
    env.ctx.index.refresh(&current).await.expect("refresh");
    let reply = env
        .ctx
        .index
        .search(
            &current,
            json!({ "query": records::unmigrated(&target), "size": 100, "_source": false }),
        )
        .await
        .expect("search");
    let pending: BTreeSet<DocId> = reply["hits"]["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .map(|h| DocId::parse(h["_id"].as_str().expect("id")).expect("id"))
        .collect();
    assert_eq!(pending, selected);
    let broker = env.broker().await;
    let depth = || async { broker.depth(&broker.names.migration).await.expect("depth") };
    assert_eq!(depth().await, selected.len() as u32);

    // Every other failure retried at once.
    let failed = progress(&env, &current, &target).await.failed;
    assert!(
        failed > 0,
        "some refused documents are outside the selection"
    );
    let (code, out, err) = env.cli(&["failures", "retry", "--all", "--json"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let r: Value = serde_json::from_str(&out).expect("retry JSON");
    assert_eq!(
        (r["cleared"].as_u64(), r["queued"].as_u64()),
        (Some(failed), Some(failed)),
        "{r}"
    );
    assert_eq!(depth().await, selected.len() as u32 + failed as u32);

    // Bad input is refused with a reason.
    let (code, _, err) = env.cli(&["queue", "--query", "[1]"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("JSON object"), "{err}");
    let (code, _, err) = env.cli(&["queue", "--since", "yesterday"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("neither a date"), "{err}");

    // A worker migrates them again: nothing left to go.
    let _worker = env.spawn_worker();
    eventually(LONG, "the selection is migrated again", || async {
        let p = progress(&env, &current, &target).await;
        (p.to_go == 0).then_some(())
    })
    .await;
}
