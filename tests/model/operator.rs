//! Operator commands (`ops::lifecycle`), one `_aliases` request or record
//! write per step, advanced through a fixed script at any moment.

use super::edit::rollback_allowed;
use super::state::{Completion, Idx, State, Window, MAX_INDICES};
use super::variants::{Config, Op};

/// The gate of `complete`: every live Current document migrated to `m`,
/// none failed for it.
pub fn gate(s: &State, m: Idx) -> bool {
    (0..super::state::DOCS as u8).all(|d| {
        s.get(s.aliases.current, d)
            .is_none_or(|(e, _)| e.migrated_to == Some(m) && e.failed != Some(m))
    })
}

/// The next operator step, if the script has one and it is accepted now.
pub fn next(cfg: &Config, s: &State) -> Option<Op> {
    let op = *cfg.scenario.script().get(s.op as usize)?;
    let ok = match op {
        Op::Start => (s.created as usize) < MAX_INDICES && s.aliases.migration.is_none(),
        Op::Complete => s.aliases.migration.is_some_and(|m| gate(s, m)),
        Op::Rollback => {
            s.completion.is_some()
                && s.aliases.historical.is_some()
                && rollback_allowed(cfg, s.window)
        }
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
            a.migration = Some(idx);
        }
        Op::Resume => a.paused = None,
        Op::Complete => {
            s.completions += 1;
            s.completion = Some(Completion {
                from: a.current,
                to: a.migration.expect("gated"),
                n: s.completions,
            });
            s.window = None;
        }
        Op::Switch => {
            let c = s.completion.expect("recorded");
            a.historical = Some(c.from);
            a.current = c.to;
            a.migration = None;
            a.paused = None;
            s.window = Some(Window::Open);
        }
        Op::Rollback => {
            let old = a.current;
            a.current = a.historical.take().expect("gated");
            a.migration = Some(old);
            a.paused = Some(old);
            s.completion = None;
            s.window = None;
        }
        Op::Abandon => {
            a.migration = None;
            a.paused = None;
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

/// The environment's clocks move the rollback window on.
pub fn advance_window(s: &mut State) {
    s.window = match s.window {
        Some(Window::Open) => Some(Window::Closing),
        _ => Some(Window::Closed),
    };
}
