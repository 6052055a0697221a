//! The Convex streaming export and Data Sync APIs over HTTP: one client for the whole
//! process, timeouts on every wait, retries with backoff, and pages streamed to the sink as
//! they arrive, the next one requested while the last is handed out.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, RETRY_AFTER};
use serde::Deserialize;

use super::data_sync::{
    self, ActiveSync, Converter, DataSyncApi, DataSyncCursor, SyncPage, SyncPageEnd, SyncValue,
    Unrepeated,
};
use super::encoding::ValueFormat;
use super::page::{
    leading_fields, trailing_fields, FeedError, PageParser, PageSyntaxError, RawMeta,
};
use super::{
    json_i64, parse_json_schemas, parse_table_columns, ConvexApi, ConvexError, DeltaCursor,
    DeltasPageEnd, DeploymentSchemas, NetworkFailure, PageSink, Selection, SnapshotCursor,
    SnapshotPageEnd, SnapshotTs, TableRef, ValueMeta,
};
use crate::settings::{DeploymentUrl, Settings};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::{mpsc, oneshot, Semaphore};

const JSON_SCHEMAS: &str = "/api/json_schemas";
const TABLE_COLUMNS: &str = "/api/get_table_column_names";
const LIST_SNAPSHOT: &str = "/api/list_snapshot";
const DOCUMENT_DELTAS: &str = "/api/document_deltas";

/// Longer URLs are not sent: HTTP servers refuse request lines of a few KiB, and Convex's own
/// cursors are tiny, so such a URL means a corrupt position, not a transient failure.
pub const MAX_URL_BYTES: usize = 16 * 1024;
/// An error response is read this far at most (only its start is ever shown).
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;
/// The `json_schemas` answer is read whole; a deployment's schemas are far smaller than this.
pub const MAX_SCHEMAS_BODY_BYTES: usize = 64 * 1024 * 1024;

/// The overall deadline of one request, body included: generous (a 1,024-document page of
/// large documents takes a while; 600 s by default), yet a body that trickles a byte now and
/// then, never idle for `request_timeout`, still ends.
pub fn request_deadline(request_timeout: Duration) -> Duration {
    request_timeout.saturating_mul(5)
}

/// Bounded retries: exponential backoff with jitter, or the server's `Retry-After`.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// A `Retry-After` longer than this is cut to it, so one answer cannot park a sync for hours.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// For commands a person waits on (check, discover): fail within seconds, whatever
    /// `Retry-After` a server asks for.
    pub fn interactive() -> Self {
        RetryPolicy {
            max_attempts: 3,
            max_retry_after: Duration::from_secs(5),
            ..RetryPolicy::default()
        }
    }

    /// Delay before attempt `attempt + 1` (attempts count from 1).
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(ra) = retry_after {
            return ra.min(self.max_retry_after);
        }
        let exp = self
            .base_delay
            .saturating_mul(1u32 << (attempt - 1).min(16))
            .min(self.max_delay);
        // "Equal jitter": at least half the exponential delay, so retries still back off, and
        // spread over the other half so concurrent streams do not retry in lockstep.
        let half = exp / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

pub struct HttpConvex {
    http: reqwest::Client,
    base: DeploymentUrl,
    request_timeout: Duration,
    /// The whole request, body included (`request_deadline`).
    deadline: Duration,
    retry: RetryPolicy,
    listener: Option<Arc<dyn Listener>>,
    /// The next page of a snapshot walk or data sync, requested ahead (see [`Ahead`]).
    ahead: Arc<Mutex<Option<Ahead>>>,
    /// Chunk buffers the parser is done with, for the page readers (see `read_page`).
    buffers: Arc<Mutex<Vec<Vec<u8>>>>,
    /// The encoding walks and data syncs hand values out in.
    format: ValueFormat,
}

impl Drop for HttpConvex {
    fn drop(&mut self) {
        // The page read ahead ends with the client (its task holds no strong reference).
        if let Ok(mut slot) = self.ahead.lock() {
            slot.take();
        }
    }
}

/// A page's body is read ahead of the parser, up to this many bytes: so the whole body of a
/// usual page (1,024 documents of a few hundred bytes) has arrived while its first documents
/// are being turned into records, and the next page can be asked for then.
const AHEAD_BYTES: usize = 4 * 1024 * 1024;
/// The most of the budget one chunk takes (network chunks are far smaller).
const CHUNK_PERMITS: usize = 1024 * 1024;
/// A data sync page's values wait until its body has ended or this much of it has arrived:
/// Convex recomputes a retried page (see `data_sync`), so values delivered by an attempt that
/// then fails may not be in the answer that completes; held, they never went out. Less than
/// the budget by a chunk, so the reader never waits on it meanwhile.
const HOLD_BYTES: usize = AHEAD_BYTES - CHUNK_PERMITS;

/// What the reader of a page hands the parser.
enum Item {
    Chunk(Vec<u8>),
    End,
    Failed(AttemptError),
}

/// One page request, sent and read by its own task into a queue bounded in bytes.
///
/// Pipelining: the connector is CPU bound on a full refresh while Convex computes each page,
/// so the next page of a snapshot walk or a data sync is requested as soon as the body of the
/// page being processed has arrived (its cursor is then in the body's last bytes, see
/// [`NextPage::body_after`]), while that page's values are still being handed out. It is used
/// only for exactly the request the walk then makes; otherwise it is dropped (its task
/// aborted). At most one page is requested ahead of the one being processed: the next is
/// requested only once this one is `taken`.
struct Ahead {
    endpoint: &'static str,
    body: String,
    rx: mpsc::UnboundedReceiver<Item>,
    budget: Arc<Semaphore>,
    taken: Option<oneshot::Sender<()>>,
    task: tokio::task::AbortHandle,
}

impl Drop for Ahead {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A walk's position, for requesting the page after the one being read.
#[derive(Clone)]
enum NextPage {
    Snapshot {
        selection: Selection,
        snapshot: SnapshotTs,
        format: ValueFormat,
    },
    /// A data sync goes on after every page but an `upToDate` one, where its caller stops
    /// (and a page costs the server).
    DataSync { selection: Selection },
}

impl NextPage {
    /// The request body of the page after the one whose body starts with `head` and ends with
    /// `tail`, when that page says there is one.
    fn body_after(&self, head: &[u8], tail: &[u8]) -> Option<String> {
        let trailing = trailing_fields(tail)?;
        let find = |name: &[u8]| trailing.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
        match self {
            NextPage::Snapshot {
                selection,
                snapshot,
                format,
            } => {
                if !serde_json::from_slice::<bool>(find(br#""hasMore""#)?).ok()? {
                    return None;
                }
                let cursor: String = serde_json::from_slice(find(br#""cursor""#)?).ok()?;
                Some(snapshot_body(selection, *snapshot, Some(&cursor), *format).to_string())
            }
            NextPage::DataSync { selection } => {
                #[derive(Deserialize)]
                struct Status<'a> {
                    #[serde(rename = "type")]
                    kind: &'a str,
                }
                #[derive(Deserialize)]
                struct Pagination {
                    #[serde(rename = "nextCursor")]
                    next_cursor: String,
                }
                // Convex sends `status` first and `pagination` last; either may be anywhere.
                let leading = leading_fields(head);
                let find = |name: &[u8]| {
                    find(name).or_else(|| leading.iter().find(|(k, _)| *k == name).map(|(_, v)| *v))
                };
                let status: Status<'_> = serde_json::from_slice(find(br#""status""#)?).ok()?;
                if !matches!(status.kind, "snapshotting" | "stale") {
                    return None;
                }
                let p: Pagination = serde_json::from_slice(find(br#""pagination""#)?).ok()?;
                let cursor = DataSyncCursor(p.next_cursor);
                (!cursor.0.is_empty()).then(|| data_sync::sync_body(selection, Some(&cursor)))
            }
        }
    }
}

/// The request body of a `list_snapshot` page.
fn snapshot_body(
    selection: &Selection,
    snapshot: SnapshotTs,
    cursor: Option<&str>,
    format: ValueFormat,
) -> serde_json::Value {
    let mut position = vec![("snapshot", serde_json::Value::from(snapshot.0))];
    if let Some(c) = cursor {
        position.push(("cursor", serde_json::Value::from(c)));
    }
    walk_body(selection, &position, format)
}

/// The bytes at the end of a body looked at by [`trailing_fields`]: the fields are small (a
/// cursor is far shorter than this); a page whose fields do not fit is simply not requested
/// ahead.
const TAIL_BYTES: usize = 8 * 1024;
/// The bytes at the start of a body looked at by [`leading_fields`] (a data sync page's
/// `status` comes first).
const HEAD_BYTES: usize = 4 * 1024;
/// Chunk buffers kept for reuse (each at most `POOL_MAX_CAPACITY`), see `read_page`.
const POOL_BUFFERS: usize = 4;
const POOL_MAX_CAPACITY: usize = 1024 * 1024;

/// A request about to be tried again.
#[derive(Debug)]
pub struct Retrying<'a> {
    /// What was being done (`list_snapshot of users`).
    pub what: &'a str,
    pub error: &'a ConvexError,
    pub delay: Duration,
    pub next_attempt: u32,
    pub max_attempts: u32,
    /// Convex refused it for too many requests (429): the read is rate limited.
    pub rate_limited: bool,
    /// How long the server asked to wait (`Retry-After`), as it said it: `delay` is that, cut
    /// to the policy's longest wait.
    pub retry_after: Option<Duration>,
}

/// Whoever runs the client: hears about retries and may stop waiting for answers (then
/// requests are abandoned instead of retried for minutes). The Convex layer shows nothing
/// to anyone itself; the caller decides what a retry looks like.
pub trait Listener: Send + Sync {
    fn retrying<'a>(&'a self, r: Retrying<'a>) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
    /// A request that was retried has succeeded (once per such request).
    fn recovered<'a>(&'a self, what: &'a str) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        let _ = what;
        Box::pin(std::future::ready(()))
    }
    /// Resolves once nobody waits for answers any more.
    fn gone(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// The error of a request abandoned because its caller stopped waiting.
fn cancelled(endpoint: &'static str) -> ConvexError {
    ConvexError::Network {
        endpoint,
        kind: NetworkFailure::Cancelled,
        detail: "abandoned: nobody waits for the answer any more (the output was closed)".into(),
    }
}

impl std::fmt::Display for HttpConvex {
    /// Only the URL: the key must never reach a message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.base.as_str())
    }
}

enum AttemptError {
    Convex(ConvexError, Option<Duration>),
    Sink(anyhow::Error),
}

impl From<ConvexError> for AttemptError {
    fn from(e: ConvexError) -> Self {
        AttemptError::Convex(e, None)
    }
}

/// Why a body could not be read whole.
enum BodyError {
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
            buffers: Arc::default(),
            format: ValueFormat::Json,
        })
    }

    /// Values handed out in `format` (`json`, what the Python connector read, by default).
    pub fn with_value_format(mut self, format: ValueFormat) -> Self {
        self.format = format;
        self
    }

    /// A copy for a page reader's task (with no page ahead of its own).
    fn detached(&self) -> HttpConvex {
        HttpConvex {
            http: self.http.clone(),
            base: self.base.clone(),
            request_timeout: self.request_timeout,
            deadline: self.deadline,
            retry: self.retry,
            listener: self.listener.clone(),
            ahead: Arc::default(),
            buffers: Arc::clone(&self.buffers),
            format: self.format,
        }
    }

    /// The page for this request: the one read ahead if it is this request, else a new one.
    fn start_page(
        &self,
        endpoint: &'static str,
        url: &str,
        body: &str,
        next: Option<&NextPage>,
    ) -> Ahead {
        let ahead = self.ahead.lock().ok().and_then(|mut slot| slot.take());
        if let Some(mut a) = ahead.filter(|a| a.endpoint == endpoint && a.body == body) {
            if let Some(taken) = a.taken.take() {
                let _ = taken.send(());
            }
            return a;
        }
        let (taken, taken_rx) = oneshot::channel();
        let _ = taken.send(());
        self.spawn_page(
            Arc::downgrade(&self.ahead),
            endpoint,
            url.to_owned(),
            body.to_owned(),
            next.cloned(),
            taken_rx,
        )
    }

    /// Starts the task that requests a page and reads its body ahead (bounded); `slot` is
    /// where the page after it goes, if it is read ahead.
    fn spawn_page(
        &self,
        slot: Weak<Mutex<Option<Ahead>>>,
        endpoint: &'static str,
        url: String,
        body: String,
        next: Option<NextPage>,
        taken: oneshot::Receiver<()>,
    ) -> Ahead {
        let (tx, rx) = mpsc::unbounded_channel();
        let budget = Arc::new(Semaphore::new(AHEAD_BYTES));
        let task = tokio::spawn(self.detached().read_page(
            endpoint,
            url,
            body.clone(),
            next,
            tx,
            Arc::clone(&budget),
            taken,
            slot,
        ));
        Ahead {
            endpoint,
            body,
            rx,
            budget,
            taken: None,
            task: task.abort_handle(),
        }
    }

    /// Keeps a chunk buffer the parser is done with, unless the pool is full or it is large.
    fn recycle(&self, mut buf: Vec<u8>) {
        if buf.capacity() > POOL_MAX_CAPACITY {
            return;
        }
        buf.clear();
        if let Ok(mut pool) = self.buffers.lock() {
            if pool.len() < POOL_BUFFERS {
                pool.push(buf);
            }
        }
    }

    /// The task of one page: the request, then its body into `tx` as fast as it comes (up to
    /// the budget); at its end, once the page is taken, the request of the next page.
    #[allow(clippy::too_many_arguments)]
    async fn read_page(
        self,
        endpoint: &'static str,
        url: String,
        body: String,
        next: Option<NextPage>,
        tx: mpsc::UnboundedSender<Item>,
        budget: Arc<Semaphore>,
        taken: oneshot::Receiver<()>,
        slot: Weak<Mutex<Option<Ahead>>>,
    ) {
        let mut resp = match self.send(endpoint, &url, Some(&body)).await {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(Item::Failed(e));
                return;
            }
        };
        // The body's last `TAIL_BYTES`, where the next page's cursor is, and its first.
        let mut tail = Vec::new();
        let mut head = Vec::new();
        loop {
            let chunk = match tokio::time::timeout(self.request_timeout, resp.chunk()).await {
                Err(_) => Err(self.timeout(endpoint, "reading the page")),
                Ok(Err(e)) => Err(self.broken_body(endpoint, "the page", &e)),
                Ok(Ok(None)) => break,
                Ok(Ok(Some(c))) => Ok(c),
            };
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let _ = tx.send(Item::Failed(e.into()));
                    return;
                }
            };
            // Copied into a reused buffer, and the network's buffer let go at once: kept
            // until the parser is done with it, hyper's next read would need fresh memory, a
            // page fault per 4 KiB (more CPU than this copy).
            let mut buf = self
                .buffers
                .lock()
                .ok()
                .and_then(|mut pool| pool.pop())
                .unwrap_or_default();
            buf.extend_from_slice(&chunk);
            drop(chunk);
            if next.is_some() {
                let room = HEAD_BYTES - head.len();
                head.extend_from_slice(&buf[..room.min(buf.len())]);
                let keep = TAIL_BYTES.saturating_sub(buf.len()).min(tail.len());
                tail.drain(..tail.len() - keep);
                tail.extend_from_slice(&buf[buf.len().saturating_sub(TAIL_BYTES)..]);
            }
            match budget.acquire_many(permits_for(buf.len())).await {
                Ok(p) => p.forget(),
                Err(_) => return,
            }
            if tx.send(Item::Chunk(buf)).is_err() {
                return;
            }
        }
        if let Some(next_body) = next.as_ref().and_then(|n| n.body_after(&head, &tail)) {
            if taken.await.is_ok() {
                if let Some(shared) = slot.upgrade() {
                    let (taken_tx, taken_rx) = oneshot::channel();
                    let mut ahead = self.spawn_page(slot, endpoint, url, next_body, next, taken_rx);
                    ahead.taken = Some(taken_tx);
                    if let Ok(mut s) = shared.lock() {
                        *s = Some(ahead);
                    }
                }
            }
        }
        let _ = tx.send(Item::End);
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
                    "the request URL would be {} bytes, more than the {MAX_URL_BYTES} an HTTP request may carry; the position it resumes from (a cursor) is corrupt or not from Convex: reset the stream",
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
        let err = match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(b) => ConvexError::Api {
                endpoint,
                status: status.as_u16(),
                code: crate::redact::redact(&b.code).into_owned(),
                message: crate::redact::redact(&b.message).into_owned(),
            },
            Err(_) => ConvexError::Status {
                endpoint,
                status: status.as_u16(),
                body: snippet(&body),
            },
        };
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

    /// A body that stopped arriving: the connection broke, or reqwest's whole-request timeout
    /// (the overall deadline) ended a body that trickled in forever.
    fn broken_body(&self, endpoint: &'static str, what: &str, e: &reqwest::Error) -> ConvexError {
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

    fn timeout(&self, endpoint: &'static str, what: &str) -> ConvexError {
        ConvexError::Network {
            endpoint,
            kind: NetworkFailure::Timeout,
            detail: format!(
                "no data from Convex for {} s while {what} (request_timeout_seconds)",
                self.request_timeout.as_secs()
            ),
        }
    }

    /// One attempt at one page. `delivered` holds what the sink took from earlier attempts at
    /// the same page; those values are skipped by identity (table, `_id`, `_ts`), never by
    /// count: a repeated request may answer other values, or the same in another order (an
    /// `import --replace` between two attempts changes a deltas page's contents; a data sync
    /// recomputes its page). Returns the page's members other than `values`.
    #[allow(clippy::too_many_arguments)]
    async fn attempt_page<S: PageSink>(
        &self,
        kind: Elements,
        endpoint: &'static str,
        url: &str,
        body: &str,
        next: Option<&NextPage>,
        sink: &mut S,
        delivered: &mut Delivered,
    ) -> Result<Vec<(String, Vec<u8>)>, AttemptError> {
        let mut page = self.start_page(endpoint, url, body, next);
        // Members are what typed columns check (they read `export_json`).
        let members = self.format == ValueFormat::ExportJson;
        let (mut parser, mut converter) = match kind {
            Elements::Documents if members => (PageParser::with_members(), None),
            Elements::Documents => (PageParser::new(), None),
            Elements::SyncEnvelopes => (
                PageParser::sync_envelopes(members),
                Some(Converter::new(self.format)),
            ),
        };
        let invalid =
            |detail| AttemptError::from(ConvexError::InvalidResponse { endpoint, detail });
        let reader_stopped = || {
            AttemptError::from(ConvexError::Network {
                endpoint,
                kind: NetworkFailure::Other,
                detail: "the page's reader stopped before the page ended".into(),
            })
        };
        // A data sync page fails as a whole while its values are held (`HOLD_BYTES`).
        let mut held = std::collections::VecDeque::new();
        if kind == Elements::SyncEnvelopes {
            let mut bytes = 0;
            while bytes < HOLD_BYTES {
                let item = self
                    .unless_gone(page.rx.recv())
                    .await
                    .map_err(|Gone| AttemptError::from(cancelled(endpoint)))?;
                match item.ok_or_else(reader_stopped)? {
                    Item::Chunk(c) => {
                        bytes += c.len();
                        held.push_back(Item::Chunk(c));
                    }
                    Item::End => {
                        held.push_back(Item::End);
                        break;
                    }
                    Item::Failed(e) => return Err(e),
                }
            }
        }
        loop {
            let item = match held.pop_front() {
                Some(item) => Some(item),
                None => self
                    .unless_gone(page.rx.recv())
                    .await
                    .map_err(|Gone| AttemptError::from(cancelled(endpoint)))?,
            };
            let chunk = match item {
                Some(Item::Chunk(c)) => c,
                Some(Item::End) => break,
                Some(Item::Failed(e)) => return Err(e),
                None => return Err(reader_stopped()),
            };
            let permits = permits_for(chunk.len()) as usize;
            parser
                .feed(&chunk, |raw, raw_meta| {
                    let (raw, meta) = match converter.as_mut() {
                        None => plain_meta(&raw_meta)
                            .map_or_else(|| ValueMeta::from_raw(raw_meta), Ok)
                            .map(|meta| (raw, meta)),
                        Some(c) => c.convert(raw_meta),
                    }
                    .map_err(invalid)?;
                    if delivered.take(&meta) {
                        sink.value(raw, &meta).map_err(AttemptError::Sink)?;
                    }
                    Ok(())
                })
                .map_err(|e| match e {
                    FeedError::Sink(e) => e,
                    FeedError::Syntax(e) => AttemptError::Convex(syntax(endpoint, e), None),
                })?;
            page.budget.add_permits(permits);
            self.recycle(chunk);
            sink.flush().await.map_err(AttemptError::Sink)?;
        }
        let saw_values = parser.saw_values();
        let fields = parser
            .finish()
            .map_err(|e| AttemptError::from(syntax(endpoint, e)))?;
        if kind == Elements::SyncEnvelopes && !saw_values {
            return Err(invalid("the page has no `values`".into()));
        }
        Ok(fields)
    }

    /// One page of a walk, retried as the policy allows: its members other than `values`, and
    /// what the sink received. `next`: the position the page is one of, whose next page may
    /// be requested ahead.
    async fn page<S: PageSink>(
        &self,
        kind: Elements,
        endpoint: &'static str,
        what: &str,
        body: String,
        next: Option<NextPage>,
        sink: &mut S,
    ) -> anyhow::Result<PageDone> {
        let url = self.url(endpoint, &[]);
        let mut delivered = Delivered::default();
        let mut attempt = 1;
        loop {
            let result = self
                .attempt_page(
                    kind,
                    endpoint,
                    &url,
                    &body,
                    next.as_ref(),
                    sink,
                    &mut delivered,
                )
                .await;
            match result {
                Ok(fields) => {
                    self.succeeded(attempt, what).await;
                    return Ok(PageDone {
                        fields,
                        values: delivered.count(),
                        unrepeated: delivered.unrepeated(),
                    });
                }
                Err(AttemptError::Sink(e)) => return Err(e),
                Err(AttemptError::Convex(e, retry_after)) => {
                    self.retry_or_fail(&self.retry, e, retry_after, &mut attempt, what)
                        .await?;
                    delivered.retrying();
                }
            }
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

/// What the elements of a page's `values` are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Elements {
    /// Documents with their metadata members (`list_snapshot`, `document_deltas`).
    Documents,
    /// Data Sync envelopes, each turned into the value `document_deltas` would send.
    SyncEnvelopes,
}

/// A page read to its end.
struct PageDone {
    /// The members other than `values`, raw.
    fields: Vec<(String, Vec<u8>)>,
    /// How many values the sink received.
    values: usize,
    /// See [`Delivered::unrepeated`].
    unrepeated: Vec<Unrepeated>,
}

/// A chunk takes this much of a page's read-ahead budget (at most [`CHUNK_PERMITS`]).
fn permits_for(len: usize) -> u32 {
    len.min(CHUNK_PERMITS) as u32
}

/// The values one page has handed to the sink, across attempts. The first attempt only
/// appends keys to one buffer (no allocation per value on the hot path); a retry indexes them.
#[derive(Default)]
struct Delivered {
    keys: Vec<u8>,
    ends: Vec<usize>,
    index: Option<std::collections::HashSet<Box<[u8]>>>,
    scratch: Vec<u8>,
    /// How many of `ends` earlier attempts delivered (the attempt in progress adds the rest).
    earlier: usize,
    /// The documents (keys without `_ts`) the attempt in progress sent, new or not: kept
    /// only once a page is retried.
    sent: std::collections::HashSet<Box<[u8]>>,
}

/// The bytes of a key ([`key_of`]) that are the document's, not the revision's.
fn document_part(key: &[u8]) -> &[u8] {
    &key[..key.len() - 8]
}

impl Delivered {
    /// Whether `meta`'s value is new to this page; if so it counts as delivered from now on.
    fn take(&mut self, meta: &ValueMeta<'_>) -> bool {
        let Some(index) = &mut self.index else {
            // The first attempt: nothing to check against, the key goes straight in.
            key_of(meta, &mut self.keys);
            self.ends.push(self.keys.len());
            return true;
        };
        self.scratch.clear();
        key_of(meta, &mut self.scratch);
        let document = document_part(&self.scratch);
        if !self.sent.contains(document) {
            self.sent.insert(document.into());
        }
        if !index.insert(self.scratch.as_slice().into()) {
            return false;
        }
        self.keys.extend_from_slice(&self.scratch);
        self.ends.push(self.keys.len());
        true
    }

    /// Before a retry: what was delivered becomes a set to check against.
    fn retrying(&mut self) {
        self.earlier = self.ends.len();
        self.sent.clear();
        if self.index.is_some() {
            return;
        }
        let mut start = 0;
        let mut set = std::collections::HashSet::with_capacity(self.ends.len());
        for &end in &self.ends {
            set.insert(self.keys[start..end].into());
            start = end;
        }
        self.index = Some(set);
    }

    fn count(&self) -> usize {
        self.ends.len()
    }

    /// Values earlier attempts delivered whose document the last attempt did not send at all
    /// (neither that revision nor another).
    fn unrepeated(&self) -> Vec<Unrepeated> {
        let mut start = 0;
        let mut out = Vec::new();
        for &end in &self.ends[..self.earlier] {
            let key = &self.keys[start..end];
            start = end;
            if self.sent.contains(document_part(key)) {
                continue;
            }
            let mut names = document_part(key)
                .split(|&b| b == 0)
                .map(String::from_utf8_lossy);
            let (component, table, id) = (names.next(), names.next(), names.next());
            let ts = key[key.len() - 8..].try_into().map(i64::from_le_bytes);
            if let (Some(component), Some(table), Some(id), Ok(ts)) = (component, table, id, ts) {
                out.push(Unrepeated {
                    table: TableRef {
                        component: component.into_owned(),
                        table: table.into_owned(),
                    },
                    id: id.into_owned(),
                    ts,
                });
            }
        }
        out
    }
}

/// `ValueMeta::from_raw` for the usual shape of the metadata (compact, `_ts` a plain integer,
/// names and id without escapes), with no search or parse call per field: it is a sixth of the
/// work per record otherwise. `None` for any other shape, which `from_raw` then reads (and
/// refuses where it must); where this gives a value, it is the one `from_raw` gives.
fn plain_meta<'a>(raw: &RawMeta<'a>) -> Option<ValueMeta<'a>> {
    let plain_string = |json: &'a str| -> Option<std::borrow::Cow<'a, str>> {
        let inner = json.strip_prefix('"')?.strip_suffix('"')?;
        if !raw.plain_names {
            // A loop, not `contains` (a `memchr` call costs more than these short names).
            for &c in inner.as_bytes() {
                if c == b'\\' {
                    return None;
                }
            }
        }
        Some(std::borrow::Cow::Borrowed(inner))
    };
    let ts = json_i64(raw.ts?)?;
    Some(ValueMeta {
        table: plain_string(raw.table?)?,
        component: match raw.component {
            Some(c) => plain_string(c)?,
            None => std::borrow::Cow::Borrowed(""),
        },
        id: plain_string(raw.id?)?,
        ts,
        deleted: match raw.deleted {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(_) => return None,
        },
        members: raw.members,
    })
}

/// Appends a value's identity (component, table, `_id`, `_ts`) to `out`: the names each end
/// with a NUL, the timestamp is its eight bytes.
fn key_of(meta: &ValueMeta<'_>, out: &mut Vec<u8>) {
    for part in [&*meta.component, &*meta.table, &*meta.id] {
        out.extend_from_slice(part.as_bytes());
        out.push(0);
    }
    out.extend_from_slice(&meta.ts.to_le_bytes());
}

/// A walk request's JSON body: the selection, the position, and the value format.
fn walk_body(
    selection: &Selection,
    position: &[(&str, serde_json::Value)],
    format: ValueFormat,
) -> serde_json::Value {
    let mut body = serde_json::Map::new();
    body.insert("selection".into(), selection.to_json());
    for (k, v) in position {
        body.insert((*k).into(), v.clone());
    }
    body.insert("format".into(), format.as_str().into());
    serde_json::Value::Object(body)
}

fn network(endpoint: &'static str, e: &reqwest::Error) -> ConvexError {
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

fn syntax(endpoint: &'static str, e: PageSyntaxError) -> ConvexError {
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
fn snippet(body: &[u8]) -> String {
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

fn field<'a, T: Deserialize<'a>>(
    endpoint: &'static str,
    fields: &'a [(String, Vec<u8>)],
    name: &str,
) -> Result<T, ConvexError> {
    let raw = fields
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_slice())
        .ok_or_else(|| ConvexError::InvalidResponse {
            endpoint,
            detail: format!("the page has no `{name}` field"),
        })?;
    serde_json::from_slice(raw).map_err(|e| ConvexError::InvalidResponse {
        endpoint,
        detail: format!("the page's `{name}` field is not what the API documents: {e}"),
    })
}

impl ConvexApi for HttpConvex {
    async fn json_schemas(&self) -> Result<DeploymentSchemas, ConvexError> {
        let url = self.url(
            JSON_SCHEMAS,
            &[
                ("deltaSchema", "true"),
                ("format", "json"),
                ("byComponent", "true"),
            ],
        );
        let v = self
            .get_json(JSON_SCHEMAS, &url, "the table schemas")
            .await?;
        parse_json_schemas(v).map_err(|detail| ConvexError::InvalidResponse {
            endpoint: JSON_SCHEMAS,
            detail,
        })
    }

    async fn table_columns(&self) -> Result<DeploymentSchemas, ConvexError> {
        let url = self.url(TABLE_COLUMNS, &[("byComponent", "true")]);
        let v = self
            .get_json(TABLE_COLUMNS, &url, "the table columns")
            .await?;
        parse_table_columns(v).map_err(|detail| ConvexError::InvalidResponse {
            endpoint: TABLE_COLUMNS,
            detail,
        })
    }

    async fn head(&self) -> anyhow::Result<SnapshotTs> {
        // A snapshot page of no table reads nothing and answers the head it would read at.
        let body = walk_body(&Selection::new(), &[], ValueFormat::Json);
        let mut sink = NoValues;
        let done = self
            .page(
                Elements::Documents,
                LIST_SNAPSHOT,
                "reading the head timestamp",
                body.to_string(),
                None,
                &mut sink,
            )
            .await?;
        Ok(SnapshotTs(field(LIST_SNAPSHOT, &done.fields, "snapshot")?))
    }

    async fn list_snapshot<S: PageSink>(
        &self,
        selection: &Selection,
        snapshot: SnapshotTs,
        cursor: Option<&SnapshotCursor>,
        sink: &mut S,
    ) -> anyhow::Result<SnapshotPageEnd> {
        let body = snapshot_body(
            selection,
            snapshot,
            cursor.map(|c| c.0.as_str()),
            self.format,
        );
        let what = format!("list_snapshot of {selection}");
        let next = NextPage::Snapshot {
            selection: selection.clone(),
            snapshot,
            format: self.format,
        };
        let PageDone { fields, values, .. } = self
            .page(
                Elements::Documents,
                LIST_SNAPSHOT,
                &what,
                body.to_string(),
                Some(next),
                sink,
            )
            .await?;
        Ok(SnapshotPageEnd {
            snapshot: SnapshotTs(field(LIST_SNAPSHOT, &fields, "snapshot")?),
            cursor: field::<Option<String>>(LIST_SNAPSHOT, &fields, "cursor")?.map(SnapshotCursor),
            has_more: field(LIST_SNAPSHOT, &fields, "hasMore")?,
            values,
        })
    }

    async fn document_deltas<S: PageSink>(
        &self,
        selection: &Selection,
        cursor: DeltaCursor,
        sink: &mut S,
    ) -> anyhow::Result<DeltasPageEnd> {
        let body = walk_body(
            selection,
            &[("cursor", serde_json::Value::from(cursor.0))],
            self.format,
        );
        let what = format!("document_deltas of {selection}");
        let PageDone { fields, values, .. } = self
            .page(
                Elements::Documents,
                DOCUMENT_DELTAS,
                &what,
                body.to_string(),
                None,
                sink,
            )
            .await?;
        Ok(DeltasPageEnd {
            cursor: DeltaCursor(field(DOCUMENT_DELTAS, &fields, "cursor")?),
            has_more: field(DOCUMENT_DELTAS, &fields, "hasMore")?,
            values,
        })
    }
}

/// `list_active_syncs` pages read looking for one sync (100 syncs each, most recently updated
/// first: a sync being read is on the first).
const ACTIVE_SYNC_PAGES: usize = 5;
/// A `list_active_syncs` page of 100 syncs is a few dozen KiB.
const MAX_ACTIVE_SYNCS_BODY_BYTES: usize = 4 * 1024 * 1024;

impl DataSyncApi for HttpConvex {
    async fn data_sync(
        &self,
        selection: &Selection,
        cursor: Option<&DataSyncCursor>,
    ) -> Result<SyncPage, ConvexError> {
        let mut sink = Collect(Vec::new());
        let end = self
            .data_sync_page(selection, cursor, &mut sink)
            .await
            .map_err(|e| {
                // The sink cannot fail: every error is Convex's.
                e.downcast::<ConvexError>()
                    .unwrap_or_else(|e| ConvexError::InvalidResponse {
                        endpoint: data_sync::DATA_SYNC,
                        detail: e.to_string(),
                    })
            })?;
        Ok(SyncPage {
            status: end.status,
            truncates: end.truncates,
            values: sink.0,
            sync_id: end.sync_id,
            next: end.next,
        })
    }

    async fn data_sync_page<S: PageSink>(
        &self,
        selection: &Selection,
        cursor: Option<&DataSyncCursor>,
        sink: &mut S,
    ) -> anyhow::Result<SyncPageEnd> {
        let endpoint = data_sync::DATA_SYNC;
        let body = data_sync::sync_body(selection, cursor);
        let what = format!("the data sync page of {selection}");
        let next = NextPage::DataSync {
            selection: selection.clone(),
        };
        let done = self
            .page(
                Elements::SyncEnvelopes,
                endpoint,
                &what,
                body,
                Some(next),
                sink,
            )
            .await?;
        let mut end = data_sync::page_end(&done.fields, done.values)
            .map_err(|detail| ConvexError::InvalidResponse { endpoint, detail })?;
        end.unrepeated = done.unrepeated;
        Ok(end)
    }

    async fn cursor_from_deltas(
        &self,
        selection: &Selection,
        cursor: DeltaCursor,
    ) -> Result<DataSyncCursor, ConvexError> {
        let endpoint = data_sync::CURSOR_FROM_DELTAS;
        let url = self.url(endpoint, &[]);
        let body = data_sync::from_deltas_body(selection, cursor);
        let what = format!("the conversion of position {cursor} of {selection}");
        let answer = self
            .whole(
                &self.retry,
                endpoint,
                &url,
                Some(&body),
                MAX_ERROR_BODY_BYTES,
                &what,
            )
            .await?;
        data_sync::parse_converted(&answer)
            .map_err(|detail| ConvexError::InvalidResponse { endpoint, detail })
    }

    async fn active_sync(&self, sync_id: &str) -> Result<Option<ActiveSync>, ConvexError> {
        let endpoint = data_sync::LIST_ACTIVE_SYNCS;
        if sync_id.is_empty() {
            return Ok(None);
        }
        let what = format!("the progress of data sync {sync_id}");
        // Progress is only shown: a few quick attempts, not a read's patience.
        let policy = RetryPolicy::interactive();
        let mut cursor: Option<String> = None;
        for _ in 0..ACTIVE_SYNC_PAGES {
            let mut query = vec![("limit", "100")];
            if let Some(c) = &cursor {
                query.push(("cursor", c));
            }
            let url = self.url(endpoint, &query);
            let body = self
                .whole(
                    &policy,
                    endpoint,
                    &url,
                    None,
                    MAX_ACTIVE_SYNCS_BODY_BYTES,
                    &what,
                )
                .await?;
            let page = data_sync::parse_active_syncs(&body, sync_id)
                .map_err(|detail| ConvexError::InvalidResponse { endpoint, detail })?;
            if page.found.is_some() {
                return Ok(page.found);
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(None),
            }
        }
        Ok(None)
    }
}

/// The sink of a page held whole.
struct Collect(Vec<SyncValue>);

impl PageSink for Collect {
    fn value(&mut self, raw: &[u8], meta: &ValueMeta<'_>) -> anyhow::Result<()> {
        self.0.push(SyncValue {
            table: TableRef {
                component: meta.component.to_string(),
                table: meta.table.to_string(),
            },
            id: meta.id.to_string(),
            ts: meta.ts,
            deleted: meta.deleted.unwrap_or(false),
            raw: raw.to_vec(),
        });
        Ok(())
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// The sink of a page that must hold no values (the head probe): any value is Convex's
/// mistake, reported rather than dropped.
struct NoValues;

impl PageSink for NoValues {
    fn value(&mut self, _raw: &[u8], meta: &ValueMeta<'_>) -> anyhow::Result<()> {
        Err(ConvexError::InvalidResponse {
            endpoint: LIST_SNAPSHOT,
            detail: format!(
                "a snapshot page of no table returned a document of table {}",
                meta.table
            ),
        }
        .into())
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TableRef;

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let p = RetryPolicy::default();
        for attempt in 1..10 {
            let d = p.delay(attempt, None);
            let exp = (p.base_delay * (1 << (attempt - 1))).min(p.max_delay);
            assert!(d >= exp / 2 && d <= exp, "attempt {attempt}: {d:?}");
        }
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(7200))),
            p.max_retry_after
        );
    }

    /// Wherever the plain reading of the metadata gives a value, `from_raw` gives the same;
    /// and it does give one for the usual shape.
    #[test]
    fn plain_metadata_agrees_with_from_raw() {
        let mut rng = fastrand::Rng::with_seed(0x3e7a);
        let strings: [&str; 12] = [
            "\"users\"",
            "\"\"",
            "\"",
            "\"a\\\"b\"",
            "\"\\u0061\"",
            " \"t\" ",
            "\"é\"",
            "\"✓\"",
            "users",
            "\"j57\"",
            "null",
            "\"a/b\"",
        ];
        let numbers: [&str; 14] = [
            "9223372036854775808",
            "-9999999999999999999",
            "0",
            "-0",
            "17",
            "-5",
            "1770335566197682000",
            "999999999999999999",
            "9223372036854775807",
            "-9223372036854775808",
            "1.5",
            " 7",
            "+5",
            "-",
        ];
        let bools: [&str; 5] = ["true", "false", " true", "1", "null"];
        let mut plain = 0;
        for _ in 0..20_000 {
            let pick = |rng: &mut fastrand::Rng, pool: &[&'static str]| {
                (rng.u8(..8) != 0).then(|| pool[rng.usize(..pool.len())])
            };
            let mut raw = RawMeta {
                table: pick(&mut rng, &strings),
                component: pick(&mut rng, &strings),
                ts: pick(&mut rng, &numbers),
                deleted: pick(&mut rng, &bools),
                id: pick(&mut rng, &strings),
                value: None,
                plain_names: false,
                members: None,
            };
            // What the fast path promises, when it is true.
            raw.plain_names = rng.bool()
                && [raw.table, raw.component, raw.id]
                    .iter()
                    .flatten()
                    .all(|s| !s.contains('\\'));
            if let Some(m) = plain_meta(&raw) {
                plain += 1;
                assert_eq!(ValueMeta::from_raw(raw), Ok(m), "{raw:?}");
            }
        }
        assert!(plain > 100, "{plain}");
        let usual = RawMeta {
            table: Some("\"users\""),
            component: Some("\"\""),
            ts: Some("1770335566197682000"),
            deleted: None,
            id: Some("\"j57\""),
            value: None,
            plain_names: true,
            members: None,
        };
        assert_eq!(plain_meta(&usual), ValueMeta::from_raw(usual).ok());
        assert!(plain_meta(&usual).is_some());
    }

    #[test]
    fn a_data_sync_page_is_requested_ahead_unless_it_is_up_to_date() {
        let selection = Selection::one(TableRef::root("users"), None);
        let next = NextPage::DataSync {
            selection: selection.clone(),
        };
        let want = data_sync::sync_body(&selection, Some(&DataSyncCursor("01ab".into())));
        let page = |status: &str| {
            format!(
                r#"{{"status":{status},"truncates":[{{"component":"","table":"users"}}],"values":[{{"component":"","table":"users","ts":1,"deleted":false,"value":{{"_id":"a","pagination":{{"nextCursor":"no"}}}}}}],"syncId":"airbyte-1","pagination":{{"hasMore":true,"nextCursor":"01ab"}}}}"#
            )
        };
        for (status, ahead) in [
            (r#"{"type":"snapshotting"}"#, true),
            (r#"{"type":"stale","snapshotTs":17}"#, true),
            (r#"{"type":"upToDate","snapshotTs":17}"#, false),
            (r#"{"type":"later"}"#, false),
        ] {
            let body = page(status);
            let b = body.as_bytes();
            let got = next.body_after(&b[..b.len().min(HEAD_BYTES)], b);
            assert_eq!(got.as_deref(), ahead.then_some(want.as_str()), "{status}");
        }
        // `status` after `values`, whitespace: still found; a cut head or an odd tail: no guess.
        let body = r#"{ "values" : [ ] , "pagination" : { "nextCursor" : "01ab" } , "status" : { "type" : "stale" , "snapshotTs" : 1 } }"#;
        assert_eq!(
            next.body_after(body.as_bytes(), body.as_bytes()).as_deref(),
            Some(want.as_str())
        );
        let body = page(r#"{"type":"snapshotting"}"#);
        assert_eq!(
            next.body_after(&body.as_bytes()[..12], body.as_bytes()),
            None
        );
        assert_eq!(
            next.body_after(body.as_bytes(), &body.as_bytes()[..40]),
            None
        );
        let empty = r#"{"status":{"type":"stale","snapshotTs":1},"values":[],"pagination":{"nextCursor":""}}"#;
        assert_eq!(next.body_after(empty.as_bytes(), empty.as_bytes()), None);
    }

    /// A retried page skips what it delivered, and counts what its last attempt did not send.
    #[test]
    fn retried_pages_skip_delivered_values_and_count_unrepeated_ones() {
        let meta = |id: &'static str, ts: i64| ValueMeta {
            table: "t".into(),
            component: "".into(),
            id: id.into(),
            ts,
            deleted: Some(false),
            members: None,
        };
        let mut d = Delivered::default();
        for (id, ts) in [("a", 1), ("b", 1), ("c", 1), ("d", 1)] {
            assert!(d.take(&meta(id, ts)));
        }
        assert_eq!(d.unrepeated(), []);
        d.retrying();
        // The retry: `a` again, `b` at a later revision, `e` new; `c` and `d` not at all.
        assert!(!d.take(&meta("a", 1)));
        assert!(d.take(&meta("b", 2)));
        assert!(d.take(&meta("e", 1)));
        let ids = |d: &Delivered| -> Vec<(String, i64)> {
            d.unrepeated().into_iter().map(|u| (u.id, u.ts)).collect()
        };
        assert_eq!(d.count(), 6);
        assert_eq!(ids(&d), [("c".into(), 1), ("d".into(), 1)]);
        assert_eq!(d.unrepeated()[0].table, TableRef::root("t"));
        d.retrying();
        // `b` at another revision counts as sent; `d` is left out.
        for (id, ts) in [("a", 1), ("b", 2), ("c", 1), ("e", 1)] {
            assert!(!d.take(&meta(id, ts)));
        }
        assert_eq!((d.count(), ids(&d)), (6, vec![("d".into(), 1)]));
    }

    #[derive(Default)]
    struct Heard(Mutex<Vec<String>>);

    impl Listener for Heard {
        fn retrying<'a>(
            &'a self,
            r: Retrying<'a>,
        ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
            let line = format!(
                "retrying {} {:?} {:?}",
                r.rate_limited,
                r.retry_after,
                r.error.status()
            );
            self.0.lock().unwrap().push(line);
            Box::pin(std::future::ready(()))
        }
        fn recovered<'a>(&'a self, what: &'a str) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
            self.0.lock().unwrap().push(format!("recovered {what}"));
            Box::pin(std::future::ready(()))
        }
        fn gone(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
            Box::pin(std::future::pending())
        }
    }

    struct Values(Vec<(String, String, i64, Option<bool>, bool)>);

    impl PageSink for Values {
        fn value(&mut self, raw: &[u8], meta: &ValueMeta<'_>) -> anyhow::Result<()> {
            let raw = String::from_utf8(raw.to_vec())?;
            self.0.push((
                meta.id.to_string(),
                raw,
                meta.ts,
                meta.deleted,
                meta.members.is_some(),
            ));
            Ok(())
        }
        async fn flush(&mut self) -> anyhow::Result<()> {
            Ok(())
        }
    }

    fn data_sync_requests(dep: &convex_emulator::Deployment) -> u64 {
        dep.requests()
            .by_endpoint
            .get("data_sync")
            .copied()
            .unwrap_or(0)
    }

    /// Against the emulator: a sync's pages stream to the sink, each next page is requested
    /// while the one before is still being handed out (never after `upToDate`), a page cut
    /// off midway is retried without a value twice, and a rate limit reaches the listener.
    #[tokio::test]
    async fn a_data_sync_streams_reads_ahead_and_retries_against_the_emulator() {
        use convex_emulator::{EmulatorServer, FaultRule};
        let emu = EmulatorServer::start(convex_emulator::Config::default()).unwrap();
        let dep = emu.deployment().clone();
        dep.transaction(|tx| {
            for i in 0..250 {
                tx.insert("", "users", serde_json::json!({"n": i, "s": "x".repeat(i)}))?;
            }
            Ok(())
        })
        .unwrap();
        dep.update_settings(|s| s.data_sync_page_entries = 40);
        let config = crate::settings::tests::settings_for(emu.url(), emu.access_key());
        let heard = Arc::new(Heard::default());
        let client = HttpConvex::new(&config, Some(heard.clone() as Arc<dyn Listener>))
            .unwrap()
            .with_value_format(ValueFormat::ExportJson)
            .with_retry_policy(RetryPolicy {
                base_delay: Duration::from_millis(10),
                max_retry_after: Duration::from_millis(20),
                ..RetryPolicy::default()
            });
        let rule = |r: serde_json::Value| serde_json::from_value::<FaultRule>(r).unwrap();
        // The third request (a page read ahead) is cut off halfway; the fifth is refused.
        dep.add_fault(rule(
            serde_json::json!({"endpoint":"data_sync","kind":"truncate","after":2,"times":1}),
        ))
        .unwrap();
        dep.add_fault(rule(serde_json::json!({"endpoint":"data_sync","kind":"rate_limit","retry_after_secs":7,"after":4,"times":1})))
            .unwrap();
        let selection = Selection::one(TableRef::root("users"), None);
        let mut sink = Values(Vec::new());
        let mut cursor = None;
        let mut pages = 0;
        let mut unrepeated = Vec::new();
        loop {
            let end = client
                .data_sync_page(&selection, cursor.as_ref(), &mut sink)
                .await
                .unwrap();
            pages += 1;
            unrepeated.extend(end.unrepeated);
            assert!(end.sync_id.starts_with("airbyte-"), "{}", end.sync_id);
            if pages == 1 {
                assert_eq!(end.truncates, vec![TableRef::root("users")]);
            }
            if matches!(end.status, data_sync::SyncStatus::UpToDate(_)) {
                break;
            }
            // The next page is asked for without waiting for the caller: one request per
            // page read and per retry, and one more.
            cursor = Some(end.next);
            let retries = || {
                let heard = heard.0.lock().unwrap();
                heard.iter().filter(|h| h.starts_with("retrying")).count() as u64
            };
            let mut waited = 0;
            while data_sync_requests(&dep) < pages + retries() + 1 && waited < 300 {
                tokio::time::sleep(Duration::from_millis(10)).await;
                waited += 1;
            }
            assert_eq!(
                data_sync_requests(&dep),
                pages + retries() + 1,
                "page {pages}: no request ahead"
            );
            assert!(pages < 50);
        }
        // Nothing is asked for after `upToDate`.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(data_sync_requests(&dep), pages + 2);
        assert_eq!(unrepeated, [], "a by-id page repeats exactly");
        let mut ids: Vec<&str> = sink.0.iter().map(|v| v.0.as_str()).collect();
        let all = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!((ids.len(), all), (250, 250), "each document exactly once");
        for (id, raw, ts, deleted, members) in &sink.0 {
            let v: serde_json::Value = serde_json::from_str(raw).unwrap();
            assert_eq!(v["_id"], id.as_str());
            assert_eq!(v["_table"], "users");
            assert_eq!(v["_ts"].as_i64(), Some(*ts));
            assert_eq!(*deleted, Some(false));
            assert!(members, "export_json values come with their members");
        }
        let heard = heard.0.lock().unwrap().clone();
        assert_eq!(heard.len(), 4, "{heard:?}");
        assert!(heard[0].starts_with("retrying false None"), "{heard:?}");
        assert!(
            heard[1].starts_with("recovered the data sync page of"),
            "{heard:?}"
        );
        assert_eq!(heard[2], "retrying true Some(7s) Some(429)");
        assert!(heard[3].starts_with("recovered"), "{heard:?}");
    }

    #[test]
    fn snippets_are_one_short_line() {
        let s = snippet(b"<html>\n  <body>502 Bad Gateway</body>\n</html>");
        assert_eq!(s, "<html> <body>502 Bad Gateway</body> </html>");
        assert_eq!(snippet(&[b'x'; 10_000]).chars().count(), 301);
    }
}
