//! The edit path, `worker::edit_path::apply`, one index or store request per
//! step.

use super::engine::Ext;
use super::state::{
    Alias, Aliases, Cluster, EditPc, EditProc, Entry, Idx, Msg, Slot, State, View, Window,
};
use super::variants::{Config, Variant};

/// Bit of an index in a covered set.
fn bit(idx: Idx) -> u8 {
    1 << idx
}

/// Workers write Historical in this window state (`context::state::Snapshot::historical_writes`).
pub fn window_writes(cfg: &Config, w: Option<Window>) -> bool {
    match cfg.variant {
        Variant::NoMargin => w == Some(Window::Open),
        _ => matches!(w, Some(Window::Open | Window::Closing)),
    }
}

/// `rollback` accepts in this window state (`ops::lifecycle::rollback`).
pub fn rollback_allowed(cfg: &Config, w: Option<Window>) -> bool {
    match cfg.variant {
        Variant::NoMargin => matches!(w, Some(Window::Open | Window::Closing)),
        _ => w == Some(Window::Open),
    }
}

/// Whether a worker holding `view` writes the Historical index now.
pub fn historical_writes(cfg: &Config, s: &State, view: &View) -> bool {
    cfg.variant != Variant::SkipHistorical
        && view.aliases.historical().is_some()
        && view
            .completion
            .is_some_and(|c| c.n == s.completions && window_writes(cfg, s.window))
}

/// The Currents an edit following `view` writes: every one, the primary
/// first (`AliasState::current_indices`).
fn currents(cfg: &Config, view: &View) -> Vec<Idx> {
    let mut c = view.aliases.currents();
    if cfg.variant == Variant::PrimaryCurrentOnly {
        c.truncate(1);
    }
    c
}

/// Whether the round writes Historical after the Currents: within the
/// window, unless it is an old Current the round wrote as one.
fn writes_historical(cfg: &Config, s: &State, view: &View) -> bool {
    historical_writes(cfg, s, view)
        && view
            .aliases
            .historical()
            .is_some_and(|h| !currents(cfg, view).contains(&h))
}

/// The indices a reader may use per `view`, which an edit must cover
/// (`context::state::Snapshot::readable`).
fn required(cfg: &Config, s: &State, view: &View) -> Vec<Idx> {
    let mut r = currents(cfg, view);
    r.extend(view.aliases.migration());
    if historical_writes(cfg, s, view) {
        r.extend(view.aliases.historical());
    }
    r
}

/// A new apply of `doc` for `msg` (before projecting).
pub fn begin(msg: Msg, doc: u8, view: View) -> EditProc {
    EditProc {
        msg,
        doc,
        v: 0,
        live: false,
        view,
        covered: 0,
        mark: None,
        failed: None,
        wrote_current: false,
        pc: EditPc::Project,
    }
}

/// How many choices a step of `p` has (views to take, read errors, which
/// cluster's aliases a fresh read gets first).
pub fn choices(cfg: &Config, s: &State, p: &EditProc) -> u8 {
    let errors = cfg.variant == Variant::CompletionReadErrorClosesWindow;
    match p.pc {
        EditPc::Project => s.cached_views(cfg.across).len() as u8 * if errors { 2 } else { 1 },
        EditPc::FreshCheck if cfg.across && cfg.variant != Variant::FreshSourceOnly => 2,
        EditPc::FreshCheck | EditPc::FreshHalf(..) if errors => 2,
        _ => 1,
    }
}

/// The view for `choice`: a cached one of any age; with
/// `completion_read_error_closes_window`, its completion read may fail.
pub fn cached(cfg: &Config, s: &State, choice: u8) -> View {
    let views = s.cached_views(cfg.across);
    let n = views.len() as u8;
    let mut v = views[(choice % n) as usize];
    if choice >= n {
        v.completion = None;
    }
    v
}

/// First step of a round following `view`.
fn round(p: &mut EditProc) {
    p.wrote_current = false;
    p.pc = if p.view.aliases.migration().is_some() {
        EditPc::MigrationWrite
    } else {
        EditPc::CasGet(Slot::Current)
    };
}

/// After the round: the fresh alias read, or (variants) straight on.
fn end_of_round(cfg: &Config, p: &mut EditProc) -> bool {
    if cfg.variant == Variant::NoFreshCheck || !cfg.fresh_check {
        return recheck_or_ack(cfg, p);
    }
    p.pc = EditPc::FreshCheck;
    true
}

/// The stores re-read, or the ack (false) where a variant skips it.
fn recheck_or_ack(cfg: &Config, p: &mut EditProc) -> bool {
    match cfg.variant {
        Variant::NoStoreRecheck => false,
        Variant::RecheckOnlyAfterCurrent if !p.wrote_current => false,
        _ => {
            p.pc = EditPc::StoreRecheck;
            true
        }
    }
}

/// The step after `slot` is done (written, covered or skipped): Migration,
/// the primary Current, the old Current, Historical (`Edit::round`).
fn after(cfg: &Config, s: &State, p: &mut EditProc, slot: Slot) -> bool {
    let next = match slot {
        Slot::Migration => Some(Slot::Current),
        Slot::Current if currents(cfg, &p.view).len() > 1 => Some(Slot::OldCurrent),
        Slot::Current | Slot::OldCurrent if writes_historical(cfg, s, &p.view) => {
            Some(Slot::Historical)
        }
        _ => None,
    };
    match next {
        Some(slot) => {
            p.pc = EditPc::CasGet(slot);
            true
        }
        None => end_of_round(cfg, p),
    }
}

/// The primary Current as the edit path takes it from `view`: the first
/// of `current_indices` (two Currents that are no hand-over, as a view
/// mixed from two moments may show, are both written all the same).
fn primary(view: &View) -> Option<Idx> {
    view.aliases.currents().first().copied()
}

/// The alias `slot` writes through, and the cluster the view places its
/// index on (the request goes there): a Current the view does not know
/// goes to the source (`ctx.index`).
pub fn through(view: &View, slot: Slot) -> (Alias, Cluster) {
    let a = &view.aliases;
    let on = |i: Option<Idx>| i.map_or(Cluster::Source, |i| a.cluster_of(i));
    match slot {
        Slot::Migration => (Alias::Migration, on(a.migration())),
        Slot::Current => (Alias::Current, on(primary(view))),
        Slot::OldCurrent => (Alias::Current, on(a.currents().get(1).copied())),
        Slot::Historical => (Alias::Historical, on(a.historical())),
    }
}

/// The index `slot`'s alias resolves to at this instant, on its cluster.
fn resolve(s: &State, p: &EditProc, slot: Slot) -> Option<Idx> {
    let (alias, cluster) = through(&p.view, slot);
    s.aliases.resolve(alias, cluster)
}

/// The primary Current's alias is missing on the cluster the view names
/// (a view from across a hand-over): `EditError::NoCurrent`, transient, so
/// the caller's `retry` runs `apply` again from the projection.
fn no_current(p: &mut EditProc) -> bool {
    p.pc = EditPc::Project;
    true
}

/// Notes that `idx` holds this apply's version (or a newer one).
fn cover(p: &mut EditProc, slot: Slot, idx: Idx) {
    p.covered |= bit(idx);
    if slot == Slot::Migration {
        p.mark = Some(idx);
    }
}

/// One step of `p`. Returns false when the message is acked (or
/// dead-lettered) and the worker is free.
pub fn step(cfg: &Config, s: &mut State, p: &mut EditProc, choice: u8) -> bool {
    let doc = p.doc;
    match p.pc {
        EditPc::Project => {
            let st = s.store[doc as usize];
            *p = begin(p.msg, doc, cached(cfg, s, choice));
            p.v = st.version;
            p.live = st.live;
            round(p);
            true
        }
        EditPc::MigrationWrite => {
            let Some(idx) = resolve(s, p, Slot::Migration) else {
                return after(cfg, s, p, Slot::Migration);
            };
            if !p.live {
                p.pc = EditPc::MigrationDelete(idx, s.indices[idx as usize].incarnation);
                return true;
            }
            if cfg.rejects(idx, doc, p.v, p.live) {
                if cfg.variant == Variant::RejectDeadLetters {
                    return false;
                }
                p.failed = Some(idx);
                p.covered |= bit(idx);
                return after(cfg, s, p, Slot::Migration);
            }
            let r = s.put_external(idx, doc, p.v);
            ext_result(cfg, p, idx, r);
            if p.pc == EditPc::MigrationWrite {
                return after(cfg, s, p, Slot::Migration);
            }
            true
        }
        EditPc::MigrationDelete(idx, inc) => {
            let r = s.delete_external(idx, doc, p.v);
            ext_result(cfg, p, idx, r);
            if r == Ext::NotFound && cfg.variant != Variant::StrayIndexKept {
                p.pc = EditPc::StrayCheck(idx, inc);
                return true;
            }
            if matches!(p.pc, EditPc::MigrationDelete(..)) {
                return after(cfg, s, p, Slot::Migration);
            }
            true
        }
        EditPc::StrayCheck(idx, inc) => {
            let i = &s.indices[idx as usize];
            if i.exists && i.incarnation != inc && !s.has_alias(idx) {
                let i = &mut s.indices[idx as usize];
                i.exists = false;
                i.stray = false;
                i.docs = Default::default();
            }
            after(cfg, s, p, Slot::Migration)
        }
        EditPc::CasGet(slot) => {
            let Some(idx) = resolve(s, p, slot) else {
                if slot == Slot::Current {
                    return no_current(p);
                }
                return after(cfg, s, p, slot);
            };
            let got = s.get(idx, doc);
            let as_new = got.map_or(!p.live, |(e, _)| e.content >= p.v);
            // A failure to record still needs the write at the same version.
            let record = slot == Slot::Current
                && p.failed.is_some()
                && got.is_some_and(|(e, _)| e.content == p.v && e.failed != p.failed);
            if as_new && !record {
                cover(p, slot, idx);
                return after(cfg, s, p, slot);
            }
            p.pc = EditPc::CasWrite(slot, got.map(|(_, seen)| seen));
            true
        }
        EditPc::CasWrite(slot, seen) => {
            let Some(idx) = resolve(s, p, slot) else {
                if slot == Slot::Current {
                    return no_current(p);
                }
                return after(cfg, s, p, slot);
            };
            let ok = if p.live {
                let body = body(cfg, s, p, slot, idx);
                s.put_cas(idx, doc, seen, body)
            } else {
                seen.is_some_and(|seen| s.delete_cas(idx, doc, seen))
            };
            if !ok {
                // Changed since the GET, or the alias moved: read again.
                p.pc = EditPc::CasGet(slot);
                return true;
            }
            cover(p, slot, idx);
            if slot == Slot::Current {
                p.wrote_current = true;
            }
            after(cfg, s, p, slot)
        }
        EditPc::FreshCheck if cfg.variant == Variant::FreshSourceOnly => {
            // The source read now, the target's table as cached.
            let aliases = Aliases::merge(&s.aliases, &p.view.aliases);
            match untorn(s, aliases) {
                Some(view) => fresh_check(cfg, s, p, view, false),
                None => true,
            }
        }
        EditPc::FreshCheck if cfg.across => {
            // Two `GET _alias` in parallel: either may be served first, and
            // anything may happen before the other is.
            let first = [Cluster::Source, Cluster::Target][choice as usize];
            p.pc = EditPc::FreshHalf(first, s.aliases.part(first));
            true
        }
        EditPc::FreshCheck => fresh_check(cfg, s, p, s.view(), choice == 1),
        EditPc::FreshHalf(first, read) => {
            let aliases = match first {
                Cluster::Source => Aliases::merge(&read, &s.aliases),
                Cluster::Target => Aliases::merge(&s.aliases, &read),
            };
            match untorn(s, aliases) {
                Some(view) => fresh_check(cfg, s, p, view, choice == 1),
                None => {
                    p.pc = EditPc::FreshCheck;
                    true
                }
            }
        }
        EditPc::StoreRecheck => {
            if s.store[doc as usize].version > p.v {
                // Superseded: start over from the projection.
                p.pc = EditPc::Project;
                return true;
            }
            false
        }
    }
}

/// The view a read of both clusters that merged into `aliases` settles on
/// (`StateCache::read`), with the completion record read after it; `None`:
/// torn, read both again. If the aliases are torn now as well (only when a
/// variant changes the clusters out of order), every read again is torn
/// and the code goes on with the last one, which is the state now.
fn untorn(s: &State, aliases: Aliases) -> Option<View> {
    if !aliases.torn() {
        Some(View {
            aliases,
            completion: s.completion,
        })
    } else if s.aliases.torn() {
        Some(s.view())
    } else {
        None
    }
}

/// The fresh check on `fresh` (`context::state::StateCache::fresh`): done
/// when every index a reader may use per `fresh` is covered, else another
/// round following it. `failed`: its completion read failed.
fn fresh_check(cfg: &Config, s: &State, p: &mut EditProc, mut fresh: View, failed: bool) -> bool {
    if failed {
        fresh.completion = None;
    }
    if required(cfg, s, &fresh)
        .iter()
        .all(|&i| p.covered & bit(i) != 0)
    {
        return recheck_or_ack(cfg, p);
    }
    p.view = fresh;
    round(p);
    true
}

/// What a versioned Migration write's answer means for the apply: done,
/// or a 409 to check by reading the stored content version (the index may
/// have been Current, with `_version`s inflated by internal writes).
fn ext_result(cfg: &Config, p: &mut EditProc, idx: Idx, r: Ext) {
    match r {
        Ext::Done | Ext::NotFound => cover(p, Slot::Migration, idx),
        Ext::Conflict if cfg.variant == Variant::Trust409 => cover(p, Slot::Migration, idx),
        Ext::Conflict => p.pc = EditPc::CasGet(Slot::Migration),
    }
}

/// The body a compare-and-set writes: the projection plus outcome records
/// (`worker::edit_path::with_outcome`).
fn body(cfg: &Config, s: &State, p: &EditProc, slot: Slot, idx: Idx) -> Entry {
    let stored = s.get(idx, p.doc).map(|(e, _)| e);
    let kept = stored.and_then(|e| e.migrated_to);
    let migrated_to = match slot {
        Slot::Migration => None,
        // Historical's and the old Current's records are about the index
        // that replaced it.
        Slot::Historical | Slot::OldCurrent => primary(&p.view),
        Slot::Current => match p.mark {
            Some(m) => Some(m),
            // A stale marker claims an index holds a version it does not.
            None if cfg.variant == Variant::KeepStaleMark => kept,
            None => None,
        },
    };
    let failed = match slot {
        Slot::Current => p.failed.or(stored.and_then(|e| e.failed)),
        _ => stored.and_then(|e| e.failed),
    };
    Entry {
        content: p.v,
        live: true,
        seq: 0,
        ver: 0,
        migrated_to,
        failed,
    }
}
