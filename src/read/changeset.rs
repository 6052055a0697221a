//! The latest revision of every document the change walk has seen, so that one read sends
//! each document at most once.
//!
//! Convex's `document_deltas` sends every revision; destinations that merge a read without
//! deduplicating (PyAirbyte's caches: one `MERGE … ON _id` per read) keep the oldest revision
//! of the read, keep deleted documents live, or duplicate `_id`s. Keeping only the latest
//! revision until the walk ends is what makes the destination equal the deployment.
//!
//! Memory: the bytes of every revision taken (a superseded one's too, until the set is sent),
//! their member spans, and per changed document its id plus [`ENTRY_OVERHEAD`]; the walk stops
//! taking pages once [`ChangeSet::bytes`] reaches its budget (see `changes.rs`). Document
//! bytes fill 1 MiB chunks (at most one partly empty); member spans grow by doubling.

use std::collections::HashMap;

use convex::page::Member;

/// Document ids hash with foldhash: a third of SipHash's cost per change, still seeded per
/// process.
type Ids = HashMap<Box<str>, Revision, foldhash::fast::RandomState>;

/// Bytes a buffered document costs beyond its own bytes and id: the map slot, the entry and
/// the id's allocation header (measured on x86-64, rounded up).
pub const ENTRY_OVERHEAD: usize = 112;

/// One revision a walk takes: of which stream and document, when it was committed, where it
/// came in the walk, and its bytes as Convex sent them.
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    pub stream: usize,
    pub id: &'a str,
    pub ts: i64,
    /// Where it came in the walk (its commit timestamp, or its page): the order it is sent in.
    pub seq: i64,
    pub deleted: bool,
    pub raw: &'a [u8],
    /// Where its top-level members are, when the page parser found them.
    pub members: Option<&'a [Member]>,
}

/// One buffered revision; its bytes and members live in the set's arenas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    pub ts: i64,
    /// Where the revision came in the walk (its commit timestamp, or its page): the order it
    /// is sent in.
    pub seq: i64,
    pub deleted: bool,
    /// Its bytes: chunk, then range in it.
    raw: (usize, std::ops::Range<usize>),
    members: std::ops::Range<usize>,
    /// When it was taken, among all the set took: orders revisions of one `seq` (a
    /// transaction, or a page) as Convex sent them.
    arrival: u64,
}

/// Bytes of one arena chunk (a larger document gets a chunk of its own size): chunks are
/// never moved, so the arena grows without copying what it holds.
const CHUNK: usize = 1 << 20;

/// The latest revision per (stream, document id).
///
/// Revisions are copied into two arenas (document bytes, member spans) instead of an
/// allocation each: a change costs one allocation (its id, once per document) instead of
/// three. A superseded revision's bytes stay in the arena until the set is sent, and count.
#[derive(Debug, Default)]
pub struct ChangeSet {
    /// Per stream (by index): document id → its latest revision. Keyed by id alone so a
    /// lookup borrows the id instead of allocating a key.
    latest: Vec<Ids>,
    /// Every taken revision's bytes, exactly as Convex sent them.
    docs: Vec<Vec<u8>>,
    docs_bytes: usize,
    /// Where each taken revision's top-level members are, when the page parser found them
    /// (so the record writer need not find them again).
    members: Vec<Member>,
    len: usize,
    ids_bytes: usize,
    taken: u64,
}

impl ChangeSet {
    pub fn new() -> Self {
        ChangeSet::default()
    }

    /// Takes a revision unless a newer one is already held (the log is read in timestamp
    /// order, so older ones only come from a retried page; the same revision again replaces
    /// itself).
    pub fn insert(&mut self, change: &Change<'_>) {
        let (stream, id, ts, raw) = (change.stream, change.id, change.ts, change.raw);
        if self.latest.len() <= stream {
            self.latest.resize_with(stream + 1, Ids::default);
        }
        let map = &mut self.latest[stream];
        let held = map.get_mut(id);
        if held.as_ref().is_some_and(|h| h.ts > ts) {
            return;
        }
        if self
            .docs
            .last()
            .is_none_or(|c| c.capacity() - c.len() < raw.len())
        {
            self.docs.push(Vec::with_capacity(CHUNK.max(raw.len())));
        }
        let chunk = self.docs.len() - 1;
        let docs = &mut self.docs[chunk];
        let start = docs.len();
        docs.extend_from_slice(raw);
        self.docs_bytes += raw.len();
        let first = self.members.len();
        self.members
            .extend_from_slice(change.members.unwrap_or_default());
        let revision = Revision {
            ts,
            seq: change.seq,
            deleted: change.deleted,
            raw: (chunk, start..start + raw.len()),
            members: first..self.members.len(),
            arrival: self.taken,
        };
        self.taken += 1;
        match held {
            Some(held) => *held = revision,
            None => {
                self.ids_bytes += id.len() + ENTRY_OVERHEAD;
                self.len += 1;
                map.insert(id.into(), revision);
            }
        }
    }

    /// Memory held, by the accounting above.
    pub fn bytes(&self) -> usize {
        self.docs_bytes + std::mem::size_of_val(&self.members[..]) + self.ids_bytes
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether a revision of this document is held.
    pub fn holds(&self, stream: usize, id: &str) -> bool {
        self.latest.get(stream).is_some_and(|m| m.contains_key(id))
    }

    /// Every held revision with its stream and id, by stream, then by `seq`, then as it
    /// arrived (the order Convex sent a transaction's or a page's revisions in).
    ///
    /// Sorted by a small integer key, then moved into place once: comparing whole entries (and
    /// ids) made the sort a tenth of an incremental read's instructions.
    pub fn into_sorted(self) -> Sorted {
        let mut slots: Vec<Option<(usize, Box<str>, Revision)>> = self
            .latest
            .into_iter()
            .enumerate()
            .flat_map(|(stream, map)| {
                map.into_iter()
                    .map(move |(id, rev)| Some((stream, id, rev)))
            })
            .collect();
        let mut keys: Vec<(usize, i64, u64, usize)> = slots
            .iter()
            .enumerate()
            .filter_map(|(i, e)| {
                e.as_ref()
                    .map(|(stream, _, rev)| (*stream, rev.seq, rev.arrival, i))
            })
            .collect();
        keys.sort_unstable();
        let entries = keys.iter().filter_map(|k| slots[k.3].take()).collect();
        Sorted {
            entries,
            docs: self.docs,
            members: self.members,
        }
    }
}

/// A change set in the order it is sent.
pub struct Sorted {
    pub entries: Vec<(usize, Box<str>, Revision)>,
    docs: Vec<Vec<u8>>,
    members: Vec<Member>,
}

impl Sorted {
    /// The revision's document, exactly as Convex sent it.
    pub fn raw(&self, rev: &Revision) -> &[u8] {
        &self.docs[rev.raw.0][rev.raw.1.clone()]
    }

    /// Where its top-level members are, if the page parser found them.
    pub fn members(&self, rev: &Revision) -> Option<&[Member]> {
        (!rev.members.is_empty()).then(|| &self.members[rev.members.clone()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::too_many_arguments)]
    fn insert(
        set: &mut ChangeSet,
        stream: usize,
        id: &str,
        ts: i64,
        seq: i64,
        deleted: bool,
        raw: &[u8],
        members: Option<&[Member]>,
    ) {
        set.insert(&Change {
            stream,
            id,
            ts,
            seq,
            deleted,
            raw,
            members,
        });
    }

    #[test]
    fn only_the_latest_revision_of_each_document_is_kept() {
        let mut set = ChangeSet::new();
        insert(&mut set, 0, "a", 10, 10, false, b"{\"v\":11}", None);
        insert(&mut set, 0, "a", 12, 12, false, b"{\"v\":12}", None);
        insert(&mut set, 0, "a", 11, 11, false, b"{\"v\":0}", None); // a retried page's older revision
        insert(&mut set, 0, "b", 11, 11, false, b"{\"v\":1}", None);
        insert(&mut set, 0, "b", 13, 13, true, b"{}", None);
        insert(&mut set, 1, "a", 5, 5, false, b"{\"other\":1}", None); // same id, other stream
        let all = set.into_sorted();
        let seen: Vec<_> = all
            .entries
            .iter()
            .map(|(s, id, r)| (*s, &**id, r.ts, r.deleted, all.raw(r)))
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
        insert(&mut set, 0, "id1", 1, 1, false, &[b'x'; 100], None);
        assert_eq!(set.bytes(), 100 + 3 + ENTRY_OVERHEAD);
        // A superseded revision's bytes stay until the set is sent.
        insert(&mut set, 0, "id1", 2, 2, false, &[b'x'; 40], None);
        assert_eq!(set.bytes(), 140 + 3 + ENTRY_OVERHEAD);
        insert(&mut set, 0, "id1", 1, 1, false, &[b'x'; 400], None); // an older revision: ignored
        assert_eq!(set.bytes(), 140 + 3 + ENTRY_OVERHEAD);
        let member = Member {
            key: (1, 2),
            value: (3, 4),
        };
        insert(&mut set, 0, "id2", 3, 3, true, b"{}", Some(&[member]));
        assert_eq!(set.len(), 2);
        assert!(set.holds(0, "id2") && !set.holds(1, "id2") && !set.holds(0, "id3"));
        assert_eq!(
            set.bytes(),
            140 + 2 + std::mem::size_of::<Member>() + 3 + 3 + 2 * ENTRY_OVERHEAD
        );
        let sorted = set.into_sorted();
        let (_, id, rev) = &sorted.entries[1];
        assert_eq!(&**id, "id2");
        assert_eq!(sorted.members(rev), Some(&[member][..]));
        assert_eq!(sorted.members(&sorted.entries[0].2), None);
    }
}
