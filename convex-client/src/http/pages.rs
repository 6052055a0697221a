//! One page of a walk (`list_snapshot`, `document_deltas`) or of a data sync: its body
//! parsed as it arrives, its values handed to the sink one by one, the page retried as a whole
//! as the policy allows, and a retry skipping what an earlier attempt delivered. Apart because
//! both APIs read their pages this way: it joins the page read ahead, the dedup of retried
//! values and the error mapping, which do not know of each other.

use super::delivered::{plain_meta, Delivered};
use super::errors::{cancelled, syntax, AttemptError};
use super::read_ahead::{permits_for, Item, NextPage, HOLD_BYTES};
use super::{Gone, HttpConvex};
use crate::data_sync::{Converter, Unrepeated};
use crate::encoding::ValueFormat;
use crate::page::{FeedError, PageParser};
use crate::{ConvexError, NetworkFailure, PageSink, ValueMeta};

/// What the elements of a page's `values` are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Elements {
    /// Documents with their metadata members (`list_snapshot`, `document_deltas`).
    Documents,
    /// Data Sync envelopes, each turned into the value `document_deltas` would send.
    SyncEnvelopes,
}

/// A page read to its end.
pub(super) struct PageDone {
    /// The members other than `values`, raw.
    pub(super) fields: Vec<(String, Vec<u8>)>,
    /// How many values the sink received.
    pub(super) values: usize,
    /// See [`Delivered::unrepeated`].
    pub(super) unrepeated: Vec<Unrepeated>,
}

impl HttpConvex {
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
    pub(super) async fn page<S: PageSink>(
        &self,
        kind: Elements,
        endpoint: &'static str,
        what: &str,
        body: String,
        next: Option<NextPage>,
        sink: &mut S,
    ) -> anyhow::Result<PageDone> {
        let url = self.url(endpoint, &[]);
        let mut delivered = self
            .delivered
            .lock()
            .map(|mut kept| std::mem::take(&mut *kept))
            .unwrap_or_default();
        let result = self
            .page_with(
                kind,
                endpoint,
                what,
                &url,
                &body,
                next,
                sink,
                &mut delivered,
            )
            .await;
        if let Ok(mut kept) = self.delivered.lock() {
            *kept = delivered.emptied();
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn page_with<S: PageSink>(
        &self,
        kind: Elements,
        endpoint: &'static str,
        what: &str,
        url: &str,
        body: &str,
        next: Option<NextPage>,
        sink: &mut S,
        delivered: &mut Delivered,
    ) -> anyhow::Result<PageDone> {
        let mut attempt = 1;
        loop {
            let result = self
                .attempt_page(kind, endpoint, url, body, next.as_ref(), sink, delivered)
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
}
