//! [`DataSyncApi`] over HTTP: a data sync page streamed to the sink (or held whole), a
//! `document_deltas` position converted to a data sync cursor, and a sync's progress looked
//! up in `list_active_syncs`. What the requests say and the answers mean is
//! `crate::data_sync`'s; this module sends them. Apart from the streaming export API, with
//! which it shares nothing but the rest of the client.

use super::pages::Elements;
use super::read_ahead::NextPage;
use super::retry::RetryPolicy;
use super::{HttpConvex, MAX_ERROR_BODY_BYTES};
use crate::data_sync::{
    self, ActiveSync, DataSyncApi, DataSyncCursor, SyncPage, SyncPageEnd, SyncValue,
};
use crate::{ConvexError, DeltaCursor, PageSink, Selection, TableRef, ValueMeta};

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
            raw: meta.whole(raw).into_owned(),
        });
        Ok(())
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}
