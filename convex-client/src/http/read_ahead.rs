//! The page being read and the one requested after it: each page request is sent and its
//! body read by a task of its own into a queue bounded in bytes, and the next page of a walk
//! or data sync is requested as soon as this one's body has arrived (see [`Ahead`]); with
//! them, the pool of chunk buffers the reader and the parser pass back and forth. Apart from
//! the parsing of a page because it runs beside it, in another task; it depends only on the
//! error mapping.

use std::sync::{Arc, Mutex, Weak};

use serde::Deserialize;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::errors::AttemptError;
use super::{snapshot_body, walk_body, HttpConvex};
use crate::data_sync::{self, DataSyncCursor};
use crate::encoding::ValueFormat;
use crate::page::{leading_fields, trailing_fields};
use crate::{Selection, SnapshotTs};

/// A page's body is read ahead of the parser, up to this many bytes: so the whole body of a
/// usual page (1,024 documents of a few hundred bytes) has arrived while its first documents
/// are being turned into records, and the next page can be asked for then.
const AHEAD_BYTES: usize = 3 * 1024 * 1024;
/// The most of the budget one chunk takes (network chunks are far smaller).
const CHUNK_PERMITS: usize = 1024 * 1024;
/// A data sync page's values wait until its body has ended or this much of it has arrived:
/// Convex recomputes a retried page (see `data_sync`), so values delivered by an attempt that
/// then fails may not be in the answer that completes; held, they never went out. Less than
/// the budget by a chunk, so the reader never waits on it meanwhile.
pub(super) const HOLD_BYTES: usize = AHEAD_BYTES - CHUNK_PERMITS;

/// The bytes at the end of a body looked at by [`trailing_fields`]: the fields are small (a
/// cursor is far shorter than this); a page whose fields do not fit is simply not requested
/// ahead.
const TAIL_BYTES: usize = 8 * 1024;
/// The bytes at the start of a body looked at by [`leading_fields`] (a data sync page's
/// `status` comes first).
const HEAD_BYTES: usize = 4 * 1024;

/// What the reader of a page hands the parser.
pub(super) enum Item {
    Chunk(Vec<u8>),
    End,
    Failed(AttemptError),
}

/// One page request, sent and read by its own task into a queue bounded in bytes.
///
/// Pipelining: the connector is CPU bound on a full refresh while Convex computes each page,
/// so the next page of a snapshot walk, a deltas walk or a data sync is requested as soon as
/// the body of the page being processed has arrived (its cursor is then in the body's last
/// bytes, see [`NextPage::body_after`]), while that page's values are still being handed out.
/// It is used only for exactly the request the walk then makes; otherwise it is dropped (its
/// task aborted). At most one page is requested ahead of the one being processed: the next is
/// requested only once this one is `taken`.
pub(super) struct Ahead {
    endpoint: &'static str,
    body: String,
    pub(super) rx: mpsc::UnboundedReceiver<Item>,
    pub(super) budget: Arc<Semaphore>,
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
pub(super) enum NextPage {
    Snapshot {
        selection: Selection,
        snapshot: SnapshotTs,
        format: ValueFormat,
    },
    /// A data sync goes on after every page but an `upToDate` one, where its caller stops
    /// (and a page costs the server).
    DataSync { selection: Selection },
    /// A `document_deltas` walk goes on while a page says `hasMore`: its pages are small (128
    /// log rows), so without this each one would cost a round trip the engine waits through.
    Deltas {
        selection: Selection,
        format: ValueFormat,
    },
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
                Some(snapshot_body(selection, *snapshot, Some(&cursor), *format))
            }
            NextPage::Deltas { selection, format } => {
                if !serde_json::from_slice::<bool>(find(br#""hasMore""#)?).ok()? {
                    return None;
                }
                let cursor: i64 = serde_json::from_slice(find(br#""cursor""#)?).ok()?;
                Some(walk_body(selection, &[("cursor", cursor.into())], *format))
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

/// A chunk takes this much of a page's read-ahead budget (at most [`CHUNK_PERMITS`]).
pub(super) fn permits_for(len: usize) -> u32 {
    len.min(CHUNK_PERMITS) as u32
}

impl HttpConvex {
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
            buffers: self.buffers.clone(),
            format: self.format,
            delivered: Mutex::default(),
        }
    }

    /// The page for this request: the one read ahead if it is this request, else a new one.
    pub(super) fn start_page(
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

    /// Keeps a chunk buffer the parser is done with (see `BufferPool::give`).
    pub(super) fn recycle(&self, buf: Vec<u8>) {
        self.buffers.give(buf);
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
            let mut buf = self.buffers.take(chunk.len());
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TableRef;

    /// Bodies are written as text; they are exactly the JSON of their members in order,
    /// names and cursors that need escaping included.
    #[test]
    fn a_walk_body_is_the_json_object_of_its_members() {
        let mut selection = Selection::one(TableRef::root("users"), None);
        selection.add(
            TableRef {
                component: "comp\"onent".into(),
                table: "t\u{e9}ble".into(),
            },
            Some(vec!["col\\umn".into(), "\n".into()]),
        );
        let object = |members: serde_json::Value| {
            let mut o = serde_json::Map::new();
            o.insert("selection".into(), selection.to_json());
            for (k, v) in members.as_object().unwrap() {
                o.insert(k.clone(), v.clone());
            }
            o.insert("format".into(), "export_json".into());
            serde_json::Value::Object(o).to_string()
        };
        assert_eq!(
            walk_body(&selection, &[], ValueFormat::ExportJson),
            object(serde_json::json!({}))
        );
        assert_eq!(
            snapshot_body(
                &selection,
                SnapshotTs(1770335566197682922),
                Some("a\"b\\c\u{1}"),
                ValueFormat::ExportJson
            ),
            object(
                serde_json::json!({"snapshot": 1770335566197682922_i64, "cursor": "a\"b\\c\u{1}"})
            )
        );
        assert_eq!(
            walk_body(
                &selection,
                &[("cursor", (-5).into())],
                ValueFormat::ExportJson
            ),
            object(serde_json::json!({"cursor": -5}))
        );
        let cursor = DataSyncCursor("01\"ab".into());
        let mut o = serde_json::Map::new();
        o.insert("cursor".into(), cursor.0.clone().into());
        o.insert("selection".into(), selection.to_json());
        assert_eq!(
            data_sync::sync_body(&selection, Some(&cursor)),
            serde_json::Value::Object(o).to_string()
        );
        assert_eq!(
            data_sync::sync_body(&selection, None),
            serde_json::json!({"selection": selection.to_json()}).to_string()
        );
    }

    #[test]
    fn a_deltas_page_is_requested_ahead_while_it_says_there_is_more() {
        let selection = Selection::one(TableRef::root("users"), None);
        let next = NextPage::Deltas {
            selection: selection.clone(),
            format: ValueFormat::ExportJson,
        };
        let want = walk_body(
            &selection,
            &[("cursor", 17.into())],
            ValueFormat::ExportJson,
        );
        let page = |more: bool| format!(r#"{{"values":[],"cursor":17,"hasMore":{more}}}"#);
        let body = page(true);
        assert_eq!(
            next.body_after(body.as_bytes(), body.as_bytes()),
            Some(want)
        );
        let body = page(false);
        assert_eq!(next.body_after(body.as_bytes(), body.as_bytes()), None);
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
}
