//! The cloneable [`Deployment`] handle: data, settings, faults and request counters shared by
//! the HTTP server, the `/_emulator/` control API and Rust tests.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::export;
use crate::faults::{Decision, FaultRule, Faults};
use crate::ids;
use crate::snapshot_cost::IteratorKey;
use crate::store::{prepare_doc, NewTable, Store, Write};
use crate::value::{Fields, Format, IntoFields, Value};

/// An error from the control API (bad input, unknown document, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<crate::value::ValueError> for Error {
    fn from(e: crate::value::ValueError) -> Self {
        Error(e.0)
    }
}

fn error<T>(msg: impl Into<String>) -> Result<T, Error> {
    Err(Error(msg.into()))
}

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// Highest head `advance_clock` reaches (about year 2262 minus a day).
const MAX_HEAD: i64 = i64::MAX - 86_400_000_000_000;

/// Runtime-adjustable behaviour. Over HTTP, `POST /_emulator/settings` merges a partial object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Documents per list_snapshot page (Convex: 1024).
    pub snapshot_page_limit: usize,
    /// Rows read / values returned per document_deltas page (Convex: 128).
    pub deltas_page_limit: usize,
    /// Oldest accepted `snapshot` relative to head (Convex's `LIST_SNAPSHOT_MAX_AGE_SECS`:
    /// 5 days).
    pub snapshot_max_age_ms: u64,
    /// Document retention (Convex's `DOCUMENT_RETENTION_DELAY`: 14 days; the self-hosted
    /// Docker image sets 2 days, see [`Settings::self_hosted_docker`]). Older deltas cursors
    /// get 400 InvalidWindowToReadDocuments; a list_snapshot whose snapshot is older gets
    /// 503 OutOfRetention, on every retry.
    pub retention_ms: u64,
    /// Off = 403 StreamingExportNotEnabled on every endpoint.
    pub streaming_export_enabled: bool,
    /// Delay added before every `/api/` response.
    pub latency_ms: u64,
    /// Reproduces convex-backend issue #302: the tableName filter is ignored and every
    /// table's rows are returned.
    pub ignore_table_filter: bool,
    /// Off = the access key lacks `deployment:data:view` (403 OperationNotPermitted).
    pub data_view_permission: bool,
    /// Further keys that authenticate but lack `deployment:data:view`.
    pub keys_without_data_view: Vec<String>,
    /// Off = json_schemas answers 503 TableSummariesUnavailable (backend bootstrapping).
    pub table_summaries_ready: bool,
    /// Requests whose injected delay or list_snapshot work reaches this get a bare 408 after
    /// it (Convex: 300 s).
    pub request_timeout_ms: u64,
    /// Entries per `/api/v1/data/sync` page (Convex: 16384; whole commits are kept).
    pub data_sync_page_entries: usize,
    /// Bytes of emitted values per data sync page (Convex: 64 MiB; whole commits are kept).
    pub data_sync_page_bytes: usize,
    /// Age behind head from which a data sync cursor is expired (Convex Cloud: 3 days).
    pub data_sync_retention_ms: u64,
    /// A sync's progress row (list_active_syncs) is refreshed at most this often, in the
    /// emulator's clock, unless its status variant changes or a caught-up page changes its
    /// count (Convex's `DATA_SYNC_PROGRESS_WRITE_INTERVAL_MS`: 5000). 0 = every page.
    pub data_sync_progress_write_interval_ms: u64,
    /// A self-hosted backend from before the Data Sync API (2026-07-10): its three routes
    /// answer as unknown routes do, and document_deltas skips the tables of non-root
    /// components, as before Convex's fix of 2026-08-11.
    pub no_data_sync: bool,
    /// list_snapshot cost model (all zero = free): fixed time of an iterator rebuild.
    pub snapshot_build_base_ms: u64,
    /// Rebuild time per document-log row written after the request's snapshot.
    pub snapshot_build_us_per_row: u64,
    /// Time per document a list_snapshot page returns.
    pub snapshot_read_us_per_doc: u64,
    /// A list_snapshot page is cut once its work (rebuild plus documents) reaches this
    /// (Convex: 60 s); it still holds at least one document.
    pub snapshot_page_time_limit_ms: u64,
    /// Background churn: every this many ms a scheduler-like commit writes a row of the
    /// system table `_scheduled_functions` (0 = off).
    pub system_write_interval_ms: u64,
}

/// Document retention of Convex's self-hosted Docker image (its docker-compose file sets
/// 2 days instead of the backend's 14-day default).
pub const SELF_HOSTED_DOCKER_RETENTION_MS: u64 = 2 * DAY_MS;

impl Settings {
    /// The defaults with the self-hosted Docker image's 2-day document retention.
    pub fn self_hosted_docker() -> Settings {
        Settings {
            retention_ms: SELF_HOSTED_DOCKER_RETENTION_MS,
            ..Settings::default()
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            snapshot_page_limit: 1024,
            deltas_page_limit: 128,
            snapshot_max_age_ms: 5 * DAY_MS,
            retention_ms: 14 * DAY_MS,
            streaming_export_enabled: true,
            latency_ms: 0,
            ignore_table_filter: false,
            data_view_permission: true,
            keys_without_data_view: Vec::new(),
            table_summaries_ready: true,
            request_timeout_ms: 300_000,
            data_sync_page_entries: 16_384,
            data_sync_page_bytes: 64 << 20,
            data_sync_retention_ms: 3 * DAY_MS,
            data_sync_progress_write_interval_ms: 5_000,
            no_data_sync: false,
            snapshot_build_base_ms: 0,
            snapshot_build_us_per_row: 0,
            snapshot_read_us_per_doc: 0,
            snapshot_page_time_limit_ms: 60_000,
            system_write_interval_ms: 0,
        }
    }
}

/// Per-endpoint request counters (all `/api/` requests, faulted ones included), and the
/// work the backend would have done for them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RequestStats {
    pub total: u64,
    pub by_endpoint: BTreeMap<String, u64>,
    /// list_snapshot requests that were not the exact continuation of the previous answer
    /// and so built a new snapshot iterator.
    pub snapshot_iterator_builds: u64,
    /// Rows read per endpoint: list_snapshot counts the documents it visits, document_deltas
    /// every log row it reads (other tables and system tables included).
    pub rows_read: BTreeMap<String, u64>,
    /// Response body bytes sent per endpoint (whole answers only: not faulted ones).
    #[serde(default)]
    pub bytes_sent: BTreeMap<String, u64>,
}

/// One logged `/api/` request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub endpoint: String,
    pub method: String,
    /// Path and query as received.
    pub uri: String,
    /// Status sent (0 when the connection was stalled, reset or truncated).
    pub status: u16,
    /// The HTTP version the request came with (`HTTP/1.1`, `HTTP/2.0`).
    #[serde(default)]
    pub version: String,
}

/// The request log keeps only the most recent entries so long benchmarks stay bounded.
const REQUEST_LOG_CAP: usize = 10_000;

#[derive(Default)]
struct Requests {
    stats: RequestStats,
    log: std::collections::VecDeque<RequestRecord>,
}

/// A table as listed by [`Deployment::tables`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableInfo {
    pub component: String,
    pub table: String,
    /// Live documents at head.
    pub documents: usize,
    /// 22-character URL-safe base64 tablet id (what list_snapshot cursors name).
    pub tablet: String,
}

struct Inner {
    store: RwLock<Store>,
    settings: RwLock<Settings>,
    faults: Mutex<Faults>,
    requests: Mutex<Requests>,
    /// The one cached list_snapshot iterator: the request that would continue it.
    snapshot_iterator: Mutex<Option<IteratorKey>>,
    /// Held while an iterator is rebuilt: one build at a time, like Convex.
    snapshot_build: tokio::sync::Mutex<()>,
    /// Whether a server already runs this deployment's background system writer.
    system_writer: std::sync::atomic::AtomicBool,
    access_key: String,
    shutdown: tokio::sync::watch::Sender<bool>,
    /// The secret data sync cursors are sealed with.
    data_sync: crate::data_sync::Sealer,
    /// Data sync progress rows (Convex's `_data_sync_progress`), kept apart from the store:
    /// they are system rows no export endpoint reads.
    data_sync_progress: Mutex<crate::data_sync::ProgressRows>,
}

/// A handle on the emulated deployment; clones share the same state.
#[derive(Clone)]
pub struct Deployment {
    inner: Arc<Inner>,
}

// A panic while holding a lock must not take every later request down with it: the data is
// still consistent (commits are applied only after the closure succeeded).
fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}
fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}
fn lock<T>(l: &Mutex<T>) -> MutexGuard<'_, T> {
    l.lock().unwrap_or_else(|e| e.into_inner())
}

impl Deployment {
    /// An empty deployment (root component only) whose randomness derives from `seed`.
    pub fn new(seed: u64, access_key: impl Into<String>) -> Deployment {
        let (shutdown, _) = tokio::sync::watch::channel(false);
        Deployment {
            inner: Arc::new(Inner {
                store: RwLock::new(Store::new(seed)),
                settings: RwLock::new(Settings::default()),
                faults: Mutex::new(Faults::new(seed)),
                requests: Mutex::new(Requests::default()),
                snapshot_iterator: Mutex::new(None),
                snapshot_build: tokio::sync::Mutex::new(()),
                system_writer: std::sync::atomic::AtomicBool::new(false),
                access_key: access_key.into(),
                shutdown,
                data_sync: crate::data_sync::Sealer::new(),
                data_sync_progress: Mutex::new(Default::default()),
            }),
        }
    }

    pub fn access_key(&self) -> &str {
        &self.inner.access_key
    }

    pub(crate) fn data_sync_sealer(&self) -> &crate::data_sync::Sealer {
        &self.inner.data_sync
    }

    pub(crate) fn data_sync_progress<R>(
        &self,
        f: impl FnOnce(&mut crate::data_sync::ProgressRows) -> R,
    ) -> R {
        f(&mut lock(&self.inner.data_sync_progress))
    }

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
        let mut s = self.store_mut();
        let ns = i64::try_from(by.as_nanos()).unwrap_or(i64::MAX);
        // Capped well below i64::MAX so later commits (head + a few ms) cannot overflow.
        s.head = s.head.saturating_add(ns).min(MAX_HEAD);
        s.head
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
        check_names(component, table)?;
        let mut s = self.store_mut();
        if s.find_table(component, table).is_some() {
            return Ok(s.head);
        }
        let spec = s.new_table_spec(component, table, false);
        let ts = s.next_ts();
        Ok(s.apply(ts, vec![spec], Vec::new()))
    }

    /// Deletes every document of a table in one transaction (tombstones are emitted), like
    /// the dashboard's "Clear Table".
    pub fn clear_table(&self, component: &str, table: &str) -> Result<i64, Error> {
        let mut s = self.store_mut();
        let Some(ti) = s.find_table(component, table) else {
            return error(format!("table {component:?}/{table:?} not found"));
        };
        let writes: Vec<Write> = s.tables[ti]
            .docs
            .iter()
            .filter(|(_, e)| e.latest.doc.is_some())
            .map(|(k, _)| Write {
                table: ti,
                internal: *k,
                doc: None,
            })
            .collect();
        if writes.is_empty() {
            return Ok(s.head);
        }
        let ts = s.next_ts();
        Ok(s.apply(ts, Vec::new(), writes))
    }

    /// Deletes a table: no tombstones; its not-yet-consumed deltas vanish from
    /// document_deltas; json_schemas stops listing it. Snapshots taken before still see it.
    pub fn delete_table(&self, component: &str, table: &str) -> Result<i64, Error> {
        let mut s = self.store_mut();
        let Some(ti) = s.find_table(component, table) else {
            return error(format!("table {component:?}/{table:?} not found"));
        };
        let ts = s.next_ts();
        Ok(s.drop_table(ti, ts))
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
        check_names(component, table)?;
        let docs: Vec<Fields> = docs
            .into_iter()
            .map(|d| d.into_fields().map_err(Error::from))
            .collect::<Result<_, _>>()?;
        for d in &docs {
            check_fields(d)?;
        }
        let mut s = self.store_mut();
        let spec = s.new_table_spec(component, table, true);
        let number = spec.number;
        let ts1 = s.next_ts();
        let ti = s.tables.len();
        let mut writes = Vec::with_capacity(docs.len());
        for (k, fields) in docs.iter().enumerate() {
            let internal = s.rng.bytes16();
            let id = ids::document_id(number, &internal);
            let doc = prepare_doc(&id, creation_time(ts1, k), fields, &s.shapes);
            writes.push(Write {
                table: ti,
                internal,
                doc: Some(doc),
            });
        }
        s.apply(ts1, vec![spec], writes);
        let ts2 = s.next_ts();
        let mut swap = Vec::new();
        if let Some(old) = s.find_table(component, table) {
            s.tables[old].deleted_ts = Some(ts2);
            swap.extend(s.catalog_writes(old, ts2, None, true));
        }
        s.tables[ti].hidden = false;
        s.tables[ti].shown_ts = ts2;
        swap.extend(s.catalog_writes(ti, ts2, Some("active"), false));
        s.apply(ts2, Vec::new(), swap);
        Ok((ts1, ts2))
    }

    /// Tables at head (system and hidden tables included, deleted ones not).
    pub fn tables(&self) -> Vec<TableInfo> {
        let s = self.store();
        let mut out: Vec<TableInfo> = s
            .tables
            .iter()
            // The catalog tables are the emulator's bookkeeping, not tables a user made.
            .filter(|t| t.active() && !t.hidden)
            .filter(|t| {
                !(t.component.is_empty() && crate::store::CATALOG_TABLES.contains(&t.name.as_str()))
            })
            .map(|t| TableInfo {
                component: t.component.clone(),
                table: t.name.clone(),
                documents: t.live,
                tablet: t.tablet_str.clone(),
            })
            .collect();
        out.sort_by(|a, b| (&a.component, &a.table).cmp(&(&b.component, &b.table)));
        out
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
        if !export::valid_component_path(component) {
            return error(format!("invalid component path {component:?}"));
        }
        let mut s = self.store_mut();
        match tables {
            None => {
                s.schemas.remove(component);
            }
            Some(v) => {
                let tables: crate::schema::ComponentSchema = serde_json::from_value(v)
                    .map_err(|e| Error(format!("schema tables must be an object: {e}")))?;
                crate::schema::validate(&tables).map_err(Error)?;
                s.schemas.insert(component.to_owned(), tables);
            }
        }
        Ok(())
    }

    /// The active schemas, by component path.
    pub fn schemas(&self) -> BTreeMap<String, serde_json::Value> {
        self.store()
            .schemas
            .iter()
            .map(|(c, t)| (c.clone(), serde_json::to_value(t).unwrap_or_default()))
            .collect()
    }

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

    pub(crate) fn decide_fault(&self, endpoint: &str) -> Decision {
        lock(&self.inner.faults).decide(endpoint)
    }

    pub fn requests(&self) -> RequestStats {
        lock(&self.inner.requests).stats.clone()
    }

    /// The most recent `/api/` requests (at most 10 000), oldest first.
    pub fn request_log(&self) -> Vec<RequestRecord> {
        lock(&self.inner.requests).log.iter().cloned().collect()
    }

    pub fn reset_requests(&self) {
        *lock(&self.inner.requests) = Requests::default();
    }

    pub(crate) fn count_request(&self, endpoint: &str) {
        let mut r = lock(&self.inner.requests);
        r.stats.total += 1;
        *r.stats.by_endpoint.entry(endpoint.to_owned()).or_default() += 1;
    }

    pub(crate) fn count_bytes_sent(&self, endpoint: &str, bytes: usize) {
        let mut r = lock(&self.inner.requests);
        *r.stats.bytes_sent.entry(endpoint.to_owned()).or_default() += bytes as u64;
    }

    pub(crate) fn count_rows_read(&self, endpoint: &str, rows: usize) {
        let mut r = lock(&self.inner.requests);
        *r.stats.rows_read.entry(endpoint.to_owned()).or_default() += rows as u64;
    }

    /// Whether `key` continues the cached iterator (then the request resumes it).
    pub(crate) fn continues_snapshot_iterator(&self, key: &IteratorKey) -> bool {
        lock(&self.inner.snapshot_iterator).as_ref() == Some(key)
    }

    /// Records what the next request must be to resume the cached iterator (`None` when the
    /// walk ended).
    pub(crate) fn cache_snapshot_iterator(&self, next: Option<IteratorKey>) {
        *lock(&self.inner.snapshot_iterator) = next;
    }

    /// Takes the global build lock and counts a build.
    pub(crate) async fn build_snapshot_iterator(&self) -> tokio::sync::MutexGuard<'_, ()> {
        let guard = self.inner.snapshot_build.lock().await;
        lock(&self.inner.requests).stats.snapshot_iterator_builds += 1;
        guard
    }

    /// True for the first caller only: that server runs the background system writer.
    pub(crate) fn claim_system_writer(&self) -> bool {
        !self
            .inner
            .system_writer
            .swap(true, std::sync::atomic::Ordering::SeqCst)
    }

    pub(crate) fn log_request(&self, rec: RequestRecord) {
        let mut r = lock(&self.inner.requests);
        if r.log.len() >= REQUEST_LOG_CAP {
            r.log.pop_front();
        }
        r.log.push_back(rec);
    }

    /// Asks the server(s) serving this deployment to stop.
    pub fn request_shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    pub(crate) fn shutdown_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }
}

/// `_creationTime` for the k-th insert of a commit at `ts`: milliseconds with a fraction,
/// slightly before the commit and nudged per insert so documents of one transaction differ.
pub(crate) fn creation_time(ts: i64, k: usize) -> f64 {
    (ts / 1_000) as f64 / 1_000.0 - 1.0 + (k % 1000) as f64 * 0.001
}

fn check_names(component: &str, table: &str) -> Result<(), Error> {
    if !export::valid_table_name(table) {
        return error(format!("invalid table name {table:?}"));
    }
    if !export::valid_component_path(component) {
        return error(format!("invalid component path {component:?}"));
    }
    Ok(())
}

fn check_fields(fields: &Fields) -> Result<(), Error> {
    for k in fields.keys() {
        if k.is_empty() || k.starts_with('_') || k.starts_with('$') {
            return error(format!(
                "invalid top-level field name {k:?}: names starting with '_' or '$' are reserved"
            ));
        }
    }
    Ok(())
}

/// Where a table of a transaction lives: existing in the store, or created by this commit.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum TableRef {
    Existing(usize),
    New(usize),
}

struct PendingDoc {
    creation_time: f64,
    /// `None` = deleted.
    fields: Option<Fields>,
    /// Whether the document existed before this transaction.
    existed: bool,
}

/// Writes of one transaction, applied atomically by [`Deployment::transaction`].
pub struct Transaction<'a> {
    store: &'a mut Store,
    ts: i64,
    new_tables: Vec<NewTable>,
    docs: HashMap<(TableRef, [u8; 16]), PendingDoc>,
    inserts: usize,
}

impl<'a> Transaction<'a> {
    fn new(store: &'a mut Store) -> Transaction<'a> {
        let ts = store.next_ts();
        Transaction {
            store,
            ts,
            new_tables: Vec::new(),
            docs: HashMap::new(),
            inserts: 0,
        }
    }

    /// The timestamp this transaction will commit at.
    pub fn ts(&self) -> i64 {
        self.ts
    }

    fn table(&mut self, component: &str, table: &str, create: bool) -> Result<TableRef, Error> {
        if let Some(i) = self.store.find_table(component, table) {
            return Ok(TableRef::Existing(i));
        }
        if let Some(i) = self
            .new_tables
            .iter()
            .position(|t| t.component == component && t.name == table)
        {
            return Ok(TableRef::New(i));
        }
        if !create {
            return error(format!("table {component:?}/{table:?} not found"));
        }
        check_names(component, table)?;
        let spec = self.store.new_table_spec(component, table, false);
        self.new_tables.push(spec);
        Ok(TableRef::New(self.new_tables.len() - 1))
    }

    fn table_number(&self, t: TableRef) -> u32 {
        match t {
            TableRef::Existing(i) => self.store.tables[i].number,
            TableRef::New(i) => self.new_tables[i].number,
        }
    }

    /// Inserts a document (creating the table, and its component, if needed); returns its id.
    pub fn insert(
        &mut self,
        component: &str,
        table: &str,
        doc: impl IntoFields,
    ) -> Result<String, Error> {
        let fields = doc.into_fields()?;
        check_fields(&fields)?;
        let t = self.table(component, table, true)?;
        let internal = loop {
            let candidate = self.store.rng.bytes16();
            let taken = match t {
                TableRef::Existing(i) => self.store.tables[i].docs.contains_key(&candidate),
                TableRef::New(_) => false,
            } || self.docs.contains_key(&(t, candidate));
            if !taken {
                break candidate;
            }
        };
        let creation_time = creation_time(self.ts, self.inserts);
        self.inserts += 1;
        self.docs.insert(
            (t, internal),
            PendingDoc {
                creation_time,
                fields: Some(fields),
                existed: false,
            },
        );
        Ok(ids::document_id(self.table_number(t), &internal))
    }

    /// The current user fields of a document (this transaction's writes included).
    pub fn get(&mut self, component: &str, table: &str, id: &str) -> Result<Option<Fields>, Error> {
        let key = self.locate(component, table, id)?;
        Ok(self.current(key)?.and_then(|p| p.fields.clone()))
    }

    fn locate(
        &mut self,
        component: &str,
        table: &str,
        id: &str,
    ) -> Result<(TableRef, [u8; 16]), Error> {
        let t = self.table(component, table, false)?;
        let Some(internal) = ids::parse_document_id(id) else {
            return error(format!("invalid document id {id:?}"));
        };
        Ok((t, internal))
    }

    /// Loads a document into the pending set (from the store if not yet touched).
    fn current(&mut self, key: (TableRef, [u8; 16])) -> Result<Option<&mut PendingDoc>, Error> {
        if !self.docs.contains_key(&key) {
            let TableRef::Existing(i) = key.0 else {
                return Ok(None);
            };
            let Some(doc) = self.store.tables[i].live_doc(&key.1) else {
                return Ok(None);
            };
            let mut fields = doc.fields();
            let creation_time = match fields.remove("_creationTime") {
                Some(Value::Float64(f)) => f,
                _ => 0.0,
            };
            fields.remove("_id");
            self.docs.insert(
                key,
                PendingDoc {
                    creation_time,
                    fields: Some(fields),
                    existed: true,
                },
            );
        }
        Ok(self.docs.get_mut(&key).filter(|p| p.fields.is_some()))
    }

    fn live(&mut self, component: &str, table: &str, id: &str) -> Result<&mut PendingDoc, Error> {
        let key = self.locate(component, table, id)?;
        match self.current(key)? {
            Some(p) => Ok(p),
            None => error(format!(
                "document {id} not found in {component:?}/{table:?}"
            )),
        }
    }

    /// Sets the given fields (shallow merge, like `db.patch`).
    pub fn patch(
        &mut self,
        component: &str,
        table: &str,
        id: &str,
        fields: impl IntoFields,
    ) -> Result<(), Error> {
        self.patch_remove(component, table, id, fields, &[])
    }

    /// Sets `fields` and removes `remove` (what `db.patch` does with `undefined`).
    pub fn patch_remove(
        &mut self,
        component: &str,
        table: &str,
        id: &str,
        fields: impl IntoFields,
        remove: &[String],
    ) -> Result<(), Error> {
        let set = fields.into_fields()?;
        check_fields(&set)?;
        let p = self.live(component, table, id)?;
        if let Some(f) = p.fields.as_mut() {
            for k in remove {
                f.remove(k);
            }
            f.extend(set);
        }
        Ok(())
    }

    /// Replaces all user fields (like `db.replace`); `_id` and `_creationTime` are kept.
    pub fn replace(
        &mut self,
        component: &str,
        table: &str,
        id: &str,
        doc: impl IntoFields,
    ) -> Result<(), Error> {
        let fields = doc.into_fields()?;
        check_fields(&fields)?;
        let p = self.live(component, table, id)?;
        p.fields = Some(fields);
        Ok(())
    }

    pub fn delete(&mut self, component: &str, table: &str, id: &str) -> Result<(), Error> {
        let p = self.live(component, table, id)?;
        p.fields = None;
        Ok(())
    }

    /// Active user tables as `(component, table, live documents)`, in creation order.
    pub(crate) fn user_tables(&self) -> Vec<(String, String, usize)> {
        self.store
            .tables
            .iter()
            .filter(|t| t.active() && !t.hidden && !t.system())
            .map(|t| (t.component.clone(), t.name.clone(), t.live))
            .collect()
    }

    /// A pseudo-random document of the table that is live at head and not deleted by this
    /// transaction (O(log n): the first live id at or after a random key, wrapping around).
    pub(crate) fn random_live_id(
        &mut self,
        component: &str,
        table: &str,
        rng: &mut ids::Rng,
    ) -> Option<String> {
        let TableRef::Existing(i) = self.table(component, table, false).ok()? else {
            return None;
        };
        let t = &self.store.tables[i];
        let key = rng.bytes16();
        let docs = &self.docs;
        let (internal, _) = t
            .docs
            .range(key..)
            .chain(t.docs.range(..key))
            .find(|(k, e)| {
                e.latest.doc.is_some()
                    && docs
                        .get(&(TableRef::Existing(i), **k))
                        .is_none_or(|p| p.fields.is_some())
            })?;
        Some(t.doc_id(internal))
    }

    fn commit(self) -> i64 {
        let Transaction {
            store,
            ts,
            new_tables,
            docs,
            ..
        } = self;
        let base = store.tables.len();
        let mut writes = Vec::with_capacity(docs.len());
        for ((t, internal), p) in docs {
            // Inserted then deleted in the same transaction: nothing happened.
            if p.fields.is_none() && !p.existed {
                continue;
            }
            let (ti, number) = match t {
                TableRef::Existing(i) => (i, store.tables[i].number),
                TableRef::New(i) => (base + i, new_tables[i].number),
            };
            let doc = p.fields.as_ref().map(|f| {
                prepare_doc(
                    &ids::document_id(number, &internal),
                    p.creation_time,
                    f,
                    &store.shapes,
                )
            });
            writes.push(Write {
                table: ti,
                internal,
                doc,
            });
        }
        if writes.is_empty() && new_tables.is_empty() {
            return store.head;
        }
        store.apply(ts, new_tables, writes)
    }
}
