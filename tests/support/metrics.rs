//! A worker's Prometheus metrics (`/metrics`), parsed with the
//! `prometheus-parse` crate rather than by hand.

pub use prometheus_parse::Scrape;
use prometheus_parse::Value;

/// Parses a Prometheus text exposition.
pub fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("not a Prometheus text exposition ({e}):\n{text}"))
}

/// The sum of the samples of counter or gauge `name` whose labels include
/// every one of `labels`; 0 when there is none.
pub fn sum(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            other => panic!("{name} is not a counter or a gauge: {other:?}"),
        })
        .sum()
}
