//! The read engine against an in-process fake of Convex: the walk shapes, message order,
//! checkpoints, self-healing, per-stream failure, and a randomized oracle: after every read,
//! a destination that merges each read the way PyAirbyte's caches do (one merge per read, no
//! deduplication) holds exactly the fake's documents as of the read's end. (The real binary
//! against the emulator is covered in `tests/`.)

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Map, Value};

use super::*;
use crate::output::SharedBuffer;
use convex::data_sync::{DataSyncApi, DataSyncCursor, SyncPage, SyncStatus, SyncValue};
use convex::{
    DeltasPageEnd, DeploymentSchemas, PageSink, Selection, SnapshotCursor, SnapshotPageEnd,
    TableRef, ValueMeta,
};

/// One committed revision: `value` `None` is a delete.
#[derive(Clone, Debug)]
struct Entry {
    ts: i64,
    table: String,
    id: String,
    value: Option<Value>,
}

#[derive(Default)]
struct World {
    tables: Vec<String>,
    /// Every revision, in commit order.
    log: Vec<Entry>,
    head: i64,
}

/// A small Convex: an MVCC log of documents. Snapshot pages of `page` documents (cursor = the
/// last id); deltas pages read `rows` log rows of all tables, like Convex's read limit.
struct Fake {
    world: Mutex<World>,
    page: usize,
    rows: usize,
    /// Requests made, for assertions (`endpoint tables snapshot/cursor cursor`).
    calls: Mutex<Vec<String>>,
    /// Error codes to answer with, by endpoint, consumed one per call.
    errors: Mutex<Vec<(&'static str, &'static str)>>,
    /// Answer every table's rows whatever was asked (convex-backend #302).
    ignore_filter: bool,
    schemas_fail: bool,
    /// `json_schemas` refuses the deployment (a table Convex cannot describe).
    undescribable: bool,
    /// Snapshot pages answer this cursor instead of the real one (a server stuck in a loop).
    stuck_cursor: Option<&'static str>,
    /// `list_snapshot` of a selection with this table fails, every time (a table whose
    /// documents Convex cannot send).
    broken_table: Option<&'static str>,
    /// Deltas pages answer this cursor instead of the real one.
    deltas_cursor: Option<i64>,
    /// Data sync: a snapshotting sync whose timestamp lags the head by this much (or more)
    /// follows the log first (Convex's 30 s freshness rule, in commits here).
    fresh: i64,
    /// Data sync cursors at or below this timestamp have expired.
    expired_below: Mutex<i64>,
    /// Commits a random write to the selected table before answering each data sync page.
    churn: Mutex<Option<fastrand::Rng>>,
}

/// The fake's data sync cursor: where the sync of one table stands.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug)]
struct FakeSyncCursor {
    synced_ts: i64,
    done: bool,
    after: Option<String>,
    sync_id: String,
}

const START: i64 = 1_700_000_000_000_000_000;

impl Fake {
    fn new(tables: &[(&str, usize)]) -> Self {
        let mut world = World {
            head: START,
            ..World::default()
        };
        for (name, n) in tables {
            world.tables.push(name.to_string());
            for i in 0..*n {
                world.head += 1;
                let ts = world.head;
                world.log.push(Entry {
                    ts,
                    table: name.to_string(),
                    id: format!("{name}{i:04}"),
                    value: Some(json!({"_creationTime": i, "n": i})),
                });
            }
        }
        Fake {
            world: Mutex::new(world),
            page: 3,
            rows: 2,
            calls: Mutex::default(),
            errors: Mutex::default(),
            ignore_filter: false,
            schemas_fail: false,
            undescribable: false,
            stuck_cursor: None,
            broken_table: None,
            deltas_cursor: None,
            fresh: i64::MAX,
            expired_below: Mutex::new(0),
            churn: Mutex::new(None),
        }
    }

    fn head(&self) -> i64 {
        self.world.lock().unwrap().head
    }

    /// Commits one transaction of (table, id, value or delete) writes.
    fn commit(&self, writes: &[(&str, &str, Option<Value>)]) -> i64 {
        let mut w = self.world.lock().unwrap();
        w.head += 1;
        let ts = w.head;
        for (i, (table, id, value)) in writes.iter().enumerate() {
            // Convex logs a document once per transaction, in its final state.
            if writes[i + 1..]
                .iter()
                .any(|(t, d, _)| t == table && d == id)
            {
                continue;
            }
            w.log.push(Entry {
                ts,
                table: table.to_string(),
                id: id.to_string(),
                value: value.clone(),
            });
        }
        ts
    }

    /// The live documents of `table` at `ts`: id → (ts of the revision, value).
    fn docs_at(&self, table: &str, ts: i64) -> BTreeMap<String, (i64, Value)> {
        let w = self.world.lock().unwrap();
        let mut docs = BTreeMap::new();
        for e in w.log.iter().filter(|e| e.table == table && e.ts <= ts) {
            match &e.value {
                Some(v) => docs.insert(e.id.clone(), (e.ts, v.clone())),
                None => docs.remove(&e.id),
            };
        }
        docs
    }

    fn clear_calls(&self) {
        self.calls.lock().unwrap().clear();
    }

    fn fail_next(&self, endpoint: &'static str, code: &'static str) {
        self.errors.lock().unwrap().push((endpoint, code));
    }

    fn take_error(&self, endpoint: &'static str) -> Result<(), ConvexError> {
        let mut errors = self.errors.lock().unwrap();
        if let Some(i) = errors.iter().position(|(e, _)| *e == endpoint) {
            let (_, code) = errors.remove(i);
            // An empty code lets one call through: `fail_next(e, "")` then `fail_next(e, c)`
            // fails the second call.
            if code.is_empty() {
                return Ok(());
            }
            return Err(ConvexError::Api {
                endpoint,
                status: 400,
                code: code.into(),
                message: "injected".into(),
            });
        }
        Ok(())
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn selected(&self, selection: &Selection, table: &str) -> bool {
        self.ignore_filter || selection.contains("", table)
    }

    /// The value as Convex exports it, with the selection's columns.
    fn export(selection: &Selection, e: &Entry, deltas: bool) -> Vec<u8> {
        let mut doc = Map::new();
        doc.insert("_component".into(), "".into());
        doc.insert("_table".into(), e.table.clone().into());
        doc.insert("_ts".into(), e.ts.into());
        if deltas {
            doc.insert("_deleted".into(), e.value.is_none().into());
        }
        doc.insert("_id".into(), e.id.clone().into());
        let columns = &selection.to_json()[""][&e.table];
        if let Some(Value::Object(fields)) = &e.value {
            for (k, v) in fields {
                let included = match columns.get(k).and_then(Value::as_str) {
                    Some(inclusion) => inclusion == "included",
                    None => columns["_other"] != "excluded",
                };
                if included {
                    doc.insert(k.clone(), v.clone());
                }
            }
        }
        Value::Object(doc).to_string().into_bytes()
    }
}

async fn deliver<S: PageSink>(sink: &mut S, raw: &[u8]) -> anyhow::Result<()> {
    sink.value(raw, &ValueMeta::from_json(raw).unwrap())
}

impl ConvexApi for Fake {
    async fn json_schemas(&self) -> Result<DeploymentSchemas, ConvexError> {
        if self.schemas_fail {
            return Err(ConvexError::Api {
                endpoint: "/api/json_schemas",
                status: 401,
                code: "BadAdminKey".into(),
                message: "bad key".into(),
            });
        }
        if self.undescribable {
            return Err(ConvexError::Api {
                endpoint: "/api/json_schemas",
                status: 400,
                code: "NoSchemaForExport".into(),
                message: "no schema".into(),
            });
        }
        self.calls.lock().unwrap().push("json_schemas".into());
        Ok(self.schemas(true))
    }

    async fn table_columns(&self) -> Result<DeploymentSchemas, ConvexError> {
        self.calls.lock().unwrap().push("table_columns".into());
        Ok(self.schemas(false))
    }

    async fn head(&self) -> anyhow::Result<SnapshotTs> {
        self.calls.lock().unwrap().push("head".into());
        Ok(SnapshotTs(self.head()))
    }

    async fn list_snapshot<S: PageSink>(
        &self,
        selection: &Selection,
        snapshot: SnapshotTs,
        cursor: Option<&SnapshotCursor>,
        sink: &mut S,
    ) -> anyhow::Result<SnapshotPageEnd> {
        self.calls.lock().unwrap().push(format!(
            "list_snapshot {selection} {} {:?}",
            snapshot.0,
            cursor.map(|c| c.0.clone())
        ));
        self.take_error("/api/list_snapshot")?;
        if let Some(t) = self.broken_table.filter(|t| selection.contains("", t)) {
            return Err(ConvexError::Api {
                endpoint: "/api/list_snapshot",
                status: 500,
                code: "InternalServerError".into(),
                message: format!("injected: table {t} cannot be read"),
            }
            .into());
        }
        let tables: Vec<String> = self.world.lock().unwrap().tables.clone();
        let mut docs: Vec<Entry> = Vec::new();
        for t in tables.iter().filter(|t| self.selected(selection, t)) {
            for (id, (ts, value)) in self.docs_at(t, snapshot.0) {
                docs.push(Entry {
                    ts,
                    table: t.clone(),
                    id,
                    value: Some(value),
                });
            }
        }
        // As Convex: tables one after another, each in `_id` order. A cursor is the last
        // document sent, or `table/` for the start of the next table.
        docs.sort_by(|a, b| (&a.table, &a.id).cmp(&(&b.table, &b.id)));
        let after: Option<(String, String)> = cursor.map(|c| match c.0.strip_suffix('/') {
            Some(table) => (table.to_owned(), String::new()),
            None => {
                let table = docs
                    .iter()
                    .find(|d| d.id == c.0)
                    .map(|d| d.table.clone())
                    .or_else(|| tables.iter().find(|t| self.selected(selection, t)).cloned())
                    .unwrap_or_default();
                (table, c.0.clone())
            }
        });
        let rest: Vec<&Entry> = docs
            .iter()
            .filter(|d| match &after {
                None => true,
                Some((t, id)) if id.is_empty() => d.table >= *t,
                Some((t, id)) => (&d.table, &d.id) > (t, id),
            })
            .collect();
        // A page never spans two tables; a page that ends a table answers the next one's
        // start.
        let table = rest.first().map(|e| e.table.clone());
        let page: Vec<&&Entry> = rest
            .iter()
            .take(self.page)
            .take_while(|e| Some(&e.table) == table.as_ref())
            .collect();
        for e in &page {
            deliver(sink, &Fake::export(selection, e, false)).await?;
        }
        sink.flush().await?;
        let has_more = rest.len() > page.len();
        let next = match (self.stuck_cursor, rest.get(page.len())) {
            (Some(c), _) => c.to_owned(),
            (None, Some(e)) if page.len() < self.page => format!("{}/", e.table),
            (None, _) => page.last().map(|e| e.id.clone()).unwrap_or_default(),
        };
        Ok(SnapshotPageEnd {
            snapshot,
            cursor: has_more.then_some(SnapshotCursor(next)),
            has_more,
            values: page.len(),
        })
    }

    async fn document_deltas<S: PageSink>(
        &self,
        selection: &Selection,
        cursor: DeltaCursor,
        sink: &mut S,
    ) -> anyhow::Result<DeltasPageEnd> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("document_deltas {selection} {}", cursor.0));
        self.take_error("/api/document_deltas")?;
        let (rows, head) = {
            let w = self.world.lock().unwrap();
            let after: Vec<Entry> = w.log.iter().filter(|e| e.ts > cursor.0).cloned().collect();
            (after, w.head)
        };
        // `rows` rows of all tables, then the rest of that transaction.
        let mut take = rows.len().min(self.rows);
        while take > 0 && take < rows.len() && rows[take].ts == rows[take - 1].ts {
            take += 1;
        }
        let mut values = 0;
        for e in rows[..take]
            .iter()
            .filter(|e| self.selected(selection, &e.table))
        {
            deliver(sink, &Fake::export(selection, e, true)).await?;
            values += 1;
        }
        sink.flush().await?;
        let has_more = take < rows.len();
        let next = if has_more { rows[take - 1].ts } else { head };
        Ok(DeltasPageEnd {
            cursor: DeltaCursor(self.deltas_cursor.unwrap_or(next)),
            has_more,
            values,
        })
    }
}

const SEAL: &str = "fake-cursor:";

fn sealed(c: &FakeSyncCursor) -> DataSyncCursor {
    DataSyncCursor(format!("{SEAL}{}", serde_json::to_string(c).unwrap()))
}

fn sync_error(endpoint: &'static str, code: &str) -> ConvexError {
    ConvexError::Api {
        endpoint,
        status: 400,
        code: code.into(),
        message: "fake".into(),
    }
}

impl Fake {
    /// The one table a data sync selection names.
    fn synced_table(&self, selection: &Selection) -> String {
        let tables = self.world.lock().unwrap().tables.clone();
        let mut selected = tables.into_iter().filter(|t| selection.contains("", t));
        let t = selected.next().expect("a selected table");
        assert!(selected.next().is_none(), "one table per data sync");
        t
    }

    fn churn_once(&self, table: &str) {
        let mut churn = self.churn.lock().unwrap();
        let Some(rng) = churn.as_mut() else { return };
        if rng.bool() {
            return;
        }
        let live: Vec<String> = self.docs_at(table, self.head()).into_keys().collect();
        let roll = rng.u8(..10);
        let v = json!({"v": rng.u32(..1000)});
        let write = if roll < 4 || live.is_empty() {
            (format!("w{:06}", rng.u32(..1_000_000)), Some(v))
        } else {
            let id = live[rng.usize(..live.len())].clone();
            (id, (roll < 8).then_some(v))
        };
        drop(churn);
        self.commit(&[(table, &write.0, write.1)]);
    }
}

impl DataSyncApi for Fake {
    async fn active_sync(
        &self,
        sync_id: &str,
    ) -> Result<Option<convex::data_sync::ActiveSync>, ConvexError> {
        use convex::data_sync::{ActiveSync, SyncProgress};
        Ok(Some(ActiveSync {
            sync_id: sync_id.to_owned(),
            last_updated_ms: 0,
            progress: SyncProgress::UpToDate {
                total_tables: 1,
                num_documents_synced: self.docs_at("a", self.head()).len() as u64,
                synced_ts: SnapshotTs(self.head()),
            },
        }))
    }

    async fn data_sync(
        &self,
        selection: &Selection,
        cursor: Option<&DataSyncCursor>,
    ) -> Result<SyncPage, ConvexError> {
        const EP: &str = "/api/v1/data/sync";
        let table = self.synced_table(selection);
        self.calls
            .lock()
            .unwrap()
            .push(format!("data_sync {table} {}", cursor.is_some()));
        self.take_error(EP)?;
        self.churn_once(&table);
        let head = self.head();
        let mut c = match cursor {
            None => FakeSyncCursor {
                synced_ts: head,
                done: false,
                after: None,
                sync_id: format!("airbyte-{}", self.calls.lock().unwrap().len()),
            },
            Some(c) => {
                let c: FakeSyncCursor =
                    c.0.strip_prefix(SEAL)
                        .and_then(|j| serde_json::from_str(j).ok())
                        .ok_or_else(|| sync_error(EP, "InvalidDataSyncCursor"))?;
                if c.synced_ts <= *self.expired_below.lock().unwrap() {
                    return Err(sync_error(EP, "DataSyncCursorExpired"));
                }
                c
            }
        };
        let export = |e: &Entry| {
            let raw = Fake::export(selection, e, true);
            SyncValue {
                table: TableRef::root(&e.table),
                id: e.id.clone(),
                ts: e.ts,
                deleted: e.value.is_none(),
                raw,
            }
        };
        let mut values = Vec::new();
        if !c.done && head - c.synced_ts < self.fresh {
            // By id, at the sync's timestamp.
            let after = c.after.clone().unwrap_or_default();
            let rest: Vec<(String, (i64, Value))> = self
                .docs_at(&table, c.synced_ts)
                .into_iter()
                .filter(|(id, _)| *id > after)
                .collect();
            for (id, (ts, value)) in rest.iter().take(self.page) {
                values.push(export(&Entry {
                    ts: *ts,
                    table: table.clone(),
                    id: id.clone(),
                    value: Some(value.clone()),
                }));
            }
            if rest.len() <= self.page {
                c.done = true;
            } else {
                c.after = rest.get(self.page - 1).map(|(id, _)| id.clone());
            }
        } else {
            // The log after the sync's timestamp: captured documents only, whole commits.
            let rows: Vec<Entry> = {
                let w = self.world.lock().unwrap();
                w.log
                    .iter()
                    .filter(|e| e.ts > c.synced_ts && e.table == table)
                    .cloned()
                    .collect()
            };
            let mut take = rows.len().min(self.rows);
            while take > 0 && take < rows.len() && rows[take].ts == rows[take - 1].ts {
                take += 1;
            }
            for e in &rows[..take] {
                let captured = c.done || c.after.as_ref().is_some_and(|a| e.id <= *a);
                if captured {
                    values.push(export(e));
                }
            }
            c.synced_ts = if take < rows.len() {
                rows[take - 1].ts
            } else {
                head
            };
        }
        let status = if !c.done {
            SyncStatus::Snapshotting
        } else if c.synced_ts == head {
            SyncStatus::UpToDate(SnapshotTs(head))
        } else {
            SyncStatus::Stale(SnapshotTs(c.synced_ts))
        };
        Ok(SyncPage {
            status,
            truncates: if cursor.is_none() {
                vec![TableRef::root(&table)]
            } else {
                vec![]
            },
            values,
            sync_id: c.sync_id.clone(),
            next: sealed(&c),
        })
    }

    async fn cursor_from_deltas(
        &self,
        selection: &Selection,
        cursor: DeltaCursor,
    ) -> Result<DataSyncCursor, ConvexError> {
        const EP: &str = "/api/data_sync_cursor_from_deltas";
        let table = self.synced_table(selection);
        self.calls
            .lock()
            .unwrap()
            .push(format!("cursor_from_deltas {table} {}", cursor.0));
        self.take_error(EP)?;
        Ok(sealed(&FakeSyncCursor {
            synced_ts: cursor.0,
            done: true,
            after: None,
            sync_id: "airbyte-migrated".into(),
        }))
    }
}

impl Fake {
    fn schemas(&self, typed: bool) -> DeploymentSchemas {
        let tables = self.world.lock().unwrap().tables.clone();
        let schema = |_: &String| {
            if typed {
                json!({"type":"object","properties":{"_id":{"type":"string"},
                    "_creationTime":{"type":"number"},"n":{"type":"number"},"x":{"type":"string"}}})
            } else {
                json!({"type":"object","properties":{"_id":{"type":"string"},
                    "_creationTime":{"type":"number"},"n":{},"x":{}},"additionalProperties":true})
            }
        };
        DeploymentSchemas {
            components: vec![(
                String::new(),
                tables.iter().map(|t| (t.clone(), schema(t))).collect(),
            )],
        }
    }
}

fn catalog_of(streams: &[(&str, &str)], schema: Value) -> ConfiguredCatalog {
    serde_json::from_value(json!({"streams": streams.iter().map(|(n, m)| json!({
        "stream": {"name": n, "json_schema": schema, "supported_sync_modes": ["full_refresh", "incremental"]},
        "sync_mode": m, "destination_sync_mode": "append"})).collect::<Vec<_>>()}))
    .unwrap()
}

fn options() -> ReadOptions {
    ReadOptions {
        debug: false,
        changes: ChangeOptions {
            every_revision: false,
            buffer_bytes: 1 << 30,
            checkpoint_records: 1000,
        },
        api: Api::StreamingExport,
        progress_every: emit::PROGRESS_EVERY,
        // The fake serves Convex's `json` encoding.
        column_types: crate::config::ColumnTypes::Legacy,
        activity: Arc::new(crate::listener::Activity::default()),
    }
}

fn data_sync_options() -> ReadOptions {
    ReadOptions {
        api: Api::DataSync,
        ..options()
    }
}

/// Runs a read against `fake` and returns (success, messages).
fn run_with(
    fake: &Arc<Fake>,
    catalog: ConfiguredCatalog,
    state: &str,
    options: ReadOptions,
) -> (bool, Vec<Value>) {
    let buf = SharedBuffer::default();
    let (out, writer) = Output::start(buf.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ok = rt
        .block_on(read(
            fake.clone(),
            out,
            catalog,
            InputState::parse(state).unwrap(),
            options,
        ))
        .unwrap();
    writer.finish().unwrap();
    let messages = String::from_utf8(buf.contents())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect();
    (ok, messages)
}

fn run(fake: &Arc<Fake>, streams: &[(&str, &str)], state: &str) -> (bool, Vec<Value>) {
    run_with(fake, catalog_of(streams, json!({})), state, options())
}

fn of_stream<'a>(messages: &'a [Value], name: &str) -> Vec<&'a Value> {
    messages
        .iter()
        .filter(|m| {
            m["record"]["stream"] == name
                || m["state"]["stream"]["stream_descriptor"]["name"] == name
                || m["trace"]["stream_status"]["stream_descriptor"]["name"] == name
                || m["trace"]["error"]["stream_descriptor"]["name"] == name
        })
        .collect()
}

fn kinds(messages: &[&Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| match m["type"].as_str().unwrap() {
            "TRACE" if m["trace"]["type"] == "STREAM_STATUS" => m["trace"]["stream_status"]
                ["status"]
                .as_str()
                .unwrap()
                .to_owned(),
            "TRACE" => "ERROR".to_owned(),
            "STATE" => format!("STATE({})", m["state"]["sourceStats"]["recordCount"]),
            t => t.to_owned(),
        })
        .collect()
}

/// The `error` of the first TRACE ERROR.
fn first_error(messages: &[Value]) -> &Value {
    &messages
        .iter()
        .find(|m| m["trace"]["type"] == "ERROR")
        .expect("a TRACE ERROR")["trace"]["error"]
}

fn last_state(messages: &[&Value]) -> Value {
    messages
        .iter()
        .rev()
        .find(|m| m["type"] == "STATE")
        .map(|m| m["state"]["stream"]["stream_state"].clone())
        .unwrap()
}

/// The state messages of a read, as the next read's `--state`.
fn state_after(messages: &[Value], earlier: &str) -> String {
    let mut by_stream: BTreeMap<String, Value> = BTreeMap::new();
    if let Ok(Value::Array(prev)) = serde_json::from_str::<Value>(earlier) {
        for s in prev {
            by_stream.insert(
                s["stream"]["stream_descriptor"]["name"].to_string(),
                s.clone(),
            );
        }
    }
    for m in messages.iter().filter(|m| m["type"] == "STATE") {
        by_stream.insert(
            m["state"]["stream"]["stream_descriptor"]["name"].to_string(),
            m["state"].clone(),
        );
    }
    Value::Array(by_stream.into_values().collect()).to_string()
}

fn records<'a>(messages: &'a [Value], stream: &str) -> Vec<&'a Value> {
    messages
        .iter()
        .filter(|m| m["type"] == "RECORD" && m["record"]["stream"] == stream)
        .map(|m| &m["record"]["data"])
        .collect()
}

/// A stream of 7 documents read in pages of 3: a STATE after each page.
const SEVEN_IN_PAGES_OF_THREE: [&str; 13] = [
    "STARTED",
    "RUNNING",
    "RECORD",
    "RECORD",
    "RECORD",
    "STATE(3.0)",
    "RECORD",
    "RECORD",
    "RECORD",
    "STATE(3.0)",
    "RECORD",
    "STATE(1.0)",
    "COMPLETE",
];

#[test]
fn full_refresh_checkpoints_every_page_and_ends_complete() {
    let fake = Arc::new(Fake::new(&[("users", 7), ("posts", 0)]));
    let (ok, messages) = run(
        &fake,
        &[("users", "full_refresh"), ("posts", "full_refresh")],
        "",
    );
    assert!(ok);
    let users = of_stream(&messages, "users");
    assert_eq!(kinds(&users), SEVEN_IN_PAGES_OF_THREE);
    assert_eq!(
        last_state(&users),
        json!({"snapshot_cursor": null, "snapshot_has_more": false, "delta_cursor": fake.head()})
    );
    // A stream with nothing in it still gets a final STATE.
    assert_eq!(
        kinds(&of_stream(&messages, "posts")),
        ["STARTED", "STATE(0.0)", "COMPLETE"]
    );
    // Records are the documents plus the CDC fields.
    let first = records(&messages, "users")[0];
    assert_eq!(first["_id"], "users0000");
    assert_eq!(first["_deleted"], false);
    assert_eq!(first["_ab_cdc_lsn"], START + 1);
}

#[test]
fn streams_that_need_a_snapshot_share_one_walk_at_the_reads_timestamp() {
    let fake = Arc::new(Fake::new(&[("a", 4), ("b", 4), ("c", 1)]));
    let (ok, messages) = run(
        &fake,
        &[
            ("a", "incremental"),
            ("b", "incremental"),
            ("c", "full_refresh"),
        ],
        "[]",
    );
    assert!(ok);
    let head = fake.head();
    let calls = fake.calls();
    // One head probe, then one walk over the three tables at that timestamp: Convex's one
    // cached iterator goes on from table to table instead of being built once per table.
    let walk = |cursor: &str| format!("list_snapshot a, b, c {head} {cursor}");
    assert_eq!(
        calls,
        [
            "json_schemas".to_owned(),
            "head".to_owned(),
            walk("None"),
            walk("Some(\"a0002\")"),
            walk("Some(\"b/\")"),
            walk("Some(\"b0002\")"),
            walk("Some(\"c/\")"),
        ]
    );
    // Each stream checkpoints only the pages with its values, in the shape a walk of its
    // table alone has; at the end every stream is at T.
    let snapshot_cursors = |name: &str| -> Vec<Value> {
        of_stream(&messages, name)
            .iter()
            .filter(|m| m["type"] == "STATE")
            .map(|m| m["state"]["stream"]["stream_state"]["snapshot_cursor"].clone())
            .collect()
    };
    assert_eq!(
        snapshot_cursors("a"),
        [json!("a0002"), json!("b/"), Value::Null]
    );
    assert_eq!(
        snapshot_cursors("b"),
        [json!("b0002"), json!("c/"), Value::Null]
    );
    assert_eq!(snapshot_cursors("c"), [Value::Null]);
    for name in ["a", "b"] {
        assert_eq!(
            last_state(&of_stream(&messages, name))["delta_cursor"],
            head
        );
    }
}

/// A read killed in the middle of a walk of several tables: each stream resumes alone from
/// its own last STATE, and the destination ends exactly the deployment, no document twice.
#[test]
fn a_walk_of_several_tables_resumes_stream_by_stream() {
    let fake = Arc::new(Fake::new(&[("a", 5), ("b", 5), ("c", 5)]));
    let streams = [
        ("a", "incremental"),
        ("b", "incremental"),
        ("c", "incremental"),
    ];
    let (ok, messages) = run(&fake, &streams, "[]");
    assert!(ok);
    // Cut after b's first STATE: a is done but not told so, b is mid-table, c not started.
    let cut = messages
        .iter()
        .position(|m| {
            m["type"] == "STATE" && m["state"]["stream"]["stream_descriptor"]["name"] == "b"
        })
        .unwrap();
    let kept = &messages[..=cut];
    let state = state_after(kept, "[]");
    fake.clear_calls();
    let (ok, next) = run(&fake, &streams, &state);
    assert!(ok);
    let head = fake.head();
    let calls = fake.calls();
    assert!(
        calls.contains(&format!("list_snapshot b {head} Some(\"b0002\")")),
        "{calls:?}"
    );
    let mut ids: Vec<String> = kept
        .iter()
        .chain(&next)
        .filter(|m| m["type"] == "RECORD")
        .map(|m| format!("{}", m["record"]["data"]["_id"]))
        .collect();
    let sent = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 15);
    // Nothing of b before its cursor, nothing of a after its last STATE, is sent again.
    assert_eq!(sent, 15, "{ids:?}");
}

#[test]
fn one_change_walk_serves_every_incremental_stream_from_the_oldest_position() {
    let fake = Arc::new(Fake::new(&[("a", 2), ("b", 2), ("c", 2)]));
    let (ok, first) = run(
        &fake,
        &[
            ("a", "incremental"),
            ("b", "incremental"),
            ("c", "incremental"),
        ],
        "",
    );
    assert!(ok);
    let state = state_after(&first, "");
    let t1 = fake.head();
    // Streams a and b are at t1; c is moved ahead (its state saved after a later write).
    for i in 0..6 {
        let table = ["a", "b", "c"][i % 3];
        fake.commit(&[(table, &format!("{table}new{i}"), Some(json!({"n": i})))]);
    }
    let c_pos = fake.head() - 1;
    let state = state.replace(
        &format!(r#""name":"c","namespace":null}},"stream_state":{{"snapshot_cursor":null,"snapshot_has_more":false,"delta_cursor":{t1}"#),
        &format!(r#""name":"c","namespace":null}},"stream_state":{{"snapshot_cursor":null,"snapshot_has_more":false,"delta_cursor":{c_pos}"#),
    );
    assert!(state.contains(&c_pos.to_string()), "{state}");
    fake.calls.lock().unwrap().clear();
    let (ok, second) = run(
        &fake,
        &[
            ("a", "incremental"),
            ("b", "incremental"),
            ("c", "incremental"),
        ],
        &state,
    );
    assert!(ok);
    // One walk over all three tables: 6 rows, 2 a page → 3 requests, from the oldest position.
    let deltas: Vec<_> = fake
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("document_deltas"))
        .collect();
    assert_eq!(deltas.len(), 3, "{deltas:?}");
    assert!(deltas[0].ends_with(&format!("a, b, c {t1}")), "{deltas:?}");
    assert!(!fake.calls().iter().any(|c| c.starts_with("list_snapshot")));
    assert_eq!(records(&second, "a").len(), 2);
    assert_eq!(records(&second, "b").len(), 2);
    // c never receives a change at or before its own position.
    let c = records(&second, "c");
    assert_eq!(c.len(), 1);
    assert_eq!(c[0]["_id"], "cnew5");
    for s in ["a", "b", "c"] {
        assert_eq!(
            last_state(&of_stream(&second, s))["delta_cursor"],
            fake.head()
        );
    }
}

#[test]
fn a_read_sends_each_changed_document_once_at_its_latest_revision() {
    let fake = Arc::new(Fake::new(&[("t", 3)]));
    let (_, first) = run(&fake, &[("t", "incremental")], "");
    let state = state_after(&first, "");
    for v in [11, 12, 13] {
        fake.commit(&[("t", "t0000", Some(json!({"v": v})))]);
    }
    fake.commit(&[("t", "t0001", Some(json!({"v": 1})))]);
    fake.commit(&[("t", "t0001", None)]);
    fake.commit(&[("t", "fresh", Some(json!({"v": 2})))]);
    fake.commit(&[("t", "fresh", None)]);
    let (ok, second) = run(&fake, &[("t", "incremental")], &state);
    assert!(ok);
    let got: Vec<(String, bool, Value)> = records(&second, "t")
        .iter()
        .map(|r| {
            (
                r["_id"].as_str().unwrap().to_owned(),
                r["_deleted"].as_bool().unwrap(),
                r["v"].clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("t0000".to_owned(), false, json!(13)),
            ("t0001".to_owned(), true, Value::Null),
            ("fresh".to_owned(), true, Value::Null),
        ]
    );
    // With every_revision, history destinations get all seven revisions in commit order.
    let mut history = options();
    history.changes.every_revision = true;
    let (ok, all) = run_with(
        &fake,
        catalog_of(&[("t", "incremental")], json!({})),
        &state,
        history,
    );
    assert!(ok);
    assert_eq!(records(&all, "t").len(), 7);
}

#[test]
fn a_full_change_buffer_ends_the_read_at_a_checkpoint_and_the_next_continues() {
    let fake = Arc::new(Fake::new(&[("t", 1)]));
    let (_, first) = run(&fake, &[("t", "incremental")], "");
    let mut state = state_after(&first, "");
    for i in 0..10 {
        fake.commit(&[("t", &format!("d{i}"), Some(json!({"pad": "x".repeat(200)})))]);
    }
    let mut small = options();
    small.changes.buffer_bytes = 700; // two or three documents
    let mut reads = 0;
    let mut seen = 0;
    loop {
        reads += 1;
        let (ok, m) = run_with(
            &fake,
            catalog_of(&[("t", "incremental")], json!({})),
            &state,
            ReadOptions {
                debug: false,
                changes: small.changes,
                ..options()
            },
        );
        assert!(ok);
        seen += records(&m, "t").len();
        state = state_after(&m, &state);
        let at = last_state(&of_stream(&m, "t"))["delta_cursor"]
            .as_i64()
            .unwrap();
        if at == fake.head() {
            break;
        }
        assert!(
            m.iter().any(|l| l["log"]["level"] == "WARN"
                && l["log"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("change_buffer_mb")),
            "a cut read says so"
        );
        assert!(reads < 10);
    }
    assert!(reads > 2, "the budget cut the walk");
    assert_eq!(seen, 10, "every change exactly once across the reads");
}

#[test]
fn a_resumed_snapshot_continues_at_its_own_timestamp_and_joins_the_walk_next_read() {
    let fake = Arc::new(Fake::new(&[("users", 7), ("posts", 2)]));
    let s0 = fake.head();
    fake.commit(&[("users", "users0000", None)]);
    fake.commit(&[("posts", "posts0000", Some(json!({"n": 99})))]);
    let state = format!(
        r#"[{{"type":"STREAM","stream":{{"stream_descriptor":{{"name":"users","namespace":null}},"stream_state":{{"snapshot_cursor":"users0005","snapshot_has_more":true,"delta_cursor":{s0}}}}}}},
            {{"type":"STREAM","stream":{{"stream_descriptor":{{"name":"posts","namespace":null}},"stream_state":{{"delta_cursor":{s0}}}}}}}]"#
    );
    let (ok, messages) = run(
        &fake,
        &[("users", "incremental"), ("posts", "incremental")],
        &state,
    );
    assert!(ok);
    let calls = fake.calls();
    assert_eq!(
        &calls[1..],
        [
            format!("document_deltas posts {s0}"),
            format!("list_snapshot users {s0} Some(\"users0005\")"),
        ]
    );
    assert_eq!(records(&messages, "users").len(), 1);
    assert_eq!(
        last_state(&of_stream(&messages, "users"))["delta_cursor"],
        s0
    );
    let state = state_after(&messages, &state);
    let (ok, next) = run(
        &fake,
        &[("users", "incremental"), ("posts", "incremental")],
        &state,
    );
    assert!(ok);
    let delete = records(&next, "users");
    assert_eq!(delete.len(), 1);
    assert_eq!(delete[0]["_deleted"], true);
    assert_eq!(
        delete[0]["_ab_cdc_deleted_at"],
        delete[0]["_ab_cdc_updated_at"]
    );
    assert!(records(&next, "posts").is_empty());
}

#[test]
fn full_refresh_with_a_finished_state_walks_again() {
    let fake = Arc::new(Fake::new(&[("users", 2)]));
    let state =
        r#"{"users": {"snapshot_cursor": null, "snapshot_has_more": false, "delta_cursor": 5}}"#;
    let (ok, messages) = run(&fake, &[("users", "full_refresh")], state);
    assert!(ok);
    assert_eq!(records(&messages, "users").len(), 2);
}

#[test]
fn expired_positions_heal_with_a_fresh_snapshot() {
    let fake = Arc::new(Fake::new(&[("users", 2), ("posts", 1)]));
    fake.fail_next("/api/document_deltas", codes::INVALID_WINDOW);
    let h = fake.head();
    let state = format!(
        r#"[{{"type":"STREAM","stream":{{"stream_descriptor":{{"name":"users"}},"stream_state":{{"delta_cursor":5}}}}}},
            {{"type":"STREAM","stream":{{"stream_descriptor":{{"name":"posts"}},"stream_state":{{"delta_cursor":{h}}}}}}}]"#
    );
    let (ok, messages) = run(
        &fake,
        &[("users", "incremental"), ("posts", "incremental")],
        &state,
    );
    assert!(ok, "{messages:#?}");
    let warn = messages
        .iter()
        .find(|m| m["log"]["level"] == "WARN")
        .unwrap();
    assert!(warn["log"]["message"]
        .as_str()
        .unwrap()
        .contains("Stream users: the saved position is older"));
    assert_eq!(records(&messages, "users").len(), 2);
    // posts was not too old: it stays in the walk, users re-reads at the walk's end.
    let calls = fake.calls();
    assert_eq!(calls[1], "document_deltas posts, users 5");
    assert_eq!(calls[2], format!("document_deltas posts {h}"));
    assert_eq!(calls[3], format!("list_snapshot users {h} None"));

    for code in [codes::SNAPSHOT_TOO_OLD, codes::INVALID_SNAPSHOT_CURSOR] {
        let fake = Arc::new(Fake::new(&[("users", 2)]));
        fake.fail_next("/api/list_snapshot", code);
        let state = r#"[{"type":"STREAM","stream":{"stream_descriptor":{"name":"users"},"stream_state":{"snapshot_cursor":"users0000","snapshot_has_more":true,"delta_cursor":5}}}]"#;
        let (ok, messages) = run(&fake, &[("users", "incremental")], state);
        assert!(ok, "{code}");
        assert_eq!(records(&messages, "users").len(), 2, "{code}");
        assert!(messages
            .iter()
            .any(|m| m["log"]["level"] == "WARN"
                && m["log"]["message"].as_str().unwrap().contains(code)));
        let calls = fake.calls();
        assert!(
            calls
                .last()
                .unwrap()
                .ends_with(&format!("{} None", fake.head())),
            "the new walk takes a fresh snapshot: {calls:?}"
        );
    }
}

/// A walk that ages past Convex's snapshot limit after it sent documents does not start over
/// in the same read (that would send them twice in one read): it fails, and the next read
/// restarts the table before sending anything.
#[test]
fn a_snapshot_too_old_after_records_fails_the_read_and_heals_the_next() {
    let fake = Arc::new(Fake::new(&[("users", 7)]));
    let streams = [("users", "incremental")];
    fake.fail_next("/api/list_snapshot", "");
    fake.fail_next("/api/list_snapshot", codes::SNAPSHOT_TOO_OLD);
    let (ok, messages) = run(&fake, &streams, "[]");
    assert!(!ok);
    let first = records(&messages, "users").len();
    assert!(first > 0);
    let err = first_error(&messages);
    assert_eq!(err["failure_type"], "transient_error", "{err}");
    assert!(err["message"]
        .as_str()
        .unwrap()
        .starts_with("Stream users: the snapshot is older than Convex keeps (SnapshotTooOld) in the middle of this read"), "{err}");
    let state = state_after(&messages, "[]");
    fake.fail_next("/api/list_snapshot", codes::SNAPSHOT_TOO_OLD);
    let (ok, next) = run(&fake, &streams, &state);
    assert!(ok, "{next:#?}");
    assert!(next.iter().any(|m| m["log"]["level"] == "WARN"));
    assert_eq!(records(&next, "users").len(), 7);
}

#[test]
fn a_failing_stream_ends_incomplete_and_the_others_finish() {
    let mut fake = Fake::new(&[("users", 2), ("posts", 2), ("tags", 2)]);
    fake.broken_table = Some("posts");
    let fake = Arc::new(fake);
    let streams = [
        ("users", "full_refresh"),
        ("posts", "full_refresh"),
        ("tags", "full_refresh"),
    ];
    let (ok, messages) = run(&fake, &streams, "");
    assert!(!ok);
    let posts = kinds(&of_stream(&messages, "posts"));
    assert_eq!(posts, ["STARTED", "INCOMPLETE", "ERROR"]);
    let err = first_error(&messages);
    assert_eq!(err["failure_type"], "transient_error", "{err}");
    assert!(err["message"]
        .as_str()
        .unwrap()
        .starts_with("Stream posts: /api/list_snapshot: 500: InternalServerError"));
    // The walk of the three stopped at posts; the others went on alone and finished.
    for name in ["users", "tags"] {
        assert_eq!(
            kinds(&of_stream(&messages, name)).last().unwrap(),
            "COMPLETE"
        );
        assert_eq!(records(&messages, name).len(), 2, "{name}");
    }
    assert!(messages.iter().any(|m| m["log"]["level"] == "WARN"
        && m["log"]["message"]
            .as_str()
            .unwrap()
            .contains("go on alone from their last checkpoint")));

    // A failure that belongs to no stream (before any value): every stream still finishes.
    let fake = Arc::new(Fake::new(&[("users", 2), ("posts", 2)]));
    fake.fail_next("/api/list_snapshot", "BadQueryArgs");
    let (ok, messages) = run(&fake, &streams[..2], "");
    assert!(ok, "{messages:#?}");
    assert_eq!(records(&messages, "users").len(), 2);
    assert_eq!(records(&messages, "posts").len(), 2);

    // A single stream fails as it always did.
    let fake = Arc::new(Fake::new(&[("users", 2)]));
    fake.fail_next("/api/list_snapshot", "BadQueryArgs");
    let (ok, messages) = run(&fake, &streams[..1], "");
    assert!(!ok);
    assert!(first_error(&messages)["message"]
        .as_str()
        .unwrap()
        .starts_with("Stream users: /api/list_snapshot: 400: BadQueryArgs"));
}

#[test]
fn a_server_that_repeats_a_snapshot_cursor_fails_the_stream_instead_of_looping() {
    let mut fake = Fake::new(&[("users", 9), ("posts", 1)]);
    fake.stuck_cursor = Some("users0002");
    let fake = Arc::new(fake);
    let (ok, messages) = run(&fake, &[("users", "full_refresh")], "");
    assert!(!ok);
    assert!(first_error(&messages)["message"]
        .as_str()
        .unwrap()
        .contains("already answered"));
    // The first page, then the stuck cursor once more: no third round of the same records.
    assert_eq!(records(&messages, "users").len(), 6);
}

#[test]
fn a_deltas_cursor_that_does_not_advance_or_goes_negative_is_never_saved() {
    let h = START + 2;
    let state = format!(
        r#"[{{"type":"STREAM","stream":{{"stream_descriptor":{{"name":"t"}},"stream_state":{{"delta_cursor":{h}}}}}}}]"#
    );
    for bad in [-7, START - 10, h] {
        let mut fake = Fake::new(&[("t", 2)]);
        fake.deltas_cursor = Some(bad);
        fake.rows = 1;
        let fake = Arc::new(fake);
        for i in 0..3 {
            fake.commit(&[("t", &format!("x{i}"), Some(json!({"v": i})))]);
        }
        let (ok, messages) = run(&fake, &[("t", "incremental")], &state);
        let states: Vec<i64> = of_stream(&messages, "t")
            .iter()
            .filter(|m| m["type"] == "STATE")
            .map(|m| {
                m["state"]["stream"]["stream_state"]["delta_cursor"]
                    .as_i64()
                    .unwrap()
            })
            .collect();
        assert!(!ok, "{bad}");
        assert!(
            states.is_empty(),
            "{bad}: nothing of a broken walk is checkpointed: {states:?}"
        );
        assert!(first_error(&messages)["message"]
            .as_str()
            .unwrap()
            .contains("does not advance"));
    }
}

#[test]
fn a_backend_ignoring_the_selection_fails_loudly() {
    let mut fake = Fake::new(&[("users", 2), ("posts", 2)]);
    fake.ignore_filter = true;
    let fake = Arc::new(fake);
    let (ok, messages) = run(&fake, &[("users", "full_refresh")], "");
    assert!(!ok);
    assert!(first_error(&messages)["message"]
        .as_str()
        .unwrap()
        .contains("#302"));
    assert!(messages
        .iter()
        .filter(|m| m["type"] == "RECORD")
        .all(|m| m["record"]["data"]["_table"] == "users"));
    // The change walk too.
    let state = format!(
        r#"[{{"type":"STREAM","stream":{{"stream_descriptor":{{"name":"users"}},"stream_state":{{"delta_cursor":{START}}}}}}}]"#
    );
    let (ok, messages) = run(&fake, &[("users", "incremental")], &state);
    assert!(!ok);
    assert!(first_error(&messages)["message"]
        .as_str()
        .unwrap()
        .contains("#302"));
    assert!(
        records(&messages, "users").is_empty(),
        "nothing of a bad walk is sent"
    );
}

#[test]
fn a_failure_before_any_stream_ends_every_stream_incomplete() {
    let mut fake = Fake::new(&[("users", 2)]);
    fake.schemas_fail = true;
    let (ok, messages) = run(
        &Arc::new(fake),
        &[("users", "incremental"), ("gone", "incremental")],
        "",
    );
    assert!(!ok);
    let k: Vec<String> = kinds(
        &messages
            .iter()
            .filter(|m| m["type"] != "LOG")
            .collect::<Vec<_>>(),
    );
    assert_eq!(
        k,
        ["STARTED", "STARTED", "INCOMPLETE", "INCOMPLETE", "ERROR"]
    );
    let err = &messages.last().unwrap()["trace"]["error"];
    assert_eq!(err["failure_type"], "config_error");
    assert!(err["message"]
        .as_str()
        .unwrap()
        .contains("generate a deploy key"));
}

#[test]
fn a_deployment_json_schemas_cannot_describe_is_read_through_its_column_names() {
    let mut fake = Fake::new(&[("users", 2)]);
    fake.undescribable = true;
    let fake = Arc::new(fake);
    let (ok, messages) = run(&fake, &[("users", "full_refresh")], "");
    assert!(ok);
    assert_eq!(records(&messages, "users").len(), 2);
    let warn: Vec<_> = messages
        .iter()
        .filter(|m| m["log"]["level"] == "WARN")
        .collect();
    assert_eq!(warn.len(), 1);
    let text = warn[0]["log"]["message"].as_str().unwrap();
    assert!(
        text.contains("NoSchemaForExport") && text.contains("schema.ts"),
        "{text}"
    );
    assert_eq!(fake.calls()[0], "table_columns");
}

#[test]
fn fewer_configured_properties_request_only_those_columns() {
    let fake = Arc::new(Fake::new(&[("users", 2)]));
    fake.commit(&[("users", "users0000", Some(json!({"n": 1, "x": "secret"})))]);
    let schema = json!({"type":"object","properties":{"_id":{"type":"string"},"x":{"type":"string"},
        "_ab_cdc_lsn":{"type":"number"}}});
    let (ok, messages) = run_with(
        &fake,
        catalog_of(&[("users", "full_refresh")], schema),
        "",
        options(),
    );
    assert!(ok);
    let r = records(&messages, "users");
    assert_eq!(r[0]["x"], "secret");
    assert!(
        r[0].get("n").is_none() && r[0].get("_creationTime").is_none(),
        "{}",
        r[0]
    );
    assert!(r[0].get("_ab_cdc_lsn").is_some());
}

#[test]
fn unusable_state_or_stream_fails_only_that_stream() {
    let fake = Arc::new(Fake::new(&[("users", 1), ("posts", 1)]));
    let state = r#"[{"type":"STREAM","stream":{"stream_descriptor":{"name":"users"},"stream_state":{"delta_cursor":"yesterday"}}}]"#;
    let (ok, messages) = run(
        &fake,
        &[
            ("users", "incremental"),
            ("posts", "incremental"),
            ("/bad", "incremental"),
        ],
        state,
    );
    assert!(!ok);
    for s in ["users", "/bad"] {
        assert_eq!(
            kinds(&of_stream(&messages, s)),
            ["STARTED", "INCOMPLETE", "ERROR"]
        );
    }
    assert_eq!(
        kinds(&of_stream(&messages, "posts")).last().unwrap(),
        "COMPLETE"
    );
}

#[test]
fn a_table_gone_from_the_deployment_fails_its_stream_only() {
    let fake = Arc::new(Fake::new(&[("users", 1)]));
    // `ghost` was synced before (it has a state): its table went.
    let synced = r#"[{"type":"STREAM","stream":{"stream_descriptor":{"name":"ghost"},"stream_state":{"snapshot_cursor":null,"snapshot_has_more":false,"delta_cursor":5}}}]"#;
    let (ok, messages) = run(
        &fake,
        &[("users", "incremental"), ("ghost", "incremental")],
        synced,
    );
    assert!(!ok);
    assert_eq!(
        kinds(&of_stream(&messages, "ghost")),
        ["STARTED", "INCOMPLETE", "ERROR"]
    );
    let err = first_error(&messages);
    assert_eq!(err["failure_type"], "config_error");
    assert!(err["message"]
        .as_str()
        .unwrap()
        .contains("refresh the source schema"));
    // Never synced: a name that is no table, most likely mistyped.
    let (ok, typo) = run(
        &fake,
        &[("users", "incremental"), ("usres", "incremental")],
        "",
    );
    assert!(!ok);
    let err = first_error(&typo);
    assert_eq!(err["failure_type"], "config_error");
    let text = err["message"].as_str().unwrap();
    assert!(text.contains(r#"did you mean "users"?"#), "{text}");
    assert_eq!(
        kinds(&of_stream(&messages, "users")).last().unwrap(),
        "COMPLETE"
    );
    assert!(fake.calls().iter().all(|c| !c.contains("ghost")));
}

/// What a destination keeps of a read that was killed: each stream's records up to its last
/// STATE (destinations commit at checkpoints; later records may or may not survive, and are
/// sent again by the next read).
fn committed(delivered: &[Value]) -> Vec<Value> {
    let stream_of = |m: &Value| {
        if m["type"] == "RECORD" {
            m["record"]["stream"].as_str().map(str::to_owned)
        } else {
            None
        }
    };
    let mut last_state: BTreeMap<String, usize> = BTreeMap::new();
    for (i, m) in delivered.iter().enumerate() {
        if let Some(name) = m["state"]["stream"]["stream_descriptor"]["name"].as_str() {
            last_state.insert(name.to_owned(), i);
        }
    }
    delivered
        .iter()
        .enumerate()
        .filter(|(i, m)| match stream_of(m) {
            Some(s) => last_state.get(&s).is_some_and(|l| i < l),
            None => true,
        })
        .map(|(_, m)| m.clone())
        .collect()
}

/// A destination that merges each read as PyAirbyte's caches do: one merge per read keyed by
/// `_id`, no deduplication. A read that sends one `_id` twice is a failure in itself.
#[derive(Default, Debug)]
struct MergingDestination {
    tables: BTreeMap<String, BTreeMap<String, Value>>,
}

impl MergingDestination {
    fn merge(&mut self, messages: &[Value]) {
        let mut batch: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
        for m in messages.iter().filter(|m| m["type"] == "RECORD") {
            let stream = m["record"]["stream"].as_str().unwrap().to_owned();
            let data = m["record"]["data"].clone();
            let id = data["_id"].as_str().unwrap().to_owned();
            let prev = batch
                .entry(stream.clone())
                .or_default()
                .insert(id.clone(), data);
            assert!(prev.is_none(), "{stream}: _id {id} sent twice in one read");
        }
        for (stream, rows) in batch {
            self.tables.entry(stream).or_default().extend(rows);
        }
    }

    /// The live rows of a stream: id → (`_ts`, `v`).
    fn live(&self, stream: &str) -> BTreeMap<String, (i64, Value)> {
        self.tables
            .get(stream)
            .into_iter()
            .flatten()
            .filter(|(_, r)| r["_deleted"] == false)
            .map(|(id, r)| (id.clone(), (r["_ts"].as_i64().unwrap(), r["v"].clone())))
            .collect()
    }
}

/// Random transactions between reads (the same document many times, update then delete,
/// insert then delete), reads of mixed positions (new streams, resets, full refresh, small
/// change buffers, reads cut off after a random message and resumed from their last STATE):
/// after each completed read the destination equals the fake's documents at each stream's T.
#[test]
fn randomized_reads_leave_the_destination_exactly_the_deployment() {
    randomized(Api::StreamingExport);
}

/// The same on the Data Sync API, with writes while it reads (so snapshots are caught up
/// through the log and documents come again at newer revisions) and a freshness window of a
/// few commits (so log pages come in the middle of snapshots).
#[test]
fn randomized_data_sync_reads_leave_the_destination_exactly_the_deployment() {
    randomized(Api::DataSync);
}

fn randomized(api: Api) {
    const TABLES: [&str; 3] = ["a", "b", "c"];
    let mut compared = 0;
    // ORACLE_SEEDS=n runs more seeds by hand.
    let seeds: u64 = std::env::var("ORACLE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let first: u64 = std::env::var("ORACLE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    for seed in first..first + seeds {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut fake = Fake::new(&[("a", 3), ("b", 0), ("c", 5)]);
        if api == Api::DataSync {
            fake.fresh = rng.i64(1..6);
            *fake.churn.get_mut().unwrap() = Some(fastrand::Rng::with_seed(seed + 1000));
        }
        let fake = Arc::new(fake);
        let mut ids: Vec<(String, String)> = Vec::new();
        for t in TABLES {
            for (id, _) in fake.docs_at(t, fake.head()) {
                ids.push((t.to_owned(), id));
            }
        }
        let mut dest = MergingDestination::default();
        let mut state = String::new();
        let mut next_id = 0;
        for round in 0..8 {
            for _ in 0..rng.usize(0..12) {
                let mut writes: Vec<(String, String, Option<Value>)> = Vec::new();
                for _ in 0..rng.usize(1..4) {
                    let t = TABLES[rng.usize(..3)].to_owned();
                    let roll = rng.u8(..10);
                    if roll < 3 || ids.is_empty() {
                        next_id += 1;
                        let id = format!("n{next_id:05}");
                        ids.push((t.clone(), id.clone()));
                        writes.push((t, id, Some(json!({"v": rng.u32(..1000)}))));
                    } else {
                        let (t, id) = ids[rng.usize(..ids.len())].clone();
                        let value = (roll < 8).then(|| json!({"v": rng.u32(..1000)}));
                        writes.push((t, id, value));
                    }
                }
                let w: Vec<(&str, &str, Option<Value>)> = writes
                    .iter()
                    .map(|(t, i, v)| (t.as_str(), i.as_str(), v.clone()))
                    .collect();
                fake.commit(&w);
            }
            // Stream c is full refresh in some rounds; b joins late; a is reset once.
            let c_mode = if round % 3 == 2 {
                "full_refresh"
            } else {
                "incremental"
            };
            let mut streams = vec![("a", "incremental"), ("c", c_mode)];
            if round >= 2 {
                streams.push(("b", "incremental"));
            }
            if round == 5 {
                let mut v: Value = serde_json::from_str(&state).unwrap();
                v.as_array_mut()
                    .unwrap()
                    .retain(|s| s["stream"]["stream_descriptor"]["name"] != "a");
                state = v.to_string();
                dest.tables.remove("a");
            }
            let mut opts = ReadOptions { api, ..options() };
            if rng.bool() {
                opts.changes.buffer_bytes = rng.usize(150..2000);
            }
            opts.changes.checkpoint_records = rng.usize(1..6);
            let catalog = || catalog_of(&streams, json!({}));
            let (ok, messages) = run_with(&fake, catalog(), &state, opts.clone());
            assert!(ok, "seed {seed} round {round}");
            // Overwrite mode: a full refresh replaces the table with what this read sends.
            if c_mode == "full_refresh" {
                dest.tables.remove("c");
            }
            let kill = rng.u8(..3) == 0 && messages.len() > 2;
            if std::env::var("ORACLE_DEBUG").is_ok() {
                eprintln!(
                    "seed {seed} round {round} kill {kill} buffer {} state {state}",
                    opts.changes.buffer_bytes
                );
                for m in &messages {
                    eprintln!("  {m}");
                }
            }
            let messages = if kill {
                // Killed after a random message: what got out is merged, and the next read
                // resumes from the last STATE that got out.
                let cut = rng.usize(1..messages.len());
                let delivered = &messages[..cut];
                dest.merge(&committed(delivered));
                state = state_after(delivered, &state);
                let (ok, resumed) = run_with(&fake, catalog(), &state, opts.clone());
                assert!(ok, "seed {seed} round {round} resumed");
                // A full refresh that had finished before the kill starts over: its new
                // snapshot replaces what the killed attempt sent.
                let c_finished = delivered.iter().any(|m| {
                    m["state"]["stream"]["stream_descriptor"]["name"] == "c"
                        && m["state"]["stream"]["stream_state"]["snapshot_has_more"] == false
                });
                if c_mode == "full_refresh" && c_finished {
                    dest.tables.remove("c");
                }
                resumed
            } else {
                messages
            };
            dest.merge(&messages);
            state = state_after(&messages, &state);
            for (stream, _) in &streams {
                let run_states = of_stream(&messages, stream);
                // A data sync stopped in the middle of its snapshot (before a page that would
                // repeat a document) is consistent at no timestamp yet: the next reads are.
                let Some(t) = last_state(&run_states)["delta_cursor"].as_i64() else {
                    assert_eq!(api, Api::DataSync, "seed {seed} round {round} {stream}");
                    continue;
                };
                compared += 1;
                let truth: BTreeMap<String, (i64, Value)> = fake
                    .docs_at(stream, t)
                    .into_iter()
                    .map(|(id, (ts, v))| (id, (ts, v["v"].clone())))
                    .collect();
                assert_eq!(
                    dest.live(stream),
                    truth,
                    "seed {seed} round {round} stream {stream} at {t}"
                );
            }
        }
    }
    // Most rounds end consistent (a stop mid-snapshot is the exception).
    assert!(compared > seeds * 8 * 2, "only {compared} comparisons");
}

fn logs<'a>(messages: &'a [Value], level: &str) -> Vec<&'a str> {
    messages
        .iter()
        .filter(|m| m["log"]["level"] == level)
        .map(|m| m["log"]["message"].as_str().unwrap())
        .collect()
}

fn run_data_sync(fake: &Arc<Fake>, streams: &[(&str, &str)], state: &str) -> (bool, Vec<Value>) {
    run_with(
        fake,
        catalog_of(streams, json!({})),
        state,
        data_sync_options(),
    )
}

#[test]
fn a_cold_data_sync_sends_the_table_once_and_saves_a_versioned_cursor() {
    let fake = Arc::new(Fake::new(&[("users", 7)]));
    let (ok, messages) = run_data_sync(&fake, &[("users", "incremental")], "");
    assert!(ok);
    assert_eq!(records(&messages, "users").len(), 7);
    let users = of_stream(&messages, "users");
    // One STATE per by-id page (3 documents each), the last one consistent at the head.
    assert_eq!(kinds(&users), SEVEN_IN_PAGES_OF_THREE);
    let state = last_state(&users);
    assert_eq!(state["state_version"], 2);
    assert_eq!(state["api"], "data_sync");
    assert_eq!(state["delta_cursor"].as_i64(), Some(fake.head()));
    assert!(state["data_sync_cursor"]
        .as_str()
        .unwrap()
        .starts_with(SEAL));
    // Nothing new: one page, no records.
    let (ok, again) = run_data_sync(
        &fake,
        &[("users", "incremental")],
        &state_after(&messages, ""),
    );
    assert!(ok);
    assert!(records(&again, "users").is_empty());
    assert!(fake
        .calls()
        .iter()
        .all(|c| !c.contains("list_snapshot") && !c.contains("document_deltas")));
}

/// Switching a connection to `api: data_sync`: its streaming export position is converted
/// by Convex, so only what changed since is read, and the conversion happens once.
#[test]
fn a_streaming_export_state_moves_to_data_sync_without_a_reread() {
    let fake = Arc::new(Fake::new(&[("users", 5)]));
    let (ok, first) = run(&fake, &[("users", "incremental")], "");
    assert!(ok);
    let legacy = state_after(&first, "");
    fake.commit(&[("users", "users0001", Some(json!({"n": 100})))]);
    fake.commit(&[("users", "users0002", None)]);
    let (ok, moved) = run_data_sync(&fake, &[("users", "incremental")], &legacy);
    assert!(ok);
    let r = records(&moved, "users");
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(
        (r[0]["_id"].as_str(), r[0]["n"].as_i64()),
        (Some("users0001"), Some(100))
    );
    assert_eq!(
        (r[1]["_id"].as_str(), r[1]["_deleted"].as_bool()),
        (Some("users0002"), Some(true))
    );
    assert!(logs(&moved, "INFO")
        .iter()
        .any(|l| l.contains("nothing is read again")));
    let calls = fake.calls();
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.starts_with("cursor_from_deltas"))
            .count(),
        1
    );
    let saved = state_after(&moved, &legacy);
    assert!(saved.contains("\"api\":\"data_sync\""));
    let (ok, next) = run_data_sync(&fake, &[("users", "incremental")], &saved);
    assert!(ok && records(&next, "users").is_empty());
    assert_eq!(
        fake.calls()
            .iter()
            .filter(|c| c.starts_with("cursor_from_deltas"))
            .count(),
        1,
        "converted once"
    );
    // And back: the data sync's consistent timestamp is a document_deltas position.
    fake.commit(&[("users", "users0003", Some(json!({"n": 7})))]);
    let (ok, back) = run(&fake, &[("users", "incremental")], &saved);
    assert!(ok);
    let r = records(&back, "users");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["_id"], "users0003");
    assert!(logs(&back, "INFO")
        .iter()
        .any(|l| l.contains("continues from that timestamp")));
}

#[test]
fn a_position_convex_cannot_convert_starts_a_new_sync_and_says_what_it_means() {
    let fake = Arc::new(Fake::new(&[("users", 4)]));
    let (ok, first) = run(&fake, &[("users", "incremental")], "");
    assert!(ok);
    fake.fail_next("/api/data_sync_cursor_from_deltas", "DataSyncCursorExpired");
    let (ok, moved) = run_data_sync(&fake, &[("users", "incremental")], &state_after(&first, ""));
    assert!(ok);
    assert_eq!(records(&moved, "users").len(), 4, "read again from scratch");
    let warn = logs(&moved, "WARN");
    assert_eq!(warn.len(), 1, "{warn:?}");
    assert!(
        warn[0].contains("DataSyncCursorExpired") && warn[0].contains("force_full_refresh"),
        "{}",
        warn[0]
    );
}

#[test]
fn an_expired_cursor_restarts_the_sync_with_a_warning() {
    let fake = Arc::new(Fake::new(&[("users", 4)]));
    let (ok, first) = run_data_sync(&fake, &[("users", "incremental")], "");
    assert!(ok);
    *fake.expired_below.lock().unwrap() = fake.head();
    fake.commit(&[("users", "users9999", Some(json!({"n": 9})))]);
    let (ok, again) = run_data_sync(&fake, &[("users", "incremental")], &state_after(&first, ""));
    assert!(ok);
    assert_eq!(records(&again, "users").len(), 5, "read again from scratch");
    let warn = logs(&again, "WARN");
    assert!(warn.len() == 1 && warn[0].contains("expired"), "{warn:?}");
    assert_eq!(
        kinds(&of_stream(&again, "users")).last().unwrap(),
        "COMPLETE"
    );
}

#[test]
fn a_tampered_cursor_fails_its_stream_with_what_to_do() {
    let fake = Arc::new(Fake::new(&[("users", 2), ("posts", 2)]));
    let state = r#"[{"type":"STREAM","stream":{"stream_descriptor":{"name":"users"},"stream_state":{"state_version":2,"api":"data_sync","data_sync_cursor":"01deadbeef","delta_cursor":null}}}]"#;
    let (ok, messages) = run_data_sync(
        &fake,
        &[("users", "incremental"), ("posts", "incremental")],
        state,
    );
    assert!(!ok);
    assert_eq!(
        kinds(&of_stream(&messages, "users")),
        ["STARTED", "INCOMPLETE", "ERROR"]
    );
    let err = first_error(&messages);
    assert_eq!(err["failure_type"], "config_error");
    let text = err["message"].as_str().unwrap();
    assert!(
        text.contains("InvalidDataSyncCursor")
            && text.contains("deployment_url")
            && text.contains("refresh"),
        "{text}"
    );
    assert_eq!(records(&messages, "posts").len(), 2);
}

/// A document that changes while its table is snapshotted comes again at its new revision.
/// A busy first sync still goes to the end in one read: the snapshot streams out, and a
/// document this read already sent is deferred to the next read (never sent twice in one).
#[test]
fn a_busy_first_data_sync_finishes_in_one_read_and_never_sends_a_document_twice() {
    let mut deferred = 0;
    for seed in 0..10 {
        let mut fake = Fake::new(&[("t", 30)]);
        fake.fresh = 1;
        *fake.churn.get_mut().unwrap() = Some(fastrand::Rng::with_seed(seed));
        let fake = Arc::new(fake);
        let initial: Vec<String> = fake.docs_at("t", fake.head()).into_keys().collect();
        let mut state = String::new();
        let mut dest = MergingDestination::default();
        for read in 0..6 {
            if read == 5 {
                // Writes stop: the next read catches up, and the copy is exact.
                *fake.churn.lock().unwrap() = None;
            }
            let (ok, m) = run_data_sync(&fake, &[("t", "incremental")], &state);
            assert!(ok);
            dest.merge(&m); // panics on an _id sent twice in one read
            if read == 0 {
                // Every document that existed when the sync started was walked in this read
                // (unless a writer deleted it first).
                let live_now = fake.docs_at("t", fake.head());
                let sent = dest.tables.get("t").map(|t| t.len()).unwrap_or(0);
                let kept = initial
                    .iter()
                    .filter(|id| live_now.contains_key(*id))
                    .count();
                assert!(
                    sent >= kept,
                    "seed {seed}: the first read sent {sent} of {kept}"
                );
            }
            deferred += logs(&m, "INFO")
                .iter()
                .filter(|l| l.contains("changes came for documents this read had already sent"))
                .count();
            state = state_after(&m, &state);
            if let Some(t) = last_state(&of_stream(&m, "t"))["delta_cursor"].as_i64() {
                let truth: BTreeMap<String, (i64, Value)> = fake
                    .docs_at("t", t)
                    .into_iter()
                    .map(|(id, (ts, v))| (id, (ts, v["v"].clone())))
                    .collect();
                assert_eq!(dest.live("t"), truth, "seed {seed} read {read}");
            } else {
                assert!(
                    read < 5,
                    "seed {seed}: the read without writes ends consistent"
                );
            }
        }
    }
    assert!(deferred > 0, "the churn never made a read defer a document");
}

#[test]
fn every_revision_on_data_sync_sends_each_revision_with_a_state_per_page() {
    let fake = Arc::new(Fake::new(&[("t", 2)]));
    let (ok, first) = run_data_sync(&fake, &[("t", "incremental")], "");
    assert!(ok);
    fake.commit(&[("t", "t0000", Some(json!({"v": 1})))]);
    fake.commit(&[("t", "t0000", Some(json!({"v": 2})))]);
    let mut opts = data_sync_options();
    opts.changes.every_revision = true;
    let (ok, m) = run_with(
        &fake,
        catalog_of(&[("t", "incremental")], json!({})),
        &state_after(&first, ""),
        opts,
    );
    assert!(ok);
    let r = records(&m, "t");
    assert_eq!(
        r.iter()
            .map(|d| d["v"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2]
    );
}

/// A stream saved in the middle of a `list_snapshot` walk finishes it there (nothing read
/// twice), then moves to Data Sync on the next read.
#[test]
fn a_legacy_snapshot_in_progress_finishes_before_moving_to_data_sync() {
    let fake = Arc::new(Fake::new(&[("t", 7)]));
    let (ok, first) = run(&fake, &[("t", "incremental")], "");
    assert!(ok);
    let mid = first
        .iter()
        .find(|m| m["state"]["stream"]["stream_state"]["snapshot_has_more"] == true)
        .unwrap();
    let state = Value::Array(vec![mid["state"].clone()]).to_string();
    let (ok, rest) = run_data_sync(&fake, &[("t", "incremental")], &state);
    assert!(ok);
    assert_eq!(records(&rest, "t").len(), 4, "the rest of the walk");
    assert!(fake.calls().iter().all(|c| !c.starts_with("data_sync")));
    let (ok, next) = run_data_sync(&fake, &[("t", "incremental")], &state_after(&rest, &state));
    assert!(ok && records(&next, "t").is_empty());
    assert!(fake
        .calls()
        .iter()
        .any(|c| c.starts_with("cursor_from_deltas")));
}

/// A long read says how it is doing (every 15 s in a real read; here at every chance): records
/// so far and their rate, and on Data Sync the sync's own status.
#[test]
fn long_reads_log_their_progress_on_both_apis() {
    let fake = Arc::new(Fake::new(&[("a", 7), ("b", 4)]));
    let often = |api| ReadOptions {
        api,
        progress_every: std::time::Duration::ZERO,
        ..options()
    };
    let catalog = || catalog_of(&[("a", "incremental"), ("b", "full_refresh")], json!({}));
    let (ok, legacy) = run_with(&fake, catalog(), "", often(Api::StreamingExport));
    assert!(ok);
    let info = logs(&legacy, "INFO");
    assert!(
        info.iter()
            .any(|l| l.starts_with("Stream a: list_snapshot walk at") && l.contains("records/s")),
        "{info:?}"
    );
    let (ok, synced) = run_with(&fake, catalog(), "", often(Api::DataSync));
    assert!(ok);
    let info = logs(&synced, "INFO");
    assert!(
        info.iter()
            .any(|l| l.starts_with("Stream a: Data Sync snapshotting; ")
                && l.contains("values received")),
        "{info:?}"
    );
    assert!(
        info.iter()
            .any(|l| l.starts_with("Stream a: Data Sync up to date at ")),
        "{info:?}"
    );
    // With Convex's own numbers from list_active_syncs.
    assert!(
        info.iter().any(|l| l.starts_with("Stream a: Data Sync")
            && l.contains("; Convex reports: up to date at")
            && l.contains("documents synced, 1 tables")),
        "{info:?}"
    );
    // A real read does not chatter: within 15 s, one line where the walk ended.
    let (ok, quiet) = run_data_sync(&fake, &[("a", "incremental")], "");
    assert!(ok);
    let progress: Vec<&str> = logs(&quiet, "INFO")
        .into_iter()
        .filter(|l| l.contains("values received"))
        .collect();
    assert_eq!(progress.len(), 1, "{progress:?}");
    assert!(progress[0].starts_with("Stream a: Data Sync up to date at "));
}
