//! Convex's Data Sync API: `POST /api/v1/data/sync` (a paginated, never-ending export with
//! an opaque cursor, truncates and a snapshot status), `POST
//! /api/data_sync_cursor_from_deltas` (turns a legacy `document_deltas` cursor into a data
//! sync cursor) and `GET /api/v1/data/list_active_syncs` (the syncs' progress rows).
//! Authentication, `Convex-Client`, query and JSON-body checks happen in `api.rs` before these
//! run, as for the other endpoints.

mod cursor;
mod page;
mod progress;
mod selection;

use serde_json::Value as Json;

use cursor::CursorState;
pub use cursor::Sealer;
use page::{Limits, Status};
pub use progress::Rows as ProgressRows;
use selection::Selection;

use crate::deployment::Deployment;
use crate::export::ApiError;
use crate::value::write_str;

/// Rows of the document log a page reads at most (Convex's `DATA_SYNC_MAX_ROWS_READ`).
const MAX_ROWS_READ: usize = 32_768;
/// Lag behind head from which a snapshotting sync catches up through the log first
/// (Convex's `DATA_SYNC_BY_ID_FRESHNESS_SECONDS`).
const BY_ID_FRESHNESS_NS: i64 = 30_000_000_000;

fn bad_json(msg: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        400,
        "BadJsonBody",
        format!("Failed to deserialize the JSON body into the target type: {msg}"),
    )
}

fn invalid_cursor(msg: &str) -> ApiError {
    ApiError::new(400, "InvalidDataSyncCursor", msg)
}

fn limits(dep: &Deployment) -> Limits {
    let s = dep.settings();
    let entries = s.data_sync_page_entries.max(1);
    Limits {
        entries,
        bytes: s.data_sync_page_bytes.max(1),
        rows_read: MAX_ROWS_READ.max(entries),
        freshness_ns: BY_ID_FRESHNESS_NS,
        retention_ns: ms_to_ns(s.data_sync_retention_ms),
    }
}

fn ms_to_ns(ms: u64) -> i64 {
    i64::try_from(ms.saturating_mul(1_000_000)).unwrap_or(i64::MAX)
}

/// The sync id prefix Convex gives a client: `Convex-Client: airbyte-export-<semver>` makes
/// `airbyte-` ids, `fivetran-export-*` / `fivetran-import-*` make `fivetran-` ids.
fn sync_id_prefix(client: Option<&str>) -> &'static str {
    let Some(s) = client else { return "" };
    // The client name is what precedes the longest semver suffix (the header was validated).
    let name = s
        .match_indices('-')
        .map(|(i, _)| &s[..i])
        .find(|name| crate::api::is_semver(&s[name.len() + 1..]))
        .unwrap_or(s);
    match name {
        "airbyte-export" => "airbyte-",
        "fivetran-export" | "fivetran-import" => "fivetran-",
        _ => "",
    }
}

fn new_sync_id(dep: &Deployment, client: Option<&str>) -> String {
    format!(
        "{}{}",
        sync_id_prefix(client),
        dep.data_sync_sealer().uuid_v4()
    )
}

/// `POST /api/v1/data/sync` with body `{cursor?: string, selection?: Selection}`; returns the
/// response body.
pub fn sync(dep: &Deployment, client: Option<&str>, body: &Json) -> Result<Vec<u8>, ApiError> {
    let cursor = match body.get("cursor") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => Some(s.as_str()),
        Some(other) => {
            return Err(bad_json(format!(
                "cursor: invalid type: {other}, expected a string"
            )))
        }
    };
    if matches!(body.get("selection"), Some(Json::Null)) {
        return Err(bad_json(
            "selection: invalid type: null, expected struct Selection",
        ));
    }
    let selection_arg = body.get("selection");
    // Convex decrypts the cursor before it looks at the selection.
    let received = match cursor {
        None => None,
        Some(c) => Some(
            dep.data_sync_sealer()
                .open(c)
                .ok_or_else(|| invalid_cursor("Could not parse the data sync cursor"))?,
        ),
    };
    let selection = Selection::from_arg(selection_arg)?;
    let limits = limits(dep);
    let sync_id = if received.is_none() {
        new_sync_id(dep, client)
    } else {
        String::new()
    };
    let store = dep.store();
    let page = page::next_page(&store, received, sync_id, &selection, &limits)?;
    dep.count_rows_read("data_sync", page.rows_read);
    let settings = dep.settings();
    dep.data_sync_progress(|rows| {
        rows.record(progress::Recorded {
            sync_id: &page.cursor.sync_id,
            state: page.progress.clone(),
            totals_available: settings.table_summaries_ready,
            now_ms: clock_ms(store.head),
            interval_ms: settings.data_sync_progress_write_interval_ms,
        })
    })?;
    Ok(write_response(dep, &page))
}

/// The emulator's clock (head, in ns) as the unix milliseconds of progress rows.
fn clock_ms(head: i64) -> u64 {
    u64::try_from(head / 1_000_000).unwrap_or(0)
}

/// `GET /api/v1/data/list_active_syncs?limit=&cursor=`, with `limit` already parsed.
pub fn list_active_syncs(
    dep: &Deployment,
    limit: Option<usize>,
    cursor: Option<&str>,
) -> Result<Vec<u8>, ApiError> {
    let now_ms = clock_ms(dep.head());
    dep.data_sync_progress(|rows| {
        progress::list_active_syncs(rows, dep.data_sync_sealer(), now_ms, limit, cursor)
    })
}

fn write_response(dep: &Deployment, page: &page::Page<'_>) -> Vec<u8> {
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
    write_str(&dep.data_sync_sealer().seal(&page.cursor), &mut tail);
    tail.extend_from_slice(b"}}");
    // One allocation at (nearly) the final size: the values are copied exactly once.
    let mut out = Vec::with_capacity(head.len() + page.values.max_len() + tail.len());
    out.extend_from_slice(&head);
    page.values.write(&mut out);
    out.extend_from_slice(&tail);
    out
}

/// `POST /api/data_sync_cursor_from_deltas` with body `{cursor: i64, selection?: Selection}`:
/// a cursor whose sync treats every revision at or before `cursor` of the tables the
/// selection resolves to now as already synced. Returns `{"cursor": "<data sync cursor>"}`.
pub fn cursor_from_deltas(
    dep: &Deployment,
    client: Option<&str>,
    body: &Json,
) -> Result<Vec<u8>, ApiError> {
    let ts = match body.get("cursor") {
        None => return Err(bad_json("missing field `cursor`")),
        Some(Json::Number(n)) if n.is_i64() => n.as_i64().unwrap_or(-1),
        Some(other) => {
            return Err(bad_json(format!(
                "cursor: invalid type: {other}, expected i64"
            )))
        }
    };
    if matches!(body.get("selection"), Some(Json::Null)) {
        return Err(bad_json(
            "selection: invalid type: null, expected struct Selection",
        ));
    }
    if ts < 0 {
        return Err(invalid_cursor(
            "The document_deltas cursor is not a valid timestamp",
        ));
    }
    let selection = Selection::from_arg(body.get("selection"))?;
    let limits = limits(dep);
    let store = dep.store();
    if ts > store.head {
        return Err(invalid_cursor(
            "document_deltas cursor is ahead of the deployment's latest timestamp",
        ));
    }
    if ts < store.head.saturating_sub(limits.retention_ns) {
        return Err(page::cursor_expired());
    }
    let state = CursorState {
        synced_ts: ts,
        synced: page::targets(&store, &selection)
            .iter()
            .map(|t| store.tables[t.index].tablet)
            .collect(),
        current: None,
        sync_id: new_sync_id(dep, client),
        num_docs_synced: 0,
    };
    drop(store);
    let mut out = b"{\"cursor\":".to_vec();
    write_str(&dep.data_sync_sealer().seal(&state), &mut out);
    out.push(b'}');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::sync_id_prefix;

    #[test]
    fn sync_id_prefix_follows_the_client_name() {
        assert_eq!(sync_id_prefix(Some("airbyte-export-0.5.0")), "airbyte-");
        assert_eq!(
            sync_id_prefix(Some("fivetran-export-1.2.3-rc.1")),
            "fivetran-"
        );
        assert_eq!(sync_id_prefix(Some("fivetran-import-1.0.0")), "fivetran-");
        assert_eq!(sync_id_prefix(Some("airbyte-data-sync-0.1.0")), "");
        assert_eq!(sync_id_prefix(Some("npm-1.0.0")), "");
        assert_eq!(sync_id_prefix(None), "");
    }
}
