//! Faults: an overloaded or unreachable index, unreachable or throttling
//! stores, adaptive throttling and the operator's cap, bad input of every
//! kind, and secrets. The worker keeps working, loses nothing, and never
//! turns a transient failure into a failure record.

mod support;

use ferry::index::records;
use ferry::ops;
use ferry::seed::pipeline::Pipeline;
use ferry::stores::Projection;
use ferry::types::DocId;
use serde_json::Value;
use std::time::{Duration, Instant};
use support::proxy::{Mode, Proxy};
use support::{eventually, Signal, TestEnv};

fn host_port(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

/// After a fault: every edit made during it becomes visible, the migration
/// finishes clean and nothing was dead-lettered.
async fn recovers(env: &TestEnv, edited: &[DocId], what: &str) {
    for id in edited {
        eventually(Duration::from_secs(60), what, || async {
            edit_visible(env, id).await.then_some(())
        })
        .await;
    }
    finishes_clean(env, Duration::from_secs(120)).await;
    assert_eq!(dead_letters(env).await, 0);
}

/// Waits until nothing is left to go, then checks the migration index
/// equals the stores and no failure was recorded.
async fn finishes_clean(env: &TestEnv, limit: Duration) {
    let current = env.current_index().await;
    let t = env.migration_index().await;
    let p = eventually(limit, "migration to finish", || async {
        let p = ops::lifecycle::progress(&env.ctx, &current, &t)
            .await
            .ok()?;
        (p.to_go == 0).then_some(p)
    })
    .await;
    assert_eq!(
        p.failed, 0,
        "a transient failure became a failure record: {p:?}"
    );
    eventually(
        Duration::from_secs(60),
        "verify to come out clean",
        || async {
            let r = ops::verify::verify(&env.ctx, ops::verify::Scope::All)
                .await
                .ok()?;
            r.differences.is_empty().then_some(())
        },
    )
    .await;
}

async fn dead_letters(env: &TestEnv) -> u32 {
    let b = env.broker().await;
    b.depth(&b.names.dead_letters).await.unwrap()
}

/// The index stores the latest version of `id`, in Current (and in the
/// migration index when one runs).
async fn edit_visible(env: &TestEnv, id: &DocId) -> bool {
    let Ok(Ok(Projection::Document(d))) = env.ctx.stores.project_one(id).await else {
        return false;
    };
    let st = env.ctx.index.alias_state(&env.ctx.aliases).await.unwrap();
    for index in [st.current_index(), st.migration_index()]
        .into_iter()
        .flatten()
    {
        match env.ctx.index.get(&index, id).await {
            Ok(Some(doc)) if doc.version() == d.version.get() => {}
            _ => return false,
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread")]
async fn index_overload_is_retried_with_bounded_rate_and_never_recorded() {
    let mut env = TestEnv::new("fo").await;
    let ids = env.seed(300, 0).await;
    ops::lifecycle::start(&env.ctx, &env.settings.mapping)
        .await
        .unwrap();
    let proxy = Proxy::start(&host_port(&env.settings.index_url)).await;
    env.settings.index_url = proxy.url.clone();
    proxy.set(Mode::Status(429));
    let mut worker = env.spawn_worker();
    let broker = env.broker().await;
    let pipeline = Pipeline::new(&env.ctx, &broker, 3);
    for id in &ids[..10] {
        pipeline.edit(id).await.unwrap();
    }
    // Sustain the overload for a while and measure the request rate.
    let before = proxy.requests();
    let window = Duration::from_secs(8);
    tokio::time::sleep(window).await;
    let rate = (proxy.requests() - before) as f64 / window.as_secs_f64();
    assert!(
        rate < 60.0,
        "a hot retry loop: {rate:.0} requests/s during the overload"
    );
    proxy.set(Mode::Pass);
    finishes_clean(&env, Duration::from_secs(120)).await;
    for id in &ids[..10] {
        eventually(
            Duration::from_secs(60),
            "edit made during the overload",
            || async { edit_visible(&env, id).await.then_some(()) },
        )
        .await;
    }
    assert_eq!(dead_letters(&env).await, 0);
    worker.signal(Signal::SIGTERM);
    assert_eq!(worker.wait(Duration::from_secs(20)).await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn index_outage_turns_readiness_red_and_the_worker_resumes_by_itself() {
    let mut env = TestEnv::new("fx").await;
    let ids = env.seed(200, 0).await;
    ops::lifecycle::start(&env.ctx, &env.settings.mapping)
        .await
        .unwrap();
    let proxy = Proxy::start(&host_port(&env.settings.index_url)).await;
    env.settings.index_url = proxy.url.clone();
    let port = support::free_port();
    let _worker = env.spawn_worker_with(&[("FERRY_ADMIN_BIND", &format!("127.0.0.1:{port}"))]);
    let ready = format!("http://127.0.0.1:{port}/readyz");
    let http = reqwest::Client::new();
    eventually(Duration::from_secs(30), "ready", || async {
        (http.get(&ready).send().await.ok()?.status() == 200).then_some(())
    })
    .await;

    proxy.set(Mode::Cut);
    let broker = env.broker().await;
    let pipeline = Pipeline::new(&env.ctx, &broker, 4);
    for id in &ids[..5] {
        pipeline.edit(id).await.unwrap();
    }
    eventually(Duration::from_secs(30), "readiness red", || async {
        (http.get(&ready).send().await.ok()?.status() == 503).then_some(())
    })
    .await;
    // Longer than the retry budget (5 s in tests): messages must wait, not be dead-lettered.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(
        dead_letters(&env).await,
        0,
        "messages were dead-lettered during an outage"
    );
    proxy.set(Mode::Pass);
    eventually(Duration::from_secs(60), "readiness green again", || async {
        (http.get(&ready).send().await.ok()?.status() == 200).then_some(())
    })
    .await;
    recovers(&env, &ids[..5], "edit made during the outage").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn store_outage_and_dynamodb_throttling_are_waited_out() {
    let mut env = TestEnv::new("fs").await;
    let ids = env.seed(200, 0).await;
    ops::lifecycle::start(&env.ctx, &env.settings.mapping)
        .await
        .unwrap();
    let aws = env
        .settings
        .aws_endpoint
        .clone()
        .expect("FERRY_AWS_ENDPOINT is set by infra/stack.sh env");
    let proxy = Proxy::start(&host_port(&aws)).await;
    env.settings.aws_endpoint = Some(proxy.url.clone());
    proxy.set(Mode::Cut);
    let _worker = env.spawn_worker();
    let broker = env.broker().await;
    let pipeline = Pipeline::new(&env.ctx, &broker, 5);
    for id in &ids[..5] {
        pipeline.edit(id).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        dead_letters(&env).await,
        0,
        "messages were dead-lettered during a store outage"
    );
    proxy.set(Mode::DynamoThrottle);
    for id in &ids[5..10] {
        pipeline.edit(id).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    proxy.set(Mode::Pass);
    recovers(&env, &ids[..10], "edit made during the store fault").await;
}

async fn throttle_state(http: &reqwest::Client, base: &str) -> Value {
    http.get(format!("{base}/api/throttle"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn migration_slows_under_429s_recovers_and_obeys_the_operators_cap() {
    let mut env = TestEnv::new("ft").await;
    env.settings.batch_size = 40;
    env.settings.admin_token = ferry::types::Secret::new("tok");
    let ids = env.seed(1500, 0).await;
    let proxy = Proxy::start(&host_port(&env.settings.index_url)).await;
    env.settings.index_url = proxy.url.clone();
    let port = support::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _worker = env.spawn_worker_with(&[("FERRY_ADMIN_BIND", &format!("127.0.0.1:{port}"))]);
    let http = reqwest::Client::new();
    eventually(Duration::from_secs(30), "admin up", || async {
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .ok()
            .map(|_| ())
    })
    .await;

    // Cap first: 20 documents/s for the whole cluster.
    let set = http
        .post(format!("{base}/api/throttle"))
        .bearer_auth("tok")
        .json(&serde_json::json!({"max_docs_per_second": 20}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    let unauthorized = http
        .post(format!("{base}/api/throttle"))
        .json(&serde_json::json!({"max_docs_per_second": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    ops::lifecycle::start(&env.ctx, &env.settings.mapping)
        .await
        .unwrap();
    let current = env.current_index().await;
    let t = env.migration_index().await;
    eventually(
        Duration::from_secs(30),
        "the cap to reach the worker",
        || async {
            (throttle_state(&http, &base).await["worker"]["worker_docs_per_second"] == 20.0)
                .then_some(())
        },
    )
    .await;
    let done = |p: ops::lifecycle::Progress| p.migrated + p.failed;
    let p0 = done(
        ops::lifecycle::progress(&env.ctx, &current, &t)
            .await
            .unwrap(),
    );
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let p1 = done(
        ops::lifecycle::progress(&env.ctx, &current, &t)
            .await
            .unwrap(),
    );
    let allowed = 20.0 * t0.elapsed().as_secs_f64() + 20.0 + 40.0; // rate, one second of burst, one batch in flight
    assert!(
        ((p1 - p0) as f64) <= allowed,
        "{} documents in {:?} under a 20/s cap",
        p1 - p0,
        t0.elapsed()
    );
    assert!(p1 < 1500, "the cap did not hold the migration back");

    // Lift the cap, then overload only the bulk endpoint (migration writes).
    http.post(format!("{base}/api/throttle"))
        .bearer_auth("tok")
        .json(&serde_json::json!({"max_docs_per_second": null}))
        .send()
        .await
        .unwrap();
    proxy.set(Mode::StatusOnPath("/_bulk".into(), 429));
    eventually(
        Duration::from_secs(60),
        "batches to shrink under 429s",
        || async {
            (throttle_state(&http, &base).await["worker"]["batch_size"].as_u64()? <= 10)
                .then_some(())
        },
    )
    .await;
    // Edits do not use _bulk: they keep flowing while the migration backs off.
    let broker = env.broker().await;
    let pipeline = Pipeline::new(&env.ctx, &broker, 6);
    let edited = &ids[1400..1405];
    for id in edited {
        pipeline.edit(id).await.unwrap();
    }
    for id in edited {
        eventually(
            Duration::from_secs(20),
            "edit during migration back-off",
            || async { edit_visible(&env, id).await.then_some(()) },
        )
        .await;
    }
    proxy.set(Mode::Pass);
    eventually(Duration::from_secs(90), "batches to grow back", || async {
        (throttle_state(&http, &base).await["worker"]["batch_size"].as_u64()? == 40).then_some(())
    })
    .await;
    finishes_clean(&env, Duration::from_secs(180)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_bad_input_gets_its_documented_outcome_and_touches_nothing_else() {
    let mut env = TestEnv::new("fb").await;
    env.settings.max_message_bytes = 64 * 1024;
    let _ids = env.seed(50, 5).await;
    ops::lifecycle::start(&env.ctx, &env.settings.mapping)
        .await
        .unwrap();
    let _worker = env.spawn_worker();
    let broker = env.broker().await;
    let pipeline = Pipeline::new(&env.ctx, &broker, 8);

    // Valid ids that look like paths or patterns: stored under exactly that id.
    let odd = [
        "a/b",
        "../etc/passwd",
        "x%2Fy",
        "_all",
        "*",
        "q?x=1",
        "frag#1",
        "sp ace",
        "ünï",
    ];
    for raw in odd {
        pipeline
            .upload(&DocId::parse(format!("{}{raw}", env.name)).unwrap())
            .await
            .unwrap();
    }
    // Invalid messages: each to the dead-letter queue with its reason.
    let long_id = "x".repeat(1024 * 1024);
    let table: Vec<(Vec<u8>, &str)> = vec![
        (b"{not json".to_vec(), "malformed-json"),
        (br#"{"kind":"edit","id":["a"]}"#.to_vec(), "invalid-id"),
        (br#"{"kind":"explode","id":"a"}"#.to_vec(), "unknown-kind"),
        (br#"{"kind":"edit","id":""}"#.to_vec(), "invalid-id"),
        (br#"{"kind":"edit","id":".."}"#.to_vec(), "invalid-id"),
        (br#"{"kind":"edit","id":"a\u0000b"}"#.to_vec(), "invalid-id"),
        (br#"{"kind":"edit","id":"a\nb"}"#.to_vec(), "invalid-id"),
        (
            format!(r#"{{"kind":"edit","id":"{}"}}"#, &long_id[..600]).into_bytes(),
            "invalid-id",
        ),
        (
            format!(r#"{{"kind":"edit","id":"{long_id}"}}"#).into_bytes(),
            "too-large",
        ),
        (
            br#"{"kind":"edit","id":"a","version":-3}"#.to_vec(),
            "invalid-message",
        ),
        (
            br#"{"kind":"edit","id":"nobody-has-this-id"}"#.to_vec(),
            "projection-failed",
        ),
    ];
    for (body, _) in &table {
        broker
            .publish(&broker.names.events, "edit", body, Default::default())
            .await
            .unwrap();
    }
    let consumer = broker
        .consume(&broker.names.dead_letters, 100, "fb")
        .await
        .unwrap();
    let reasons: Vec<String> = {
        use futures::StreamExt;
        let mut got = Vec::new();
        let mut c = consumer;
        let deadline = Instant::now() + Duration::from_secs(60);
        while got.len() < table.len() && Instant::now() < deadline {
            if let Ok(Some(Ok(d))) = tokio::time::timeout(Duration::from_secs(5), c.next()).await {
                got.push(
                    ferry::queue::broker::header(&d.properties, "x-ferry-reason")
                        .unwrap_or_default(),
                );
                d.acker.ack(Default::default()).await.unwrap();
            }
        }
        got
    };
    let mut want: Vec<&str> = table.iter().map(|(_, r)| *r).collect();
    let mut got: Vec<&str> = reasons.iter().map(String::as_str).collect();
    want.sort();
    got.sort();
    assert_eq!(got, want);

    // Broken documents got failure records; the odd ids are exactly where named.
    let current = env.current_index().await;
    let t = env.migration_index().await;
    eventually(Duration::from_secs(90), "5 failure records", || async {
        let p = ops::lifecycle::progress(&env.ctx, &current, &t)
            .await
            .ok()?;
        (p.to_go == 0 && p.failed == 5).then_some(())
    })
    .await;
    for raw in odd {
        let id = DocId::parse(format!("{}{raw}", env.name)).unwrap();
        eventually(
            Duration::from_secs(30),
            "odd id stored under exactly its name",
            || async {
                let doc = env.ctx.index.get(&current, &id).await.ok()??;
                (doc.id == id && doc.source["id"] == Value::String(id.to_string())).then_some(())
            },
        )
        .await;
        assert!(
            env.ctx.index.get(&t, &id).await.unwrap().is_some(),
            "{raw} missing from the migration index"
        );
    }
    env.ctx.index.refresh(&current).await.unwrap();
    let n = env
        .ctx
        .index
        .count(&current, serde_json::json!({"match_all": {}}))
        .await
        .unwrap();
    assert_eq!(
        n,
        50 + odd.len() as u64,
        "a request reached a document other than the one named"
    );
    let ours = support::docs::own_indices(&env).await;
    assert_eq!(
        ours.len(),
        2,
        "only the source and target indices may exist: {ours:?}"
    );
    let failures = ops::failures::overview(
        &env.ctx,
        ops::failures::scope(&env.ctx, false).await.unwrap(),
    )
    .await
    .unwrap();
    assert!(
        failures.groups.iter().all(|g| !g.key.contains(&env.name)),
        "a failure message names a document"
    );
    let _ = records::MAX_MESSAGE_CHARS;
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_never_reach_logs_errors_or_status() {
    let mut env = TestEnv::new("fk").await;
    env.seed(20, 0).await;
    let port = support::free_port();
    let secrets = [
        "amqp-s3cret-pw",
        "index-s3cret-pw",
        "admin-s3cret-token",
        "aws-s3cret-key",
    ];
    env.settings.index_username = Some("ferry".into());
    env.settings.index_password = ferry::types::Secret::new(secrets[1]);
    env.settings.admin_token = ferry::types::Secret::new(secrets[2]);
    let good_amqp = env.settings.amqp_url.expose().to_string();
    // A wrong AMQP password makes the worker log its connection errors.
    let bad_amqp = good_amqp.replace("guest:guest@", &format!("guest:{}@", secrets[0]));
    let extra = [
        ("FERRY_LOG", "debug"),
        ("AWS_SECRET_ACCESS_KEY", secrets[3]),
        ("FERRY_AMQP_URL", bad_amqp.as_str()),
    ];
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("worker")
        .envs(env.env())
        .envs(extra)
        .env("FERRY_ADMIN_BIND", format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Drain both pipes while the worker runs: a full pipe would block its logging.
    let drain = |mut r: Box<dyn tokio::io::AsyncRead + Unpin + Send>| {
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut r, &mut buf).await;
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    eventually(Duration::from_secs(30), "admin up", || async {
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    let mut bodies = Vec::new();
    for path in ["/api/status", "/readyz", "/", "/metrics"] {
        bodies.push(
            http.get(format!("{base}{path}"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        );
    }
    // Let it fail to connect a few times, with debug logs on.
    tokio::time::sleep(Duration::from_secs(4)).await;
    drop(http);
    support::signal(child.id().expect("the worker runs"), Signal::SIGTERM);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "worker exit: {status:?}");
    let logs = format!("{}{}", stdout.await.unwrap(), stderr.await.unwrap());
    assert!(
        logs.contains("guest:***@"),
        "expected a redacted broker URL in the logs:\n{}",
        &logs[..logs.len().min(3000)]
    );
    let (_, status_out, status_err) = env.cli(&["status", "--json"]).await;
    for s in secrets {
        assert!(!logs.contains(s), "secret {s} in the worker's logs");
        assert!(
            !status_out.contains(s) && !status_err.contains(s),
            "secret {s} in `ferry status`"
        );
        assert!(
            bodies.iter().all(|b| !b.contains(s)),
            "secret {s} in an admin response"
        );
    }
}

#[test]
fn the_admin_server_binds_to_loopback_by_default() {
    #[derive(clap::Parser)]
    struct Only {
        #[command(flatten)]
        s: ferry::config::Settings,
    }
    let cmd = <Only as clap::CommandFactory>::command();
    let arg = cmd
        .get_arguments()
        .find(|a| a.get_id() == "admin_bind")
        .unwrap();
    let default = arg.get_default_values()[0].to_str().unwrap();
    let addr: std::net::SocketAddr = default.parse().unwrap();
    assert!(addr.ip().is_loopback(), "{addr}");
}
