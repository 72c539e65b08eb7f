//! The new index's bulk-load profile: bulk loading wants no refresh every
//! second and no replicas to copy every write to, readers want both. `start`
//! may create the index with a profile (the mapping file's top-level
//! `backfill` object, or flags) and records the mapping's final values in
//! the index's own `_meta`, so that whichever replica or CLI completes
//! finds them; `complete` restores them and waits for green health before
//! the alias switch, and refuses if it cannot.

use super::OpsError;
use crate::index::client::segment;
use crate::index::IndexClient;
use crate::types::IndexName;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::time::Duration;

/// One health request waits at most this long on the server, well within
/// a request's timeout; `restore` asks again until its own limit.
const HEALTH_POLL: Duration = Duration::from_secs(5);

/// Index settings for the backfill, or their final values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// `index.refresh_interval` (`-1`: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_interval: Option<String>,
    /// `index.number_of_replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number_of_replicas: Option<u64>,
}

impl Profile {
    /// The settings this profile overrides, with their values.
    fn overrides(&self) -> Vec<(&'static str, Value)> {
        let mut out = Vec::new();
        if let Some(r) = &self.refresh_interval {
            out.push(("refresh_interval", json!(r)));
        }
        if let Some(n) = self.number_of_replicas {
            out.push(("number_of_replicas", json!(n)));
        }
        out
    }
}

/// Takes the mapping file's `backfill` object (the engine would refuse
/// it), lets `flags` override it, records the final values in
/// `mappings._meta.ferry.final` and puts the profile into the settings.
/// Returns the profile in force, if any.
pub fn apply(mapping: &mut Value, flags: &Profile) -> Result<Option<Profile>, OpsError> {
    let invalid = |why: String| OpsError::Invalid(why);
    let Some(root) = mapping.as_object_mut() else {
        return Err(invalid("the mapping file must hold a JSON object".into()));
    };
    let from_file: Profile = match root.remove("backfill") {
        None => Profile::default(),
        Some(v) => serde_json::from_value(v).map_err(|e| {
            invalid(format!(
                "the mapping file's \"backfill\" must be {{\"refresh_interval\": \"-1\", \"number_of_replicas\": 0}}: {e}"
            ))
        })?,
    };
    let profile = Profile {
        refresh_interval: flags
            .refresh_interval
            .clone()
            .or(from_file.refresh_interval),
        number_of_replicas: flags.number_of_replicas.or(from_file.number_of_replicas),
    };
    let overrides = profile.overrides();
    if overrides.is_empty() {
        return Ok(None);
    }
    let settings = root.entry("settings").or_insert_with(|| json!({}));
    let Some(settings) = settings.as_object_mut() else {
        return Err(invalid(
            "the mapping file's \"settings\" must be an object".into(),
        ));
    };
    // The final value of each overridden setting: the mapping's, or null
    // (the engine's default) when it gives none.
    let mut final_values = Map::new();
    for (key, _) in &overrides {
        final_values.insert(key.to_string(), take(settings, key).unwrap_or(Value::Null));
    }
    let index = settings.entry("index").or_insert_with(|| json!({}));
    let Some(index) = index.as_object_mut() else {
        return Err(invalid(
            "the mapping file's \"settings.index\" must be an object".into(),
        ));
    };
    for (key, value) in overrides {
        index.insert(key.into(), value);
    }
    let mappings = root.entry("mappings").or_insert_with(|| json!({}));
    let Some(mappings) = mappings.as_object_mut() else {
        return Err(invalid(
            "the mapping file's \"mappings\" must be an object".into(),
        ));
    };
    let meta = mappings.entry("_meta").or_insert_with(|| json!({}));
    if let Some(meta) = meta.as_object_mut() {
        meta.insert("ferry".into(), json!({ "final": final_values }));
    }
    Ok(Some(profile))
}

/// Removes a setting given as `index.<key>`, `{"index": {<key>}}` or
/// `<key>`, returning its value.
fn take(settings: &mut Map<String, Value>, key: &str) -> Option<Value> {
    let nested = settings
        .get_mut("index")
        .and_then(Value::as_object_mut)
        .and_then(|i| i.remove(key));
    let dotted = settings.remove(&format!("index.{key}"));
    let plain = settings.remove(key);
    nested.or(dotted).or(plain)
}

/// Restores the final values `start` recorded on `index`, makes what was
/// written visible, and waits for green health; `None` when `index` was
/// created without a profile. Refused when the engine does not reach
/// green within `wait`.
pub async fn restore(
    on: &IndexClient,
    index: &IndexName,
    wait: Duration,
) -> Result<Option<Value>, OpsError> {
    let path = segment(index.as_str());
    let mapping = on
        .call(Method::GET, &format!("/{path}/_mapping"), None)
        .await?;
    let Some(recorded) =
        mapping.pointer(&format!("/{}/mappings/_meta/ferry/final", index.as_str()))
    else {
        return Ok(None);
    };
    let final_values = recorded.clone();
    on.call(
        Method::PUT,
        &format!("/{path}/_settings"),
        Some(crate::index::client::Body::Json(
            json!({ "index": final_values }),
        )),
    )
    .await?;
    on.refresh(index).await?;
    let until = std::time::Instant::now() + wait;
    let status = loop {
        let health = on
            .send(
                Method::GET,
                &format!(
                    "/_cluster/health/{path}?wait_for_status=green&timeout={}s",
                    HEALTH_POLL.as_secs()
                ),
                None,
            )
            .await?;
        let status = health
            .body
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_string();
        if status == "green" || std::time::Instant::now() >= until {
            break status;
        }
    };
    if status != "green" {
        return Err(OpsError::Refused(format!(
            "{index} restored its final settings ({final_values}) but its health is {status} after {} (replicas not allocated?); add nodes or lower number_of_replicas, then complete again",
            humantime::format_duration(wait)
        )));
    }
    Ok(Some(final_values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_goes_into_the_settings_and_the_final_values_into_meta() {
        let mut m = json!({
            "settings": {"index": {"number_of_shards": 1, "number_of_replicas": 2}, "index.refresh_interval": "5s"},
            "mappings": {"properties": {}},
            "backfill": {"refresh_interval": "-1", "number_of_replicas": 0}
        });
        let p = apply(&mut m, &Profile::default()).unwrap().unwrap();
        assert_eq!(p.refresh_interval.as_deref(), Some("-1"));
        assert!(m.get("backfill").is_none());
        assert_eq!(
            m["settings"],
            json!({"index": {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "-1"}})
        );
        assert_eq!(
            m["mappings"]["_meta"]["ferry"]["final"],
            json!({"refresh_interval": "5s", "number_of_replicas": 2})
        );
    }

    #[test]
    fn flags_win_and_no_profile_changes_nothing() {
        let mut m = json!({"settings": {}, "backfill": {"number_of_replicas": 0}});
        let flags = Profile {
            refresh_interval: Some("30s".into()),
            number_of_replicas: Some(1),
        };
        let p = apply(&mut m, &flags).unwrap().unwrap();
        assert_eq!(p, flags);
        // No final value given: the engine's default comes back (null).
        assert_eq!(
            m["mappings"]["_meta"]["ferry"]["final"],
            json!({"refresh_interval": null, "number_of_replicas": null})
        );
        // Only what the profile overrides is recorded and replaced.
        let mut m = json!({"settings": {"index": {"number_of_replicas": 2}}, "backfill": {"refresh_interval": "-1"}});
        apply(&mut m, &Profile::default()).unwrap();
        assert_eq!(
            m["settings"]["index"],
            json!({"number_of_replicas": 2, "refresh_interval": "-1"})
        );
        assert_eq!(
            m["mappings"]["_meta"]["ferry"]["final"],
            json!({"refresh_interval": null})
        );
        let mut plain = json!({"settings": {"index": {"number_of_replicas": 0}}});
        let before = plain.clone();
        assert_eq!(apply(&mut plain, &Profile::default()).unwrap(), None);
        assert_eq!(plain, before);
        let mut bad = json!({"backfill": {"number_of_replicas": "many"}});
        assert!(matches!(
            apply(&mut bad, &Profile::default()),
            Err(OpsError::Invalid(_))
        ));
    }
}
