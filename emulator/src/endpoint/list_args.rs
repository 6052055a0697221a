//! The arguments list_snapshot and document_deltas share (the same shape; `snapshot` is
//! unused by deltas, and `cursor` is a string for one and an integer for the other), from a
//! GET query string or a POST body.

use serde_json::Value as Json;

use super::request::Request;
use crate::api_error::ApiError;
use crate::export::Selection;
use crate::settings::Settings;

pub struct ListArgs {
    pub snapshot: Option<i64>,
    pub cursor_str: Option<String>,
    pub cursor_int: Option<i64>,
    /// Set when a GET `cursor` did not parse as an integer (only an error for deltas).
    pub cursor_int_error: Option<String>,
    /// Set when a POST `cursor` had the wrong type for the endpoint.
    pub cursor_type: CursorType,
    pub selection: Selection,
    pub format: Option<String>,
}

#[derive(PartialEq)]
pub enum CursorType {
    Absent,
    String,
    Integer,
    Other,
}

impl ListArgs {
    /// From a GET request's query string (Convex parses it before it checks the key).
    pub fn from_query(req: &Request<'_>) -> Result<ListArgs, ApiError> {
        let snapshot = req.query_parsed::<i64>("snapshot")?;
        let cursor = req.query_once("cursor")?;
        let format = req.query_once("format")?;
        let (cursor_int, cursor_int_error) = match cursor.map(str::parse::<i64>) {
            None => (None, None),
            Some(Ok(i)) => (Some(i), None),
            Some(Err(e)) => (None, Some(format!("cursor: {e}"))),
        };
        // Convex's selection is an untagged enum: a repeated selector (or `tableName` with its
        // alias `table_name`) fails the table variant, and the request falls through to
        // "every table".
        let repeated = req.query_count(&["tableName", "table_name"]) > 1
            || req.query_count(&["component"]) > 1;
        let table = req
            .query_first("tableName")
            .or_else(|| req.query_first("table_name"));
        let component = req.query_first("component");
        let selection = match (table, component) {
            _ if repeated => Selection::All,
            (Some(t), c) => Selection::Table {
                component: c.unwrap_or("").to_owned(),
                table: t.to_owned(),
            },
            (None, Some(c)) => Selection::Component(c.to_owned()),
            (None, None) => Selection::All,
        };
        Ok(ListArgs {
            snapshot,
            cursor_str: cursor.map(str::to_owned),
            cursor_int,
            cursor_int_error,
            cursor_type: if cursor.is_some() {
                CursorType::String
            } else {
                CursorType::Absent
            },
            selection,
            format: format.map(str::to_owned),
        })
    }

    /// From a POST request's JSON body.
    pub fn from_json(v: &Json) -> Result<ListArgs, ApiError> {
        let type_err = |field: &str, want: &str| {
            ApiError::bad_json_target(format!("{field}: invalid type, expected {want}"))
        };
        let snapshot = match v.get("snapshot") {
            None | Some(Json::Null) => None,
            Some(s) => Some(s.as_i64().ok_or_else(|| type_err("snapshot", "i64"))?),
        };
        let (cursor_str, cursor_int, cursor_type) = match v.get("cursor") {
            None | Some(Json::Null) => (None, None, CursorType::Absent),
            Some(Json::String(s)) => (Some(s.clone()), None, CursorType::String),
            Some(n) if n.is_i64() => (None, n.as_i64(), CursorType::Integer),
            Some(_) => (None, None, CursorType::Other),
        };
        let format = match v.get("format") {
            None | Some(Json::Null) => None,
            Some(Json::String(s)) => Some(s.clone()),
            Some(_) => return Err(type_err("format", "a string")),
        };
        // Convex's untagged SelectionArg: the first variant that parses wins, and a
        // malformed `selection` silently falls through (ultimately to "everything").
        let str_field = |k: &str| v.get(k).and_then(Json::as_str);
        let selection = if let Some(sel) = v.get("selection").and_then(Selection::parse_fine) {
            sel
        } else if let Some(t) = str_field("tableName").or_else(|| str_field("table_name")) {
            Selection::Table {
                component: str_field("component").unwrap_or("").to_owned(),
                table: t.to_owned(),
            }
        } else if let Some(c) = str_field("component") {
            Selection::Component(c.to_owned())
        } else {
            Selection::All
        };
        Ok(ListArgs {
            snapshot,
            cursor_str,
            cursor_int,
            cursor_int_error: None,
            cursor_type,
            selection,
            format,
        })
    }

    /// The selection the read uses: every table when the deployment reproduces
    /// convex-backend issue #302 (table and component filters ignored), or when a
    /// `selection_ignored` fault fired (`selection_ignored`: any selection ignored).
    pub fn effective_selection(&self, settings: &Settings, selection_ignored: bool) -> Selection {
        let filter = matches!(
            self.selection,
            Selection::Table { .. } | Selection::Component(_)
        );
        if selection_ignored || (settings.ignore_table_filter && filter) {
            Selection::All
        } else {
            self.selection.clone()
        }
    }
}
