//! The migration path: `worker::scanner` publishes, and
//! `worker::migration::process_inner` writes and records the outcome.

use super::edit;
use super::engine::{Ext, Partial};
use super::state::{EditProc, MigPc, MigProc, Migrate, Msg, Proc, State, View};
use super::variants::{Config, Variant};

/// Migrate messages queued or being processed.
pub fn in_flight(s: &State) -> usize {
    let queued = s
        .pending
        .iter()
        .filter(|m| matches!(m, Msg::Migrate(_)))
        .count();
    let busy = s
        .procs
        .iter()
        .filter(|p| matches!(p, Proc::Migrate(_)))
        .count();
    queued + busy
}

/// Documents the scanner would read now (`worker::scanner::pass`): live in
/// Current without an outcome for the target, while not paused.
pub fn scannable(cfg: &Config, s: &State) -> Vec<u8> {
    let Some(m) = s.aliases.migration else {
        return vec![];
    };
    if s.aliases.paused == Some(m) || s.scanning.is_some() || in_flight(s) >= cfg.max_migrate {
        return vec![];
    }
    (0..super::state::DOCS as u8)
        .filter(|&d| {
            s.get(s.aliases.current, d)
                .is_some_and(|(e, _)| e.migrated_to != Some(m) && e.failed != Some(m))
        })
        .collect()
}

/// `worker::scanner::pass`: reads the id and `_seq_no` from Current.
pub fn scan(s: &mut State, doc: u8) {
    let m = s.aliases.migration.expect("scannable");
    let (_, seen) = s.get(s.aliases.current, doc).expect("scannable");
    s.scanning = Some((doc, m, seen));
}

/// `worker::scanner::publish_projections`: projects from the stores and
/// publishes the migrate message.
pub fn publish(s: &mut State) {
    let (doc, target, seq) = s.scanning.take().expect("scanning");
    let st = s.store[doc as usize];
    s.pending.push(Msg::Migrate(Migrate {
        doc,
        target,
        version: st.version,
        live: st.live,
        seq,
    }));
}

/// What became of a migrate message's worker after a step.
pub enum Next {
    /// Still processing.
    Busy(MigProc),
    /// Handed to the edit path for its id.
    Edit(EditProc),
    /// Acked (written, dropped or postponed).
    Done,
}

/// The edit path for this message's id (a 409, or the document gone).
fn via_edit_path(m: Migrate, view: View) -> Next {
    Next::Edit(edit::begin(Msg::Migrate(m), m.doc, view))
}

/// Takes a migrate message with a cached view: drops it unless the view's
/// migration is its target, mgets Current, drops it if gone, postpones it
/// if changed since the scan.
pub fn take(s: &State, m: Migrate, view: View) -> Next {
    if view.aliases.migration != Some(m.target) {
        return Next::Done;
    }
    match s.get(s.aliases.current, m.doc) {
        Some((_, seen)) if seen == m.seq => Next::Busy(MigProc {
            m,
            pc: MigPc::Write,
        }),
        _ => Next::Done,
    }
}

/// One step of the processor.
pub fn step(cfg: &Config, s: &mut State, p: MigProc) -> Next {
    let m = p.m;
    match p.pc {
        MigPc::Write => {
            let Some(idx) = s.aliases.migration else {
                return Next::Done;
            };
            if cfg.rejects(idx, m.doc, m.version, m.live) {
                return Next::Busy(MigProc {
                    m,
                    pc: MigPc::Outcome(true),
                });
            }
            let r = if m.live {
                s.put_external(idx, m.doc, m.version)
            } else {
                s.delete_external(idx, m.doc, m.version)
            };
            match r {
                Ext::Conflict => via_edit_path(m, s.view()),
                _ => Next::Busy(MigProc {
                    m,
                    pc: MigPc::Outcome(false),
                }),
            }
        }
        MigPc::Outcome(failed) => {
            let cur = s.aliases.current;
            match s.update_outcome(cur, m.doc, m.seq, m.target, failed) {
                Partial::Missing if cfg.variant != Variant::ProcessorIgnoresMissing => {
                    via_edit_path(m, s.view())
                }
                Partial::Conflict if cfg.variant == Variant::OutcomeConflictApplies => {
                    via_edit_path(m, s.view())
                }
                _ => Next::Done,
            }
        }
    }
}
