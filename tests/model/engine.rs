//! The search engine's document operations, one request each, as the model
//! assumes them: external versions with tombstones, `if_seq_no`, partial
//! updates, alias resolution at the instant of the request.

use super::state::{Entry, Idx, Seen, State};

/// Result of a versioned (external) write or delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ext {
    /// Written.
    Done,
    /// A delete that found no live document (the tombstone is written).
    NotFound,
    /// 409: the stored `_version` is as high or higher.
    Conflict,
}

/// Result of a partial update with `if_seq_no`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Partial {
    /// Updated.
    Done,
    /// The document is gone.
    Missing,
    /// Changed since the given seq_no.
    Conflict,
}

impl State {
    /// A GET: the live document, with the `_seq_no` to compare-and-set on.
    pub fn get(&self, idx: Idx, doc: u8) -> Option<(Entry, Seen)> {
        let i = &self.indices[idx as usize];
        Entry::visible(i.docs[doc as usize]).map(|e| (e, (idx, i.incarnation, e.seq)))
    }

    /// The stored entry, tombstones included.
    fn slot(&mut self, idx: Idx, doc: u8) -> &mut Option<Entry> {
        &mut self.indices[idx as usize].docs[doc as usize]
    }

    /// Index with `version_type=external` (`IndexClient::put_external`).
    pub fn put_external(&mut self, idx: Idx, doc: u8, v: u8) -> Ext {
        match self.write_ext(idx, doc, v, true) {
            None => Ext::Conflict,
            Some(_) => Ext::Done,
        }
    }

    /// An external-version write of a live document or a tombstone:
    /// `None` on conflict, else what the slot held before.
    fn write_ext(&mut self, idx: Idx, doc: u8, v: u8, live: bool) -> Option<Option<Entry>> {
        let old = *self.slot(idx, doc);
        if old.is_some_and(|e| e.ver >= v) {
            return None;
        }
        *self.slot(idx, doc) = Some(Entry {
            content: v,
            live,
            seq: old.map_or(1, |e| e.seq + 1),
            ver: v,
            migrated_to: None,
            failed: None,
        });
        Some(old)
    }

    /// Delete with `version_type=external` to a concrete index name
    /// (`IndexClient::delete_external`). A delete to an index that no longer
    /// exists creates it (the engine auto-creates on a versioned delete).
    pub fn delete_external(&mut self, idx: Idx, doc: u8, v: u8) -> Ext {
        let i = &mut self.indices[idx as usize];
        if !i.exists {
            i.exists = true;
            i.stray = true;
            i.incarnation += 1;
            i.docs = Default::default();
        }
        match self.write_ext(idx, doc, v, false) {
            None => Ext::Conflict,
            Some(old) if old.is_some_and(|e| e.live) => Ext::Done,
            Some(_) => Ext::NotFound,
        }
    }

    /// Whether `seen` (or "absent" for `None`) still holds in `idx`.
    fn unchanged(&self, idx: Idx, doc: u8, seen: Option<Seen>) -> bool {
        let now = self.get(idx, doc).map(|(_, s)| s);
        now == seen
    }

    /// Index with `if_seq_no` (or `op_type=create` when `seen` is `None`),
    /// internal version + 1 (`IndexClient::put_cas`). False: conflict.
    pub fn put_cas(&mut self, idx: Idx, doc: u8, seen: Option<Seen>, body: Entry) -> bool {
        if !self.unchanged(idx, doc, seen) {
            return false;
        }
        let old = *self.slot(idx, doc);
        *self.slot(idx, doc) = Some(Entry {
            live: true,
            seq: old.map_or(1, |e| e.seq + 1),
            ver: old.map_or(1, |e| e.ver + 1),
            ..body
        });
        true
    }

    /// Delete with `if_seq_no` (`IndexClient::delete_cas`). False: conflict.
    pub fn delete_cas(&mut self, idx: Idx, doc: u8, seen: Seen) -> bool {
        if !self.unchanged(idx, doc, Some(seen)) {
            return false;
        }
        if let Some(e) = self.slot(idx, doc) {
            e.live = false;
            e.seq += 1;
            e.ver += 1;
            e.migrated_to = None;
            e.failed = None;
        }
        true
    }

    /// Partial update with `if_seq_no`, no upsert
    /// (`IndexClient::update_partial`): the outcome record.
    pub fn update_outcome(
        &mut self,
        idx: Idx,
        doc: u8,
        seen: Seen,
        target: Idx,
        failed: bool,
    ) -> Partial {
        let Some((_, now)) = self.get(idx, doc) else {
            return Partial::Missing;
        };
        if now != seen {
            return Partial::Conflict;
        }
        if let Some(e) = self.slot(idx, doc) {
            if failed {
                e.failed = Some(target);
            } else {
                e.migrated_to = Some(target);
            }
            e.seq += 1;
            e.ver += 1;
        }
        Partial::Done
    }
}
