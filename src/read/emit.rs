//! Where a read's messages are built: one buffer for the whole read (walks run one at a time),
//! handed to the stdout writer in chunks at message boundaries, and one [`StreamRun`] per
//! configured stream with its position, counters and status.

use std::time::Instant;

use crate::error::{classify, UserError};
use crate::messages;
use crate::output::{Output, OutputClosed, CHUNK_BYTES};
use crate::protocol::{
    now_ms, LogLevel, Message, SourceStats, StateMessage, StreamDescriptor, StreamState,
    StreamStatusKind, SyncMode,
};
use crate::state::Position;
use convex::{Columns, TableRef, ValueMeta};

use super::record::RecordWriter;
use crate::typed::declared::same_bytes;

/// The read's output buffer.
pub struct Emitter {
    out: Output,
    buf: Vec<u8>,
    /// Buffers that reached `CHUNK_BYTES` since the last flush, in order: a network chunk's
    /// records fill as many as they need, so no buffer grows past a chunk and one record.
    sealed: Vec<Vec<u8>>,
    /// `emitted_at` of the records being written: refreshed per network chunk, not per record.
    emitted_at: i64,
    pub debug: bool,
    last_progress: Instant,
    /// When everything written was last handed on.
    last_flush: Instant,
    progress_every: std::time::Duration,
}

/// Output goes to the writer in parts of this much where waiting for [`CHUNK_BYTES`] costs
/// more than it saves. A held set's records are written in one burst, and the writer hands
/// each buffer back to the pool as the next one fills, so the burst cycles through a few
/// buffers: filled to a quarter, they touch a quarter of the fresh memory (a page fault costs
/// about 1 µs here; 10k held changes took 320 to 560 fewer of them, 4 to 7 % less CPU). A
/// change walk's pages end with less than this, and are handed on once it has gathered (see
/// [`Emitter::flush_page`]).
pub const PART_BYTES: usize = 256 * 1024;

/// The longest a page's STATE waits in the read's buffer (see [`Emitter::flush_page`]).
pub const PAGE_FLUSH_AFTER: std::time::Duration = std::time::Duration::from_millis(250);

/// A long read says how it is doing at least this often.
pub const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

impl Emitter {
    pub fn new(out: Output, debug: bool, progress_every: std::time::Duration) -> Self {
        Emitter {
            buf: out.buffer(),
            sealed: Vec::new(),
            out,
            emitted_at: now_ms(),
            debug,
            last_progress: Instant::now(),
            last_flush: Instant::now(),
            progress_every,
        }
    }

    /// Whether a progress LOG is due (one every `progress_every`, [`PROGRESS_EVERY`] in a
    /// real read); if so, it counts as written.
    pub fn progress_due(&mut self) -> bool {
        if self.last_progress.elapsed() < self.progress_every {
            return false;
        }
        self.last_progress = Instant::now();
        true
    }

    pub fn line(&mut self, msg: Message<'_>) {
        msg.write_line(&mut self.buf);
    }

    pub fn log(&mut self, level: LogLevel, text: &str) {
        self.line(Message::log(level, text));
    }

    /// Sets the buffer aside once it holds a chunk (after a whole record).
    fn seal_if_full(&mut self) {
        self.seal_at(CHUNK_BYTES);
    }

    /// Sets the buffer aside once it holds `bytes`.
    fn seal_at(&mut self, bytes: usize) {
        if self.buf.len() >= bytes {
            let full = std::mem::replace(&mut self.buf, self.out.buffer());
            self.sealed.push(full);
        }
    }

    async fn send_sealed(&mut self) -> Result<(), OutputClosed> {
        for chunk in std::mem::take(&mut self.sealed) {
            self.out.send(chunk).await?;
        }
        Ok(())
    }

    /// Hands full buffers on; waits while the writer is behind (that bounds memory).
    pub async fn flush_if_full(&mut self) -> Result<(), OutputClosed> {
        self.emitted_at = now_ms();
        self.seal_if_full();
        self.send_sealed().await
    }

    /// Hands the buffer on once it holds [`PART_BYTES`] (and full buffers, if a record
    /// filled one); for a held set's records, which are written one after another without
    /// waiting on the network: the clock is read once per buffer handed on, not per record.
    pub async fn flush_held(&mut self) -> Result<(), OutputClosed> {
        self.seal_at(PART_BYTES);
        if self.sealed.is_empty() {
            return Ok(());
        }
        self.emitted_at = now_ms();
        self.send_sealed().await
    }

    /// At the end of a page, after its STATE: hands everything written so far on once it holds
    /// [`PART_BYTES`], or [`PAGE_FLUSH_AFTER`] after the last hand-over. A change walk's
    /// pages are small (128 log rows on streaming export), and waking the writer thread for
    /// each cost more CPU than the page's records took to write; STATEs still follow their
    /// records at once in the output, and reach the caller within that time of a page ending.
    pub async fn flush_page(&mut self) -> Result<(), OutputClosed> {
        if self.buf.len() >= PART_BYTES
            || !self.sealed.is_empty()
            || self.last_flush.elapsed() >= PAGE_FLUSH_AFTER
        {
            self.flush().await?;
        }
        Ok(())
    }

    /// Hands everything written so far on (after a STATE, so it reaches the caller promptly).
    pub async fn flush(&mut self) -> Result<(), OutputClosed> {
        self.last_flush = Instant::now();
        self.send_sealed().await?;
        let chunk = std::mem::replace(&mut self.buf, self.out.buffer());
        self.out.send(chunk).await
    }
}

/// Counters of one stream, for STATE and the summary.
#[derive(Default, Debug)]
pub struct Counts {
    pub records: u64,
    pub since_state: u64,
    pub deletes: u64,
    pub pages: u64,
    pub bytes: u64,
}

/// One configured stream during a read.
pub struct StreamRun {
    pub desc: StreamDescriptor,
    pub table: TableRef,
    pub mode: SyncMode,
    pub position: Position,
    /// The columns requested from Convex (`None` = all).
    pub columns: Columns,
    writer: RecordWriter,
    pub counts: Counts,
    running: bool,
    /// Set once the stream has its terminal status.
    pub done: bool,
    failed: bool,
    started: Instant,
}

/// Whether `meta`'s value is of `table`. Asked for every value, of names a few bytes long:
/// compared word by word, as `memcmp`'s set-up costs more than that (profiled at 7 % of a
/// first sync's CPU when it did the comparing).
pub fn is_of_table(meta: &ValueMeta<'_>, table: &TableRef) -> bool {
    same_bytes(meta.table.as_bytes(), table.table.as_bytes())
        && same_bytes(meta.component.as_bytes(), table.component.as_bytes())
}

impl StreamRun {
    pub fn new(
        desc: StreamDescriptor,
        table: TableRef,
        mode: SyncMode,
        position: Position,
        columns: super::record::Columns,
    ) -> Self {
        StreamRun {
            writer: RecordWriter::new(&desc, table.clone(), columns),
            desc,
            table,
            mode,
            position,
            columns: None,
            counts: Counts::default(),
            running: false,
            done: false,
            failed: false,
            started: Instant::now(),
        }
    }

    /// Whether `meta`'s value is of this stream's table (see [`is_of_table`]).
    pub fn is_of(&self, meta: &ValueMeta<'_>) -> bool {
        is_of_table(meta, &self.table)
    }

    /// Appends one RECORD (and RUNNING before the first).
    pub fn record(
        &mut self,
        em: &mut Emitter,
        raw: &[u8],
        meta: &ValueMeta<'_>,
    ) -> anyhow::Result<()> {
        if !self.running {
            self.running = true;
            Message::stream_status(&self.desc, StreamStatusKind::Running).write_line(&mut em.buf);
        }
        let mut notices = Vec::new();
        let w = self
            .writer
            .write(raw, meta, em.emitted_at, &mut em.buf, &mut notices)?;
        for (level, text) in &notices {
            em.log(*level, text);
        }
        self.counts.records += 1;
        self.counts.since_state += 1;
        self.counts.deletes += u64::from(w.deleted);
        self.counts.bytes += raw.len() as u64;
        em.seal_if_full();
        Ok(())
    }

    /// Appends the STATE that says everything up to `position` is delivered. A position a
    /// later read could not resume from (Convex answered something out of its own bounds) is
    /// refused instead, as a retryable error: the next read resumes from the last saved one.
    pub fn checkpoint(&mut self, em: &mut Emitter, position: Position) -> Result<(), UserError> {
        if let Err(why) = position.check_resumable() {
            return Err(UserError::transient(messages::position_not_resumable(
                &self.desc, why,
            )));
        }
        self.counts.pages += 1;
        self.position = position;
        let state = serde_json::value::to_raw_value(&self.position.to_state())
            .map_err(|e| UserError::system(format!("writing the state of {}: {e}", self.desc)))?;
        Message::State {
            state: StateMessage {
                kind: "STREAM",
                stream: StreamState {
                    stream_descriptor: &self.desc,
                    stream_state: &state,
                },
                source_stats: SourceStats {
                    record_count: self.counts.since_state as f64,
                },
            },
        }
        .write_line(&mut em.buf);
        self.counts.since_state = 0;
        Ok(())
    }

    /// Records so far and their rate, for progress LOGs.
    pub fn rate(&self) -> String {
        let elapsed = self.started.elapsed().as_secs_f64();
        format!(
            "{} records sent so far, {:.0} records/s",
            self.counts.records,
            self.counts.records as f64 / elapsed.max(1e-9)
        )
    }

    /// A progress LOG of this stream, if one is due.
    pub fn progress(&self, em: &mut Emitter, doing: &str) {
        if em.progress_due() {
            let text = format!("Stream {}: {doing}; {}", self.desc, self.rate());
            em.log(LogLevel::Info, &text);
        }
    }

    fn summary(&self, em: &mut Emitter) {
        let elapsed = self.started.elapsed().as_secs_f64();
        let c = &self.counts;
        let text =
            messages::stream_summary(&self.desc, c.records, c.deletes, c.pages, c.bytes, elapsed);
        em.log(LogLevel::Info, &text);
    }

    /// Ended COMPLETE.
    pub fn succeeded(&self) -> bool {
        self.done && !self.failed
    }

    pub fn complete(&mut self, em: &mut Emitter) {
        if self.done {
            return;
        }
        self.done = true;
        self.summary(em);
        em.line(Message::stream_status(
            &self.desc,
            StreamStatusKind::Complete,
        ));
    }

    /// Ends the stream INCOMPLETE with a TRACE ERROR that names it.
    pub fn fail(&mut self, em: &mut Emitter, err: &anyhow::Error) {
        if self.done {
            return;
        }
        self.done = true;
        self.failed = true;
        self.summary(em);
        let c = classify(err);
        let message = format!("Stream {}: {}", self.desc, c.message);
        em.line(Message::stream_status(
            &self.desc,
            StreamStatusKind::Incomplete,
        ));
        em.line(Message::error(
            &message,
            &c.internal,
            c.failure_type,
            Some(&self.desc),
        ));
    }
}

/// Whether an error is the caller's stdout going away (which ends the whole read at once).
pub fn is_output_closed(err: &anyhow::Error) -> bool {
    err.chain()
        .any(|c| c.downcast_ref::<OutputClosed>().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::SharedBuffer;

    /// Runs `check` on an emitter over a captured stdout; returns what stdout got in all.
    fn with_emitter(check: impl AsyncFnOnce(&mut Emitter)) -> Vec<u8> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let stdout = SharedBuffer::default();
        let (out, writer) = Output::start(stdout.clone());
        let mut em = Emitter::new(out, false, PROGRESS_EVERY);
        rt.block_on(async {
            check(&mut em).await;
            em.flush().await.unwrap();
        });
        drop(em);
        writer.finish().unwrap();
        stdout.contents()
    }

    #[test]
    fn a_page_end_hands_output_on_once_there_is_enough_or_it_waited_long_enough() {
        let all = with_emitter(async |em| {
            em.buf.extend_from_slice(b"a\n");
            em.flush_page().await.unwrap();
            assert_eq!(em.buf, b"a\n", "a small page's output waits for more");
            em.buf.resize(PART_BYTES, b'b');
            em.flush_page().await.unwrap();
            assert!(em.buf.is_empty(), "enough output goes on at once");
            em.buf.extend_from_slice(b"c\n");
            em.last_flush = Instant::now()
                .checked_sub(PAGE_FLUSH_AFTER)
                .unwrap_or(em.last_flush);
            em.flush_page().await.unwrap();
            assert!(em.buf.is_empty(), "output that waited long enough goes on");
            em.buf.extend_from_slice(b"d\n");
            em.flush_page().await.unwrap();
            assert_eq!(em.buf, b"d\n", "the wait starts again at each hand-over");
        });
        assert_eq!(all.len(), PART_BYTES + 4, "nothing is lost or repeated");
        assert!(all.starts_with(b"a\nbb") && all.ends_with(b"bc\nd\n"));
    }

    #[test]
    fn a_held_set_goes_on_in_parts() {
        let all = with_emitter(async |em| {
            em.buf.resize(PART_BYTES - 1, b'a');
            em.flush_held().await.unwrap();
            assert_eq!(em.buf.len(), PART_BYTES - 1);
            em.buf.push(b'b');
            em.flush_held().await.unwrap();
            assert!(em.buf.is_empty());
        });
        assert_eq!(all.len(), PART_BYTES);
    }
}
