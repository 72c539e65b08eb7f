//! The migration path: `worker::scanner` publishes, and
//! `worker::migration_path::process_inner` writes, re-reads (`behind_on_409`,
//! `moved_on`) and records the outcome or runs the edit path.

use super::edit;
use super::engine::Ext;
use super::state::{Alias, EditProc, Idx, MigPc, MigProc, Migrate, Msg, Proc, State, View};
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
/// the primary Current without an outcome for the target, while not paused.
pub fn scannable(cfg: &Config, s: &State) -> Vec<u8> {
    let (Some(m), Some(cur)) = (s.aliases.migration(), s.aliases.current()) else {
        return vec![];
    };
    if s.aliases.paused() == Some(m) || s.scanning.is_some() || in_flight(s) >= cfg.max_migrate {
        return vec![];
    }
    (0..super::state::DOCS as u8)
        .filter(|&d| {
            s.get(cur, d)
                .is_some_and(|(e, _)| e.migrated_to != Some(m) && e.failed != Some(m))
        })
        .collect()
}

/// `worker::scanner::pass`: reads the id and `_seq_no` from the primary
/// Current.
pub fn scan(s: &mut State, doc: u8) {
    let m = s.aliases.migration().expect("scannable");
    let cur = s.aliases.current().expect("scannable");
    let (_, seen) = s.get(cur, doc).expect("scannable");
    s.scanning = Some((doc, m, seen));
}

/// `queue::migrate::publish_projections`: projects from the stores and
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
        redelivered: false,
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

/// The edit path for this message's id (`worker::migration_path::settle`:
/// `apply` inline, on the same worker; a crash redelivers the migrate
/// message): a 409 from an index behind, or the stores moved on.
fn via_edit_path(m: Migrate, view: View) -> Next {
    Next::Edit(edit::begin(Msg::Migrate(m), m.doc, view))
}

/// Takes a migrate message with a cached view: drops it unless the view's
/// migration is its target, mgets Current on the cluster of the view's
/// primary Current, drops it if gone, postpones it if changed since the
/// scan. A redelivered one goes to the edit path.
pub fn take(cfg: &Config, s: &State, m: Migrate, view: View) -> Next {
    // An earlier delivery may have written and died before its stores
    // re-read (`worker::migration_path::process_deliveries`).
    if m.redelivered && cfg.variant != Variant::TrustRedelivery {
        return via_edit_path(m, view);
    }
    if view.aliases.migration() != Some(m.target) {
        return Next::Done;
    }
    let on = view.aliases.current_cluster();
    let found = s
        .aliases
        .resolve(Alias::Current, on)
        .and_then(|cur| s.get(cur, m.doc));
    match found {
        Some((_, seen)) if seen == m.seq => Next::Busy(MigProc {
            m,
            on,
            pc: MigPc::Write,
        }),
        _ => Next::Done,
    }
}

/// The index the Migration alias resolves to now, on the target's cluster.
fn migration(s: &State, m: &Migrate) -> Option<Idx> {
    let on = s.aliases.cluster_of(m.target);
    s.aliases.resolve(Alias::Migration, on)
}

/// One step of the processor.
pub fn step(cfg: &Config, s: &mut State, p: MigProc) -> Next {
    let (m, on) = (p.m, p.on);
    let busy = |pc| Next::Busy(MigProc { m, on, pc });
    match p.pc {
        MigPc::Write => {
            let Some(idx) = migration(s, &m) else {
                return Next::Done;
            };
            if cfg.rejects(idx, m.doc, m.version, m.live) {
                return busy(MigPc::Outcome(true));
            }
            let r = if m.live {
                s.put_external(idx, m.doc, m.version)
            } else {
                s.delete_external(idx, m.doc, m.version)
            };
            match r {
                // `behind_on_409`: read what the index holds.
                Ext::Conflict => busy(MigPc::Behind409),
                _ if cfg.variant == Variant::ProcessorNoRecheck || !cfg.moved_on => {
                    busy(MigPc::Outcome(false))
                }
                // `moved_on`: read the stores' version.
                _ => busy(MigPc::MovedOn),
            }
        }
        MigPc::Behind409 => {
            // `_mget` through the Migration alias: a content version behind
            // the message's (or a live document absent) is not "already
            // newer" (the index was Current, its `_version`s inflated).
            let behind = migration(s, &m).is_some_and(|idx| {
                s.get(idx, m.doc)
                    .map_or(m.live, |(e, _)| e.content < m.version)
            });
            if behind {
                via_edit_path(m, s.view())
            } else {
                busy(MigPc::Outcome(false))
            }
        }
        MigPc::MovedOn => {
            // One consistent `BatchGetItem` of the written ids: a version
            // past the message's goes to the edit path, without an outcome
            // record from the processor (the edit path leaves its own).
            if s.store[m.doc as usize].version > m.version {
                via_edit_path(m, s.view())
            } else {
                busy(MigPc::Outcome(false))
            }
        }
        MigPc::Outcome(failed) => {
            // Changed or gone since the scan: the edit path wrote those;
            // records never create documents. Through the Current alias on
            // the cluster the processor read it on.
            if let Some(cur) = s.aliases.resolve(Alias::Current, on) {
                s.update_outcome(cur, m.doc, m.seq, m.target, failed);
            }
            Next::Done
        }
    }
}
