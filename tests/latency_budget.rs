//! The edit latency budget: a worker whose edits slow down (its index
//! requests delayed by the fault-injecting proxy) makes the migration yield
//! (a rate limit, smaller batches, the reason in its pace, on `/metrics` and
//! in `ferry status`); at its floor with edits as slow, concludes that the
//! migration is not the cause (a baseline); and lets it go again once edits
//! are fast.
//!
//! The budget (2 s) sits well above the shared stack's own edit latency, and
//! infra/test.sh runs this test alone: under the parallel suite's load the
//! stack's edits alone take a second, which no budget can tell from a slow
//! migration.

mod support;

use ferry::seed::pipeline::Pipeline;
use ferry::types::DocId;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use support::admin::Admin;
use support::proxy::{Mode, Proxy};
use support::{eventually, TestEnv};

/// This worker's pace, as its admin API reports it.
async fn pace(admin: &Admin) -> Value {
    let (code, body) = admin.get("/api/throttle", &[]).await;
    assert_eq!(code, 200, "{body}");
    body["worker"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_edits_make_the_migration_yield_and_fast_ones_let_it_go() {
    let env = TestEnv::new("budget").await;
    let ids = env.seed(3000, 0).await;
    let upstream = env
        .settings
        .index_url
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let proxy = Proxy::start(upstream).await;
    // A cap keeps the migration running through the whole test.
    let (code, _, err) = env.cli(&["throttle", "--max-docs-per-second", "60"]).await;
    assert_eq!(code, 0, "{err}");
    ferry::ops::lifecycle::start(&env.ctx, &env.settings.mapping)
        .await
        .expect("start");
    let admin = Admin::start(
        &env,
        &[
            ("FERRY_INDEX_URL", proxy.url.as_str()),
            ("FERRY_EDIT_LATENCY_BUDGET", "2s"),
        ],
    )
    .await;

    // A steady trickle of edits, as users make them.
    let stop = AtomicBool::new(false);
    let broker = env.broker().await;
    let edits = async {
        let pipeline = Pipeline::new(&env.ctx, &broker, 3);
        let mut n = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let id: &DocId = &ids[(n * 37) % ids.len()];
            pipeline.edit(id).await.expect("edit");
            n += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let observe = async {
        let p = eventually(
            Duration::from_secs(60),
            "edits measured, no yielding",
            || async {
                let p = pace(&admin).await;
                (p["edit_p99_ms"].is_u64() && p["yielding"].is_null()).then_some(p)
            },
        )
        .await;
        assert_eq!(p["edit_latency_budget_ms"], 2000, "{p}");

        // Every index request of the worker now waits 3 s.
        proxy.set(Mode::Delay(Duration::from_millis(3000)));
        let slow = eventually(Duration::from_secs(60), "the migration yields", || async {
            let p = pace(&admin).await;
            p["yielding"]
                .as_str()
                .is_some_and(|w| w.contains("budget"))
                .then_some(p)
        })
        .await;
        // "Near" is four fifths of the budget.
        assert!(slow["edit_p99_ms"].as_u64().unwrap_or(0) > 1600, "{slow}");
        assert!(
            slow["budget_docs_per_second"].as_f64().unwrap_or(f64::MAX) < 60.0,
            "{slow}"
        );
        let why = eventually(Duration::from_secs(30), "status says why", || async {
            let (code, out, err) = env.cli(&["status"]).await;
            assert_eq!(code, 0, "{err}");
            out.lines()
                .find(|l| l.starts_with("yielding:") && l.contains("ms budget"))
                .map(str::to_string)
        })
        .await;
        assert!(why.contains("edit p99"), "{why}");
        let scrape = admin.metrics().await.expect("metrics");
        let gauge = |name| support::metrics::sum(&scrape, name, &[]);
        assert_eq!(
            gauge("ferry_edit_latency_budget_seconds"),
            2.0,
            "the budget is on /metrics"
        );
        assert!(
            gauge("ferry_edit_latency_p99_seconds") > 0.6,
            "the live p99 is on /metrics"
        );
        assert!(
            gauge("ferry_migration_rate_limit") > 0.0,
            "and the rate limit"
        );

        // The delay is not the migration's doing: at its floor for a whole
        // window edits are as slow, so that becomes the baseline and the
        // migration stops crawling.
        let p = eventually(
            Duration::from_secs(90),
            "the migration is not what slows edits",
            || async {
                let p = pace(&admin).await;
                p["edit_baseline_ms"].as_u64().map(|_| p)
            },
        )
        .await;
        assert!(p["edit_baseline_ms"].as_u64() > Some(1600), "{p}");

        // Edits are fast again: no limit, nothing said.
        proxy.set(Mode::Pass);
        eventually(
            Duration::from_secs(150),
            "the migration goes again with fast edits",
            || async {
                let p = pace(&admin).await;
                let fast = p["edit_p99_ms"].as_u64().is_some_and(|ms| ms < 2000);
                (fast && p["yielding"].is_null() && p["budget_docs_per_second"].is_null())
                    .then_some(p)
            },
        )
        .await;
        stop.store(true, Ordering::Relaxed);
    };
    tokio::join!(edits, observe);
}
