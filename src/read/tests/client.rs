//! The client the engine tests read through: the real [`HttpConvex`] talking HTTP to the
//! in-process emulator, wrapped to record what the engine asked (`calls`, in the engine's terms:
//! endpoint, selection, snapshot, cursor; the emulator's own request log has no bodies, where
//! the selection and cursors travel) and to run the test's choreography before each data sync
//! page (`before_data_sync`: writes and clock jumps while a sync reads). Every answer is the
//! emulator's: broken servers are its fault rules (`selection_ignored`, `cursor`).

use std::sync::Mutex;

use convex::data_sync::{ActiveSync, DataSyncApi, DataSyncCursor, SyncPage, SyncPageEnd};
use convex::encoding::ValueFormat;
use convex::http::{HttpConvex, RetryPolicy};
use convex::{
    ConvexApi, ConvexError, DeltaCursor, DeltasPageEnd, DeploymentSchemas, PageSink, Selection,
    SnapshotCursor, SnapshotPageEnd, SnapshotTs,
};
use convex_emulator::{Deployment, EmulatorServer};

/// Runs before each data sync page the engine asks for, with the page's selection.
pub type Hook = Box<dyn FnMut(&Deployment, &Selection) + Send>;

pub struct Client {
    inner: HttpConvex,
    dep: Deployment,
    calls: Mutex<Vec<String>>,
    before_data_sync: Mutex<Option<Hook>>,
    /// The cursor of the last data sync page answered.
    last_sync_cursor: Mutex<Option<String>>,
}

impl Client {
    /// The connector's client on `emu` with the deploy key `key`, as `read` builds it from a
    /// config with typed columns, but without retries: an injected fault fails the one call it
    /// hits.
    pub fn new(emu: &EmulatorServer, key: &str) -> Client {
        let config = crate::config::parse_config(&serde_json::json!({
            "deployment_url": emu.url(),
            "access_key": key,
        }))
        .expect("the emulator's config parses");
        let inner = HttpConvex::new(&config.client_settings(), None)
            .expect("a client")
            .with_value_format(ValueFormat::ExportJson)
            .with_retry_policy(RetryPolicy {
                max_attempts: 1,
                ..RetryPolicy::default()
            });
        Client {
            inner,
            dep: emu.deployment().clone(),
            calls: Mutex::default(),
            before_data_sync: Mutex::default(),
            last_sync_cursor: Mutex::default(),
        }
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    pub fn clear_calls(&self) {
        self.calls.lock().unwrap().clear();
    }

    pub fn last_sync_cursor(&self) -> Option<String> {
        self.last_sync_cursor.lock().unwrap().clone()
    }

    pub fn set_before_data_sync(&self, hook: Option<Hook>) {
        *self.before_data_sync.lock().unwrap() = hook;
    }

    fn call(&self, text: String) {
        self.calls.lock().unwrap().push(text);
    }

    /// The engine syncs one table per data sync.
    fn assert_one_table(&self, selection: &Selection) {
        let tables = self.dep.tables();
        let selected = tables
            .iter()
            .filter(|t| selection.contains(&t.component, &t.table));
        assert_eq!(selected.count(), 1, "one table per data sync: {selection}");
    }

    fn before_page(&self, selection: &Selection) {
        self.assert_one_table(selection);
        if let Some(hook) = self.before_data_sync.lock().unwrap().as_mut() {
            hook(&self.dep, selection);
        }
    }
}

impl ConvexApi for Client {
    async fn json_schemas(&self) -> Result<DeploymentSchemas, ConvexError> {
        self.call("json_schemas".into());
        self.inner.json_schemas().await
    }

    async fn table_columns(&self) -> Result<DeploymentSchemas, ConvexError> {
        self.call("table_columns".into());
        self.inner.table_columns().await
    }

    async fn head(&self) -> anyhow::Result<SnapshotTs> {
        self.call("head".into());
        self.inner.head().await
    }

    async fn list_snapshot<S: PageSink>(
        &self,
        selection: &Selection,
        snapshot: SnapshotTs,
        cursor: Option<&SnapshotCursor>,
        sink: &mut S,
    ) -> anyhow::Result<SnapshotPageEnd> {
        self.call(format!(
            "list_snapshot {selection} {} {:?}",
            snapshot.0,
            cursor.map(|c| c.0.clone())
        ));
        self.inner
            .list_snapshot(selection, snapshot, cursor, sink)
            .await
    }

    async fn document_deltas<S: PageSink>(
        &self,
        selection: &Selection,
        cursor: DeltaCursor,
        sink: &mut S,
    ) -> anyhow::Result<DeltasPageEnd> {
        self.call(format!("document_deltas {selection} {}", cursor.0));
        self.inner.document_deltas(selection, cursor, sink).await
    }
}

impl DataSyncApi for Client {
    async fn data_sync(
        &self,
        selection: &Selection,
        cursor: Option<&DataSyncCursor>,
    ) -> Result<SyncPage, ConvexError> {
        self.call(format!("data_sync {selection} {}", cursor.is_some()));
        self.before_page(selection);
        let page = self.inner.data_sync(selection, cursor).await?;
        *self.last_sync_cursor.lock().unwrap() = Some(page.next.0.clone());
        Ok(page)
    }

    async fn data_sync_page<S: PageSink>(
        &self,
        selection: &Selection,
        cursor: Option<&DataSyncCursor>,
        sink: &mut S,
    ) -> anyhow::Result<SyncPageEnd> {
        self.call(format!("data_sync {selection} {}", cursor.is_some()));
        self.before_page(selection);
        let end = self.inner.data_sync_page(selection, cursor, sink).await?;
        *self.last_sync_cursor.lock().unwrap() = Some(end.next.0.clone());
        Ok(end)
    }

    async fn cursor_from_deltas(
        &self,
        selection: &Selection,
        cursor: DeltaCursor,
    ) -> Result<DataSyncCursor, ConvexError> {
        self.call(format!("cursor_from_deltas {selection} {}", cursor.0));
        self.assert_one_table(selection);
        self.inner.cursor_from_deltas(selection, cursor).await
    }

    async fn active_sync(&self, sync_id: &str) -> Result<Option<ActiveSync>, ConvexError> {
        self.call("active_sync".into());
        self.inner.active_sync(sync_id).await
    }
}
