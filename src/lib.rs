//! ferry: migrates a live search index to a new one from its primary stores.
//!
//! The module tree follows the data flow in `docs/design.md`, from the top
//! down:
//!
//! - [`app`] wires the `ferry worker` process; [`admin`] (HTTP API, page,
//!   metrics) and [`ops`] (operator and support commands) steer it;
//!   [`bench`], [`demo`] and [`seed`] are jobs run against a stack;
//! - [`worker`]: messages arrive ([`worker::dispatch`]), edits take the
//!   edit path, migration batches the migration path, and the scanner
//!   queues what is left to migrate;
//! - [`context`]: what they all share (clients, cached alias state, pace);
//! - [`queue`] (RabbitMQ), [`stores`] (S3 originals, DynamoDB edits, the
//!   projection) and [`index`] (the search index and its aliases);
//! - [`notify`] sends operator actions and conditions to webhooks;
//! - [`config`], [`types`], [`retry`] and [`fault`] underneath.

pub mod admin;
pub mod app;
pub mod bench;
pub mod config;
pub mod context;
pub mod demo;
pub mod fault;
pub mod index;
pub mod notify;
pub mod ops;
pub mod queue;
pub mod retry;
pub mod seed;
pub mod stores;
pub mod types;
pub mod worker;
