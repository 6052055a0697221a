//! `read`: every configured stream from its saved position to the present, streams side by
//! side, pages streamed through to stdout as they arrive.
//!
//! Per stream: STARTED → (RUNNING at the first record) → RECORDs with a STATE after every page →
//! COMPLETE, or INCOMPLETE + TRACE ERROR; the other streams carry on.

pub mod cdc_time;
pub mod record;

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::sync::{OnceCell, Semaphore};

use crate::catalog::table_for;
use crate::convex::{
    codes, ConvexApi, ConvexError, DeltaCursor, PageSink, SnapshotPageEnd, SnapshotTs, TableRef,
    ValueMeta,
};
use crate::error::{classify, UserError};
use crate::output::{Output, CHUNK_BYTES};
use crate::protocol::{
    now_ms, ConfiguredCatalog, LogLevel, Message, SourceStats, StateMessage, StreamDescriptor,
    StreamState, StreamStatusKind, SyncMode,
};
use crate::state::{InputState, Position};
use record::RecordWriter;

/// One configured stream, resolved.
struct Planned {
    desc: StreamDescriptor,
    mode: SyncMode,
    /// The table and start position, or why the stream cannot run.
    start: Result<(TableRef, Position), UserError>,
}

pub struct ReadOptions {
    pub concurrency: usize,
    pub debug: bool,
}

/// Runs a whole `read`. Returns whether every stream completed.
pub async fn read<A: ConvexApi>(
    api: Arc<A>,
    out: Output,
    catalog: ConfiguredCatalog,
    state: InputState,
    options: ReadOptions,
) -> anyhow::Result<bool> {
    let plan = plan(catalog, &state);
    let intro = format!(
        "Reading {} stream(s) from Convex, {} at a time",
        plan.len(),
        options.concurrency
    );
    out.send(Message::log(LogLevel::Info, &intro).to_line())
        .await?;

    // One request proves the key, the plan and the permissions before any stream starts, and
    // tells which configured tables still exist.
    let schemas = match api.json_schemas().await {
        Ok(s) => s,
        Err(e) => {
            // A failure before the first stream still gives every stream a terminal status,
            // so destinations report this cause rather than "missing status".
            let mut buf = Vec::new();
            for p in &plan {
                Message::stream_status(&p.desc, StreamStatusKind::Incomplete).write_line(&mut buf);
            }
            let err = anyhow::Error::new(e).context("reading the deployment's tables");
            let c = classify(&err);
            Message::error(&c.message, &c.internal, c.failure_type, None).write_line(&mut buf);
            out.send(buf).await?;
            return Ok(false);
        }
    };
    // A configured table the deployment no longer has (deleted or renamed) would silently read
    // as empty forever: fail its stream instead, so someone refreshes the schema.
    let plan: Vec<Planned> = plan
        .into_iter()
        .map(|mut p| {
            if let Ok((table, _)) = &p.start {
                if !schemas.contains(table) {
                    p.start = Err(UserError::config(format!(
                        "table {table} is not in the deployment any more (deleted or renamed); refresh the source schema and update the connection's streams"
                    )));
                }
            }
            p
        })
        .collect();

    let shared = Arc::new(Shared {
        api,
        out: out.clone(),
        pin: OnceCell::new(),
        debug: options.debug,
    });
    let permits = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let mut tasks = Vec::with_capacity(plan.len());
    for p in plan {
        // Taken here, before the task exists, so streams start in catalog order.
        let permit = permits.clone().acquire_owned().await?;
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            run_stream(&shared, p).await
        }));
    }
    let mut all_ok = true;
    for t in tasks {
        match t.await {
            Ok(Ok(ok)) => all_ok &= ok,
            Ok(Err(e)) => return Err(e),
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        }
    }
    Ok(all_ok)
}

fn plan(catalog: ConfiguredCatalog, state: &InputState) -> Vec<Planned> {
    catalog
        .streams
        .into_iter()
        .map(|s| {
            let desc = StreamDescriptor {
                name: s.stream.name,
                namespace: s.stream.namespace.filter(|n| !n.is_empty()),
            };
            let start = table_for(&desc)
                .map_err(|e| UserError::config(format!("{e}; run discover again and reconfigure the connection")))
                .and_then(|table| {
                    let saved = state.get(&desc);
                    let position = match saved {
                        None => Position::Fresh,
                        Some(v) => Position::from_state(v).map_err(|e| {
                            UserError::config(format!(
                                "the saved state of stream {desc} cannot be used ({e}); reset this stream to sync it from scratch"
                            ))
                        })?,
                    };
                    Ok((table, position))
                });
            Planned {
                desc,
                mode: s.sync_mode,
                start,
            }
        })
        .collect()
}

struct Shared<A> {
    api: Arc<A>,
    out: Output,
    /// The snapshot timestamp every stream that starts a walk in this sync reads at, so the
    /// tables are mutually consistent. Set by the first such stream's first page.
    pin: OnceCell<SnapshotTs>,
    debug: bool,
}

/// Counters of one stream, for STATE and the summary.
#[derive(Default)]
struct Counts {
    records: u64,
    since_state: u64,
    deletes: u64,
    pages: u64,
    bytes: u64,
}

/// Receives a page's values and turns them into RECORD lines in the stream's buffer.
struct StreamSink<'a> {
    desc: &'a StreamDescriptor,
    writer: &'a RecordWriter,
    out: &'a Output,
    buf: Vec<u8>,
    counts: Counts,
    running: bool,
    emitted_at: i64,
}

impl PageSink for StreamSink<'_> {
    fn value(&mut self, raw: &[u8], meta: &ValueMeta<'_>) -> anyhow::Result<()> {
        if !self.running {
            self.running = true;
            Message::stream_status(self.desc, StreamStatusKind::Running).write_line(&mut self.buf);
        }
        let w = self
            .writer
            .write(raw, meta, self.emitted_at, &mut self.buf)?;
        self.counts.records += 1;
        self.counts.since_state += 1;
        self.counts.deletes += u64::from(w.deleted);
        self.counts.bytes += raw.len() as u64;
        Ok(())
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        self.emitted_at = now_ms();
        if self.buf.len() >= CHUNK_BYTES {
            let chunk =
                std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES + 64 * 1024));
            self.out.send(chunk).await?;
        }
        Ok(())
    }
}

impl StreamSink<'_> {
    /// Ends a page: its STATE goes after its records, in the same buffer, and out it goes.
    async fn checkpoint(&mut self, position: &Position) -> anyhow::Result<()> {
        self.counts.pages += 1;
        let state = position.to_state();
        Message::State {
            state: StateMessage {
                kind: "STREAM",
                stream: StreamState {
                    stream_descriptor: self.desc,
                    stream_state: &state,
                },
                source_stats: SourceStats {
                    record_count: self.counts.since_state as f64,
                },
            },
        }
        .write_line(&mut self.buf);
        self.counts.since_state = 0;
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(64 * 1024));
        self.out.send(chunk).await?;
        Ok(())
    }

    fn line(&mut self, msg: Message<'_>) {
        msg.write_line(&mut self.buf);
    }
}

/// Runs one stream to its terminal status. `Err` only when stdout is gone.
async fn run_stream<A: ConvexApi>(shared: &Shared<A>, p: Planned) -> anyhow::Result<bool> {
    let (table, position) = match p.start {
        Ok(s) => s,
        Err(e) => {
            let mut buf = Message::stream_status(&p.desc, StreamStatusKind::Incomplete).to_line();
            Message::error(&e.message, &e.message, e.failure_type, Some(&p.desc))
                .write_line(&mut buf);
            shared.out.send(buf).await?;
            return Ok(false);
        }
    };
    let writer = RecordWriter::new(&p.desc, table.clone());
    let mut sink = StreamSink {
        desc: &p.desc,
        writer: &writer,
        out: &shared.out,
        buf: Vec::with_capacity(CHUNK_BYTES + 64 * 1024),
        counts: Counts::default(),
        running: false,
        emitted_at: now_ms(),
    };
    sink.line(Message::stream_status(&p.desc, StreamStatusKind::Started));
    let started = Instant::now();
    let result = sync_stream(shared, &table, p.mode, position, &mut sink).await;
    let elapsed = started.elapsed().as_secs_f64();
    let c = &sink.counts;
    let summary = format!(
        "Stream {}: {} records ({} deletes) in {} pages, {:.1} MB of documents, {:.2} s, {:.0} records/s",
        p.desc,
        c.records,
        c.deletes,
        c.pages,
        c.bytes as f64 / 1e6,
        elapsed,
        c.records as f64 / elapsed.max(1e-9)
    );
    sink.line(Message::log(LogLevel::Info, &summary));
    let ok = match result {
        Ok(()) => {
            sink.line(Message::stream_status(&p.desc, StreamStatusKind::Complete));
            true
        }
        Err(e) => {
            if e.downcast_ref::<crate::output::OutputClosed>().is_some() {
                return Err(e);
            }
            let e = e.context(format!("stream {}", p.desc));
            let c = classify(&e);
            let message = format!("Stream {}: {}", p.desc, c.message);
            sink.line(Message::stream_status(
                &p.desc,
                StreamStatusKind::Incomplete,
            ));
            sink.line(Message::error(
                &message,
                &c.internal,
                c.failure_type,
                Some(&p.desc),
            ));
            false
        }
    };
    let rest = std::mem::take(&mut sink.buf);
    shared.out.send(rest).await?;
    Ok(ok)
}

/// The position machine: snapshot walk, then (incremental) deltas until caught up.
async fn sync_stream<A: ConvexApi>(
    shared: &Shared<A>,
    table: &TableRef,
    mode: SyncMode,
    mut position: Position,
    sink: &mut StreamSink<'_>,
) -> anyhow::Result<()> {
    let api = &*shared.api;
    // Full refresh resumes a half-done walk (the platform hands a failed attempt's checkpoint
    // to the next attempt), but a finished one is no reason to return nothing: walk again.
    if mode == SyncMode::FullRefresh && matches!(position, Position::Deltas(_)) {
        position = Position::Fresh;
    }
    let mut use_pin = true;
    let mut healed = false;
    loop {
        let step: anyhow::Result<Option<Position>> = match &position {
            Position::Fresh => {
                let end = if use_pin {
                    let mut first: Option<SnapshotPageEnd> = None;
                    let (first_ref, page_sink) = (&mut first, &mut *sink);
                    let pinned = *shared
                        .pin
                        .get_or_try_init(move || async move {
                            let end = api.list_snapshot(table, None, None, page_sink).await?;
                            let s = end.snapshot;
                            *first_ref = Some(end);
                            anyhow::Ok(s)
                        })
                        .await?;
                    match first {
                        Some(end) => Some(end),
                        None => {
                            position = Position::Snapshot {
                                snapshot: pinned,
                                cursor: None,
                            };
                            continue;
                        }
                    }
                } else {
                    Some(api.list_snapshot(table, None, None, sink).await?)
                };
                let end = end.expect("a first page was read");
                let snapshot = end.snapshot;
                after_snapshot_page(shared, table, snapshot, end, sink)
                    .await
                    .map(Some)
            }
            Position::Snapshot { snapshot, cursor } => {
                let snapshot = *snapshot;
                match api
                    .list_snapshot(table, Some(snapshot), cursor.as_ref(), sink)
                    .await
                {
                    Ok(end) => after_snapshot_page(shared, table, snapshot, end, sink)
                        .await
                        .map(Some),
                    Err(e) => Err(e),
                }
            }
            Position::Deltas(cursor) => {
                if mode == SyncMode::FullRefresh {
                    return Ok(());
                }
                let cursor = *cursor;
                match api.document_deltas(table, cursor, sink).await {
                    Ok(end) => {
                        if end.has_more && end.cursor <= cursor {
                            return Err(UserError::system(format!(
                                "document_deltas of {table} answered hasMore with a cursor ({}) that does not advance past {cursor}",
                                end.cursor
                            ))
                            .into());
                        }
                        let next = Position::Deltas(end.cursor);
                        sink.checkpoint(&next).await?;
                        debug_page(
                            shared,
                            sink,
                            "document_deltas",
                            table,
                            end.values,
                            end.has_more,
                        )
                        .await?;
                        Ok(end.has_more.then_some(next))
                    }
                    Err(e) => Err(e),
                }
            }
        };
        match step {
            Ok(Some(next)) => position = next,
            Ok(None) => return Ok(()),
            Err(e) => {
                let code = e
                    .chain()
                    .find_map(|c| c.downcast_ref::<ConvexError>())
                    .and_then(ConvexError::code)
                    .map(str::to_owned);
                match code.as_deref() {
                    Some(codes::SNAPSHOT_TOO_OLD) if !healed => {
                        healed = true;
                        use_pin = false;
                        warn(sink, format!(
                            "Stream {}: the saved snapshot is older than Convex keeps (SnapshotTooOld). Restarting this table from a fresh snapshot now; rows already synced are sent again, and rows deleted since the old snapshot are not reported as deletes.",
                            sink.desc
                        ));
                        position = Position::Fresh;
                    }
                    Some(codes::INVALID_WINDOW) if !healed => {
                        healed = true;
                        warn(sink, format!(
                            "Stream {}: the saved position is older than Convex's change-log retention (InvalidWindowToReadDocuments). Re-reading the whole table from a fresh snapshot now; documents deleted during the gap are not reported as deletes, so destinations may keep them until a full reset.",
                            sink.desc
                        ));
                        position = Position::Fresh;
                    }
                    _ => return Err(e),
                }
            }
        }
    }
}

fn warn(sink: &mut StreamSink<'_>, msg: String) {
    sink.line(Message::log(LogLevel::Warn, &msg));
}

/// Checks a finished snapshot page and records the position after it.
async fn after_snapshot_page<A: ConvexApi>(
    shared: &Shared<A>,
    table: &TableRef,
    snapshot: SnapshotTs,
    end: SnapshotPageEnd,
    sink: &mut StreamSink<'_>,
) -> anyhow::Result<Position> {
    if end.snapshot != snapshot {
        return Err(UserError::system(format!(
            "list_snapshot of {table} answered at snapshot {} instead of the requested {snapshot}; the pages would not be consistent",
            end.snapshot
        ))
        .into());
    }
    let next = match (end.has_more, end.cursor) {
        (true, Some(cursor)) => Position::Snapshot {
            snapshot,
            cursor: Some(cursor),
        },
        (true, None) => {
            return Err(UserError::system(format!(
                "list_snapshot of {table} answered hasMore without a cursor"
            ))
            .into())
        }
        (false, _) => Position::Deltas(DeltaCursor::from(snapshot)),
    };
    sink.checkpoint(&next).await?;
    debug_page(
        shared,
        sink,
        "list_snapshot",
        table,
        end.values,
        end.has_more,
    )
    .await?;
    Ok(next)
}

async fn debug_page<A>(
    shared: &Shared<A>,
    sink: &StreamSink<'_>,
    endpoint: &str,
    table: &TableRef,
    values: usize,
    has_more: bool,
) -> anyhow::Result<()> {
    if shared.debug {
        let msg = format!("{endpoint} of {table}: {values} values, hasMore={has_more}");
        sink.out
            .send(Message::log(LogLevel::Debug, &msg).to_line())
            .await
            .context("writing a debug log")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
