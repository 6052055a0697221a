//! Convex's Data Sync API as a feed of the change walk: one data sync per incremental stream,
//! over a selection of exactly its table (and columns).
//!
//! Why one sync per stream and not one for the read: a single-table data sync reads only that
//! table's log (Convex's `load_documents_from_table`), so N syncs cost the server what one
//! would, and each stream keeps its own cursor in its own STATE, which is what Airbyte and
//! PyAirbyte persist, refresh and hand back per stream.
//!
//! A data sync snapshots a table page by page in `_id` order, and catches up on the log
//! between and after those pages, re-sending documents that changed since they were sent.
//! The walk (`changes.rs`) sends snapshot pages out as they arrive and holds log revisions
//! (latest per `_id`): a revision of a document this read already sent is deferred to the
//! next read, whose position this feed places before it (`deferred_position`). So a first
//! sync of a busy table finishes in one read, with one revision per document.
//!
//! Positions: every page's cursor is a position; a held revision's checkpoint is the cursor
//! of the page that brought it. Memory: the walk's held set, plus one cursor per held page
//! (counted against the change buffer); a page's values stream through (`convex::data_sync`).
//!
//! Bounds on a server that misbehaves: a page whose position a later read could not resume
//! from is refused (a `transient_error`); [`MAX_PAGES_WITHOUT_PROGRESS`] pages in a row that
//! neither walk the table nor move the consistent timestamp end the read at its last position,
//! with a WARN (or fail the stream as a `transient_error` when it deferred changes while
//! snapshotting: no position before them would keep what it sent); a page without values
//! emits no STATE of its own.

use crate::error::UserError;
use crate::protocol::{LogLevel, StreamDescriptor};
use crate::state::Position;
use convex::data_sync::{codes, DataSyncApi, DataSyncCursor, SyncPageEnd, SyncStatus};
use convex::{ConvexError, DeltaCursor, PageSink, Selection, SnapshotTs, TableRef};

use super::changes::{Feed, Note, PageEnd, Stop};
use super::delivery::{Deferred, Intake};
use super::emit::{Emitter, StreamRun};
use crate::messages;

/// Consecutive pages without progress after which a walk stops: Convex's pages either walk the
/// table (values) or consume its log (a later consistent timestamp), so a server answering
/// this many pages that do neither would be read forever.
pub const MAX_PAGES_WITHOUT_PROGRESS: u32 = 64;

pub struct DataSyncFeed<'a, D> {
    api: &'a D,
    stream: usize,
    desc: StreamDescriptor,
    table: TableRef,
    selection: Selection,
    cursor: Option<DataSyncCursor>,
    /// The cursor came from a saved state (then Convex refusing it is the state's fault).
    saved: bool,
    restarted: bool,
    /// Where the sync stands, once known: from a page of this read, a cold start, or a saved
    /// consistent position (a sync never returns to snapshotting but through a page).
    status: Option<SyncStatus>,
    /// Pages read in this walk; a page's values come at its number.
    pages: i64,
    /// Per page with values: its number, the position after it and that position's bytes (a
    /// page without values moves the last one on: resuming after it loses nothing once that
    /// page is out).
    marks: Vec<(i64, Position, usize)>,
    marks_bytes: usize,
    /// The position after the last page read.
    last: Option<Position>,
    sync_id: String,
    /// The destination holds revisions up to here from an earlier read (see
    /// `Position::DataSync`): no position claims a consistent copy before it.
    settles_at: Option<SnapshotTs>,
    best_consistent: Option<SnapshotTs>,
    stalled: u32,
    received: u64,
    debug: bool,
}

/// Moves a stream onto the Data Sync API: its saved cursor, a streaming export position
/// converted by Convex (checkpointed at once, so the conversion is done once), or a cold
/// start. `Ok(None)`: the deployment has no Data Sync API (an older backend answered 404).
pub async fn feed<'a, D: DataSyncApi>(
    api: &'a D,
    em: &mut Emitter,
    runs: &mut [StreamRun],
    stream: usize,
    debug: bool,
) -> anyhow::Result<DataSyncFeed<'a, D>> {
    let run = &mut runs[stream];
    let selection = Selection::one(run.table.clone(), run.columns.clone());
    let (cursor, status) =
        match &run.position {
            Position::DataSync {
                cursor,
                consistent_at,
                ..
            } => (Some(cursor.clone()), consistent_at.map(SyncStatus::Stale)),
            Position::Fresh => (None, Some(SyncStatus::Snapshotting)),
            Position::Deltas(at) => {
                let at = *at;
                convert(api, em, run, &selection, at)
                    .await?
                    .map_or((None, Some(SyncStatus::Snapshotting)), |c| {
                        (Some(c), Some(SyncStatus::Stale(SnapshotTs(at.0))))
                    })
            }
            Position::Snapshot { .. } => return Err(UserError::system(
                "a stream in the middle of a list_snapshot walk was given to the Data Sync walk",
            )
            .into()),
        };
    let (sync_id, settles_at) = match &run.position {
        Position::DataSync {
            sync_id,
            settles_at,
            ..
        } => (sync_id.clone(), *settles_at),
        _ => (String::new(), None),
    };
    Ok(DataSyncFeed {
        api,
        stream,
        desc: run.desc.clone(),
        table: run.table.clone(),
        selection,
        saved: cursor.is_some(),
        cursor,
        restarted: false,
        status,
        pages: 0,
        marks: Vec::new(),
        marks_bytes: 0,
        last: None,
        sync_id,
        settles_at,
        best_consistent: None,
        stalled: 0,
        received: 0,
        debug,
    })
}

/// A streaming export position moved onto the Data Sync API by Convex.
async fn convert<D: DataSyncApi>(
    api: &D,
    em: &mut Emitter,
    run: &mut StreamRun,
    selection: &Selection,
    at: DeltaCursor,
) -> anyhow::Result<Option<DataSyncCursor>> {
    match api.cursor_from_deltas(selection, at).await {
        Ok(cursor) => {
            let text = messages::moved_to_data_sync(&run.desc, at);
            em.log(LogLevel::Info, &text);
            run.checkpoint(
                em,
                Position::DataSync {
                    cursor: cursor.clone(),
                    sync_id: String::new(),
                    consistent_at: Some(SnapshotTs(at.0)),
                    settles_at: None,
                },
            )?;
            em.flush().await?;
            Ok(Some(cursor))
        }
        Err(e)
            if matches!(
                e.code(),
                Some(codes::CURSOR_EXPIRED | codes::INVALID_CURSOR)
            ) =>
        {
            // Convex refuses a position older than its retention as expired, and one later
            // than its latest timestamp as invalid.
            let why = if e.code() == Some(codes::CURSOR_EXPIRED) {
                "it is older than Convex's retention"
            } else {
                messages::CONVERSION_REFUSED_POSITION_AHEAD
            };
            let text = messages::data_sync_conversion_refused(&run.desc, at, e.detail(), why);
            em.log(LogLevel::Warn, &text);
            Ok(None)
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!(
            "converting the streaming export position {at} of {} to a Data Sync cursor",
            run.table
        ))),
    }
}

fn convex_code(e: &anyhow::Error) -> Option<&str> {
    e.chain()
        .find_map(|c| c.downcast_ref::<ConvexError>())
        .and_then(ConvexError::code)
}

fn convex_detail(e: &anyhow::Error) -> String {
    e.chain()
        .find_map(|c| c.downcast_ref::<ConvexError>())
        .map_or_else(|| format!("{e:#}"), ConvexError::detail)
}

impl<D: DataSyncApi> DataSyncFeed<'_, D> {
    /// The position after a page; its consistent timestamp counts once the destination has
    /// settled (see `settles_at`).
    fn position_of(&mut self, end: &SyncPageEnd) -> Position {
        let consistent_at = end.status.consistent_at();
        if consistent_at
            .zip(self.settles_at)
            .is_some_and(|(c, s)| c >= s)
        {
            self.settles_at = None;
        }
        Position::DataSync {
            cursor: end.next.clone(),
            sync_id: end.sync_id.clone(),
            consistent_at: consistent_at.filter(|_| self.settles_at.is_none()),
            settles_at: self.settles_at,
        }
    }

    /// Asks for the next page, restarting a sync whose saved cursor expired.
    async fn request<S: PageSink>(
        &mut self,
        sink: &mut S,
        notes: &mut Vec<Note>,
    ) -> anyhow::Result<(SyncPageEnd, bool)> {
        loop {
            let cold = self.cursor.is_none();
            let e = match self
                .api
                .data_sync_page(&self.selection, self.cursor.as_ref(), sink)
                .await
            {
                Ok(end) => return Ok((end, cold)),
                Err(e) => e,
            };
            let code = convex_code(&e);
            if code == Some(codes::CURSOR_EXPIRED) && !cold && !self.restarted {
                notes.push(Note::Log(
                    LogLevel::Warn,
                    messages::data_sync_cursor_expired(&self.desc),
                ));
                self.restarted = true;
                self.saved = false;
                self.cursor = None;
                self.status = Some(SyncStatus::Snapshotting);
                continue;
            }
            if code == Some(codes::INVALID_CURSOR) && !self.saved && !cold {
                // The cursor came from this deployment a page ago: not the user's doing.
                return Err(
                    UserError::system(messages::data_sync_cursor_refused_mid_read(
                        &self.selection,
                        convex_detail(&e),
                    ))
                    .into(),
                );
            }
            if code == Some(codes::INVALID_CURSOR) && self.saved {
                return Err(UserError::config(messages::saved_data_sync_cursor_refused(
                    &self.desc,
                    convex_detail(&e),
                ))
                .into());
            }
            return Err(e);
        }
    }
}

impl<D: DataSyncApi> Feed for DataSyncFeed<'_, D> {
    async fn page<S: PageSink>(&mut self, sink: &mut S) -> anyhow::Result<PageEnd> {
        let mut notes = Vec::new();
        let (end, cold) = self.request(sink, &mut notes).await?;
        self.saved = false;
        let position = self.position_of(&end);
        // What this page's STATE would say must be a position a later read resumes from.
        if let Err(why) = position.check_resumable() {
            return Err(UserError::transient(messages::data_sync_page_not_resumable(
                &self.desc, why,
            ))
            .into());
        }
        if !cold && end.truncates.contains(&self.table) {
            let text = messages::table_replaced(&self.desc);
            notes.push(Note::Log(LogLevel::Warn, text.clone()));
            notes.push(Note::Analytics("convex_table_replaced", text));
        }
        self.pages += 1;
        self.received += end.values as u64;
        let walking = self.status.and_then(SyncStatus::consistent_at).is_none() && end.values > 0;
        let later = end
            .status
            .consistent_at()
            .is_some_and(|t| self.best_consistent.is_none_or(|b| t > b));
        if later {
            self.best_consistent = end.status.consistent_at();
        }
        self.stalled = if later || walking {
            0
        } else {
            self.stalled + 1
        };
        self.status = Some(end.status);
        self.sync_id.clone_from(&end.sync_id);
        if self.debug {
            notes.push(Note::Log(
                LogLevel::Debug,
                format!(
                    "data sync of {}: {} values, {} truncates, status {:?}",
                    self.selection,
                    end.values,
                    end.truncates.len(),
                    end.status
                ),
            ));
        }
        let bytes = end.next.0.len() + end.sync_id.len();
        match self.marks.last_mut() {
            Some(last) if end.values == 0 => {
                self.marks_bytes = self.marks_bytes + bytes - last.2;
                last.1 = position.clone();
                last.2 = bytes;
            }
            _ => {
                self.marks_bytes += bytes;
                self.marks.push((self.pages, position.clone(), bytes));
            }
        }
        self.last = Some(position);
        self.cursor = Some(end.next);
        let stop = (self.stalled >= MAX_PAGES_WITHOUT_PROGRESS).then(|| Stop {
            warn: messages::data_sync_stalled(&self.desc, self.stalled),
            refusal: messages::data_sync_stalled_while_deferring(&self.desc, self.stalled),
        });
        let unsettled = end
            .unrepeated
            .iter()
            .filter(|u| u.table == self.table)
            .map(|u| (self.stream, u.ts))
            .collect();
        Ok(PageEnd {
            last: matches!(end.status, SyncStatus::UpToDate(_)),
            stop,
            notes,
            unsettled,
        })
    }

    /// Pages of a snapshotting sync may walk by `_id`. Resuming a sync whose phase is not
    /// known (saved while snapshotting), the first page is held: it may be a log page.
    fn intake(&self) -> Intake {
        if self.status == Some(SyncStatus::Snapshotting) {
            Intake::ById
        } else {
            Intake::Hold
        }
    }

    fn seq(&self) -> Option<i64> {
        Some(self.pages + 1)
    }

    fn floor(&self, _stream: usize) -> i64 {
        i64::MIN
    }

    fn position_at(&self, stream: usize, seq: i64) -> Option<Position> {
        if stream != self.stream {
            return None;
        }
        let i = self.marks.partition_point(|(s, ..)| *s <= seq);
        i.checked_sub(1).map(|i| self.marks[i].1.clone())
    }

    fn position(&self, stream: usize) -> Option<Position> {
        (stream == self.stream).then(|| self.last.clone()).flatten()
    }

    /// A sync that reached a consistent copy continues from just before the first deferred
    /// revision: Convex converts that timestamp into a cursor, so the next read gets every
    /// change after it, and nothing before it is lost. A sync still snapshotting continues
    /// from the page before the first deferred one. Either way the destination is not a copy
    /// at one timestamp until the next read (deferred documents hold an older revision), so
    /// the position claims no consistent timestamp.
    async fn deferred_position(&mut self, stream: usize, deferred: Deferred) -> Option<Position> {
        if stream != self.stream {
            return None;
        }
        let reached = self.status.and_then(SyncStatus::consistent_at);
        let settles_at = reached.max(self.settles_at);
        if reached.is_some() {
            let at = DeltaCursor(deferred.first_ts - 1);
            if let Ok(cursor) = self.api.cursor_from_deltas(&self.selection, at).await {
                return Some(Position::DataSync {
                    cursor,
                    sync_id: self.sync_id.clone(),
                    consistent_at: None,
                    settles_at,
                });
            }
        }
        match self.position_at(stream, deferred.first_seq - 1)? {
            Position::DataSync {
                cursor, sync_id, ..
            } => Some(Position::DataSync {
                cursor,
                sync_id,
                consistent_at: None,
                settles_at,
            }),
            other => Some(other),
        }
    }

    fn held_bytes(&self) -> usize {
        self.marks_bytes
    }

    fn can_end_deferring(&self) -> bool {
        self.status.and_then(SyncStatus::consistent_at).is_some()
    }

    async fn progress(&mut self, held: usize) -> String {
        let own = format!(
            "{} pages, {} values received, {held} held",
            self.pages, self.received
        );
        let convex = match self.api.active_sync(&self.sync_id).await {
            Ok(Some(sync)) => format!("; Convex reports: {}", sync.progress),
            _ => String::new(),
        };
        let phase = match self.status {
            None | Some(SyncStatus::Snapshotting) => "snapshotting".to_owned(),
            Some(SyncStatus::Stale(t)) => format!("consistent at {t}, catching up"),
            Some(SyncStatus::UpToDate(t)) => format!("up to date at {t}"),
        };
        format!("Stream {}: Data Sync {phase}; {own}{convex}", self.desc)
    }
}
