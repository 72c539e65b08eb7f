//! `ferry compare`: do searches still find the same things in the new
//! index? Each named search runs against Current and against the
//! migration index; the report gives both hit counts, the overlap of the
//! top K ids and a rank-aware measure (average overlap), worst first, and
//! flags the searches below a threshold. The latest report is kept in the
//! control table for the page and the admin API; `complete --compare`
//! refuses while a search is flagged.

use super::{healthy_state, OpsError};
use crate::context::Ctx;
use crate::index::IndexClient;
use crate::stores::control::now_ms;
use crate::types::IndexName;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

/// Top ids compared by default.
pub const DEFAULT_TOP: usize = 10;

/// The overlap below which a search is flagged, by default.
pub const DEFAULT_MIN_OVERLAP: f64 = 0.8;

/// One named search body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedQuery {
    /// The name the report uses.
    pub name: String,
    /// The search body (`size`, `from` and `_source` are set by compare).
    pub body: Value,
}

/// What to compare.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    /// The searches.
    pub queries: Vec<NamedQuery>,
    /// Top ids compared per search.
    pub top: usize,
    /// Searches whose top-K overlap is below this are flagged.
    pub min_overlap: f64,
}

/// Reads searches, one JSON object per line: `name` names it, every other
/// key is the search body (`{"name": "cats", "query": {"match": {...}}}`).
/// Blank lines and lines starting with `#` are skipped.
pub fn parse_queries(text: &str) -> Result<Vec<NamedQuery>, OpsError> {
    let mut out: Vec<NamedQuery> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: &str| OpsError::Invalid(format!("line {}: {why}", n + 1));
        let mut body: Map<String, Value> =
            serde_json::from_str(line).map_err(|e| bad(&format!("not a JSON object ({e})")))?;
        let name = match body.remove("name") {
            Some(Value::String(s)) if !s.trim().is_empty() => s,
            _ => return Err(bad("needs a \"name\" string")),
        };
        if out.iter().any(|q| q.name == name) {
            return Err(bad(&format!("the name {name:?} is used twice")));
        }
        out.push(NamedQuery {
            name,
            body: Value::Object(body),
        });
    }
    if out.is_empty() {
        return Err(OpsError::Invalid("no searches in the file".into()));
    }
    Ok(out)
}

impl Spec {
    /// Checks the bounds; the searches come from [`parse_queries`].
    pub fn new(queries: Vec<NamedQuery>, top: usize, min_overlap: f64) -> Result<Self, OpsError> {
        if top == 0 || top > 10_000 {
            return Err(OpsError::Invalid(
                "--top must be between 1 and 10000".into(),
            ));
        }
        if !(0.0..=1.0).contains(&min_overlap) {
            return Err(OpsError::Invalid(
                "--min-overlap must be between 0 and 1".into(),
            ));
        }
        Ok(Spec {
            queries,
            top,
            min_overlap,
        })
    }
}

/// One search on both indices.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QueryResult {
    /// The search's name.
    pub name: String,
    /// Hits in Current.
    pub current_hits: u64,
    /// Hits in the new index.
    pub new_hits: u64,
    /// Shared ids among the top K, over the longer top list (1 when both
    /// are empty).
    pub overlap: f64,
    /// Rank-aware: the mean over depths d = 1..K of the shared share of
    /// the top d.
    pub average_overlap: f64,
    /// Below the threshold, or failed on one side.
    pub flagged: bool,
    /// Why the search failed, if it did.
    pub error: Option<String>,
}

/// A comparison of Current with the new index.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Comparison {
    /// The Current index.
    pub current: String,
    /// The index compared with it.
    pub new: String,
    /// Top ids compared.
    pub top: usize,
    /// The threshold.
    pub min_overlap: f64,
    /// When it ran, milliseconds since the epoch.
    pub at_ms: u64,
    /// Flagged searches.
    pub flagged: usize,
    /// Every search, worst first.
    pub results: Vec<QueryResult>,
}

/// Compares Current with the running migration's index and keeps the
/// report as the latest.
pub async fn compare(ctx: &Ctx, spec: &Spec) -> Result<Comparison, OpsError> {
    let st = healthy_state(ctx).await?;
    let current = st
        .current_index()
        .ok_or_else(|| OpsError::Refused("no Current index".into()))?;
    let new = st.migration_index().ok_or_else(|| {
        OpsError::Refused(
            "no migration is in progress: compare needs a new index to compare Current with".into(),
        )
    })?;
    let sides = [
        (ctx.client_in(&st, &current), &current),
        (ctx.client_in(&st, &new), &new),
    ];
    for (on, index) in sides {
        on.refresh(index).await?;
    }
    let mut results = Vec::with_capacity(spec.queries.len());
    for q in &spec.queries {
        let a = top_ids(sides[0].0, sides[0].1, q, spec.top).await;
        let b = top_ids(sides[1].0, sides[1].1, q, spec.top).await;
        results.push(judge(&q.name, a, b, spec.min_overlap));
    }
    results.sort_by(|a, b| {
        b.flagged
            .cmp(&a.flagged)
            .then(a.overlap.total_cmp(&b.overlap))
            .then(a.average_overlap.total_cmp(&b.average_overlap))
            .then(a.name.cmp(&b.name))
    });
    let report = Comparison {
        current: current.to_string(),
        new: new.to_string(),
        top: spec.top,
        min_overlap: spec.min_overlap,
        at_ms: now_ms(),
        flagged: results.iter().filter(|r| r.flagged).count(),
        results,
    };
    match serde_json::to_string(&report) {
        Ok(text) => ctx.control.set_comparison(&text).await?,
        Err(e) => tracing::warn!(error = %e, "could not keep the comparison"),
    }
    Ok(report)
}

/// The latest comparison any replica or the CLI ran, if any.
pub async fn latest(ctx: &Ctx) -> Result<Option<Comparison>, OpsError> {
    let Some(text) = ctx.control.comparison().await? else {
        return Ok(None);
    };
    match serde_json::from_str(&text) {
        Ok(c) => Ok(Some(c)),
        Err(e) => {
            tracing::warn!(error = %e, "the kept comparison is unreadable; ignoring it");
            Ok(None)
        }
    }
}

/// Hit count and top ids of one search, or why it failed.
type Side = Result<(u64, Vec<String>), String>;

async fn top_ids(on: &IndexClient, index: &IndexName, q: &NamedQuery, top: usize) -> Side {
    let mut body = q.body.clone();
    if let Some(b) = body.as_object_mut() {
        b.insert("size".into(), json!(top));
        b.insert("from".into(), json!(0));
        b.insert("_source".into(), json!(false));
        b.insert("track_total_hits".into(), json!(true));
    }
    let reply = on.search(index, body).await.map_err(|e| e.cause())?;
    let hits = reply
        .pointer("/hits/total/value")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let ids = reply
        .pointer("/hits/hits")
        .and_then(Value::as_array)
        .map(|h| {
            h.iter()
                .filter_map(|h| h.get("_id")?.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Ok((hits, ids))
}

fn judge(name: &str, a: Side, b: Side, min_overlap: f64) -> QueryResult {
    let (current_hits, new_hits, overlap, average_overlap, error) = match (a, b) {
        (Ok((ha, a)), Ok((hb, b))) => (ha, hb, overlap(&a, &b), average_overlap(&a, &b), None),
        (Err(e), _) => (0, 0, 0.0, 0.0, Some(format!("in Current: {e}"))),
        (_, Err(e)) => (0, 0, 0.0, 0.0, Some(format!("in the new index: {e}"))),
    };
    QueryResult {
        name: name.to_string(),
        current_hits,
        new_hits,
        overlap,
        average_overlap,
        flagged: error.is_some() || overlap < min_overlap,
        error,
    }
}

/// Shared ids over the longer list; 1 when both are empty.
pub fn overlap(a: &[String], b: &[String]) -> f64 {
    let longer = a.len().max(b.len());
    if longer == 0 {
        return 1.0;
    }
    let a: BTreeSet<&String> = a.iter().collect();
    b.iter().filter(|id| a.contains(id)).count() as f64 / longer as f64
}

/// The mean over depths d of the shared share of the top d (average
/// overlap: differences near the top weigh more); 1 when both are empty.
pub fn average_overlap(a: &[String], b: &[String]) -> f64 {
    let depth = a.len().max(b.len());
    if depth == 0 {
        return 1.0;
    }
    let (mut seen_a, mut seen_b) = (BTreeSet::new(), BTreeSet::new());
    let mut shared = 0usize;
    let mut sum = 0.0;
    for d in 0..depth {
        // Ids are unique within a list: each shared id is counted once,
        // at the depth where its second occurrence appears.
        if let Some(x) = a.get(d) {
            if seen_b.contains(x) {
                shared += 1;
            }
            seen_a.insert(x);
        }
        if let Some(y) = b.get(d) {
            if seen_a.contains(y) {
                shared += 1;
            }
            seen_b.insert(y);
        }
        sum += shared as f64 / (d + 1) as f64;
    }
    sum / depth as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn identical_lists_overlap_fully() {
        let a = ids("a b c d");
        assert_eq!(overlap(&a, &a), 1.0);
        assert_eq!(average_overlap(&a, &a), 1.0);
        assert_eq!(overlap(&[], &[]), 1.0);
    }

    #[test]
    fn the_rank_aware_measure_sees_order() {
        let (a, b) = (ids("a b c d"), ids("d c b a"));
        assert_eq!(overlap(&a, &b), 1.0);
        // depths: 0/1, 0/2, 2/3, 4/4
        let expected = (0.0 + 0.0 + 2.0 / 3.0 + 1.0) / 4.0;
        assert!((average_overlap(&a, &b) - expected).abs() < 1e-9);
        assert_eq!(overlap(&a, &ids("a x")), 0.25);
        assert_eq!(overlap(&a, &[]), 0.0);
    }

    #[test]
    fn queries_need_a_unique_name_and_a_json_object() {
        let q = parse_queries(
            "# cats\n{\"name\": \"cats\", \"query\": {\"match\": {\"t\": \"cat\"}}}\n\n",
        )
        .unwrap();
        assert_eq!(q[0].name, "cats");
        assert_eq!(q[0].body, json!({"query": {"match": {"t": "cat"}}}));
        for bad in [
            "{\"query\": {}}",
            "not json",
            "{\"name\": \"a\"}\n{\"name\": \"a\"}",
            "",
        ] {
            assert!(
                matches!(parse_queries(bad), Err(OpsError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_failed_search_is_flagged() {
        let r = judge("x", Ok((3, ids("a b c"))), Err("boom".into()), 0.5);
        assert!(r.flagged);
        assert_eq!(r.error.as_deref(), Some("in the new index: boom"));
        let r = judge("y", Ok((3, ids("a b"))), Ok((3, ids("a c"))), 0.5);
        assert!(!r.flagged);
        assert_eq!(r.overlap, 0.5);
    }
}
