//! The Convex streaming export endpoints under `/api/`, with Convex's order of checks:
//! faults (a proxy in front), `Convex-Client` validation, GET query parsing, authentication,
//! feature switch, permission, then the endpoint itself.

use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use hyper::http::request::Parts;
use hyper::{Method, StatusCode};
use serde_json::Value as Json;

use crate::deployment::{Deployment, RequestRecord};
use crate::export::{self, ApiError, DeltasArgs, Selection, SnapshotArgs};
use crate::faults::{FaultKind, FaultRule};
use crate::http::{
    api_error, bare, convex_error, json_bytes, no_route, parse_query, BodyEnd, EmuBody, Resp,
    SocketSlot,
};
use crate::snapshot_cost::{self, IteratorKey};
use crate::value::Format;

/// Endpoint name used by faults and request counters.
pub fn endpoint_name(path: &str) -> &'static str {
    match path {
        "/api/list_snapshot" => "list_snapshot",
        "/api/document_deltas" => "document_deltas",
        "/api/json_schemas" => "json_schemas",
        "/api/test_streaming_export_connection" => "test_streaming_export_connection",
        "/api/get_table_column_names" => "get_table_column_names",
        "/api/v1/data/sync" => "data_sync",
        "/api/data_sync_cursor_from_deltas" => "data_sync_cursor_from_deltas",
        "/api/v1/data/list_active_syncs" => "list_active_syncs",
        _ => "other",
    }
}

/// Handles one `/api/` request. `Err` = drop the connection without answering.
pub async fn handle(
    dep: &Deployment,
    parts: Parts,
    body: Bytes,
    socket: &SocketSlot,
) -> Result<Resp, std::io::Error> {
    let endpoint = endpoint_name(parts.uri.path());
    dep.count_request(endpoint);
    let uri = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let log = |status: u16| {
        dep.log_request(RequestRecord {
            endpoint: endpoint.to_owned(),
            method: parts.method.to_string(),
            uri: uri.clone(),
            status,
            version: format!("{:?}", parts.version),
        })
    };

    let decision = dep.decide_fault(endpoint);
    let settings = dep.settings();
    let delay = decision.delay_ms + settings.latency_ms;
    if delay >= settings.request_timeout_ms {
        // Convex's HTTP service timeout answers a bare 408 with no JSON body.
        tokio::time::sleep(Duration::from_millis(settings.request_timeout_ms)).await;
        log(408);
        return Ok(bare(408));
    }
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let mangle = match decision.terminal {
        None => None,
        Some(rule) => match rule.kind {
            FaultKind::Reset | FaultKind::Truncate => Some(rule),
            FaultKind::Stall if rule.after_headers => Some(rule),
            FaultKind::Stall => {
                log(0);
                tokio::time::sleep(stall_duration(&rule)).await;
                return Err(std::io::Error::other("injected stall ended"));
            }
            _ => {
                let r = immediate_fault(&rule);
                log(r.status().as_u16());
                return Ok(r);
            }
        },
    };

    let resp = respond(dep, &parts, body, endpoint).await;
    match mangle {
        None => {
            log(resp.status().as_u16());
            if let EmuBody::Full(Some(b)) = resp.body() {
                dep.count_bytes_sent(endpoint, b.len());
            }
            Ok(resp)
        }
        Some(rule) => {
            log(0);
            Ok(mangled(resp, &rule, socket).await)
        }
    }
}

fn stall_duration(rule: &FaultRule) -> Duration {
    Duration::from_millis(rule.ms.unwrap_or(3_600_000))
}

fn immediate_fault(rule: &FaultRule) -> Resp {
    match rule.kind {
        FaultKind::Html => {
            let status = rule.status.unwrap_or(502);
            let body = rule.body.clone().unwrap_or_else(|| {
                let reason = StatusCode::from_u16(status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("Error");
                format!(
                    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n\
                     <center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n\
                     </body>\r\n</html>\r\n"
                )
            });
            let mut r = json_bytes(status, body);
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
            r
        }
        FaultKind::RateLimit => {
            let secs = rule.retry_after_secs.unwrap_or(1);
            let mut r = convex_error(
                rule.status.unwrap_or(429),
                rule.code.as_deref().unwrap_or("RateLimited"),
                rule.message
                    .as_deref()
                    .unwrap_or("Too many requests. Try again later."),
            );
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                r.headers_mut().insert(RETRY_AFTER, v);
            }
            r
        }
        // Status (and anything unexpected): a Convex error envelope.
        _ => convex_error(
            rule.status.unwrap_or(503),
            rule.code.as_deref().unwrap_or("Overloaded"),
            rule.message
                .as_deref()
                .unwrap_or("Injected fault: the deployment is overloaded."),
        ),
    }
}

/// Sends headers (with the real Content-Length) and the first half of the body, then
/// stalls, closes early or resets.
async fn mangled(resp: Resp, rule: &FaultRule, socket: &SocketSlot) -> Resp {
    let (mut parts, body) = resp.into_parts();
    let full = match body {
        EmuBody::Full(Some(b)) => b,
        _ => Bytes::new(),
    };
    let half = full.slice(..full.len() / 2);
    if let Ok(v) = HeaderValue::from_str(&full.len().to_string()) {
        parts.headers.insert(CONTENT_LENGTH, v);
    }
    // Long enough for hyper to flush headers and the partial chunk before the bad ending.
    let flush = Duration::from_millis(50);
    let body = match rule.kind {
        FaultKind::Reset => EmuBody::partial(half, flush, BodyEnd::Reset(socket.clone())),
        FaultKind::Stall => EmuBody::partial(half, stall_duration(rule), BodyEnd::Close),
        _ => EmuBody::partial(half, flush, BodyEnd::Close),
    };
    hyper::Response::from_parts(parts, body)
}

/// A routed request: answered already, or a list_snapshot page still to serve (it may
/// wait for the iterator build lock and sleep its cost).
enum Routed {
    Done(Resp),
    Snapshot(ListArgs),
}

async fn respond(dep: &Deployment, parts: &Parts, body: Bytes, endpoint: &str) -> Resp {
    let r = match route(dep, parts, body, endpoint) {
        Ok(Routed::Done(r)) => Ok(r),
        Ok(Routed::Snapshot(args)) => list_snapshot(dep, args).await,
        Err(e) => Err(e),
    };
    r.unwrap_or_else(|e| api_error(&e))
}

fn bad_query(msg: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        400,
        "BadQueryArgs",
        format!("Failed to deserialize query string: {msg}"),
    )
}

fn bad_json(msg: impl std::fmt::Display) -> ApiError {
    ApiError::new(400, "BadJsonBody", msg.to_string())
}

fn route(dep: &Deployment, parts: &Parts, body: Bytes, endpoint: &str) -> Result<Routed, ApiError> {
    check_client_version(parts)?;
    let query = parse_query(parts.uri.query());
    let get = parts.method == Method::GET;
    let post = parts.method == Method::POST;
    let data_sync_route = matches!(
        endpoint,
        "data_sync" | "data_sync_cursor_from_deltas" | "list_active_syncs"
    );
    if data_sync_route && dep.settings().no_data_sync {
        return Ok(Routed::Done(no_route()));
    }
    match endpoint {
        "test_streaming_export_connection" if get => {
            authorize(dep, parts, &query)?;
            Ok(Routed::Done(json_bytes(200, &b"null"[..])))
        }
        "json_schemas" if get => {
            let delta = query_bool(&query, "deltaSchema")?;
            let by_component = query_bool(&query, "byComponent")?;
            let format = query_once(&query, "format")?;
            authorize(dep, parts, &query)?;
            let format = parse_format(format)?;
            if !dep.settings().table_summaries_ready {
                return Err(ApiError::new(
                    503,
                    "TableSummariesUnavailable",
                    "Table summary unavailable (still bootstrapping)",
                ));
            }
            let v = export::json_schemas(&dep.store(), format, delta, by_component)?;
            Ok(Routed::Done(json_bytes(
                200,
                serde_json::to_vec(&v).unwrap_or_default(),
            )))
        }
        "get_table_column_names" if get => {
            authorize(dep, parts, &query)?;
            let v = export::table_column_names(&dep.store());
            Ok(Routed::Done(json_bytes(
                200,
                serde_json::to_vec(&v).unwrap_or_default(),
            )))
        }
        "list_snapshot" if get || post => {
            let args = if get {
                let a = ListArgs::from_query(&query)?;
                authorize(dep, parts, &query)?;
                a
            } else {
                authorize(dep, parts, &query)?;
                ListArgs::from_json(&json_body(parts, &body)?)?
            };
            Ok(Routed::Snapshot(args))
        }
        "document_deltas" if get || post => {
            let args = if get {
                let a = ListArgs::from_query(&query)?;
                // The integer cursor is part of GET query parsing, which precedes auth.
                if let Some(e) = &a.cursor_int_error {
                    return Err(bad_query(e));
                }
                authorize(dep, parts, &query)?;
                a
            } else {
                authorize(dep, parts, &query)?;
                ListArgs::from_json(&json_body(parts, &body)?)?
            };
            document_deltas(dep, args).map(Routed::Done)
        }
        "data_sync" | "data_sync_cursor_from_deltas" if post => {
            authorize(dep, parts, &query)?;
            let body = json_body(parts, &body)?;
            let client = parts
                .headers
                .get("convex-client")
                .and_then(|v| v.to_str().ok());
            let out = if endpoint == "data_sync" {
                crate::data_sync::sync(dep, client, &body)?
            } else {
                crate::data_sync::cursor_from_deltas(dep, client, &body)?
            };
            Ok(Routed::Done(json_bytes(200, out)))
        }
        "list_active_syncs" if get => {
            // Convex parses the query before it looks at the caller.
            let limit = match query_once(&query, "limit")? {
                None => None,
                Some(s) => Some(
                    s.parse::<usize>()
                        .map_err(|e| bad_query(format!("limit: {e}")))?,
                ),
            };
            let cursor = query_once(&query, "cursor")?;
            authorize(dep, parts, &query)?;
            let out = crate::data_sync::list_active_syncs(dep, limit, cursor)?;
            Ok(Routed::Done(json_bytes(200, out)))
        }
        "other" => Ok(Routed::Done(no_route())),
        // A known route with the wrong method: axum's bare 405.
        _ => Ok(Routed::Done(bare(405))),
    }
}

/// `Convex-Client` must look like `<client>-<semver>` when present.
fn check_client_version(parts: &Parts) -> Result<(), ApiError> {
    let Some(v) = parts.headers.get("convex-client") else {
        return Ok(());
    };
    let ok = v
        .to_str()
        .ok()
        .and_then(|s| {
            // Split at a '-' such that the rest is a semver (try every position, so
            // `airbyte-export-1.2.3` and prerelease suffixes like `x-1.0.0-rc.1` work).
            s.match_indices('-')
                .map(|(i, _)| &s[i + 1..])
                .find(|rest| is_semver(rest))
                .filter(|_| !s.starts_with('-'))
        })
        .is_some();
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            400,
            "InvalidClientVersion",
            format!(
                "Invalid Convex-Client header value {:?}: expected <client>-<semver>",
                v.to_str().unwrap_or("<non-ascii>")
            ),
        ))
    }
}

/// `x.y.z` (a pre-release or build suffix allowed): what Convex accepts after a client name.
pub(crate) fn is_semver(s: &str) -> bool {
    let core = s.split(['-', '+']).next().unwrap_or("");
    let nums: Vec<&str> = core.split('.').collect();
    nums.len() == 3
        && nums
            .iter()
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

enum Identity {
    Admin,
    NoDataView,
    Unknown,
}

fn authorize(dep: &Deployment, parts: &Parts, query: &[(String, String)]) -> Result<(), ApiError> {
    let settings = dep.settings();
    let check_key = |key: &str| -> Result<Identity, ApiError> {
        if key == dep.access_key() {
            Ok(Identity::Admin)
        } else if settings.keys_without_data_view.iter().any(|k| k == key) {
            Ok(Identity::NoDataView)
        } else {
            Err(ApiError::new(
                401,
                "BadAdminKey",
                "The provided admin key was invalid for this instance",
            ))
        }
    };
    let identity = match parts.headers.get(AUTHORIZATION) {
        Some(v) => {
            let Ok(s) = v.to_str() else {
                return Err(ApiError::new(
                    400,
                    "HeaderParseFailure",
                    "Failed to parse the Authorization header",
                ));
            };
            let invalid =
                || ApiError::new(400, "InvalidHeaderFailure", "Invalid authentication header");
            let prefix = s.get(..7).ok_or_else(invalid)?;
            if !prefix.eq_ignore_ascii_case("convex ") {
                return Err(invalid());
            }
            check_key(s[7..].trim())?
        }
        None => match query.iter().rev().find(|(k, _)| k == "adminKey") {
            Some((_, key)) => check_key(key)?,
            None => Identity::Unknown,
        },
    };
    if !settings.streaming_export_enabled {
        return Err(ApiError::new(
            403,
            "StreamingExportNotEnabled",
            "Streaming export is not available on your current subscription. See \
             https://www.convex.dev/plans to upgrade.",
        ));
    }
    match identity {
        Identity::Unknown => Err(ApiError::new(
            403,
            "BadDeployKey",
            "The provided deploy key was invalid for this deployment. Please ensure your \
             deploy key is correct and try again.",
        )),
        Identity::NoDataView => Err(not_permitted()),
        Identity::Admin if !settings.data_view_permission => Err(not_permitted()),
        Identity::Admin => Ok(()),
    }
}

fn not_permitted() -> ApiError {
    ApiError::new(
        403,
        "OperationNotPermitted",
        "You do not have permission to perform this operation (deployment:data:view).",
    )
}

/// A scalar query argument. Like Convex's query extractor, a repeated one is
/// 400 BadQueryArgs ("duplicate field").
fn query_once<'a>(q: &'a [(String, String)], key: &str) -> Result<Option<&'a str>, ApiError> {
    let mut found = q.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let first = found.next();
    if found.next().is_some() {
        return Err(bad_query(format!("duplicate field `{key}`")));
    }
    Ok(first)
}

fn query_count(q: &[(String, String)], keys: &[&str]) -> usize {
    q.iter().filter(|(k, _)| keys.contains(&k.as_str())).count()
}

fn query_bool(q: &[(String, String)], key: &str) -> Result<bool, ApiError> {
    match query_once(q, key)? {
        None => Ok(false),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(bad_query(format!(
            "{key}: provided string was not `true` or `false`: {other:?}"
        ))),
    }
}

fn parse_format(f: Option<&str>) -> Result<Format, ApiError> {
    match f {
        None => Ok(Format::Clean),
        Some(s) => Format::parse(s).ok_or_else(|| {
            ApiError::new(
                400,
                "BadFormat",
                format!("format param must be one of [`json`]. Got {s}"),
            )
        }),
    }
}

fn json_body(parts: &Parts, body: &Bytes) -> Result<Json, ApiError> {
    let is_json = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|ct| {
            let mime = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            mime.split_once('/')
                .is_some_and(|(_, sub)| sub == "json" || sub.ends_with("+json"))
        })
        .unwrap_or(false);
    if !is_json {
        return Err(bad_json(
            "Expected request with `Content-Type: application/json`",
        ));
    }
    let v: Json = serde_json::from_slice(body)
        .map_err(|e| bad_json(format!("Failed to parse the request body as JSON: {e}")))?;
    if !v.is_object() {
        return Err(bad_json(
            "Failed to deserialize the JSON body into the target type: expected a map",
        ));
    }
    Ok(v)
}

/// Arguments of list_snapshot and document_deltas (the same shape; `snapshot` is unused by
/// deltas, and `cursor` is a string for one and an integer for the other).
struct ListArgs {
    snapshot: Option<i64>,
    cursor_str: Option<String>,
    cursor_int: Option<i64>,
    /// Set when a GET `cursor` did not parse as an integer (only an error for deltas).
    cursor_int_error: Option<String>,
    /// Set when a POST `cursor` had the wrong type for the endpoint.
    cursor_type: CursorType,
    selection: Selection,
    format: Option<String>,
}

#[derive(PartialEq)]
enum CursorType {
    Absent,
    String,
    Integer,
    Other,
}

impl ListArgs {
    fn from_query(q: &[(String, String)]) -> Result<ListArgs, ApiError> {
        let snapshot = match query_once(q, "snapshot")? {
            None => None,
            Some(s) => Some(
                s.parse::<i64>()
                    .map_err(|e| bad_query(format!("snapshot: {e}")))?,
            ),
        };
        let cursor = query_once(q, "cursor")?;
        let format = query_once(q, "format")?;
        let (cursor_int, cursor_int_error) = match cursor.map(str::parse::<i64>) {
            None => (None, None),
            Some(Ok(i)) => (Some(i), None),
            Some(Err(e)) => (None, Some(format!("cursor: {e}"))),
        };
        // Convex's selection is an untagged enum: a repeated selector (or `tableName` with its
        // alias `table_name`) fails the table variant, and the request falls through to
        // "every table".
        let repeated =
            query_count(q, &["tableName", "table_name"]) > 1 || query_count(q, &["component"]) > 1;
        let first = |k: &str| q.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        let table = first("tableName").or_else(|| first("table_name"));
        let component = first("component");
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

    fn from_json(v: &Json) -> Result<ListArgs, ApiError> {
        let type_err = |field: &str, want: &str| {
            bad_json(format!(
                "Failed to deserialize the JSON body into the target type: {field}: invalid \
                 type, expected {want}"
            ))
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

    fn effective_selection(&self, dep: &Deployment) -> Selection {
        if dep.settings().ignore_table_filter
            && matches!(
                self.selection,
                Selection::Table { .. } | Selection::Component(_)
            )
        {
            Selection::All
        } else {
            self.selection.clone()
        }
    }
}

fn ms_to_ns(ms: u64) -> i64 {
    i64::try_from(ms.saturating_mul(1_000_000)).unwrap_or(i64::MAX)
}

async fn list_snapshot(dep: &Deployment, a: ListArgs) -> Result<Resp, ApiError> {
    let started = Instant::now();
    match a.cursor_type {
        CursorType::Integer | CursorType::Other => {
            return Err(bad_json(
                "Failed to deserialize the JSON body into the target type: cursor: invalid \
                 type, expected a string",
            ))
        }
        CursorType::Absent | CursorType::String => {}
    }
    let settings = dep.settings();
    let max_age = ms_to_ns(settings.snapshot_max_age_ms);
    let args = SnapshotArgs {
        snapshot: a.snapshot,
        cursor: a.cursor_str.clone(),
        selection: a.effective_selection(dep),
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
    let retention = ms_to_ns(settings.retention_ms);
    if start.snapshot < dep.head().saturating_sub(retention) {
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
        dep.continues_snapshot_iterator(&IteratorKey {
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
            dep.cache_snapshot_iterator(None);
            return Ok(bare(408));
        }
        tokio::time::sleep(build).await;
        spent = build;
    }
    let limit = snapshot_cost::page_document_limit(&settings, spent, settings.snapshot_page_limit);
    let page = export::list_snapshot(&dep.store(), &args, limit, max_age)?;
    dep.count_rows_read("list_snapshot", page.rows_read);
    let read = snapshot_cost::read_cost(&settings, page.returned);
    let left = timeout.saturating_sub(started.elapsed());
    if read >= left {
        tokio::time::sleep(left).await;
        dep.cache_snapshot_iterator(None);
        return Ok(bare(408));
    }
    if !read.is_zero() {
        tokio::time::sleep(read).await;
    }
    dep.cache_snapshot_iterator(page.next.map(|position| IteratorKey {
        snapshot: page.snapshot,
        selection: args.selection.clone(),
        position,
    }));
    Ok(json_bytes(200, page.body))
}

fn document_deltas(dep: &Deployment, a: ListArgs) -> Result<Resp, ApiError> {
    if let Some(e) = &a.cursor_int_error {
        return Err(bad_query(e));
    }
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
            return Err(bad_json(
                "Failed to deserialize the JSON body into the target type: cursor: invalid \
                 type, expected i64",
            ))
        }
    };
    let settings = dep.settings();
    let selection = a.effective_selection(dep);
    let store = dep.store();
    let format = parse_format(a.format.as_deref());
    // Validation (cursor range, selection) happens before the format is looked at.
    let probe = DeltasArgs {
        cursor,
        selection,
        format: Format::Clean,
        skip_components: settings.no_data_sync,
    };
    let format = match format {
        Ok(f) => f,
        Err(e) => {
            export::document_deltas(&store, &probe, 1, ms_to_ns(settings.retention_ms))?;
            return Err(e);
        }
    };
    let args = DeltasArgs { format, ..probe };
    let (body, rows_read) = export::document_deltas(
        &store,
        &args,
        settings.deltas_page_limit,
        ms_to_ns(settings.retention_ms),
    )?;
    dep.count_rows_read("document_deltas", rows_read);
    Ok(json_bytes(200, body))
}
