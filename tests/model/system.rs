//! The stateright model: initial states, the actions the environment and
//! the workers may take, and a readable line per step.

use stateright::{Model, Property};

use super::state::{
    Alias, Aliases, Cluster, Completion, EditPc, EditProc, Entry, Index, MigPc, Msg, Proc, Slot,
    State, StoreDoc, View, Window, DOCS, MAX_INDICES,
};
use super::variants::{Clients, Config, On, Op, Scenario, Variant};
use super::{edit, migrate, operator, properties};

/// The model of ferry under one configuration.
#[derive(Clone, Debug)]
pub struct FerryModel {
    /// Bounds and protocol flag.
    pub cfg: Config,
}

/// What may happen next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// A client uploads (if absent or deleted) or edits a document, then
    /// publishes (publisher contract).
    Edit(u8),
    /// A client deletes a document, then publishes.
    Delete(u8),
    /// The broker delivers a pending message again (duplicate).
    Duplicate(usize),
    /// A free worker takes pending message `.0`; `.1` picks its cached view.
    Take(usize, u8),
    /// Worker `.0` performs its next request; `.1` picks among outcomes.
    Step(usize, u8),
    /// Worker `.0` crashes: its message is redelivered.
    Crash(usize),
    /// The scanner reads a Current document.
    Scan(u8),
    /// The scanner publishes what it read.
    Publish,
    /// The operator's next command.
    Operator(Op),
    /// Clocks move the rollback window on.
    Clock,
    /// A tombstone in the Migration index expires (`tombstones_expire`).
    Expire(u8),
}

fn legacy(docs: [Option<Entry>; DOCS]) -> Index {
    Index {
        exists: true,
        incarnation: 1,
        stray: false,
        docs,
    }
}

fn doc(v: u8, ver: u8, to: Option<u8>) -> Option<Entry> {
    Some(Entry {
        content: v,
        live: true,
        seq: ver,
        ver,
        migrated_to: to,
        failed: None,
    })
}

impl FerryModel {
    /// The starting state of the configuration.
    pub fn init(&self) -> State {
        let cfg = &self.cfg;
        let both = cfg.both_docs;
        let mut store = [StoreDoc {
            version: 1,
            live: true,
        }; DOCS];
        if !both {
            store[1] = StoreDoc::default();
        }
        let d1 = |e: Option<Entry>| if both { e } else { None };
        let absent = || Index {
            exists: false,
            incarnation: 0,
            stray: false,
            docs: Default::default(),
        };
        let mut indices: [Index; MAX_INDICES] = [absent(), absent(), absent()];
        let mut s = State {
            store,
            indices: [absent(), absent(), absent()],
            created: 1,
            aliases: Aliases::new(cfg.on_target()),
            completion: None,
            completions: 0,
            window: None,
            history: vec![],
            pending: vec![],
            procs: vec![],
            scanning: None,
            op: 0,
            edits_left: cfg.edits,
            dups_left: cfg.dups,
            crashes_left: cfg.crashes,
        };
        indices[0] = legacy([doc(1, 1, None), d1(doc(1, 1, None))]);
        s.aliases.set(0, Alias::Current, true);
        if cfg.scenario == Scenario::AfterCompletion {
            // Index 1 was migrated at version 1 (external), then became
            // Current: an outcome/partial write there inflated `_version`.
            indices[0] = legacy([doc(1, 2, Some(1)), d1(doc(1, 2, Some(1)))]);
            indices[1] = legacy([doc(1, 2, None), d1(doc(1, 2, None))]);
            // Across clusters index 0 keeps Current on the source.
            s.created = 2;
            s.aliases.set(0, Alias::Current, cfg.across);
            s.aliases.set(1, Alias::Current, true);
            s.aliases.set(0, Alias::Historical, true);
            s.completions = 1;
            s.completion = Some(Completion {
                from: 0,
                to: 1,
                n: 1,
            });
            s.window = Some(Window::Open);
        }
        s.indices = indices;
        s.remember_view(cfg.view_age);
        s.normalize(cfg.max_version);
        s
    }

    fn proc_choices(&self, s: &State, p: &Proc) -> u8 {
        match p {
            Proc::Edit(e) => edit::choices(&self.cfg, s, e),
            Proc::Migrate(_) => 1,
        }
    }
}

impl Model for FerryModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        vec![self.init()]
    }

    fn actions(&self, s: &State, out: &mut Vec<Action>) {
        let cfg = &self.cfg;
        if s.edits_left > 0 {
            for d in 0..cfg.docs {
                let st = s.store[d as usize];
                if st.version < cfg.max_version {
                    if !(cfg.clients == Clients::DeleteReupload && st.live) {
                        out.push(Action::Edit(d));
                    }
                    if st.live && cfg.clients != Clients::EditOnly {
                        out.push(Action::Delete(d));
                    }
                }
            }
        }
        for (i, m) in s.pending.iter().enumerate() {
            if i > 0 && s.pending[i - 1] == *m {
                continue; // the same message: the same futures
            }
            if s.dups_left > 0 {
                out.push(Action::Duplicate(i));
            }
            if s.procs.len() < cfg.workers {
                let views = match m {
                    // The processor's cached view only decides whether to
                    // drop: taken fresh to keep the state space small.
                    Msg::Migrate(_) => 1,
                    Msg::Edit(_) => s.cached_views(cfg.across).len() as u8 * take_factor(cfg, m),
                };
                for c in 0..views {
                    out.push(Action::Take(i, c));
                }
            }
        }
        for (i, p) in s.procs.iter().enumerate() {
            if i > 0 && s.procs[i - 1] == *p {
                continue;
            }
            for c in 0..self.proc_choices(s, p) {
                out.push(Action::Step(i, c));
            }
            if s.crashes_left > 0 {
                out.push(Action::Crash(i));
            }
        }
        if s.scanning.is_some() {
            out.push(Action::Publish);
        }
        for d in migrate::scannable(cfg, s) {
            out.push(Action::Scan(d));
        }
        if let Some(op) = operator::next(cfg, s) {
            out.push(Action::Operator(op));
        }
        if cfg.clock && matches!(s.window, Some(Window::Open | Window::Closing)) {
            out.push(Action::Clock);
        }
        if cfg.variant == Variant::TombstonesExpire {
            if let Some(m) = s.aliases.migration() {
                for d in 0..DOCS as u8 {
                    if s.indices[m as usize].docs[d as usize].is_some_and(|e| !e.live) {
                        out.push(Action::Expire(d));
                    }
                }
            }
        }
    }

    fn next_state(&self, s: &State, a: Action) -> Option<State> {
        let cfg = &self.cfg;
        let mut s = s.clone();
        match a {
            Action::Edit(d) | Action::Delete(d) => {
                let st = &mut s.store[d as usize];
                st.version += 1;
                st.live = matches!(a, Action::Edit(_));
                s.edits_left -= 1;
                s.pending.push(Msg::Edit(d));
            }
            Action::Duplicate(i) => {
                s.dups_left -= 1;
                s.pending.push(s.pending[i]);
            }
            Action::Take(i, c) => {
                let m = s.pending.remove(i);
                match m {
                    Msg::Edit(d) => {
                        let mut p = edit::begin(m, d, s.view());
                        edit::step(cfg, &mut s, &mut p, c);
                        s.procs.push(Proc::Edit(p));
                    }
                    Msg::Migrate(mm) => {
                        let next = migrate::take(cfg, &s, mm, s.view());
                        self.settle(&mut s, next);
                    }
                }
            }
            Action::Step(i, c) => match s.procs.remove(i) {
                Proc::Edit(mut p) => {
                    if edit::step(cfg, &mut s, &mut p, c) {
                        s.procs.push(Proc::Edit(p));
                    }
                }
                Proc::Migrate(p) => {
                    let next = migrate::step(cfg, &mut s, p);
                    self.settle(&mut s, next);
                }
            },
            Action::Crash(i) => {
                s.crashes_left -= 1;
                let p = s.procs.remove(i);
                s.pending.push(p.redelivery());
            }
            Action::Scan(d) => migrate::scan(&mut s, d),
            Action::Publish => migrate::publish(&mut s),
            Action::Operator(op) => operator::apply(cfg, &mut s, op),
            Action::Clock => operator::advance_window(&mut s),
            Action::Expire(d) => {
                let m = s.aliases.migration().expect("expire");
                s.indices[m as usize].docs[d as usize] = None;
            }
        }
        s.normalize(cfg.max_version);
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("consistent at quiescence", properties::consistent),
            Property::always("alias invariants", properties::aliases_ok),
            Property::always("no stray index", properties::no_stray),
            Property::sometimes("migration completed", properties::completed),
        ]
    }
}

/// Cached views a message may be taken with (edits: also with a failed
/// completion read under `completion_read_error_closes_window`).
fn take_factor(cfg: &Config, m: &Msg) -> u8 {
    match m {
        Msg::Edit(_) if cfg.variant == Variant::CompletionReadErrorClosesWindow => 2,
        _ => 1,
    }
}

impl FerryModel {
    /// Puts a migrate worker's next state back.
    fn settle(&self, s: &mut State, next: migrate::Next) {
        match next {
            migrate::Next::Busy(p) => s.procs.push(Proc::Migrate(p)),
            migrate::Next::Edit(p) => s.procs.push(Proc::Edit(p)),
            migrate::Next::Done => {}
        }
    }

    /// One line naming the actor, the step and the function in `src/`.
    pub fn describe(&self, s: &State, a: Action) -> String {
        match a {
            Action::Edit(d) => format!(
                "client    doc{d}: {} v{} in the stores, publish (publisher contract)",
                if s.store[d as usize].live {
                    "edit"
                } else {
                    "upload"
                },
                s.store[d as usize].version + 1
            ),
            Action::Delete(d) => format!(
                "client    doc{d}: delete v{} in the stores, publish",
                s.store[d as usize].version + 1
            ),
            Action::Duplicate(i) => format!("broker    duplicate {:?}", s.pending[i]),
            Action::Take(i, c) => {
                let n = s.cached_views(self.cfg.across).len() as u8;
                let view = edit::cached(&self.cfg, s, c);
                let err = if c >= n {
                    " (completion read failed)"
                } else {
                    ""
                };
                match s.pending[i] {
                    Msg::Edit(d) => format!(
                        "worker    take edit doc{d}; project v{} {}; cached view {}{err} (worker::edit_path::apply, stores::projection)",
                        s.store[d as usize].version,
                        if s.store[d as usize].live { "live" } else { "deleted" },
                        show_view(&view)
                    ),
                    Msg::Migrate(m) => format!(
                        "worker    take migrate doc{} -> idx{} v{} seq{:?}; mget Current (worker::migration_path::process_inner)",
                        m.doc, m.target, m.version, m.seq
                    ),
                }
            }
            Action::Step(i, c) => format!("worker#{i} {}", step_name(&self.cfg, s, &s.procs[i], c)),
            Action::Crash(i) => format!("worker#{i} crashes; {:?} redelivered", s.procs[i].msg()),
            Action::Scan(d) => {
                format!("scanner   read doc{d} seq from Current (worker::scanner::pass)")
            }
            Action::Publish => {
                let (d, _, _) = s.scanning.expect("scanning");
                format!(
                    "scanner   project doc{d} v{} and publish (queue::migrate::publish_projections)",
                    s.store[d as usize].version
                )
            }
            Action::Operator(op) => format!("operator  {}", op_name(s, op)),
            Action::Clock => format!("clock     rollback window {:?} -> next", s.window),
            Action::Expire(d) => {
                format!("engine    tombstone of doc{d} expires in the Migration index")
            }
        }
    }
}

/// A view: each cluster's aliases and the completion record.
fn show_view(v: &View) -> String {
    format!(
        "[{:?} completion={:?}]",
        v.aliases,
        v.completion.map(|c| (c.from, c.to))
    )
}

/// An operator request and the function that makes it.
fn op_name(s: &State, op: Op) -> String {
    let c = s.completion.map_or((0, 0), |c| (c.from, c.to));
    match op {
        Op::Start => format!(
            "start: create idx{}{}, Migration alias on it (ops::lifecycle::start)",
            s.created,
            match s.aliases.cluster_of(s.created) {
                Cluster::Source => "",
                Cluster::Target => " on the target",
            }
        ),
        Op::Resume => "resume: pause alias removed (ops::lifecycle::resume)".into(),
        Op::Complete => {
            "complete: the gate passes; completion record written (ops::lifecycle::complete)".into()
        }
        Op::Switch(On::All) => format!(
            "complete: switch idx{} -> idx{} in one _aliases request",
            c.0, c.1
        ),
        Op::Switch(On::Source) => format!(
            "complete, source request: idx{} also gets Historical (ops::across::update_in_order)",
            c.0
        ),
        Op::Switch(On::Target) => format!(
            "complete, target request: idx{} gets Current, loses Migration (ops::across::update_in_order)",
            c.1
        ),
        Op::Rollback(On::All) => format!(
            "rollback: idx{} Current again, idx{} paused Migration; record cleared (ops::lifecycle::rollback)",
            c.0, c.1
        ),
        Op::Rollback(On::Target) => format!(
            "rollback, target request: idx{} loses Current, gets Migration and paused (ops::across::update_in_order)",
            c.1
        ),
        Op::Rollback(On::Source) => format!(
            "rollback, source request: idx{} loses Historical (keeps Current)",
            c.0
        ),
        Op::ClearRecord => "completion record cleared (stores::control::clear_completion)".into(),
        Op::RetireSource => format!(
            "retire-source: idx{} loses Current and Historical on the source (ops::across::retire_source)",
            c.0
        ),
        Op::Abandon => "abandon: Migration alias removed (ops::lifecycle::abandon)".into(),
        Op::DeleteIndex => format!(
            "abandon --delete-index: idx{} deleted",
            s.created - 1
        ),
    }
}

fn step_name(cfg: &Config, s: &State, p: &Proc, c: u8) -> String {
    match p {
        Proc::Edit(e) => {
            let what = match e.pc {
                EditPc::Project => "re-project (superseded) and take the cached view (worker::edit_path::apply)".to_string(),
                EditPc::MigrationWrite => format!(
                    "doc{} v{}: external {} through Migration (IndexClient::{})",
                    e.doc,
                    e.v,
                    if e.live { "write" } else { "delete: resolve alias" },
                    if e.live { "put_external" } else { "delete_external" }
                ),
                EditPc::MigrationDelete(i, _) => format!("doc{} v{}: external delete to idx{i} (IndexClient::delete_external)", e.doc, e.v),
                EditPc::StrayCheck(i, _) => format!("check idx{i} uuid, delete if recreated (IndexClient::delete_target)"),
                EditPc::CasGet(slot) => format!("doc{} v{}: GET through {} (worker::edit_path::write_cas)", e.doc, e.v, slot_name(cfg, e, slot)),
                EditPc::CasWrite(slot, seen) => format!(
                    "doc{} v{}: {} through {} if_seq_no={seen:?} (worker::edit_path::write_cas, IndexClient::{})",
                    e.doc,
                    e.v,
                    if e.live { "write" } else { "delete" },
                    slot_name(cfg, e, slot),
                    if e.live { "put_cas" } else { "delete_cas" }
                ),
                EditPc::FreshCheck if cfg.variant == Variant::FreshSourceOnly => format!(
                    "doc{}: fresh read of the source's aliases only: {:?}; the target's as cached",
                    e.doc,
                    s.aliases.part(Cluster::Source)
                ),
                EditPc::FreshCheck if cfg.across => {
                    let first = [Cluster::Source, Cluster::Target][c as usize];
                    format!(
                        "doc{}: fresh read, first half: {first:?} aliases now {:?} (context::read_aliases)",
                        e.doc,
                        s.aliases.part(first)
                    )
                }
                EditPc::FreshCheck => format!(
                    "doc{}: fresh alias read{} (context::state::StateCache::fresh)",
                    e.doc,
                    if c == 1 { ", completion read failed" } else { "" }
                ),
                EditPc::FreshHalf(first, read) => {
                    let merged = match first {
                        Cluster::Source => Aliases::merge(&read, &s.aliases),
                        Cluster::Target => Aliases::merge(&s.aliases, &read),
                    };
                    format!(
                        "doc{}: fresh read, second half: {:?} aliases now {:?}{} (context::read_aliases, AliasState::merge)",
                        e.doc,
                        first.other(),
                        s.aliases.part(first.other()),
                        if merged.torn() && !s.aliases.torn() {
                            "; torn (two Currents, neither Historical): read both again (StateCache::read)"
                        } else if c == 1 {
                            ", completion record read failed; merged"
                        } else {
                            ", completion record; merged"
                        }
                    )
                }
                EditPc::StoreRecheck => format!("doc{}: re-read the stores' version (worker::edit_path::latest_version)", e.doc),
            };
            what
        }
        Proc::Migrate(m) => match m.pc {
            MigPc::Write => format!(
                "doc{} v{}: external write into Migration (worker::migration_path::process_inner, IndexClient::put_external)",
                m.m.doc, m.m.version
            ),
            MigPc::Behind409 => format!(
                "doc{} v{}: 409; mget Migration: content behind? (worker::migration_path::behind_on_409)",
                m.m.doc, m.m.version
            ),
            MigPc::MovedOn => format!(
                "doc{} v{}: read the stores' version: moved on? (worker::migration_path::moved_on)",
                m.m.doc, m.m.version
            ),
            MigPc::Outcome(f) => format!(
                "doc{}: outcome {} on Current if_seq_no={:?} (IndexClient::update_partial)",
                m.m.doc,
                if f { "failure" } else { "migratedTo" },
                m.m.seq
            ),
        },
    }
}

/// The alias a step writes through, and on which cluster when there are two.
fn slot_name(cfg: &Config, e: &EditProc, slot: Slot) -> String {
    let name = match slot {
        Slot::Migration => "Migration",
        Slot::Current => "Current",
        Slot::OldCurrent => "Current (old)",
        Slot::Historical => "Historical",
    };
    if !cfg.across {
        return name.into();
    }
    let (_, cluster) = edit::through(&e.view, slot);
    format!("{name} on the {cluster:?}")
}
