//! Protocol flags (each breaks one rule of the fix) and the configurations
//! the model is checked in.

use super::state::{Cluster, Idx, MAX_INDICES};

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
    /// A redelivered migrate message is processed like a fresh one (the
    /// old behaviour): after a crash between its write and its stores
    /// re-read, a deleted document stays in a Migration index that has no
    /// tombstone (rolled back).
    TrustRedelivery,
    /// Across clusters: edits write, and the fresh check asks for, only
    /// the primary Current, as if readers left the old index at the
    /// completion (it keeps Current on the source until `retire-source`).
    PrimaryCurrentOnly,
    /// Across clusters: the fresh read after a round re-reads only the
    /// source's aliases and keeps the cached target's.
    FreshSourceOnly,
    /// Across clusters: `complete` switches the target before the source.
    CompleteTargetFirst,
    /// Across clusters: `rollback` changes the source before the target.
    RollbackSourceFirst,
}

/// Which of a command's alias changes one request makes: all of them (one
/// cluster: one atomic `_aliases` request), or those on one cluster
/// (across clusters, `ops::across::update_in_order`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum On {
    /// Every change, in one request.
    All,
    /// The changes to the source's indices.
    Source,
    /// The changes to the target's indices.
    Target,
}

impl On {
    /// Whether this request changes `cluster`'s aliases.
    pub fn covers(self, cluster: Cluster) -> bool {
        match self {
            On::All => true,
            On::Source => cluster == Cluster::Source,
            On::Target => cluster == Cluster::Target,
        }
    }
}

/// One operator command (or one request of a command of several).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `ops::lifecycle::start`: a new index (on the target cluster, across
    /// clusters) with the Migration alias.
    Start,
    /// `ops::lifecycle::resume`.
    Resume,
    /// `ops::lifecycle::complete`, first request: gate, then the record.
    Complete,
    /// `ops::lifecycle::complete`, then the `_aliases` switch (one request
    /// per cluster across clusters).
    Switch(On),
    /// `ops::lifecycle::rollback` (refused outside the window): the
    /// `_aliases` switch back (one request per cluster across clusters). On
    /// one cluster the model clears the record in the same step.
    Rollback(On),
    /// `ops::lifecycle::rollback` and `ops::across::retire_source`, last
    /// request: the completion record cleared.
    ClearRecord,
    /// `ops::across::retire_source`: the old index loses Current and
    /// Historical on its cluster.
    RetireSource,
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
    /// The operator script on one cluster.
    fn script(self) -> &'static [Op] {
        use Op::*;
        const SWITCH: Op = Switch(On::All);
        const ROLLBACK: Op = Rollback(On::All);
        match self {
            Scenario::Cycle => &[Start, Complete, SWITCH, ROLLBACK, Resume, Complete, SWITCH],
            Scenario::AfterCompletion => &[ROLLBACK, Resume, Complete, SWITCH],
            Scenario::Abandon => &[Start, Abandon, DeleteIndex, Start, Complete, SWITCH],
            Scenario::Rejected => &[Start, Complete, SWITCH],
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
    /// The migration goes to another cluster: index 0 on the source, the
    /// indices `start` creates on the target.
    pub across: bool,
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
            across: false,
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

    /// The bound of the suite across clusters: the cycle bound with cached
    /// views the latest one (any older view a worker follows comes from
    /// its stalls and from the fresh reads, whose two halves interleave
    /// with everything else). `cycle(..).across()` has older ones.
    pub fn cycle_across(scenario: Scenario, variant: Variant) -> Self {
        Config {
            view_age: 1,
            ..Self::cycle(scenario, variant).across()
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

    /// The same bound with the migration going to another cluster.
    pub fn across(self) -> Self {
        Config {
            across: true,
            ..self
        }
    }

    /// The indices that live on the target cluster, a bit per index.
    pub fn on_target(&self) -> u8 {
        if self.across {
            ((1u16 << MAX_INDICES) - 2) as u8
        } else {
            0
        }
    }

    /// The operator script, advanced one request at a time at any moment.
    /// Across clusters each alias switch is one request per cluster (the
    /// source first for `complete`, the target first for `rollback`, unless
    /// a variant swaps them), `rollback` clears the record in a request of
    /// its own, and a script that ends in a completion ends the hand-over
    /// (`retire-source`: the alias request, then the record cleared).
    pub fn script(&self) -> Vec<Op> {
        let base = self.scenario.script();
        if !self.across {
            return base.to_vec();
        }
        let mut out = Vec::new();
        for &op in base {
            match op {
                Op::Switch(_) if self.variant == Variant::CompleteTargetFirst => {
                    out.extend([Op::Switch(On::Target), Op::Switch(On::Source)])
                }
                Op::Switch(_) => out.extend([Op::Switch(On::Source), Op::Switch(On::Target)]),
                Op::Rollback(_) if self.variant == Variant::RollbackSourceFirst => {
                    out.extend([Op::Rollback(On::Source), Op::Rollback(On::Target)]);
                    out.push(Op::ClearRecord);
                }
                Op::Rollback(_) => {
                    out.extend([Op::Rollback(On::Target), Op::Rollback(On::Source)]);
                    out.push(Op::ClearRecord);
                }
                op => out.push(op),
            }
        }
        if matches!(base.last(), Some(Op::Switch(_))) {
            out.extend([Op::RetireSource, Op::ClearRecord]);
        }
        out
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
