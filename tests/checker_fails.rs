//! The checker can fail: with the `fault-injection` feature, workers break
//! a consistency rule on purpose (`FERRY_FAULT`) and the harness must
//! report the damage with the seed and the bad documents' history.
//!
//! - `skip-dual-write` (with `skip-fresh-check`, else the edit path's
//!   fresh check retries forever): edits made during the migration never
//!   reach the new index.
//! - `skip-fresh-check`: an edit trusts the alias view it started with and
//!   never reads the aliases again after its writes, so an edit that
//!   straddles an alias change (here: a rollback while edits flow, with a
//!   worker whose state cache lives for seconds) misses an index a reader
//!   may be switched to.
//!
//! `infra/test.sh` runs this with `--features fault-injection`; without
//! the feature the file holds no test.
#![cfg(feature = "fault-injection")]

mod harness;
mod support;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn skipping_dual_writes_is_caught() {
    let mut plan = harness::Plan::ci(4242);
    // With the post-write fresh check on, an edit that skipped the
    // migration index sees it uncovered and never finishes (a stall, not
    // damage): switch that check off too, so the edits complete without
    // reaching the new index.
    plan.fault = Some("skip-dual-write,skip-fresh-check".into());
    // A restarted migration re-copies everything; keep the window between
    // the copy and the switch, where the broken rule does its damage.
    plan.allow_abandon = false;
    plan.kind = Some(harness::Kind::Plain);
    let out = harness::run(plan).await;
    assert!(
        !out.problems.is_empty(),
        "the checker missed a broken rule\n{}",
        out.report
    );
    // Edits the new index missed: stale documents, or deleted ones left in
    // it (the migration path's read-back repairs some of the stale ones).
    assert!(
        out.problems
            .iter()
            .any(|p| p.contains("but the stores are at") || p.contains("but present in")),
        "expected stale or deleted documents, got: {:?}",
        out.problems
    );
    assert!(out.report.contains("seed 4242"), "{}", out.report);
    assert!(
        out.report.contains(" edit -> v") || out.report.contains(" upload -> v"),
        "no history in the report:\n{}",
        out.report
    );
}

/// Rollback seeds with a stale-cache worker, until one shows the damage
/// (each usually does; a seed whose straddling edits all happen to be
/// overwritten by later ones shows none).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn skipping_the_fresh_check_is_caught() {
    let mut reports = Vec::new();
    for seed in [4243, 4244, 4245] {
        let mut plan = harness::Plan::ci(seed);
        plan.fault = Some("skip-fresh-check".into());
        plan.kind = Some(harness::Kind::Rollback);
        plan.stale_worker = Some(true);
        let out = harness::run(plan).await;
        assert_eq!(out.rollbacks, 1, "no rollback ran\n{}", out.report);
        if !out.problems.is_empty() {
            assert!(
                out.report.contains(&format!("seed {seed}")),
                "{}",
                out.report
            );
            eprintln!("seed {seed} caught the broken rule:\n{}", out.report);
            return;
        }
        reports.push(out.report);
    }
    panic!(
        "the checker missed a broken rule in three seeds\n{}",
        reports.join("\n")
    );
}
