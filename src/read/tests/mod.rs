//! The read engine (`read::read`) against the in-process Convex emulator, reached through the
//! real HTTP client: the one model of Convex every Rust test reads. These tests drive the
//! engine directly, with pages of 3 documents and 2 log rows, options the binary does not
//! expose, and the engine's calls recorded; `tests/` runs the real binary.
//!
//! - `walks`: the shape of the walks (one snapshot walk, one change walk, what each asks);
//! - `checkpoints`: the STATEs of a read, and reads resumed from them;
//! - `healing`: positions Convex no longer serves, read again from a fresh snapshot;
//! - `failures`: failures end their own stream only, with what to do; broken servers;
//! - `data_sync`: the Data Sync API (cursors, conversions, busy syncs, progress lines);
//! - `oracle`: randomized reads on both APIs, replayed into a merging destination.
//!
//! Convex walks tables in tablet-id order: the harness (`Emu`) creates a test's tables so that
//! their tablet ids sort as their names do, and the walk order is the name order the
//! assertions read. Retries are off (`client.rs`): an injected fault fails the one call it hits.

mod checkpoints;
mod client;
mod data_sync;
mod failures;
mod healing;
mod oracle;
mod walks;

/// The merging destination and its comparison with the emulator, shared with `tests/`.
#[path = "../../../tests/common/oracle.rs"]
mod destination;

use std::sync::Arc;

use convex_emulator::{Config, Deployment, EmulatorServer, FaultRule, Settings, Transaction};
use serde_json::{json, Value};

use super::*;
use crate::output::SharedBuffer;
use client::Client;
pub use destination::{state_after, MergingDestination};

/// Documents per list_snapshot page and per data sync page.
const PAGE: usize = 3;
/// Log rows per document_deltas page.
const ROWS: usize = 2;

/// An emulated deployment, the client the engine reads it through, and the runtime reads run
/// on (one for the client's whole life: its connections belong to it).
struct Emu {
    server: EmulatorServer,
    rt: tokio::runtime::Runtime,
    api: Arc<Client>,
}

impl Emu {
    /// A deployment with `tables` (walked in name order), each with documents `{"n": i}`,
    /// committed one by one.
    fn new(tables: &[(&str, usize)]) -> Emu {
        let server = EmulatorServer::start(Config {
            settings: Settings {
                snapshot_page_limit: PAGE,
                deltas_page_limit: ROWS,
                data_sync_page_entries: PAGE,
                data_sync_progress_write_interval_ms: 0,
                ..Settings::default()
            },
            ..Config::default()
        })
        .expect("the emulator starts");
        let api = Arc::new(Client::new(&server, server.access_key()));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let emu = Emu { server, rt, api };
        let mut names: Vec<&str> = tables.iter().map(|(t, _)| *t).collect();
        names.sort();
        for name in names {
            emu.create_last(name);
        }
        for (table, n) in tables {
            for i in 0..*n {
                emu.insert(table, json!({ "n": i }));
            }
        }
        emu
    }

    /// Creates `table` with a tablet id above every other table's (drawing again until it is),
    /// so it is walked last.
    fn create_last(&self, table: &str) {
        loop {
            let others: Vec<String> = self.dep().tables().into_iter().map(|t| t.tablet).collect();
            self.dep().create_table("", table).unwrap();
            if others.iter().all(|t| *t < self.tablet(table)) {
                return;
            }
            self.dep().delete_table("", table).unwrap();
        }
    }

    /// Reads with another deploy key from now on.
    fn use_key(&mut self, key: &str) {
        self.api = Arc::new(Client::new(&self.server, key));
    }

    fn dep(&self) -> &Deployment {
        self.server.deployment()
    }

    fn head(&self) -> i64 {
        self.dep().head()
    }

    fn tablet(&self, table: &str) -> String {
        let t = self.dep().tables().into_iter().find(|t| t.table == table);
        t.expect("a table").tablet
    }

    /// The live documents of `table`, in walk (`_id`) order.
    fn docs(&self, table: &str) -> Vec<Value> {
        self.dep().live_documents("", table)
    }

    /// The `_id`s of `table`'s live documents, in walk order.
    fn ids(&self, table: &str) -> Vec<String> {
        let docs = self.docs(table);
        docs.iter()
            .map(|d| d["_id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The list_snapshot cursor after document `id` of `table`.
    fn cursor(&self, table: &str, id: &str) -> String {
        json!({"tablet": self.tablet(table), "id": id}).to_string()
    }

    /// Whether `cursor` is the start of `table` (its tablet, before every document).
    fn starts(&self, cursor: &Value, table: &str) -> bool {
        let Some(c) = cursor.as_str() else {
            return false;
        };
        let c: Value = serde_json::from_str(c).unwrap();
        let id = c["id"].as_str().unwrap();
        c["tablet"] == self.tablet(table) && self.ids(table).iter().all(|d| id < d.as_str())
    }

    /// Commits one transaction; returns its timestamp.
    fn commit(
        &self,
        f: impl FnOnce(&mut Transaction) -> Result<(), convex_emulator::Error>,
    ) -> i64 {
        self.dep().transaction(f).unwrap()
    }

    /// Inserts `fields` into `table`, alone in a commit; returns the new `_id`.
    fn insert(&self, table: &str, fields: Value) -> String {
        let (_, id) = self
            .dep()
            .transaction_with(|tx| tx.insert("", table, encoded(&fields)))
            .unwrap();
        id
    }

    /// Replaces the fields of document `id`, alone in a commit.
    fn replace(&self, table: &str, id: &str, fields: Value) -> i64 {
        self.commit(|tx| tx.replace("", table, id, encoded(&fields)))
    }

    /// Deletes document `id`, alone in a commit.
    fn delete(&self, table: &str, id: &str) -> i64 {
        self.commit(|tx| tx.delete("", table, id))
    }

    fn fail(&self, rule: FaultRule) {
        self.dep().add_fault(rule).unwrap();
    }

    fn calls(&self) -> Vec<String> {
        self.api.calls()
    }

    /// How many requests the emulator had for `endpoint` (its name in fault rules).
    fn requests(&self, endpoint: &str) -> u64 {
        let stats = self.dep().requests();
        stats.by_endpoint.get(endpoint).copied().unwrap_or(0)
    }

    /// Runs a read and returns (success, messages).
    fn run_with(
        &self,
        catalog: ConfiguredCatalog,
        state: &str,
        options: ReadOptions,
    ) -> (bool, Vec<Value>) {
        let buf = SharedBuffer::default();
        let (out, writer) = Output::start(buf.clone());
        let ok = self
            .rt
            .block_on(read(
                self.api.clone(),
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

    /// A read on the streaming export API.
    fn run(&self, streams: &[(&str, &str)], state: &str) -> (bool, Vec<Value>) {
        self.run_with(catalog_of(streams, json!({})), state, options())
    }

    /// A read on the Data Sync API.
    fn run_data_sync(&self, streams: &[(&str, &str)], state: &str) -> (bool, Vec<Value>) {
        self.run_with(catalog_of(streams, json!({})), state, data_sync_options())
    }
}

/// A JSON document as the emulator takes it: integers as int64 (the typed columns read them
/// back as integers), everything else as is.
fn encoded(v: &Value) -> convex_emulator::Value {
    use convex_emulator::Value as C;
    match v {
        Value::Null => C::Null,
        Value::Bool(b) => C::Boolean(*b),
        Value::Number(n) => n
            .as_i64()
            .map_or_else(|| C::Float64(n.as_f64().unwrap()), C::Int64),
        Value::String(s) => C::String(s.clone()),
        Value::Array(a) => C::Array(a.iter().map(encoded).collect()),
        Value::Object(o) => C::Object(o.iter().map(|(k, v)| (k.clone(), encoded(v))).collect()),
    }
}

/// Writes while a data sync reads: before about half of its pages, one random write to the
/// synced table (an insert, an update or a delete), and after one write in `lag` a jump of
/// the clock past Convex's 30 s freshness window, after which the sync follows the log
/// before it walks on (so log pages come in the middle of snapshots).
fn churn(seed: u64, lag: u32) -> client::Hook {
    let mut rng = fastrand::Rng::with_seed(seed);
    Box::new(move |dep, selection| {
        if rng.bool() {
            return;
        }
        let table = dep
            .tables()
            .into_iter()
            .map(|t| t.table)
            .find(|t| selection.contains("", t))
            .expect("one table per data sync");
        let live: Vec<Value> = dep.live_documents("", &table);
        let roll = rng.u8(..10);
        let v = encoded(&json!({"v": rng.u32(..1000)}));
        dep.transaction(|tx| {
            if roll < 4 || live.is_empty() {
                tx.insert("", &table, v).map(drop)
            } else {
                let id = live[rng.usize(..live.len())]["_id"].as_str().unwrap();
                if roll < 8 {
                    tx.replace("", &table, id, v)
                } else {
                    tx.delete("", &table, id)
                }
            }
        })
        .unwrap();
        if rng.u32(..lag) == 0 {
            dep.advance_clock(std::time::Duration::from_secs(31));
        }
    })
}

/// A list_snapshot call as `Client` records it.
fn walk_call(selection: &str, snapshot: i64, cursor: Option<&str>) -> String {
    format!(
        "list_snapshot {selection} {snapshot} {:?}",
        cursor.map(str::to_owned)
    )
}

/// A stream state in the shape the streaming export API saves.
fn saved(stream: &str, stream_state: Value) -> Value {
    json!({"type": "STREAM", "stream": {"stream_descriptor": {"name": stream}, "stream_state": stream_state}})
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
        // The client hands values out in `export_json` (`Client::new`).
        column_types: crate::config::ColumnTypes::Typed,
        activity: Arc::new(crate::listener::Activity::default()),
    }
}

fn data_sync_options() -> ReadOptions {
    ReadOptions {
        api: Api::DataSync,
        ..options()
    }
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

/// Each stream of `names` in incremental mode.
fn incremental<'a>(names: &[&'a str]) -> Vec<(&'a str, &'a str)> {
    names.iter().map(|n| (*n, "incremental")).collect()
}

/// What a stream that failed before any record gets.
const FAILED: [&str; 3] = ["STARTED", "INCOMPLETE", "ERROR"];

/// The kind of the last message of `stream` (its terminal status, or ERROR).
fn last_kind(messages: &[Value], stream: &str) -> String {
    kinds(&of_stream(messages, stream)).pop().unwrap()
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

/// The message of the first TRACE ERROR.
fn error_text(messages: &[Value]) -> &str {
    first_error(messages)["message"].as_str().unwrap()
}

fn last_state(messages: &[&Value]) -> Value {
    messages
        .iter()
        .rev()
        .find(|m| m["type"] == "STATE")
        .map(|m| m["state"]["stream"]["stream_state"].clone())
        .unwrap()
}

/// The `stream_state` field `field` of each STATE of `stream`.
fn states_of(messages: &[Value], stream: &str, field: &str) -> Vec<Value> {
    of_stream(messages, stream)
        .iter()
        .filter(|m| m["type"] == "STATE")
        .map(|m| m["state"]["stream"]["stream_state"][field].clone())
        .collect()
}

fn records<'a>(messages: &'a [Value], stream: &str) -> Vec<&'a Value> {
    messages
        .iter()
        .filter(|m| m["type"] == "RECORD" && m["record"]["stream"] == stream)
        .map(|m| &m["record"]["data"])
        .collect()
}

fn logs<'a>(messages: &'a [Value], level: &str) -> Vec<&'a str> {
    messages
        .iter()
        .filter(|m| m["log"]["level"] == level)
        .map(|m| m["log"]["message"].as_str().unwrap())
        .collect()
}

/// The streams' documents at their final `delta_cursor` in `dest`, compared with the
/// deployment's; returns how many streams were compared (a data sync stopped in the middle of
/// its snapshot is consistent at no timestamp yet).
fn assert_consistent(
    emu: &Emu,
    dest: &MergingDestination,
    messages: &[Value],
    streams: &[&str],
    what: &str,
) -> usize {
    let mut compared = 0;
    for stream in streams {
        let Some(t) = last_state(&of_stream(messages, stream))["delta_cursor"].as_i64() else {
            continue;
        };
        dest.assert_matches(emu.dep(), stream, ("", stream), t, what);
        compared += 1;
    }
    compared
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
