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
}

/// The latest revision per (stream, document id).
#[derive(Debug, Default)]
pub struct ChangeSet {
    latest: HashMap<(usize, Box<str>), Revision>,
    bytes: usize,
}

impl ChangeSet {
    pub fn new() -> Self {
        ChangeSet::default()
    }

    /// Takes a revision unless a newer one is already held (the log is read in timestamp
    /// order, so older ones only come from a retried page; the same revision again replaces
    /// itself).
    pub fn insert(
        &mut self,
        stream: usize,
        id: &str,
        ts: i64,
        seq: i64,
        deleted: bool,
        raw: &[u8],
    ) {
        let cost = |raw_len: usize| raw_len + id.len() + ENTRY_OVERHEAD;
        match self.latest.get_mut(&(stream, Box::from(id))) {
            Some(held) if held.ts > ts => {}
            Some(held) => {
                self.bytes = self.bytes - held.raw.len() + raw.len();
                *held = Revision {
                    ts,
                    seq,
                    deleted,
                    raw: raw.into(),
                };
            }
            None => {
                self.bytes += cost(raw.len());
                self.latest.insert(
                    (stream, id.into()),
                    Revision {
                        ts,
                        seq,
                        deleted,
                        raw: raw.into(),
                    },
                );
            }
        }
    }

    /// Memory held, by the accounting above.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.latest.len()
    }

    /// Every held revision with its stream and id, by stream, then by `seq` (then id, so
    /// output is deterministic).
    pub fn into_sorted(self) -> Vec<(usize, Box<str>, Revision)> {
        let mut all: Vec<_> = self
            .latest
            .into_iter()
            .map(|((stream, id), rev)| (stream, id, rev))
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
        set.insert(0, "a", 10, 10, false, b"{\"v\":11}");
        set.insert(0, "a", 12, 12, false, b"{\"v\":12}");
        set.insert(0, "a", 11, 11, false, b"{\"v\":0}"); // a retried page's older revision
        set.insert(0, "b", 11, 11, false, b"{\"v\":1}");
        set.insert(0, "b", 13, 13, true, b"{}");
        set.insert(1, "a", 5, 5, false, b"{\"other\":1}"); // same id, other stream
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
        set.insert(0, "id1", 1, 1, false, &[b'x'; 100]);
        assert_eq!(set.bytes(), 100 + 3 + ENTRY_OVERHEAD);
        set.insert(0, "id1", 2, 2, false, &[b'x'; 40]);
        assert_eq!(set.bytes(), 40 + 3 + ENTRY_OVERHEAD);
        set.insert(0, "id1", 1, 1, false, &[b'x'; 400]); // an older revision: ignored
        assert_eq!(set.bytes(), 40 + 3 + ENTRY_OVERHEAD);
        set.insert(0, "id2", 3, 3, true, b"{}");
        assert_eq!(set.len(), 2);
        assert_eq!(set.bytes(), 40 + 3 + 2 + 3 + 2 * ENTRY_OVERHEAD);
    }
}
