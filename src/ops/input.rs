//! Operator input, shaped once for the CLI, the admin API and the page:
//! document ids (typed or from a file), which failures to retry, how much
//! to verify, and what `complete` checks. Each front end only collects the
//! raw values; the defaults and the error messages live here.

use super::failures::Selection;
use super::lifecycle::Gate;
use super::verify::Scope;
use super::OpsError;
use crate::types::DocId;

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

/// The failures to retry: every one with `message`, or the named ids.
pub fn selection<S: AsRef<str>>(
    message: Option<String>,
    raw_ids: &[S],
) -> Result<Selection, OpsError> {
    match message {
        Some(m) if raw_ids.is_empty() => Ok(Selection::Message(m)),
        Some(_) => Err(OpsError::Invalid(
            "name either document ids or a message, not both".into(),
        )),
        None if raw_ids.is_empty() => Err(OpsError::Invalid(
            "name document ids, or a failure message".into(),
        )),
        None => Ok(Selection::Ids(ids(raw_ids)?)),
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
        Gate::Forced {
            by: by.unwrap_or_else(|| "someone who did not say who".into()),
        }
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
        assert!(selection(None, &none).is_err());
        assert!(selection(Some("m".into()), &["a"]).is_err());
        assert!(
            matches!(selection(Some("m".into()), &none), Ok(Selection::Message(m)) if m == "m")
        );
        assert!(matches!(selection(None, &["a"]), Ok(Selection::Ids(v)) if v.len() == 1));
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        assert!(matches!(scope(false, None), Scope::Sample(VERIFY_SAMPLE)));
        assert!(matches!(scope(true, Some(3)), Scope::All));
        assert!(matches!(
            gate(false, None, None),
            Gate::Checked {
                verify_sample: GATE_SAMPLE
            }
        ));
        assert!(matches!(gate(true, Some("ann".into()), None), Gate::Forced { by } if by == "ann"));
    }
}
