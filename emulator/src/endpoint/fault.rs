//! What a fault rule that fired does to an answer: an error a proxy or an overloaded backend
//! sends instead of it, the real answer cut short (closed, reset or stalled mid-body), or the
//! real answer with another cursor; and what rules scoped to a table read of a request.

use std::time::Duration;

use bytes::Bytes;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use hyper::StatusCode;
use serde_json::Value as Json;

use super::list_args::ListArgs;
use super::request::Request;
use super::Endpoint;
use crate::data_sync::selection::Selection as SyncSelection;
use crate::export::Selection;
use crate::faults::{CursorRewrite, FaultKind, FaultRule};
use crate::http::{convex_error, json_bytes, BodyEnd, EmuBody, Resp, SocketSlot};

/// A request's table selection as a fault rule scoped to a table sees it: read from the
/// query or body as a proxy would, before any check (a request whose selection does not
/// parse selects nothing).
pub enum Asked {
    Export(Selection),
    DataSync(SyncSelection),
    Nothing,
}

impl Asked {
    pub fn of(endpoint: Option<Endpoint>, req: &Request<'_>) -> Asked {
        let body = || req.json_body().ok();
        match endpoint {
            Some(Endpoint::ListSnapshot | Endpoint::DocumentDeltas) => {
                let args = if req.is_get() {
                    ListArgs::from_query(req).ok()
                } else {
                    body().and_then(|b| ListArgs::from_json(&b).ok())
                };
                args.map_or(Asked::Nothing, |a| Asked::Export(a.selection))
            }
            Some(Endpoint::DataSync) => body()
                .and_then(|b| SyncSelection::field(&b).ok())
                .and_then(|field| SyncSelection::from_arg(field.as_ref()).ok())
                .map_or(Asked::Nothing, Asked::DataSync),
            _ => Asked::Nothing,
        }
    }

    pub fn selects(&self, component: &str, table: &str) -> bool {
        match self {
            Asked::Export(s) => s.table(component, table).is_some(),
            Asked::DataSync(s) => s.table(component, table).is_some(),
            Asked::Nothing => false,
        }
    }
}

/// A page (`{…,"cursor":C,"hasMore":B}`) with its cursor replaced as a `cursor` rule says:
/// by the rule's value, or by `asked`, the request's own cursor. A `null` cursor, and a
/// request without one for `Repeat`, keep theirs.
pub fn rewrite_cursor(
    body: Vec<u8>,
    rewrite: Option<&CursorRewrite>,
    asked: Option<Json>,
) -> Vec<u8> {
    let new = match (rewrite, asked) {
        (Some(CursorRewrite::Fixed(c)), _) => c.clone(),
        (Some(CursorRewrite::Repeat), Some(asked)) => asked,
        _ => return body,
    };
    const CURSOR: &[u8] = b",\"cursor\":";
    let last = |field: &[u8]| body.windows(field.len()).rposition(|w| w == field);
    // Both fields close the page, after its values, whose strings cannot hold them unescaped.
    let (Some(start), Some(end)) = (last(CURSOR), last(b",\"hasMore\":")) else {
        return body;
    };
    let start = start + CURSOR.len();
    if end < start || &body[start..end] == b"null" {
        return body;
    }
    let mut out = Vec::with_capacity(body.len() + 64);
    out.extend_from_slice(&body[..start]);
    out.extend_from_slice(new.to_string().as_bytes());
    out.extend_from_slice(&body[end..]);
    out
}

/// How long a stall lasts (an hour unless the rule says).
pub fn stall_duration(rule: &FaultRule) -> Duration {
    Duration::from_millis(rule.ms.unwrap_or(3_600_000))
}

/// The answer of a rule that replaces the endpoint's.
pub fn immediate(rule: &FaultRule) -> Resp {
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
pub async fn mangled(resp: Resp, rule: &FaultRule, socket: &SocketSlot) -> Resp {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_rule_replaces_only_the_page_cursor() {
        let page = br#"{"values":[{"cursor":1,"hasMore":2}],"snapshot":5,"cursor":"{\"id\":\"x\"}","hasMore":true}"#;
        let fixed = CursorRewrite::Fixed(Json::from(-7));
        let out = rewrite_cursor(page.to_vec(), Some(&fixed), None);
        let v: Json = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["cursor"], -7);
        assert_eq!(v["values"][0]["cursor"], 1);
        let asked = Json::from("asked");
        let out = rewrite_cursor(page.to_vec(), Some(&CursorRewrite::Repeat), Some(asked));
        assert!(out.ends_with(br#","cursor":"asked","hasMore":true}"#));
        // No cursor to repeat, or none to replace: the page as it was.
        let out = rewrite_cursor(page.to_vec(), Some(&CursorRewrite::Repeat), None);
        assert_eq!(out, page);
        let last = br#"{"values":[],"snapshot":5,"cursor":null,"hasMore":false}"#;
        assert_eq!(rewrite_cursor(last.to_vec(), Some(&fixed), None), last);
    }
}
