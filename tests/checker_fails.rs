//! The checker can fail: with the `fault-injection` feature, workers run
//! with dual writes switched off (`FERRY_FAULT=skip-dual-write`), so edits
//! made during the migration never reach the new index. The harness must
//! report the inconsistency with the seed and the bad documents' history.
//! `infra/test.sh` runs this with `--features fault-injection`; without
//! the feature the file holds no test.
#![cfg(feature = "fault-injection")]

mod harness;
mod support;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn skipping_dual_writes_is_caught() {
    let mut plan = harness::Plan::ci(4242);
    plan.fault = Some("skip-dual-write".into());
    // A restarted migration re-copies everything; keep the window between
    // the copy and the switch, where the broken rule does its damage.
    plan.allow_abandon = false;
    let out = harness::run(plan).await;
    assert!(
        !out.problems.is_empty(),
        "the checker missed a broken rule\n{}",
        out.report
    );
    assert!(
        out.problems
            .iter()
            .any(|p| p.contains("but the stores are at")),
        "expected stale documents, got: {:?}",
        out.problems
    );
    assert!(out.report.contains("seed 4242"), "{}", out.report);
    assert!(
        out.report.contains(" edit -> v") || out.report.contains(" upload -> v"),
        "no history in the report:\n{}",
        out.report
    );
}
