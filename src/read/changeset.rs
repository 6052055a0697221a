//! The latest revision of every document the change walk has seen, so that one read sends
//! each document at most once.
//!
//! Convex's `document_deltas` sends every revision; destinations that merge a read without
//! deduplicating (PyAirbyte's caches: one `MERGE … ON _id` per read) keep the oldest revision
//! of the read, keep deleted documents live, or duplicate `_id`s. Keeping only the latest
//! revision until the walk ends is what makes the destination equal the deployment.
//!
//! Memory: the bytes of every revision taken (a superseded one's too, until the set is sent)
//! and its id, their member spans, and per changed document [`ENTRY_OVERHEAD`]; the walk stops
//! taking pages once [`ChangeSet::bytes`] reaches its budget (see `changes.rs`). Document
//! bytes and member spans fill 2 MiB chunks, ids 64 KiB pieces (at most one of each partly
//! empty); entries grow by doubling, and so does the index from room for [`INDEX_START`]
//! documents (256 KiB of slots, written as they fill, and 16 KiB of control bytes).

use convex::page::Member;
use hashbrown::HashTable;
use std::hash::BuildHasher;

/// Bytes a held revision costs beyond its own bytes and id: its entry, and a slot in the
/// index with the control bytes of a table at its fullest (rounded up). A superseded
/// revision keeps costing until the set is sent.
pub const ENTRY_OVERHEAD: usize = std::mem::size_of::<Revision>() + 32;

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
    /// `raw` is the document alone (see `convex::ValueMeta::bare`).
    pub bare: bool,
}

/// One held revision; its bytes, id and members live in the set's arenas. Offsets are `u32`:
/// a chunk is 2 MiB or one value, and the page parser refuses values over
/// `convex::page::MAX_VALUE_BYTES` (16 MiB). Small, so that a held set of many short
/// documents costs little beyond their bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    pub ts: i64,
    /// Where the revision came in the walk (its commit timestamp, or its page): the order it
    /// is sent in.
    pub seq: i64,
    /// When it was taken, among all the set took: orders revisions of one `seq` (a
    /// transaction, or a page) as Convex sent them. (A set holds far fewer than 2^32: each
    /// revision costs [`ENTRY_OVERHEAD`] of a budget of at most 64 GiB.)
    arrival: u32,
    stream: u32,
    /// Its chunk; in it, its bytes from `start`, then its member spans.
    chunk: u32,
    start: u32,
    raw_len: u32,
    members: u32,
    /// Its id: in `ids[id_piece]`, from `id_start`.
    id_piece: u32,
    id_start: u32,
    id_len: u32,
    pub deleted: bool,
    /// Its bytes are the document alone (see `convex::ValueMeta::bare`).
    pub bare: bool,
    /// A later revision of its document was taken.
    superseded: bool,
}

impl Revision {
    pub fn stream(&self) -> usize {
        self.stream as usize
    }

    fn at(&self) -> usize {
        self.start as usize
    }
}

/// An offset within a chunk, or a count of what one value holds: both fit (see [`Revision`]).
fn small(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Where a document's latest revision is, with its key's hash (so growing the index never
/// reads the arena).
struct Slot {
    hash: u64,
    stream: u32,
    at: u32,
}

/// Documents the index first has room for, once a change is held: it then has 16,384 slots.
const INDEX_START: usize = 8192;

/// Bytes of one arena chunk, a huge page (a larger document gets a chunk of its own size):
/// chunks are never moved, so the arena grows without copying what it holds.
const CHUNK: usize = 2 << 20;

/// The latest revision per (stream, document id).
///
/// A revision's bytes are copied whole, then its member spans, into a chunked arena, and its
/// id into pieces of their own. Each stream keeps its revisions' entries in the order they
/// were taken (a superseded one is marked, not moved), and an index finds a document's latest.
/// So taking a change allocates nothing of its own and looks its document up once, and the set
/// is usually in sending order already when the walk ends.
#[derive(Default)]
pub struct ChangeSet {
    /// Per stream (by index): its revisions, as they were taken.
    streams: Vec<Vec<Revision>>,
    index: HashTable<Slot>,
    hasher: foldhash::fast::RandomState,
    /// Every taken revision's bytes, exactly as Convex sent them, each followed by where its
    /// top-level members are, when the page parser found them (so the record writer need not
    /// find them again).
    docs: Vec<Chunk>,
    /// Every taken revision's id, in pieces that are never grown past their capacity (so no
    /// id moves).
    ids: Vec<String>,
    docs_bytes: usize,
    taken: usize,
}

impl std::fmt::Debug for ChangeSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeSet")
            .field("held", &self.len())
            .field("bytes", &self.bytes())
            .finish()
    }
}

/// Its id, out of the id pieces.
fn id_of<'a>(ids: &'a [String], rev: &Revision) -> &'a str {
    let at = rev.id_start as usize;
    ids[rev.id_piece as usize]
        .get(at..at + rev.id_len as usize)
        .unwrap_or_default()
}

/// Bytes of one piece of ids: ids apart from the documents, so that looking one up or
/// sending it reads a few dense pieces, not a line of each document.
const ID_PIECE: usize = 64 << 10;

/// A member span in the arena: four little-endian `u32`s.
const MEMBER_BYTES: usize = 16;

/// Its arena bytes. One `u128` instead of four `u32`s written apart: a held document's
/// dozen spans are then a dozen stores, which sending reads back the same way.
fn encode(m: &Member) -> [u8; MEMBER_BYTES] {
    let n = u128::from(m.key.0)
        | u128::from(m.key.1) << 32
        | u128::from(m.value.0) << 64
        | u128::from(m.value.1) << 96;
    n.to_le_bytes()
}

fn decode(bytes: &[u8; MEMBER_BYTES]) -> Member {
    let n = u128::from_le_bytes(*bytes);
    // Each `as u32` keeps the 32 bits it is shifted to.
    Member {
        key: (n as u32, (n >> 32) as u32),
        value: ((n >> 64) as u32, (n >> 96) as u32),
    }
}

/// An arena chunk: anonymous memory, which the kernel may back with huge pages (one fault
/// per 2 MiB instead of one per 4 KiB: faulting the held set in page by page cost as much as
/// all the rest of holding it). Heap memory where it cannot be mapped.
struct Chunk {
    memory: Memory,
    len: usize,
}

enum Memory {
    Mapped(memmap2::MmapMut),
    Heap(Vec<u8>),
}

impl Chunk {
    fn new(capacity: usize) -> Chunk {
        let memory = match memmap2::MmapMut::map_anon(capacity) {
            Ok(map) => {
                // Only advice: without huge pages the chunk works the same.
                #[cfg(target_os = "linux")]
                let _ = map.advise(memmap2::Advice::HugePage);
                Memory::Mapped(map)
            }
            Err(_) => Memory::Heap(vec![0; capacity]),
        };
        Chunk { memory, len: 0 }
    }

    fn capacity(&self) -> usize {
        match &self.memory {
            Memory::Mapped(map) => map.len(),
            Memory::Heap(vec) => vec.len(),
        }
    }

    fn room(&self) -> usize {
        self.capacity() - self.len
    }

    fn bytes(&self) -> &[u8] {
        let all: &[u8] = match &self.memory {
            Memory::Mapped(map) => map,
            Memory::Heap(vec) => vec,
        };
        &all[..self.len]
    }

    /// The next `len` bytes, to be written, now part of the chunk; the caller made sure
    /// there is room.
    fn append(&mut self, len: usize) -> &mut [u8] {
        let all: &mut [u8] = match &mut self.memory {
            Memory::Mapped(map) => map,
            Memory::Heap(vec) => vec,
        };
        let at = self.len;
        self.len += len;
        &mut all[at..at + len]
    }
}

impl ChangeSet {
    pub fn new() -> Self {
        ChangeSet::default()
    }

    fn find(&self, stream: usize, id: &str) -> (u64, Option<&Slot>) {
        let hash = self.hasher.hash_one((stream, id.as_bytes()));
        let slot = self.index.find(hash, |slot| {
            slot.hash == hash
                && slot.stream as usize == stream
                && id_of(&self.ids, &self.streams[stream][slot.at as usize]) == id
        });
        (hash, slot)
    }

    /// Takes a revision unless a newer one is already held (the log is read in timestamp
    /// order, so older ones only come from a retried page; the same revision again replaces
    /// itself).
    pub fn insert(&mut self, change: &Change<'_>) {
        let (stream, id, raw) = (change.stream, change.id, change.raw);
        if self.streams.len() <= stream {
            self.streams.resize_with(stream + 1, Vec::new);
        }
        let (hash, held) = self.find(stream, id);
        let held = held.map(|slot| slot.at as usize);
        if held.is_some_and(|at| self.streams[stream][at].ts > change.ts) {
            return;
        }
        let members = change.members.unwrap_or_default();
        let len = raw.len() + members.len() * MEMBER_BYTES;
        if self.docs.last().is_none_or(|c| c.room() < len) {
            self.docs.push(Chunk::new(CHUNK.max(len)));
        }
        let chunk = self.docs.len() - 1;
        let arena = &mut self.docs[chunk];
        let start = arena.len;
        let (doc, spans) = arena.append(len).split_at_mut(raw.len());
        doc.copy_from_slice(raw);
        for (to, member) in spans.as_chunks_mut().0.iter_mut().zip(members) {
            *to = encode(member);
        }
        if self
            .ids
            .last()
            .is_none_or(|p| p.capacity() - p.len() < id.len())
        {
            self.ids.push(String::with_capacity(ID_PIECE.max(id.len())));
        }
        let id_piece = self.ids.len() - 1;
        let id_start = self.ids[id_piece].len();
        self.ids[id_piece].push_str(id);
        self.docs_bytes += len + id.len();
        let entries = &mut self.streams[stream];
        let at = entries.len();
        entries.push(Revision {
            ts: change.ts,
            seq: change.seq,
            arrival: small(self.taken),
            stream: small(stream),
            chunk: small(chunk),
            start: small(start),
            raw_len: small(raw.len()),
            members: small(members.len()),
            id_piece: small(id_piece),
            id_start: small(id_start),
            id_len: small(id.len()),
            deleted: change.deleted,
            bare: change.bare,
            superseded: false,
        });
        self.taken += 1;
        match held {
            Some(old) => {
                entries[old].superseded = true;
                let ids = &self.ids;
                let streams = &self.streams;
                if let Some(slot) = self.index.find_mut(hash, |slot| {
                    slot.stream as usize == stream
                        && slot.at as usize == old
                        && id_of(ids, &streams[stream][old]) == id
                }) {
                    slot.at = small(at);
                }
            }
            None => {
                if self.index.capacity() == 0 {
                    // Growing by doubling from nothing rehashes into fresh memory at every
                    // step; the slots of a table this size are only touched as they fill.
                    self.index.reserve(INDEX_START, |slot| slot.hash);
                }
                let slot = Slot {
                    hash,
                    stream: small(stream),
                    at: small(at),
                };
                self.index.insert_unique(hash, slot, |slot| slot.hash);
            }
        }
    }

    /// Memory held, by the accounting above.
    pub fn bytes(&self) -> usize {
        let taken: usize = self.streams.iter().map(Vec::len).sum();
        self.docs_bytes + taken * ENTRY_OVERHEAD
    }

    /// Documents held.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether a revision of this document is held.
    pub fn holds(&self, stream: usize, id: &str) -> bool {
        stream < self.streams.len() && self.find(stream, id).1.is_some()
    }

    /// Every held revision, by stream, then by `seq`, then as it arrived (the order Convex
    /// sent a transaction's or a page's revisions in). A walk takes revisions in `seq` order
    /// but for a retried page's, so a stream's are sorted only when that happened. In place:
    /// nothing held is copied.
    pub fn into_sorted(self) -> Sorted {
        let mut streams = self.streams;
        for revisions in &mut streams {
            revisions.retain(|rev| !rev.superseded);
            if !revisions.is_sorted_by_key(|rev| (rev.seq, rev.arrival)) {
                revisions.sort_unstable_by_key(|rev| (rev.seq, rev.arrival));
            }
        }
        Sorted {
            streams,
            docs: self.docs,
            ids: self.ids,
        }
    }
}

/// A change set in the order it is sent.
pub struct Sorted {
    /// Per stream, its latest revisions in sending order.
    streams: Vec<Vec<Revision>>,
    docs: Vec<Chunk>,
    ids: Vec<String>,
}

/// Asks the CPU to start loading `bytes` into its caches; only a hint.
fn prefetch(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    for at in (0..bytes.len())
        .step_by(64)
        .chain(bytes.len().checked_sub(1))
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch never faults and writes nothing; the address is in `bytes`.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(bytes[at..].as_ptr().cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

/// How many revisions ahead of the one being sent [`Sorted::entries`] asks for the bytes of.
const PREFETCH_AHEAD: usize = 8;

impl Sorted {
    /// Every revision, in sending order. A held set is usually larger than the CPU's caches
    /// and sending reads each revision once, so the bytes of the revision [`PREFETCH_AHEAD`]
    /// places on are asked for early: their loads overlap the sending of those before them
    /// instead of stalling it one after another.
    pub fn entries(&self) -> impl Iterator<Item = &Revision> {
        let mut ahead = self.streams.iter().flatten().skip(PREFETCH_AHEAD);
        self.streams.iter().flatten().inspect(move |_| {
            if let Some(rev) = ahead.next() {
                let len = rev.raw_len as usize + rev.members as usize * MEMBER_BYTES;
                prefetch(&self.docs[rev.chunk as usize].bytes()[rev.at()..rev.at() + len]);
            }
        })
    }

    /// The revision's document, exactly as Convex sent it.
    pub fn raw(&self, rev: &Revision) -> &[u8] {
        &self.docs[rev.chunk as usize].bytes()[rev.at()..rev.at() + rev.raw_len as usize]
    }

    /// The revision's document id.
    pub fn id(&self, rev: &Revision) -> &str {
        id_of(&self.ids, rev)
    }

    /// Where its top-level members are, if the page parser found them: decoded into
    /// `scratch`.
    pub fn members<'a>(
        &self,
        rev: &Revision,
        scratch: &'a mut Vec<Member>,
    ) -> Option<&'a [Member]> {
        if rev.members == 0 {
            return None;
        }
        let at = rev.at() + rev.raw_len as usize;
        let len = rev.members as usize * MEMBER_BYTES;
        let bytes = &self.docs[rev.chunk as usize].bytes()[at..at + len];
        scratch.clear();
        scratch.extend(bytes.as_chunks().0.iter().map(decode));
        Some(scratch)
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
            bare: false,
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
            .entries()
            .map(|r| (r.stream(), all.id(r), r.ts, r.deleted, all.raw(r)))
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
    fn revisions_taken_out_of_walk_order_are_sent_in_it() {
        let mut set = ChangeSet::new();
        insert(&mut set, 0, "a", 5, 5, false, b"{}", None);
        insert(&mut set, 0, "b", 7, 7, false, b"{}", None);
        // A retried page: its revisions come again, after later ones, with a new document.
        insert(&mut set, 0, "a", 5, 5, false, b"{}", None);
        insert(&mut set, 0, "c", 5, 5, false, b"{}", None);
        assert_eq!(set.len(), 3);
        let all = set.into_sorted();
        let seen: Vec<_> = all.entries().map(|r| (all.id(r), r.seq)).collect();
        assert_eq!(seen, [("a", 5), ("c", 5), ("b", 7)]);
    }

    #[test]
    fn ids_spread_over_many_pieces_stay_whole() {
        let mut set = ChangeSet::new();
        // Ids of varying length, more than several pieces of them: some land at a piece's end.
        let ids: Vec<String> = (0..20_000)
            .map(|i| format!("k{}{i}", "x".repeat(i % 37)))
            .collect();
        for (i, id) in ids.iter().enumerate() {
            insert(&mut set, i % 3, id, i as i64, i as i64, false, b"{}", None);
        }
        assert!(set.ids.len() > 4, "{} pieces", set.ids.len());
        assert!(ids.iter().enumerate().all(|(i, id)| set.holds(i % 3, id)));
        assert!(!set.holds(1, &ids[0]));
        let sorted = set.into_sorted();
        let mut seen: Vec<&str> = sorted.entries().map(|r| sorted.id(r)).collect();
        seen.sort_unstable();
        let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
        want.sort_unstable();
        assert_eq!(seen, want);
    }

    #[test]
    fn bytes_follow_what_is_held() {
        // docs/convex.md states what a held change costs beyond its bytes.
        assert_eq!(ENTRY_OVERHEAD, 88);
        let mut set = ChangeSet::new();
        insert(&mut set, 0, "id1", 1, 1, false, &[b'x'; 100], None);
        assert_eq!(set.bytes(), 100 + 3 + ENTRY_OVERHEAD);
        // A superseded revision's bytes (and id) stay until the set is sent.
        insert(&mut set, 0, "id1", 2, 2, false, &[b'x'; 40], None);
        assert_eq!(set.bytes(), 140 + 6 + 2 * ENTRY_OVERHEAD);
        insert(&mut set, 0, "id1", 1, 1, false, &[b'x'; 400], None); // an older revision: ignored
        assert_eq!(set.bytes(), 140 + 6 + 2 * ENTRY_OVERHEAD);
        // Spans that use every bit of their four numbers, each number distinct.
        let members = [
            Member {
                key: (1, 2),
                value: (3, 4),
            },
            Member {
                key: (u32::MAX, 0x8000_0001),
                value: (0x1234_5678, u32::MAX - 1),
            },
        ];
        insert(&mut set, 0, "id2", 3, 3, true, b"{}", Some(&members));
        assert_eq!(set.len(), 2);
        assert!(set.holds(0, "id2") && !set.holds(1, "id2") && !set.holds(0, "id3"));
        assert_eq!(
            set.bytes(),
            140 + 2 + 2 * MEMBER_BYTES + 6 + 3 + 3 * ENTRY_OVERHEAD
        );
        let sorted = set.into_sorted();
        let revs: Vec<_> = sorted.entries().collect();
        assert_eq!(sorted.id(revs[1]), "id2");
        let mut scratch = Vec::new();
        assert_eq!(sorted.raw(revs[1]), b"{}");
        assert_eq!(sorted.members(revs[1], &mut scratch), Some(&members[..]));
        assert_eq!(sorted.members(revs[0], &mut scratch), None);
    }
}
