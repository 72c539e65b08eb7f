//! The model's state: stores, indices, aliases, completion record, messages
//! in flight, workers in the middle of a message, and the operator script.

/// An index, named by its creation order: 0 is the legacy index that is
/// Current at the start, 1 the first index `start` creates, and so on.
pub type Idx = u8;

/// Documents in the model (ids `0..DOCS`).
pub const DOCS: usize = 2;

/// Indices the model can create (`0..MAX_INDICES`).
pub const MAX_INDICES: usize = 3;

/// A document in the primary stores (S3 original + DynamoDB edits item).
/// Version 0 means the document was never uploaded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreDoc {
    /// DynamoDB `version`, bumped by every upload, edit and delete.
    pub version: u8,
    /// False once deleted (the edits item is a tombstone).
    pub live: bool,
}

/// A `_seq_no` as the engine hands it out, tagged with the index and its
/// incarnation: `if_seq_no` against another index (the alias moved between
/// the GET and the write) conflicts. Assumption: seq_no/primary_term pairs
/// of different indices never collide.
pub type Seen = (Idx, u8, u8);

/// One document id in one index (live, or a tombstone the engine keeps).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Entry {
    /// The projection's `version` stored in the body.
    pub content: u8,
    /// False: a tombstone (a delete the engine remembers with its version).
    pub live: bool,
    /// `_seq_no`: bumped by every write, delete and partial update.
    pub seq: u8,
    /// `_version`: the external version, or bumped by one by internal writes.
    pub ver: u8,
    /// Outcome record `esInfo.migration.migratedTo`.
    pub migrated_to: Option<Idx>,
    /// Outcome record `esInfo.migration.failures.<target>`.
    pub failed: Option<Idx>,
}

impl Entry {
    /// The live document, if any (a GET never returns tombstones).
    pub fn visible(e: Option<Entry>) -> Option<Entry> {
        e.filter(|e| e.live)
    }
}

/// One index of the search engine.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Index {
    /// False before `start` creates it and after `abandon --delete-index`.
    pub exists: bool,
    /// Bumped each time an index of this name is created (its uuid).
    pub incarnation: u8,
    /// Created by a write to a deleted index (hole 8), not by `start`.
    pub stray: bool,
    /// Per document id.
    pub docs: [Option<Entry>; DOCS],
}

/// A cluster: the source, which holds the legacy index, or the target of a
/// migration to another cluster (`index::Cluster`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cluster {
    /// `FERRY_INDEX_URL`.
    Source,
    /// `FERRY_TARGET_INDEX_URL`.
    Target,
}

impl Cluster {
    /// The other one.
    pub fn other(self) -> Cluster {
        match self {
            Cluster::Source => Cluster::Target,
            Cluster::Target => Cluster::Source,
        }
    }
}

/// One of ferry's aliases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Alias {
    /// `Images_Current`.
    Current,
    /// `Images_Migration`.
    Migration,
    /// `Images_Historical`.
    Historical,
    /// `MIGRATION_PAUSED`.
    Paused,
}

impl Alias {
    const ALL: [Alias; 4] = [
        Alias::Current,
        Alias::Migration,
        Alias::Historical,
        Alias::Paused,
    ];

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// The migration state, all in aliases: which aliases each index carries on
/// the cluster it lives on. A cluster's alias table names only its own
/// indices (index 0, the legacy index, is on the source; across clusters
/// `start` creates the others on the target); a view is the union of the two
/// tables (`index::aliases::AliasState::merge`), so it may show a Current
/// on each cluster. On one cluster every index is on the source and this is
/// its one table. The invariants are checked as a property.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Aliases {
    /// Per index, a bit per [`Alias`] it carries.
    on: [u8; MAX_INDICES],
    /// Indices that live on the target cluster, a bit per index (fixed by
    /// the configuration; none on one cluster).
    on_target: u8,
}

impl Aliases {
    /// No aliases yet; `on_target` says which indices live on the target.
    pub fn new(on_target: u8) -> Self {
        Aliases {
            on: [0; MAX_INDICES],
            on_target,
        }
    }

    /// The cluster `idx` lives on (`AliasState::cluster_of`).
    pub fn cluster_of(&self, idx: Idx) -> Cluster {
        if self.on_target & (1 << idx) != 0 {
            Cluster::Target
        } else {
            Cluster::Source
        }
    }

    /// Whether `idx` carries `alias`.
    pub fn carries(&self, idx: Idx, alias: Alias) -> bool {
        self.on[idx as usize] & alias.bit() != 0
    }

    /// Whether `idx` carries any alias.
    pub fn any(&self, idx: Idx) -> bool {
        self.on[idx as usize] != 0
    }

    /// Puts `alias` on `idx` (`on`) or takes it off.
    pub fn set(&mut self, idx: Idx, alias: Alias, on: bool) {
        if on {
            self.on[idx as usize] |= alias.bit();
        } else {
            self.on[idx as usize] &= !alias.bit();
        }
    }

    /// Every index carrying `alias`, on either cluster, in index order.
    pub fn carriers(&self, alias: Alias) -> impl Iterator<Item = Idx> + '_ {
        (0..MAX_INDICES as Idx).filter(move |&i| self.carries(i, alias))
    }

    /// What a request through `alias` on `cluster` resolves to now.
    pub fn resolve(&self, alias: Alias, cluster: Cluster) -> Option<Idx> {
        self.carriers(alias)
            .find(|&i| self.cluster_of(i) == cluster)
    }

    /// The index carrying `alias`, if exactly one does (`one`).
    fn one(&self, alias: Alias) -> Option<Idx> {
        let mut it = self.carriers(alias);
        match (it.next(), it.next()) {
            (Some(i), None) => Some(i),
            _ => None,
        }
    }

    /// The migration target (`AliasState::migration_index`).
    pub fn migration(&self) -> Option<Idx> {
        self.one(Alias::Migration)
    }

    /// The Historical index (`AliasState::historical_index`).
    pub fn historical(&self) -> Option<Idx> {
        self.one(Alias::Historical)
    }

    /// The index carrying the pause alias.
    pub fn paused(&self) -> Option<Idx> {
        self.one(Alias::Paused)
    }

    /// During and after a completion across clusters (and during its
    /// rollback): the old index, Current and Historical on its cluster, and
    /// the new one, Migration or Current on the other (`handed_over`).
    pub fn handed_over(&self) -> Option<(Idx, Idx)> {
        let old = self
            .carriers(Alias::Current)
            .find(|&c| self.carries(c, Alias::Historical))?;
        let new = self
            .carriers(Alias::Current)
            .chain(self.carriers(Alias::Migration))
            .find(|&i| self.cluster_of(i) != self.cluster_of(old))?;
        Some((old, new))
    }

    /// Two Currents on two clusters, neither Historical (`AliasState::torn`):
    /// no moment has this state when `complete` and `rollback` change the
    /// clusters in their order, so it is two reads that straddled a change.
    pub fn torn(&self) -> bool {
        let mut c = self.carriers(Alias::Current);
        match (c.next(), c.next(), c.next()) {
            (Some(a), Some(b), None) => {
                self.cluster_of(a) != self.cluster_of(b) && self.handed_over().is_none()
            }
            _ => false,
        }
    }

    /// After a completion across clusters: (old, new), both Current
    /// (`AliasState::both_current`).
    pub fn both_current(&self) -> Option<(Idx, Idx)> {
        self.handed_over().filter(|&(_, new)| {
            self.carries(new, Alias::Current) && self.carriers(Alias::Current).count() == 2
        })
    }

    /// The primary Current, which the scanner reads and which carries the
    /// outcome records: the only Current, or after a completion across
    /// clusters the new one (`AliasState::current_index`).
    pub fn current(&self) -> Option<Idx> {
        match self.both_current() {
            Some((_, new)) => Some(new),
            None => self.one(Alias::Current),
        }
    }

    /// Every index behind a Current alias, the primary one first
    /// (`AliasState::current_indices`). Two Currents that are not a
    /// hand-over come in name order; the model names indices by creation,
    /// so the legacy index comes first.
    pub fn currents(&self) -> Vec<Idx> {
        match self.both_current() {
            Some((old, new)) => vec![new, old],
            None => self.carriers(Alias::Current).collect(),
        }
    }

    /// The cluster of the primary Current, the source when there is none
    /// (`AliasState::current_cluster`): where an edit writes Current and
    /// the processor reads it.
    pub fn current_cluster(&self) -> Cluster {
        self.current()
            .map_or(Cluster::Source, |c| self.cluster_of(c))
    }

    /// `cluster`'s alias table: the aliases of its own indices only.
    pub fn part(&self, cluster: Cluster) -> Aliases {
        let mut a = *self;
        for i in 0..MAX_INDICES as Idx {
            if self.cluster_of(i) != cluster {
                a.on[i as usize] = 0;
            }
        }
        a
    }

    /// Replaces `cluster`'s alias table with the one in `from`.
    pub fn take_part(&mut self, cluster: Cluster, from: &Aliases) {
        for i in 0..MAX_INDICES as Idx {
            if self.cluster_of(i) == cluster {
                self.on[i as usize] = from.on[i as usize];
            }
        }
    }

    /// The view over two clusters read at different moments: the source's
    /// table from `source`, the target's from `target`
    /// (`context::read_aliases`).
    pub fn merge(source: &Aliases, target: &Aliases) -> Aliases {
        let mut a = *source;
        a.take_part(Cluster::Target, target);
        a
    }
}

/// Lists each index's aliases, by cluster when there are two:
/// `source{idx0:C+H} target{idx1:M+P}`.
impl std::fmt::Debug for Aliases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let table = |f: &mut std::fmt::Formatter<'_>, cluster: Cluster| {
            let mut first = true;
            for i in (0..MAX_INDICES as Idx).filter(|&i| self.cluster_of(i) == cluster) {
                if !self.any(i) {
                    continue;
                }
                let names: Vec<&str> = Alias::ALL
                    .iter()
                    .filter(|&&a| self.carries(i, a))
                    .map(|a| match a {
                        Alias::Current => "C",
                        Alias::Migration => "M",
                        Alias::Historical => "H",
                        Alias::Paused => "P",
                    })
                    .collect();
                write!(
                    f,
                    "{}idx{i}:{}",
                    if first { "" } else { " " },
                    names.join("+")
                )?;
                first = false;
            }
            Ok(())
        };
        if self.on_target == 0 {
            write!(f, "{{")?;
            table(f, Cluster::Source)?;
            return write!(f, "}}");
        }
        write!(f, "source{{")?;
        table(f, Cluster::Source)?;
        write!(f, "}} target{{")?;
        table(f, Cluster::Target)?;
        write!(f, "}}")
    }
}

/// The completion record (`stores::control`): which switch it describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Completion {
    /// The index that was Current before the switch.
    pub from: Idx,
    /// The index that became Current.
    pub to: Idx,
    /// The how-manyth completion this is (a record of an older one is past
    /// its window whatever the clocks say).
    pub n: u8,
}

/// The rollback window of the latest completion, as clocks see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Window {
    /// Rollback accepted, workers write Historical.
    Open,
    /// The margin: rollback refused, workers still write Historical. With
    /// `no_margin` (skewed clocks): workers stopped, rollback still accepted.
    Closing,
    /// Nobody writes Historical, rollback refused.
    Closed,
}

/// What a worker knows of the migration state: aliases plus completion
/// record, read together (`context::state::Snapshot`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct View {
    /// The aliases.
    pub aliases: Aliases,
    /// The completion record (`None` also when reading it failed).
    pub completion: Option<Completion>,
}

/// A migrate message as the scanner publishes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Migrate {
    /// Document id.
    pub doc: u8,
    /// The migration index it was scanned for.
    pub target: Idx,
    /// The projection's version.
    pub version: u8,
    /// The projection is a document (false: the stores said deleted).
    pub live: bool,
    /// The Current document's `_seq_no` at the scan.
    pub seq: Seen,
    /// Delivered before to a worker that crashed (AMQP `redelivered`).
    pub redelivered: bool,
}

/// A message in a queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Msg {
    /// Upload, edit or delete of a document: names only the id.
    Edit(u8),
    /// A scanned projection for the migration index.
    Migrate(Migrate),
}

/// Which index of a round the edit path is writing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Slot {
    /// Through `Images_Migration`.
    Migration,
    /// Through `Images_Current`, on the primary Current's cluster.
    Current,
    /// Through `Images_Current` on the other cluster: the old index, which
    /// keeps Current after a completion across clusters.
    OldCurrent,
    /// Through `Images_Historical`.
    Historical,
}

/// Where an edit is (program counter of `worker::edit_path::apply`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EditPc {
    /// Project from the stores and take the cached view.
    Project,
    /// External write or delete through the Migration alias.
    MigrationWrite,
    /// External delete resolved to a concrete index, not yet sent.
    MigrationDelete(Idx, u8),
    /// A delete found nothing and the index may have been recreated by it.
    StrayCheck(Idx, u8),
    /// Compare-and-set: GET through the alias.
    CasGet(Slot),
    /// Compare-and-set: the write, with what the GET saw (`None`: create).
    CasWrite(Slot, Option<Seen>),
    /// Fresh alias read after the round.
    FreshCheck,
    /// Across clusters, the fresh read's other half: this cluster's table
    /// has been read (as given); the other one is read next.
    FreshHalf(Cluster, Aliases),
    /// Fresh read of the stores' version.
    StoreRecheck,
}

/// A worker in the middle of an edit message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EditProc {
    /// The message (redelivered on a crash).
    pub msg: Msg,
    /// Document id.
    pub doc: u8,
    /// Projected version.
    pub v: u8,
    /// Projected as live (false: deleted).
    pub live: bool,
    /// The view this round follows.
    pub view: View,
    /// Concrete indices this apply covered (bit per index).
    pub covered: u8,
    /// The Migration index this apply wrote (for `migratedTo`).
    pub mark: Option<Idx>,
    /// The Migration index rejected the document (failure record to write).
    pub failed: Option<Idx>,
    /// Current was written (not skipped as already as new).
    pub wrote_current: bool,
    /// Program counter.
    pub pc: EditPc,
}

/// Where a migrate message is (`worker::migration_path::process_inner`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MigPc {
    /// Versioned write into the Migration alias.
    Write,
    /// After a 409: read the Migration document's content version
    /// (`worker::migration_path::behind_on_409`).
    Behind409,
    /// After a write: read the stores' version (`worker::migration_path::moved_on`).
    MovedOn,
    /// Partial update of the outcome on Current (`Some`: failure).
    Outcome(bool),
}

/// A worker in the middle of a migrate message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MigProc {
    /// The message.
    pub m: Migrate,
    /// The cluster of the primary Current in the processor's view: where it
    /// read Current and records the outcome.
    pub on: Cluster,
    /// Program counter.
    pub pc: MigPc,
}

/// A worker in the middle of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proc {
    /// Edit path.
    Edit(EditProc),
    /// Migration processor.
    Migrate(MigProc),
}

impl Proc {
    /// The message to redeliver when this worker crashes.
    pub fn msg(&self) -> Msg {
        match self {
            Proc::Edit(e) => e.msg,
            Proc::Migrate(m) => Msg::Migrate(m.m),
        }
    }

    /// The message as the broker delivers it again after a crash.
    pub fn redelivery(&self) -> Msg {
        match self.msg() {
            Msg::Migrate(m) => Msg::Migrate(Migrate {
                redelivered: true,
                ..m
            }),
            edit => edit,
        }
    }
}

/// The whole system.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    /// Primary stores, per document.
    pub store: [StoreDoc; DOCS],
    /// Indices by name.
    pub indices: [Index; MAX_INDICES],
    /// Indices created so far (the next `start` creates this one).
    pub created: u8,
    /// The aliases.
    pub aliases: Aliases,
    /// The completion record.
    pub completion: Option<Completion>,
    /// Completions so far.
    pub completions: u8,
    /// The latest completion's rollback window (`None`: no switch yet).
    pub window: Option<Window>,
    /// Every distinct view that has existed: a cached view is any of them.
    pub history: Vec<View>,
    /// Messages in flight (a sorted multiset).
    pub pending: Vec<Msg>,
    /// Workers in the middle of a message (sorted: workers are alike).
    pub procs: Vec<Proc>,
    /// The scanner read this Current document and has not published yet.
    pub scanning: Option<(u8, Idx, Seen)>,
    /// Position in the operator script.
    pub op: u8,
    /// Client changes left.
    pub edits_left: u8,
    /// Duplicate deliveries left.
    pub dups_left: u8,
    /// Worker crashes left.
    pub crashes_left: u8,
}

impl State {
    /// The view a fresh read returns now.
    pub fn view(&self) -> View {
        View {
            aliases: self.aliases,
            completion: self.completion,
        }
    }

    /// Records the current view in the history (after an operator step).
    /// Keeps the latest `age` distinct views.
    pub fn remember_view(&mut self, age: usize) {
        let v = self.view();
        self.history.retain(|h| *h != v);
        self.history.push(v);
        if self.history.len() > age {
            self.history.remove(0);
        }
    }

    /// No message pending and nobody in the middle of one.
    pub fn quiescent(&self) -> bool {
        self.pending.is_empty() && self.procs.is_empty() && self.scanning.is_none()
    }

    /// Puts the state in canonical form: the multisets sorted, and the
    /// counters no step can tell apart made equal. A `_seq_no` is only ever
    /// compared for equality with one a message or worker holds (a GET's,
    /// the scanner's), so a document nobody holds one for gets `_seq_no` 0
    /// (the next write makes it 1, distinct from nothing held). A `_version`
    /// is only compared with external versions up to `max_version`, so it is
    /// capped there. States equal but for these counters behave alike.
    pub fn normalize(&mut self, max_version: u8) {
        self.pending.sort();
        self.procs.sort();
        let mut held: Vec<(Idx, u8)> = Vec::new();
        for m in &self.pending {
            if let Msg::Migrate(m) = m {
                held.push((m.seq.0, m.doc));
            }
        }
        for p in &self.procs {
            match p {
                Proc::Migrate(m) => held.push((m.m.seq.0, m.m.doc)),
                Proc::Edit(e) => {
                    if let EditPc::CasWrite(_, Some(seen)) = e.pc {
                        held.push((seen.0, e.doc));
                    }
                }
            }
        }
        if let Some((doc, _, seen)) = self.scanning {
            held.push((seen.0, doc));
        }
        for (i, idx) in self.indices.iter_mut().enumerate() {
            for (d, e) in idx.docs.iter_mut().enumerate() {
                if let Some(e) = e {
                    if !held.contains(&(i as Idx, d as u8)) {
                        e.seq = 0;
                    }
                    e.ver = e.ver.min(max_version);
                }
            }
        }
    }

    /// Whether `idx` has any alias.
    pub fn has_alias(&self, idx: Idx) -> bool {
        self.aliases.any(idx)
    }

    /// The views a worker's cache may hold: on one cluster, any remembered
    /// view. Across clusters the two tables are two `GET _alias` served at
    /// different moments: the source's from one remembered view, the
    /// target's from another, and the completion record, read after both
    /// (`context::state::StateCache::read`), with the later one. A torn
    /// pair is read again before it is cached, so it is only held if the
    /// aliases really were so (then every read again is torn too, and the
    /// code goes on with it).
    pub fn cached_views(&self, across: bool) -> Vec<View> {
        if !across {
            return self.history.clone();
        }
        let h = &self.history;
        let mut out: Vec<View> = Vec::new();
        for src in 0..h.len() {
            for tgt in 0..h.len() {
                let v = View {
                    aliases: Aliases::merge(&h[src].aliases, &h[tgt].aliases),
                    completion: h[src.max(tgt)].completion,
                };
                if (src == tgt || !v.aliases.torn()) && !out.contains(&v) {
                    out.push(v);
                }
            }
        }
        out
    }
}
