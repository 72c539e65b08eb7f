//! When to check: the queues drained means no ferry queue (uploads, edits,
//! migration) holds a ready or an unacknowledged message, for [`HOLD`] on
//! end. The check then runs twice, [`SETTLE`] apart, each time after the
//! queues held drained; both must pass. Work still in flight makes a pass
//! fail; passes are retried until the deadline.

use super::{check, Run};
use crate::support::rabbit;
use std::time::{Duration, Instant};

/// How long the queues must stay empty before a check.
pub const HOLD: Duration = Duration::from_secs(3);
/// Pause between the two checks.
pub const SETTLE: Duration = Duration::from_secs(2);

/// What is left on `queues` (empty when nothing is ready or unacked).
async fn busy(queues: &[&str]) -> String {
    match rabbit::counts_of(queues).await {
        Ok(counts) => counts
            .into_iter()
            .filter(|(_, c)| !c.is_empty())
            .map(|(q, c)| format!("{q}: {} ready, {} unacked", c.ready, c.unacked))
            .collect::<Vec<_>>()
            .join("; "),
        Err(e) => format!("cannot read queue counts: {e}"),
    }
}

/// Waits until the ferry queues hold no ready and no unacknowledged message
/// for `HOLD`; `Err` says what was left when the deadline came. The full
/// counts (rabbitmqctl, most of a second each) are read when the hold
/// begins and when it ends; in between, the ready counts (a passive
/// declare) every 100 ms: a message is ready before it can be unacked.
pub async fn drained(run: &Run, deadline: Instant) -> Result<(), String> {
    let n = &run.broker.names;
    let queues = [n.uploads.as_str(), n.edits.as_str(), n.migration.as_str()];
    let began = Instant::now();
    'hold: loop {
        let left = busy(&queues).await;
        if !left.is_empty() {
            if Instant::now() > deadline {
                return Err(format!("queues not drained: {left}"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let since = Instant::now();
        while since.elapsed() < HOLD {
            tokio::time::sleep(Duration::from_millis(100)).await;
            for q in queues {
                if run.broker.depth(q).await.unwrap_or(1) > 0 {
                    continue 'hold;
                }
            }
        }
        let left = busy(&queues).await;
        if left.is_empty() {
            run.event(format!(
                "queues drained, held {HOLD:?} (after {:.1}s)",
                began.elapsed().as_secs_f64()
            ));
            return Ok(());
        }
    }
}

/// One pass: drained, then the checker.
async fn pass(run: &Run, deadline: Instant) -> Vec<String> {
    match drained(run, deadline).await {
        Ok(()) => check::check(run).await,
        Err(e) => vec![e],
    }
}

/// Checks twice after the queues drained, `SETTLE` apart; retries while
/// work may still be in flight. Returns the last problems found.
pub async fn settle_and_check(run: &Run) -> Vec<String> {
    let limit = if run.plan.fault.is_some() { 30 } else { 60 };
    let deadline = Instant::now() + Duration::from_secs(limit);
    let mut round = 0;
    let mut found = 0;
    loop {
        round += 1;
        let mut problems = pass(run, deadline).await;
        if problems.is_empty() {
            tokio::time::sleep(SETTLE).await;
            problems = pass(run, deadline).await;
            if problems.is_empty() {
                run.event(format!("check passed twice (round {round})"));
                return problems;
            }
        }
        // Problems found after the queues held drained are not work in
        // flight: look twice more (an index refresh may lag), then report.
        let drained_then_failed = !problems.iter().any(|p| p.starts_with("queues not drained"));
        if drained_then_failed {
            found += 1;
        }
        if Instant::now() > deadline || found >= 3 {
            run.event(format!("check failed (round {round})"));
            return problems;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
