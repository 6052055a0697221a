//! The streaming export API as a feed of the change walk: one `document_deltas` walk for
//! every incremental stream of the read, over a selection of exactly their tables, from the
//! oldest stream position to the head.
//!
//! Convex reads 128 log rows of all tables per deltas page whatever the filter, so one walk
//! costs the server what one table's walk would; N per-table walks would read the log N times.
//! Each stream still keeps its own position: it never receives a change at or before it.

use crate::error::UserError;
use crate::protocol::LogLevel;
use crate::state::Position;
use convex::{ConvexApi, DeltaCursor, PageSink, Selection};

use super::changes::{Feed, Note, PageEnd};
use super::delivery::{Deferred, Intake};
use super::emit::StreamRun;

/// The position of a stream in the change walk.
pub fn delta_position(run: &StreamRun) -> Option<DeltaCursor> {
    match run.position {
        Position::Deltas(c) => Some(c),
        _ => None,
    }
}

/// Where a change walk ended.
#[derive(Debug)]
pub struct WalkEnd {
    /// Every member not in `ahead` is delivered up to here (and checkpointed there).
    pub at: DeltaCursor,
    /// Members whose saved position is later than the deployment's head: Convex answered its
    /// head below it, so their changes cannot come from this deployment (the state is another
    /// deployment's, or this one was restored from a backup). They got nothing and no STATE.
    pub ahead: Vec<usize>,
}

pub struct DeltasFeed<'a, A> {
    api: &'a A,
    selection: Selection,
    /// Each stream's position when the walk started (`i64::MAX` for non-members).
    positions: Vec<i64>,
    cursor: i64,
    /// The deployment's head, once a page says the walk caught up with it.
    head: Option<i64>,
    debug: bool,
}

impl<'a, A: ConvexApi> DeltasFeed<'a, A> {
    /// A walk from the oldest position of `members` (all at `Deltas` positions).
    pub fn new(
        api: &'a A,
        runs: &[StreamRun],
        members: &[usize],
        debug: bool,
    ) -> Result<Self, UserError> {
        let mut positions = vec![i64::MAX; runs.len()];
        let mut selection = Selection::new();
        for &m in members {
            positions[m] = delta_position(&runs[m]).map_or(i64::MAX, |c| c.0);
            selection.add(runs[m].table.clone(), runs[m].columns.clone());
        }
        let cursor = members
            .iter()
            .map(|&m| positions[m])
            .min()
            .ok_or_else(|| UserError::system("a change walk needs at least one stream"))?;
        Ok(DeltasFeed {
            api,
            selection,
            positions,
            cursor,
            head: None,
            debug,
        })
    }

    /// Where the walk ended, once it has.
    pub fn end(&self, members: &[usize]) -> WalkEnd {
        WalkEnd {
            at: DeltaCursor(self.end_cursor()),
            ahead: members
                .iter()
                .copied()
                .filter(|&m| self.is_ahead(m))
                .collect(),
        }
    }

    fn end_cursor(&self) -> i64 {
        self.head.map_or(self.cursor, |head| head.min(self.cursor))
    }

    fn is_ahead(&self, stream: usize) -> bool {
        self.head.is_some_and(|head| self.positions[stream] > head)
    }
}

impl<A: ConvexApi> Feed for DeltasFeed<'_, A> {
    async fn page<S: PageSink>(&mut self, sink: &mut S) -> anyhow::Result<PageEnd> {
        let asked = self.cursor;
        let end = self
            .api
            .document_deltas(&self.selection, DeltaCursor(asked), sink)
            .await?;
        if end.cursor.0 < 0 || (end.has_more && end.cursor.0 <= asked) {
            return Err(UserError::system(crate::messages::deltas_cursor_stuck(
                &self.selection,
                end.has_more,
                end.cursor,
                asked,
            ))
            .into());
        }
        // A caught-up page may answer an older cursor than asked (the head, when asked past
        // it); a position never moves backwards.
        self.cursor = asked.max(end.cursor.0);
        if !end.has_more {
            self.head = Some(end.cursor.0);
        }
        let mut notes = Vec::new();
        if self.debug {
            notes.push(Note::Log(
                LogLevel::Debug,
                format!(
                    "document_deltas of {}: {} values, hasMore={}, cursor {}",
                    self.selection, end.values, end.has_more, end.cursor
                ),
            ));
        }
        Ok(PageEnd {
            last: !end.has_more,
            stop: None,
            notes,
            unsettled: Vec::new(),
        })
    }

    fn intake(&self) -> Intake {
        Intake::Hold
    }

    fn seq(&self) -> Option<i64> {
        None
    }

    fn floor(&self, stream: usize) -> i64 {
        self.positions[stream]
    }

    /// Sorted by commit: once every held revision of a stream up to `seq` is out, resuming
    /// after `seq` loses nothing (later revisions supersede earlier ones) and repeats nothing.
    fn position_at(&self, stream: usize, seq: i64) -> Option<Position> {
        Some(Position::Deltas(DeltaCursor(
            self.positions[stream].max(seq),
        )))
    }

    fn position(&self, stream: usize) -> Option<Position> {
        (!self.is_ahead(stream))
            .then(|| Position::Deltas(DeltaCursor(self.positions[stream].max(self.end_cursor()))))
    }

    /// Deltas pages never walk by `_id`, so nothing is deferred; kept total for the trait.
    async fn deferred_position(&mut self, stream: usize, deferred: Deferred) -> Option<Position> {
        self.position_at(stream, deferred.first_ts - 1)
    }

    fn held_bytes(&self) -> usize {
        0
    }

    fn can_end_deferring(&self) -> bool {
        true
    }

    async fn progress(&mut self, held: usize) -> String {
        format!(
            "Change walk of {}: at {}, {held} changed documents held",
            self.selection, self.cursor
        )
    }
}
