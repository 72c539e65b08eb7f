//! `ferry bench` end to end at a tiny size, through the binary (the bench
//! starts `ferry worker` processes from its own executable): every
//! measurement must be present with positive numbers. No speed is asserted;
//! the real numbers are in README's Benchmark section.

mod support;

use serde_json::Value;
use support::TestEnv;

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
    let (code, out, err) = env
        .cli(&[
            "bench",
            "--count",
            "300",
            "--sizes",
            "150,300",
            "--serial-docs",
            "100",
            "--edits",
            "15",
            "--edit-rate",
            "10",
            "--json",
        ])
        .await;
    assert_eq!(
        code, 0,
        "ferry bench failed\nstdout:\n{out}\nstderr:\n{err}"
    );
    let report: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}\nstderr:\n{err}"));

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

    // The main run and the 150-document run, each with its memory.
    let runs = report["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2, "{report:#}");
    let sizes: Vec<u64> = runs
        .iter()
        .map(|r| r["throughput"]["docs"].as_u64().expect("docs"))
        .collect();
    assert_eq!(sizes, [300, 150]);
    for r in runs {
        assert!(
            r["peak_rss_mb"][0].as_f64().is_some_and(|v| v > 0.0),
            "{r:#}"
        );
    }

    // Every ratio and target is measured.
    let targets = report["targets"].as_array().expect("targets");
    assert_eq!(targets.len(), 6);
    for t in targets {
        assert!(
            t["value"].as_f64().is_some_and(|v| v > 0.0),
            "target not measured: {t:#}"
        );
        assert!(t["met"].is_boolean(), "{t:#}");
    }
    positive(&report, "/migration/cpu/machine_busy_cores");
}
