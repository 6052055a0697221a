//! What a fault rule that fired does to an answer: an error a proxy or an overloaded backend
//! sends instead of it, or the real answer cut short (closed, reset or stalled mid-body).

use std::time::Duration;

use bytes::Bytes;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use hyper::StatusCode;

use crate::faults::{FaultKind, FaultRule};
use crate::http::{convex_error, json_bytes, BodyEnd, EmuBody, Resp, SocketSlot};

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
