//! Zero inconsistency, proven the way databases are tested: many random,
//! reproducible interleavings against real workers, then a checker.
//! CI runs 20 seeds × 500 operations (each with at least one SIGKILL);
//! `infra/soak.sh` runs as many more as asked. A failing seed prints
//! itself and the history of every bad document; replay it with
//! `FERRY_SEED=<n> cargo test --test consistency`.

mod harness;
mod support;

async fn seeds(base: u64) {
    for seed in harness::seeds(base, 5) {
        let out = harness::run(harness::Plan::ci(seed)).await;
        assert!(
            out.ops >= 500,
            "seed {seed}: only {} operations ran",
            out.ops
        );
        assert!(out.kills >= 1, "seed {seed}: no worker was killed");
        assert!(
            out.problems.is_empty(),
            "inconsistency found\n{}",
            out.report
        );
        eprintln!(
            "seed {seed}: consistent after {} operations and {} kill(s)",
            out.ops, out.kills
        );
    }
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

/// The soak: `FERRY_SOAK_MINUTES` of seeds from `FERRY_SOAK_FROM` (see
/// `infra/soak.sh`). Ignored by default.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore]
async fn soak() {
    let minutes: u64 = support::env_or("FERRY_SOAK_MINUTES", 10);
    let mut seed: u64 = support::env_or("FERRY_SOAK_FROM", 1000);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(minutes * 60);
    let mut passed = 0;
    while std::time::Instant::now() < until {
        let out = harness::run(harness::Plan::ci(seed)).await;
        assert!(
            out.problems.is_empty(),
            "inconsistency found after {passed} good seeds\n{}",
            out.report
        );
        passed += 1;
        seed += 1;
    }
    eprintln!("soak: {passed} seeds consistent");
}
