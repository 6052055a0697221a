//! `read`: a plan of walks over the configured streams.
//!
//! 1. Every stream is announced STARTED, in catalog order.
//! 2. The deployment's tables are described once (`discovery`); a stream whose table or state
//!    cannot be used ends INCOMPLETE there.
//! 3. The change walk: one `document_deltas` walk for all incremental streams that finished
//!    their snapshot, from the oldest position to the head T (`changes.rs`). Each document
//!    changed since a stream's position is delivered once, at its latest revision ≤ T.
//! 4. Snapshot walks, one after another, never interleaved (`snapshot.rs`): a stream that
//!    resumes a walk continues it alone at its own timestamp; every other stream that needs a
//!    snapshot (new, reset, full refresh) is read in one walk over all their tables at T (one
//!    Convex iterator for them all), so the whole read is the deployment as of T. Those
//!    streams join the change walk on the next read.
//!
//!
//! With `api: data_sync`, step 3 is instead one Convex data sync per incremental stream
//! (`data_sync.rs`), from its saved cursor, a streaming export position that Convex converts,
//! or a cold start; full refresh streams, and a stream saved in the middle of a `list_snapshot`
//! walk (which finishes it first), take step 4.
//!
//! Per stream: STARTED → (RUNNING at the first record) → RECORDs and STATEs → COMPLETE, or
//! INCOMPLETE + TRACE ERROR; one stream's failure does not stop the others.

pub mod cdc_time;
pub mod changes;
pub mod changeset;
pub mod data_sync;
pub mod emit;
pub mod plan;
pub mod record;
pub mod routes;
pub mod snapshot;

use std::sync::Arc;

use anyhow::Context;

use crate::config::{Api, ColumnTypes};
use crate::convex::data_sync::DataSyncApi;
use crate::convex::{codes, ConvexApi, ConvexError, DeltaCursor, SnapshotTs};
use crate::discovery;
use crate::output::Output;
use crate::protocol::{ConfiguredCatalog, LogLevel, Message, StreamStatusKind, SyncMode};
use crate::state::{InputState, Position};

use changes::{delta_position, ChangeOptions};
use emit::{is_output_closed, Emitter, StreamRun};
use plan::Planned;

pub struct ReadOptions {
    pub debug: bool,
    pub changes: ChangeOptions,
    /// The API incremental streams read through.
    pub api: Api,
    /// How often a long read logs its progress (`emit::PROGRESS_EVERY`).
    pub progress_every: std::time::Duration,
    /// How records carry values (the API client must hand them out in the matching format).
    pub column_types: ColumnTypes,
}

/// Runs a whole `read`. Returns whether every stream completed; `Err` only when stdout is
/// gone.
pub async fn read<A: ConvexApi + DataSyncApi>(
    api: Arc<A>,
    out: Output,
    catalog: ConfiguredCatalog,
    state: InputState,
    options: ReadOptions,
) -> anyhow::Result<bool> {
    let mut em = Emitter::new(out, options.debug, options.progress_every);
    let intro = match options.api {
        Api::StreamingExport => format!(
            "Reading {} stream(s) from Convex: one change walk for incremental streams, then one snapshot walk for the streams that need a snapshot",
            catalog.streams.len()
        ),
        Api::DataSync => format!(
            "Reading {} stream(s) from Convex: one Data Sync per incremental stream, then one snapshot walk for the full refresh streams",
            catalog.streams.len()
        ),
    };
    em.log(LogLevel::Info, &intro);
    let descriptors: Vec<_> = catalog.streams.iter().map(plan::descriptor).collect();
    for d in &descriptors {
        em.line(Message::stream_status(d, StreamStatusKind::Started));
    }
    em.flush().await?;

    // One description proves the key, the plan and the permissions before any walk, and tells
    // which configured tables still exist (and what columns they offer).
    let described = match discovery::describe(&*api).await {
        Ok(d) => d,
        Err(e) => {
            // Every stream still gets its terminal status, so destinations report this cause.
            for d in &descriptors {
                em.line(Message::stream_status(d, StreamStatusKind::Incomplete));
            }
            let err = anyhow::Error::new(e).context("reading the deployment's tables");
            let c = crate::error::classify(&err);
            em.line(Message::error(
                &c.message,
                &c.internal,
                c.failure_type,
                None,
            ));
            em.flush().await?;
            return Ok(false);
        }
    };
    if let Some(w) = &described.warning {
        em.log(LogLevel::Warn, w);
    }

    let mut runs: Vec<StreamRun> = Vec::new();
    let mut all_ok = true;
    for p in plan::plan(&catalog, &state, &described.schemas, options.column_types) {
        match p {
            Planned::Run(run) => runs.push(*run),
            Planned::Failed(desc, e) => {
                all_ok = false;
                em.line(Message::stream_status(&desc, StreamStatusKind::Incomplete));
                em.line(Message::error(
                    &format!("Stream {desc}: {}", e.message),
                    &e.message,
                    e.failure_type,
                    Some(&desc),
                ));
            }
        }
    }
    em.flush().await?;

    let t = match options.api {
        Api::StreamingExport => {
            for run in &mut runs {
                onto_streaming_export(&mut em, run);
            }
            change_walk(&*api, &mut em, &mut runs, options.changes).await?
        }
        Api::DataSync => {
            for run in runs.iter_mut().filter(|r| {
                !r.done
                    && r.mode == SyncMode::Incremental
                    && !matches!(r.position, Position::Snapshot { .. })
            }) {
                let result = data_sync::walk(&*api, &mut em, run, options.changes).await;
                finish(&mut em, run, result)?;
                em.flush().await?;
            }
            None
        }
    };

    // Snapshot walks, one at a time: resumed walks first, each alone at its own timestamp,
    // then one walk over the tables of every other stream that needs a snapshot, at T.
    let resumed: Vec<usize> = (0..runs.len())
        .filter(|&i| !runs[i].done && matches!(runs[i].position, Position::Snapshot { .. }))
        .collect();
    for i in resumed {
        let result = snapshot::walk(&*api, &mut em, &mut runs, &[i], SnapshotTs(0)).await;
        finish(&mut em, &mut runs[i], result)?;
        em.flush().await?;
    }
    let fresh: Vec<usize> = (0..runs.len())
        .filter(|&i| !runs[i].done && delta_position(&runs[i]).is_none())
        .collect();
    let at = match (fresh.is_empty(), t) {
        (true, _) => None,
        (false, Some(c)) => Some(Ok(SnapshotTs(c.0))),
        (false, None) => Some(api.head().await.context("reading the head timestamp")),
    };
    match at {
        None => {}
        Some(Err(e)) => {
            for &i in &fresh {
                runs[i].fail(&mut em, &e);
            }
        }
        Some(Ok(at)) => match snapshot::walk(&*api, &mut em, &mut runs, &fresh, at).await {
            Ok(()) => {
                for &i in &fresh {
                    runs[i].complete(&mut em);
                }
            }
            Err(e) if is_output_closed(&e) => return Err(e),
            // One stream's table can stop a walk of several (a document Convex cannot send,
            // say): the stream whose page broke (it has records past its last STATE, which
            // must not be sent twice in a read) fails; each other one goes on alone from its
            // last STATE, so it still finishes in this read.
            Err(e) => {
                let (broken, others): (Vec<usize>, Vec<usize>) = fresh
                    .iter()
                    .partition(|&&i| runs[i].counts.since_state > 0 || fresh.len() == 1);
                for &i in &broken {
                    runs[i].fail(&mut em, &e);
                }
                if !others.is_empty() {
                    let text = format!(
                        "The snapshot walk of {} streams stopped ({e:#}); {} go on alone from their last checkpoint.",
                        fresh.len(),
                        others.len()
                    );
                    em.log(LogLevel::Warn, &text);
                }
                for i in others {
                    let result = snapshot::walk(&*api, &mut em, &mut runs, &[i], at).await;
                    finish(&mut em, &mut runs[i], result)?;
                    em.flush().await?;
                }
            }
        },
    }
    em.flush().await?;
    for run in &runs {
        all_ok &= run.succeeded();
    }
    em.flush().await?;
    Ok(all_ok)
}

/// A stream saved on the Data Sync API, read through the streaming export API: a sync that
/// had a consistent copy continues from its timestamp (a `document_deltas` position); one
/// still snapshotting starts over.
fn onto_streaming_export(em: &mut Emitter, run: &mut StreamRun) {
    let Position::DataSync { consistent_at, .. } = &run.position else {
        return;
    };
    let text = match consistent_at {
        Some(t) => {
            let text = format!(
                "Stream {}: its saved position is a Data Sync cursor, consistent at {t}; with api streaming_export it continues from that timestamp through document_deltas.",
                run.desc
            );
            run.position = Position::Deltas(DeltaCursor(t.0));
            (LogLevel::Info, text)
        }
        None => {
            let text = format!(
                "Stream {}: its saved position is a Data Sync cursor in the middle of its snapshot, which the streaming export API cannot continue; the table is read again from a fresh snapshot (rows deleted meanwhile stay in the destination until the stream is refreshed).",
                run.desc
            );
            run.position = Position::Fresh;
            (LogLevel::Warn, text)
        }
    };
    em.log(text.0, &text.1);
}

/// Ends a stream after its walk: COMPLETE, or INCOMPLETE with the walk's error.
fn finish(em: &mut Emitter, run: &mut StreamRun, result: anyhow::Result<()>) -> anyhow::Result<()> {
    match result {
        Ok(()) => run.complete(em),
        Err(e) if is_output_closed(&e) => return Err(e),
        Err(e) => run.fail(em, &e),
    }
    Ok(())
}

/// Runs the change walk for the incremental streams at `Deltas` positions. Returns the walk's
/// end T, or `None` when there was no walk (or it failed).
///
/// A position older than Convex's change-log retention (`InvalidWindowToReadDocuments`)
/// moves the streams at that position to a fresh snapshot, with a WARN, and the walk goes on
/// for the others.
async fn change_walk<A: ConvexApi>(
    api: &A,
    em: &mut Emitter,
    runs: &mut [StreamRun],
    options: ChangeOptions,
) -> anyhow::Result<Option<DeltaCursor>> {
    loop {
        let members: Vec<usize> = (0..runs.len())
            .filter(|&i| {
                !runs[i].done
                    && runs[i].mode == SyncMode::Incremental
                    && delta_position(&runs[i]).is_some()
            })
            .collect();
        if members.is_empty() {
            return Ok(None);
        }
        match changes::walk(api, em, runs, &members, options).await {
            Ok(end) => {
                for &m in &members {
                    if !end.ahead.contains(&m) {
                        runs[m].complete(em);
                        continue;
                    }
                    // Waiting would not help: the changes between this deployment's head and
                    // the saved position may never be written here.
                    let text = format!(
                        "Stream {}: its saved position ({}) is later than anything this deployment has written (its latest is {}): the state comes from another deployment (deployment_url changed), or this deployment was restored from a backup. Re-reading the table from a fresh snapshot now; rows the destination holds that this deployment does not have stay there until the stream is refreshed.",
                        runs[m].desc,
                        delta_position(&runs[m]).map_or(0, |c| c.0),
                        end.at
                    );
                    em.log(LogLevel::Warn, &text);
                    runs[m].position = Position::Fresh;
                }
                em.flush().await?;
                return Ok(Some(end.at));
            }
            Err(e) if is_output_closed(&e) => return Err(e),
            Err(e) => {
                let expired = e
                    .chain()
                    .find_map(|c| c.downcast_ref::<ConvexError>())
                    .and_then(ConvexError::code)
                    == Some(codes::INVALID_WINDOW);
                let oldest = members
                    .iter()
                    .filter_map(|&m| delta_position(&runs[m]))
                    .min();
                if !expired {
                    for &m in &members {
                        runs[m].fail(em, &e);
                    }
                    em.flush().await?;
                    return Ok(None);
                }
                for &m in &members {
                    if delta_position(&runs[m]) == oldest {
                        let text = format!(
                            "Stream {}: the saved position is older than Convex's change-log retention (InvalidWindowToReadDocuments). Re-reading the whole table from a fresh snapshot now; documents deleted during the gap are not reported as deletes, so destinations may keep them until a full reset.",
                            runs[m].desc
                        );
                        em.log(LogLevel::Warn, &text);
                        runs[m].position = Position::Fresh;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
