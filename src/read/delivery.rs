//! Delivery of a change walk, the same for both Convex APIs: which values go out at once and
//! which are held, the byte budget of what is held, and the sending of the held set with its
//! checkpoints.
//!
//! A read sends each document at most once (destinations that merge a read without
//! deduplicating, PyAirbyte's caches among them, keep the oldest revision of a read or
//! duplicate rows). So a walk holds the latest revision of every changed document and sends
//! the held set at its end, ordered by stream and by where each revision came in the walk
//! (`seq`), with a STATE at a `seq` boundary every so many records: resuming from there loses
//! nothing (every revision up to that `seq` is out, later ones supersede the rest).
//!
//! A page that walks a table by `_id` (a Data Sync snapshot) goes out at once, value by value,
//! so a snapshot of any size streams through; after such a page the held set goes out too.
//! Each stream remembers what it sent before the end: the `_id` range its by-id pages
//! covered, and the exact ids of anything else. A later revision of such a document is
//! *deferred*: not sent in this read and not held (only the earliest such timestamp is kept),
//! and no STATE of this read claims it: the walk's final position is placed before it (see
//! `Feed::deferred_position`), so the next read gets it from the log.
//!
//! Memory: the held revisions ([`ChangeSet::bytes`]) plus the ids remembered one by one, plus
//! what the feed keeps per held page, together bounded by `change_buffer_mb`: the walk stops
//! taking pages once they reach it.

use std::borrow::Cow;
use std::collections::HashSet;

use crate::state::Position;
use convex::page::Member;
use convex::{TableRef, ValueMeta};

use super::bloom::{Bloom, BITS_PER_KEY};
use super::changeset::{Change, ChangeSet, Revision, Sorted};
use super::emit::{Emitter, StreamRun};

/// Bytes an id remembered one by one costs beyond its own: its set slot and its
/// allocation's header (x86-64, rounded up).
const REMEMBERED_OVERHEAD: usize = 56;

/// How the values of the next page are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intake {
    /// Every revision as it comes (history mode).
    Direct,
    /// Into the held set.
    Hold,
    /// Out at once while the page walks by `_id` (live, ascending, past everything sent that
    /// way); from the first value that does not, into the held set.
    ById,
}

/// What a stream sent before the end of the walk.
#[derive(Debug, Default)]
struct Sent {
    /// Every `_id` in `lo..=hi` may have been sent (by-id pages cover their range).
    lo: Option<Box<str>>,
    hi: Option<Box<str>>,
    /// Sent one by one (a page that stopped walking by `_id`, a held set sent early).
    ids: HashSet<Box<str>>,
}

impl Sent {
    fn contains(&self, id: &str) -> bool {
        let in_range = match (&self.lo, &self.hi) {
            (Some(lo), Some(hi)) => &**lo <= id && id <= &**hi,
            _ => false,
        };
        in_range || self.ids.contains(id)
    }

    fn cover(&mut self, first: &str, last: &str) {
        if self.lo.as_deref().is_none_or(|lo| first < lo) {
            self.lo = Some(first.into());
        }
        if self.hi.as_deref().is_none_or(|hi| last > hi) {
            self.hi = Some(last.into());
        }
    }
}

/// Revisions a read does not send, because an earlier revision of their document may be out
/// already: the next read sends them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deferred {
    /// How many revisions.
    pub changes: usize,
    /// The earliest commit timestamp among them (the next read must start before it).
    pub first_ts: i64,
    /// The earliest `seq` among them (no checkpoint at or after it may be written).
    pub first_seq: i64,
}

pub struct Delivery {
    set: ChangeSet,
    sent: Vec<Sent>,
    /// Bytes of the ids remembered one by one.
    sent_bytes: usize,
    /// Bytes of exact ids remembered at most; past them, ids go into `maybe_sent`.
    remember_limit: usize,
    /// The ids remembered once the exact ones reached `remember_limit`: a "maybe" defers a
    /// change to the next read, so a walk that has to remember more goes on instead of
    /// stopping where the next read would not see what happened to what it sent.
    maybe_sent: Option<Bloom>,
    /// Per stream: the revisions of documents sent before, which this read does not send.
    /// Only where they start is kept: the next read reads the log from there.
    deferred: Vec<Option<Deferred>>,
    /// The current page still walks by `_id` (for `Intake::ById`).
    by_id_page: bool,
    /// The values the current page sent at once, in order: (stream, where its id is in
    /// `page_ids`). One buffer for the ids of a page, not an allocation per value.
    page_sent: Vec<(usize, std::ops::Range<usize>)>,
    page_ids: String,
}

impl Delivery {
    /// `remember_limit`: bytes of ids remembered exactly (see `maybe_sent`).
    pub fn new(streams: usize, remember_limit: usize) -> Self {
        Delivery {
            set: ChangeSet::new(),
            sent: (0..streams).map(|_| Sent::default()).collect(),
            sent_bytes: 0,
            remember_limit,
            maybe_sent: None,
            deferred: vec![None; streams],
            by_id_page: true,
            page_sent: Vec::new(),
            page_ids: String::new(),
        }
    }

    /// A new page starts.
    pub fn page_start(&mut self) {
        self.by_id_page = true;
        self.page_sent.clear();
        self.page_ids.clear();
    }

    /// The id of a value the current page sent at once.
    fn page_id(&self, at: &std::ops::Range<usize>) -> &str {
        &self.page_ids[at.clone()]
    }

    /// Takes one value of `stream`; returns whether it goes out now (the caller sends it)
    /// rather than into the held set.
    pub fn take(&mut self, intake: Intake, change: &Change<'_>) -> bool {
        let (stream, id) = (change.stream, change.id);
        let direct = match intake {
            Intake::Direct => true,
            Intake::Hold => false,
            Intake::ById => {
                let past_page = self
                    .page_sent
                    .last()
                    .is_none_or(|(_, last)| id > self.page_id(last));
                let sent = &self.sent[stream];
                let past_sent = sent.hi.as_deref().is_none_or(|hi| id > hi)
                    && !sent.ids.contains(id)
                    && !self.maybe_sent(stream, id);
                let was = self.by_id_page;
                self.by_id_page &= !change.deleted
                    && past_page
                    && past_sent
                    && (self.set.len() == 0 || !self.set.holds(stream, id));
                if was && !self.by_id_page {
                    // The page stopped walking by `_id`: what it sent so far is remembered
                    // one by one (its range proves nothing), before this value is looked up.
                    self.remember_page();
                }
                self.by_id_page
            }
        };
        if direct {
            if intake == Intake::ById {
                let start = self.page_ids.len();
                self.page_ids.push_str(id);
                self.page_sent.push((stream, start..self.page_ids.len()));
            }
            return true;
        }
        if self.sent[stream].contains(id) || self.maybe_sent(stream, id) {
            let d = self.deferred[stream].get_or_insert(Deferred {
                changes: 0,
                first_ts: change.ts,
                first_seq: change.seq,
            });
            d.changes += 1;
            d.first_ts = d.first_ts.min(change.ts);
            d.first_seq = d.first_seq.min(change.seq);
        } else {
            self.set.insert(change);
        }
        false
    }

    /// Defers to the next read whatever happened to a document after `ts` (it went out at
    /// `ts` from a page Convex then answered differently).
    pub fn defer(&mut self, stream: usize, ts: i64, seq: i64) {
        let d = self.deferred[stream].get_or_insert(Deferred {
            changes: 0,
            first_ts: ts + 1,
            first_seq: seq,
        });
        d.changes += 1;
        d.first_ts = d.first_ts.min(ts + 1);
        d.first_seq = d.first_seq.min(seq);
    }

    /// The current page ended. Returns whether it walked by `_id` to its end (every value
    /// went out at once, in order).
    pub fn page_end(&mut self) -> bool {
        let by_id = self.by_id_page && !self.page_sent.is_empty();
        if by_id {
            let (first, last) = (
                &self.page_sent[0],
                &self.page_sent[self.page_sent.len() - 1],
            );
            if first.0 == last.0 {
                let (stream, first, last) = (first.0, first.1.clone(), last.1.clone());
                let (first, last) = (&self.page_ids[first], &self.page_ids[last]);
                self.sent[stream].cover(first, last);
                self.page_sent.clear();
                self.page_ids.clear();
                return true;
            }
        }
        self.remember_page();
        false
    }

    /// Remembers one by one what the current page has sent at once so far.
    fn remember_page(&mut self) {
        let sent = std::mem::take(&mut self.page_sent);
        let ids = std::mem::take(&mut self.page_ids);
        for (stream, at) in sent {
            self.remember(stream, &ids[at]);
        }
        self.page_ids = ids;
        self.page_ids.clear();
    }

    /// An id is allocated only where it is remembered exactly.
    fn remember(&mut self, stream: usize, id: &str) {
        let cost = id.len() + REMEMBERED_OVERHEAD;
        if self.sent_bytes + cost <= self.remember_limit {
            self.sent_bytes += cost;
            self.sent[stream].ids.insert(id.into());
            return;
        }
        // Sized for as many ids again as the exact ones, at about 1 % of "maybe" for others.
        let keys = self.remember_limit / (32 + REMEMBERED_OVERHEAD) + 1;
        self.maybe_sent
            .get_or_insert_with(|| Bloom::with_bytes(keys * BITS_PER_KEY / 8))
            .insert(stream, id);
    }

    fn maybe_sent(&self, stream: usize, id: &str) -> bool {
        self.maybe_sent
            .as_ref()
            .is_some_and(|b| b.may_contain(stream, id))
    }

    /// Bytes of held revisions and remembered ids.
    pub fn bytes(&self) -> usize {
        self.set.bytes() + self.sent_bytes + self.maybe_sent.as_ref().map_or(0, Bloom::bytes)
    }

    pub fn held(&self) -> usize {
        self.set.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.set.len() == 0
    }

    /// Whether some revision was deferred to the next read.
    pub fn deferring(&self) -> bool {
        self.deferred.iter().any(Option::is_some)
    }

    /// Sends the held set before the walk ends, remembering what went out (a later revision
    /// of it is deferred). Returns the streams that got records.
    pub async fn send_now(
        &mut self,
        em: &mut Emitter,
        runs: &mut [StreamRun],
    ) -> anyhow::Result<Vec<usize>> {
        let sorted = std::mem::take(&mut self.set).into_sorted();
        let tables = tables_of(runs);
        let mut members = Vec::new();
        let mut streams = Vec::new();
        for rev in sorted.entries() {
            send_one(em, runs, &tables, &sorted, rev, &mut members).await?;
            if streams.last() != Some(&rev.stream()) {
                streams.push(rev.stream());
            }
        }
        for rev in sorted.entries() {
            self.remember(rev.stream(), sorted.id(rev));
        }
        Ok(streams)
    }

    /// Sends every held revision that may go out in this read, with a STATE (`position_at`)
    /// after about `checkpoint_records` of a stream at a `seq` boundary before its first
    /// deferred one. Returns what was deferred, per stream. The caller writes each stream's
    /// final STATE.
    pub async fn send(
        &mut self,
        em: &mut Emitter,
        runs: &mut [StreamRun],
        checkpoint_records: usize,
        position_at: impl Fn(usize, i64) -> Option<Position>,
    ) -> anyhow::Result<Vec<Option<Deferred>>> {
        let sorted = std::mem::take(&mut self.set).into_sorted();
        let deferred = std::mem::take(&mut self.deferred);
        let tables = tables_of(runs);
        let mut members = Vec::new();
        let mut since_state = 0;
        let mut entries = sorted.entries().peekable();
        while let Some(rev) = entries.next() {
            let stream = rev.stream();
            send_one(em, runs, &tables, &sorted, rev, &mut members).await?;
            since_state += 1;
            let boundary = entries
                .peek()
                .is_none_or(|next| next.stream() != stream || next.seq > rev.seq);
            let allowed = deferred[stream].is_none_or(|d| rev.seq < d.first_seq);
            if since_state >= checkpoint_records && boundary && allowed {
                if let Some(position) = position_at(stream, rev.seq) {
                    since_state = 0;
                    runs[stream].checkpoint(em, position)?;
                }
            }
        }
        Ok(deferred)
    }
}

/// Each stream's table, borrowed by the records of a held set while its run is written to.
fn tables_of(runs: &[StreamRun]) -> Vec<TableRef> {
    runs.iter().map(|run| run.table.clone()).collect()
}

async fn send_one(
    em: &mut Emitter,
    runs: &mut [StreamRun],
    tables: &[TableRef],
    sorted: &Sorted,
    rev: &Revision,
    members: &mut Vec<Member>,
) -> anyhow::Result<()> {
    let stream = rev.stream();
    let table = &tables[stream];
    let meta = ValueMeta {
        table: Cow::Borrowed(&table.table),
        component: Cow::Borrowed(&table.component),
        id: Cow::Borrowed(sorted.id(rev)),
        ts: rev.ts,
        deleted: Some(rev.deleted),
        members: sorted.members(rev, members),
        bare: rev.bare,
    };
    runs[stream].record(em, sorted.raw(rev), &meta)?;
    em.flush_held().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(id: &str, seq: i64, deleted: bool) -> Change<'_> {
        Change {
            stream: 0,
            id,
            ts: seq,
            seq,
            deleted,
            raw: b"{}",
            members: None,
            bare: false,
        }
    }

    fn page(d: &mut Delivery, intake: Intake, values: &[(&str, bool)], seq: i64) -> Vec<bool> {
        d.page_start();
        let out = values
            .iter()
            .map(|(id, deleted)| d.take(intake, &change(id, seq, *deleted)))
            .collect();
        d.page_end();
        out
    }

    #[test]
    fn by_id_values_go_out_until_one_breaks_the_order() {
        let mut d = Delivery::new(1, usize::MAX);
        assert_eq!(
            page(&mut d, Intake::ById, &[("b", false), ("c", false)], 1),
            [true, true]
        );
        assert!(d.is_empty() && !d.deferring());
        // At or below what went out: a document sent before, deferred (not held).
        assert_eq!(page(&mut d, Intake::ById, &[("c", false)], 2), [false]);
        assert!(d.is_empty() && d.deferring());
        let mut d = Delivery::new(1, usize::MAX);
        // Not ascending: this and the rest of the page are held; a tombstone is held.
        assert_eq!(
            page(
                &mut d,
                Intake::ById,
                &[("b", false), ("d", false), ("a", false), ("e", false)],
                1
            ),
            [true, true, false, false]
        );
        assert_eq!(d.held(), 2);
        assert_eq!(page(&mut d, Intake::ById, &[("f", true)], 2), [false]);
        // b and d went out one by one (their page did not walk by id): b again is deferred.
        assert!(!d.deferring());
        assert_eq!(page(&mut d, Intake::Hold, &[("b", false)], 3), [false]);
        assert!(d.deferring());
        assert_eq!(d.held(), 3);
        assert!(d.take(Intake::Direct, &change("a", 6, false)));
    }

    #[test]
    fn the_sent_range_covers_what_went_out() {
        let mut s = Sent::default();
        assert!(!s.contains("a"));
        s.cover("c", "m");
        assert!(s.contains("c") && s.contains("f") && s.contains("m"));
        assert!(!s.contains("b") && !s.contains("n"));
        s.ids.insert("z".into());
        assert!(s.contains("z"));
    }
}
