//! The conditions operators must hear about without watching: a migration
//! ready to complete, failures above `FERRY_NOTIFY_FAILURES`, no progress
//! for `FERRY_NOTIFY_STALL` while documents remain, and this worker
//! degraded for over a minute. The scan lease holder checks the migration
//! (one per deployment); every worker checks its own health. Each is
//! notified once per occurrence: again only after it ended and came back.

use super::lifecycle::{progress, Progress};
use super::OpsError;
use crate::context::Ctx;
use crate::index::aliases::Phase;
use crate::notify::Kind;
use crate::worker::lease::{nap, LeaseHandle};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How often the conditions are checked.
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// How long a worker is degraded before it is notified: shorter outages
/// (a broker restart) heal by themselves.
pub const DEGRADED_AFTER: Duration = Duration::from_secs(60);

/// A condition that just began: (event, one line, detail).
pub type Event = (Kind, String, Value);

/// The thresholds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Failed documents above which failures are notified.
    pub failures: u64,
    /// Time without progress after which a migration is stalled.
    pub stall: Duration,
}

/// What one check of the migration saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The phase.
    pub phase: Phase,
    /// The migration index and its counts, while a migration exists.
    pub migration: Option<(String, Progress)>,
}

/// What has already been notified, so that a condition is notified when it
/// begins and not at every check.
#[derive(Debug, Default)]
pub struct Watch {
    target: Option<String>,
    ready: bool,
    failing: bool,
    stalled: bool,
    /// Documents with an outcome, and since when that number holds.
    done_since: Option<(u64, Instant)>,
    degraded: bool,
}

impl Watch {
    /// The migration conditions that began with `seen` at `now`.
    pub fn migration(&mut self, seen: &Seen, now: Instant, limits: Limits) -> Vec<Event> {
        let Some((target, p)) = &seen.migration else {
            *self = Watch {
                degraded: self.degraded,
                ..Watch::default()
            };
            return Vec::new();
        };
        if self.target.as_ref() != Some(target) {
            // Another migration: nothing of the last one carries over.
            *self = Watch {
                target: Some(target.clone()),
                degraded: self.degraded,
                ..Watch::default()
            };
        }
        let detail = json!({
            "target": target, "phase": seen.phase, "total": p.total,
            "migrated": p.migrated, "failed": p.failed, "to_go": p.to_go,
        });
        let mut events = Vec::new();
        let ready = p.to_go == 0 && p.failed == 0;
        if ready && !self.ready {
            let text = format!(
                "migration into {target} is ready to complete: {} documents migrated, none failed",
                p.migrated
            );
            events.push((Kind::ReadyToComplete, text, detail.clone()));
        }
        self.ready = ready;
        let failing = p.failed > limits.failures;
        if failing && !self.failing {
            let text = format!(
                "migration into {target}: {} documents failed (over {}); see `ferry failures`",
                p.failed, limits.failures
            );
            events.push((Kind::FailuresRising, text, detail.clone()));
        }
        self.failing = failing;
        // Progress is any change in documents with an outcome; a paused
        // migration or one with nothing left is not stalled.
        let done = p.migrated + p.failed;
        let running = seen.phase == Phase::InProgress && p.to_go > 0;
        match self.done_since {
            Some((d, since)) if d == done && running => {
                if !self.stalled && now.duration_since(since) >= limits.stall {
                    self.stalled = true;
                    let text = format!(
                        "migration into {target} made no progress for {}: {} documents to go",
                        humantime::format_duration(limits.stall),
                        p.to_go
                    );
                    events.push((Kind::Stalled, text, detail));
                }
            }
            _ => {
                self.done_since = Some((done, now));
                self.stalled = false;
            }
        }
        events
    }

    /// The health condition that began when this worker has been degraded
    /// for `degraded_for` (None: healthy).
    pub fn health(&mut self, degraded_for: Option<Duration>, owner: &str) -> Option<Event> {
        let Some(d) = degraded_for else {
            self.degraded = false;
            return None;
        };
        if self.degraded || d < DEGRADED_AFTER {
            return None;
        }
        self.degraded = true;
        let text = format!(
            "worker {owner} is degraded (the index or a store does not answer) for {}s; it takes no work",
            d.as_secs()
        );
        Some((
            Kind::Degraded,
            text,
            json!({"worker": owner, "seconds": d.as_secs()}),
        ))
    }
}

/// Reads the phase and the migration's counts.
async fn look(ctx: &Ctx) -> Result<Seen, OpsError> {
    let st = ctx.alias_state().await?;
    let phase = st.phase(&ctx.aliases);
    let migration = match (st.current_index(), st.migration_index(), phase) {
        (Some(c), Some(m), Phase::InProgress | Phase::Paused) => {
            Some((m.to_string(), progress(ctx, &c, &m).await?))
        }
        _ => None,
    };
    Ok(Seen { phase, migration })
}

/// Checks the conditions until shutdown and notifies those that begin.
pub async fn run(ctx: Arc<Ctx>, lease: LeaseHandle, shutdown: CancellationToken) {
    let limits = Limits {
        failures: ctx.settings.notify_failures,
        stall: ctx.settings.notify_stall,
    };
    let mut watch = Watch::default();
    while nap(CHECK_EVERY, &shutdown).await {
        let mut events: Vec<Event> = watch
            .health(ctx.health.degraded_for(), &lease.owner)
            .into_iter()
            .collect();
        if lease.held() {
            match look(&ctx).await {
                Ok(seen) => events.extend(watch.migration(&seen, Instant::now(), limits)),
                Err(e) => {
                    tracing::debug!(error = %e, "cannot check the migration for notifications")
                }
            }
        }
        for (kind, text, detail) in events {
            ctx.notify.condition(kind, text, detail);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        failures: 10,
        stall: Duration::from_secs(60),
    };

    fn seen(phase: Phase, target: &str, migrated: u64, failed: u64, to_go: u64) -> Seen {
        let total = migrated + failed + to_go;
        let p = Progress {
            total,
            migrated,
            failed,
            to_go,
        };
        Seen {
            phase,
            migration: Some((target.into(), p)),
        }
    }

    fn kinds(events: Vec<Event>) -> Vec<Kind> {
        events.into_iter().map(|(k, _, _)| k).collect()
    }

    #[test]
    fn ready_is_notified_once_per_occurrence() {
        let (mut w, t0) = (Watch::default(), Instant::now());
        let mut at = |s: Seen| kinds(w.migration(&s, t0, LIMITS));
        assert!(at(seen(Phase::InProgress, "a", 5, 0, 5)).is_empty());
        assert_eq!(
            at(seen(Phase::InProgress, "a", 10, 0, 0)),
            [Kind::ReadyToComplete]
        );
        assert!(at(seen(Phase::InProgress, "a", 10, 0, 0)).is_empty());
        // New documents arrive, then are migrated: a second occurrence.
        assert!(at(seen(Phase::InProgress, "a", 10, 0, 2)).is_empty());
        assert_eq!(
            at(seen(Phase::InProgress, "a", 12, 0, 0)),
            [Kind::ReadyToComplete]
        );
        // A new migration starts afresh.
        assert_eq!(
            at(seen(Phase::InProgress, "b", 12, 0, 0)),
            [Kind::ReadyToComplete]
        );
    }

    #[test]
    fn failures_are_notified_once_per_crossing() {
        let (mut w, t0) = (Watch::default(), Instant::now());
        let mut at =
            |failed| kinds(w.migration(&seen(Phase::InProgress, "a", 1, failed, 5), t0, LIMITS));
        assert!(at(10).is_empty());
        assert_eq!(at(11), [Kind::FailuresRising]);
        assert!(at(50).is_empty());
        // Retried below the threshold, then crossing again.
        assert!(at(3).is_empty());
        assert_eq!(at(20), [Kind::FailuresRising]);
    }

    #[test]
    fn a_stall_is_notified_once_until_progress_resumes() {
        let (mut w, t0) = (Watch::default(), Instant::now());
        let mut at = |secs, migrated, phase| {
            let s = seen(phase, "a", migrated, 0, 100 - migrated);
            kinds(w.migration(&s, t0 + Duration::from_secs(secs), LIMITS))
        };
        assert!(at(0, 10, Phase::InProgress).is_empty());
        assert!(at(59, 10, Phase::InProgress).is_empty());
        assert_eq!(at(60, 10, Phase::InProgress), [Kind::Stalled]);
        assert!(at(200, 10, Phase::InProgress).is_empty());
        assert!(at(201, 11, Phase::InProgress).is_empty(), "progress");
        assert_eq!(at(261, 11, Phase::InProgress), [Kind::Stalled]);
        // Time paused does not count.
        assert!(at(262, 12, Phase::Paused).is_empty());
        assert!(at(400, 12, Phase::Paused).is_empty());
        assert!(at(401, 12, Phase::InProgress).is_empty());
        assert_eq!(at(461, 12, Phase::InProgress), [Kind::Stalled]);
    }

    #[test]
    fn degraded_is_notified_once_after_a_minute() {
        let mut w = Watch::default();
        let secs = |s| Some(Duration::from_secs(s));
        assert!(w.health(secs(30), "w1").is_none());
        assert!(w
            .health(secs(60), "w1")
            .is_some_and(|e| e.0 == Kind::Degraded));
        assert!(w.health(secs(90), "w1").is_none());
        assert!(w.health(None, "w1").is_none());
        assert!(w.health(secs(61), "w1").is_some());
    }

    #[test]
    fn no_migration_forgets_the_last() {
        let (mut w, t0) = (Watch::default(), Instant::now());
        let ready = seen(Phase::InProgress, "a", 3, 0, 0);
        assert_eq!(
            kinds(w.migration(&ready, t0, LIMITS)),
            [Kind::ReadyToComplete]
        );
        let idle = Seen {
            phase: Phase::Idle,
            migration: None,
        };
        assert!(w.migration(&idle, t0, LIMITS).is_empty());
        assert_eq!(
            kinds(w.migration(&ready, t0, LIMITS)),
            [Kind::ReadyToComplete]
        );
    }
}
