//! The change walk, one design for both Convex APIs: pages of changes over a selection arrive
//! from a [`Feed`] (`document_deltas` in `deltas.rs`, a data sync in `data_sync.rs`), each
//! value is routed to its stream, and [`Delivery`] sends it at once or holds its latest
//! revision until the walk ends. The feeds differ only in how pages arrive and what a position
//! is; delivery, checkpoints, the table guard, the buffer budget and progress are written
//! once, here and in `delivery.rs`.
//!
//! By default the walk buffers the latest revision of each changed document and sends those
//! when it ends, so a read delivers each document once. The buffer has a byte budget: once a
//! page takes it past the budget, the walk ends there, the read delivers what it holds and
//! says so, and the next read continues from there. With `every_revision` (history
//! destinations) revisions are sent as pages arrive instead, with a STATE after each page.

use std::future::Future;

use crate::error::UserError;
use crate::messages;
use crate::protocol::{LogLevel, Message};
use crate::state::Position;
use convex::{PageSink, ValueMeta};

use super::changeset::Change;
use super::delivery::{Deferred, Delivery, Intake};
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

/// What a page told the walk.
#[derive(Debug, Default)]
pub struct PageEnd {
    /// No page follows: the walk has caught up.
    pub last: bool,
    /// End the walk after this page (a server that stopped making progress).
    pub stop: Option<Stop>,
    /// What to tell about the page, in order.
    pub notes: Vec<Note>,
    /// Revisions (stream, commit timestamp) that went out from an attempt at this page that
    /// failed, which the attempt that completed did not repeat: the document may have changed
    /// or gone since, so the read ends where the next one reads the log from before them.
    pub unsettled: Vec<(usize, i64)>,
}

/// Why a walk ends after a page although more would follow, told two ways.
#[derive(Debug)]
pub struct Stop {
    /// The WARN of a walk that ends here.
    pub warn: String,
    /// The stream's failure when the walk cannot end here: it deferred revisions and the feed
    /// cannot place the next read before them.
    pub refusal: String,
}

/// Something a page tells the people running the sync.
#[derive(Debug)]
pub enum Note {
    Log(LogLevel, String),
    /// An analytics TRACE: its type, and its value.
    Analytics(&'static str, String),
}

/// How pages of changes arrive: the part of a change walk that depends on the Convex API.
pub trait Feed: Send {
    /// Reads the next page; its values go to `sink`.
    fn page<S: PageSink>(
        &mut self,
        sink: &mut S,
    ) -> impl Future<Output = anyhow::Result<PageEnd>> + Send;

    /// How the next page's values are taken when not every revision is kept.
    fn intake(&self) -> Intake;

    /// Where the next page's values come in the walk: `None` = at their commit timestamp.
    fn seq(&self) -> Option<i64>;

    /// Stream `stream` takes only values committed after this.
    fn floor(&self, stream: usize) -> i64;

    /// Where `stream` stands once every value up to `seq` is out (`None`: no STATE there).
    fn position_at(&self, stream: usize, seq: i64) -> Option<Position>;

    /// Where `stream` stands after the last page read, all of it out (`None`: no STATE).
    fn position(&self, stream: usize) -> Option<Position>;

    /// Where `stream` ends when some of its revisions were deferred to the next read.
    fn deferred_position(
        &mut self,
        stream: usize,
        deferred: Deferred,
    ) -> impl Future<Output = Option<Position>> + Send;

    /// Bytes the feed keeps for held pages (counted against the buffer with the revisions).
    fn held_bytes(&self) -> usize;

    /// Whether a walk that deferred revisions may end now (its `deferred_position` would
    /// place the next read before them).
    fn can_end_deferring(&self) -> bool;

    /// A progress line (the walk adds its own counts).
    fn progress(&mut self, held: usize) -> impl Future<Output = String> + Send;
}

/// Routes each value of a page to its stream and to delivery.
struct WalkSink<'a> {
    routes: &'a Routes,
    floors: &'a [i64],
    seq: Option<i64>,
    intake: Intake,
    delivery: &'a mut Delivery,
    em: &'a mut Emitter,
    runs: &'a mut [StreamRun],
    touched: &'a mut [bool],
    /// The stream of the previous value (most pages hold one table).
    last: Option<usize>,
}

impl PageSink for WalkSink<'_> {
    fn value(&mut self, raw: &[u8], meta: &ValueMeta<'_>) -> anyhow::Result<()> {
        let stream = match self.last {
            Some(s) if self.runs[s].is_of(meta) => s,
            _ => self.routes.stream(meta, "a change")?,
        };
        self.last = Some(stream);
        if meta.ts <= self.floors[stream] {
            return Ok(());
        }
        let Some(deleted) = meta.deleted else {
            return Err(UserError::system(format!(
                "Convex returned a change of {} without `_deleted`; it cannot be told from a delete",
                meta.table
            ))
            .into());
        };
        let seq = self.seq.unwrap_or(meta.ts);
        let change = Change {
            stream,
            id: &meta.id,
            ts: meta.ts,
            seq,
            deleted,
            raw,
            members: meta.members,
            bare: meta.bare,
        };
        if self.delivery.take(self.intake, &change) {
            self.runs[stream].record(self.em, raw, meta)?;
            self.touched[stream] = true;
        }
        Ok(())
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        Ok(self.em.flush_if_full().await?)
    }
}

/// Walks the changes of the streams `members` (indexes into `runs`) from `feed` and delivers
/// them. On `Ok` every member has its final STATE, if its feed gave it a position.
pub async fn walk<F: Feed>(
    feed: &mut F,
    em: &mut Emitter,
    runs: &mut [StreamRun],
    members: &[usize],
    options: ChangeOptions,
) -> anyhow::Result<()> {
    let routes = Routes::of(runs, members);
    let mut floors = vec![i64::MAX; runs.len()];
    for &m in members {
        floors[m] = feed.floor(m);
    }
    // Ids of what went out one by one take at most half the buffer (then `Bloom`'s share).
    let mut delivery = Delivery::new(runs.len(), options.buffer_bytes / 2);
    let mut touched = vec![false; runs.len()];
    let checkpoints_before: Vec<u64> = runs.iter().map(|r| r.counts.pages).collect();
    // A walk of more than one page says where it ended, as well as every `progress_every`.
    let mut pages = 0u64;
    loop {
        pages += 1;
        let intake = if options.every_revision {
            Intake::Direct
        } else {
            feed.intake()
        };
        delivery.page_start();
        let end = {
            let mut sink = WalkSink {
                routes: &routes,
                floors: &floors,
                seq: feed.seq(),
                intake,
                delivery: &mut delivery,
                em: &mut *em,
                runs: &mut *runs,
                touched: &mut touched,
                last: None,
            };
            feed.page(&mut sink).await?
        };
        for &(stream, ts) in &end.unsettled {
            delivery.defer(stream, ts, feed.seq().unwrap_or(ts) - 1);
        }
        for note in &end.notes {
            match note {
                Note::Log(level, text) => em.log(*level, text),
                Note::Analytics(kind, text) => em.line(Message::analytics(kind, text)),
            }
        }
        // After a page that walked by `_id`, what is held goes out too: a snapshot streams
        // through whatever changes come between its pages.
        if delivery.page_end() && intake == Intake::ById && !delivery.is_empty() {
            for stream in delivery.send_now(em, runs).await? {
                touched[stream] = true;
            }
        }
        // A page whose values all went out, with nothing held back: resuming after it loses
        // nothing. (A page without values waits for the next STATE that is due.)
        if intake != Intake::Hold && delivery.is_empty() && !delivery.deferring() {
            for &m in members {
                if std::mem::take(&mut touched[m]) {
                    if let Some(position) = feed.position(m) {
                        runs[m].checkpoint(em, position)?;
                    }
                }
            }
            em.flush_page().await?;
        }
        if em.progress_due() {
            let text = feed.progress(delivery.held()).await;
            em.log(LogLevel::Info, &text);
        }
        if end.last {
            break;
        }
        if let Some(stop) = end.stop {
            // Ended here, a walk that deferred revisions would go back before documents it
            // sent (see the buffer's case below), and it cannot go on: it fails instead, and
            // the next read resumes from its last STATE, as after a read killed here.
            if delivery.deferring() && !feed.can_end_deferring() {
                return Err(UserError::transient(stop.refusal).into());
            }
            em.log(LogLevel::Warn, &stop.warn);
            break;
        }
        let held = delivery.bytes() + feed.held_bytes();
        if !options.every_revision && held >= options.buffer_bytes {
            // A walk that deferred a revision can only end where its feed can place the next
            // read before it (a Data Sync with a consistent copy): ended earlier, its position
            // would go back before documents it sent, and a later delete of one would never
            // reach the destination. Until then what is held goes out now, and the walk goes on.
            if delivery.deferring() && !feed.can_end_deferring() {
                for stream in delivery.send_now(em, runs).await? {
                    touched[stream] = true;
                }
                continue;
            }
            let text = messages::change_buffer_full(
                &routes.selection,
                delivery.held(),
                held,
                options.buffer_bytes,
            );
            em.log(LogLevel::Warn, &text);
            break;
        }
    }
    if pages > 1 {
        let text = feed.progress(delivery.held()).await;
        em.log(LogLevel::Info, &text);
    }
    let deferred = delivery
        .send(em, runs, options.checkpoint_records, |s, q| {
            feed.position_at(s, q)
        })
        .await?;
    for &m in members {
        let position = match deferred[m] {
            None => feed.position(m),
            Some(d) => {
                let text = messages::changes_deferred(&runs[m].desc, d.changes);
                em.log(LogLevel::Info, &text);
                feed.deferred_position(m, d).await
            }
        };
        // Said once: a walk whose last page already wrote this position ends with it.
        let written = runs[m].counts.pages > checkpoints_before[m]
            && position.as_ref() == Some(&runs[m].position);
        if let (Some(position), false) = (position, written) {
            runs[m].checkpoint(em, position)?;
        }
    }
    em.flush().await?;
    Ok(())
}
