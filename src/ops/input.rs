//! Operator input, shaped once for the CLI, the admin API and the page:
//! document ids (typed or from a file), which failures to retry, how much
//! to verify, and what `complete` checks. Each front end only collects the
//! raw values; the defaults and the error messages live here.

use super::failures::Selection;
use super::lifecycle::Gate;
use super::verify::Scope;
use super::OpsError;
use crate::types::DocId;
use serde_json::{json, Value};

/// Documents `verify` compares when no sample size is given.
pub const VERIFY_SAMPLE: usize = 200;
/// Documents `complete` verifies before it switches, unless told otherwise.
pub const GATE_SAMPLE: usize = 100;

/// Parses document ids; an invalid one is an error that names it.
pub fn ids<S: AsRef<str>>(raw: &[S]) -> Result<Vec<DocId>, OpsError> {
    raw.iter()
        .map(|r| {
            let r = r.as_ref();
            DocId::parse(r).map_err(|e| OpsError::Invalid(format!("document id {r:?}: {e}")))
        })
        .collect()
}

/// Reads ids, one per line; blank lines are skipped, an invalid id is an
/// error naming its line.
pub fn ids_from_lines(text: &str) -> Result<Vec<DocId>, OpsError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            DocId::parse(l.trim_end_matches('\r'))
                .map_err(|e| OpsError::Invalid(format!("line {}: {e}", n + 1)))
        })
        .collect()
}

/// The failures to retry: all of them, every one with `message`, or the
/// named ids (exactly one of the three).
pub fn selection<S: AsRef<str>>(
    all: bool,
    message: Option<String>,
    raw_ids: &[S],
) -> Result<Selection, OpsError> {
    match (all, message) {
        (true, None) if raw_ids.is_empty() => Ok(Selection::All),
        (false, Some(m)) if raw_ids.is_empty() => Ok(Selection::Message(m)),
        (false, None) if !raw_ids.is_empty() => Ok(Selection::Ids(ids(raw_ids)?)),
        (false, None) => Err(OpsError::Invalid(
            "name document ids, a failure message, or all failures".into(),
        )),
        _ => Err(OpsError::Invalid(
            "name only one of: document ids, a failure message, all failures".into(),
        )),
    }
}

/// The search query selecting documents to queue: `query` as JSON, or an
/// `uploadTime` range from `since` (inclusive) until `until` (exclusive),
/// each a date (`2024-05-01`) or an RFC 3339 time; exactly one of the two.
pub fn selector(
    query: Option<&str>,
    since: Option<&str>,
    until: Option<&str>,
) -> Result<Value, OpsError> {
    let time = |flag: &str, raw: &str| -> Result<String, OpsError> {
        let ok = chrono::DateTime::parse_from_rfc3339(raw).is_ok()
            || chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d").is_ok();
        ok.then(|| raw.to_string()).ok_or_else(|| {
            OpsError::Invalid(format!(
                "{flag} {raw:?} is neither a date (2024-05-01) nor an RFC 3339 time"
            ))
        })
    };
    match (query, since.is_some() || until.is_some()) {
        (Some(_), true) => Err(OpsError::Invalid(
            "give either a query or --since/--until, not both".into(),
        )),
        (Some(q), false) => match serde_json::from_str::<Value>(q) {
            Ok(v) if v.is_object() => Ok(v),
            Ok(_) => Err(OpsError::Invalid("the query must be a JSON object".into())),
            Err(e) => Err(OpsError::Invalid(format!("the query is not JSON: {e}"))),
        },
        (None, true) => {
            let mut range = serde_json::Map::new();
            if let Some(s) = since {
                range.insert("gte".into(), json!(time("--since", s)?));
            }
            if let Some(u) = until {
                range.insert("lt".into(), json!(time("--until", u)?));
            }
            Ok(json!({ "range": { "uploadTime": range } }))
        }
        (None, false) => Err(OpsError::Invalid(
            "give a query (JSON) or --since/--until".into(),
        )),
    }
}

/// How much `verify` compares: everything, or a sample (default
/// [`VERIFY_SAMPLE`]).
pub fn scope(all: bool, sample: Option<usize>) -> Scope {
    if all {
        Scope::All
    } else {
        Scope::Sample(sample.unwrap_or(VERIFY_SAMPLE))
    }
}

/// What `complete` checks: everything (with a verify of `verify_sample`
/// documents, default [`GATE_SAMPLE`]), or nothing when forced by `by`.
pub fn gate(force: bool, by: Option<String>, verify_sample: Option<usize>) -> Gate {
    if force {
        Gate::forced(by.unwrap_or_else(|| "someone who did not say who".into()))
    } else {
        Gate::checked(verify_sample.unwrap_or(GATE_SAMPLE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_name_the_bad_one() {
        let e = ids(&["a", ""]).unwrap_err().to_string();
        assert!(e.contains("\"\""), "{e}");
        assert_eq!(ids(&["a", "b/c"]).unwrap().len(), 2);
    }

    #[test]
    fn lines_skip_blanks_and_name_the_bad_line() {
        assert_eq!(ids_from_lines("a\r\n\n b \n").unwrap().len(), 2);
        let e = ids_from_lines("a\n\u{0}\n").unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn a_selection_needs_exactly_one_of_ids_or_message() {
        let none: [&str; 0] = [];
        assert!(selection(false, None, &none).is_err());
        assert!(selection(false, Some("m".into()), &["a"]).is_err());
        assert!(selection(true, None, &["a"]).is_err());
        assert!(selection(true, Some("m".into()), &none).is_err());
        assert!(matches!(
            selection(false, Some("m".into()), &none),
            Ok(Selection::Message(m)) if m == "m"
        ));
        assert!(matches!(selection(false, None, &["a"]), Ok(Selection::Ids(v)) if v.len() == 1));
        assert!(matches!(selection(true, None, &none), Ok(Selection::All)));
    }

    #[test]
    fn a_selector_is_a_query_or_an_upload_time_range() {
        assert_eq!(
            selector(Some(r#"{"term": {"a": 1}}"#), None, None).unwrap(),
            json!({"term": {"a": 1}})
        );
        assert_eq!(
            selector(None, Some("2024-05-01"), Some("2024-06-01T00:00:00Z")).unwrap(),
            json!({"range": {"uploadTime": {"gte": "2024-05-01", "lt": "2024-06-01T00:00:00Z"}}})
        );
        for (q, s, u) in [
            (None, None, None),
            (Some("[1]"), None, None),
            (Some("{"), None, None),
            (Some("{}"), Some("2024-05-01"), None),
            (None, Some("yesterday"), None),
        ] {
            assert!(
                matches!(selector(q, s, u), Err(OpsError::Invalid(_))),
                "{q:?} {s:?}"
            );
        }
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        assert!(matches!(scope(false, None), Scope::Sample(VERIFY_SAMPLE)));
        assert!(matches!(scope(true, Some(3)), Scope::All));
        assert!(matches!(
            gate(false, None, None),
            Gate::Checked {
                verify_sample: GATE_SAMPLE,
                compare: None
            }
        ));
        assert!(
            matches!(gate(true, Some("ann".into()), None), Gate::Forced { by, .. } if by == "ann")
        );
    }
}
