//! Webhook notifications: every operator action and the conditions
//! operators must hear about without watching (`ops::conditions`) are
//! POSTed to the `FERRY_NOTIFY_URL`s, signed when `FERRY_NOTIFY_SECRET` is
//! set.
//!
//! Sending never waits for a receiver: [`Notifier::send`] puts the notice
//! in a bounded in-memory queue (the oldest is dropped when it is full) and
//! a background task ([`deliver`]) drains it. A command gives the queue a
//! short, bounded time to empty before it exits ([`Notifier::flush`]).

pub mod body;
mod deliver;

pub use body::{signature, Kind, Notice};

pub use crate::config::NotifyFormat;
use crate::config::Settings;
use crate::stores::control::AuditEntry;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use thiserror::Error;

/// Notices waiting at most; a receiver down for long loses the oldest.
const QUEUE_CAPACITY: usize = 256;

/// A failed delivery attempt.
#[derive(Debug, Error)]
pub enum NotifyError {
    /// The receiver could not be reached or did not answer in time.
    #[error("notification to {url}: {source}")]
    Http {
        /// The receiver (without credentials).
        url: String,
        /// What went wrong.
        source: reqwest::Error,
    },
    /// The receiver answered with an error status.
    #[error("notification to {url}: HTTP {status}")]
    Status {
        /// The receiver (without credentials).
        url: String,
        /// Its answer.
        status: u16,
    },
}

/// Delivery counts of this process (also exported as
/// `ferry_notifications_total{outcome}`).
#[derive(Debug, Default)]
pub struct Counts {
    /// Delivered (one per receiver).
    pub sent: AtomicU64,
    /// Given up after the retries (one per receiver).
    pub failed: AtomicU64,
    /// Dropped from a full queue, never tried.
    pub dropped: AtomicU64,
}

impl Counts {
    fn add(&self, outcome: &'static str, n: u64) {
        let c = match outcome {
            "sent" => &self.sent,
            "failed" => &self.failed,
            _ => &self.dropped,
        };
        c.fetch_add(n, Ordering::Relaxed);
        metrics::counter!("ferry_notifications_total", "outcome" => outcome).increment(n);
    }
}

/// The queue shared by the senders and the delivery task.
#[derive(Debug, Default)]
struct Shared {
    queue: Mutex<VecDeque<Notice>>,
    wake: tokio::sync::Notify,
    /// Notices queued or being delivered: a flush waits for zero.
    outstanding: AtomicU64,
    counts: Counts,
}

/// The process's notification sender; does nothing when no URL is set.
#[derive(Debug, Clone)]
pub struct Notifier {
    deployment: String,
    shared: Option<Arc<Shared>>,
}

impl Notifier {
    /// A sender for `settings`; starts the delivery task when URLs are set
    /// (so it must be called inside the runtime).
    pub fn from_settings(settings: &Settings) -> Self {
        let urls: Vec<String> = settings
            .notify_url
            .iter()
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty())
            .collect();
        let shared = (!urls.is_empty()).then(|| {
            let shared = Arc::new(Shared::default());
            let target = deliver::Target::new(urls, settings);
            tokio::spawn(deliver::run(shared.clone(), target));
            shared
        });
        Self {
            deployment: settings.queue_prefix.clone(),
            shared,
        }
    }

    /// True when notifications go somewhere.
    pub fn is_on(&self) -> bool {
        self.shared.is_some()
    }

    /// Queues an operator action.
    pub fn action(&self, e: &AuditEntry) {
        if self.is_on() {
            self.send(Notice::action(&self.deployment, e));
        }
    }

    /// Queues a condition noticed now.
    pub fn condition(&self, event: Kind, text: String, detail: serde_json::Value) {
        if self.is_on() {
            self.send(Notice::now(event, &self.deployment, text, detail));
        }
    }

    /// Queues `n` without waiting; drops the oldest queued notice when full.
    pub fn send(&self, n: Notice) {
        let Some(shared) = &self.shared else { return };
        let dropped = match shared.queue.lock() {
            Ok(mut q) => {
                let dropped = if q.len() >= QUEUE_CAPACITY {
                    q.pop_front().is_some()
                } else {
                    false
                };
                q.push_back(n);
                dropped
            }
            // A panicked holder: lose this notice rather than the caller.
            Err(_) => return,
        };
        if dropped {
            shared.counts.add("dropped", 1);
        } else {
            shared.outstanding.fetch_add(1, Ordering::SeqCst);
        }
        shared.wake.notify_one();
    }

    /// Waits until every queued notice was delivered or given up, for at
    /// most `limit`; the number still outstanding then.
    pub async fn flush(&self, limit: Duration) -> u64 {
        let Some(shared) = &self.shared else { return 0 };
        let deadline = Instant::now() + limit;
        loop {
            let left = shared.outstanding.load(Ordering::SeqCst);
            if left == 0 || Instant::now() >= deadline {
                return left;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// This process's delivery counts (none when notifications are off).
    pub fn counts(&self) -> Option<&Counts> {
        self.shared.as_ref().map(|s| &s.counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(urls: &[&str]) -> Settings {
        let mut s = Settings::from_env().unwrap();
        s.notify_url = urls.iter().map(|u| u.to_string()).collect();
        s.queue_prefix = "unit".into();
        s
    }

    #[tokio::test]
    async fn without_a_url_nothing_is_queued() {
        let n = Notifier::from_settings(&settings(&["", " "]));
        assert!(!n.is_on());
        n.condition(Kind::Stalled, "x".into(), serde_json::json!({}));
        assert_eq!(n.flush(Duration::from_secs(1)).await, 0);
    }

    #[tokio::test]
    async fn a_full_queue_drops_the_oldest_and_a_flush_is_bounded() {
        // A closed port: every delivery fails, slowly enough to fill the queue.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let n = Notifier::from_settings(&settings(&[&format!("http://127.0.0.1:{port}/")]));
        for i in 0..QUEUE_CAPACITY + 10 {
            n.condition(Kind::Stalled, format!("n{i}"), serde_json::json!({}));
        }
        let counts = n.counts().unwrap();
        assert!(counts.dropped.load(Ordering::Relaxed) >= 9);
        let clock = Instant::now();
        let left = n.flush(Duration::from_millis(300)).await;
        assert!(clock.elapsed() < Duration::from_secs(2));
        assert!(left > 0);
    }
}
