//! Operator commands (`ops::lifecycle`, `ops::across`), one `_aliases`
//! request or record write per step, advanced through a fixed script at any
//! moment.

use super::edit::rollback_allowed;
use super::state::{Alias, Aliases, Cluster, Completion, Idx, State, Window, MAX_INDICES};
use super::variants::{Config, On, Op};

/// The gate of `complete`: every live document of the primary Current
/// migrated to `m`, none failed for it.
pub fn gate(s: &State, m: Idx) -> bool {
    let Some(cur) = s.aliases.current() else {
        return false;
    };
    (0..super::state::DOCS as u8).all(|d| {
        s.get(cur, d)
            .is_none_or(|(e, _)| e.migrated_to == Some(m) && e.failed != Some(m))
    })
}

/// The next operator step, if the script has one and it is accepted now.
/// A command's later requests follow its first without a new check, as in
/// the code (which checks once, before its first request).
pub fn next(cfg: &Config, s: &State) -> Option<Op> {
    let script = cfg.script();
    let at = s.op as usize;
    let op = *script.get(at)?;
    let a = &s.aliases;
    let continues = at > 0
        && matches!(
            (script[at - 1], op),
            (Op::Switch(_), Op::Switch(_)) | (Op::Rollback(_), Op::Rollback(_))
        );
    let ok = match op {
        Op::Start => {
            (s.created as usize) < MAX_INDICES
                && a.migration().is_none()
                && a.both_current().is_none()
        }
        Op::Complete => a.migration().is_some_and(|m| gate(s, m)),
        Op::Rollback(_) if continues => true,
        Op::Rollback(_) => {
            s.completion.is_some()
                && a.historical().is_some()
                && a.migration().is_none()
                && rollback_allowed(cfg, s.window)
        }
        Op::RetireSource => a.both_current().is_some(),
        _ => true,
    };
    ok.then_some(op)
}

/// Performs `op`.
pub fn apply(cfg: &Config, s: &mut State, op: Op) {
    let a = &mut s.aliases;
    match op {
        Op::Start => {
            let idx = s.created;
            s.created += 1;
            let i = &mut s.indices[idx as usize];
            i.exists = true;
            i.incarnation += 1;
            a.set(idx, Alias::Migration, true);
        }
        Op::Resume => clear(a, Alias::Paused),
        Op::Complete => {
            s.completions += 1;
            s.completion = Some(Completion {
                from: a.current().expect("gated"),
                to: a.migration().expect("gated"),
                n: s.completions,
            });
            s.window = None;
        }
        Op::Switch(on) => {
            // `complete`'s alias changes, of which this request makes those
            // on its cluster. Across clusters the old index keeps Current.
            let c = s.completion.expect("recorded");
            let mut next = *a;
            if a.cluster_of(c.from) == a.cluster_of(c.to) {
                next.set(c.from, Alias::Current, false);
            }
            next.set(c.to, Alias::Current, true);
            next.set(c.to, Alias::Migration, false);
            clear(&mut next, Alias::Historical);
            next.set(c.from, Alias::Historical, true);
            clear(&mut next, Alias::Paused);
            take(a, on, &next);
            // Workers write Historical from the request that makes it one.
            if on.covers(a.cluster_of(c.from)) {
                s.window = Some(Window::Open);
            }
        }
        Op::Rollback(on) => {
            // `rollback`'s alias changes; it checked the record names
            // Historical and Current.
            let c = s.completion.expect("gated");
            let mut next = *a;
            next.set(c.to, Alias::Current, false);
            next.set(c.from, Alias::Current, true);
            next.set(c.from, Alias::Historical, false);
            next.set(c.to, Alias::Migration, true);
            next.set(c.to, Alias::Paused, true);
            take(a, on, &next);
            if on == On::All {
                s.completion = None;
                s.window = None;
            }
        }
        Op::ClearRecord => {
            s.completion = None;
            s.window = None;
        }
        Op::RetireSource => {
            let (old, _) = a.both_current().expect("gated");
            a.set(old, Alias::Current, false);
            a.set(old, Alias::Historical, false);
        }
        Op::Abandon => {
            clear(a, Alias::Migration);
            clear(a, Alias::Paused);
        }
        Op::DeleteIndex => {
            let i = &mut s.indices[s.created as usize - 1];
            i.exists = false;
            i.docs = Default::default();
        }
    }
    s.op += 1;
    s.remember_view(cfg.view_age);
}

/// Takes `alias` off every index.
fn clear(a: &mut Aliases, alias: Alias) {
    for i in 0..MAX_INDICES as Idx {
        a.set(i, alias, false);
    }
}

/// Makes the part of `next` that the request `on` changes.
fn take(a: &mut Aliases, on: On, next: &Aliases) {
    for c in [Cluster::Source, Cluster::Target] {
        if on.covers(c) {
            a.take_part(c, next);
        }
    }
}

/// The environment's clocks move the rollback window on.
pub fn advance_window(s: &mut State) {
    s.window = match s.window {
        Some(Window::Open) => Some(Window::Closing),
        _ => Some(Window::Closed),
    };
}
