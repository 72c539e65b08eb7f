//! Consuming with strict priority. High-priority deliveries (uploads, edits,
//! deletes) are started as soon as they arrive, up to the concurrency limit,
//! one at a time per document id. Migration deliveries are gathered into
//! short batches, each started only when no high-priority message is ready
//! (neither delivered here nor waiting in the broker). How many batches run
//! at once is the pace's to say: several while they are quick, one while
//! edits are near their latency budget, so that an edit then waits behind
//! at most one short batch. Two batches may hold the same document (a
//! redelivery): their writes are versioned like any other.

use super::edit_path::{apply, EditError};
use super::locks::IdLocks;
use super::migration_path::{self, Disposition};
use crate::context::Ctx;
use crate::queue::broker::published_ms;
use crate::queue::{Broker, Message, QueueError};
use crate::retry::{retry, Transient};
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Consumes until shutdown (Ok) or until the connection fails (Err); waits
/// for in-flight work before returning either way.
pub async fn serve(
    ctx: Arc<Ctx>,
    broker: Arc<Broker>,
    shutdown: CancellationToken,
) -> Result<(), QueueError> {
    let s = &ctx.settings;
    let names = broker.names.clone();
    let tag = format!("ferry-{}", std::process::id());
    let high_prefetch = s.concurrency.clamp(1, u16::MAX as usize) as u16;
    // Enough for every batch in flight and the next one.
    let low_prefetch =
        (s.batch_size * (s.max_batches.max(1) + 1)).clamp(1, u16::MAX as usize) as u16;
    let edits = broker.consume(&names.edits, high_prefetch, &tag).await?;
    let uploads = broker.consume(&names.uploads, high_prefetch, &tag).await?;
    let mut low = broker.consume(&names.migration, low_prefetch, &tag).await?;
    let (eq, uq) = (names.edits.clone(), names.uploads.clone());
    let mut high = futures::stream::select(
        edits.map(move |d| (eq.clone(), d)),
        uploads.map(move |d| (uq.clone(), d)),
    );

    let permits = Arc::new(Semaphore::new(s.concurrency.max(1)));
    let locks = IdLocks::default();
    let mut tasks = JoinSet::new();
    let mut pending: Vec<Delivery> = Vec::new();
    let mut pending_since = Instant::now();
    // Joined in the loop, so that the next batch (its messages already
    // prefetched) starts as soon as one ends, not on the next tick.
    let mut batches = JoinSet::new();
    let mut tick = tokio::time::interval(s.batch_wait.max(std::time::Duration::from_millis(5)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    // Every few seconds: the operator's cap (shared among the workers
    // consuming the migration queue) and budget, whether the migration
    // yields to edits, and the queue depths for /metrics.
    let mut caps = tokio::time::interval(std::time::Duration::from_secs(5));
    caps.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let result = loop {
        if ctx.health.is_degraded() {
            super::outage::wait_until_up(&ctx, &shutdown).await;
            if shutdown.is_cancelled() {
                break Ok(());
            }
        }
        let room = batches.len() < ctx.pace.batches_in_flight();
        let ready = !pending.is_empty()
            && (pending.len() >= ctx.pace.batch_size() || pending_since.elapsed() >= s.batch_wait);
        if room && ready {
            match broker.high_depth().await {
                Ok(0) => {
                    let work = std::mem::take(&mut pending);
                    let (ctx, broker, queue) =
                        (ctx.clone(), broker.clone(), names.migration.clone());
                    batches.spawn(run_batch(ctx, broker, queue, work));
                }
                Ok(_) => {} // High-priority work is waiting: serve it first.
                Err(e) => break Err(e),
            }
        }
        let room = batches.len() < ctx.pace.batches_in_flight();
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break Ok(()),
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = joined {
                    tracing::error!(error = %e, "a message task panicked; its message will be redelivered");
                }
            }
            next = high.next() => {
                let Some((queue, delivery)) = next else { break Err(closed("high-priority consumer")) };
                let delivery = match delivery {
                    Ok(d) => d,
                    Err(e) => break Err(QueueError::Amqp { op: "consume", detail: e.to_string() }),
                };
                let delivered = Instant::now();
                let Ok(permit) = permits.clone().acquire_owned().await else { break Ok(()) };
                let (ctx, broker, locks) = (ctx.clone(), broker.clone(), locks.clone());
                tasks.spawn(async move {
                    handle_doc(&ctx, &broker, &locks, &queue, delivery, delivered).await;
                    drop(permit);
                });
            }
            Some(joined) = batches.join_next(), if !batches.is_empty() => {
                if let Err(e) = joined {
                    tracing::error!(error = %e, "a migration batch panicked; its messages will be redelivered");
                }
            }
            next = low.next(), if room && pending.len() < ctx.pace.batch_size() => {
                let Some(delivery) = next else { break Err(closed("migration consumer")) };
                match delivery {
                    Ok(d) => {
                        if pending.is_empty() {
                            pending_since = Instant::now();
                        }
                        pending.push(d);
                    }
                    Err(e) => break Err(QueueError::Amqp { op: "consume", detail: e.to_string() }),
                }
            }
            _ = tick.tick() => {}
            _ = caps.tick() => refresh_cap(&ctx, &broker).await,
        }
    };

    // Finish what was started; undelivered and unstarted messages go back
    // to the queue when the channel closes.
    let deadline = ctx.settings.shutdown_deadline;
    let drain = async {
        while tasks.join_next().await.is_some() {}
        while batches.join_next().await.is_some() {}
    };
    if tokio::time::timeout(deadline, drain).await.is_err() {
        tracing::warn!(
            deadline_s = deadline.as_secs(),
            "in-flight work did not finish before the shutdown deadline; it will be redelivered"
        );
    }
    for d in &pending {
        requeue(d).await;
    }
    result
}

async fn refresh_cap(ctx: &Ctx, broker: &Broker) {
    let names = &broker.names;
    for (queue, name) in [
        ("high", None),
        ("migration", Some(&names.migration)),
        ("dead_letters", Some(&names.dead_letters)),
    ] {
        let depth = match name {
            Some(q) => broker.depth(q).await,
            None => broker.high_depth().await,
        };
        if let Ok(d) = depth {
            metrics::gauge!("ferry_queue_depth", "queue" => queue).set(f64::from(d));
        }
    }
    let cap = ctx.control.cap().await;
    let workers = broker.consumers(&broker.names.migration).await;
    match (cap, workers) {
        (Ok(cap), Ok(workers)) => ctx.pace.set_cap(cap.unwrap_or(0), u64::from(workers)),
        (Err(e), _) => tracing::debug!(error = %e, "cannot read the migration cap"),
        (_, Err(e)) => tracing::debug!(error = %e, "cannot count migration consumers"),
    }
    match ctx.budget_in_force().await {
        Ok((budget, _)) => ctx.pace.set_budget(budget.0),
        Err(e) => tracing::debug!(error = %e, "cannot read the edit latency budget"),
    }
    // Latency changes between batches too (edits keep coming while the
    // migration waits): steer now, and say so where `status` reads it.
    ctx.pace.steer();
    if let Some(why) = ctx.pace.yielding() {
        if let Err(e) = ctx.control.report_yielding(&why).await {
            tracing::debug!(error = %e, "cannot report why the migration yields");
        }
    }
}

fn closed(what: &str) -> QueueError {
    QueueError::Amqp {
        op: "consume",
        detail: format!("{what} was closed by the broker"),
    }
}

/// Handles one upload, edit or delete delivery, start to ack; its latency
/// (from publish, or from `delivered`) feeds the migration's pace.
async fn handle_doc(
    ctx: &Ctx,
    broker: &Broker,
    locks: &IdLocks,
    queue: &str,
    d: Delivery,
    delivered: Instant,
) {
    let msg = match Message::parse(&d.data, ctx.settings.max_message_bytes) {
        Ok(Message::Doc(m)) => m,
        Ok(Message::Migrate(_)) => {
            return reject(
                broker,
                queue,
                d,
                "invalid-message",
                "a migrate message on a high-priority queue",
            )
            .await
        }
        Err(r) => return reject(broker, queue, d, r.code(), &r.to_string()).await,
    };
    // Counted in the pace's latency window while it runs, from publish.
    let in_flight = ctx.pace.edits.start(
        published_ms(&d.properties),
        tokio::time::Instant::from_std(delivered),
    );
    let _guard = locks.lock(&msg.id).await;
    let started = Instant::now();
    match retry(&ctx.policy, "apply edit", || apply(ctx, &msg)).await {
        Ok(applied) => {
            tracing::debug!(id = %msg.id, kind = msg.kind.as_str(), ?applied, "applied");
            metrics::histogram!("ferry_edit_seconds").record(started.elapsed().as_secs_f64());
            metrics::counter!("ferry_messages_total", "queue" => "high", "outcome" => "applied")
                .increment(1);
            ack(&d).await;
            in_flight.done();
        }
        Err(EditError::Projection(p)) => {
            reject(broker, queue, d, "projection-failed", &p.to_string()).await
        }
        Err(e) if e.is_transient() => retry_later(ctx, broker, queue, d, &e.to_string()).await,
        Err(e) => reject(broker, queue, d, "write-failed", &e.to_string()).await,
    }
}

/// Full retry budgets a message gets for transient failures before it is
/// dead-lettered.
const MAX_ATTEMPTS: u32 = 5;

/// A transient failure outlived the retry budget. Overload or an outage is
/// not the message's fault: it goes to the back of its queue with an
/// attempt count, and the worker pauses while a dependency is down. Only a
/// message that failed `MAX_ATTEMPTS` budgets in a row is dead-lettered.
async fn retry_later(ctx: &Ctx, broker: &Broker, queue: &str, d: Delivery, error: &str) {
    if !ctx.problems().await.is_empty() {
        ctx.health.degrade();
    }
    let attempts = crate::queue::broker::header(&d.properties, ATTEMPTS_HEADER)
        .and_then(|a| a.parse::<u32>().ok())
        .unwrap_or(0)
        + 1;
    if attempts >= MAX_ATTEMPTS {
        let why = format!("{error} (after {attempts} retry budgets)");
        return reject(broker, queue, d, "write-failed", &why).await;
    }
    let mut headers = d.properties.headers().clone().unwrap_or_default();
    headers.insert(
        ATTEMPTS_HEADER.into(),
        lapin::types::AMQPValue::LongString(attempts.to_string().into()),
    );
    let props = d.properties.clone().with_headers(headers);
    // Published (and confirmed) before the original is acked: never lost.
    match broker.publish_with("", queue, &d.data, props).await {
        Ok(()) => ack(&d).await,
        Err(e) => {
            tracing::warn!(error = %e, "cannot requeue with an attempt count; requeueing as is");
            requeue(&d).await;
        }
    }
}

/// Header counting how many retry budgets a message has used.
const ATTEMPTS_HEADER: &str = "x-ferry-attempts";

async fn requeue(d: &Delivery) {
    let opts = BasicNackOptions {
        requeue: true,
        ..Default::default()
    };
    if let Err(e) = d.acker.nack(opts).await {
        tracing::warn!(error = %e, "nack failed; the message will be redelivered");
    }
}

/// Handles one migration batch, start to acks.
async fn run_batch(ctx: Arc<Ctx>, broker: Arc<Broker>, queue: String, deliveries: Vec<Delivery>) {
    let mut msgs = Vec::with_capacity(deliveries.len());
    let mut kept = Vec::with_capacity(deliveries.len());
    for d in deliveries {
        match Message::parse(&d.data, ctx.settings.max_message_bytes) {
            Ok(Message::Migrate(m)) => {
                msgs.push(*m);
                kept.push(d);
            }
            Ok(Message::Doc(_)) => {
                reject(
                    &broker,
                    &queue,
                    d,
                    "invalid-message",
                    "an upload/edit/delete message on the migration queue",
                )
                .await
            }
            Err(r) => reject(&broker, &queue, d, r.code(), &r.to_string()).await,
        }
    }
    if msgs.is_empty() {
        return;
    }
    ctx.pace.admit(msgs.len()).await;
    let pressure_before = ctx
        .index_pressure
        .load(std::sync::atomic::Ordering::Relaxed);
    let started = Instant::now();
    let redelivered: Vec<bool> = kept.iter().map(|d| d.redelivered).collect();
    let (dispositions, report) =
        migration_path::process_deliveries(&ctx, &msgs, &redelivered).await;
    let pressured = ctx
        .index_pressure
        .load(std::sync::atomic::Ordering::Relaxed)
        > pressure_before;
    ctx.pace.record(msgs.len(), started.elapsed(), pressured);
    metrics::histogram!("ferry_batch_seconds").record(started.elapsed().as_secs_f64());
    for (outcome, n) in [
        ("migrated", report.migrated),
        ("failed", report.failed),
        ("postponed", report.postponed),
        ("dropped", report.dropped),
        ("requeued", report.requeued),
    ] {
        metrics::counter!("ferry_messages_total", "queue" => "migration", "outcome" => outcome)
            .increment(n as u64);
    }
    tracing::debug!(
        ?report,
        ms = started.elapsed().as_millis() as u64,
        "migration batch"
    );
    if report.requeued > 0 && !ctx.problems().await.is_empty() {
        ctx.health.degrade();
    }
    for (d, disp) in kept.iter().zip(dispositions) {
        match disp {
            Disposition::Ack => ack(d).await,
            Disposition::Requeue => requeue(d).await,
        }
    }
}

async fn ack(d: &Delivery) {
    if let Err(e) = d.acker.ack(BasicAckOptions::default()).await {
        // The channel is gone: the broker redelivers; writes are idempotent.
        tracing::warn!(error = %e, "ack failed; the message will be redelivered");
    }
}

/// Dead-letters a delivery with its reason, then acks it; if the dead
/// letter cannot be published, the delivery is requeued instead of lost.
async fn reject(broker: &Broker, queue: &str, d: Delivery, reason: &str, error: &str) {
    let message_id = d
        .properties
        .message_id()
        .as_ref()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    tracing::warn!(message_id, queue, reason, error, "dead-lettering a message");
    metrics::counter!("ferry_messages_total", "queue" => queue.to_string(), "outcome" => "dead_lettered").increment(1);
    match broker.dead_letter(&d, queue, reason, error).await {
        Ok(()) => ack(&d).await,
        Err(e) => {
            tracing::error!(message_id, error = %e, "cannot dead-letter; requeueing instead");
            requeue(&d).await;
        }
    }
}
