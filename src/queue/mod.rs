//! RabbitMQ: the topology from `queues/`, message parsing, publishing with
//! confirms, consuming with manual acks, and the dead-letter queue.

pub mod broker;
pub mod messages;
pub mod topology;

pub use broker::{Broker, QueueError};
pub use messages::{DocKind, DocMessage, Message, MigrateMessage, Payload, Rejection};
pub use topology::{QueueNames, Topology};
