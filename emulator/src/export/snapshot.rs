//! list_snapshot pages: the documents of the selected tables as of a snapshot, table by
//! table in tablet-id order and by `_id` within a table; and the same view as JSON values
//! for the Rust API (`live_documents`, `documents_at`).

use serde_json::Value as Json;

use super::selection::Selection;
use super::{plan, write_value};
use crate::api_error::ApiError;
use crate::ids;
use crate::store::Store;
use crate::value::{write_str, Format};

pub struct SnapshotArgs {
    pub snapshot: Option<i64>,
    pub cursor: Option<String>,
    pub selection: Selection,
    pub format: Format,
}

fn invalid_cursor() -> ApiError {
    ApiError::new(
        400,
        "InvalidListSnapshotCursor",
        "Invalid value for the `cursor` argument of list_snapshot. Use a `cursor` returned by a \
         previous list_snapshot call, and treat it as an opaque value.",
    )
}

fn parse_snapshot_cursor(s: &str) -> Result<([u8; 16], [u8; 16]), ApiError> {
    let j: Json = serde_json::from_str(s).map_err(|_| invalid_cursor())?;
    let tablet = j
        .get("tablet")
        .and_then(Json::as_str)
        .and_then(ids::parse_tablet)
        .ok_or_else(invalid_cursor)?;
    let id = j
        .get("id")
        .and_then(Json::as_str)
        .and_then(ids::parse_document_id)
        .ok_or_else(invalid_cursor)?;
    Ok((tablet, id))
}

/// Checks a `snapshot` argument against head and the maximum age.
pub fn check_snapshot(s: i64, head: i64, max_age_ns: i64) -> Result<(), ApiError> {
    if s < 0 {
        return Err(ApiError::internal());
    }
    if s > head {
        return Err(ApiError::new(
            400,
            "SnapshotTooNew",
            format!("Snapshot value {s} is in the future."),
        ));
    }
    if s < head.saturating_sub(max_age_ns) {
        return Err(ApiError::new(
            400,
            "SnapshotTooOld",
            format!("Snapshot value {s} is too far in the past."),
        ));
    }
    Ok(())
}

/// Where a list_snapshot request starts: its snapshot and the position after its cursor.
pub struct SnapshotStart {
    pub snapshot: i64,
    pub start: Option<([u8; 16], [u8; 16])>,
}

/// Checks a list_snapshot request in Convex's order: the cursor is parsed first (while the
/// arguments are read), then the snapshot is checked against head and the maximum age, then
/// the selection.
pub fn prepare_snapshot(
    store: &Store,
    args: &SnapshotArgs,
    max_age_ns: i64,
) -> Result<SnapshotStart, ApiError> {
    let start = match &args.cursor {
        Some(c) => Some(parse_snapshot_cursor(c)?),
        None => None,
    };
    let snapshot = match args.snapshot {
        Some(s) => {
            check_snapshot(s, store.head, max_age_ns)?;
            s
        }
        None => store.head,
    };
    args.selection.validate()?;
    Ok(SnapshotStart { snapshot, start })
}

/// Document-log rows written after `snapshot` (what an iterator built at it merges).
pub fn log_rows_after(store: &Store, snapshot: i64) -> usize {
    store.log.len() - store.log.partition_point(|e| e.ts <= snapshot)
}

/// One list_snapshot page: the response bytes and what the page cost.
pub struct SnapshotPage {
    pub body: Vec<u8>,
    pub snapshot: i64,
    /// Documents returned.
    pub returned: usize,
    /// Document entries visited (returned, or not visible at the snapshot).
    pub rows_read: usize,
    /// The position the returned cursor names (`None` when `hasMore` is false).
    pub next: Option<([u8; 16], [u8; 16])>,
}

/// One list_snapshot page.
pub fn list_snapshot(
    store: &Store,
    args: &SnapshotArgs,
    page_limit: usize,
    max_age_ns: i64,
) -> Result<SnapshotPage, ApiError> {
    let SnapshotStart { snapshot, start } = prepare_snapshot(store, args, max_age_ns)?;
    let plans = plan(store, &args.selection);
    // Tables present at the snapshot, in tablet-id order (random, so not alphabetical).
    let mut order: Vec<usize> = (0..store.tables.len())
        .filter(|&i| plans[i].selected && store.tables[i].exists_at(snapshot))
        .collect();
    order.sort_by_key(|&i| store.tables[i].tablet);
    if let Some((tablet, _)) = &start {
        order.retain(|&i| store.tables[i].tablet >= *tablet);
    }

    let limit = page_limit.max(1);
    let mut out = Vec::with_capacity(64 * 1024);
    out.extend_from_slice(b"{\"values\":[");
    let (mut count, mut visited) = (0usize, 0usize);
    let mut next_cursor: Option<(usize, Option<[u8; 16]>)> = None;
    if let Some(&ti) = order.first() {
        let table = &store.tables[ti];
        let lower = match &start {
            Some((tablet, id)) if *tablet == table.tablet => std::ops::Bound::Excluded(*id),
            _ => std::ops::Bound::Unbounded,
        };
        let columns = &plans[ti].columns;
        let mut last = None;
        for (internal, entry) in table.docs.range((lower, std::ops::Bound::Unbounded)) {
            visited += 1;
            let Some(rev) = entry.at(snapshot) else {
                continue;
            };
            let Some(doc) = &rev.doc else { continue };
            if count > 0 {
                out.push(b',');
            }
            write_value(&mut out, table, rev.ts, false, doc, args.format, columns);
            count += 1;
            last = Some(*internal);
            if count >= limit {
                break;
            }
        }
        if count >= limit {
            next_cursor = Some((ti, last));
        } else if let Some(&next) = order.get(1) {
            next_cursor = Some((next, None));
        }
    }
    out.extend_from_slice(b"],\"snapshot\":");
    out.extend_from_slice(itoa::Buffer::new().format(snapshot).as_bytes());
    out.extend_from_slice(b",\"cursor\":");
    let mut next = None;
    match next_cursor {
        Some((ti, id)) => {
            let table = &store.tables[ti];
            // The minimum id for "start of this table"; resuming after it skips nothing
            // because generated internal ids are never all zero.
            let id = id.unwrap_or([0u8; 16]);
            next = Some((table.tablet, id));
            let cursor = format!(
                "{{\"tablet\":\"{}\",\"id\":\"{}\"}}",
                table.tablet_str,
                table.doc_id(&id)
            );
            write_str(&cursor, &mut out);
            out.extend_from_slice(b",\"hasMore\":true}");
        }
        None => out.extend_from_slice(b"null,\"hasMore\":false}"),
    }
    Ok(SnapshotPage {
        body: out,
        snapshot,
        returned: count,
        rows_read: visited,
        next,
    })
}

/// Live documents of a table at head, each exactly as list_snapshot sends it in `format`.
pub fn live_documents(store: &Store, ti: usize, format: Format) -> Vec<Json> {
    documents_at(store, ti, i64::MAX, format)
}

/// The documents of a table live at `ts`, each at its latest revision at or before `ts`, as
/// list_snapshot at snapshot `ts` sends them.
pub fn documents_at(store: &Store, ti: usize, ts: i64, format: Format) -> Vec<Json> {
    let table = &store.tables[ti];
    let mut buf = Vec::new();
    table
        .docs
        .values()
        .filter_map(|e| {
            let rev = e.at(ts)?;
            let doc = rev.doc.as_ref()?;
            buf.clear();
            write_value(&mut buf, table, rev.ts, false, doc, format, &None);
            serde_json::from_slice(&buf).ok()
        })
        .collect()
}
