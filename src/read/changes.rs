//! The change walk: one `document_deltas` walk for every incremental stream of the read, over
//! a selection of exactly their tables, from the oldest stream position to the head.
//!
//! Convex reads 128 log rows of all tables per deltas page whatever the filter, so one walk
//! costs the server what one table's walk would; N per-table walks would read the log N times.
//! Each stream still keeps its own position: it never receives a change at or before it.
//!
//! By default the walk buffers the latest revision of each changed document and sends those
//! when it ends, so a read delivers each document once (see `changeset.rs`). The buffer has a
//! byte budget: once a page takes it past the budget, the walk ends at that page's cursor, the
//! read delivers what it holds and says so, and the next read continues from there. With
//! `every_revision` (history destinations) revisions are sent as pages arrive instead.

use crate::convex::{ConvexApi, DeltaCursor, PageSink, ValueMeta};
use crate::error::UserError;
use crate::protocol::LogLevel;
use crate::state::Position;

use super::changeset::ChangeSet;
use super::emit::{Emitter, StreamRun};
use super::routes::Routes;

#[derive(Debug, Clone, Copy)]
pub struct ChangeOptions {
    /// Send every revision as it arrives (Airbyte's append-mode history) instead of the latest
    /// revision of each document per read.
    pub every_revision: bool,
    /// Bytes of buffered revisions after which the walk stops taking pages.
    pub buffer_bytes: usize,
    /// While the buffer is sent: a STATE after about this many records of a stream.
    pub checkpoint_records: usize,
}

/// Records between two STATEs while a change buffer is sent: a killed sync resumes close to
/// where it stopped, and a slow destination still sees a STATE every few seconds.
pub const CHECKPOINT_RECORDS: usize = 10_000;

enum Target<'a> {
    Buffer(&'a mut ChangeSet),
    Direct {
        em: &'a mut Emitter,
        runs: &'a mut [StreamRun],
        touched: &'a mut [bool],
    },
}

struct ChangeSink<'a> {
    routes: &'a Routes,
    /// Each stream's position when the walk started (exclusive lower bound of what it takes).
    positions: &'a [i64],
    target: Target<'a>,
}

impl PageSink for ChangeSink<'_> {
    fn value(&mut self, raw: &[u8], meta: &ValueMeta<'_>) -> anyhow::Result<()> {
        let stream = self.routes.stream(meta, "a change")?;
        if meta.ts <= self.positions[stream] {
            return Ok(());
        }
        let Some(deleted) = meta.deleted else {
            return Err(UserError::system(format!(
                "document_deltas returned a change of {} without `_deleted`; it cannot be told from a delete",
                meta.table
            ))
            .into());
        };
        match &mut self.target {
            Target::Buffer(set) => set.insert(stream, &meta.id, meta.ts, meta.ts, deleted, raw),
            Target::Direct { em, runs, touched } => {
                runs[stream].record(em, raw, meta)?;
                touched[stream] = true;
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        if let Target::Direct { em, .. } = &mut self.target {
            em.flush_if_full().await?;
        }
        Ok(())
    }
}

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

/// Walks the changes of the streams `members` (indexes into `runs`, all at `Deltas`
/// positions) and delivers them.
pub async fn walk<A: ConvexApi>(
    api: &A,
    em: &mut Emitter,
    runs: &mut [StreamRun],
    members: &[usize],
    options: ChangeOptions,
) -> anyhow::Result<WalkEnd> {
    let routes = Routes::of(runs, members);
    let selection = &routes.selection;
    let mut positions = vec![i64::MAX; runs.len()];
    for &m in members {
        positions[m] = delta_position(&runs[m]).map_or(i64::MAX, |c| c.0);
    }
    let Some(mut cursor) = members.iter().map(|&m| positions[m]).min() else {
        return Err(UserError::system("a change walk needs at least one stream").into());
    };
    let mut set = ChangeSet::new();
    let mut touched = vec![false; runs.len()];
    // The deployment's head, once a page says the walk caught up with it.
    let mut head = None;
    loop {
        let end = {
            let target = if options.every_revision {
                Target::Direct {
                    em: &mut *em,
                    runs: &mut *runs,
                    touched: &mut touched,
                }
            } else {
                Target::Buffer(&mut set)
            };
            let mut sink = ChangeSink {
                routes: &routes,
                positions: &positions,
                target,
            };
            api.document_deltas(selection, DeltaCursor(cursor), &mut sink)
                .await?
        };
        if end.cursor.0 < 0 || (end.has_more && end.cursor.0 <= cursor) {
            return Err(UserError::system(format!(
                "document_deltas of {selection} answered hasMore={} with a cursor ({}) that does not advance past {cursor}; stopping instead of reading the same changes forever",
                end.has_more, end.cursor
            ))
            .into());
        }
        // A caught-up page may answer an older cursor than asked (the head, when asked past
        // it); a position never moves backwards.
        cursor = cursor.max(end.cursor.0);
        if !end.has_more {
            head = Some(end.cursor.0);
        }
        if em.debug {
            let text = format!(
                "document_deltas of {selection}: {} values, hasMore={}, cursor {}",
                end.values, end.has_more, end.cursor
            );
            em.log(LogLevel::Debug, &text);
        }
        if options.every_revision {
            for &m in members {
                if std::mem::take(&mut touched[m]) {
                    let at = positions[m].max(cursor);
                    runs[m].checkpoint(em, Position::Deltas(DeltaCursor(at)))?;
                }
            }
            em.flush().await?;
        }
        if em.progress_due() {
            let text = format!(
                "Change walk of {selection}: at {cursor}, {} changed documents held",
                set.len()
            );
            em.log(LogLevel::Info, &text);
        }
        if !end.has_more {
            break;
        }
        if !options.every_revision && set.bytes() >= options.buffer_bytes {
            let text = format!(
                "Stopped reading changes at {cursor}: {} changed documents ({:.1} MiB) reached this read's change buffer (change_buffer_mb = {}). They are delivered now, one revision each; the next read continues from there.",
                set.len(),
                set.bytes() as f64 / (1024.0 * 1024.0),
                options.buffer_bytes / (1024 * 1024)
            );
            em.log(LogLevel::Warn, &text);
            break;
        }
    }
    let tables: Vec<_> = runs.iter().map(|r| r.table.clone()).collect();
    let sorted = set.into_sorted();
    let mut since_state = 0;
    for (i, (stream, id, rev)) in sorted.iter().enumerate() {
        let (stream, rev) = (*stream, rev);
        let table = &tables[stream];
        let meta = ValueMeta {
            table: table.table.as_str().into(),
            component: table.component.as_str().into(),
            id: std::borrow::Cow::Borrowed(id),
            ts: rev.ts,
            deleted: Some(rev.deleted),
            members: None,
        };
        runs[stream].record(em, &rev.raw, &meta)?;
        since_state += 1;
        // Sorted by stream, then commit: once every buffered revision of this stream up to
        // `rev.ts` is out, resuming after `rev.ts` loses nothing (later revisions supersede
        // earlier ones) and repeats nothing.
        let boundary = sorted
            .get(i + 1)
            .is_none_or(|next| next.0 != stream || next.2.ts > rev.ts);
        if since_state >= options.checkpoint_records && boundary {
            since_state = 0;
            let at = positions[stream].max(rev.ts);
            runs[stream].checkpoint(em, Position::Deltas(DeltaCursor(at)))?;
        }
        em.flush_if_full().await?;
    }
    let ahead: Vec<usize> = match head {
        Some(head) => members
            .iter()
            .copied()
            .filter(|&m| positions[m] > head)
            .collect(),
        None => Vec::new(),
    };
    let end = head.map_or(cursor, |head| head.min(cursor));
    for &m in members.iter().filter(|m| !ahead.contains(m)) {
        let at = positions[m].max(end);
        runs[m].checkpoint(em, Position::Deltas(DeltaCursor(at)))?;
    }
    em.flush().await?;
    Ok(WalkEnd {
        at: DeltaCursor(end),
        ahead,
    })
}
