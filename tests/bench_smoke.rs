//! `ferry bench` end to end at a tiny size, through the binary (the bench
//! starts `ferry worker` processes from its own executable): every
//! measurement must be present with positive numbers, on one cluster and
//! across two (the stack's second index server as the target). No speed is
//! asserted; the real numbers are in docs/benchmark.md.

mod support;

use ferry::index::IndexClient;
use reqwest::Method;
use serde_json::Value;
use support::TestEnv;

/// The tiny size both tests run at.
const TINY: [&str; 8] = [
    "--count",
    "300",
    "--serial-docs",
    "100",
    "--edits",
    "15",
    "--edit-rate",
    "10",
];

/// Runs `ferry bench` at [`TINY`] size with `extra` options and `--json`:
/// the report and its text.
async fn bench(env: &TestEnv, extra: &[&str]) -> (Value, String) {
    let args = [&["bench"][..], &TINY, extra, &["--json"]].concat();
    let (code, out, err) = env.cli(&args).await;
    assert_eq!(
        code, 0,
        "ferry bench failed\nstdout:\n{out}\nstderr:\n{err}"
    );
    let report = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}\nstderr:\n{err}"));
    (report, out)
}

/// The indices of `on` whose names start with `prefix`.
async fn indices(on: &IndexClient, prefix: &str) -> Vec<Value> {
    let path = format!("/_cat/indices/{prefix}*?format=json");
    let listed = on
        .call(Method::GET, &path, None)
        .await
        .expect("list indices");
    listed.as_array().cloned().unwrap_or_default()
}

fn positive(report: &Value, path: &str) -> f64 {
    let v = report
        .pointer(path)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{path} missing in {report:#}"));
    assert!(v > 0.0, "{path} = {v}, expected > 0");
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_measures_everything_at_a_tiny_size() {
    let env = TestEnv::new("bn").await;
    let plot = std::env::temp_dir().join(format!("ferry-bench-{}.svg", std::process::id()));
    let plot_path = plot.to_str().expect("utf-8 temp dir");
    let (report, out) = bench(&env, &["--sizes", "150,300", "--plot", plot_path]).await;
    assert_eq!(report["r_kind"], "reindex");
    assert!(report["settings"]["target_index_url"].is_null());

    for m in ["reindex", "store_reads", "serial", "migration/throughput"] {
        positive(&report, &format!("/{m}/docs"));
        positive(&report, &format!("/{m}/seconds"));
        positive(&report, &format!("/{m}/docs_per_second"));
    }
    assert_eq!(report["reindex"]["docs"], 300);
    assert_eq!(report["store_reads"]["docs"], 300);
    assert_eq!(report["migration"]["throughput"]["docs"], 300);
    assert_eq!(report["serial"]["docs"], 100);
    assert_eq!(report["serial_subset"], true);
    assert_eq!(report["migration"]["workers"], 1);
    positive(&report, "/migration/peak_rss_mb/0");

    for l in ["latency_idle", "latency_during"] {
        let edits = positive(&report, &format!("/{l}/edits"));
        assert_eq!(
            report[l]["visible"].as_f64(),
            Some(edits),
            "{l}: every edit must become visible: {report:#}"
        );
        for p in ["p50_ms", "p99_ms", "max_ms"] {
            positive(&report, &format!("/{l}/{p}"));
        }
    }
    assert_eq!(report["latency_idle"]["edits"], 15);

    // W at ferry's batch size and at the best one.
    let w = report["write_ceiling"]["runs"].as_array().expect("W runs");
    let batches: Vec<u64> = w
        .iter()
        .map(|r| r["batch_size"].as_u64().expect("batch"))
        .collect();
    assert_eq!(batches, [100, 1000], "{report:#}");
    for (k, run) in w.iter().enumerate() {
        assert_eq!(run["throughput"]["docs"], 300);
        positive(
            &report,
            &format!("/write_ceiling/runs/{k}/throughput/docs_per_second"),
        );
    }

    // The main run (budget on: the test stack's is off, so the default),
    // the same with the budget off, without edits, and the 150-document
    // run, each with its memory.
    let runs = report["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 4, "{report:#}");
    let labels: Vec<&str> = runs
        .iter()
        .map(|r| r["label"].as_str().expect("label"))
        .collect();
    assert_eq!(
        labels,
        ["budget 500ms", "budget off", "no edits", "150 documents"]
    );
    let sizes: Vec<u64> = runs
        .iter()
        .map(|r| r["throughput"]["docs"].as_u64().expect("docs"))
        .collect();
    assert_eq!(sizes, [300, 300, 300, 150]);
    assert_eq!(report["migration"]["budget_ms"], 500);
    assert!(report["unbudgeted"]["budget_ms"].is_null(), "{report:#}");
    assert_eq!(report["no_edits"]["during"]["edits"], 0);
    assert_eq!(report["no_edits"]["edit_rate"], 0.0);
    positive(&report, "/unbudgeted/during/edits");
    // Every visible edit of the main run is on its timeline.
    assert_eq!(
        report["migration"]["timeline"]["edits"]
            .as_array()
            .map(Vec::len),
        report["latency_during"]["visible"]
            .as_u64()
            .map(|v| v as usize),
    );
    for r in runs {
        assert!(
            r["peak_rss_mb"][0].as_f64().is_some_and(|v| v > 0.0),
            "{r:#}"
        );
    }

    // Every ratio and target is measured.
    let targets = report["targets"].as_array().expect("targets");
    let names: Vec<&str> = targets
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    for name in [
        "edit_p99_during_budget_over_idle",
        "edit_p99_during_budget_ms",
        "m_budget_over_m_unbudgeted",
        "m_no_edits_over_write_ceiling",
        "m_no_edits_over_ceiling",
    ] {
        assert!(names.contains(&name), "{name} missing: {names:?}");
    }
    assert_eq!(targets.len(), 9);
    for t in targets {
        assert!(
            t["value"].as_f64().is_some_and(|v| v > 0.0),
            "target not measured: {t:#}"
        );
        assert!(t["met"].is_boolean(), "{t:#}");
    }
    positive(&report, "/migration/cpu/machine_busy_cores");

    let svg = std::fs::read_to_string(&plot).expect("the plot is written");
    std::fs::remove_file(&plot).ok();
    for text in ["edit latency", "migration rate", "budget off", "no edits"] {
        assert!(svg.contains(text), "{text} missing from the plot");
    }

    // A saved report prints and draws again without measuring anything.
    let saved = plot.with_extension("json");
    std::fs::write(&saved, &out).expect("save the report");
    let from = ["bench", "--from", saved.to_str().expect("utf-8"), "--plot"];
    let (code, again, err) = env
        .cli(&[&from[..], &[plot.to_str().expect("utf-8"), "--json"]].concat())
        .await;
    std::fs::remove_file(&saved).ok();
    assert_eq!(code, 0, "{err}");
    let again: Value = serde_json::from_str(&again).expect("JSON");
    assert_eq!(again, report, "the same report");
    assert!(std::fs::remove_file(&plot).is_ok(), "drawn again");
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_across_clusters_measures_the_target_and_cleans_both() {
    let env = TestEnv::across("bx").await;
    let second = env.ctx.target.clone().expect("a target cluster");
    let (report, out) = bench(&env, &[]).await;

    // The stack's second server may not reach the first by `_reindex`
    // (not in its `reindex.remote.allowlist`): R is the bulk copy across.
    assert_eq!(report["r_kind"], "bulk_across", "{report:#}");
    assert_eq!(report["reindex"]["docs"], 300);
    positive(&report, "/reindex/docs_per_second");
    let settings = &report["settings"];
    assert_eq!(settings["index_url"], env.ctx.index.public_base());
    assert_eq!(settings["target_index_url"], second.public_base());
    for run in report["write_ceiling"]["runs"].as_array().expect("W runs") {
        assert_eq!(run["throughput"]["docs"], 300, "{report:#}");
    }
    let runs = report["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 3, "{report:#}");
    for r in runs {
        assert_eq!(r["throughput"]["docs"], 300, "{r:#}");
    }
    assert_eq!(report["serial"]["docs"], 100);
    // Edits reached the Migration index on the target during M.
    let during = &report["latency_during"];
    assert_eq!(during["visible"], during["edits"], "{report:#}");
    positive(&report, "/latency_during/edits");

    // Nothing the bench created is left on either cluster.
    let run = report["run"].as_str().expect("run name");
    assert_eq!(indices(&env.ctx.index, run).await, Vec::<Value>::new());
    assert_eq!(indices(&second, run).await, Vec::<Value>::new());

    // The table names both clusters and which R it is; a report saved
    // before R had kinds loads as the server's own `_reindex`.
    let saved = std::env::temp_dir().join(format!("ferry-bench-x-{}.json", std::process::id()));
    std::fs::write(&saved, &out).expect("save the report");
    let path = saved.to_str().expect("utf-8");
    let (code, table, err) = env.cli(&["bench", "--from", path]).await;
    assert_eq!(code, 0, "{err}");
    assert!(table.contains("R  bare bulk across clusters"), "{table}");
    assert!(
        table.contains(&format!("target cluster: {}", second.public_base())),
        "{table}"
    );
    let mut old = report.clone();
    old.as_object_mut().expect("object").remove("r_kind");
    old["settings"]
        .as_object_mut()
        .expect("object")
        .remove("target_index_url");
    std::fs::write(&saved, old.to_string()).expect("save the old report");
    let (code, table, err) = env.cli(&["bench", "--from", path]).await;
    std::fs::remove_file(&saved).ok();
    assert_eq!(code, 0, "{err}");
    assert!(table.contains("R  server's own _reindex"), "{table}");
    assert!(!table.contains("target cluster"), "{table}");
}
