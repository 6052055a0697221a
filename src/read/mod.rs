//! `read`: a plan of walks over the configured streams, in phases.
//!
//! 1. `announce`: every stream is STARTED, in catalog order.
//! 2. `prepare`: the deployment's tables are described once (`discovery`) and each stream is
//!    planned (`plan`); a stream whose table or state cannot be used ends INCOMPLETE there.
//! 3. `change_phase`: incremental streams that finished their snapshot read their changes,
//!    through one change walk (`changes.rs`) fed by either Convex API:
//!    - Data Sync (`api: auto` where the deployment serves it, or `data_sync`): one data sync
//!      per stream (`data_sync.rs`), from its saved cursor, a streaming export position that
//!      Convex converts, or a cold start (its first sync, snapshot included);
//!    - streaming export: one `document_deltas` walk for all of them (`deltas.rs`), from the
//!      oldest position to the head T. Each document changed since a stream's position is
//!      delivered once, at its latest revision ≤ T.
//! 4. `snapshot_phase`: snapshot walks (`snapshot.rs`), one after another, never interleaved:
//!    a stream that resumes a `list_snapshot` walk continues it alone at its own timestamp;
//!    every other stream that needs a snapshot (full refresh; on the streaming export API also
//!    new and refreshed streams) is read in one walk over all their tables at T (one Convex
//!    iterator for them all), so the whole read is the deployment as of T.
//!
//! Per stream: STARTED → (RUNNING at the first record) → RECORDs and STATEs → COMPLETE, or
//! INCOMPLETE + TRACE ERROR; one stream's failure does not stop the others.

pub mod bloom;
pub mod cdc_time;
pub mod changes;
pub mod changeset;
pub mod data_sync;
pub mod delivery;
pub mod deltas;
pub mod emit;
pub mod plan;
pub mod record;
pub mod routes;
pub mod snapshot;

use std::sync::Arc;

use anyhow::Context;

use crate::config::{Api, ColumnTypes};
use crate::discovery;
use crate::error::UserError;
use crate::listener::Activity;
use crate::messages;
use crate::output::Output;
use crate::protocol::{
    ConfiguredCatalog, LogLevel, Message, StreamDescriptor, StreamStatusKind, SyncMode,
};
use crate::state::{InputState, Position};
use convex::data_sync::DataSyncApi;
use convex::{codes, ConvexApi, ConvexError, DeltaCursor, SnapshotTs};

use changes::ChangeOptions;
use deltas::{delta_position, DeltasFeed};
use emit::{is_output_closed, Emitter, StreamRun};
use plan::Planned;

#[derive(Clone)]
pub struct ReadOptions {
    pub debug: bool,
    pub changes: ChangeOptions,
    /// The API incremental streams read through.
    pub api: Api,
    /// How often a long read logs its progress (`emit::PROGRESS_EVERY`).
    pub progress_every: std::time::Duration,
    /// How records carry values (the API client must hand them out in the matching format).
    pub column_types: ColumnTypes,
    /// Which streams are being read, for the client's listener (a rate limit shows on them).
    pub activity: Arc<Activity>,
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
    let descriptors = announce(&mut em, &catalog, options.api).await?;
    let Some(mut runs) = prepare(&*api, &mut em, &catalog, &state, &descriptors, &options).await?
    else {
        return Ok(false);
    };
    let t = change_phase(&*api, &mut em, &mut runs, &options).await?;
    snapshot_phase(&*api, &mut em, &mut runs, t, &options.activity).await?;
    options.activity.set(&[]);
    em.flush().await?;
    Ok(descriptors.len() == runs.len() && runs.iter().all(StreamRun::succeeded))
}

/// Says what the read will do, and starts every stream.
async fn announce(
    em: &mut Emitter,
    catalog: &ConfiguredCatalog,
    api: Api,
) -> anyhow::Result<Vec<StreamDescriptor>> {
    let how = match api {
        Api::StreamingExport => "one change walk for incremental streams",
        Api::DataSync => "one Data Sync per incremental stream",
        Api::Auto => messages::READ_VIA_DATA_SYNC_WHERE_SERVED,
    };
    let intro = messages::read_intro(catalog.streams.len(), how);
    em.log(LogLevel::Info, &intro);
    let descriptors: Vec<_> = catalog.streams.iter().map(plan::descriptor).collect();
    for d in &descriptors {
        em.line(Message::stream_status(d, StreamStatusKind::Started));
    }
    em.flush().await?;
    Ok(descriptors)
}

/// Describes the deployment once (which proves the key, the plan and the permissions before
/// any walk) and plans every stream. `None`: the deployment could not be described, and every
/// stream ended INCOMPLETE.
async fn prepare<A: ConvexApi>(
    api: &A,
    em: &mut Emitter,
    catalog: &ConfiguredCatalog,
    state: &InputState,
    descriptors: &[StreamDescriptor],
    options: &ReadOptions,
) -> anyhow::Result<Option<Vec<StreamRun>>> {
    let described = match discovery::describe(api).await {
        Ok(d) => d,
        Err(e) => {
            // Every stream still gets its terminal status, so destinations report this cause.
            for d in descriptors {
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
            return Ok(None);
        }
    };
    if let Some(w) = &described.warning {
        em.log(LogLevel::Warn, w);
    }
    let mut runs = Vec::new();
    for p in plan::plan(catalog, state, &described.schemas, options.column_types) {
        match p {
            Planned::Run(run) => runs.push(*run),
            Planned::Failed(desc, e) => {
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
    Ok(Some(runs))
}

/// Incremental streams that read changes now (not full refresh, not in a `list_snapshot`
/// walk, which they finish first).
fn reads_changes(run: &StreamRun) -> bool {
    !run.done
        && run.mode == SyncMode::Incremental
        && !matches!(run.position, Position::Snapshot { .. })
}

/// Reads the changes of every incremental stream, through the API the config names. Returns
/// the streaming export change walk's end T, if there was one.
async fn change_phase<A: ConvexApi + DataSyncApi>(
    api: &A,
    em: &mut Emitter,
    runs: &mut [StreamRun],
    options: &ReadOptions,
) -> anyhow::Result<Option<DeltaCursor>> {
    if options.api != Api::StreamingExport {
        match data_sync_phase(api, em, runs, options).await? {
            Served::Yes => return Ok(None),
            Served::No => fall_back(em, runs),
        }
    }
    for run in runs.iter_mut() {
        onto_streaming_export(em, run);
    }
    change_walk(api, em, runs, options).await
}

enum Served {
    Yes,
    /// The deployment has no Data Sync API (`api: auto` only; the streams are untouched).
    No,
}

/// One data sync per incremental stream, one after another.
async fn data_sync_phase<A: DataSyncApi>(
    api: &A,
    em: &mut Emitter,
    runs: &mut [StreamRun],
    options: &ReadOptions,
) -> anyhow::Result<Served> {
    for i in 0..runs.len() {
        if !reads_changes(&runs[i]) {
            continue;
        }
        options.activity.set(std::slice::from_ref(&runs[i].desc));
        let result = async {
            let mut feed = data_sync::feed(api, em, runs, i, options.debug).await?;
            changes::walk(&mut feed, em, runs, &[i], options.changes).await
        }
        .await;
        match result {
            Err(e) if not_served(&e) && runs[i].counts.records == 0 => {
                if options.api == Api::Auto {
                    return Ok(Served::No);
                }
                let e = UserError::config(messages::data_sync_not_served(&e));
                runs[i].fail(em, &e.into());
            }
            other => finish(em, &mut runs[i], other)?,
        }
        em.flush().await?;
    }
    Ok(Served::Yes)
}

/// Whether Convex answered 404 on a Data Sync endpoint: a backend from before the Data Sync
/// API.
fn not_served(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<ConvexError>())
        .any(|c| {
            c.status() == Some(404)
                && [
                    convex::data_sync::DATA_SYNC,
                    convex::data_sync::CURSOR_FROM_DELTAS,
                ]
                .contains(&c.endpoint())
        })
}

/// `api: auto` on a deployment without the Data Sync API: say why the streaming export API is
/// read instead, and which streams it cannot serve. Such a backend predates Convex's fix of
/// 2026-08-11, before which `document_deltas` skipped the tables of non-root components: their
/// streams would never see a change.
fn fall_back(em: &mut Emitter, runs: &[StreamRun]) {
    em.log(LogLevel::Info, messages::FALLING_BACK_TO_STREAMING_EXPORT);
    let components: Vec<String> = runs
        .iter()
        .filter(|r| reads_changes(r) && !r.table.component.is_empty())
        .map(|r| r.desc.to_string())
        .collect();
    if !components.is_empty() {
        let text = messages::component_streams_see_no_changes(&components);
        em.log(LogLevel::Warn, &text);
    }
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
            let text = messages::data_sync_position_continues_on_deltas(&run.desc, t);
            run.position = Position::Deltas(DeltaCursor(t.0));
            (LogLevel::Info, text)
        }
        None => {
            let text = messages::data_sync_snapshot_restarts_on_deltas(&run.desc);
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

/// Runs the `document_deltas` change walk for the incremental streams at `Deltas` positions.
/// Returns the walk's end T, or `None` when there was no walk (or it failed).
///
/// A position older than Convex's change-log retention (`InvalidWindowToReadDocuments`)
/// moves the streams at that position to a fresh snapshot, with a WARN, and the walk goes on
/// for the others. A position later than the head moves its stream to a fresh snapshot too.
async fn change_walk<A: ConvexApi>(
    api: &A,
    em: &mut Emitter,
    runs: &mut [StreamRun],
    options: &ReadOptions,
) -> anyhow::Result<Option<DeltaCursor>> {
    loop {
        let members: Vec<usize> = (0..runs.len())
            .filter(|&i| reads_changes(&runs[i]) && delta_position(&runs[i]).is_some())
            .collect();
        if members.is_empty() {
            return Ok(None);
        }
        let descs: Vec<_> = members.iter().map(|&m| runs[m].desc.clone()).collect();
        options.activity.set(&descs);
        let mut feed = DeltasFeed::new(api, runs, &members, options.debug)?;
        match changes::walk(&mut feed, em, runs, &members, options.changes).await {
            Ok(()) => {
                let end = feed.end(&members);
                for &m in &members {
                    if !end.ahead.contains(&m) {
                        runs[m].complete(em);
                        continue;
                    }
                    // Waiting would not help: the changes between this deployment's head and
                    // the saved position may never be written here.
                    let text = messages::saved_position_ahead(
                        &runs[m].desc,
                        delta_position(&runs[m]).map_or(0, |c| c.0),
                        end.at,
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
                        let text = messages::change_log_expired(&runs[m].desc);
                        em.log(LogLevel::Warn, &text);
                        runs[m].position = Position::Fresh;
                    }
                }
            }
        }
    }
}

/// Snapshot walks, one at a time: resumed walks first, each alone at its own timestamp, then
/// one walk over the tables of every other stream that needs a snapshot, at `t` (the change
/// walk's end) or the head.
async fn snapshot_phase<A: ConvexApi>(
    api: &A,
    em: &mut Emitter,
    runs: &mut [StreamRun],
    t: Option<DeltaCursor>,
    activity: &Activity,
) -> anyhow::Result<()> {
    let resumed: Vec<usize> = (0..runs.len())
        .filter(|&i| !runs[i].done && matches!(runs[i].position, Position::Snapshot { .. }))
        .collect();
    for i in resumed {
        activity.set(std::slice::from_ref(&runs[i].desc));
        let result = snapshot::walk(api, em, runs, &[i], SnapshotTs(0)).await;
        finish(em, &mut runs[i], result)?;
        em.flush().await?;
    }
    let fresh: Vec<usize> = (0..runs.len()).filter(|&i| !runs[i].done).collect();
    if fresh.is_empty() {
        return Ok(());
    }
    let descs: Vec<_> = fresh.iter().map(|&i| runs[i].desc.clone()).collect();
    activity.set(&descs);
    let at = match t {
        Some(c) => SnapshotTs(c.0),
        None => match api.head().await.context("reading the head timestamp") {
            Ok(at) => at,
            Err(e) => {
                for &i in &fresh {
                    runs[i].fail(em, &e);
                }
                return Ok(());
            }
        },
    };
    match snapshot::walk(api, em, runs, &fresh, at).await {
        Ok(()) => {
            for &i in &fresh {
                runs[i].complete(em);
            }
        }
        Err(e) if is_output_closed(&e) => return Err(e),
        // One stream's table can stop a walk of several (a document Convex cannot send, say):
        // the stream whose page broke (it has records past its last STATE, which must not be
        // sent twice in a read) fails; each other one goes on alone from its last STATE, so
        // it still finishes in this read.
        Err(e) => {
            let (broken, others): (Vec<usize>, Vec<usize>) = fresh
                .iter()
                .partition(|&&i| runs[i].counts.since_state > 0 || fresh.len() == 1);
            for &i in &broken {
                runs[i].fail(em, &e);
            }
            if !others.is_empty() {
                let text = messages::snapshot_walk_split(fresh.len(), &e, others.len());
                em.log(LogLevel::Warn, &text);
            }
            for i in others {
                activity.set(std::slice::from_ref(&runs[i].desc));
                let result = snapshot::walk(api, em, runs, &[i], at).await;
                finish(em, &mut runs[i], result)?;
                em.flush().await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
