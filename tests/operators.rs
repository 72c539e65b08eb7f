//! Operators drive migrations through one set of operations, exposed as CLI
//! commands and as the admin HTTP API. These tests run the real `ferry`
//! binary (and `ferry worker` with its admin server) against the local
//! stack and check each command's effect on the aliases, queues and records,
//! its refusals, what it prints, and that the HTTP API answers exactly what
//! the CLI answers for the same state.

mod support;

use ferry::index::aliases::{AliasAction, AliasState};
use ferry::index::{Target, Write};
use ferry::ops::lifecycle::Progress;
use ferry::types::{DocId, IndexName, Version};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::admin::Admin;
use support::docs::own_indices;
use support::{eventually, Signal, TestEnv};

/// The admin token the workers of these tests are started with.
const TOKEN: &str = "secret";
/// How long a small migration may take on a busy machine.
const MIGRATION: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------- helpers

fn index(raw: &str) -> IndexName {
    IndexName::parse(raw).expect("valid index name")
}

/// The index `seed` puts the Current alias on.
fn legacy(env: &TestEnv) -> IndexName {
    IndexName::parse(format!("{}_legacy", env.name)).expect("index name")
}

async fn aliases(env: &TestEnv) -> AliasState {
    env.ctx
        .index
        .alias_state(&env.ctx.aliases)
        .await
        .expect("alias state")
}

/// The one migration index (panics unless exactly one carries the alias).
async fn migration_index(env: &TestEnv) -> IndexName {
    let st = aliases(env).await;
    match &st.migration[..] {
        [one] => one.clone(),
        other => panic!("expected one migration index, found {other:?}"),
    }
}

/// `ferry <args>`, which must succeed; returns its standard output.
async fn ok(env: &TestEnv, args: &[&str]) -> String {
    let (code, out, err) = env.cli(args).await;
    assert_eq!(
        code,
        0,
        "`ferry {}` exited {code}\nstdout: {out}\nstderr: {err}",
        args.join(" ")
    );
    out
}

/// `ferry <args> --json`, which must succeed; returns the parsed output.
async fn ok_json(env: &TestEnv, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = ok(env, &all).await;
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("`ferry {}` printed no JSON ({e}): {out}", all.join(" ")))
}

/// `ferry <args>`, which must be refused (exit 1, `refused: ...` on
/// standard error, nothing on standard output); returns the reason.
async fn refused(env: &TestEnv, args: &[&str]) -> String {
    let (code, out, err) = env.cli(args).await;
    assert_eq!(
        code,
        1,
        "`ferry {}` should be refused\nstdout: {out}\nstderr: {err}",
        args.join(" ")
    );
    assert!(out.is_empty(), "a refusal prints nothing on stdout: {out}");
    let why = err
        .lines()
        .find_map(|l| l.strip_prefix("refused: "))
        .unwrap_or_else(|| panic!("`ferry {}` did not say it refused: {err}", args.join(" ")));
    why.to_string()
}

/// `ferry <args> --json`, which must be refused; returns `{"refused": ...}`.
async fn refused_json(env: &TestEnv, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let (code, out, err) = env.cli(&all).await;
    assert_eq!(
        code,
        1,
        "`ferry {}` should be refused\nstdout: {out}\nstderr: {err}",
        all.join(" ")
    );
    let v: Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("no JSON refusal ({e}): {out}"));
    assert!(v["refused"].is_string(), "{v}");
    v
}

fn assert_mentions(text: &str, parts: &[&str]) {
    for p in parts {
        assert!(text.contains(p), "expected {p:?} in:\n{text}");
    }
}

/// The migration counts, read directly.
async fn progress(env: &TestEnv, target: &str) -> Progress {
    support::docs::progress(env, &index(&legacy(env)), &index(target)).await
}

/// Waits until every document has an outcome: `migrated` and `failed`.
async fn wait_outcomes(env: &TestEnv, target: &str, migrated: u64, failed: u64) {
    eventually(
        MIGRATION,
        &format!("{migrated} migrated and {failed} failed into {target}"),
        || async move {
            let p = progress(env, target).await;
            (p.to_go == 0 && p.migrated == migrated && p.failed == failed).then_some(())
        },
    )
    .await
}

/// The ids `env.seed(count, broken)` broke on purpose.
fn broken_ids(env: &TestEnv, count: usize, broken: usize) -> Vec<DocId> {
    let prefix = format!("{}-", env.name);
    (0..count)
        .map(|i| ferry::seed::data::sample(7, i, count, broken, &prefix))
        .filter(|d| d.broken.is_some())
        .map(|d| d.id)
        .collect()
}

async fn migration_depth(env: &TestEnv) -> u32 {
    let b = env.broker().await;
    let depth = b
        .depth(&b.names.migration)
        .await
        .expect("migration queue depth");
    b.close().await;
    depth
}

/// A change report about `index`: exactly `done`, `next` and `index`,
/// with `done` saying `what`.
fn assert_changed(report: &Value, index: &str, what: &str) {
    assert_eq!(
        keys(report),
        BTreeSet::from(["done".into(), "next".into(), "index".into()])
    );
    assert_eq!(report["index"], json!(index));
    assert_eq!(report["done"], json!(what));
}

/// The parts of a status report that do not move between two reads of an
/// idle or paused, drained system.
fn stable(status: &Value) -> Value {
    json!({
        "phase": status["phase"],
        "preview": status["preview"],
        "violations": status["violations"],
        "aliases": status["aliases"],
        "progress": status["progress"],
        "queues": status["queues"],
        "scanner": status["lease"]["owner"],
    })
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .expect("a JSON object")
        .keys()
        .cloned()
        .collect()
}

// ---------------------------------------------------------------- the CLI

#[tokio::test]
async fn start_pause_resume_preview_and_unpreview_flip_the_aliases() {
    let env = TestEnv::new("op").await;
    env.seed(3, 0).await;
    let legacy = legacy(&env);

    let why = refused(&env, &["pause"]).await;
    assert_mentions(&why, &["no migration is in progress", "ferry start"]);
    let s = ok_json(&env, &["status"]).await;
    assert_eq!(s["phase"], "idle");
    assert_eq!(s["aliases"]["current"], json!([legacy]));
    assert_eq!(s["progress"], Value::Null);
    assert_mentions(
        &ok(&env, &["status"]).await,
        &["state:      Idle", "`ferry start` to begin a migration"],
    );

    let out = ok(&env, &["start"]).await;
    let st = aliases(&env).await;
    let target = migration_index(&env).await;
    assert_eq!(
        st.current,
        vec![legacy.clone()],
        "start leaves Current alone"
    );
    let stamp = target
        .strip_prefix(&format!("{}_", env.name))
        .unwrap_or_else(|| panic!("{target} is not <prefix>_<timestamp>"));
    assert_eq!(stamp.len(), "20260102t030405123z".len(), "{stamp}");
    assert!(
        stamp.starts_with("20") && stamp.ends_with('z') && stamp.chars().nth(8) == Some('t'),
        "{stamp}"
    );
    assert!(env.ctx.index.exists(&index(&target)).await.expect("exists"));
    assert_mentions(
        &out,
        &[
            &format!("started a migration from {legacy} into {target}"),
            "next: ",
            "ferry status --watch",
        ],
    );
    assert_eq!(ok_json(&env, &["status"]).await["phase"], "in_progress");

    let why = refused(&env, &["start"]).await;
    assert_mentions(
        &why,
        &[
            &format!("a migration into {target} is already in progress"),
            "ferry complete",
            "ferry abandon",
        ],
    );
    assert_eq!(aliases(&env).await, st, "a refused start changes nothing");
    assert_eq!(
        own_indices(&env).await,
        BTreeSet::from([legacy.to_string(), target.to_string()]),
        "a refused start creates no index"
    );

    let out = ok(&env, &["pause"]).await;
    assert_mentions(
        &out,
        &[
            &format!("the migration into {target} is now paused"),
            "ferry resume",
        ],
    );
    assert_eq!(aliases(&env).await.paused, vec![target.clone()]);
    assert_eq!(ok_json(&env, &["status"]).await["phase"], "paused");
    let why = refused(&env, &["pause"]).await;
    assert_mentions(
        &why,
        &[&format!("the migration into {target} is already paused")],
    );
    assert_eq!(aliases(&env).await.paused, vec![target.clone()]);

    let out = ok(&env, &["resume"]).await;
    assert_mentions(
        &out,
        &[&format!("the migration into {target} is now not paused")],
    );
    assert!(aliases(&env).await.paused.is_empty());
    assert_eq!(ok_json(&env, &["status"]).await["phase"], "in_progress");
    let why = refused(&env, &["resume"]).await;
    assert_mentions(&why, &["is already not paused"]);

    let done = ok_json(&env, &["preview"]).await;
    assert_changed(
        &done,
        &target,
        &format!("the migration into {target} is now in preview"),
    );
    let st = aliases(&env).await;
    assert_eq!(st.preview, vec![target.clone()]);
    assert!(st.paused.is_empty(), "preview does not pause");
    let s = ok_json(&env, &["status"]).await;
    assert_eq!(
        (s["phase"].clone(), s["preview"].clone()),
        (json!("in_progress"), json!(true))
    );
    assert_mentions(
        &refused(&env, &["preview"]).await,
        &["is already in preview"],
    );

    let out = ok(&env, &["unpreview"]).await;
    assert_mentions(
        &out,
        &["is now not in preview", "the preview alias is gone"],
    );
    assert!(aliases(&env).await.preview.is_empty());
    assert_mentions(
        &refused(&env, &["unpreview"]).await,
        &["is already not in preview"],
    );
    let v = refused_json(&env, &["unpreview"]).await;
    assert_mentions(
        v["refused"].as_str().unwrap_or_default(),
        &["is already not in preview"],
    );
    assert_eq!(
        aliases(&env).await.migration,
        vec![target],
        "toggles never touch the Migration alias"
    );
}

#[tokio::test]
async fn complete_refuses_unmigrated_documents_until_forced_then_switches_atomically_and_rolls_back(
) {
    let env = TestEnv::new("op").await;
    env.seed(10, 0).await;
    let legacy = legacy(&env);
    ok(&env, &["start"]).await;
    let target = migration_index(&env).await;
    ok(&env, &["pause"]).await;
    ok(&env, &["preview"]).await;
    let before = aliases(&env).await;

    // No worker runs: nothing is migrated.
    let why = refused(&env, &["complete"]).await;
    assert_mentions(
        &why,
        &[
            "10 documents are not migrated yet and 0 failed (of 10)",
            "ferry failures retry",
            "ferry complete --force",
        ],
    );
    let v = refused_json(&env, &["complete", "--verify-sample", "0"]).await;
    assert_eq!(
        v["refused"],
        json!(why),
        "the JSON refusal carries the same reason"
    );
    assert_eq!(
        aliases(&env).await,
        before,
        "a refused complete changes nothing"
    );

    // Readers watching the aliases during the forced switch always see a
    // healthy state: exactly one Current index, never Current on both.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (index, names, stop) = (env.ctx.index.clone(), env.ctx.aliases.clone(), stop.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                seen.push(index.alias_state(&names).await.expect("alias state"));
                tokio::task::yield_now().await;
            }
            seen
        })
    };
    let out = ok(&env, &["complete", "--force"]).await;
    stop.store(true, Ordering::Relaxed);
    let seen = watcher.await.expect("watcher");
    assert!(!seen.is_empty());
    for st in &seen {
        assert_eq!(st.current.len(), 1, "a reader saw {st:?}");
        let healthy_before = st.current == [legacy.clone()] && st.migration == [target.clone()];
        let healthy_after = st.current == [target.clone()]
            && st.historical == [legacy.clone()]
            && st.migration.is_empty();
        assert!(
            healthy_before || healthy_after,
            "a reader saw a half-switched state: {st:?}"
        );
    }
    assert_mentions(
        &out,
        &[
            &format!("{target} is now Current; {legacy} is Historical"),
            "ferry rollback",
        ],
    );
    let st = aliases(&env).await;
    assert_eq!(
        st,
        AliasState {
            current: vec![target.clone()],
            historical: vec![legacy.clone()],
            ..Default::default()
        },
        "Current moved, Historical on the old index, Migration/paused/preview gone"
    );
    assert_eq!(ok_json(&env, &["status"]).await["phase"], "idle");
    assert_mentions(
        &refused(&env, &["complete", "--force"]).await,
        &["no migration is in progress"],
    );

    // Within the (default, 24 h) window, rollback switches back and leaves
    // the rolled-back index as the paused migration target.
    let out = ok(&env, &["rollback"]).await;
    assert_mentions(
        &out,
        &[
            &format!("{legacy} is Current again; {target} is the paused migration target"),
            "ferry abandon",
        ],
    );
    let st = aliases(&env).await;
    assert_eq!(
        st,
        AliasState {
            current: vec![legacy.clone()],
            migration: vec![target.clone()],
            paused: vec![target.clone()],
            ..Default::default()
        }
    );
    assert_eq!(ok_json(&env, &["status"]).await["phase"], "paused");
    let why = refused(&env, &["rollback"]).await;
    assert_mentions(
        &why,
        &[
            &format!("a migration into {target} is in progress"),
            "ferry abandon",
        ],
    );
    assert_eq!(aliases(&env).await, st);
}

#[tokio::test]
async fn rollback_outside_the_window_is_refused() {
    let mut env = TestEnv::new("op").await;
    env.seed(3, 0).await;
    let legacy = legacy(&env);
    assert_mentions(
        &refused(&env, &["rollback"]).await,
        &["there is no Historical index to roll back to"],
    );

    ok(&env, &["start"]).await;
    let target = migration_index(&env).await;
    ok(&env, &["complete", "--force"]).await;
    let after = aliases(&env).await;
    assert_eq!(
        (after.current.clone(), after.historical.clone()),
        (vec![target.clone()], vec![legacy.clone()])
    );

    env.settings.rollback_window = Duration::from_millis(1);
    let why = refused(&env, &["rollback"]).await;
    assert_mentions(
        &why,
        &[
            "rollback window (1ms)",
            &format!("made {target} Current has closed"),
            &format!("did not reach {legacy}"),
            "Start a new migration instead",
        ],
    );
    assert_eq!(
        aliases(&env).await,
        after,
        "a refused rollback changes nothing"
    );
}

#[tokio::test]
async fn abandon_keeps_or_deletes_the_half_built_index() {
    let env = TestEnv::new("op").await;
    env.seed(3, 0).await;
    let legacy = legacy(&env);
    assert_mentions(
        &refused(&env, &["abandon"]).await,
        &["no migration is in progress"],
    );

    ok(&env, &["start"]).await;
    let first = migration_index(&env).await;
    ok(&env, &["pause"]).await;
    ok(&env, &["preview"]).await;
    let out = ok(&env, &["abandon"]).await;
    assert_mentions(
        &out,
        &[
            &format!("abandoned the migration into {first}"),
            "ferry start",
        ],
    );
    assert!(!out.contains("deleted"), "{out}");
    assert_eq!(
        aliases(&env).await,
        AliasState {
            current: vec![legacy.clone()],
            ..Default::default()
        }
    );
    assert!(
        env.ctx.index.exists(&index(&first)).await.expect("exists"),
        "plain abandon keeps the index"
    );

    ok(&env, &["start"]).await;
    let second = migration_index(&env).await;
    assert_ne!(first, second);
    let done = ok_json(&env, &["abandon", "--delete-index"]).await;
    assert_eq!(done["index"], json!(second));
    assert_mentions(
        done["done"].as_str().unwrap_or_default(),
        &["and deleted the index"],
    );
    assert_eq!(
        aliases(&env).await,
        AliasState {
            current: vec![legacy.clone()],
            ..Default::default()
        }
    );
    assert!(
        !env.ctx.index.exists(&index(&second)).await.expect("exists"),
        "--delete-index deletes it"
    );
    assert_eq!(
        own_indices(&env).await,
        BTreeSet::from([legacy.to_string(), first.to_string()])
    );
}

#[tokio::test]
async fn queue_publishes_migration_messages_while_paused_and_reports_unknown_ids() {
    let env = TestEnv::new("op").await;
    let ids = env.seed(6, 0).await;
    let why = refused(&env, &["queue", ids[0].as_str()]).await;
    assert_mentions(&why, &["no migration is in progress", "ferry start"]);

    ok(&env, &["start"]).await;
    let target = migration_index(&env).await;
    ok(&env, &["pause"]).await;
    assert_eq!(
        migration_depth(&env).await,
        0,
        "no worker runs: nothing is queued yet"
    );

    let out = ok(&env, &["queue", ids[0].as_str(), ids[1].as_str()]).await;
    assert_mentions(
        &out,
        &[&format!("queued 2 document(s) for migration into {target}")],
    );
    assert!(!out.contains("not in the Current index"), "{out}");
    eventually(
        Duration::from_secs(10),
        "2 messages in the migration queue",
        || async { (migration_depth(&env).await == 2).then_some(()) },
    )
    .await;

    let unknown = format!("{}-nope", env.name);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("ids.txt");
    std::fs::write(&file, format!("{}\n\n{unknown}\r\n{}\n", ids[2], ids[3])).expect("write ids");
    let out = ok(
        &env,
        &["queue", "--file", file.to_str().expect("utf-8 path")],
    )
    .await;
    assert_mentions(
        &out,
        &[
            "queued 2 document(s)",
            &format!("not in the Current index: {unknown}"),
        ],
    );
    eventually(
        Duration::from_secs(10),
        "4 messages in the migration queue",
        || async { (migration_depth(&env).await == 4).then_some(()) },
    )
    .await;

    let q = ok_json(&env, &["queue", ids[4].as_str(), &unknown]).await;
    assert_eq!(
        q,
        json!({ "queued": 1, "not_found": [unknown], "target": target })
    );
    eventually(
        Duration::from_secs(10),
        "5 messages in the migration queue",
        || async { (migration_depth(&env).await == 5).then_some(()) },
    )
    .await;
    assert_eq!(
        aliases(&env).await.paused,
        vec![target],
        "queueing by hand does not resume"
    );
}

#[tokio::test]
async fn failures_are_grouped_listed_shown_and_retried() {
    let env = TestEnv::new("op").await;
    // 8 of 20 broken, in 5 ways: 3 messages shared by two documents each,
    // 2 by one (one of the broken ids has path characters in it).
    let ids = env.seed(20, 8).await;
    let broken = broken_ids(&env, 20, 8);
    assert_eq!(broken.len(), 8);
    let legacy = legacy(&env);
    let mut worker = env.spawn_worker();
    ok(&env, &["start"]).await;
    let target = migration_index(&env).await;
    wait_outcomes(&env, &target, 12, 8).await;

    let why = refused(&env, &["complete"]).await;
    assert_mentions(
        &why,
        &[
            "0 documents are not migrated yet and 8 failed (of 20)",
            "--force",
        ],
    );

    // Overview: one group per message, counts adding up, example ids.
    let o = ok_json(&env, &["failures"]).await;
    assert_eq!(o["total"], 8);
    assert_eq!(o["scope"], json!({ "index": legacy, "target": target }));
    let groups = o["groups"].as_array().expect("groups").clone();
    let counts: Vec<u64> = groups
        .iter()
        .map(|g| g["count"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(counts, [2, 2, 2, 1, 1], "largest group first: {groups:?}");
    let examples: BTreeSet<String> = groups
        .iter()
        .flat_map(|g| g["examples"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e.as_str().map(str::to_string))
        .collect();
    assert_eq!(
        examples,
        broken
            .iter()
            .map(|i| i.to_string())
            .collect::<BTreeSet<_>>()
    );
    for g in &groups {
        let m = g["key"].as_str().expect("message");
        assert!(!m.is_empty() && m.chars().count() <= 256, "{m}");
        assert!(
            broken.iter().all(|id| !m.contains(id.as_str())),
            "messages never name a document: {m}"
        );
    }
    let text = ok(&env, &["failures"]).await;
    assert_mentions(
        &text,
        &[
            &format!("8 failed document(s) migrating {legacy} -> {target}"),
            "e.g. ",
            "ferry failures retry --message",
        ],
    );
    for g in &groups {
        assert_mentions(&text, &[g["key"].as_str().unwrap_or_default()]);
    }

    // The paged list of one message.
    let g0 = &groups[0];
    let key = g0["key"].as_str().expect("message").to_string();
    let count = g0["count"].as_u64().expect("count");
    let page = ok_json(&env, &["failures", "--message", &key]).await;
    assert_eq!(page["total"], count);
    assert_eq!(page["page"], 1);
    let items = page["items"].as_array().expect("items");
    assert_eq!(items.len() as u64, count);
    let mut listed: Vec<String> = items
        .iter()
        .map(|i| i[0].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(items.iter().all(|i| i[1] == json!(key)), "{items:?}");
    let mut want: Vec<String> = g0["examples"]
        .as_array()
        .expect("examples")
        .iter()
        .map(|e| e.as_str().unwrap_or_default().to_string())
        .collect();
    want.sort();
    listed.sort();
    assert_eq!(listed, want);
    let text = ok(&env, &["failures", "--message", &key]).await;
    assert_mentions(
        &text,
        &[&format!("page 1 of {count} failure(s):"), &listed[0]],
    );

    // One document's record: failed, migrated, absent.
    let failed_id = listed[0].clone();
    let r = ok_json(&env, &["failures", "show", &failed_id]).await;
    assert_eq!(
        r,
        json!({
            "id": failed_id,
            "scope": { "index": legacy, "target": target },
            "found": true,
            "outcome": { "outcome": "failed", "detail": key },
        })
    );
    assert_mentions(
        &ok(&env, &["failures", "show", &failed_id]).await,
        &[&format!("{failed_id} in {legacy}: "), "\"failed\""],
    );
    let fine = ids
        .iter()
        .find(|i| !broken.contains(i))
        .expect("a healthy document");
    assert_eq!(
        ok_json(&env, &["failures", "show", fine.as_str()]).await["outcome"],
        json!({ "outcome": "migrated" })
    );
    let absent = format!("{}-absent", env.name);
    let r = ok_json(&env, &["failures", "show", &absent]).await;
    assert_eq!(
        (r["found"].clone(), r["outcome"].clone()),
        (json!(false), Value::Null)
    );
    assert_mentions(
        &ok(&env, &["failures", "show", &absent]).await,
        &[&format!("{absent} is not in {legacy}")],
    );
    assert_mentions(
        &refused(&env, &["failures", "--historical"]).await,
        &["there is no Historical index"],
    );

    // Retry with the worker stopped, so the cleared records and the queued
    // messages can be seen before they are processed again.
    eventually(
        Duration::from_secs(30),
        "an empty migration queue",
        || async { (migration_depth(&env).await == 0).then_some(()) },
    )
    .await;
    worker.signal(Signal::SIGTERM);
    assert_eq!(
        worker.wait(Duration::from_secs(30)).await,
        Some(0),
        "the worker stops cleanly"
    );
    let base = u64::from(migration_depth(&env).await);
    let out = ok(&env, &["failures", "retry", "--message", &key]).await;
    assert_mentions(
        &out,
        &[&format!(
            "cleared {count} failure record(s) and queued {count} document(s) again"
        )],
    );
    let p = progress(&env, &target).await;
    assert_eq!(
        (p.failed, p.to_go, p.migrated),
        (8 - count, count, 12),
        "{p:?}"
    );
    assert_eq!(
        ok_json(&env, &["failures", "show", &failed_id]).await["outcome"],
        json!({ "outcome": "pending" })
    );
    eventually(
        Duration::from_secs(10),
        "the retried documents in the migration queue",
        || async { (u64::from(migration_depth(&env).await) == base + count).then_some(()) },
    )
    .await;
    let other = broken
        .iter()
        .find(|i| !listed.contains(&i.to_string()))
        .expect("a failure in another group");
    let r = ok_json(&env, &["failures", "retry", other.as_str()]).await;
    assert_eq!(r, json!({ "cleared": 1, "queued": 1 }));
    assert_eq!(progress(&env, &target).await.failed, 7 - count);

    // They are still broken: a worker records their failures again.
    let _worker = env.spawn_worker();
    wait_outcomes(&env, &target, 12, 8).await;

    // After a forced completion, the failures stay readable on the
    // Historical index.
    ok(&env, &["complete", "--force"]).await;
    let o = ok_json(&env, &["failures", "--historical"]).await;
    assert_eq!(o["total"], 8);
    assert_eq!(o["scope"], json!({ "index": legacy, "target": target }));
    assert_mentions(
        &refused(&env, &["failures"]).await,
        &["no migration is in progress", "--historical"],
    );
}

#[tokio::test]
async fn verify_compares_the_target_with_the_stores() {
    let env = TestEnv::new("op").await;
    let ids = env.seed(10, 0).await;
    let legacy = legacy(&env);
    let _worker = env.spawn_worker();
    ok(&env, &["start"]).await;
    let target = migration_index(&env).await;
    wait_outcomes(&env, &target, 10, 0).await;

    let out = ok(&env, &["verify"]).await;
    assert_mentions(
        &out,
        &[
            &format!("compared 10 document(s) in {target} with the stores"),
            "no differences",
        ],
    );
    let r = ok_json(&env, &["verify", "--all"]).await;
    assert_eq!(
        r,
        json!({ "target": target, "source": legacy, "compared": 10, "failed": 0, "differences": [] })
    );

    // Corrupt one document by hand, with a newer version so nothing
    // overwrites it.
    let id = &ids[4];
    let stored = env
        .ctx
        .index
        .get(&index(&target), id)
        .await
        .expect("get")
        .expect("migrated document");
    let mut body = stored.source.clone();
    body["metadata"]["title"] = json!("tampered with by hand");
    let v = stored.version() + 1;
    body["version"] = json!(v);
    let w = env
        .ctx
        .index
        .put_external(
            &Target::Index(index(&target)),
            id,
            Version::new(v).expect("version"),
            &body,
        )
        .await
        .expect("put");
    assert_eq!(w, Write::Done);

    let (code, out, err) = env.cli(&["verify"]).await;
    assert_eq!(
        code, 1,
        "verify exits 1 on a difference\nstdout: {out}\nstderr: {err}"
    );
    assert_mentions(
        &out,
        &[
            "differs",
            id.as_str(),
            "differs from a fresh projection",
            "1 difference(s)",
        ],
    );
    let (code, out, _) = env.cli(&["verify", "--all", "--json"]).await;
    assert_eq!(code, 1);
    let r: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(r["compared"], 10);
    let diffs = r["differences"].as_array().expect("differences");
    assert_eq!(diffs.len(), 1, "{diffs:?}");
    assert_eq!(
        (diffs[0]["id"].clone(), diffs[0]["kind"].clone()),
        (json!(id), json!("differs"))
    );

    // complete samples the target before switching (100 by default).
    let before = aliases(&env).await;
    let why = refused(&env, &["complete"]).await;
    assert_mentions(
        &why,
        &[
            "a sampled verify found 1 differences",
            "ferry verify",
            "--force",
        ],
    );
    assert_eq!(aliases(&env).await, before);
}

#[tokio::test]
async fn invariant_violations_are_reported_and_block_changes() {
    let env = TestEnv::new("op").await;
    env.seed(3, 0).await;
    let legacy = legacy(&env);
    let names = env.ctx.aliases.clone();
    ok(&env, &["start"]).await;
    let target = migration_index(&env).await;
    let stray = format!("{}_stray", env.name);
    let mapping = ferry::index::read_mapping(&env.settings.mapping).expect("mapping");
    env.ctx
        .index
        .create_index(&index(&stray), &mapping)
        .await
        .expect("create stray index");

    // Current on a second index.
    let add = |i: &str, a: &IndexName| AliasAction::Add {
        index: index(i),
        alias: a.clone(),
    };
    let remove = |i: &str, a: &IndexName| AliasAction::Remove {
        index: index(i),
        alias: a.clone(),
    };
    env.ctx
        .index
        .update_aliases(&[add(&stray, &names.current)])
        .await
        .expect("break Current");
    let two_current = format!(
        "2 indices carry the {} alias ({legacy}, {stray}); exactly one must",
        names.current
    );
    let s = ok_json(&env, &["status"]).await;
    assert_eq!(s["phase"], "broken");
    assert_eq!(s["violations"], json!([two_current]));
    assert_eq!(s["progress"], Value::Null);
    let text = ok(&env, &["status"]).await;
    assert_mentions(
        &text,
        &[
            "state:      Broken",
            &format!("INVARIANT BROKEN: {two_current}"),
            "fix the aliases by hand",
        ],
    );
    let broken = aliases(&env).await;
    for cmd in [
        &["start"][..],
        &["complete", "--force"],
        &["pause"],
        &["abandon"],
        &["failures"],
    ] {
        let why = refused(&env, cmd).await;
        assert_mentions(
            &why,
            &[
                "the aliases break an invariant",
                &two_current,
                "Fix them by hand",
                "ferry status",
            ],
        );
    }
    assert_eq!(
        aliases(&env).await,
        broken,
        "refused commands change nothing"
    );
    assert_eq!(
        own_indices(&env).await,
        BTreeSet::from([legacy.to_string(), target.to_string(), stray.clone()])
    );

    // Repaired by hand, then Migration also on the Current index.
    env.ctx
        .index
        .update_aliases(&[remove(&stray, &names.current)])
        .await
        .expect("repair");
    assert_eq!(ok_json(&env, &["status"]).await["phase"], "in_progress");
    env.ctx
        .index
        .update_aliases(&[add(&legacy, &names.migration)])
        .await
        .expect("break Migration");
    let s = ok_json(&env, &["status"]).await;
    assert_eq!(s["phase"], "broken");
    let both = format!(
        "index {legacy} carries both {} and {}",
        names.current, names.migration
    );
    // Sorted by name: the timestamped target sorts before `_legacy`.
    let two_migration = format!(
        "2 indices carry the {} alias ({target}, {legacy}); at most one may",
        names.migration
    );
    assert_eq!(s["violations"], json!([two_migration, both]));
    for cmd in [&["start"][..], &["complete", "--force"]] {
        assert_mentions(
            &refused(&env, cmd).await,
            &["the aliases break an invariant", &both],
        );
    }

    // And with no migration running: Migration on Current alone.
    env.ctx
        .index
        .update_aliases(&[remove(&target, &names.migration)])
        .await
        .expect("only Current+Migration");
    let s = ok_json(&env, &["status"]).await;
    assert_eq!(
        (s["phase"].clone(), s["violations"].clone()),
        (json!("broken"), json!([both]))
    );
    assert_mentions(&refused(&env, &["start"]).await, &[&both]);
    assert_eq!(
        own_indices(&env).await.len(),
        3,
        "a refused start creates no index"
    );
    env.ctx
        .index
        .delete_index(&index(&stray))
        .await
        .expect("clean up");
}

#[tokio::test]
async fn bad_arguments_exit_non_zero_with_usage() {
    let env = TestEnv::new("op").await;
    let (code, _, err) = env.cli(&["frobnicate"]).await;
    assert_eq!(code, 2, "{err}");
    assert_mentions(
        &err,
        &["unrecognized subcommand 'frobnicate'", "Usage: ferry"],
    );

    let (code, _, err) = env.cli(&["complete", "--verify-sample", "x"]).await;
    assert_eq!(code, 2, "{err}");
    assert_mentions(
        &err,
        &[
            "invalid value 'x' for '--verify-sample <VERIFY_SAMPLE>'",
            "try '--help'",
        ],
    );

    let (code, _, err) = env.cli(&["queue"]).await;
    assert_eq!(code, 2, "{err}");
    assert_mentions(
        &err,
        &["<IDS|--file <FILE>|--query <QUERY>", "Usage: ferry queue"],
    );

    let (code, _, err) = env.cli(&["queue", "a", "--file", "ids.txt"]).await;
    assert_eq!(code, 2, "{err}");
    assert_mentions(&err, &["cannot be used with", "Usage: ferry queue"]);

    let (code, _, err) = env.cli(&["failures", "retry"]).await;
    assert_eq!(code, 2, "{err}");
    assert_mentions(&err, &["Usage: ferry failures retry"]);

    // Refused before any measuring, not after an hour of bench.
    let (code, _, err) = env.cli(&["bench", "--plot", "out.png"]).await;
    assert_eq!(code, 2, "{err}");
    assert_mentions(&err, &["ending in .svg", "try '--help'"]);

    let (code, _, err) = env.cli(&["queue", "--file", "/nonexistent/ids.txt"]).await;
    assert_eq!(code, 1, "{err}");
    assert_mentions(&err, &["cannot read /nonexistent/ids.txt"]);
}

// ---------------------------------------------------------------- the HTTP API

#[tokio::test]
async fn the_http_api_answers_what_the_cli_answers() {
    let env = TestEnv::new("op").await;
    let ids = env.seed(15, 3).await;
    let broken = broken_ids(&env, 15, 3);
    let admin = Admin::start(&env, &[("FERRY_ADMIN_TOKEN", TOKEN)]).await;

    // Idle.
    let (code, api) = admin.get("/api/status", &[]).await;
    assert_eq!(code, 200);
    let cli = ok_json(&env, &["status"]).await;
    assert_eq!(api["phase"], "idle");
    assert_eq!(stable(&api)["aliases"], stable(&cli)["aliases"]);
    assert_eq!(stable(&api)["progress"], Value::Null);
    let (code, api) = admin.get("/api/failures", &[]).await;
    assert_eq!(code, 409);
    assert_eq!(api, refused_json(&env, &["failures"]).await);

    // A paused migration with recorded failures, queues drained.
    ok(&env, &["start"]).await;
    let target = migration_index(&env).await;
    wait_outcomes(&env, &target, 12, 3).await;
    ok(&env, &["pause"]).await;
    eventually(Duration::from_secs(30), "drained queues", || async {
        let s = ok_json(&env, &["status"]).await;
        (s["queues"] == json!({ "high": 0, "low": 0, "dead_letters": 0 })).then_some(())
    })
    .await;
    let cli = ok_json(&env, &["status"]).await;
    let (code, api) = admin.get("/api/status", &[]).await;
    assert_eq!(code, 200);
    assert_eq!(stable(&api), stable(&cli));
    assert_eq!(api["phase"], "paused");
    assert_eq!(
        api["progress"],
        json!({ "total": 15, "migrated": 12, "failed": 3, "to_go": 0 })
    );
    assert!(
        api["lease"]["owner"].is_string(),
        "the worker holds the scan lease: {api}"
    );
    assert_eq!(keys(&api), keys(&cli));

    let cli = ok_json(&env, &["failures"]).await;
    let (code, api) = admin.get("/api/failures", &[]).await;
    assert_eq!(code, 200);
    assert_eq!(api, cli);
    assert_eq!(api["total"], 3);
    let key = api["groups"][0]["key"]
        .as_str()
        .expect("a message")
        .to_string();
    let (_, api) = admin.get("/api/failures", &[("message", &key)]).await;
    assert_eq!(api, ok_json(&env, &["failures", "--message", &key]).await);
    assert!(!api["items"].as_array().expect("items").is_empty());

    // Records: failed, migrated with path characters in its id, absent.
    let special = ids
        .iter()
        .find(|i| i.as_str().contains('?'))
        .expect("an id with path characters");
    let absent = format!("{}-absent", env.name);
    for id in [broken[0].as_str(), special.as_str(), &absent] {
        let (code, api) = admin.get("/api/record", &[("id", id)]).await;
        assert_eq!(code, 200, "{api}");
        assert_eq!(
            api,
            ok_json(&env, &["failures", "show", id]).await,
            "record of {id}"
        );
    }
    let (_, api) = admin.get("/api/record", &[("id", special.as_str())]).await;
    assert_eq!(api["outcome"], json!({ "outcome": "migrated" }));
    let (_, api) = admin
        .get("/api/record", &[("id", broken[0].as_str())])
        .await;
    assert_eq!(api["outcome"]["outcome"], "failed");

    let (code, api) = admin.get("/api/verify", &[]).await;
    assert_eq!(code, 200);
    assert_eq!(api, ok_json(&env, &["verify"]).await);
    assert_eq!(
        (api["compared"].clone(), api["failed"].clone()),
        (json!(12), json!(3))
    );

    // A broken state reads the same both ways too.
    let names = env.ctx.aliases.clone();
    let legacy = legacy(&env);
    env.ctx
        .index
        .update_aliases(&[AliasAction::Add {
            index: legacy.clone(),
            alias: names.preview.clone(),
        }])
        .await
        .expect("break");
    let cli = ok_json(&env, &["status"]).await;
    let (_, api) = admin.get("/api/status", &[]).await;
    assert_eq!(api["phase"], "broken");
    assert_eq!(
        api["violations"],
        json!([format!(
            "{} is on {legacy}, which is not the migration index",
            names.preview
        )])
    );
    assert_eq!(stable(&api), stable(&cli));
    let (code, api) = admin.get("/api/failures", &[]).await;
    assert_eq!(code, 409);
    assert_eq!(api, refused_json(&env, &["failures"]).await);
    drop(admin.worker);
}

#[tokio::test]
async fn mutations_need_the_token() {
    let env = TestEnv::new("op").await;
    env.seed(5, 0).await;
    let legacy = legacy(&env);
    let admin = Admin::start(&env, &[("FERRY_ADMIN_TOKEN", TOKEN)]).await;
    let idle = aliases(&env).await;

    let unauthorized = |(code, body, headers): (u16, Value, reqwest::header::HeaderMap)| {
        assert_eq!(code, 401, "{body}");
        assert_eq!(
            headers
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer")
        );
        assert_mentions(
            body["error"].as_str().unwrap_or_default(),
            &["Authorization: Bearer"],
        );
    };
    unauthorized(admin.post("/api/start", None, None).await);
    unauthorized(
        admin
            .post("/api/start", Some("wrong"), Some(json!({})))
            .await,
    );
    unauthorized(admin.post("/api/start", Some(""), None).await);
    assert_eq!(aliases(&env).await, idle, "no migration was started");
    assert_eq!(own_indices(&env).await.len(), 1);

    let (code, started, _) = admin.post("/api/start", Some(TOKEN), None).await;
    assert_eq!(code, 200, "{started}");
    let target = migration_index(&env).await;
    assert_changed(
        &started,
        &target,
        &format!("started a migration from {legacy} into {target}"),
    );

    let running = aliases(&env).await;
    let attempts: [(&str, Option<Value>); 9] = [
        ("/api/pause", None),
        ("/api/preview", None),
        ("/api/start", None),
        ("/api/complete", Some(json!({ "force": true }))),
        ("/api/abandon", Some(json!({ "delete_index": true }))),
        (
            "/api/failures/retry",
            Some(json!({ "message": "anything" })),
        ),
        (
            "/api/queue",
            Some(json!({ "ids": [format!("{}-000001", env.name)] })),
        ),
        ("/api/rollback", None),
        ("/api/throttle", Some(json!({ "max_docs_per_second": 1 }))),
    ];
    for (path, body) in &attempts {
        // The token is checked before the body is even read.
        unauthorized(admin.post_raw(path, None, None).await);
        let malformed = Some(("application/json", "{not json".to_string()));
        unauthorized(admin.post_raw(path, None, malformed).await);
        unauthorized(admin.post(path, None, body.clone()).await);
        unauthorized(admin.post(path, Some("secret2"), body.clone()).await);
        unauthorized(admin.post(path, Some("Secret"), body.clone()).await);
    }
    assert_eq!(
        aliases(&env).await,
        running,
        "nothing changed without the token"
    );
    assert!(env.ctx.index.exists(&index(&target)).await.expect("exists"));

    // With the token: the same JSON as the CLI's --json, refusals as 409.
    let (code, paused, _) = admin.post("/api/pause", Some(TOKEN), None).await;
    assert_eq!(code, 200, "{paused}");
    assert_eq!(aliases(&env).await.paused, vec![target.clone()]);
    ok(&env, &["resume"]).await;
    assert_eq!(
        ok_json(&env, &["pause"]).await,
        paused,
        "the API and the CLI report a pause alike"
    );
    let (code, why, _) = admin.post("/api/pause", Some(TOKEN), None).await;
    assert_eq!(code, 409);
    assert_eq!(why, refused_json(&env, &["pause"]).await);
    assert_mentions(
        why["refused"].as_str().unwrap_or_default(),
        &["already paused"],
    );
    let (code, why, _) = admin.post("/api/start", Some(TOKEN), Some(json!({}))).await;
    assert_eq!(code, 409);
    assert_eq!(why, refused_json(&env, &["start"]).await);

    let (code, r, _) = admin
        .post(
            "/api/failures/retry",
            Some(TOKEN),
            Some(json!({ "message": "no such failure" })),
        )
        .await;
    assert_eq!((code, r), (200, json!({ "cleared": 0, "queued": 0 })));
    let malformed = Some(("application/json", "{not json".to_string()));
    let (code, r, _) = admin.post_raw("/api/queue", Some(TOKEN), malformed).await;
    assert_eq!(code, 400, "{r}");
    assert_mentions(r["invalid"].as_str().unwrap_or_default(), &["JSON"]);
    let (code, r, _) = admin
        .post("/api/failures/retry", Some(TOKEN), Some(json!({})))
        .await;
    assert_eq!(
        (code, r),
        (
            400,
            json!({ "invalid": "name document ids, a failure message, or all failures" })
        )
    );
    let unknown = format!("{}-nope", env.name);
    let (code, q, _) = admin
        .post(
            "/api/queue",
            Some(TOKEN),
            Some(json!({ "ids": [format!("{}-000001", env.name), unknown] })),
        )
        .await;
    assert_eq!(
        (code, q),
        (
            200,
            json!({ "queued": 1, "not_found": [unknown], "target": target })
        )
    );

    let (code, done, _) = admin
        .post("/api/complete", Some(TOKEN), Some(json!({ "force": true })))
        .await;
    assert_eq!(code, 200, "{done}");
    assert_eq!(
        keys(&done),
        BTreeSet::from(["done".into(), "next".into(), "index".into()])
    );
    assert_eq!(
        aliases(&env).await,
        AliasState {
            current: vec![target.clone()],
            historical: vec![legacy.clone()],
            ..Default::default()
        }
    );
    unauthorized(admin.post("/api/rollback", Some("wrong"), None).await);
    assert_eq!(aliases(&env).await.current, vec![target.clone()]);
    let (code, back, _) = admin.post("/api/rollback", Some(TOKEN), None).await;
    assert_eq!(code, 200, "{back}");
    assert_eq!(aliases(&env).await.current, vec![legacy.clone()]);
    let (code, gone, _) = admin
        .post(
            "/api/abandon",
            Some(TOKEN),
            Some(json!({ "delete_index": true })),
        )
        .await;
    assert_eq!(code, 200, "{gone}");
    assert_eq!(
        aliases(&env).await,
        AliasState {
            current: vec![legacy],
            ..Default::default()
        }
    );
    assert!(!env.ctx.index.exists(&index(&target)).await.expect("exists"));
    drop(admin.worker);
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let env = TestEnv::new("op").await;
    env.seed(5, 0).await;
    let admin = Admin::start(&env, &[("FERRY_ADMIN_TOKEN", TOKEN)]).await;
    let r = admin
        .http
        .get(admin.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().await.expect("body"), "ok");
    eventually(Duration::from_secs(30), "/readyz is 200", || async {
        let r = admin.http.get(admin.url("/readyz")).send().await.ok()?;
        (r.status().as_u16() == 200).then_some(r.text().await.ok()?)
    })
    .await;
    let r = admin
        .http
        .get(admin.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(
        (r.status().as_u16(), r.text().await.expect("body")),
        (200, "ready".to_string())
    );

    ok(&env, &["start"]).await;
    let target = migration_index(&env).await;
    wait_outcomes(&env, &target, 5, 0).await;
    let migrated = eventually(
        Duration::from_secs(10),
        "migration messages counted in /metrics",
        || async {
            let n = admin
                .metric("ferry_messages_total", &[("queue", "migration")])
                .await;
            (n >= 5).then_some(n)
        },
    )
    .await;
    let scrape = admin.metrics().await.expect("/metrics");
    let counted: Vec<_> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "ferry_messages_total")
        .collect();
    assert!(
        counted
            .iter()
            .all(|s| matches!(s.value, prometheus_parse::Value::Counter(_))),
        "ferry_messages_total is a counter: {counted:?}"
    );
    assert!(migrated >= 5, "at least 5 migration messages counted");
    drop(admin.worker);
}
