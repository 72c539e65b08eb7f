//! Edit latency: a steady stream of edits, each written to DynamoDB the way
//! a pipeline does (read-modify-write, bumped version) and then published;
//! the clock starts at the publish and stops when every watched index
//! (through its alias) serves the document at the new version. Visibility
//! is polled every few milliseconds (one `_mget` per alias for all edits
//! in flight).

use crate::context::Ctx;
use crate::index::Cluster;
use crate::ops::OpsError;
use crate::queue::{Broker, DocKind, DocMessage};
use crate::stores::StoreError;
use crate::types::{DocId, IndexName, Version};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Pause between two visibility checks.
const POLL: Duration = Duration::from_millis(5);
/// The longest pause between two checks. Pausing four times as long as a
/// check took keeps the poller's share of a slow server small; without a
/// bound, a check that waited out a 6 s stall would be followed by 24 s of
/// not looking, and every edit made visible meanwhile would be recorded up
/// to 24 s late (earlier README numbers had p99s of 25-35 s from this).
const POLL_MAX: Duration = Duration::from_millis(100);
/// An edit not visible after this long is no longer waited for: it counts
/// as late if it is visible when the stream ends, else as lost.
const GIVE_UP: Duration = Duration::from_secs(30);
/// The stream waits while this many edits are not visible yet, so that a
/// worker that cannot keep up makes latencies grow, not the poll load.
const MAX_PENDING: usize = 100;

/// Publish-to-visible latency of one stream of edits.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latency {
    /// Edits published.
    pub edits: usize,
    /// Edits that became visible in time.
    pub visible: usize,
    /// Of the others, those visible when the stream ended: slow, not lost.
    pub late: usize,
    /// Median, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
    /// Slowest, milliseconds.
    pub max_ms: f64,
    /// Each visible edit as `[seconds from the stream's origin at publish,
    /// milliseconds to visible]`, in the order they became visible.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<[f64; 2]>,
}

impl Latency {
    /// Summarizes the observed latencies of `edits` published edits.
    pub fn of(edits: usize, mut seen: Vec<Duration>) -> Self {
        seen.sort();
        let ms = |d: Option<&Duration>| d.map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0);
        Self {
            edits,
            visible: seen.len(),
            late: 0,
            p50_ms: ms(rank(&seen, 0.50)),
            p99_ms: ms(rank(&seen, 0.99)),
            max_ms: ms(seen.last()),
            timeline: Vec::new(),
        }
    }
}

/// Nearest-rank percentile of sorted values.
fn rank<T>(sorted: &[T], q: f64) -> Option<&T> {
    if sorted.is_empty() {
        return None;
    }
    let k = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted.get(k - 1)
}

/// One stream: which documents to edit, which aliases must show each edit,
/// how fast, and when to stop.
pub struct Stream<'a> {
    /// Documents to edit, in turn (never the same one twice in a row).
    pub ids: &'a [DocId],
    /// Aliases that must serve the new version, each on its cluster
    /// (Current; during a migration also Migration).
    pub watch: Vec<(Cluster, IndexName)>,
    /// Edits per second.
    pub rate: f64,
    /// Stop after this many edits.
    pub max: Option<usize>,
    /// Or when this is set.
    pub stop: &'a AtomicBool,
    /// Where the timeline's clock starts.
    pub origin: Instant,
}

/// An edit published and not yet seen everywhere.
struct Pending {
    id: DocId,
    version: u64,
    started: Instant,
    /// Which watched aliases already serve the new version.
    seen: Vec<bool>,
}

impl Pending {
    /// Every watched alias serves the new version.
    fn visible(&self) -> bool {
        self.seen.iter().all(|s| *s)
    }
}

/// Runs a stream and waits until every edit is visible (or given up).
///
/// One poller checks every pending edit with one `_mget` per alias every
/// [`POLL`], so the load it adds to the index server does not grow with
/// the number of edits in flight.
pub async fn run(ctx: &Ctx, broker: &Broker, stream: Stream<'_>) -> Result<Latency, OpsError> {
    if stream.ids.is_empty() {
        return Ok(Latency::default());
    }
    let pending: Mutex<Vec<Pending>> = Mutex::new(Vec::new());
    let given_up: Mutex<Vec<Pending>> = Mutex::new(Vec::new());
    // Each visible edit: when it was published, how long it took.
    let seen: Mutex<Vec<(Instant, Duration)>> = Mutex::new(Vec::new());
    let publishing = AtomicBool::new(true);
    let publish = async {
        let r = publish(ctx, broker, &stream, &pending).await;
        publishing.store(false, Ordering::Relaxed);
        r
    };
    let poll = async {
        while publishing.load(Ordering::Relaxed) || !lock(&pending).is_empty() {
            let clock = Instant::now();
            mark_seen(ctx, &stream.watch, &pending).await;
            settle(&pending, &seen, &given_up);
            // Every POLL, but polling at most a fifth of the time while
            // checks are quick, and never pausing longer than POLL_MAX: one
            // check at a time is all the load the poller adds.
            tokio::time::sleep((clock.elapsed() * 4).clamp(POLL, POLL_MAX)).await;
        }
    };
    let (published, ()) = tokio::join!(publish, poll);
    // One last look at the edits given up on, to tell slow from lost.
    mark_seen(ctx, &stream.watch, &given_up).await;
    let late = lock(&given_up).iter().filter(|p| p.visible()).count();
    let seen = std::mem::take(&mut *lock(&seen));
    let timeline = seen
        .iter()
        .map(|(at, took)| {
            let at = at.saturating_duration_since(stream.origin).as_secs_f64();
            [at, took.as_secs_f64() * 1000.0]
        })
        .collect();
    let latencies = seen.into_iter().map(|(_, took)| took).collect();
    Ok(Latency {
        late,
        timeline,
        ..Latency::of(published?, latencies)
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn publish(
    ctx: &Ctx,
    broker: &Broker,
    stream: &Stream<'_>,
    pending: &Mutex<Vec<Pending>>,
) -> Result<usize, OpsError> {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / stream.rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut published, mut attempt) = (0usize, 0usize);
    while !stream.stop.load(Ordering::Relaxed) && stream.max.is_none_or(|m| published < m) {
        tick.tick().await;
        if lock(pending).len() >= MAX_PENDING {
            continue;
        }
        let id = &stream.ids[attempt % stream.ids.len()];
        attempt += 1;
        let Some(version) = edit(ctx, id, attempt).await? else {
            continue; // deleted or contended meanwhile: pick the next one
        };
        let started = Instant::now();
        let msg = DocMessage {
            kind: DocKind::Edit,
            id: id.clone(),
            version: Some(version),
        };
        broker.publish_event("edit", &msg.to_body()).await?;
        published += 1;
        lock(pending).push(Pending {
            id: id.clone(),
            version: version.get(),
            started,
            seen: vec![false; stream.watch.len()],
        });
    }
    Ok(published)
}

/// Checks once which watched aliases serve each pending edit.
async fn mark_seen(ctx: &Ctx, watch: &[(Cluster, IndexName)], pending: &Mutex<Vec<Pending>>) {
    for (k, (cluster, alias)) in watch.iter().enumerate() {
        let ids: Vec<DocId> = lock(pending)
            .iter()
            .filter(|p| !p.seen[k])
            .map(|p| p.id.clone())
            .collect();
        if ids.is_empty() {
            continue;
        }
        // A failed read (e.g. under load) is just another miss.
        let Ok(docs) = ctx.on(*cluster).mget(alias, &ids).await else {
            continue;
        };
        let versions: HashMap<DocId, u64> = docs
            .into_iter()
            .map(|d| (d.id.clone(), d.version()))
            .collect();
        for p in lock(pending).iter_mut() {
            if versions.get(&p.id).is_some_and(|v| *v >= p.version) {
                p.seen[k] = true;
            }
        }
    }
}

/// Moves the edits visible everywhere out of `pending` with their latency,
/// and the ones waited on for too long into `given_up`.
fn settle(
    pending: &Mutex<Vec<Pending>>,
    seen: &Mutex<Vec<(Instant, Duration)>>,
    given_up: &Mutex<Vec<Pending>>,
) {
    let now = Instant::now();
    let mut waiting = lock(pending);
    for p in std::mem::take(&mut *waiting) {
        if p.visible() {
            lock(seen).push((p.started, now.duration_since(p.started)));
        } else if now.duration_since(p.started) >= GIVE_UP {
            lock(given_up).push(p);
        } else {
            waiting.push(p);
        }
    }
}

/// The pipeline's half of an edit: read-modify-write of the edits item
/// with a conditional put; returns the new version (`None` if the item is
/// gone or changed under us).
async fn edit(ctx: &Ctx, id: &DocId, n: usize) -> Result<Option<Version>, OpsError> {
    let item = match ctx.stores.edits.get(id).await {
        Ok(item) if !item.deleted => item,
        Ok(_) | Err(StoreError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut attrs = item.attrs.as_object().cloned().unwrap_or_default();
    attrs.insert(
        "metadata".into(),
        json!({ "title": format!("bench edit {n}") }),
    );
    attrs.insert(
        "lastModified".into(),
        json!(chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()),
    );
    match ctx
        .stores
        .edits
        .put_versioned(id, Some(item.version), &attrs)
        .await
    {
        Ok(v) => Ok(Some(v)),
        Err(StoreError::VersionConflict { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settling_keeps_the_young_and_gives_up_on_the_old() {
        let pending = |age: Duration, seen: bool| Pending {
            id: DocId::parse("a").unwrap(),
            version: 2,
            started: Instant::now() - age,
            seen: vec![seen, true],
        };
        let waiting = Mutex::new(vec![
            pending(Duration::from_millis(5), true),
            pending(Duration::from_millis(5), false),
            pending(GIVE_UP + Duration::from_secs(1), false),
        ]);
        let (seen, given_up) = (Mutex::new(Vec::new()), Mutex::new(Vec::new()));
        settle(&waiting, &seen, &given_up);
        assert_eq!(lock(&seen).len(), 1);
        assert_eq!(lock(&waiting).len(), 1);
        assert!(!lock(&waiting)[0].seen[0]);
        assert_eq!(lock(&given_up).len(), 1);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let l = Latency::of(101, v);
        assert_eq!((l.edits, l.visible), (101, 100));
        assert_eq!((l.p50_ms, l.p99_ms, l.max_ms), (50.0, 99.0, 100.0));
        let one = Latency::of(1, vec![Duration::from_millis(7)]);
        assert_eq!((one.p50_ms, one.p99_ms), (7.0, 7.0));
        assert_eq!(Latency::of(0, vec![]).p99_ms, 0.0);
    }
}
