//! `GET /api/v1/data/list_active_syncs?limit=&cursor=`: the progress rows of the syncs
//! updated in the last 3 days, most recently updated first, paged by a sealed cursor.

use serde::Serialize;

use super::request::Request;
use crate::api_error::ApiError;
use crate::data_sync::progress::{clock_ms, Row};
use crate::deployment::Deployment;
use crate::http::{json_bytes, Resp};

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 100;

pub struct Args {
    limit: Option<usize>,
    cursor: Option<String>,
}

/// Convex parses the query before it looks at the caller; the limit's range and the
/// cursor are checked after (in that order).
pub fn parse(req: &Request<'_>) -> Result<Args, ApiError> {
    let limit = req.query_parsed::<usize>("limit")?;
    let cursor = req.query_once("cursor")?.map(str::to_owned);
    req.authorize()?;
    Ok(Args { limit, cursor })
}

/// Answers `{"syncs":[…],"pagination":{"hasMore":bool[,"nextCursor":string]}}`.
pub fn serve(dep: &Deployment, a: Args) -> Result<Resp, ApiError> {
    let now_ms = clock_ms(dep.head());
    let limit = a.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::new(
            400,
            "LimitOutOfRange",
            format!("The limit for listing active syncs must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let sealer = dep.data_sync().sealer();
    let after = match &a.cursor {
        None => None,
        Some(c) => Some(
            sealer
                .open_list_cursor(c)
                .ok_or_else(|| ApiError::new(400, "InvalidCursor", "Failed to parse cursor"))?,
        ),
    };
    let body = dep.data_sync().progress(|rows| {
        let (syncs, full) = rows.list(now_ms, after, limit);
        let next_cursor = match syncs.last() {
            Some(last) if full => Some(sealer.seal_list_cursor(last.key())),
            _ => None,
        };
        let body = Response {
            syncs,
            pagination: Pagination {
                has_more: next_cursor.is_some(),
                next_cursor,
            },
        };
        serde_json::to_vec(&body).unwrap_or_default()
    });
    Ok(json_bytes(200, body))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Pagination {
    has_more: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

#[derive(Serialize)]
struct Response<'a> {
    syncs: Vec<&'a Row>,
    pagination: Pagination,
}
