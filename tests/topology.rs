//! The queue topology files: the quorum file (production) names the same
//! queues, exchanges and bindings as the classic one, every work queue
//! dead-letters into the dead-letter queue, a real worker declares the
//! quorum topology on the local RabbitMQ, and its delivery limit
//! dead-letters a poison message.

mod support;

use ferry::queue::{QueueNames, Topology};
use futures::StreamExt;
use lapin::options::BasicNackOptions;
use serde_json::Value as Json;
use std::collections::BTreeSet;
use std::time::Duration;
use support::admin::Admin;
use support::{eventually, Signal, TestEnv};

/// The classic topology, relative to the repository root.
const CLASSIC: &str = "queues/topology.json";
/// The quorum topology (production), relative to the repository root.
const QUORUM: &str = "queues/topology.quorum.json";

fn path(rel: &str) -> String {
    format!("{}/{rel}", env!("CARGO_MANIFEST_DIR"))
}

fn load(rel: &str) -> Topology {
    Topology::load(&path(rel), "x").unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Names, kinds and routes of a topology: what must not differ between files.
fn shape(t: &Topology) -> (BTreeSet<String>, BTreeSet<String>, BTreeSet<String>) {
    (
        t.queues.iter().map(|q| q.name.clone()).collect(),
        t.exchanges
            .iter()
            .map(|e| format!("{} {} durable={}", e.name, e.kind, e.durable))
            .collect(),
        t.bindings
            .iter()
            .map(|b| format!("{} -[{}]-> {}", b.source, b.routing_key, b.destination))
            .collect(),
    )
}

#[test]
fn the_quorum_topology_has_the_classic_names_and_every_queue_dead_letters_once() {
    let (classic, quorum) = (load(CLASSIC), load(QUORUM));
    assert_eq!(
        shape(&classic),
        shape(&quorum),
        "{CLASSIC} and {QUORUM} differ"
    );
    let names = QueueNames::new("x");

    for (file, t, queue_type) in [(CLASSIC, &classic, "classic"), (QUORUM, &quorum, "quorum")] {
        for q in &t.queues {
            let arg = |k: &str| q.arguments.get(k);
            assert!(q.durable, "{file}: {} must be durable", q.name);
            assert_eq!(
                arg("x-queue-type"),
                Some(&Json::from(queue_type)),
                "{file}: {}",
                q.name
            );
            if q.name == names.dead_letters {
                assert_eq!(
                    arg("x-dead-letter-exchange"),
                    None,
                    "{file}: the dead-letter queue must not dead-letter"
                );
                continue;
            }
            assert_eq!(
                arg("x-dead-letter-exchange").and_then(Json::as_str),
                Some(names.dead_letter.as_str()),
                "{file}: {} must dead-letter to {}",
                q.name,
                names.dead_letter
            );
            if queue_type == "quorum" {
                let limit = arg("x-delivery-limit").and_then(Json::as_u64);
                assert!(
                    limit.is_some_and(|l| l > 0),
                    "{file}: {} needs a positive x-delivery-limit",
                    q.name
                );
                assert_eq!(
                    arg("x-max-priority"),
                    None,
                    "{file}: quorum queues have no priorities"
                );
            }
        }
        assert!(
            t.bindings
                .iter()
                .any(|b| b.source == names.dead_letter && b.destination == names.dead_letters),
            "{file}: the dead-letter exchange is not bound to the dead-letter queue"
        );
    }

    // ferry renames the leading `ferry.` only: the files must use it.
    for file in [CLASSIC, QUORUM] {
        let raw: Json =
            serde_json::from_str(&std::fs::read_to_string(path(file)).unwrap()).unwrap();
        for item in ["queues", "exchanges"]
            .iter()
            .flat_map(|k| raw[k].as_array().unwrap())
        {
            let name = item["name"].as_str().unwrap_or_default();
            assert!(
                name.starts_with("ferry."),
                "{file}: {name} should start with `ferry.`"
            );
        }
    }
}

#[tokio::test]
async fn a_worker_declares_the_quorum_topology_and_becomes_ready() {
    let mut env = TestEnv::new("dq").await;
    env.settings.topology = path(QUORUM);
    let mut admin = Admin::spawn(&env, &[]);
    // Ready means connected: the broker accepted every declaration.
    admin.wait_status("/readyz", 200).await;
    admin.worker.signal(Signal::SIGTERM);
    assert_eq!(admin.worker.wait(Duration::from_secs(30)).await, Some(0));
    support::delete_topology(&env.settings).await;
}

#[tokio::test]
async fn the_delivery_limit_dead_letters_a_poison_message() {
    let mut env = TestEnv::new("dl").await;
    env.settings.topology = path(QUORUM);
    let broker = env.broker().await;
    let t = Topology::load(&env.settings.topology, &env.settings.queue_prefix).unwrap();
    let uploads = t.queues.iter().find(|q| q.name == broker.names.uploads);
    let limit = uploads.unwrap().arguments["x-delivery-limit"]
        .as_u64()
        .unwrap();

    let body = br#"{"kind":"upload","id":"poison","version":1}"#;
    broker.publish_event("upload", body).await.expect("publish");
    // A consumer that fails the message every time.
    let mut consumer = broker
        .consume(&broker.names.uploads, 1, "poison")
        .await
        .expect("consume");
    let mut deliveries = 0u64;
    while let Ok(Some(d)) = tokio::time::timeout(Duration::from_secs(3), consumer.next()).await {
        let d = d.expect("delivery");
        deliveries += 1;
        assert!(
            deliveries <= limit + 1,
            "delivered {deliveries} times; the limit is {limit}"
        );
        let requeue = BasicNackOptions {
            requeue: true,
            ..Default::default()
        };
        d.acker.nack(requeue).await.expect("nack");
    }
    assert!(
        deliveries >= limit,
        "only {deliveries} deliveries before the message left; the limit is {limit}"
    );
    eventually(
        Duration::from_secs(10),
        "the poison message in the dead-letter queue",
        || async { (broker.depth(&broker.names.dead_letters).await.ok()? == 1).then_some(()) },
    )
    .await;
    assert_eq!(broker.depth(&broker.names.uploads).await.unwrap(), 0);

    let mut dead = broker
        .consume(&broker.names.dead_letters, 1, "dead")
        .await
        .expect("consume dead letters");
    let d = tokio::time::timeout(Duration::from_secs(5), dead.next())
        .await
        .expect("a dead letter")
        .unwrap()
        .unwrap();
    assert_eq!(d.data, body, "the dead letter keeps the body");
    let header = |name| ferry::queue::broker::header(&d.properties, name);
    assert_eq!(
        header("x-first-death-queue").as_deref(),
        Some(broker.names.uploads.as_str())
    );
    assert!(
        header("x-first-death-reason").is_some(),
        "the broker records why it dead-lettered the message"
    );
    broker.close().await;
    support::delete_topology(&env.settings).await;
}
