//! Data Sync walks: one Convex data sync per incremental stream, over a selection of exactly
//! its table (and columns), when the config says `api: data_sync`.
//!
//! Why one sync per stream and not one for the read: a single-table data sync reads only that
//! table's log (Convex's `load_documents_from_table`), so N syncs cost the server what one
//! would, and each stream keeps its own cursor in its own STATE, which is what Airbyte and
//! PyAirbyte persist, reset and hand back per stream.
//!
//! The guarantee is the streaming export API's: a read sends each document at most once, its
//! latest revision, so a destination that merges a read without deduplicating holds exactly
//! the deployment. A data sync does not promise that by itself: while it snapshots a table it
//! may send a document again at a newer revision (a log page catching up), and after it, every
//! revision. So the walk keeps the latest revision of each document it holds (`ChangeSet`)
//! and hands the held set on
//! - after a page that walked the table by `_id` (each document once, in ascending `_id`), so
//!   a snapshot of any size streams through one page at a time, and
//! - at the end of the walk, or when the held set reaches the change buffer budget.
//!
//! A page that would send a document already sent in this read (any `_id` at or below the
//! greatest sent so far) is not taken: the walk stops before it, and the next read continues
//! from that page. So every read is exact, and each read moves at least one page.
//!
//! Memory: two pages, the one being sent and the next (requested meanwhile; Convex bounds a
//! page at 64 MiB of values), plus the held set and the held pages' cursors, together bounded
//! by `change_buffer_mb` as in the change walk.
//!
//! Bounds on a server that misbehaves: a page whose position a later read could not resume
//! from (a cursor over 64 KiB, a timestamp of 0 or below) is refused before any of its values
//! is sent; [`MAX_PAGES_WITHOUT_PROGRESS`] pages in a row that neither walk the table nor move
//! the consistent timestamp end the read at its last position, with a WARN; a page without
//! values emits no STATE of its own.

use std::borrow::Cow;

use crate::convex::data_sync::{codes, DataSyncApi, DataSyncCursor, SyncPage, SyncStatus};
use crate::convex::{ConvexError, Selection, SnapshotTs, TableRef, ValueMeta};
use crate::error::UserError;
use crate::protocol::{LogLevel, Message};
use crate::state::Position;

use super::changes::ChangeOptions;
use super::changeset::ChangeSet;
use super::emit::{Emitter, StreamRun};

/// The page after which a held revision may be checkpointed, and where the sync stands then.
struct Held {
    seq: i64,
    cursor: DataSyncCursor,
    sync_id: String,
    consistent_at: Option<SnapshotTs>,
}

/// Consecutive pages without progress after which a walk stops: Convex's pages either walk the
/// table (values) or consume its log (a later consistent timestamp), so a server answering
/// this many pages that do neither would be read forever.
pub const MAX_PAGES_WITHOUT_PROGRESS: u32 = 64;

/// What a walk has sent and holds in this read.
struct Walk {
    set: ChangeSet,
    held: Vec<Held>,
    /// Bytes of the held pages' cursors and sync ids: counted with the held revisions against
    /// the change buffer.
    held_bytes: usize,
    /// The latest consistent timestamp a page of this read reported.
    best_consistent: Option<SnapshotTs>,
    /// Pages in a row that brought no value and no later consistent timestamp.
    stalled: u32,
    /// The greatest `_id` sent in this read: a page with an `_id` at or below it may repeat
    /// a document.
    sent_max: Option<String>,
    seq: i64,
    pages: u64,
    received: u64,
}

/// Reads `run`'s table through a data sync, from its saved position (a Data Sync cursor, or a
/// streaming export position converted by Convex), or from a cold start.
pub async fn walk<D: DataSyncApi>(
    api: &D,
    em: &mut Emitter,
    run: &mut StreamRun,
    options: ChangeOptions,
) -> anyhow::Result<()> {
    let selection = Selection::one(run.table.clone(), run.columns.clone());
    let mut cursor = start(api, em, run, &selection).await?;
    // Whether the cursor came from a saved state (then Convex refusing it is the state's fault).
    let mut saved = cursor.is_some();
    let mut restarted = false;
    let mut status = match &run.position {
        Position::DataSync {
            consistent_at: Some(t),
            ..
        } => SyncStatus::Stale(*t),
        _ => SyncStatus::Snapshotting,
    };
    let mut w = Walk {
        set: ChangeSet::new(),
        held: Vec::new(),
        held_bytes: 0,
        best_consistent: None,
        stalled: 0,
        sent_max: None,
        seq: 0,
        pages: 0,
        received: 0,
    };
    let mut prefetched: Option<Result<SyncPage, ConvexError>> = None;
    loop {
        let cold = cursor.is_none();
        let answer = match prefetched.take() {
            Some(answer) => answer,
            None => api.data_sync(&selection, cursor.as_ref()).await,
        };
        let page = match answer {
            Ok(p) => p,
            Err(e) if e.code() == Some(codes::CURSOR_EXPIRED) && !cold && !restarted => {
                let text = format!(
                    "Stream {}: its Data Sync cursor has expired (DataSyncCursorExpired: the stream was not read within Convex's retention, 3 days on Convex Cloud). Starting a new sync of the table now: every document is sent again, and documents deleted in the meantime stay in the destination until this stream is refreshed (Airbyte: Refresh or Clear data; PyAirbyte: read(force_full_refresh=True)).",
                    run.desc
                );
                em.log(LogLevel::Warn, &text);
                restarted = true;
                saved = false;
                cursor = None;
                continue;
            }
            Err(e) if e.code() == Some(codes::INVALID_CURSOR) && !saved && !cold => {
                // The cursor came from this deployment a page ago: not the user's doing.
                return Err(UserError::system(format!(
                    "Convex refused a Data Sync cursor of {} that it had answered itself earlier in this read ({}); nothing of the refused page was saved. Sync again: the next read resumes from the last saved position. If it happens again, report it to Convex support.",
                    run.table,
                    e.detail()
                ))
                .into());
            }
            Err(e) if e.code() == Some(codes::INVALID_CURSOR) && saved => {
                return Err(UserError::config(format!(
                    "Convex refused the saved Data Sync cursor of {} ({}): it was not made by this deployment, or it was altered. Check that deployment_url is the deployment this connection synced, or reset this stream (Airbyte: Refresh or Clear data; PyAirbyte: read(force_full_refresh=True)).",
                    run.table,
                    e.detail()
                ))
                .into());
            }
            Err(e) => return Err(e.into()),
        };
        saved = false;
        check_tables(run, &page)?;
        // What this page's STATE would say must be a position a later read resumes from;
        // refused now, before any of its values is sent.
        if let Err(why) = position(&page).check_resumable() {
            return Err(UserError::transient(format!(
                "Stream {}: Convex answered a Data Sync page this connector could not resume after ({why}); it was not taken. Sync again: the next read resumes from the last saved position. If it happens again, report it to Convex support.",
                run.desc
            ))
            .into());
        }
        let repeats = w.sent_max.as_deref().and_then(|max| {
            page.values
                .iter()
                .find(|v| v.id.as_str() <= max)
                .map(|v| v.id.clone())
        });
        if let Some(id) = repeats {
            // Not taken: the next read asks for this page again and sends it then.
            let text = format!(
                "Stream {}: stopped before a Data Sync page that would send document {id} a second time in this read (Convex re-sends documents that change while it snapshots); the next read continues from there.",
                run.desc
            );
            em.log(LogLevel::Info, &text);
            break;
        }
        // Said once the page is taken (a page not taken comes again in the next read).
        if !cold && page.truncates.contains(&run.table) {
            truncated(em, run);
        }
        let walked_by_id = status == SyncStatus::Snapshotting && by_id_shape(&page);
        w.seq += 1;
        w.pages += 1;
        w.received += page.values.len() as u64;
        status = page.status;
        let later = page
            .status
            .consistent_at()
            .is_some_and(|t| w.best_consistent.is_none_or(|b| t > b));
        if later {
            w.best_consistent = page.status.consistent_at();
        }
        let walking = status == SyncStatus::Snapshotting && !page.values.is_empty();
        w.stalled = if later || walking { 0 } else { w.stalled + 1 };
        if em.debug {
            let text = format!(
                "data sync of {}: {} values, {} truncates, status {:?}",
                run.table,
                page.values.len(),
                page.truncates.len(),
                page.status
            );
            em.log(LogLevel::Debug, &text);
        }
        // The next page is asked for while this one is sent (Convex computes it meanwhile);
        // an up-to-date page is the walk's last.
        let ahead = async {
            Ok(match page.status {
                SyncStatus::UpToDate(_) => None,
                _ => Some(api.data_sync(&selection, Some(&page.next)).await),
            })
        };
        let take = take_page(em, run, &mut w, &page, walked_by_id, options);
        let ((), next) = tokio::try_join!(take, ahead)?;
        prefetched = next;
        progress(em, run, &w, status);
        if matches!(status, SyncStatus::UpToDate(_)) {
            break;
        }
        if w.stalled >= MAX_PAGES_WITHOUT_PROGRESS {
            let text = format!(
                "Stream {}: Convex's Data Sync answered {} pages in a row that neither walked the table nor moved its consistent timestamp; stopped this read at its last position instead of asking forever. The next read continues from there; if this repeats, report it to Convex support.",
                run.desc, w.stalled
            );
            em.log(LogLevel::Warn, &text);
            break;
        }
        if !options.every_revision && w.set.bytes() + w.held_bytes >= options.buffer_bytes {
            let text = format!(
                "Stream {}: stopped this read's Data Sync after {} pages: {} changed documents ({:.1} MiB) reached the change buffer (change_buffer_mb = {}). They are delivered now, one revision each; the next read continues from there.",
                run.desc,
                w.pages,
                w.set.len(),
                w.set.bytes() as f64 / (1024.0 * 1024.0),
                options.buffer_bytes / (1024 * 1024)
            );
            em.log(LogLevel::Warn, &text);
            break;
        }
        cursor = Some(page.next);
    }
    send_held(em, run, &mut w, options.checkpoint_records).await?;
    Ok(())
}

/// Sends (or holds) the values of a page that is taken, with the STATEs that follow them.
async fn take_page(
    em: &mut Emitter,
    run: &mut StreamRun,
    w: &mut Walk,
    page: &SyncPage,
    walked_by_id: bool,
    options: ChangeOptions,
) -> anyhow::Result<()> {
    if options.every_revision {
        // History mode: every revision as it comes, a STATE after each page.
        let table = run.table.clone();
        for v in &page.values {
            run.record(em, &v.raw, &meta(&table, &v.id, v.ts, v.deleted))?;
            em.flush_if_full().await?;
        }
        // An empty page's STATE only when it is the last (up to date): not one per page.
        if !page.values.is_empty() || matches!(page.status, SyncStatus::UpToDate(_)) {
            run.checkpoint(em, position(page))?;
            em.flush().await?;
        }
    } else if walked_by_id && w.set.len() == 0 {
        // A by-id page with nothing held: each document once, in `_id` order, and none of
        // them sent before (the repeat check): straight out, then its STATE.
        let table = run.table.clone();
        for v in &page.values {
            run.record(em, &v.raw, &meta(&table, &v.id, v.ts, v.deleted))?;
            em.flush_if_full().await?;
        }
        if let Some(last) = page.values.last() {
            if w.sent_max.as_deref().is_none_or(|m| last.id.as_str() > m) {
                w.sent_max = Some(last.id.clone());
            }
        }
        // Positions of empty pages still waiting for their STATE are older: this one covers them.
        w.held.clear();
        w.held_bytes = 0;
        run.checkpoint(em, position(page))?;
        em.flush().await?;
    } else {
        for v in &page.values {
            w.set.insert(0, &v.id, v.ts, w.seq, v.deleted, &v.raw);
        }
        let held = Held {
            seq: w.seq,
            cursor: page.next.clone(),
            sync_id: page.sync_id.clone(),
            consistent_at: page.status.consistent_at(),
        };
        match w.held.last_mut() {
            // A page without values supersedes the position of the page before it (resuming
            // after it loses nothing once that page's revisions are out): its STATE waits for
            // the next that is due, so empty pages neither each emit one nor pile up.
            Some(last) if page.values.is_empty() => {
                w.held_bytes -= last.cursor.0.len() + last.sync_id.len();
                *last = Held {
                    seq: last.seq,
                    ..held
                };
            }
            _ => w.held.push(held),
        }
        if let Some(last) = w.held.last() {
            w.held_bytes += last.cursor.0.len() + last.sync_id.len();
        }
        if walked_by_id {
            send_held(em, run, w, options.checkpoint_records).await?;
        }
    }
    Ok(())
}

/// The cursor to continue from: the saved one, a streaming export position converted by
/// Convex (checkpointed at once, so the conversion is done once), or `None` (a cold start).
async fn start<D: DataSyncApi>(
    api: &D,
    em: &mut Emitter,
    run: &mut StreamRun,
    selection: &Selection,
) -> anyhow::Result<Option<DataSyncCursor>> {
    let at =
        match &run.position {
            Position::DataSync { cursor, .. } => return Ok(Some(cursor.clone())),
            Position::Fresh => return Ok(None),
            Position::Deltas(c) => *c,
            Position::Snapshot { .. } => return Err(UserError::system(
                "a stream in the middle of a list_snapshot walk was given to the Data Sync walk",
            )
            .into()),
        };
    match api.cursor_from_deltas(selection, at).await {
        Ok(cursor) => {
            let text = format!(
                "Stream {}: moved from the streaming export API (position {at}) to Convex's Data Sync API; Convex converted the position, so nothing is read again.",
                run.desc
            );
            em.log(LogLevel::Info, &text);
            run.checkpoint(
                em,
                Position::DataSync {
                    cursor: cursor.clone(),
                    sync_id: String::new(),
                    consistent_at: Some(SnapshotTs(at.0)),
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
            let text = format!(
                "Stream {}: Convex could not convert its streaming export position {at} to a Data Sync cursor ({}). Starting a new Data Sync of the table instead: every document is sent again, and documents deleted since that position stay in the destination until this stream is refreshed (Airbyte: Refresh or Clear data; PyAirbyte: read(force_full_refresh=True)).",
                run.desc,
                e.detail()
            );
            em.log(LogLevel::Warn, &text);
            Ok(None)
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!(
            "converting the streaming export position {at} of {} to a Data Sync cursor",
            run.table
        ))),
    }
}

/// Values of another table mean the selection was not honoured: fail rather than mix tables.
fn check_tables(run: &StreamRun, page: &SyncPage) -> Result<(), UserError> {
    match page.values.iter().find(|v| v.table != run.table) {
        None => Ok(()),
        Some(v) => Err(UserError::system(format!(
            "the data sync of {} returned a document of table {}: the deployment ignored the selection. The stream was stopped instead of mixing tables; contact Convex support.",
            run.table, v.table
        ))),
    }
}

/// What a by-id page looks like: live documents in strictly ascending `_id`. (A log page can
/// look the same; then the held set is just sent sooner, which costs nothing in exactness.)
fn by_id_shape(page: &SyncPage) -> bool {
    !page.values.is_empty()
        && page.values.iter().all(|v| !v.deleted)
        && page.values.windows(2).all(|p| p[0].id < p[1].id)
}

/// A table Convex replaced (an import, or deleted and re-created): its new documents come in
/// this read, but a source cannot empty a destination table, so say what to do.
fn truncated(em: &mut Emitter, run: &StreamRun) {
    let text = format!(
        "Stream {}: Convex reports that table {} was replaced (by an import, or deleted and re-created). Its current documents are read again from scratch now, but documents that vanished with the old table stay in the destination: refresh this stream (Airbyte: Refresh or Clear data of stream {}; PyAirbyte: read(force_full_refresh=True)).",
        run.desc, run.table, run.desc
    );
    em.log(LogLevel::Warn, &text);
    em.line(Message::analytics("convex_table_replaced", &text));
}

fn meta<'a>(table: &'a TableRef, id: &'a str, ts: i64, deleted: bool) -> ValueMeta<'a> {
    ValueMeta {
        table: Cow::Borrowed(&table.table),
        component: Cow::Borrowed(&table.component),
        id: Cow::Borrowed(id),
        ts,
        deleted: Some(deleted),
        members: None,
    }
}

fn position(page: &SyncPage) -> Position {
    Position::DataSync {
        cursor: page.next.clone(),
        sync_id: page.sync_id.clone(),
        consistent_at: page.status.consistent_at(),
    }
}

/// Sends the held revisions, ordered by the page that brought each, with a STATE after about
/// `checkpoint_records` of them at a page boundary and one after the last held page. Resuming
/// from a page's cursor loses nothing: every revision held from that page or earlier is out,
/// and later ones supersede the rest.
async fn send_held(
    em: &mut Emitter,
    run: &mut StreamRun,
    w: &mut Walk,
    checkpoint_records: usize,
) -> anyhow::Result<()> {
    let Some(last) = w.held.pop() else {
        return Ok(());
    };
    let held = std::mem::take(&mut w.held);
    w.held_bytes = 0;
    let sorted = std::mem::take(&mut w.set).into_sorted();
    let mut since_state = 0;
    let table = run.table.clone();
    for (i, (_, id, rev)) in sorted.iter().enumerate() {
        run.record(em, &rev.raw, &meta(&table, id, rev.ts, rev.deleted))?;
        if w.sent_max.as_deref().is_none_or(|m| &**id > m) {
            w.sent_max = Some(id.to_string());
        }
        since_state += 1;
        let boundary = sorted.get(i + 1).is_none_or(|next| next.2.seq > rev.seq);
        if since_state >= checkpoint_records && boundary {
            if let Some(h) = held.iter().find(|h| h.seq == rev.seq) {
                since_state = 0;
                run.checkpoint(em, held_position(h))?;
            }
        }
        em.flush_if_full().await?;
    }
    run.checkpoint(em, held_position(&last))?;
    em.flush().await?;
    Ok(())
}

fn held_position(h: &Held) -> Position {
    Position::DataSync {
        cursor: h.cursor.clone(),
        sync_id: h.sync_id.clone(),
        consistent_at: h.consistent_at,
    }
}

/// A LOG about every 15 s of a long walk (see `Emitter::progress_due`).
fn progress(em: &mut Emitter, run: &StreamRun, w: &Walk, status: SyncStatus) {
    if !em.progress_due() {
        return;
    }
    let phase = match status {
        SyncStatus::Snapshotting => "snapshotting".to_owned(),
        SyncStatus::Stale(t) => format!("consistent at {t}, catching up"),
        SyncStatus::UpToDate(t) => format!("up to date at {t}"),
    };
    let text = format!(
        "Stream {}: Data Sync {phase}; {} pages, {} values received, {} held; {}",
        run.desc,
        w.pages,
        w.received,
        w.set.len(),
        run.rate()
    );
    em.log(LogLevel::Info, &text);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convex::data_sync::SyncValue;

    fn value(id: &str, deleted: bool) -> SyncValue {
        SyncValue {
            table: TableRef::root("t"),
            id: id.into(),
            ts: 1,
            deleted,
            raw: b"{}".to_vec(),
        }
    }

    fn page(values: Vec<SyncValue>) -> SyncPage {
        SyncPage {
            status: SyncStatus::Snapshotting,
            truncates: vec![],
            values,
            sync_id: String::new(),
            next: DataSyncCursor("c".into()),
        }
    }

    #[test]
    fn by_id_pages_are_live_documents_in_ascending_id() {
        assert!(by_id_shape(&page(vec![
            value("a", false),
            value("b", false)
        ])));
        assert!(!by_id_shape(&page(vec![])));
        assert!(!by_id_shape(&page(vec![
            value("b", false),
            value("a", false)
        ])));
        assert!(!by_id_shape(&page(vec![
            value("a", false),
            value("a", false)
        ])));
        assert!(!by_id_shape(&page(vec![
            value("a", false),
            value("b", true)
        ])));
    }
}
