//! Zero inconsistency, proven the way databases are tested: many random,
//! reproducible interleavings against real workers, then a checker.
//!
//! CI runs seeds 1 to 30 (six tests of five), each at least 250 publisher
//! operations and at least one SIGKILL. The schedule kind comes from the
//! seed (see `tests/harness/mod.rs`):
//!
//! - `seed % 3 == 0`, **rollback**: complete, roll back while edits flow,
//!   resume, complete again (10 of the 30 CI seeds; asserted);
//! - `seed % 3 == 1`, **plain**: one migration, sometimes abandoned (index
//!   deleted) and started again;
//! - `seed % 3 == 2`, **second**: complete, then a second migration from
//!   the new Current, completed too;
//!
//! and per seed: a worker with a long state TTL, a SIGSTOP longer than the
//! lease and state TTLs, index/DynamoDB faults behind a proxy, documents
//! the new mapping rejects (fixed by the harness, then retried), stale
//! migration messages. The checker compares Current and Historical with
//! the stores after the queues drained (no ready, no unacked) twice.
//!
//! Seeds 31 to 35 (every kind; seed 34 found the torn alias reads of
//! `AliasState::torn`) run with every migration going to
//! another cluster (`Plan::across`): the checker then compares every
//! Current on either cluster, and a second migration first retires the
//! old cluster's index.
//!
//! `infra/soak.sh` runs as many more seeds as asked. A failing seed prints
//! itself, its schedule and the history of every bad document; replay it
//! with `FERRY_SEED=<n> cargo test --test consistency seeds_1_to_5`.

mod harness;
mod support;

use harness::Kind;

/// CI's seeds: 1 to 30.
const CI_SEEDS: std::ops::RangeInclusive<u64> = 1..=30;

async fn seeds(base: u64) {
    seeds_of(base, 5, harness::Plan::ci).await;
}

async fn seeds_of(base: u64, count: u64, plan_of: fn(u64) -> harness::Plan) {
    for seed in harness::seeds(base, count) {
        let plan = plan_of(seed);
        let started = std::time::Instant::now();
        let out = harness::run(plan.clone()).await;
        if std::env::var_os("FERRY_HARNESS_REPORT").is_some() {
            eprintln!("{}", out.report);
        }
        if !out.problems.is_empty() {
            // On stdout too: a runner that shows only the tail of stderr
            // (the backtrace) still shows which seed failed and why.
            println!(
                "seed {seed}: {} problem(s), the first: {}",
                out.problems.len(),
                out.problems[0]
            );
        }
        assert!(
            out.problems.is_empty(),
            "inconsistency found\n{}",
            out.report
        );
        println!(
            "seed {seed}: {:?}, {} ops, {} kill(s), {} completion(s), {} rollback(s)",
            out.kind, out.ops, out.kills, out.completions, out.rollbacks
        );
        assert!(
            out.ops >= plan.ops,
            "seed {seed}: only {} operations ran",
            out.ops
        );
        assert!(out.kills >= 1, "seed {seed}: no worker was killed");
        let wanted = match out.kind {
            Kind::Plain => 1,
            Kind::Rollback | Kind::Second => 2,
        };
        assert!(
            out.completions >= wanted,
            "seed {seed}: {} completions in a {:?} schedule\n{}",
            out.completions,
            out.kind,
            out.report
        );
        if out.kind == Kind::Rollback {
            assert_eq!(out.rollbacks, 1, "seed {seed}: no rollback\n{}", out.report);
        }
        eprintln!(
            "seed {seed}: consistent in {:.1}s: {:?}, {} ops, {} kill(s), {} stop(s), {} rollback(s), {} completion(s), {} start(s), {} abandon(s), {} fault(s), stale TTL {:?}, {} rejected / {} fixed, {} quiet completion(s)",
            started.elapsed().as_secs_f64(),
            out.kind,
            out.ops,
            out.kills,
            out.stops,
            out.rollbacks,
            out.completions,
            out.starts,
            out.abandons,
            out.faults,
            out.stale_ttl,
            out.rejected,
            out.fixed,
            out.quiet_completions,
        );
    }
}

#[test]
fn ci_seeds_hold_ten_rollbacks() {
    let rollbacks = CI_SEEDS
        .filter(|s| Kind::of_seed(*s) == Kind::Rollback)
        .count();
    assert!(rollbacks >= 10, "only {rollbacks} rollback seeds in CI");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seeds_1_to_5() {
    seeds(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seeds_6_to_10() {
    seeds(6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seeds_11_to_15() {
    seeds(11).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seeds_16_to_20() {
    seeds(16).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seeds_21_to_25() {
    seeds(21).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seeds_26_to_30() {
    seeds(26).await;
}

/// One seed of each kind (plain, second, rollback) with every migration
/// going to another cluster (the stack's second index server).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seeds_31_to_35_across_clusters() {
    seeds_of(31, 5, harness::Plan::across).await;
}

/// The soak: `FERRY_SOAK_MINUTES` of seeds from `FERRY_SOAK_FROM` (see
/// `infra/soak.sh`). Ignored by default.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore]
async fn soak() {
    let minutes: u64 = support::env_or("FERRY_SOAK_MINUTES", 10);
    let mut seed: u64 = support::env_or("FERRY_SOAK_FROM", 1000);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(minutes * 60);
    let (mut passed, mut rollbacks) = (0, 0);
    while std::time::Instant::now() < until {
        let out = harness::run(harness::Plan::ci(seed)).await;
        assert!(
            out.problems.is_empty(),
            "inconsistency found after {passed} good seeds\n{}",
            out.report
        );
        eprintln!(
            "seed {seed}: consistent ({:?}, {} ops, {} rollback(s), {} stop(s))",
            out.kind, out.ops, out.rollbacks, out.stops
        );
        passed += 1;
        rollbacks += out.rollbacks;
        seed += 1;
    }
    eprintln!("soak: {passed} seeds consistent ({rollbacks} rollbacks)");
}
