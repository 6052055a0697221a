//! The latest revision of every document the change walk has seen, so that one read sends
//! each document at most once.
//!
//! Convex's `document_deltas` sends every revision; destinations that merge a read without
//! deduplicating (PyAirbyte's caches: one `MERGE … ON _id` per read) keep the oldest revision
//! of the read, keep deleted documents live, or duplicate `_id`s. Keeping only the latest
//! revision until the walk ends is what makes the destination equal the deployment.
//!
//! Memory: per changed document its latest revision's bytes plus [`ENTRY_OVERHEAD`]; the walk
//! stops taking pages once [`ChangeSet::bytes`] reaches its budget (see `changes.rs`).

use std::collections::HashMap;

use crate::convex::page::Member;

/// Document ids hash with foldhash: a third of SipHash's cost per change, still seeded per
/// process.
type Ids = HashMap<Box<str>, Revision, foldhash::fast::RandomState>;

/// Bytes a buffered document costs beyond its own bytes and id: the map slot, the entry and
/// the two allocations' headers (measured on x86-64: 24 + 40 + 2 × 16, rounded up).
pub const ENTRY_OVERHEAD: usize = 112;

/// One buffered revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    pub ts: i64,
    /// Where the revision came in the walk (its commit timestamp, or its page): the order it
    /// is sent in.
    pub seq: i64,
    pub deleted: bool,
    /// The document exactly as Convex sent it.
    pub raw: Box<[u8]>,
    /// Where its top-level members are, when the page parser found them (so the record
    /// writer need not find them again); empty otherwise.
    pub members: Box<[Member]>,
}

impl Revision {
    /// The members, if known.
    pub fn members(&self) -> Option<&[Member]> {
        (!self.members.is_empty()).then_some(&self.members[..])
    }

    fn bytes(&self) -> usize {
        self.raw.len() + std::mem::size_of_val(&*self.members)
    }
}

/// The latest revision per (stream, document id).
#[derive(Debug, Default)]
pub struct ChangeSet {
    /// Per stream (by index): document id → its latest revision. Keyed by id alone so a
    /// lookup borrows the id instead of allocating a key.
    latest: Vec<Ids>,
    len: usize,
    bytes: usize,
}

impl ChangeSet {
    pub fn new() -> Self {
        ChangeSet::default()
    }

    /// Takes a revision unless a newer one is already held (the log is read in timestamp
    /// order, so older ones only come from a retried page; the same revision again replaces
    /// itself).
    #[allow(clippy::too_many_arguments)]
    pub fn insert(
        &mut self,
        stream: usize,
        id: &str,
        ts: i64,
        seq: i64,
        deleted: bool,
        raw: &[u8],
        members: Option<&[Member]>,
    ) {
        let revision = || Revision {
            ts,
            seq,
            deleted,
            raw: raw.into(),
            members: members.unwrap_or_default().into(),
        };
        if self.latest.len() <= stream {
            self.latest.resize_with(stream + 1, Ids::default);
        }
        let map = &mut self.latest[stream];
        match map.get_mut(id) {
            Some(held) if held.ts > ts => {}
            Some(held) => {
                let new = revision();
                self.bytes = self.bytes - held.bytes() + new.bytes();
                *held = new;
            }
            None => {
                let new = revision();
                self.bytes += new.bytes() + id.len() + ENTRY_OVERHEAD;
                self.len += 1;
                map.insert(id.into(), new);
            }
        }
    }

    /// Memory held, by the accounting above.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether a revision of this document is held.
    pub fn holds(&self, stream: usize, id: &str) -> bool {
        self.latest.get(stream).is_some_and(|m| m.contains_key(id))
    }

    /// Every held revision with its stream and id, by stream, then by `seq` (then id, so
    /// output is deterministic).
    pub fn into_sorted(self) -> Vec<(usize, Box<str>, Revision)> {
        let mut all: Vec<_> = self
            .latest
            .into_iter()
            .enumerate()
            .flat_map(|(stream, map)| map.into_iter().map(move |(id, rev)| (stream, id, rev)))
            .collect();
        all.sort_unstable_by(|a, b| (a.0, a.2.seq, &a.1).cmp(&(b.0, b.2.seq, &b.1)));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_latest_revision_of_each_document_is_kept() {
        let mut set = ChangeSet::new();
        set.insert(0, "a", 10, 10, false, b"{\"v\":11}", None);
        set.insert(0, "a", 12, 12, false, b"{\"v\":12}", None);
        set.insert(0, "a", 11, 11, false, b"{\"v\":0}", None); // a retried page's older revision
        set.insert(0, "b", 11, 11, false, b"{\"v\":1}", None);
        set.insert(0, "b", 13, 13, true, b"{}", None);
        set.insert(1, "a", 5, 5, false, b"{\"other\":1}", None); // same id, other stream
        let all = set.into_sorted();
        let seen: Vec<_> = all
            .iter()
            .map(|(s, id, r)| (*s, &**id, r.ts, r.deleted, &*r.raw))
            .collect();
        assert_eq!(
            seen,
            vec![
                (0, "a", 12, false, &b"{\"v\":12}"[..]),
                (0, "b", 13, true, &b"{}"[..]),
                (1, "a", 5, false, &b"{\"other\":1}"[..]),
            ]
        );
    }

    #[test]
    fn bytes_follow_what_is_held() {
        let mut set = ChangeSet::new();
        set.insert(0, "id1", 1, 1, false, &[b'x'; 100], None);
        assert_eq!(set.bytes(), 100 + 3 + ENTRY_OVERHEAD);
        set.insert(0, "id1", 2, 2, false, &[b'x'; 40], None);
        assert_eq!(set.bytes(), 40 + 3 + ENTRY_OVERHEAD);
        set.insert(0, "id1", 1, 1, false, &[b'x'; 400], None); // an older revision: ignored
        assert_eq!(set.bytes(), 40 + 3 + ENTRY_OVERHEAD);
        set.insert(0, "id2", 3, 3, true, b"{}", None);
        assert_eq!(set.len(), 2);
        assert!(set.holds(0, "id2") && !set.holds(1, "id2") && !set.holds(0, "id3"));
        assert_eq!(set.bytes(), 40 + 3 + 2 + 3 + 2 * ENTRY_OVERHEAD);
    }
}
