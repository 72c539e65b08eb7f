//! The background task that drains the notification queue: one POST per
//! receiver, with a short timeout, retried with backoff on transient
//! failures, counted by outcome.

use super::{NotifyError, NotifyFormat, Shared};
use crate::config::Settings;
use crate::retry::{retry, RetryPolicy, Transient};
use crate::types::Secret;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// One POST: a receiver that takes longer is treated as down.
const POST_TIMEOUT: Duration = Duration::from_secs(5);

/// Retries of one notice to one receiver: short, since later notices wait
/// behind it (and the queue drops the oldest meanwhile).
const RETRIES: RetryPolicy = RetryPolicy {
    initial: Duration::from_millis(200),
    max_interval: Duration::from_secs(2),
    budget: Duration::from_secs(10),
};

impl Transient for NotifyError {
    fn is_transient(&self) -> bool {
        match self {
            NotifyError::Http { .. } => true,
            NotifyError::Status { status, .. } => *status == 429 || *status >= 500,
        }
    }
}

/// Where and how notices are sent.
pub(super) struct Target {
    urls: Vec<String>,
    http: reqwest::Client,
    secret: Secret,
    format: NotifyFormat,
}

impl Target {
    /// The receivers `urls`, with the secret and format of `settings`.
    pub(super) fn new(urls: Vec<String>, settings: &Settings) -> Self {
        let http = reqwest::Client::builder()
            .timeout(POST_TIMEOUT)
            .build()
            .unwrap_or_default();
        Self {
            urls,
            http,
            secret: settings.notify_secret.clone(),
            format: settings.notify_format,
        }
    }

    /// POSTs `body` to `url` once.
    async fn post(&self, url: &str, event: &str, body: &[u8]) -> Result<(), NotifyError> {
        let mut req = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("X-Ferry-Event", event)
            .body(body.to_vec());
        if !self.secret.is_empty() {
            let sig = super::signature(self.secret.expose().as_bytes(), body);
            req = req.header("X-Ferry-Signature", sig);
        }
        let url_shown = || host_of(url);
        let reply = req.send().await.map_err(|source| NotifyError::Http {
            url: url_shown(),
            source: source.without_url(),
        })?;
        match reply.status() {
            s if s.is_success() => Ok(()),
            s => Err(NotifyError::Status {
                url: url_shown(),
                status: s.as_u16(),
            }),
        }
    }
}

/// The scheme, host and port of `url`: webhook paths often hold a token
/// (Slack's do), so logs and errors never show more.
fn host_of(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!(
            "{}://{}{}",
            u.scheme(),
            u.host_str().unwrap_or_default(),
            u.port().map(|p| format!(":{p}")).unwrap_or_default()
        ),
        Err(_) => "<unparseable url>".into(),
    }
}

/// Delivers queued notices until the process ends.
pub(super) async fn run(shared: Arc<Shared>, target: Target) {
    loop {
        let next = shared.queue.lock().ok().and_then(|mut q| q.pop_front());
        let Some(notice) = next else {
            shared.wake.notified().await;
            continue;
        };
        let body = notice.body(target.format);
        let event = notice.event.as_str();
        // Every receiver at once: one that is down must not hold the others.
        let results = futures::future::join_all(
            target
                .urls
                .iter()
                .map(|url| retry(&RETRIES, "notification", || target.post(url, event, &body))),
        )
        .await;
        for r in results {
            match r {
                Ok(()) => shared.counts.add("sent", 1),
                Err(e) => {
                    tracing::warn!(error = %e, event, "notification not delivered");
                    shared.counts.add("failed", 1);
                }
            }
        }
        shared.outstanding.fetch_sub(1, Ordering::SeqCst);
    }
}
