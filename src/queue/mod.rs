//! RabbitMQ: the topology from `queues/`, message parsing, publishing with
//! confirms, consuming with manual acks, the dead-letter queue, and the
//! migrate messages built from scanned documents.

pub mod broker;
pub mod messages;
pub mod migrate;
pub mod topology;

pub use broker::{Broker, QueueError};
pub use messages::{DocKind, DocMessage, Message, MigrateMessage, Payload, Rejection};
pub use topology::{QueueNames, Topology};
