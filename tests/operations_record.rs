//! The operations record (issue #21): every state-changing action, from
//! the CLI or the admin API, leaves exactly one entry with who, what and
//! the outcome, also when refused; `ferry history` and `GET /api/history`
//! read it back newest first.

mod support;

use serde_json::{json, Value};
use support::admin::Admin;
use support::docs::mapping_with;
use support::TestEnv;

const TOKEN: &str = "record-token";

/// (action, by, outcome) of each entry, newest first.
fn summary(entries: &Value) -> Vec<(String, String, String)> {
    entries
        .as_array()
        .expect("a list of entries")
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (s("action"), s("by"), s("outcome"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_action_leaves_one_entry_also_when_refused_and_over_the_api() {
    let env = TestEnv::new("rec").await;
    env.seed(10, 0).await;
    let cli = |args: &'static [&'static str]| env.cli(args);

    // Reads are not recorded.
    assert_eq!(cli(&["status"]).await.0, 0);
    assert_eq!(cli(&["throttle"]).await.0, 0);
    let (code, out, _) = cli(&["history", "--json"]).await;
    assert_eq!((code, out.trim()), (0, "[]"));

    assert_eq!(cli(&["--by", "ann", "start"]).await.0, 0);
    let (code, _, err) = cli(&["--by", "ann", "start"]).await;
    assert_eq!(code, 1, "a second start is refused: {err}");
    assert_eq!(cli(&["--by", "bo", "pause"]).await.0, 0);
    let (code, _, err) = cli(&["--by", "bo", "throttle", "--max-docs-per-second", "50"]).await;
    assert_eq!(code, 0, "{err}");
    // Nothing is migrated while paused without workers: the gate refuses.
    let (code, _, err) = cli(&["--by", "bo", "complete", "--verify-sample", "0"]).await;
    assert_eq!(code, 1, "{err}");

    let admin = Admin::start(&env, &[("FERRY_ADMIN_TOKEN", TOKEN)]).await;
    let post = |path: &'static str, by: Option<&'static str>, body: Value| {
        let mut req = admin
            .http
            .post(admin.url(path))
            .bearer_auth(TOKEN)
            .json(&body);
        if let Some(by) = by {
            req = req.header("X-Ferry-By", by);
        }
        async move { req.send().await.expect("POST").status().as_u16() }
    };
    assert_eq!(post("/api/resume", Some("cy"), json!({})).await, 200);
    assert_eq!(
        post(
            "/api/throttle",
            Some("cy"),
            json!({"edit_latency": "250ms"})
        )
        .await,
        200
    );
    assert_eq!(
        post("/api/abandon", Some("cy"), json!({"delete_index": true})).await,
        200
    );
    assert_eq!(
        post("/api/pause", None, json!({})).await,
        409,
        "nothing to pause"
    );
    // Without the token nothing runs and nothing is recorded.
    let (status, _, _) = admin.post("/api/resume", None, None).await;
    assert_eq!(status, 401);

    let api = "an admin API caller (no X-Ferry-By given)";
    let expected: Vec<(&str, &str, &str)> = vec![
        ("pause", api, "refused"),
        ("abandon", "cy", "done"),
        ("throttle", "cy", "done"),
        ("resume", "cy", "done"),
        ("complete", "bo", "refused"),
        ("throttle", "bo", "done"),
        ("pause", "bo", "done"),
        ("start", "ann", "refused"),
        ("start", "ann", "done"),
    ];
    let expected: Vec<(String, String, String)> = expected
        .into_iter()
        .map(|(a, b, c)| (a.into(), b.into(), c.into()))
        .collect();

    let (code, out, err) = cli(&["history", "--limit", "50", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let entries: Value = serde_json::from_str(&out).expect("history JSON");
    assert_eq!(summary(&entries), expected, "{entries:#}");
    let first_start = &entries[8];
    assert!(
        first_start["detail"]
            .as_str()
            .is_some_and(|d| d.contains("mapping")),
        "{first_start}"
    );
    assert!(
        entries[7]["message"]
            .as_str()
            .is_some_and(|m| m.contains("already in progress")),
        "a refusal says why: {}",
        entries[7]
    );
    assert_eq!(
        entries[5]["detail"],
        "edit latency unchanged, max docs/s 50"
    );
    let (status, latest) = admin.get("/api/history", &[("limit", "3")]).await;
    assert_eq!(status, 200);
    assert_eq!(summary(&latest), expected[..3].to_vec());

    let (code, out, _) = cli(&["history", "--limit", "2"]).await;
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.contains("refused  pause"), "{out}");
}

/// Creates `index` (with `alias`, if given) on the source cluster.
async fn create(env: &TestEnv, index: &str, alias: Option<&str>) {
    let mut body = json!({ "settings": { "number_of_shards": 1 } });
    if let Some(a) = alias {
        body["aliases"] = json!({ a: {} });
    }
    env.ctx
        .index
        .create_index(&ferry::types::IndexName::parse(index).expect("name"), &body)
        .await
        .expect("create index");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_deletes_only_unaliased_ferry_indices_old_enough() {
    let env = TestEnv::new("cln").await;
    env.seed(5, 0).await;
    let current = env.current_index().await.to_string();
    let (old, aliased) = (format!("{}_old", env.name), format!("{}_aliased", env.name));
    let other = format!("{}x_elsewhere", env.name);
    create(&env, &old, None).await;
    create(&env, &aliased, Some(&format!("{}_someone", env.name))).await;
    // Another deployment's index: not ferry's prefix.
    create(&env, &other, None).await;

    let (code, out, err) = env.cli(&["status"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("cleanup:    1 index(es) no alias names"),
        "{out}"
    );
    let (code, out, _) = env.cli(&["cleanup", "--json"]).await;
    assert_eq!(code, 0);
    let listed: Value = serde_json::from_str(&out).expect("JSON");
    let names: Vec<&str> = listed["found"]
        .as_array()
        .expect("found")
        .iter()
        .map(|l| l["index"].as_str().expect("index"))
        .collect();
    assert_eq!(names, vec![old.as_str()]);

    // Too young for the default minimum age: kept.
    let (code, out, _) = env.cli(&["cleanup", "--yes", "--json"]).await;
    assert_eq!(code, 0);
    let r: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(
        (r["deleted"].clone(), r["kept"].clone()),
        (json!([]), json!([old]))
    );

    let (code, out, err) = env
        .cli(&["--by", "dee", "cleanup", "--yes", "--min-age", "0s"])
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("deleted 1 index(es)"), "{out}");
    let left = support::docs::own_indices(&env).await;
    assert!(!left.contains(&old), "{left:?}");
    for kept in [&current, &aliased, &other] {
        assert!(left.contains(kept), "{kept} deleted: {left:?}");
    }
    let (_, out, _) = env.cli(&["status"]).await;
    assert!(!out.contains("cleanup:"), "{out}");
    let (_, out, _) = env.cli(&["history", "--json"]).await;
    let h: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(
        summary(&h),
        vec![
            ("cleanup".into(), "dee".into(), "done".into()),
            (
                "cleanup".into(),
                h[1]["by"].as_str().unwrap_or_default().into(),
                "done".into()
            ),
        ]
    );
}

/// `index.<key>` of `index`, as the engine reports it.
async fn setting(env: &TestEnv, index: &str, key: &str) -> Option<String> {
    let s = env
        .ctx
        .index
        .call(reqwest::Method::GET, &format!("/{index}/_settings"), None)
        .await
        .expect("settings");
    s[index]["settings"]["index"][key]
        .as_str()
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_load_profile_holds_during_the_migration_and_completion_restores_the_mapping() {
    let env = TestEnv::new("bf").await;
    env.seed(20, 0).await;
    let current = env.current_index().await;
    let profiled = mapping_with("backfill", |m| {
        m["settings"]["index"]["refresh_interval"] = json!("2s");
        m["backfill"] = json!({ "refresh_interval": "-1" });
    });
    let (code, out, err) = env.cli(&["start", "--mapping", &profiled]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("bulk-load profile"), "{out}");
    let target = env.migration_index().await;
    assert_eq!(
        setting(&env, target.as_str(), "refresh_interval")
            .await
            .as_deref(),
        Some("-1")
    );
    assert_eq!(
        setting(&env, target.as_str(), "number_of_replicas")
            .await
            .as_deref(),
        Some("0")
    );

    let worker = env.spawn_worker();
    support::eventually(
        std::time::Duration::from_secs(120),
        "every document migrated",
        || async {
            let p = support::docs::progress(&env, &current, &target).await;
            (p.to_go == 0 && p.failed == 0).then_some(())
        },
    )
    .await;
    // Still the profile while it runs.
    assert_eq!(
        setting(&env, target.as_str(), "refresh_interval")
            .await
            .as_deref(),
        Some("-1")
    );
    let (code, _, err) = env.cli(&["complete", "--verify-sample", "0"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(env.current_index().await, target);
    assert_eq!(
        setting(&env, target.as_str(), "refresh_interval")
            .await
            .as_deref(),
        Some("2s")
    );
    drop(worker);

    // Replicas a single node cannot allocate: `complete` restores them,
    // waits, and refuses rather than serve a yellow index.
    let replicated = mapping_with("replicas", |m| {
        m["settings"]["index"]["number_of_replicas"] = json!(1);
    });
    let (code, _, err) = env
        .cli(&[
            "start",
            "--mapping",
            &replicated,
            "--backfill-replicas",
            "0",
        ])
        .await;
    assert_eq!(code, 0, "{err}");
    let second = env.migration_index().await;
    assert_eq!(
        setting(&env, second.as_str(), "number_of_replicas")
            .await
            .as_deref(),
        Some("0")
    );
    let (code, _, err) = env
        .cli(&["complete", "--force", "--restore-wait", "2s"])
        .await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("health is yellow"), "{err}");
    assert_eq!(
        env.current_index().await,
        target,
        "no switch to a yellow index"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_buttons_ask_for_the_token_show_refusals_and_are_recorded() {
    let env = TestEnv::new("btn").await;
    // One broken document: its failure keeps `complete` refused however
    // fast the worker migrates the rest.
    env.seed(5, 1).await;
    let admin = Admin::start(&env, &[("FERRY_ADMIN_TOKEN", TOKEN)]).await;
    let page = || async {
        admin
            .http
            .get(admin.url("/"))
            .send()
            .await
            .expect("GET /")
            .text()
            .await
            .expect("page")
    };
    assert!(
        !page().await.contains("id=\"operate\""),
        "no buttons while idle"
    );
    assert!(
        page().await.contains("id=\"last-hour\""),
        "the last hour's picture"
    );
    assert_eq!(env.cli(&["start"]).await.0, 0);
    let html = page().await;
    for button in ["value=\"pause\"", "value=\"preview\"", "value=\"complete\""] {
        assert!(html.contains(button), "{button} missing");
    }
    let press = |op: &'static str, token: &'static str| {
        let req = admin
            .http
            .post(admin.url("/ui/op"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("op={op}&token={token}"));
        async move {
            let r = req.send().await.expect("POST /ui/op");
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        }
    };
    let (status, _) = press("pause", "wrong").await;
    assert_eq!(status, 401);
    // The client follows the redirect to the page with the message.
    let (status, html) = press("pause", TOKEN).await;
    assert_eq!(status, 200);
    assert!(html.contains("is now paused"), "{html}");
    assert!(html.contains("value=\"resume\""), "paused: resume offered");
    let (_, html) = press("complete", TOKEN).await;
    assert!(html.contains("refused: "), "nothing migrated yet: {html}");

    let (_, out, _) = env.cli(&["history", "--json"]).await;
    let h: Value = serde_json::from_str(&out).expect("JSON");
    let by_page: Vec<(String, String, String)> = summary(&h)
        .into_iter()
        .filter(|(_, by, _)| by == "the support page")
        .collect();
    assert_eq!(
        by_page,
        vec![
            (
                "complete".into(),
                "the support page".into(),
                "refused".into()
            ),
            ("pause".into(), "the support page".into(), "done".into()),
        ]
    );
}
