//! Migration state lives in aliases: reading it, checking its invariants,
//! and changing it with one atomic `_aliases` request.

use super::client::{Body, IndexClient, IndexError};
use super::cluster::Cluster;
use crate::config::Settings;
use crate::types::IndexName;
use reqwest::Method;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// The configured alias names.
#[derive(Debug, Clone, Serialize)]
pub struct Aliases {
    /// What readers use; the migration source.
    pub current: IndexName,
    /// The migration target, while a migration runs.
    pub migration: IndexName,
    /// The index that was Current before the last completion.
    pub historical: IndexName,
    /// On the migration index: the scanner queues nothing.
    pub paused: IndexName,
    /// On the migration index: readers may preview it.
    pub preview: IndexName,
}

impl Aliases {
    /// The marker alias `start` puts on the source's Current index when the
    /// migration goes to another cluster, so that a worker configured
    /// without that cluster sees it in the same read and refuses edits
    /// rather than skip the migration index it cannot see.
    pub fn elsewhere(&self) -> IndexName {
        self.migration.with_suffix("_ELSEWHERE")
    }

    /// The names from the settings.
    pub fn from_settings(s: &Settings) -> Self {
        Self {
            current: s.current_alias.clone(),
            migration: s.migration_alias.clone(),
            historical: s.historical_alias.clone(),
            paused: s.paused_alias.clone(),
            preview: s.preview_alias.clone(),
        }
    }
}

/// Which concrete indices carry each alias, as read from the server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AliasState {
    /// Indices with the Current alias (exactly one when healthy).
    pub current: Vec<IndexName>,
    /// Indices with the Migration alias (at most one).
    pub migration: Vec<IndexName>,
    /// Indices with the Historical alias (at most one).
    pub historical: Vec<IndexName>,
    /// Indices with the pause alias.
    pub paused: Vec<IndexName>,
    /// Indices with the preview alias.
    pub preview: Vec<IndexName>,
    /// Indices with the marker alias that says a migration goes to another
    /// cluster (see [`Aliases::elsewhere`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub elsewhere: Vec<IndexName>,
    /// The indices above that live on the target cluster (none on one
    /// cluster).
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub on_target: BTreeSet<IndexName>,
    /// Index names that carry aliases on both clusters (a violation).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub on_both: Vec<IndexName>,
}

/// A flag an operator sets on the migration index by putting an alias on
/// it: paused (the scanner queues nothing) or preview (readers may look).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// The scanner queues nothing.
    Paused,
    /// Readers of the preview alias see the migration index.
    Preview,
}

impl Flag {
    /// The alias that carries this flag.
    pub fn alias(self, names: &Aliases) -> &IndexName {
        match self {
            Flag::Paused => &names.paused,
            Flag::Preview => &names.preview,
        }
    }

    /// The indices that carry this flag now.
    pub fn carriers(self, st: &AliasState) -> &[IndexName] {
        match self {
            Flag::Paused => &st.paused,
            Flag::Preview => &st.preview,
        }
    }

    /// How an operator says it: "paused", "in preview".
    pub fn describe(self) -> &'static str {
        match self {
            Flag::Paused => "paused",
            Flag::Preview => "in preview",
        }
    }
}

/// The migration phase an operator sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// No migration.
    Idle,
    /// A migration runs.
    InProgress,
    /// A migration exists but the scanner queues nothing.
    Paused,
    /// The aliases break an invariant; nothing is changed automatically.
    Broken,
}

impl AliasState {
    /// The view over two clusters: each alias's indices on either, and
    /// which of them live on the target.
    pub fn merge(source: AliasState, target: AliasState) -> AliasState {
        let join = |mut a: Vec<IndexName>, b: Vec<IndexName>| {
            a.extend(b);
            a.sort();
            a
        };
        let on_target: BTreeSet<IndexName> = target.all().cloned().collect();
        let on_both = source
            .all()
            .filter(|i| on_target.contains(*i))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        AliasState {
            current: join(source.current, target.current),
            migration: join(source.migration, target.migration),
            historical: join(source.historical, target.historical),
            paused: join(source.paused, target.paused),
            preview: join(source.preview, target.preview),
            elsewhere: join(source.elsewhere, target.elsewhere),
            on_target,
            on_both,
        }
    }

    fn all(&self) -> impl Iterator<Item = &IndexName> {
        [
            &self.current,
            &self.migration,
            &self.historical,
            &self.paused,
            &self.preview,
        ]
        .into_iter()
        .flatten()
    }

    /// The cluster `index` lives on.
    pub fn cluster_of(&self, index: &IndexName) -> Cluster {
        if self.on_target.contains(index) {
            Cluster::Target
        } else {
            Cluster::Source
        }
    }

    /// During and after a completion across clusters (and during a
    /// rollback of one), the old index keeps Current on its cluster and
    /// carries Historical, while the new one, on the other cluster, carries
    /// Migration or Current: (old, new).
    fn handed_over(&self) -> Option<(&IndexName, &IndexName)> {
        let old = self.current.iter().find(|c| self.historical.contains(c))?;
        let new = self
            .current
            .iter()
            .chain(&self.migration)
            .find(|i| self.cluster_of(i) != self.cluster_of(old))?;
        Some((old, new))
    }

    /// Two Currents on two clusters, neither carrying Historical: no moment
    /// has this state (completion gives the old index Historical before the
    /// new one gets Current; rollback takes Current off the new one before
    /// Historical off the old one), so it is two alias reads that straddled
    /// an alias change, and which Current is primary cannot be told.
    pub fn torn(&self) -> bool {
        matches!(&self.current[..], [a, b]
            if self.cluster_of(a) != self.cluster_of(b) && self.handed_over().is_none())
    }

    /// After a completion across clusters: (old, new), both Current.
    pub fn both_current(&self) -> Option<(&IndexName, &IndexName)> {
        self.handed_over()
            .filter(|(_, new)| self.current.contains(new) && self.current.len() == 2)
    }

    /// The one index behind the Current alias, if the state is healthy:
    /// the primary one, which the scanner reads and which carries the
    /// outcome records. After a completion across clusters, the new one.
    pub fn current_index(&self) -> Option<IndexName> {
        match self.both_current() {
            Some((_, new)) => Some(new.clone()),
            None => one(&self.current),
        }
    }

    /// The cluster of the primary Current (the source when there is none).
    pub fn current_cluster(&self) -> Cluster {
        self.current_index()
            .map_or(Cluster::Source, |c| self.cluster_of(&c))
    }

    /// Every index behind a Current alias, the primary one first: more
    /// than one only after a completion across clusters.
    pub fn current_indices(&self) -> Vec<IndexName> {
        match self.both_current() {
            Some((old, new)) => vec![new.clone(), old.clone()],
            None => self.current.clone(),
        }
    }

    /// The migration target, if a migration is in progress.
    pub fn migration_index(&self) -> Option<IndexName> {
        one(&self.migration)
    }

    /// The index behind the Historical alias.
    pub fn historical_index(&self) -> Option<IndexName> {
        one(&self.historical)
    }

    /// True when `flag` is set on the migration index.
    pub fn has(&self, flag: Flag) -> bool {
        matches!(&self.migration[..], [m] if flag.carriers(self).contains(m))
    }

    /// True when the pause alias is on the migration index.
    pub fn is_paused(&self) -> bool {
        self.has(Flag::Paused)
    }

    /// True when the preview alias is on the migration index.
    pub fn is_preview(&self) -> bool {
        self.has(Flag::Preview)
    }

    /// Every broken invariant, spelled out for an operator.
    pub fn violations(&self, names: &Aliases) -> Vec<String> {
        let mut v = Vec::new();
        let handed_over = self.handed_over();
        match self.current.len() {
            1 => {}
            2 if self.both_current().is_some() => {}
            0 => v.push(format!(
                "no index carries the {} alias; exactly one must",
                names.current
            )),
            _ => v.push(format!(
                "{} indices carry the {} alias ({}); exactly one must",
                self.current.len(),
                names.current,
                IndexName::list(&self.current)
            )),
        }
        for (list, alias) in [
            (&self.migration, &names.migration),
            (&self.historical, &names.historical),
        ] {
            if list.len() > 1 {
                v.push(format!(
                    "{} indices carry the {alias} alias ({}); at most one may",
                    list.len(),
                    IndexName::list(list)
                ));
            }
        }
        for i in &self.current {
            if self.migration.contains(i) {
                v.push(format!(
                    "index {i} carries both {} and {}",
                    names.current, names.migration
                ));
            }
            if self.historical.contains(i) && handed_over.is_none_or(|(old, _)| old != i) {
                v.push(format!(
                    "index {i} carries both {} and {}",
                    names.current, names.historical
                ));
            }
        }
        for i in &self.on_both {
            v.push(format!(
                "index {i} carries ferry's aliases on both clusters; rename or remove one"
            ));
        }
        for flag in [Flag::Paused, Flag::Preview] {
            let alias = flag.alias(names);
            for i in flag.carriers(self) {
                if !self.migration.contains(i) {
                    v.push(format!(
                        "{alias} is on {i}, which is not the migration index"
                    ));
                }
            }
        }
        v
    }

    /// The phase, `Broken` when any invariant fails.
    pub fn phase(&self, names: &Aliases) -> Phase {
        if !self.violations(names).is_empty() {
            Phase::Broken
        } else if self.migration.is_empty() {
            Phase::Idle
        } else if self.is_paused() {
            Phase::Paused
        } else {
            Phase::InProgress
        }
    }
}

fn one(list: &[IndexName]) -> Option<IndexName> {
    match list {
        [only] => Some(only.clone()),
        _ => None,
    }
}

/// One change in an `_aliases` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AliasAction {
    /// Put `alias` on `index`.
    Add { index: IndexName, alias: IndexName },
    /// Take `alias` off `index`.
    Remove { index: IndexName, alias: IndexName },
}

impl AliasAction {
    /// The index the action changes.
    pub fn index(&self) -> &IndexName {
        match self {
            AliasAction::Add { index, .. } | AliasAction::Remove { index, .. } => index,
        }
    }

    fn to_json(&self) -> Value {
        match self {
            AliasAction::Add { index, alias } => {
                json!({ "add": { "index": index, "alias": alias } })
            }
            AliasAction::Remove { index, alias } => {
                json!({ "remove": { "index": index, "alias": alias } })
            }
        }
    }
}

impl IndexClient {
    /// Reads which indices carry the configured aliases.
    pub async fn alias_state(&self, names: &Aliases) -> Result<AliasState, IndexError> {
        let all = self.call(Method::GET, "/_alias", None).await?;
        let map = all.as_object().ok_or_else(|| IndexError::Decode {
            op: "GET _alias".into(),
            detail: "not an object".into(),
        })?;
        let mut by_alias: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (index, entry) in map {
            if let Some(aliases) = entry.get("aliases").and_then(Value::as_object) {
                for alias in aliases.keys() {
                    by_alias.entry(alias.as_str()).or_default().push(index);
                }
            }
        }
        let mut take = |a: &IndexName| -> Result<Vec<IndexName>, IndexError> {
            let mut v = by_alias
                .remove(a.as_str())
                .unwrap_or_default()
                .into_iter()
                .map(|i| {
                    IndexName::parse(i).map_err(|e| IndexError::Decode {
                        op: "GET _alias".into(),
                        detail: format!("index behind {a}: {e}"),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            v.sort();
            Ok(v)
        };
        Ok(AliasState {
            current: take(&names.current)?,
            migration: take(&names.migration)?,
            historical: take(&names.historical)?,
            paused: take(&names.paused)?,
            preview: take(&names.preview)?,
            elsewhere: take(&names.elsewhere())?,
            ..Default::default()
        })
    }

    /// Applies all actions in one atomic `_aliases` request.
    pub async fn update_aliases(&self, actions: &[AliasAction]) -> Result<(), IndexError> {
        let body =
            json!({ "actions": actions.iter().map(AliasAction::to_json).collect::<Vec<_>>() });
        self.call(Method::POST, "/_aliases", Some(Body::Json(body)))
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Aliases {
        let n = |s: &str| IndexName::parse(s).unwrap();
        Aliases {
            current: n("Images_Current"),
            migration: n("Images_Migration"),
            historical: n("Images_Historical"),
            paused: n("MIGRATION_PAUSED"),
            preview: n("MIGRATION_COMPLETION_PREVIEW"),
        }
    }

    fn s(v: &[&str]) -> Vec<IndexName> {
        v.iter().map(|x| IndexName::parse(*x).unwrap()).collect()
    }

    #[test]
    fn phases_follow_the_aliases() {
        let mut st = AliasState {
            current: s(&["a"]),
            ..Default::default()
        };
        assert_eq!(st.phase(&names()), Phase::Idle);
        st.migration = s(&["b"]);
        assert_eq!(st.phase(&names()), Phase::InProgress);
        st.paused = s(&["b"]);
        assert_eq!(st.phase(&names()), Phase::Paused);
    }

    #[test]
    fn two_clusters_merge_into_one_view_through_a_completion_and_back() {
        let src = |current: &[&str], historical: &[&str]| AliasState {
            current: s(current),
            historical: s(historical),
            elsewhere: s(&["old"]),
            ..Default::default()
        };
        let tgt = |current: &[&str], migration: &[&str]| AliasState {
            current: s(current),
            migration: s(migration),
            ..Default::default()
        };
        // Migrating: Current on the source, Migration on the target.
        let st = AliasState::merge(src(&["old"], &[]), tgt(&[], &["new"]));
        assert_eq!(st.cluster_of(&s(&["new"])[0]), Cluster::Target);
        assert_eq!(st.cluster_of(&s(&["old"])[0]), Cluster::Source);
        assert_eq!(st.current_index(), Some(s(&["old"])[0].clone()));
        assert_eq!(st.phase(&names()), Phase::InProgress);
        // Completion, step one (source): old is also Historical; still
        // the only Current, and not a broken state.
        let st = AliasState::merge(src(&["old"], &["old"]), tgt(&[], &["new"]));
        assert!(st.violations(&names()).is_empty(), "{st:?}");
        assert_eq!(st.current_indices(), s(&["old"]));
        // Step two (target): both Current, the new one first.
        let st = AliasState::merge(src(&["old"], &["old"]), tgt(&["new"], &[]));
        assert!(st.violations(&names()).is_empty(), "{st:?}");
        assert_eq!(st.current_index(), Some(s(&["new"])[0].clone()));
        assert_eq!(st.current_indices(), s(&["new", "old"]));
        assert_eq!(st.phase(&names()), Phase::Idle);
        assert!(!st.torn());
        // The source read before the completion's first step, the target
        // after its second (or, for a rollback, the other way round): two
        // Currents, neither Historical. No moment had it: a torn read.
        let st = AliasState::merge(src(&["old"], &[]), tgt(&["new"], &[]));
        assert!(st.torn(), "{st:?}");
        for real in [
            AliasState::merge(src(&["old"], &[]), tgt(&[], &["new"])),
            AliasState::merge(src(&["old"], &["old"]), tgt(&[], &["new"])),
        ] {
            assert!(!real.torn(), "{real:?}");
        }
        // Two Currents on one cluster stay broken, and so does a name on both.
        let one = AliasState {
            current: s(&["a", "b"]),
            historical: s(&["a"]),
            ..Default::default()
        };
        assert!(!one.violations(&names()).is_empty());
        assert_eq!(one.current_index(), None);
        assert!(!one.torn(), "one cluster: broken, not torn");
        let both = AliasState::merge(src(&["old"], &[]), tgt(&[], &["old"]));
        assert!(both
            .violations(&names())
            .iter()
            .any(|v| v.contains("both clusters")));
    }

    #[test]
    fn every_invariant_violation_is_named() {
        let st = AliasState {
            current: s(&["a"]),
            migration: s(&["a"]),
            historical: s(&["a", "c"]),
            paused: s(&["z"]),
            ..Default::default()
        };
        let v = st.violations(&names());
        assert_eq!(v.len(), 4, "{v:?}");
        assert_eq!(st.phase(&names()), Phase::Broken);
        let none = AliasState::default().violations(&names());
        assert!(none[0].contains("no index carries the Images_Current alias"));
    }
}
