//! How failures become [`ConvexError`]s: an attempt's or a body's failure, a refused
//! request's answer, the network's errors (described without the URL's query or a secret), a
//! page's syntax error, timeouts and bodies that stopped arriving. Apart so that the messages
//! a failure ends up as are written in one place; it depends on no sibling module.

use std::time::Duration;

use serde::Deserialize;

use super::HttpConvex;
use crate::page::PageSyntaxError;
use crate::{ConvexError, NetworkFailure};

/// Why one attempt failed: Convex or the network (with the server's `Retry-After`), which
/// the policy may retry; or the sink, which is never retried.
pub(super) enum AttemptError {
    Convex(ConvexError, Option<Duration>),
    Sink(anyhow::Error),
}

impl From<ConvexError> for AttemptError {
    fn from(e: ConvexError) -> Self {
        AttemptError::Convex(e, None)
    }
}

/// Why a body could not be read whole.
pub(super) enum BodyError {
    /// No byte for `request_timeout`.
    Idle,
    Broken(reqwest::Error),
    TooLarge,
    /// stdout's reader went away.
    Closed,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: String,
    #[serde(default)]
    message: String,
}

/// The error of an answer with a failure status, from the start of its `body`: Convex's
/// `code` and `message` when it sends them, else the body itself, shortened and redacted.
pub(super) fn refusal(endpoint: &'static str, status: u16, body: &[u8]) -> ConvexError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) => ConvexError::Api {
            endpoint,
            status,
            code: crate::redact::redact(&b.code).into_owned(),
            message: crate::redact::redact(&b.message).into_owned(),
        },
        Err(_) => ConvexError::Status {
            endpoint,
            status,
            body: snippet(body),
        },
    }
}

/// The error of a request abandoned because its caller stopped waiting.
pub(super) fn cancelled(endpoint: &'static str) -> ConvexError {
    ConvexError::Network {
        endpoint,
        kind: NetworkFailure::Cancelled,
        detail: "abandoned: nobody waits for the answer any more (the output was closed)".into(),
    }
}

pub(super) fn network(endpoint: &'static str, e: &reqwest::Error) -> ConvexError {
    let detail = describe(e);
    // rustls reports refused certificates as "invalid peer certificate: UnknownIssuer" etc.
    let kind = if e.is_builder() {
        NetworkFailure::Unsendable
    } else if e.is_redirect() {
        // Too many redirects: a loop, which another attempt walks again.
        NetworkFailure::Unsendable
    } else if detail.contains("certificate") {
        NetworkFailure::Tls
    } else if e.is_connect() {
        NetworkFailure::Connect
    } else if e.is_timeout() {
        NetworkFailure::Timeout
    } else {
        NetworkFailure::Other
    };
    let detail = match kind {
        NetworkFailure::Unsendable if e.is_redirect() => {
            format!("{detail} — the deployment keeps redirecting (a loop?): check deployment_url")
        }
        NetworkFailure::Timeout if !e.is_connect() => format!(
            "{detail} (the request's overall deadline, 5 × request_timeout_seconds, ran out)"
        ),
        _ => detail,
    };
    ConvexError::Network {
        endpoint,
        kind,
        detail,
    }
}

/// A reqwest error and its causes on one line, with the URL's query (cursors, which may be
/// huge or hostile) left out, and no secret.
fn describe(e: &reqwest::Error) -> String {
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    if let Some(url) = e.url() {
        let mut short = url.clone();
        short.set_query(None);
        detail = detail.replace(url.as_str(), short.as_str());
    }
    snippet_n(detail.as_bytes(), 1000)
}

pub(super) fn syntax(endpoint: &'static str, e: PageSyntaxError) -> ConvexError {
    match e {
        PageSyntaxError::Truncated => ConvexError::Network {
            endpoint,
            kind: NetworkFailure::Body,
            detail: e.to_string(),
        },
        other => ConvexError::InvalidResponse {
            endpoint,
            detail: other.to_string(),
        },
    }
}

/// The start of an unexpected body, on one line, for error messages, without secrets.
pub(super) fn snippet(body: &[u8]) -> String {
    snippet_n(body, 300)
}

fn snippet_n(body: &[u8], max: usize) -> String {
    // Redacted before it is cut to `max` characters (a cut could leave a secret's prefix no
    // longer recognisable); only so much is looked at that the longest form of a key (3 × 2 KiB
    // URL-encoded) starting within the shown part is still seen whole.
    let body = &body[..body.len().min(max * 4 + 8 * 1024)];
    let text = String::from_utf8_lossy(body);
    let text = crate::redact::redact(&text);
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

impl HttpConvex {
    /// A body that stopped arriving: the connection broke, or reqwest's whole-request timeout
    /// (the overall deadline) ended a body that trickled in forever.
    pub(super) fn broken_body(
        &self,
        endpoint: &'static str,
        what: &str,
        e: &reqwest::Error,
    ) -> ConvexError {
        if e.is_timeout() {
            ConvexError::Network {
                endpoint,
                kind: NetworkFailure::Timeout,
                detail: self.deadline_passed(&format!("reading {what}")),
            }
        } else {
            ConvexError::Network {
                endpoint,
                kind: NetworkFailure::Body,
                detail: format!("the connection broke while reading {what}: {}", describe(e)),
            }
        }
    }

    /// The overall deadline (`request_deadline`) ran out, however steadily bytes came.
    fn deadline_passed(&self, what: &str) -> String {
        format!(
            "the request did not finish within its {} s deadline while {what} (5 × request_timeout_seconds)",
            self.deadline.as_secs()
        )
    }

    pub(super) fn timeout(&self, endpoint: &'static str, what: &str) -> ConvexError {
        ConvexError::Network {
            endpoint,
            kind: NetworkFailure::Timeout,
            detail: format!(
                "no data from Convex for {} s while {what} (request_timeout_seconds)",
                self.request_timeout.as_secs()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_are_one_short_line() {
        let s = snippet(b"<html>\n  <body>502 Bad Gateway</body>\n</html>");
        assert_eq!(s, "<html> <body>502 Bad Gateway</body> </html>");
        assert_eq!(snippet(&[b'x'; 10_000]).chars().count(), 301);
    }
}
