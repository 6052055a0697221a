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

pub struct Args {
    cursor: Option<String>,
    selection: Option<Json>,
    client: Option<String>,
}

/// The key is checked before the body is read. The cursor is only opened, and the
/// selection only parsed, when the page is served.
pub fn parse(req: &Request<'_>) -> Result<Args, ApiError> {
    req.authorize()?;
    let body = req.json_body()?;
    let cursor = match body.get("cursor") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(ApiError::bad_json_target(format!(
                "cursor: invalid type: {other}, expected a string"
            )))
        }
    };
    let selection = Selection::field(&body)?;
    Ok(Args {
        cursor,
        selection,
        client: req.client().map(str::to_owned),
    })
}

pub fn serve(dep: &Deployment, a: Args) -> Result<Resp, ApiError> {
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
    let selection = Selection::from_arg(a.selection.as_ref())?;
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
