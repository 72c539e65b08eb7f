//! Rule breaking on purpose, for the test that proves the consistency
//! checker can fail. Compiled in only with the `fault-injection` feature;
//! in every other build `active` is a constant `false`.

/// True when the named fault is listed in `FERRY_FAULT` (comma-separated)
/// and the build has the `fault-injection` feature.
#[cfg(feature = "fault-injection")]
pub fn active(name: &str) -> bool {
    std::env::var("FERRY_FAULT").is_ok_and(|v| v.split(',').any(|f| f.trim() == name))
}

/// Always false: this build cannot break rules.
#[cfg(not(feature = "fault-injection"))]
pub fn active(_name: &str) -> bool {
    false
}
