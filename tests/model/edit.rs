//! The edit path, `worker::edit_path::apply`, one index or store request per
//! step.

use super::engine::Ext;
use super::state::{EditPc, EditProc, Entry, Idx, Msg, Slot, State, View, Window};
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
        && view.aliases.historical.is_some()
        && view
            .completion
            .is_some_and(|c| c.n == s.completions && window_writes(cfg, s.window))
}

/// The indices a reader may use per `view`, which an edit must cover.
fn required(cfg: &Config, s: &State, view: &View) -> Vec<Idx> {
    let mut r = vec![view.aliases.current];
    r.extend(view.aliases.migration);
    if historical_writes(cfg, s, view) {
        r.extend(view.aliases.historical);
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

/// How many choices a step of `p` has (views to take, read errors).
pub fn choices(cfg: &Config, s: &State, p: &EditProc) -> u8 {
    let errors = cfg.variant == Variant::CompletionReadErrorClosesWindow;
    match p.pc {
        EditPc::Project => s.history.len() as u8 * if errors { 2 } else { 1 },
        EditPc::FreshCheck if errors => 2,
        _ => 1,
    }
}

/// The view for `choice`: a cached one of any age; with
/// `completion_read_error_closes_window`, its completion read may fail.
fn cached(s: &State, choice: u8) -> View {
    let n = s.history.len() as u8;
    let mut v = s.history[(choice % n) as usize];
    if choice >= n {
        v.completion = None;
    }
    v
}

/// First step of a round following `view`.
fn round(p: &mut EditProc) {
    p.wrote_current = false;
    p.pc = if p.view.aliases.migration.is_some() {
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

/// The step after `slot` is done (written, covered or skipped).
fn after(cfg: &Config, s: &State, p: &mut EditProc, slot: Slot) -> bool {
    match slot {
        Slot::Migration => {
            p.pc = EditPc::CasGet(Slot::Current);
            true
        }
        Slot::Current if historical_writes(cfg, s, &p.view) => {
            p.pc = EditPc::CasGet(Slot::Historical);
            true
        }
        _ => end_of_round(cfg, p),
    }
}

/// The index an alias resolves to at this instant.
fn resolve(s: &State, slot: Slot) -> Option<Idx> {
    match slot {
        Slot::Migration => s.aliases.migration,
        Slot::Current => Some(s.aliases.current),
        Slot::Historical => s.aliases.historical,
    }
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
            *p = begin(p.msg, doc, cached(s, choice));
            p.v = st.version;
            p.live = st.live;
            round(p);
            true
        }
        EditPc::MigrationWrite => {
            let Some(idx) = s.aliases.migration else {
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
            let Some(idx) = resolve(s, slot) else {
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
            let Some(idx) = resolve(s, slot) else {
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
        EditPc::FreshCheck => {
            let mut fresh = s.view();
            if choice == 1 {
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
        // Historical's records are about the index that replaced it.
        Slot::Historical => Some(p.view.aliases.current),
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
