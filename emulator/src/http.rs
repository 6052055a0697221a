//! HTTP plumbing shared by the Convex API and the control API: the response body type (which
//! can misbehave on purpose), query-string parsing and response builders.

use std::future::Future as _;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Response, StatusCode};

use crate::api_error::ApiError;

/// The duplicated socket of a connection, kept so a `reset` fault can set `SO_LINGER` to 0
/// (making the close an RST) after hyper has taken the stream.
pub type SocketSlot = Arc<Mutex<Option<OwnedFd>>>;

/// How a mangled body ends.
pub enum BodyEnd {
    /// End the stream early; with a larger Content-Length hyper then closes the connection.
    Close,
    /// Abort with an RST.
    Reset(SocketSlot),
}

/// Response body: a full buffer, or a partial body followed by a pause and a bad ending.
pub enum EmuBody {
    Full(Option<Bytes>),
    Partial {
        chunk: Option<Bytes>,
        pause: Pin<Box<tokio::time::Sleep>>,
        end: Option<BodyEnd>,
    },
}

impl EmuBody {
    pub fn full(b: impl Into<Bytes>) -> EmuBody {
        EmuBody::Full(Some(b.into()))
    }

    pub fn empty() -> EmuBody {
        EmuBody::Full(None)
    }

    /// Sends `chunk`, waits `pause` (long enough for hyper to flush it), then ends as `end`.
    pub fn partial(chunk: Bytes, pause: Duration, end: BodyEnd) -> EmuBody {
        EmuBody::Partial {
            chunk: Some(chunk),
            pause: Box::pin(tokio::time::sleep(pause)),
            end: Some(end),
        }
    }
}

impl Body for EmuBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match &mut *self {
            EmuBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            EmuBody::Partial { chunk, pause, end } => {
                if let Some(c) = chunk.take() {
                    return Poll::Ready(Some(Ok(Frame::data(c))));
                }
                if pause.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                match end.take() {
                    Some(BodyEnd::Close) | None => Poll::Ready(None),
                    Some(BodyEnd::Reset(slot)) => {
                        let fd = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
                        if let Some(fd) = fd {
                            // Linger 0: closing sends RST instead of FIN. Dropping our
                            // duplicate leaves hyper's descriptor as the last one.
                            let _ = socket2::SockRef::from(&fd).set_linger(Some(Duration::ZERO));
                        }
                        Poll::Ready(Some(Err(std::io::Error::new(
                            std::io::ErrorKind::ConnectionReset,
                            "injected reset",
                        ))))
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, EmuBody::Full(None))
    }

    // An exact size makes hyper send `Content-Length`, as Convex does, instead of chunks.
    // A mangled body sets its (larger) Content-Length header itself.
    fn size_hint(&self) -> SizeHint {
        match self {
            EmuBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            EmuBody::Partial { .. } => SizeHint::default(),
        }
    }
}

pub type Resp = Response<EmuBody>;

pub fn json_bytes(status: u16, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(EmuBody::full(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

pub fn json_value(status: u16, v: &serde_json::Value) -> Resp {
    json_bytes(status, serde_json::to_vec(v).unwrap_or_default())
}

pub fn api_error(e: &ApiError) -> Resp {
    convex_error(e.status, e.code, &e.message)
}

/// Convex's error envelope `{"code","message"}`.
pub fn convex_error(status: u16, code: &str, message: &str) -> Resp {
    json_value(
        status,
        &serde_json::json!({"code": code, "message": message}),
    )
}

/// What Convex's router (axum, no fallback route) answers for a path it does not serve: 404
/// with an empty body and no `Content-Type`.
pub fn no_route() -> Resp {
    bare(404)
}

pub fn bare(status: u16) -> Resp {
    let mut r = Response::new(EmuBody::empty());
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    r
}

/// Decodes `application/x-www-form-urlencoded` pairs (`+` is a space, `%XX` escapes);
/// malformed escapes are kept literally rather than rejected.
pub fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
    let Some(q) = q else { return Vec::new() };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        assert_eq!(
            parse_query(Some("a=b%20c&d=%7B%22x%22%7D&e=1+2&f&g=%zz&h=%4")),
            vec![
                ("a".into(), "b c".into()),
                ("d".into(), "{\"x\"}".into()),
                ("e".into(), "1 2".into()),
                ("f".into(), "".into()),
                ("g".into(), "%zz".into()),
                ("h".into(), "%4".into()),
            ]
        );
    }
}
