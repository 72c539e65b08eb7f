//! What must hold: consistency at quiescence, alias invariants, no stray
//! index, and that a completed migration is reachable.

use super::edit::rollback_allowed;
use super::operator::gate;
use super::state::{Alias, Idx, State, DOCS, MAX_INDICES};
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
/// quiet: every index carrying Current, on either cluster; Historical while
/// a rollback is accepted; Migration once `complete`'s gate would let it
/// become Current.
pub fn must_match(m: &FerryModel, s: &State) -> Vec<Idx> {
    let a = &s.aliases;
    let mut r: Vec<Idx> = a.carriers(Alias::Current).collect();
    if s.completion.is_some() && rollback_allowed(&m.cfg, s.window) {
        r.extend(a.historical());
    }
    if let Some(mi) = a.migration().filter(|&mi| gate(s, mi)) {
        r.push(mi);
    }
    r
}

/// Property: at quiescence every index a reader may use matches the stores.
pub fn consistent(m: &FerryModel, s: &State) -> bool {
    !s.quiescent() || must_match(m, s).iter().all(|&i| matches_stores(m, s, i))
}

/// Property: the alias invariants (`index::aliases::AliasState::violations`):
/// exactly one Current, or two after a completion across clusters (the old
/// one also Historical, `AliasState::both_current`); at most one Migration
/// and one Historical; no index both Current and Migration, nor Current
/// and Historical except the old one of a hand-over; paused only on the
/// migration index; aliases only on existing indices. The hand-over states
/// (the old index Current and Historical, the new one Migration or Current)
/// pass; two Currents neither of which is Historical do not.
pub fn aliases_ok(_: &FerryModel, s: &State) -> bool {
    let a = &s.aliases;
    let count = |alias| a.carriers(alias).count();
    let old = a.handed_over().map(|(old, _)| old);
    let current_ok = |c: Idx| {
        !a.carries(c, Alias::Migration) && (!a.carries(c, Alias::Historical) || old == Some(c))
    };
    let currents_ok = match count(Alias::Current) {
        1 => true,
        2 => a.both_current().is_some(),
        _ => false,
    };
    (0..MAX_INDICES as Idx).all(|i| !a.any(i) || s.indices[i as usize].exists)
        && currents_ok
        && count(Alias::Migration) <= 1
        && count(Alias::Historical) <= 1
        && a.carriers(Alias::Current).all(current_ok)
        && a.carriers(Alias::Paused)
            .all(|p| a.carries(p, Alias::Migration))
}

/// Property: once quiet, no index exists that a write recreated.
pub fn no_stray(_: &FerryModel, s: &State) -> bool {
    !s.quiescent() || s.indices.iter().all(|i| !(i.exists && i.stray))
}

/// Example wanted: the script ran to its end (a completed migration) and
/// everything is consistent once quiet.
pub fn completed(m: &FerryModel, s: &State) -> bool {
    s.quiescent() && s.op as usize == m.cfg.script().len() && consistent(m, s)
}
