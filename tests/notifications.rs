//! Webhook notifications (issue #21): a receiver hears every operator
//! action and that a migration is ready to complete, each signed; a
//! receiver that is down slows neither a command nor the migration.

mod support;

use axum::body::Bytes;
use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::admin::Admin;
use support::{docs, eventually, free_port, TestEnv};

const SECRET: &str = "hook-secret";

/// One POST as received: `X-Ferry-Event`, `X-Ferry-Signature`, the body.
#[derive(Debug, Clone)]
struct Received {
    event: String,
    signature: String,
    body: Bytes,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// A webhook receiver on a loopback port that keeps what it gets.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let keep = got.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let keep = keep.clone();
                async move {
                    let h = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string()
                    };
                    keep.lock().expect("lock").push(Received {
                        event: h("x-ferry-event"),
                        signature: h("x-ferry-signature"),
                        body,
                    });
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver {
            url: format!("http://{addr}/hook"),
            got,
        }
    }

    fn all(&self) -> Vec<Received> {
        self.got.lock().expect("lock").clone()
    }

    /// Waits for the first notification that `matches`.
    async fn wait(
        &self,
        limit: Duration,
        what: &str,
        matches: impl Fn(&Value) -> bool,
    ) -> Received {
        eventually(limit, what, || async {
            self.all().into_iter().find(|r| matches(&r.json()))
        })
        .await
    }
}

/// The signature the receiver expects, recomputed independently.
fn expected_signature(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn is_action(name: &'static str) -> impl Fn(&Value) -> bool {
    move |v| v["event"] == "action" && v["detail"]["action"] == name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_hears_start_ready_and_complete_each_signed() {
    let receiver = Receiver::start().await;
    let mut env = TestEnv::new("ntf").await;
    env.settings.notify_url = vec![receiver.url.clone()];
    env.settings.notify_secret = ferry::types::Secret::new(SECRET);
    env.seed(20, 0).await;

    let (code, _, err) = env.cli(&["--by", "ann", "start"]).await;
    assert_eq!(code, 0, "{err}");
    // The command flushed before it exited: the notice is already there.
    let start = receiver
        .wait(
            Duration::from_secs(1),
            "the start action",
            is_action("start"),
        )
        .await;
    let v = start.json();
    assert_eq!(v["deployment"], env.settings.queue_prefix.as_str());
    assert_eq!(v["detail"]["by"], "ann");
    assert_eq!(v["detail"]["outcome"], "done");
    assert!(
        v["text"]
            .as_str()
            .is_some_and(|t| t.contains("ann ran start")),
        "{v}"
    );
    assert!(
        chrono::DateTime::parse_from_rfc3339(v["at"].as_str().unwrap_or("")).is_ok(),
        "{v}"
    );

    let _worker = env.spawn_worker();
    let ready = receiver
        .wait(Duration::from_secs(180), "ready_to_complete", |v| {
            v["event"] == "ready_to_complete"
        })
        .await;
    let v = ready.json();
    assert_eq!(
        (
            v["detail"]["migrated"].as_u64(),
            v["detail"]["failed"].as_u64()
        ),
        (Some(20), Some(0)),
        "{v}"
    );
    assert_eq!(v["detail"]["target"], env.migration_index().await.as_str());

    let (code, _, err) = env
        .cli(&["--by", "bo", "complete", "--verify-sample", "0"])
        .await;
    assert_eq!(code, 0, "{err}");
    receiver
        .wait(
            Duration::from_secs(1),
            "the complete action",
            is_action("complete"),
        )
        .await;

    let all = receiver.all();
    for r in &all {
        assert_eq!(r.signature, expected_signature(&r.body), "{:?}", r.json());
        assert_eq!(r.event, r.json()["event"], "header and body agree");
    }
    let ready_count = all
        .iter()
        .filter(|r| r.event == "ready_to_complete")
        .count();
    assert_eq!(ready_count, 1, "notified once, not at every check");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_is_down_slows_neither_commands_nor_the_migration() {
    let mut env = TestEnv::new("ntd").await;
    // Nothing listens there: every POST is refused.
    env.settings.notify_url = vec![format!("http://127.0.0.1:{}/hook", free_port())];
    env.seed(30, 0).await;

    let clock = Instant::now();
    let (code, _, err) = env.cli(&["start"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("notifications not delivered before exit"),
        "the command gave up on its notice after its bounded flush: {err}"
    );
    assert!(
        clock.elapsed() < Duration::from_secs(30),
        "{:?}",
        clock.elapsed()
    );

    let admin = Admin::start(&env, &[]).await;
    let (current, target) = (env.current_index().await, env.migration_index().await);
    eventually(
        Duration::from_secs(180),
        "every document migrated",
        || async {
            let p = docs::progress(&env, &current, &target).await;
            (p.migrated == 30 && p.to_go == 0).then_some(())
        },
    )
    .await;
    // The ready notice fails after its retries; the worker counts it.
    eventually(
        Duration::from_secs(60),
        "a failed notification counted",
        || async {
            let failed = admin
                .metric("ferry_notifications_total", &[("outcome", "failed")])
                .await;
            let dropped = admin
                .metric("ferry_notifications_total", &[("outcome", "dropped")])
                .await;
            (failed + dropped > 0).then_some(())
        },
    )
    .await;
    assert_eq!(
        admin
            .metric("ferry_notifications_total", &[("outcome", "sent")])
            .await,
        0
    );
}
