//! What must hold: consistency at quiescence, alias invariants, no stray
//! index, and that a completed migration is reachable.

use super::edit::rollback_allowed;
use super::operator::gate;
use super::state::{Idx, State, DOCS};
use super::system::FerryModel;

/// `idx` holds exactly the live documents of the stores, at their versions.
pub fn matches_stores(m: &FerryModel, s: &State, idx: Idx) -> bool {
    (0..DOCS as u8).all(|d| {
        let st = s.store[d as usize];
        if m.cfg.unrepresentable(idx, d, st.version, st.live) {
            return true;
        }
        let got = s.get(idx, d).map(|(e, _)| e.content);
        got == st.live.then_some(st.version)
    })
}

/// The indices a reader may use now and that must equal the stores once
/// quiet: Current; Historical while a rollback is accepted; Migration once
/// `complete`'s gate would let it become Current.
pub fn must_match(m: &FerryModel, s: &State) -> Vec<Idx> {
    let a = &s.aliases;
    let mut r = vec![a.current];
    if s.completion.is_some() && rollback_allowed(&m.cfg, s.window) {
        r.extend(a.historical);
    }
    if let Some(mi) = a.migration.filter(|&mi| gate(s, mi)) {
        r.push(mi);
    }
    r
}

/// Property: at quiescence every index a reader may use matches the stores.
pub fn consistent(m: &FerryModel, s: &State) -> bool {
    !s.quiescent() || must_match(m, s).iter().all(|&i| matches_stores(m, s, i))
}

/// Property: the alias invariants (`index::aliases::AliasState::violations`).
pub fn aliases_ok(_: &FerryModel, s: &State) -> bool {
    let a = &s.aliases;
    let on_existing = [Some(a.current), a.migration, a.historical, a.paused]
        .iter()
        .flatten()
        .all(|&i| s.indices[i as usize].exists);
    on_existing
        && a.migration != Some(a.current)
        && a.historical != Some(a.current)
        && a.paused.is_none_or(|p| a.migration == Some(p))
}

/// Property: once quiet, no index exists that a write recreated.
pub fn no_stray(_: &FerryModel, s: &State) -> bool {
    !s.quiescent() || s.indices.iter().all(|i| !(i.exists && i.stray))
}

/// Example wanted: the script ran to its end (a completed migration) and
/// everything is consistent once quiet.
pub fn completed(m: &FerryModel, s: &State) -> bool {
    s.op as usize == m.cfg.scenario.script().len() && s.quiescent() && consistent(m, s)
}
