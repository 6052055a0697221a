//! A snapshot walk: the tables of one or more streams at one timestamp, page after page, over
//! one selection. Convex keeps a single cached `list_snapshot` iterator per deployment, keyed
//! by the selection and the position it stopped at: one walk over all the tables that need a
//! snapshot continues that iterator from table to table, where a walk per table rebuilds it
//! once per table (under a global lock, reading the document log from the snapshot to now).
//! Walks run one after another, never interleaved.
//!
//! Each stream keeps its own position, in the shape a walk of its table alone has: after a
//! page, every stream with values in it is at `(snapshot, cursor)`. Resuming that stream alone
//! from there loses and repeats nothing, whatever Convex's order of tables: the cursor is past
//! everything the walk delivered, and Convex skips the tables below the cursor's table. When
//! the walk ends, every stream of it has its whole table at the snapshot.

use std::collections::HashSet;

use crate::error::UserError;
use crate::messages;
use crate::protocol::LogLevel;
use crate::state::Position;
use convex::{
    codes, ConvexApi, ConvexError, DeltaCursor, PageSink, SnapshotCursor, SnapshotTs, ValueMeta,
};

use super::emit::{Emitter, StreamRun};
use super::routes::Routes;

/// Delivers a walk's values as RECORDs of their streams.
struct SnapshotSink<'a> {
    em: &'a mut Emitter,
    runs: &'a mut [StreamRun],
    routes: &'a Routes,
    /// Streams with values in the current page.
    touched: &'a mut [bool],
    /// The stream of the previous value: a page holds one table, so it is almost always
    /// this one (looking every value up in `routes` was a tenth of a full refresh's work).
    last: Option<usize>,
}

impl PageSink for SnapshotSink<'_> {
    fn value(&mut self, raw: &[u8], meta: &ValueMeta<'_>) -> anyhow::Result<()> {
        if let Some(stream) = self.last {
            if self.runs[stream].is_of(meta) {
                self.touched[stream] = true;
                return self.runs[stream].record(self.em, raw, meta);
            }
        }
        let stream = self.routes.stream(meta, "a document")?;
        self.last = Some(stream);
        self.touched[stream] = true;
        self.runs[stream].record(self.em, raw, meta)
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        Ok(self.em.flush_if_full().await?)
    }
}

/// Walks the tables of the streams `members` (indexes into `runs`) to the end. One member at
/// a `Snapshot` position continues its saved walk; otherwise every member starts at
/// `fresh_at`. Heals once when Convex cannot continue the walk (too old, a saved cursor it
/// refuses, or a saved timestamp ahead of the deployment) before it sent anything: the tables
/// are read again from a fresh snapshot, with a WARN.
///
/// On `Ok` every member has its whole table; the caller completes them. On `Err` the members
/// keep the positions of their last STATE, from which each can be walked alone.
pub async fn walk<A: ConvexApi>(
    api: &A,
    em: &mut Emitter,
    runs: &mut [StreamRun],
    members: &[usize],
    fresh_at: SnapshotTs,
) -> anyhow::Result<()> {
    let mut at = fresh_at;
    let mut healed = false;
    loop {
        let resumed = members
            .iter()
            .any(|&m| matches!(runs[m].position, Position::Snapshot { .. }));
        let Err(e) = walk_once(at, api, em, runs, members).await else {
            return Ok(());
        };
        let code = e
            .chain()
            .find_map(|c| c.downcast_ref::<ConvexError>())
            .and_then(ConvexError::code)
            .map(str::to_owned);
        let why = match code.as_deref() {
            Some(codes::SNAPSHOT_TOO_OLD) if !healed => {
                "the snapshot is older than Convex keeps (SnapshotTooOld)"
            }
            Some(codes::INVALID_SNAPSHOT_CURSOR) if resumed && !healed => {
                "Convex refused the saved snapshot cursor (InvalidListSnapshotCursor)"
            }
            // Waiting cannot help: the saved walk's changes up to its timestamp may never be.
            Some(codes::SNAPSHOT_TOO_NEW) if resumed && !healed => {
                messages::SNAPSHOT_LATER_THAN_DEPLOYMENT
            }
            _ => return Err(e),
        };
        // Restarting now would send documents this read already sent, a second time in one
        // read (destinations that merge a read without deduplicating keep both). Only a walk
        // that outlives Convex's 5-day snapshot age within one read gets here: it stops, and
        // the next read restarts it before sending anything.
        if members.iter().any(|&m| runs[m].counts.records > 0) {
            return Err(UserError::transient(messages::snapshot_lost_mid_read(why, &e)).into());
        }
        healed = true;
        let streams: Vec<String> = members.iter().map(|&m| runs[m].desc.to_string()).collect();
        let text = messages::snapshot_restarted(&streams, why);
        em.log(LogLevel::Warn, &text);
        for &m in members {
            runs[m].position = Position::Fresh;
        }
        // At the head: the timestamp given may be the one that is too old, or (for a resumed
        // walk) the saved walk's own.
        at = api.head().await?;
    }
}

/// One attempt at the walk: a saved walk's own timestamp, or `fresh_at` for the others.
async fn walk_once<A: ConvexApi>(
    fresh_at: SnapshotTs,
    api: &A,
    em: &mut Emitter,
    runs: &mut [StreamRun],
    members: &[usize],
) -> anyhow::Result<()> {
    let saved = members.iter().find_map(|&m| match &runs[m].position {
        Position::Snapshot { snapshot, cursor } => Some((*snapshot, cursor.clone())),
        _ => None,
    });
    if saved.is_some() && members.len() > 1 {
        return Err(UserError::system(
            "a saved snapshot walk continues alone: it has its own cursor".to_owned(),
        )
        .into());
    }
    let (snapshot, mut cursor) = saved.unwrap_or((fresh_at, None));
    let routes = Routes::of(runs, members);
    let selection = &routes.selection;
    // A server that repeats a cursor would make the walk loop forever, re-sending records.
    let mut seen: HashSet<SnapshotCursor> = HashSet::new();
    let mut touched = vec![false; runs.len()];
    loop {
        let end = {
            let mut sink = SnapshotSink {
                em: &mut *em,
                runs: &mut *runs,
                routes: &routes,
                touched: &mut touched,
                last: None,
            };
            api.list_snapshot(selection, snapshot, cursor.as_ref(), &mut sink)
                .await?
        };
        if end.snapshot != snapshot {
            return Err(UserError::system(messages::snapshot_at_wrong_timestamp(
                selection,
                end.snapshot,
                snapshot,
            ))
            .into());
        }
        match (end.has_more, end.cursor) {
            (true, Some(c)) => {
                if !seen.insert(c.clone()) {
                    return Err(
                        UserError::system(messages::snapshot_cursor_repeated(selection)).into(),
                    );
                }
                cursor = Some(c.clone());
                for &m in members {
                    if std::mem::take(&mut touched[m]) {
                        let position = Position::Snapshot {
                            snapshot,
                            cursor: Some(c.clone()),
                        };
                        runs[m].checkpoint(em, position)?;
                        runs[m].progress(em, &format!("list_snapshot walk at {snapshot}"));
                    }
                }
            }
            (true, None) => {
                return Err(UserError::system(format!(
                    "list_snapshot of {selection} answered hasMore without a cursor"
                ))
                .into())
            }
            (false, _) => {
                for &m in members {
                    runs[m].checkpoint(em, Position::Deltas(DeltaCursor::from(snapshot)))?;
                }
            }
        }
        if em.debug {
            let text = format!(
                "list_snapshot of {selection}: {} values, hasMore={}",
                end.values, end.has_more
            );
            em.log(LogLevel::Debug, &text);
        }
        em.flush().await?;
        if !end.has_more {
            return Ok(());
        }
    }
}
