//! `GET|POST /api/document_deltas`: one page of the document log after an integer cursor.

use serde_json::Value as Json;

use super::fault::rewrite_cursor;
use super::list_args::{CursorType, ListArgs};
use super::request::{parse_format, Request};
use super::Endpoint;
use crate::api_error::ApiError;
use crate::deployment::Deployment;
use crate::export::{self, DeltasArgs};
use crate::faults::Rewrites;
use crate::http::{json_bytes, Resp};
use crate::value::Format;

/// The arguments once the cursor is known to be an integer.
pub struct Args {
    cursor: i64,
    list: ListArgs,
}

/// GET arguments (the integer cursor included) are parsed before the key is checked; a
/// POST body after it. The cursor's presence and type are checked last.
pub fn parse(req: &Request<'_>) -> Result<Args, ApiError> {
    let a = if req.is_get() {
        let a = ListArgs::from_query(req)?;
        if let Some(e) = &a.cursor_int_error {
            return Err(ApiError::bad_query(e));
        }
        req.authorize()?;
        a
    } else {
        req.authorize()?;
        ListArgs::from_json(&req.json_body()?)?
    };
    let cursor = match a.cursor_type {
        CursorType::Absent => {
            return Err(ApiError::new(
                400,
                "DocumentDeltasCursorRequired",
                "/api/document_deltas requires a cursor",
            ))
        }
        CursorType::String if a.cursor_int.is_some() => a.cursor_int.unwrap_or(0),
        CursorType::Integer => a.cursor_int.unwrap_or(0),
        _ => {
            return Err(ApiError::bad_json_target(
                "cursor: invalid type, expected i64",
            ))
        }
    };
    Ok(Args { cursor, list: a })
}

pub fn serve(dep: &Deployment, a: Args, rewrites: &Rewrites) -> Result<Resp, ApiError> {
    let settings = dep.settings();
    let selection = a
        .list
        .effective_selection(&settings, rewrites.selection_ignored);
    let store = dep.store();
    let format = parse_format(a.list.format.as_deref());
    // Validation (cursor range, selection) happens before the format is looked at.
    let probe = DeltasArgs {
        cursor: a.cursor,
        selection,
        format: Format::Clean,
        skip_components: settings.no_data_sync,
    };
    let format = match format {
        Ok(f) => f,
        Err(e) => {
            export::document_deltas(&store, &probe, 1, settings.retention_ns())?;
            return Err(e);
        }
    };
    let args = DeltasArgs { format, ..probe };
    let (body, rows_read) = export::document_deltas(
        &store,
        &args,
        settings.deltas_page_limit,
        settings.retention_ns(),
    )?;
    dep.counters()
        .count_rows_read(Endpoint::DocumentDeltas.name(), rows_read);
    let body = rewrite_cursor(body, rewrites.cursor.as_ref(), Some(Json::from(a.cursor)));
    Ok(json_bytes(200, body))
}
