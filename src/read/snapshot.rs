//! A snapshot walk: one stream's table at one timestamp, page after page, a STATE after every
//! page. Walks run one after another, never interleaved: Convex keeps a single cached
//! `list_snapshot` iterator per deployment, and any request that does not continue the previous
//! answer rebuilds it under a global lock.

use std::collections::HashSet;

use crate::convex::{
    codes, ConvexApi, ConvexError, DeltaCursor, PageSink, Selection, SnapshotCursor, SnapshotTs,
    ValueMeta,
};
use crate::error::UserError;
use crate::protocol::LogLevel;
use crate::state::Position;

use super::emit::{Emitter, StreamRun};

/// Delivers one stream's snapshot values as RECORDs.
struct SnapshotSink<'a> {
    em: &'a mut Emitter,
    run: &'a mut StreamRun,
}

impl PageSink for SnapshotSink<'_> {
    fn value(&mut self, raw: &[u8], meta: &ValueMeta<'_>) -> anyhow::Result<()> {
        self.run.record(self.em, raw, meta)
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        Ok(self.em.flush_if_full().await?)
    }
}

/// Walks `run`'s table to the end: from its saved walk if it has one, else at `fresh_at`.
/// Heals once when Convex can no longer continue the saved walk (too old, or its cursor is
/// refused): the table is read again from a fresh snapshot, with a WARN.
pub async fn walk<A: ConvexApi>(
    api: &A,
    em: &mut Emitter,
    run: &mut StreamRun,
    fresh_at: SnapshotTs,
) -> anyhow::Result<()> {
    let mut at = fresh_at;
    let mut healed = false;
    loop {
        let resumed = matches!(run.position, Position::Snapshot { .. });
        let Err(e) = walk_once(api, em, run, at).await else {
            return Ok(());
        };
        let code = e
            .chain()
            .find_map(|c| c.downcast_ref::<ConvexError>())
            .and_then(ConvexError::code)
            .map(str::to_owned);
        let why = match code.as_deref() {
            Some(codes::SNAPSHOT_TOO_OLD) if !healed => {
                "the saved snapshot is older than Convex keeps (SnapshotTooOld)"
            }
            Some(codes::INVALID_SNAPSHOT_CURSOR) if resumed && !healed => {
                "Convex refused the saved snapshot cursor (InvalidListSnapshotCursor)"
            }
            _ => return Err(e),
        };
        healed = true;
        let text = format!(
            "Stream {}: {why}. Restarting this table from a fresh snapshot now; rows already synced are sent again, and rows deleted since the old snapshot are not reported as deletes.",
            run.desc
        );
        em.log(LogLevel::Warn, &text);
        run.position = Position::Fresh;
        // At the head: the timestamp given may be the one that is too old, or (for a resumed
        // walk) the saved walk's own.
        at = api.head().await?;
    }
}

async fn walk_once<A: ConvexApi>(
    api: &A,
    em: &mut Emitter,
    run: &mut StreamRun,
    fresh_at: SnapshotTs,
) -> anyhow::Result<()> {
    let (snapshot, mut cursor) = match &run.position {
        Position::Snapshot { snapshot, cursor } => (*snapshot, cursor.clone()),
        Position::Fresh | Position::Deltas(_) | Position::DataSync { .. } => (fresh_at, None),
    };
    let selection = Selection::one(run.table.clone(), run.columns.clone());
    // A server that repeats a cursor would make the walk loop forever, re-sending records.
    let mut seen: HashSet<SnapshotCursor> = HashSet::new();
    loop {
        let end = {
            let mut sink = SnapshotSink {
                em: &mut *em,
                run: &mut *run,
            };
            api.list_snapshot(&selection, snapshot, cursor.as_ref(), &mut sink)
                .await?
        };
        if end.snapshot != snapshot {
            return Err(UserError::system(format!(
                "list_snapshot of {} answered at snapshot {} instead of the requested {snapshot}; the pages would not be consistent",
                run.table, end.snapshot
            ))
            .into());
        }
        let next = match (end.has_more, end.cursor) {
            (true, Some(c)) => {
                if !seen.insert(c.clone()) {
                    return Err(UserError::system(format!(
                        "list_snapshot of {} answered a cursor it had already answered in this walk; stopping instead of sending the same records forever",
                        run.table
                    ))
                    .into());
                }
                cursor = Some(c.clone());
                Position::Snapshot {
                    snapshot,
                    cursor: Some(c),
                }
            }
            (true, None) => {
                return Err(UserError::system(format!(
                    "list_snapshot of {} answered hasMore without a cursor",
                    run.table
                ))
                .into())
            }
            (false, _) => Position::Deltas(DeltaCursor::from(snapshot)),
        };
        run.checkpoint(em, next);
        run.progress(em, &format!("list_snapshot walk at {snapshot}"));
        if em.debug {
            let text = format!(
                "list_snapshot of {}: {} values, hasMore={}",
                run.table, end.values, end.has_more
            );
            em.log(LogLevel::Debug, &text);
        }
        em.flush().await?;
        if !end.has_more {
            return Ok(());
        }
    }
}
