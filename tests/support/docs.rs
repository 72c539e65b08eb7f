//! Reading documents and indices back in tests: what an alias serves,
//! waiting for a version, a fresh projection, the test's own indices.

use super::{eventually, TestEnv};
use ferry::index::StoredDoc;
use ferry::ops::lifecycle::{self, Progress};
use ferry::stores::Projection;
use ferry::types::{DocId, IndexName};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

/// Deadline of every poll: generous, tests share two cores.
const WAIT: Duration = Duration::from_secs(60);

/// The document behind `alias` (None if absent or if the alias is missing).
pub async fn doc(env: &TestEnv, alias: &IndexName, id: &DocId) -> Option<StoredDoc> {
    match env.ctx.index.get(alias, id).await {
        Ok(d) => d,
        Err(e) if e.is_missing_index() => None,
        Err(e) => panic!("GET {alias}/{id}: {e}"),
    }
}

/// The stored `version` field of the document behind `alias`, if present.
pub async fn version_in(env: &TestEnv, alias: &IndexName, id: &DocId) -> Option<u64> {
    doc(env, alias, id).await.map(|d| d.version())
}

/// Waits until the document behind `alias` carries exactly `version`.
pub async fn wait_version(env: &TestEnv, alias: &IndexName, id: &DocId, version: u64) -> StoredDoc {
    eventually(
        WAIT,
        &format!("{id} at version {version} in {alias}"),
        || async { doc(env, alias, id).await.filter(|d| d.version() == version) },
    )
    .await
}

/// Waits until the document is absent from the index behind `alias`.
pub async fn wait_absent(env: &TestEnv, alias: &IndexName, id: &DocId) {
    eventually(WAIT, &format!("{id} gone from {alias}"), || async {
        doc(env, alias, id).await.is_none().then_some(())
    })
    .await
}

/// A fresh projection from the stores (panics on store or projection errors).
pub async fn projection(env: &TestEnv, id: &DocId) -> Projection {
    env.ctx
        .stores
        .project_one(id)
        .await
        .expect("stores reachable")
        .expect("document projects")
}

/// The JSON of a live projection.
pub fn json_of(p: &Projection) -> Value {
    match p {
        Projection::Document(d) => d.to_json(),
        Projection::Deleted { id, .. } => panic!("{id} is deleted in the stores"),
    }
}

/// A stored body without ferry's outcome records.
pub fn without_es_info(source: &Value) -> Value {
    let mut v = source.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("esInfo");
    }
    v
}

/// Starts a migration and returns its target index.
pub async fn start_migration(env: &TestEnv) -> IndexName {
    let changed = lifecycle::start(&env.ctx, &env.settings.mapping)
        .await
        .expect("start a migration");
    IndexName::parse(changed.index).expect("target name")
}

/// The migration counts from `current` to `target`, read directly.
pub async fn progress(env: &TestEnv, current: &IndexName, target: &IndexName) -> Progress {
    lifecycle::progress(&env.ctx, current, target)
        .await
        .expect("progress")
}

/// Names of the concrete indices whose names start with this env's stem.
pub async fn own_indices(env: &TestEnv) -> BTreeSet<String> {
    let all = env
        .ctx
        .index
        .call(reqwest::Method::GET, &format!("/{}*", env.name), None)
        .await
        .expect("list indices");
    all.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// The shipped mapping (`infra/mapping.json`) with `change` applied, in a
/// file of its own; returns its path.
pub fn mapping_with(tag: &str, change: impl FnOnce(&mut Value)) -> String {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/infra/mapping.json");
    let mut m: Value =
        serde_json::from_str(&std::fs::read_to_string(shipped).expect("mapping")).expect("JSON");
    change(&mut m);
    let path = format!(
        "{}/mapping-{tag}-{}.json",
        env!("CARGO_TARGET_TMPDIR"),
        std::process::id()
    );
    std::fs::write(&path, m.to_string()).expect("write the mapping");
    path
}
