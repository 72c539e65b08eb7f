//! ferry: migrates a live search index to a new one from its primary stores.
//!
//! The module tree follows the data flow in docs/design.md: messages enter through
//! [`queue`], documents are rebuilt by [`stores`], written by [`worker`] into
//! the indices behind [`index`], and operators steer it all through [`ops`]
//! and [`admin`].

pub mod admin;
pub mod bench;
pub mod config;
pub mod demo;
pub mod fault;
pub mod index;
pub mod ops;
pub mod queue;
pub mod retry;
pub mod seed;
pub mod stores;
pub mod types;
pub mod worker;
