//! The RabbitMQ connection: declares the topology, publishes with publisher
//! confirms, opens consumers with manual acks, measures queue depths and
//! dead-letters messages with their reason.

use super::topology::{QueueNames, Topology, TopologyError};
use crate::config::Settings;
use crate::retry::Transient;
use crate::types::redact_url;
use lapin::options::{
    BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions, QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::Confirmation;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use std::time::Duration;
use thiserror::Error;

/// How long one broker operation may take.
const OP_TIMEOUT: Duration = Duration::from_secs(15);

/// A failed broker operation.
#[derive(Debug, Error)]
pub enum QueueError {
    /// Connecting failed (the URL is printed without its password).
    #[error("cannot connect to RabbitMQ at {url}: {detail}")]
    Connect { url: String, detail: String },
    /// An AMQP operation failed.
    #[error("RabbitMQ {op} failed: {detail}")]
    Amqp { op: &'static str, detail: String },
    /// The broker refused a published message (nack or unroutable).
    #[error("RabbitMQ refused a message published with routing key {routing_key:?}: {detail}")]
    Refused { routing_key: String, detail: String },
    /// The topology file is unusable.
    #[error(transparent)]
    Topology(#[from] TopologyError),
}

impl Transient for QueueError {
    fn is_transient(&self) -> bool {
        !matches!(self, QueueError::Topology(_))
    }
}

fn amqp(op: &'static str) -> impl Fn(lapin::Error) -> QueueError {
    move |e| QueueError::Amqp {
        op,
        detail: e.to_string(),
    }
}

async fn timed<T>(
    op: &'static str,
    f: impl std::future::Future<Output = Result<T, lapin::Error>>,
) -> Result<T, QueueError> {
    match tokio::time::timeout(OP_TIMEOUT, f).await {
        Ok(r) => r.map_err(amqp(op)),
        Err(_) => Err(QueueError::Amqp {
            op,
            detail: "timed out".into(),
        }),
    }
}

/// A connection with a confirm-mode channel for publishing.
pub struct Broker {
    conn: Connection,
    publisher: Channel,
    inspector: Channel,
    /// Queue and exchange names.
    pub names: QueueNames,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("names", &self.names)
            .finish()
    }
}

impl Broker {
    /// Connects and declares the topology (idempotent).
    pub async fn connect(s: &Settings) -> Result<Self, QueueError> {
        let topology = Topology::load(&s.topology, &s.queue_prefix)?;
        let url = s.amqp_url.expose();
        let props = ConnectionProperties::default()
            .with_connection_name(LongString::from(format!("ferry-{}", std::process::id())));
        let conn = match tokio::time::timeout(OP_TIMEOUT, Connection::connect(url, props)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                return Err(QueueError::Connect {
                    url: redact_url(url),
                    detail: e.to_string().replace(url, &redact_url(url)),
                })
            }
            Err(_) => {
                return Err(QueueError::Connect {
                    url: redact_url(url),
                    detail: "timed out".into(),
                })
            }
        };
        let setup = timed("open channel", conn.create_channel()).await?;
        declare(&setup, &topology).await?;
        let publisher = timed("open channel", conn.create_channel()).await?;
        timed(
            "confirm.select",
            publisher.confirm_select(ConfirmSelectOptions::default()),
        )
        .await?;
        let inspector = timed("open channel", conn.create_channel()).await?;
        let _ = setup.close(200, "declared".into()).await;
        Ok(Self {
            conn,
            publisher,
            inspector,
            names: QueueNames::new(&s.queue_prefix),
        })
    }

    /// True while the connection is usable.
    pub fn is_connected(&self) -> bool {
        self.conn.status().connected()
    }

    /// Publishes a persistent message to an exchange and waits for the
    /// broker's confirm; unroutable or nacked messages are errors.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        mut headers: FieldTable,
    ) -> Result<(), QueueError> {
        // The AMQP timestamp is in seconds; `timestamp_in_ms` (the header
        // RabbitMQ's message-timestamp plugin sets) lets a worker measure an
        // edit's latency from publish to visible to the millisecond.
        let now = crate::stores::control::now_ms();
        headers.insert(
            PUBLISHED_MS_HEADER.into(),
            AMQPValue::LongLongInt(now as i64),
        );
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(ShortString::from(uuid::Uuid::new_v4().to_string()))
            .with_timestamp(now / 1000)
            .with_headers(headers);
        self.publish_with(exchange, routing_key, body, props).await
    }

    /// Publishes with the given properties (dead letters keep the original ones).
    pub async fn publish_with(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        props: BasicProperties,
    ) -> Result<(), QueueError> {
        let opts = BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        };
        let confirm = timed(
            "basic.publish",
            self.publisher
                .basic_publish(exchange.into(), routing_key.into(), opts, body, props),
        )
        .await?;
        let confirmation = timed("publisher confirm", confirm).await?;
        let refused = |detail: &str| QueueError::Refused {
            routing_key: routing_key.to_string(),
            detail: detail.to_string(),
        };
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(_)) => Err(refused("unroutable: no queue is bound for it")),
            Confirmation::Nack(_) => Err(refused("nacked by the broker")),
            Confirmation::NotRequested => Err(refused("publisher confirms are off")),
        }
    }

    /// Publishes to the events exchange with routing key = kind.
    pub async fn publish_event(&self, kind: &str, body: &[u8]) -> Result<(), QueueError> {
        self.publish(
            &self.names.events.clone(),
            kind,
            body,
            FieldTable::default(),
        )
        .await
    }

    /// Declares `queue` passively: its counts, without creating it.
    async fn inspect(&self, queue: &str) -> Result<lapin::Queue, QueueError> {
        let opts = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        timed(
            "queue.declare passive",
            self.inspector
                .queue_declare(queue.into(), opts, FieldTable::default()),
        )
        .await
    }

    /// Ready messages in a queue (not counting those delivered and unacked).
    pub async fn depth(&self, queue: &str) -> Result<u32, QueueError> {
        Ok(self.inspect(queue).await?.message_count())
    }

    /// Consumers attached to a queue (workers sharing the migration cap).
    pub async fn consumers(&self, queue: &str) -> Result<u32, QueueError> {
        Ok(self.inspect(queue).await?.consumer_count())
    }

    /// Ready messages in all high-priority queues.
    pub async fn high_depth(&self) -> Result<u32, QueueError> {
        let mut total = 0;
        for q in self.names.high() {
            total += self.depth(q).await?;
        }
        Ok(total)
    }

    /// Opens a consumer channel with the given prefetch.
    pub async fn consume(
        &self,
        queue: &str,
        prefetch: u16,
        tag: &str,
    ) -> Result<lapin::Consumer, QueueError> {
        let ch = timed("open channel", self.conn.create_channel()).await?;
        timed(
            "basic.qos",
            ch.basic_qos(prefetch, BasicQosOptions::default()),
        )
        .await?;
        timed(
            "basic.consume",
            ch.basic_consume(
                queue.into(),
                tag.into(),
                Default::default(),
                FieldTable::default(),
            ),
        )
        .await
    }

    /// Removes every ready message from a queue (tests and `abandon` clean-up).
    pub async fn purge(&self, queue: &str) -> Result<u32, QueueError> {
        timed(
            "queue.purge",
            self.inspector
                .queue_purge(queue.into(), QueuePurgeOptions::default()),
        )
        .await
    }

    /// Sends a message to the dead-letter exchange with the reason in
    /// headers, keeping its body and properties.
    pub async fn dead_letter(
        &self,
        delivery: &lapin::message::Delivery,
        queue: &str,
        reason: &str,
        error: &str,
    ) -> Result<(), QueueError> {
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        let text = |s: &str| AMQPValue::LongString(LongString::from(s.to_string()));
        headers.insert("x-ferry-reason".into(), text(reason));
        headers.insert(
            "x-ferry-error".into(),
            text(&error.chars().take(1000).collect::<String>()),
        );
        headers.insert("x-ferry-queue".into(), text(queue));
        headers.insert(
            "x-ferry-dead-lettered-at".into(),
            text(&chrono::Utc::now().to_rfc3339()),
        );
        let props = delivery
            .properties
            .clone()
            .with_headers(headers)
            .with_delivery_mode(2);
        self.publish_with(&self.names.dead_letter.clone(), "", &delivery.data, props)
            .await
    }

    /// Closes the connection cleanly.
    pub async fn close(&self) {
        let _ = self.conn.close(200, "bye".into()).await;
    }
}

async fn declare(ch: &Channel, t: &Topology) -> Result<(), QueueError> {
    for e in &t.exchanges {
        let kind = match e.kind.as_str() {
            "direct" => ExchangeKind::Direct,
            "fanout" => ExchangeKind::Fanout,
            "topic" => ExchangeKind::Topic,
            "headers" => ExchangeKind::Headers,
            other => ExchangeKind::Custom(other.to_string()),
        };
        let opts = ExchangeDeclareOptions {
            durable: e.durable,
            ..Default::default()
        };
        timed(
            "exchange.declare",
            ch.exchange_declare(e.name.as_str().into(), kind, opts, FieldTable::default()),
        )
        .await?;
    }
    for q in &t.queues {
        let mut args = FieldTable::default();
        for (k, v) in &q.arguments {
            let value = match v {
                serde_json::Value::String(s) => AMQPValue::LongString(LongString::from(s.clone())),
                serde_json::Value::Number(n) => {
                    AMQPValue::LongLongInt(n.as_i64().unwrap_or_default())
                }
                serde_json::Value::Bool(b) => AMQPValue::Boolean(*b),
                _ => continue,
            };
            args.insert(k.as_str().into(), value);
        }
        let opts = QueueDeclareOptions {
            durable: q.durable,
            ..Default::default()
        };
        timed(
            "queue.declare",
            ch.queue_declare(q.name.as_str().into(), opts, args),
        )
        .await?;
    }
    for b in &t.bindings {
        timed(
            "queue.bind",
            ch.queue_bind(
                b.destination.as_str().into(),
                b.source.as_str().into(),
                b.routing_key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            ),
        )
        .await?;
    }
    Ok(())
}

/// Header with the publish time in milliseconds since the epoch.
pub const PUBLISHED_MS_HEADER: &str = "timestamp_in_ms";

/// When the message was published, in milliseconds since the epoch, as
/// precisely as its properties say: `(ms, precise)`, where `precise` is
/// false when only the AMQP timestamp (whole seconds) was set.
pub fn published_ms(props: &BasicProperties) -> Option<(u64, bool)> {
    let precise = props
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(PUBLISHED_MS_HEADER).cloned())
        .and_then(|v| match v {
            AMQPValue::LongLongInt(n) => u64::try_from(n).ok(),
            AMQPValue::LongUInt(n) => Some(u64::from(n)),
            AMQPValue::Timestamp(n) => Some(n),
            _ => None,
        });
    match precise {
        Some(ms) => Some((ms, true)),
        None => props.timestamp().map(|s| (s.saturating_mul(1000), false)),
    }
}

/// Reads a text header of a delivery (tests and the dead-letter tools).
pub fn header(props: &BasicProperties, name: &str) -> Option<String> {
    let headers = props.headers().as_ref()?;
    match headers.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}
