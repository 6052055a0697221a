//! `GET|POST /api/list_snapshot`: one page of the documents as of a snapshot. Besides the
//! page itself it runs list_snapshot's cost model: a request that does not continue the
//! cached iterator rebuilds it under the global build lock, and the rebuild and the
//! documents take the time the settings give, within the page time cut and the request
//! timeout.

use std::time::{Duration, Instant};

use serde_json::Value as Json;

use super::fault::rewrite_cursor;
use super::list_args::{CursorType, ListArgs};
use super::request::{parse_format, Request};
use super::Endpoint;
use crate::api_error::ApiError;
use crate::deployment::Deployment;
use crate::export::{self, SnapshotArgs};
use crate::faults::Rewrites;
use crate::http::{bare, json_bytes, Resp};
use crate::snapshot_cost::{self, IteratorKey};
use crate::value::Format;

/// GET arguments are parsed before the key is checked; a POST body after it.
pub fn parse(req: &Request<'_>) -> Result<ListArgs, ApiError> {
    let args = if req.is_get() {
        let a = ListArgs::from_query(req)?;
        req.authorize()?;
        a
    } else {
        req.authorize()?;
        ListArgs::from_json(&req.json_body()?)?
    };
    match args.cursor_type {
        CursorType::Integer | CursorType::Other => Err(ApiError::bad_json_target(
            "cursor: invalid type, expected a string",
        )),
        CursorType::Absent | CursorType::String => Ok(args),
    }
}

pub async fn serve(dep: &Deployment, a: ListArgs, rewrites: &Rewrites) -> Result<Resp, ApiError> {
    let started = Instant::now();
    let settings = dep.settings();
    let max_age = settings.snapshot_max_age_ns();
    let args = SnapshotArgs {
        snapshot: a.snapshot,
        cursor: a.cursor_str.clone(),
        selection: a.effective_selection(&settings, rewrites.selection_ignored),
        format: Format::Clean,
    };
    let (start, log_rows) = {
        let store = dep.store();
        let start = export::prepare_snapshot(&store, &args, max_age)?;
        let rows = export::log_rows_after(&store, start.snapshot);
        (start, rows)
    };
    // Convex parses `format` after the request's validation.
    let format = parse_format(a.format.as_deref())?;
    if start.snapshot < dep.head().saturating_sub(settings.retention_ns()) {
        // The snapshot passed the age check, but the revisions it needs were already
        // purged: Convex's iterator fails with a retryable error that no retry can fix.
        return Err(ApiError::new(
            503,
            "OutOfRetention",
            format!(
                "Snapshot {} is outside the document retention window; start a new snapshot.",
                start.snapshot
            ),
        ));
    }
    let args = SnapshotArgs {
        format,
        snapshot: Some(start.snapshot),
        ..args
    };
    let timeout = Duration::from_millis(settings.request_timeout_ms);
    let continues = start.start.is_some_and(|position| {
        dep.snapshot_iterator().continues(&IteratorKey {
            snapshot: start.snapshot,
            selection: args.selection.clone(),
            position,
        })
    });
    let mut spent = Duration::ZERO;
    if !continues {
        let build = snapshot_cost::build_cost(&settings, log_rows);
        let _one_build_at_a_time = dep.build_snapshot_iterator().await;
        let left = timeout.saturating_sub(started.elapsed());
        if build >= left {
            // Killed mid-build: the iterator is never cached.
            tokio::time::sleep(left).await;
            dep.snapshot_iterator().cache(None);
            return Ok(bare(408));
        }
        tokio::time::sleep(build).await;
        spent = build;
    }
    let limit = snapshot_cost::page_document_limit(&settings, spent, settings.snapshot_page_limit);
    let page = export::list_snapshot(&dep.store(), &args, limit, max_age)?;
    dep.counters()
        .count_rows_read(Endpoint::ListSnapshot.name(), page.rows_read);
    let read = snapshot_cost::read_cost(&settings, page.returned);
    let left = timeout.saturating_sub(started.elapsed());
    if read >= left {
        tokio::time::sleep(left).await;
        dep.snapshot_iterator().cache(None);
        return Ok(bare(408));
    }
    if !read.is_zero() {
        tokio::time::sleep(read).await;
    }
    dep.snapshot_iterator()
        .cache(page.next.map(|position| IteratorKey {
            snapshot: page.snapshot,
            selection: args.selection.clone(),
            position,
        }));
    let asked = a.cursor_str.map(Json::String);
    let body = rewrite_cursor(page.body, rewrites.cursor.as_ref(), asked);
    Ok(json_bytes(200, body))
}
