//! Protocol flags (each breaks one rule of the fix) and the configurations
//! the model is checked in.

use super::state::Idx;

/// One deliberate deviation from the protocol, to show the checker finds
/// the hole it opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// The protocol as specified.
    Fixed,
    /// Skip the fresh alias read after a round (holes 1 and 3).
    NoFreshCheck,
    /// Skip the stores re-read after the writes (hole 4).
    NoStoreRecheck,
    /// Re-read the stores only when Current was written (old behaviour).
    RecheckOnlyAfterCurrent,
    /// Never write Historical.
    SkipHistorical,
    /// An external 409 means "already newer", without reading (hole 6).
    Trust409,
    /// Keep a stored `migratedTo` when Migration was not covered (hole 3).
    KeepStaleMark,
    /// A document the new mapping rejects dead-letters the message (hole 2).
    RejectDeadLetters,
    /// A failed completion-record read counts as "window closed" (hole 5).
    CompletionReadErrorClosesWindow,
    /// Tombstones in the Migration index expire (hole 7).
    TombstonesExpire,
    /// Workers stop writing Historical while rollback is still accepted
    /// (clock skew, no margin; hole 9).
    NoMargin,
    /// The processor skips the stores re-read after its write (`moved_on`):
    /// the stalled-processor hole.
    ProcessorNoRecheck,
    /// A delete that recreated a deleted index leaves it (hole 8).
    StrayIndexKept,
}

/// One operator command (or one request of a two-request command).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `ops::lifecycle::start`: a new index with the Migration alias.
    Start,
    /// `ops::lifecycle::resume`.
    Resume,
    /// `ops::lifecycle::complete`, first request: gate, then the record.
    Complete,
    /// `ops::lifecycle::complete`, second request: the `_aliases` switch.
    Switch,
    /// `ops::lifecycle::rollback` (refused outside the window).
    Rollback,
    /// `ops::lifecycle::abandon`: the Migration alias removed.
    Abandon,
    /// `ops::lifecycle::abandon --delete-index`: the index deleted.
    DeleteIndex,
}

/// What clients may do to a document (each change bumps the version).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clients {
    /// Upload, edit or delete.
    Any,
    /// Delete a live document, upload a deleted one.
    DeleteReupload,
    /// Only edit (upload) a document, never delete.
    EditOnly,
}

/// Where the model starts and what the operator does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Legacy index Current; start, complete, rollback, resume, complete.
    Cycle,
    /// Just after a completion (the new index Current, its `_version`s
    /// inflated by internal writes, the window open): rollback, resume,
    /// complete.
    AfterCompletion,
    /// Start, abandon --delete-index, start again, complete.
    Abandon,
    /// Start, complete, with a version the new mapping rejects.
    Rejected,
    /// Start, then `complete`'s gate and record without the switch: the
    /// Migration index must match once the gate passes.
    Gate,
}

impl Scenario {
    /// The operator script, advanced one step at a time at any moment.
    pub fn script(self) -> &'static [Op] {
        use Op::*;
        match self {
            Scenario::Cycle => &[Start, Complete, Switch, Rollback, Resume, Complete, Switch],
            Scenario::AfterCompletion => &[Rollback, Resume, Complete, Switch],
            Scenario::Abandon => &[Start, Abandon, DeleteIndex, Start, Complete, Switch],
            Scenario::Rejected => &[Start, Complete, Switch],
            Scenario::Gate => &[Start, Complete],
        }
    }
}

/// Bounds and flags of one check.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Protocol flag.
    pub variant: Variant,
    /// Starting point and operator script.
    pub scenario: Scenario,
    /// Workers (messages processed concurrently).
    pub workers: usize,
    /// Client uploads/edits/deletes in all.
    pub edits: u8,
    /// Highest store version.
    pub max_version: u8,
    /// Duplicate deliveries.
    pub dups: u8,
    /// Worker crashes (message redelivered, writes done so far kept).
    pub crashes: u8,
    /// Migrate messages in flight at most (the scanner waits otherwise).
    pub max_migrate: usize,
    /// Document and version the new mapping rejects.
    pub rejected: Option<(u8, u8)>,
    /// Document 1 exists at the start (otherwise it can be uploaded).
    pub both_docs: bool,
    /// Documents clients change (1: only document 0).
    pub docs: u8,
    /// How many of the latest distinct alias views a cached view may be
    /// (the age bound of the cache).
    pub view_age: usize,
    /// What clients may do to a document.
    pub clients: Clients,
    /// Edits read the aliases afresh after each round (the rule). Off only
    /// to isolate `keep_stale_mark`, which the fresh check masks.
    pub fresh_check: bool,
    /// The processor re-reads the stores after its write (`moved_on`, the
    /// rule). Off only to isolate `tombstones_expire`, which it masks.
    pub moved_on: bool,
    /// The clocks move the rollback window on (otherwise it stays open:
    /// Historical stays an index a reader may use, the strongest
    /// obligation; `AfterCompletion` explores the clock racing edits and a
    /// rollback).
    pub clock: bool,
}

impl Config {
    /// The bound the variants run at: two client changes to one document.
    pub fn small(scenario: Scenario, variant: Variant) -> Self {
        Config {
            variant,
            scenario,
            workers: 2,
            edits: 2,
            max_version: 3,
            dups: 0,
            crashes: 0,
            max_migrate: 1,
            rejected: (scenario == Scenario::Rejected).then_some((0, 2)),
            both_docs: false,
            docs: 1,
            view_age: 2,
            clients: Clients::Any,
            fresh_check: true,
            moved_on: true,
            clock: true,
        }
    }

    /// The bound the suite proves the protocol at: one client change,
    /// delivered twice, racing the migration path and the operators.
    pub fn suite(scenario: Scenario) -> Self {
        Config {
            edits: 1,
            dups: 1,
            ..Self::small(scenario, Variant::Fixed)
        }
    }

    /// The bound of the full cycle and the abandon scenario in the suite:
    /// one document, deleted once, two workers, a cached view at most one
    /// alias change old, the rollback window open until the end.
    pub fn cycle(scenario: Scenario, variant: Variant) -> Self {
        Config {
            clients: Clients::DeleteReupload,
            clock: false,
            edits: 1,
            dups: 0,
            ..Self::small(scenario, variant)
        }
    }

    /// A bound run by hand: the delete delivered twice (the broker may
    /// also duplicate a migrate message instead).
    pub fn cycle_dup(scenario: Scenario, variant: Variant) -> Self {
        Config {
            dups: 1,
            ..Self::cycle(scenario, variant)
        }
    }

    /// A bound run by hand: the document deleted and uploaded again (two
    /// changes, each delivered once).
    pub fn cycle_reupload(scenario: Scenario, variant: Variant) -> Self {
        Config {
            edits: 2,
            ..Self::cycle(scenario, variant)
        }
    }

    /// The larger bound (`FERRY_MODEL_BOUND=large`).
    pub fn large(scenario: Scenario, variant: Variant) -> Self {
        Config {
            edits: 3,
            dups: 1,
            crashes: 1,
            max_migrate: 2,
            docs: 2,
            view_age: 8,
            ..Self::small(scenario, variant)
        }
    }

    /// Whether the stores' version of `doc` can never be in `idx` (the new
    /// mapping rejects it): no protocol makes such an index match.
    pub fn unrepresentable(&self, idx: Idx, doc: u8, v: u8, live: bool) -> bool {
        self.rejects(idx, doc, v, live)
    }

    /// Whether the new mapping rejects this version of the document in `idx`.
    pub fn rejects(&self, idx: Idx, doc: u8, v: u8, live: bool) -> bool {
        live && idx != 0 && self.rejected == Some((doc, v))
    }
}
