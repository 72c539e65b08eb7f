//! The queue topology as data: `queues/topology.json` is a RabbitMQ
//! definitions file (importable with `rabbitmqctl import_definitions`);
//! ferry declares the same objects idempotently at start-up, renaming the
//! leading `ferry.` of every name to the configured prefix.

use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use thiserror::Error;

/// Prefix used by the names in the file.
const FILE_PREFIX: &str = "ferry.";

/// A topology file that cannot be used.
#[derive(Debug, Error)]
pub enum TopologyError {
    /// The file could not be read.
    #[error("cannot read topology file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a definitions file ferry understands.
    #[error("topology file {path} is invalid: {detail}")]
    Invalid { path: String, detail: String },
}

/// An exchange to declare.
#[derive(Debug, Clone, Deserialize)]
pub struct ExchangeDef {
    /// Name (after prefixing).
    pub name: String,
    /// `direct`, `fanout`, `topic`, `headers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Survives a broker restart.
    pub durable: bool,
}

/// A queue to declare.
#[derive(Debug, Clone, Deserialize)]
pub struct QueueDef {
    /// Name (after prefixing).
    pub name: String,
    /// Survives a broker restart.
    pub durable: bool,
    /// `x-` arguments (queue type, dead-letter exchange, ...).
    #[serde(default)]
    pub arguments: BTreeMap<String, Value>,
}

/// A binding to declare.
#[derive(Debug, Clone, Deserialize)]
pub struct BindingDef {
    /// Exchange.
    pub source: String,
    /// Queue.
    pub destination: String,
    /// Routing key.
    pub routing_key: String,
}

/// The whole topology, with names already prefixed.
#[derive(Debug, Clone, Deserialize)]
pub struct Topology {
    /// Exchanges.
    pub exchanges: Vec<ExchangeDef>,
    /// Queues.
    pub queues: Vec<QueueDef>,
    /// Bindings.
    pub bindings: Vec<BindingDef>,
}

/// The names ferry uses, derived from the prefix.
#[derive(Debug, Clone)]
pub struct QueueNames {
    /// Exchange every message is published to (routing key = kind).
    pub events: String,
    /// Exchange dead letters are published to.
    pub dead_letter: String,
    /// High priority: uploads.
    pub uploads: String,
    /// High priority: edits and deletes.
    pub edits: String,
    /// Low priority: migration.
    pub migration: String,
    /// Dead letters.
    pub dead_letters: String,
}

impl QueueNames {
    /// Names for a prefix.
    pub fn new(prefix: &str) -> Self {
        let n = |s: &str| format!("{prefix}.{s}");
        Self {
            events: n("events"),
            dead_letter: n("dead-letter"),
            uploads: n("uploads"),
            edits: n("edits"),
            migration: n("migration"),
            dead_letters: n("dead-letters"),
        }
    }

    /// The high-priority queues, in the order they are served.
    pub fn high(&self) -> [&str; 2] {
        [&self.edits, &self.uploads]
    }
}

impl Topology {
    /// Reads the definitions file and renames `ferry.*` to `<prefix>.*`.
    pub fn load(path: &str, prefix: &str) -> Result<Self, TopologyError> {
        let text = std::fs::read_to_string(path).map_err(|source| TopologyError::Read {
            path: path.to_string(),
            source,
        })?;
        Self::parse(&text, prefix).map_err(|detail| TopologyError::Invalid {
            path: path.to_string(),
            detail,
        })
    }

    /// Parses definitions text; see [`Topology::load`].
    pub fn parse(text: &str, prefix: &str) -> Result<Self, String> {
        let mut t: Topology = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let rename = |s: &mut String| {
            if let Some(rest) = s.strip_prefix(FILE_PREFIX) {
                *s = format!("{prefix}.{rest}");
            }
        };
        t.exchanges.iter_mut().for_each(|e| rename(&mut e.name));
        for q in &mut t.queues {
            rename(&mut q.name);
            for v in q.arguments.values_mut() {
                if let Value::String(s) = v {
                    rename(s);
                }
            }
        }
        for b in &mut t.bindings {
            rename(&mut b.source);
            rename(&mut b.destination);
        }
        let names = QueueNames::new(prefix);
        for needed in [
            &names.uploads,
            &names.edits,
            &names.migration,
            &names.dead_letters,
        ] {
            if !t.queues.iter().any(|q| &q.name == needed) {
                return Err(format!("queue {needed} is missing"));
            }
        }
        for needed in [&names.events, &names.dead_letter] {
            if !t.exchanges.iter().any(|e| &e.name == needed) {
                return Err(format!("exchange {needed} is missing"));
            }
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_topology_loads_with_any_prefix() {
        let t = Topology::load(
            concat!(env!("CARGO_MANIFEST_DIR"), "/queues/topology.json"),
            "t42",
        )
        .unwrap();
        assert!(t.queues.iter().all(|q| q.name.starts_with("t42.")));
        let dlx = &t
            .queues
            .iter()
            .find(|q| q.name == "t42.uploads")
            .unwrap()
            .arguments["x-dead-letter-exchange"];
        assert_eq!(dlx, "t42.dead-letter");
        assert!(t.bindings.iter().any(|b| b.source == "t42.events"
            && b.destination == "t42.edits"
            && b.routing_key == "delete"));
    }

    #[test]
    fn a_topology_without_the_migration_queue_is_refused() {
        let text = r#"{"exchanges":[],"queues":[],"bindings":[]}"#;
        assert!(Topology::parse(text, "x").unwrap_err().contains("missing"));
    }
}
