//! `POST /api/v1/data/sync` with body `{cursor?: string, selection?: Selection}`: one page of
//! a sync (a paginated, never-ending export with an opaque cursor, truncates and a snapshot
//! status), which also records the sync's progress row.

use serde_json::Value as Json;

use super::request::Request;
use super::Endpoint;
use crate::api_error::ApiError;
use crate::data_sync::page::{self, Page, Status};
use crate::data_sync::progress::{clock_ms, Recorded};
use crate::data_sync::selection::Selection;
use crate::data_sync::{self as sync, cursor::Sealer};
use crate::deployment::Deployment;
use crate::http::{json_bytes, Resp};
use crate::value::write_str;

/// A body of the data sync endpoints, `{cursor, selection?}`: `C` is the cursor as the
/// endpoint takes it (a sealed string here, a document_deltas timestamp for
/// `data_sync_cursor_from_deltas`).
pub struct Args<C> {
    pub cursor: C,
    /// Raw: parsed only when the page is served.
    pub selection: Option<Json>,
    pub client: Option<String>,
}

impl<C> Args<C> {
    /// Checks the key, then reads the body: its `cursor` field, as `cursor` takes it, and its
    /// `selection` field (only refused here if `null`).
    pub fn parse(
        req: &Request<'_>,
        cursor: impl FnOnce(Option<&Json>) -> Result<C, ApiError>,
    ) -> Result<Args<C>, ApiError> {
        req.authorize()?;
        let body = req.json_body()?;
        let cursor = cursor(body.get("cursor"))?;
        let selection = Selection::field(&body)?;
        Ok(Args {
            cursor,
            selection,
            client: req.client().map(str::to_owned),
        })
    }
}

/// The error of a `cursor` of another JSON type than `expected`.
pub fn cursor_type_error(cursor: &Json, expected: &str) -> ApiError {
    ApiError::bad_json_target(format!(
        "cursor: invalid type: {cursor}, expected {expected}"
    ))
}

/// The key is checked before the body is read. The cursor is only opened, and the
/// selection only parsed, when the page is served.
pub fn parse(req: &Request<'_>) -> Result<Args<Option<String>>, ApiError> {
    Args::parse(req, |cursor| match cursor {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(cursor_type_error(other, "a string")),
    })
}

/// `selection_ignored`: a `selection_ignored` fault fired, and the page is served as if the
/// request selected everything (once its selection parsed).
pub fn serve(
    dep: &Deployment,
    a: Args<Option<String>>,
    selection_ignored: bool,
) -> Result<Resp, ApiError> {
    let state = dep.data_sync();
    // Convex decrypts the cursor before it looks at the selection.
    let received = match &a.cursor {
        None => None,
        Some(c) => Some(state.sealer().open(c).ok_or_else(|| {
            ApiError::new(
                400,
                "InvalidDataSyncCursor",
                "Could not parse the data sync cursor",
            )
        })?),
    };
    let mut selection = Selection::from_arg(a.selection.as_ref())?;
    if selection_ignored {
        selection = Selection::everything();
    }
    let limits = sync::limits(&dep.settings());
    let sync_id = if received.is_none() {
        state.new_sync_id(a.client.as_deref())
    } else {
        String::new()
    };
    let store = dep.store();
    let page = page::next_page(&store, received, sync_id, &selection, &limits)?;
    dep.counters()
        .count_rows_read(Endpoint::DataSync.name(), page.rows_read);
    let settings = dep.settings();
    state.progress(|rows| {
        rows.record(Recorded {
            sync_id: &page.cursor.sync_id,
            state: page.progress.clone(),
            totals_available: settings.table_summaries_ready,
            now_ms: clock_ms(store.head),
            interval_ms: settings.data_sync_progress_write_interval_ms,
        })
    })?;
    Ok(json_bytes(200, write_response(state.sealer(), &page)))
}

/// The response body, written once into a buffer of its final size: a page holds up to
/// 16384 documents, and growing a buffer then copying it cost more than the documents.
fn write_response(sealer: &Sealer, page: &Page<'_>) -> Vec<u8> {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"{\"status\":");
    match page.status {
        Status::Snapshotting => head.extend_from_slice(b"{\"type\":\"snapshotting\"}"),
        Status::Stale { snapshot_ts } | Status::UpToDate { snapshot_ts } => {
            head.extend_from_slice(if matches!(page.status, Status::Stale { .. }) {
                b"{\"type\":\"stale\",\"snapshotTs\":"
            } else {
                b"{\"type\":\"upToDate\",\"snapshotTs\":"
            });
            head.extend_from_slice(itoa::Buffer::new().format(snapshot_ts).as_bytes());
            head.push(b'}');
        }
    }
    head.extend_from_slice(b",\"truncates\":[");
    for (i, (component, table)) in page.truncates.iter().enumerate() {
        if i > 0 {
            head.push(b',');
        }
        head.extend_from_slice(b"{\"component\":");
        write_str(component, &mut head);
        head.extend_from_slice(b",\"table\":");
        write_str(table, &mut head);
        head.push(b'}');
    }
    head.extend_from_slice(b"],\"values\":[");
    let mut tail = Vec::with_capacity(256);
    tail.extend_from_slice(b"],\"syncId\":");
    write_str(&page.cursor.sync_id, &mut tail);
    tail.extend_from_slice(b",\"pagination\":{\"hasMore\":true,\"nextCursor\":");
    write_str(&sealer.seal(&page.cursor), &mut tail);
    tail.extend_from_slice(b"}}");
    // One allocation at (nearly) the final size: the values are copied exactly once.
    let mut out = Vec::with_capacity(head.len() + page.values.max_len() + tail.len());
    out.extend_from_slice(&head);
    page.values.write(&mut out);
    out.extend_from_slice(&tail);
    out
}
