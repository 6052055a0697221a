//! The cloneable [`Deployment`] handle shared by the HTTP server, the `/_emulator/` control
//! API and Rust tests.
//!
//! It keeps the deployment's data apart from the state of serving it. The data is one
//! [`Store`] (components, tables, revisions, the document log, schemas and the clock) behind
//! one lock, so a commit is atomic for every reader. Everything else lives in its own type,
//! from its own module, with its own lock: [`Settings`], the fault rules ([`Faults`]), the
//! request counters ([`RequestCounters`]), list_snapshot's cached iterator
//! ([`IteratorCache`]), the data sync secret and progress rows ([`SyncState`]), and the
//! shutdown signal ([`Lifecycle`]). A request that only counts or checks a fault never
//! waits for a commit.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use crate::data_sync::SyncState;
use crate::error::Error;
use crate::export;
use crate::faults::{Decision, FaultRule, Faults};
use crate::lifecycle::Lifecycle;
use crate::locks::{lock, read, write};
use crate::requests::{RequestCounters, RequestRecord, RequestStats};
use crate::settings::Settings;
use crate::snapshot_cost::IteratorCache;
use crate::store::{Store, TableInfo, Transaction};
use crate::value::{Format, IntoFields};

struct Inner {
    /// The data.
    store: RwLock<Store>,
    settings: RwLock<Settings>,
    faults: Mutex<Faults>,
    requests: RequestCounters,
    snapshot_iterator: IteratorCache,
    data_sync: SyncState,
    access_key: String,
    lifecycle: Lifecycle,
}

/// A handle on the emulated deployment; clones share the same state.
#[derive(Clone)]
pub struct Deployment {
    inner: Arc<Inner>,
}

impl Deployment {
    /// An empty deployment (root component only) whose randomness derives from `seed`.
    pub fn new(seed: u64, access_key: impl Into<String>) -> Deployment {
        Deployment {
            inner: Arc::new(Inner {
                store: RwLock::new(Store::new(seed)),
                settings: RwLock::new(Settings::default()),
                faults: Mutex::new(Faults::new(seed)),
                requests: RequestCounters::default(),
                snapshot_iterator: IteratorCache::default(),
                data_sync: SyncState::default(),
                access_key: access_key.into(),
                lifecycle: Lifecycle::default(),
            }),
        }
    }

    pub fn access_key(&self) -> &str {
        &self.inner.access_key
    }

    // ---- The data ----

    pub(crate) fn store(&self) -> RwLockReadGuard<'_, Store> {
        read(&self.inner.store)
    }

    pub(crate) fn store_mut(&self) -> RwLockWriteGuard<'_, Store> {
        write(&self.inner.store)
    }

    /// Current head timestamp (i64 ns).
    pub fn head(&self) -> i64 {
        self.store().head
    }

    /// Moves head forward without a commit, like Convex's periodic max-repeatable-timestamp
    /// bumps; used to age snapshots and cursors past their limits.
    pub fn advance_clock(&self, by: Duration) -> i64 {
        self.store_mut().advance_clock(by)
    }

    /// Runs `f` as one transaction: all its writes commit at one new timestamp, or none do
    /// if it returns an error. Returns the commit timestamp (head unchanged if nothing was
    /// written).
    pub fn transaction<F>(&self, f: F) -> Result<i64, Error>
    where
        F: FnOnce(&mut Transaction<'_>) -> Result<(), Error>,
    {
        self.transaction_with(f).map(|(ts, ())| ts)
    }

    /// Like [`Deployment::transaction`], also returning the closure's result.
    pub fn transaction_with<R, F>(&self, f: F) -> Result<(i64, R), Error>
    where
        F: FnOnce(&mut Transaction<'_>) -> Result<R, Error>,
    {
        let mut store = self.store_mut();
        let mut tx = Transaction::new(&mut store);
        let r = f(&mut tx)?;
        let ts = tx.commit();
        Ok((ts, r))
    }

    /// Inserts one document in its own transaction; returns `(ts, id)`.
    pub fn insert(
        &self,
        component: &str,
        table: &str,
        doc: impl IntoFields,
    ) -> Result<(i64, String), Error> {
        self.transaction_with(|tx| tx.insert(component, table, doc))
    }

    /// Creates an empty table (a commit). No-op returning head if it already exists.
    pub fn create_table(&self, component: &str, table: &str) -> Result<i64, Error> {
        self.store_mut().create_table(component, table)
    }

    /// Deletes every document of a table in one transaction (tombstones are emitted), like
    /// the dashboard's "Clear Table".
    pub fn clear_table(&self, component: &str, table: &str) -> Result<i64, Error> {
        self.store_mut().clear_table(component, table)
    }

    /// Deletes a table: no tombstones; its not-yet-consumed deltas vanish from
    /// document_deltas; json_schemas stops listing it. Snapshots taken before still see it.
    pub fn delete_table(&self, component: &str, table: &str) -> Result<i64, Error> {
        self.store_mut().delete_table(component, table)
    }

    /// Replaces a table's contents the way `npx convex import --replace` does: the new rows
    /// are first written to a hidden table (exported as inserts by document_deltas, not
    /// listed by json_schemas), then the hidden table replaces the old one; the old rows get
    /// no tombstones. Returns `(ts of the rows, ts of the swap)`.
    pub fn import_table<D: IntoFields>(
        &self,
        component: &str,
        table: &str,
        docs: impl IntoIterator<Item = D>,
    ) -> Result<(i64, i64), Error> {
        self.store_mut().import_table(component, table, docs)
    }

    /// Tables at head (system and hidden tables included, deleted ones not).
    pub fn tables(&self) -> Vec<TableInfo> {
        self.store().table_infos()
    }

    /// Live documents of a table in clean `json`, exactly as list_snapshot sends them (with
    /// `_component`, `_table`, `_ts`), in `_id` order. Empty if the table does not exist.
    pub fn live_documents(&self, component: &str, table: &str) -> Vec<serde_json::Value> {
        self.live_documents_in(component, table, Format::Clean)
    }

    /// [`Deployment::live_documents`] in another encoding.
    pub fn live_documents_in(
        &self,
        component: &str,
        table: &str,
        format: Format,
    ) -> Vec<serde_json::Value> {
        let s = self.store();
        match s.find_table(component, table) {
            Some(ti) => export::live_documents(&s, ti, format),
            None => Vec::new(),
        }
    }

    /// The documents of a table as of timestamp `ts`: every document whose latest revision
    /// at or before `ts` is live, at that revision, in the shape of [`Deployment::live_documents`]
    /// (clean `json`, `_id` order). Empty if no table had that name at `ts`.
    pub fn documents_at(&self, component: &str, table: &str, ts: i64) -> Vec<serde_json::Value> {
        self.documents_at_in(component, table, ts, Format::Clean)
    }

    /// [`Deployment::documents_at`] in another encoding.
    pub fn documents_at_in(
        &self,
        component: &str,
        table: &str,
        ts: i64,
        format: Format,
    ) -> Vec<serde_json::Value> {
        let s = self.store();
        match s.find_table_at(component, table, ts) {
            Some(ti) => export::documents_at(&s, ti, ts, format),
            None => Vec::new(),
        }
    }

    /// What `GET /api/json_schemas` would answer; `Err` carries the error's code and
    /// message (`"NoSchemaForExport: ..."`).
    pub fn json_schemas(
        &self,
        format: Format,
        delta_schema: bool,
        by_component: bool,
    ) -> Result<serde_json::Value, Error> {
        export::json_schemas(&self.store(), format, delta_schema, by_component)
            .map_err(|e| Error(format!("{}: {}", e.code, e.message)))
    }

    /// Sets (or with `None` removes) a component's active schema, like deploying a
    /// `schema.ts`: `tables` maps table names to document validators in Convex's validator
    /// JSON (`{"type":"object","value":{"f":{"fieldType":{"type":"string"},"optional":false}}}`).
    /// json_schemas describes a table from it when the table's inferred shape is not an
    /// object.
    pub fn set_schema(
        &self,
        component: &str,
        tables: Option<serde_json::Value>,
    ) -> Result<(), Error> {
        self.store_mut().set_schema(component, tables)
    }

    /// The active schemas, by component path.
    pub fn schemas(&self) -> BTreeMap<String, serde_json::Value> {
        self.store().schema_values()
    }

    // ---- Settings and faults ----

    pub fn settings(&self) -> Settings {
        read(&self.inner.settings).clone()
    }

    pub fn set_settings(&self, settings: Settings) {
        *write(&self.inner.settings) = settings;
    }

    /// Changes some settings in place, e.g. `d.update_settings(|s| s.deltas_page_limit = 5)`.
    pub fn update_settings(&self, f: impl FnOnce(&mut Settings)) {
        f(&mut write(&self.inner.settings));
    }

    pub fn add_fault(&self, rule: FaultRule) -> Result<(), Error> {
        rule.validate().map_err(Error)?;
        lock(&self.inner.faults).add(rule);
        Ok(())
    }

    pub fn clear_faults(&self) {
        lock(&self.inner.faults).clear();
    }

    pub fn faults(&self) -> Vec<FaultRule> {
        lock(&self.inner.faults).list()
    }

    /// Counts a request against the fault rules and decides what happens to it;
    /// `selects(component, table)`: whether the request selects a table.
    pub(crate) fn decide_fault(
        &self,
        endpoint: &str,
        selects: &mut dyn FnMut(&str, &str) -> bool,
    ) -> Decision {
        lock(&self.inner.faults).decide(endpoint, selects)
    }

    // ---- Observability ----

    pub fn requests(&self) -> RequestStats {
        self.inner.requests.stats()
    }

    /// The most recent `/api/` requests (at most 10 000), oldest first.
    pub fn request_log(&self) -> Vec<RequestRecord> {
        self.inner.requests.log()
    }

    pub fn reset_requests(&self) {
        self.inner.requests.reset();
    }

    /// The request counters, which the endpoints update.
    pub(crate) fn counters(&self) -> &RequestCounters {
        &self.inner.requests
    }

    // ---- Serving state ----

    /// list_snapshot's cached iterator.
    pub(crate) fn snapshot_iterator(&self) -> &IteratorCache {
        &self.inner.snapshot_iterator
    }

    /// Takes the global iterator build lock and counts a build.
    pub(crate) async fn build_snapshot_iterator(&self) -> tokio::sync::MutexGuard<'_, ()> {
        let guard = self.inner.snapshot_iterator.build_lock().await;
        self.inner.requests.count_iterator_build();
        guard
    }

    /// The data sync cursor secret and progress rows.
    pub(crate) fn data_sync(&self) -> &SyncState {
        &self.inner.data_sync
    }

    pub(crate) fn lifecycle(&self) -> &Lifecycle {
        &self.inner.lifecycle
    }

    /// Asks the server(s) serving this deployment to stop.
    pub fn request_shutdown(&self) {
        self.inner.lifecycle.request_shutdown();
    }
}
