//! `POST /api/data_sync_cursor_from_deltas` with body `{cursor: i64, selection?: Selection}`:
//! turns a legacy document_deltas cursor into a data sync cursor, whose sync treats every
//! revision at or before `cursor` of the tables the selection resolves to now as already
//! synced. Answers `{"cursor": "<data sync cursor>"}`.

use serde_json::Value as Json;

use super::data_sync::{cursor_type_error, Args};
use super::request::Request;
use crate::api_error::ApiError;
use crate::data_sync as sync;
use crate::data_sync::selection::Selection;
use crate::deployment::Deployment;
use crate::http::{json_bytes, Resp};
use crate::value::write_str;

/// The key is checked before the body is read; a negative cursor is refused before the
/// selection is parsed.
pub fn parse(req: &Request<'_>) -> Result<Args<i64>, ApiError> {
    let args = Args::parse(req, |cursor| match cursor {
        None => Err(ApiError::bad_json_target("missing field `cursor`")),
        Some(Json::Number(n)) if n.is_i64() => Ok(n.as_i64().unwrap_or(-1)),
        Some(other) => Err(cursor_type_error(other, "i64")),
    })?;
    if args.cursor < 0 {
        return Err(ApiError::new(
            400,
            "InvalidDataSyncCursor",
            "The document_deltas cursor is not a valid timestamp",
        ));
    }
    Ok(args)
}

pub fn serve(dep: &Deployment, a: Args<i64>) -> Result<Resp, ApiError> {
    let selection = Selection::from_arg(a.selection.as_ref())?;
    let limits = sync::limits(&dep.settings());
    let state = dep.data_sync();
    let cursor = {
        let store = dep.store();
        sync::converted_cursor(&store, a.cursor, &selection, &limits, || {
            state.new_sync_id(a.client.as_deref())
        })?
    };
    let mut out = b"{\"cursor\":".to_vec();
    write_str(&state.sealer().seal(&cursor), &mut out);
    out.push(b'}');
    Ok(json_bytes(200, out))
}
