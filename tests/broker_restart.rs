//! A broker restart in the middle of a migration with edits flowing: the
//! worker reconnects with backoff and redeclares what it needs, nothing
//! published and confirmed is lost, and the final state is consistent.
//! Its own test binary, so no other test runs while the broker is down.

mod support;

use ferry::ops;
use ferry::queue::{Broker, DocKind, DocMessage};
use ferry::seed::pipeline::Pipeline;
use ferry::stores::Projection;
use ferry::types::DocId;
use std::time::Duration;
use support::{eventually, TestEnv};

/// `rabbitmqctl` aimed at the node the local stack uses.
fn rabbitmqctl(args: &[&str]) -> bool {
    let cache = std::env::var("FERRY_CACHE")
        .unwrap_or_else(|_| format!("{}/.cache/ferry", std::env::var("HOME").unwrap_or_default()));
    let node = std::fs::read_to_string(format!("{cache}/run/rabbitmq.node"))
        .ok()
        .map(|n| n.trim().to_string());
    let mut cmd = std::process::Command::new("rabbitmqctl");
    if let Some(n) = &node {
        cmd.args(["-n", n]);
    }
    cmd.args(args)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Publishes a plain edit message until the broker confirms it, reconnecting
/// as a pipeline would after a broker restart.
async fn publish_until_confirmed(env: &TestEnv, broker: &mut Broker, id: &DocId) {
    let msg = DocMessage {
        kind: DocKind::Edit,
        id: id.clone(),
        version: None,
    };
    loop {
        if broker.publish_event("edit", &msg.to_body()).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Ok(b) = Broker::connect(&env.settings).await {
            *broker = b;
        }
    }
}

// It stops RabbitMQ, so infra/test.sh runs it after everything else.
#[tokio::test(flavor = "multi_thread")]
async fn a_broker_restart_loses_nothing_confirmed() {
    let env = TestEnv::new("br").await;
    let ids = env.seed(800, 0).await;
    ops::lifecycle::start(&env.ctx, &env.settings.mapping)
        .await
        .unwrap();
    let _worker = env.spawn_worker();
    let mut broker = env.broker().await;
    let current = env.current_index().await;
    let target = env.migration_index().await;
    eventually(
        Duration::from_secs(120),
        "some documents migrated",
        || async {
            let p = ops::lifecycle::progress(&env.ctx, &current, &target)
                .await
                .ok()?;
            (p.migrated > 50).then_some(())
        },
    )
    .await;

    // Edits before, during and after the restart: the stores change first,
    // then the message is published until confirmed.
    let edited: Vec<DocId> = ids.iter().step_by(20).cloned().collect();
    let pipeline_broker = env.broker().await;
    let pipeline = Pipeline::new(&env.ctx, &pipeline_broker, 11);
    let mut unconfirmed = Vec::new();
    for (n, id) in edited.iter().enumerate() {
        if n == edited.len() / 3 {
            assert!(rabbitmqctl(&["stop_app"]), "rabbitmqctl stop_app failed");
            // Down long enough for the worker to go through several
            // reconnection attempts with backoff.
            tokio::time::sleep(Duration::from_secs(8)).await;
        }
        if n == 2 * edited.len() / 3 {
            assert!(rabbitmqctl(&["start_app"]), "rabbitmqctl start_app failed");
            assert!(rabbitmqctl(&["await_startup"]));
        }
        if pipeline.edit(id).await.is_err() {
            // The stores were written; the message still has to go out,
            // once the broker is back.
            unconfirmed.push(id.clone());
        }
    }
    for id in &unconfirmed {
        publish_until_confirmed(&env, &mut broker, id).await;
    }

    for id in &edited {
        eventually(
            Duration::from_secs(120),
            "every confirmed edit applied",
            || async {
                let Ok(Ok(Projection::Document(d))) = env.ctx.stores.project_one(id).await else {
                    return None;
                };
                let doc = env.ctx.index.get(&current, id).await.ok()??;
                (doc.version() == d.version.get()).then_some(())
            },
        )
        .await;
    }
    eventually(
        Duration::from_secs(180),
        "the migration to finish after the restart",
        || async {
            let p = ops::lifecycle::progress(&env.ctx, &current, &target)
                .await
                .ok()?;
            (p.to_go == 0).then_some(())
        },
    )
    .await;
    eventually(Duration::from_secs(60), "a clean verify", || async {
        let r = ops::verify::verify(&env.ctx, ops::verify::Scope::All)
            .await
            .ok()?;
        r.differences.is_empty().then_some(())
    })
    .await;
}
