//! The Convex streaming export and Data Sync APIs over HTTP: one client for the whole
//! process, timeouts on every wait, retries with backoff, and pages streamed to the sink as
//! they arrive, the next one requested while the last is handed out.
//!
//! This module is the client itself: [`HttpConvex`] and how it is built, the URLs and walk
//! bodies it sends, one request sent and an answer's body read, and the retry loop of a
//! request whose whole answer is needed. The rest is in its children, each using only those
//! listed before it (and this module):
//!
//! - `retry`: the retry policy and the [`Listener`] that hears about retries (both public,
//!   re-exported here);
//! - `errors`: how a failure (a refusal, the network, a timeout, a body cut off) becomes a
//!   [`ConvexError`], and the messages saying so;
//! - `delivered`: the values a page has handed to the sink, so that a retried page sends none
//!   twice;
//! - `read_ahead`: a page's request and body read by a task of its own, and the next page
//!   requested while this one is handed out;
//! - `pages`: one page parsed into the sink as it arrives, retried as a whole;
//! - `streaming_export` and `data_sync`: the two APIs, `ConvexApi` and `DataSyncApi`.

mod data_sync;
mod delivered;
mod errors;
mod pages;
mod read_ahead;
mod retry;
mod streaming_export;
#[cfg(test)]
mod tests;

pub use retry::{request_deadline, Listener, RetryPolicy, Retrying};

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, RETRY_AFTER};

use delivered::Delivered;
use errors::{cancelled, network, refusal, snippet, AttemptError, BodyError};
use read_ahead::Ahead;

use crate::buffers::BufferPool;
use crate::encoding::ValueFormat;
use crate::settings::{DeploymentUrl, Settings};
use crate::{ConvexError, NetworkFailure, Selection, SnapshotTs};

/// Longer URLs are not sent: HTTP servers refuse request lines of a few KiB, and Convex's own
/// cursors are tiny, so such a URL means a corrupt position, not a transient failure.
pub const MAX_URL_BYTES: usize = 16 * 1024;
/// An error response is read this far at most (only its start is ever shown).
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;
/// The `json_schemas` answer is read whole; a deployment's schemas are far smaller than this.
pub const MAX_SCHEMAS_BODY_BYTES: usize = 64 * 1024 * 1024;

pub struct HttpConvex {
    http: reqwest::Client,
    base: DeploymentUrl,
    request_timeout: Duration,
    /// The whole request, body included (`request_deadline`).
    deadline: Duration,
    retry: RetryPolicy,
    listener: Option<Arc<dyn Listener>>,
    /// The next page of a walk or a data sync, requested ahead (see [`Ahead`]).
    ahead: Arc<Mutex<Option<Ahead>>>,
    /// Chunk buffers the parser is done with, for the page readers (see `read_page`); the
    /// process's one pool when the embedder shares it (`with_buffer_pool`).
    buffers: BufferPool,
    /// The encoding walks and data syncs hand values out in.
    format: ValueFormat,
    /// The last page's record of what it delivered, emptied, for the next page (`page`): a
    /// data sync page's keys take a megabyte, faulted in afresh on every page otherwise.
    delivered: Mutex<Delivered>,
}

impl Drop for HttpConvex {
    fn drop(&mut self) {
        // The page read ahead ends with the client (its task holds no strong reference).
        if let Ok(mut slot) = self.ahead.lock() {
            slot.take();
        }
    }
}

impl std::fmt::Display for HttpConvex {
    /// Only the URL: the key must never reach a message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.base.as_str())
    }
}

impl HttpConvex {
    pub fn new(config: &Settings, listener: Option<Arc<dyn Listener>>) -> anyhow::Result<Self> {
        let mut headers = HeaderMap::new();
        let mut auth = HeaderValue::from_str(&format!("Convex {}", config.access_key.expose()))
            .map_err(|_| {
                anyhow::anyhow!(
                    "access_key contains characters that cannot be sent in an HTTP header; paste the deploy key exactly as the Convex dashboard shows it",
                )
            })?;
        auth.set_sensitive(true);
        headers.insert(AUTHORIZATION, auth);
        headers.insert(
            "Convex-Client",
            HeaderValue::from_str(&config.client_id).map_err(|_| {
                anyhow::anyhow!("client id {:?} is not a header value", config.client_id)
            })?,
        );
        let mut builder = reqwest::Client::builder();
        if config.deployment_url.is_loopback_cleartext() {
            // A backend on this machine over plain http: skip loading the system's CA store
            // (most of the start-up time of a short incremental sync). Redirects are then held
            // to http, so none can lead to TLS without trust roots; one to https is reported
            // (see `send`). Any other URL may be redirected to https: it gets the CA store.
            builder = builder.tls_certs_only(std::iter::empty()).redirect(
                reqwest::redirect::Policy::custom(|attempt| {
                    if attempt.url().scheme() != "http" {
                        attempt.stop()
                    } else if attempt.previous().len() >= 10 {
                        attempt.error("too many redirects")
                    } else {
                        attempt.follow()
                    }
                }),
            );
        }
        let http = builder
            .default_headers(headers)
            .user_agent(config.user_agent.as_str())
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()?;
        Ok(HttpConvex {
            http,
            base: config.deployment_url.clone(),
            request_timeout: config.request_timeout,
            deadline: request_deadline(config.request_timeout),
            retry: RetryPolicy::default(),
            listener,
            ahead: Arc::default(),
            buffers: BufferPool::default(),
            format: ValueFormat::Json,
            delivered: Mutex::default(),
        })
    }

    /// Values handed out in `format` (`json`, what the Python connector read, by default).
    pub fn with_value_format(mut self, format: ValueFormat) -> Self {
        self.format = format;
        self
    }

    /// Shares `pool` for the chunk buffers of pages, so the network and the embedder's own
    /// writers reuse one set of buffers.
    pub fn with_buffer_pool(mut self, pool: BufferPool) -> Self {
        self.buffers = pool;
        self
    }

    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    fn url(&self, endpoint: &str, query: &[(&str, &str)]) -> String {
        let mut url = format!("{}{endpoint}", self.base.as_str());
        let mut sep = '?';
        for (k, v) in query {
            url.push(sep);
            sep = '&';
            url.push_str(k);
            url.push('=');
            url.extend(url::form_urlencoded::byte_serialize(v.as_bytes()));
        }
        url
    }

    /// One request: a GET, or a POST of the JSON `body`.
    async fn send(
        &self,
        endpoint: &'static str,
        url: &str,
        body: Option<&str>,
    ) -> Result<reqwest::Response, AttemptError> {
        if url.len() > MAX_URL_BYTES {
            return Err(ConvexError::Network {
                endpoint,
                kind: NetworkFailure::Unsendable,
                detail: format!(
                    "the request URL would be {} bytes, more than the {MAX_URL_BYTES} an HTTP request may carry; the position it resumes from (a cursor) is corrupt or not from Convex: refresh this stream",
                    url.len()
                ),
            }
            .into());
        }
        let request = match body {
            Some(b) => self
                .http
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_owned()),
            None => self.http.get(url),
        };
        let request = request.timeout(self.deadline).send();
        let mut resp = self
            .unless_gone(tokio::time::timeout(self.request_timeout, request))
            .await
            .map_err(|Gone| AttemptError::from(cancelled(endpoint)))?
            .map_err(|_| self.timeout(endpoint, "waiting for the response"))?
            .map_err(|e| network(endpoint, &e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        if status.is_redirection() {
            // Only a redirect to another scheme gets here, from a loopback http URL (see `new`).
            let to = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(|l| snippet(l.as_bytes()))
                .unwrap_or_default();
            return Err(ConvexError::Status {
                endpoint,
                status: status.as_u16(),
                body: format!(
                    "the deployment redirects to {to:?}, which this plain-http connection to a local backend does not follow; set deployment_url to that address"
                ),
            }
            .into());
        }
        // Best effort: what arrived in time, up to the cap, is enough to explain the status.
        let body = match self.read_body(&mut resp, MAX_ERROR_BODY_BYTES).await {
            Ok(b) => b,
            Err((_, BodyError::Closed)) => return Err(cancelled(endpoint).into()),
            Err((partial, _)) => partial,
        };
        let err = refusal(endpoint, status.as_u16(), &body);
        Err(AttemptError::Convex(err, retry_after))
    }

    /// Runs `fut` unless the listener stops waiting first: then nothing it brings could be
    /// delivered, and waiting (or retrying) would only keep a dead sync alive.
    async fn unless_gone<T>(&self, fut: impl Future<Output = T>) -> Result<T, Gone> {
        let Some(listener) = &self.listener else {
            return Ok(fut.await);
        };
        tokio::select! {
            v = fut => Ok(v),
            () = listener.gone() => Err(Gone),
        }
    }

    /// Reads a body whole, up to `cap` bytes, waiting at most `request_timeout` for each chunk
    /// (the request's overall deadline applies too). On failure, also what arrived.
    async fn read_body(
        &self,
        resp: &mut reqwest::Response,
        cap: usize,
    ) -> Result<Vec<u8>, (Vec<u8>, BodyError)> {
        let mut body = Vec::new();
        loop {
            let chunk = match self
                .unless_gone(tokio::time::timeout(self.request_timeout, resp.chunk()))
                .await
            {
                Err(Gone) => return Err((body, BodyError::Closed)),
                Ok(Err(_)) => return Err((body, BodyError::Idle)),
                Ok(Ok(Err(e))) => return Err((body, BodyError::Broken(e))),
                Ok(Ok(Ok(None))) => return Ok(body),
                Ok(Ok(Ok(Some(c)))) => c,
            };
            if body.len() + chunk.len() > cap {
                let room = cap - body.len();
                body.extend_from_slice(&chunk[..room]);
                return Err((body, BodyError::TooLarge));
            }
            body.extend_from_slice(&chunk);
        }
    }

    /// After a request succeeded at `attempt`: the listener hears that a retried one did.
    async fn succeeded(&self, attempt: u32, what: &str) {
        if attempt > 1 {
            if let Some(listener) = &self.listener {
                listener.recovered(what).await;
            }
        }
    }

    /// A GET whose whole JSON answer is needed (the schemas, the column names): bounded in
    /// size, retried as the policy allows.
    async fn get_json(
        &self,
        endpoint: &'static str,
        url: &str,
        what: &str,
    ) -> Result<serde_json::Value, ConvexError> {
        let body = self
            .whole(
                &self.retry,
                endpoint,
                url,
                None,
                MAX_SCHEMAS_BODY_BYTES,
                what,
            )
            .await?;
        serde_json::from_slice(&body).map_err(|e| ConvexError::InvalidResponse {
            endpoint,
            detail: format!("{e}: {}", snippet(&body)),
        })
    }

    /// A request whose whole answer is needed, up to `cap` bytes, retried as `policy`
    /// allows. An answer that is not JSON, or is cut off, counts as the network's failure
    /// (retried); `parse` then decides what the JSON means.
    async fn whole(
        &self,
        policy: &RetryPolicy,
        endpoint: &'static str,
        url: &str,
        request: Option<&str>,
        cap: usize,
        what: &str,
    ) -> Result<Vec<u8>, ConvexError> {
        let mut attempt = 1;
        loop {
            let result: Result<Vec<u8>, AttemptError> = async {
                let mut resp = self.send(endpoint, url, request).await?;
                let body = self
                    .read_body(&mut resp, cap)
                    .await
                    .map_err(|(_, e)| match e {
                        BodyError::Idle => {
                            // The retry's WARN already names `what`.
                            self.timeout(endpoint, "reading the answer").into()
                        }
                        BodyError::Broken(e) => {
                            self.broken_body(endpoint, "the answer", &e).into()
                        }
                        BodyError::TooLarge => ConvexError::InvalidResponse {
                            endpoint,
                            detail: format!(
                                "{what}: the answer is larger than {} MiB, which no Convex answer is",
                                cap / (1024 * 1024)
                            ),
                        }
                        .into(),
                        BodyError::Closed => AttemptError::from(cancelled(endpoint)),
                    })?;
                // A cut-off body fails to parse at its end: treat it as the network's fault.
                if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
                    if e.is_eof() {
                        return Err(ConvexError::Network {
                            endpoint,
                            kind: NetworkFailure::Body,
                            detail: "the response ended early (truncated)".into(),
                        }
                        .into());
                    }
                }
                Ok(body)
            }
            .await;
            match result {
                Ok(v) => {
                    self.succeeded(attempt, what).await;
                    return Ok(v);
                }
                // Only stdout's reader going away: nobody is waiting for the answer.
                Err(AttemptError::Sink(e)) => {
                    return Err(ConvexError::Network {
                        endpoint,
                        kind: NetworkFailure::Other,
                        detail: e.to_string(),
                    })
                }
                Err(AttemptError::Convex(e, ra)) => {
                    self.retry_or_fail(policy, e, ra, &mut attempt, &format!("reading {what}"))
                        .await?
                }
            }
        }
    }

    /// Sleeps before the next attempt, or gives up with the error.
    async fn retry_or_fail(
        &self,
        policy: &RetryPolicy,
        err: ConvexError,
        retry_after: Option<Duration>,
        attempt: &mut u32,
        what: &str,
    ) -> Result<(), ConvexError> {
        if !err.is_retryable() || *attempt >= policy.max_attempts {
            return Err(err);
        }
        let delay = policy.delay(*attempt, retry_after);
        if let Some(listener) = &self.listener {
            listener
                .retrying(Retrying {
                    what,
                    error: &err,
                    delay,
                    next_attempt: *attempt + 1,
                    max_attempts: policy.max_attempts,
                    rate_limited: err.status() == Some(429),
                    retry_after,
                })
                .await;
        }
        if self.unless_gone(tokio::time::sleep(delay)).await.is_err() {
            return Err(cancelled(err.endpoint()));
        }
        *attempt += 1;
        Ok(())
    }
}

/// The listener stopped waiting.
struct Gone;

/// The request body of a `list_snapshot` page.
fn snapshot_body(
    selection: &Selection,
    snapshot: SnapshotTs,
    cursor: Option<&str>,
    format: ValueFormat,
) -> String {
    let mut position = vec![("snapshot", serde_json::Value::from(snapshot.0))];
    if let Some(c) = cursor {
        position.push(("cursor", serde_json::Value::from(c)));
    }
    walk_body(selection, &position, format)
}

/// A walk request's JSON body: the selection, the position, and the value format.
fn walk_body(
    selection: &Selection,
    position: &[(&str, serde_json::Value)],
    format: ValueFormat,
) -> String {
    let values: Vec<String> = position.iter().map(|(_, v)| v.to_string()).collect();
    let format = serde_json::Value::from(format.as_str()).to_string();
    let after: Vec<(&str, &str)> = position
        .iter()
        .zip(&values)
        .map(|((k, _), v)| (*k, v.as_str()))
        .chain(std::iter::once(("format", format.as_str())))
        .collect();
    selection.request_body(&[], &after)
}
