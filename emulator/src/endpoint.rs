//! The Convex endpoints under `/api/`, one module each (its arguments and its answer), and
//! what every request goes through first, in Convex's order: faults (a proxy in front),
//! `Convex-Client` validation, GET query parsing, authentication, the streaming-export
//! switch and the data-view permission (all in [`request`]), then the endpoint itself.
//!
//! A request's method and path are parsed once into a [`Route`]; serving it is a match on
//! its [`Endpoint`].

mod data_sync;
mod data_sync_cursor_from_deltas;
mod document_deltas;
mod fault;
mod get_table_column_names;
mod json_schemas;
mod list_active_syncs;
mod list_args;
mod list_snapshot;
mod request;
mod test_streaming_export_connection;

use std::time::Duration;

use bytes::Bytes;
use hyper::http::request::Parts;
use hyper::Method;

use crate::api_error::ApiError;
use crate::deployment::Deployment;
use crate::faults::{FaultKind, Rewrites};
use crate::http::{api_error, bare, no_route, EmuBody, Resp, SocketSlot};
use crate::requests::RequestRecord;
use request::Request;

/// An endpoint the deployment serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    TestStreamingExportConnection,
    JsonSchemas,
    GetTableColumnNames,
    ListSnapshot,
    DocumentDeltas,
    DataSync,
    DataSyncCursorFromDeltas,
    ListActiveSyncs,
}

impl Endpoint {
    const ALL: [Endpoint; 8] = [
        Endpoint::TestStreamingExportConnection,
        Endpoint::JsonSchemas,
        Endpoint::GetTableColumnNames,
        Endpoint::ListSnapshot,
        Endpoint::DocumentDeltas,
        Endpoint::DataSync,
        Endpoint::DataSyncCursorFromDeltas,
        Endpoint::ListActiveSyncs,
    ];

    pub fn path(self) -> &'static str {
        match self {
            Endpoint::TestStreamingExportConnection => "/api/test_streaming_export_connection",
            Endpoint::JsonSchemas => "/api/json_schemas",
            Endpoint::GetTableColumnNames => "/api/get_table_column_names",
            Endpoint::ListSnapshot => "/api/list_snapshot",
            Endpoint::DocumentDeltas => "/api/document_deltas",
            Endpoint::DataSync => "/api/v1/data/sync",
            Endpoint::DataSyncCursorFromDeltas => "/api/data_sync_cursor_from_deltas",
            Endpoint::ListActiveSyncs => "/api/v1/data/list_active_syncs",
        }
    }

    /// The name fault rules and request counters use.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::TestStreamingExportConnection => "test_streaming_export_connection",
            Endpoint::JsonSchemas => "json_schemas",
            Endpoint::GetTableColumnNames => "get_table_column_names",
            Endpoint::ListSnapshot => "list_snapshot",
            Endpoint::DocumentDeltas => "document_deltas",
            Endpoint::DataSync => "data_sync",
            Endpoint::DataSyncCursorFromDeltas => "data_sync_cursor_from_deltas",
            Endpoint::ListActiveSyncs => "list_active_syncs",
        }
    }

    /// Whether the endpoint answers `method` (another method gets a bare 405).
    fn serves(self, method: &Method) -> bool {
        match self {
            Endpoint::ListSnapshot | Endpoint::DocumentDeltas => {
                method == Method::GET || method == Method::POST
            }
            Endpoint::DataSync | Endpoint::DataSyncCursorFromDeltas => method == Method::POST,
            Endpoint::TestStreamingExportConnection
            | Endpoint::JsonSchemas
            | Endpoint::GetTableColumnNames
            | Endpoint::ListActiveSyncs => method == Method::GET,
        }
    }

    /// The Data Sync API's routes, which a backend from before it does not have.
    fn is_data_sync(self) -> bool {
        matches!(
            self,
            Endpoint::DataSync | Endpoint::DataSyncCursorFromDeltas | Endpoint::ListActiveSyncs
        )
    }
}

/// What a request's method and path name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// An endpoint, with a method it serves.
    Serve(Endpoint),
    /// An endpoint's path with a method it does not serve.
    WrongMethod(Endpoint),
    /// A path the deployment does not serve.
    Unknown,
}

impl Route {
    pub fn parse(method: &Method, path: &str) -> Route {
        match Endpoint::ALL.into_iter().find(|e| e.path() == path) {
            Some(e) if e.serves(method) => Route::Serve(e),
            Some(e) => Route::WrongMethod(e),
            None => Route::Unknown,
        }
    }

    fn endpoint(self) -> Option<Endpoint> {
        match self {
            Route::Serve(e) | Route::WrongMethod(e) => Some(e),
            Route::Unknown => None,
        }
    }

    /// The name fault rules and request counters use (`other` for unknown paths).
    pub fn name(self) -> &'static str {
        self.endpoint().map_or("other", Endpoint::name)
    }
}

/// Handles one `/api/` request. `Err` = drop the connection without answering.
pub async fn handle(
    dep: &Deployment,
    parts: Parts,
    body: Bytes,
    socket: &SocketSlot,
) -> Result<Resp, std::io::Error> {
    let route = Route::parse(&parts.method, parts.uri.path());
    let name = route.name();
    dep.counters().count_request(name);
    let uri = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let log = |status: u16| {
        dep.counters().record(RequestRecord {
            endpoint: name.to_owned(),
            method: parts.method.to_string(),
            uri: uri.clone(),
            status,
            version: format!("{:?}", parts.version),
        })
    };

    let request = Request::new(dep, &parts, &body);
    let mut asked = None;
    let decision = dep.decide_fault(name, &mut |component, table| {
        asked
            .get_or_insert_with(|| fault::Asked::of(route.endpoint(), &request))
            .selects(component, table)
    });
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
                tokio::time::sleep(fault::stall_duration(&rule)).await;
                return Err(std::io::Error::other("injected stall ended"));
            }
            _ => {
                let r = fault::immediate(&rule);
                log(r.status().as_u16());
                return Ok(r);
            }
        },
    };

    let resp = serve(route, &request, &decision.rewrites)
        .await
        .unwrap_or_else(|e| api_error(&e));
    match mangle {
        None => {
            log(resp.status().as_u16());
            if let EmuBody::Full(Some(b)) = resp.body() {
                dep.counters().count_bytes_sent(name, b.len());
            }
            Ok(resp)
        }
        Some(rule) => {
            log(0);
            Ok(fault::mangled(resp, &rule, socket).await)
        }
    }
}

/// Answers a request that no fault took over (`rewrites`: what fired `selection_ignored` and
/// `cursor` rules change in the answer).
async fn serve(route: Route, req: &Request<'_>, rewrites: &Rewrites) -> Result<Resp, ApiError> {
    req.check_client_version()?;
    let endpoint = match route {
        Route::Unknown => return Ok(no_route()),
        // An old backend does not have these routes at all, whatever the method.
        Route::Serve(e) | Route::WrongMethod(e)
            if e.is_data_sync() && req.dep.settings().no_data_sync =>
        {
            return Ok(no_route())
        }
        // A known route with the wrong method: axum's bare 405.
        Route::WrongMethod(_) => return Ok(bare(405)),
        Route::Serve(e) => e,
    };
    let dep = req.dep;
    match endpoint {
        Endpoint::TestStreamingExportConnection => {
            test_streaming_export_connection::serve(test_streaming_export_connection::parse(req)?)
        }
        Endpoint::JsonSchemas => json_schemas::serve(dep, json_schemas::parse(req)?),
        Endpoint::GetTableColumnNames => {
            get_table_column_names::serve(dep, get_table_column_names::parse(req)?)
        }
        Endpoint::ListSnapshot => {
            list_snapshot::serve(dep, list_snapshot::parse(req)?, rewrites).await
        }
        Endpoint::DocumentDeltas => {
            document_deltas::serve(dep, document_deltas::parse(req)?, rewrites)
        }
        Endpoint::DataSync => {
            data_sync::serve(dep, data_sync::parse(req)?, rewrites.selection_ignored)
        }
        Endpoint::DataSyncCursorFromDeltas => {
            data_sync_cursor_from_deltas::serve(dep, data_sync_cursor_from_deltas::parse(req)?)
        }
        Endpoint::ListActiveSyncs => list_active_syncs::serve(dep, list_active_syncs::parse(req)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_from_method_and_path() {
        assert_eq!(
            Route::parse(&Method::GET, "/api/list_snapshot"),
            Route::Serve(Endpoint::ListSnapshot)
        );
        assert_eq!(
            Route::parse(&Method::GET, "/api/v1/data/sync"),
            Route::WrongMethod(Endpoint::DataSync)
        );
        assert_eq!(
            Route::parse(&Method::POST, "/api/list_snapshot/"),
            Route::Unknown
        );
        for e in Endpoint::ALL {
            assert_eq!(Route::parse(&Method::PUT, e.path()).name(), e.name());
        }
        assert_eq!(Route::Unknown.name(), "other");
    }
}
