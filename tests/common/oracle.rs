//! The merging-destination oracle. One source file for both kinds of Rust tests: the binary's
//! (`tests/`, through `common`) and the read engine's (`src/read/tests/`, unit tests of the bin
//! crate, which include this file with `#[path]`).
//!
//! A read's RECORDs are replayed into a destination that merges each read the way PyAirbyte's
//! DuckDB and Postgres caches do: one merge per read keyed by `_id`, no deduplication, so a read
//! that sends one `_id` twice in a stream is a failure in itself. The destination is then
//! compared with the emulator's documents as of a timestamp (a stream's final `delta_cursor`,
//! or the head).
#![allow(dead_code)] // each test crate uses its own subset

use std::collections::BTreeMap;

use convex_emulator::{Deployment, Format};
use serde_json::Value;

/// Stream name → `_id` → the last record of that document.
#[derive(Default, Debug)]
pub struct MergingDestination {
    pub tables: BTreeMap<String, BTreeMap<String, Value>>,
}

impl MergingDestination {
    /// Merges one read's messages (its RECORDs; the rest is ignored). Panics when the read
    /// sent one `_id` twice in a stream; `what` names the read in that message.
    pub fn merge(&mut self, messages: &[Value], what: &str) {
        let mut batch: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
        for m in messages.iter().filter(|m| m["type"] == "RECORD") {
            let stream = m["record"]["stream"].as_str().unwrap().to_owned();
            let data = m["record"]["data"].clone();
            let id = data["_id"].as_str().unwrap().to_owned();
            let prev = batch
                .entry(stream.clone())
                .or_default()
                .insert(id.clone(), data);
            assert!(
                prev.is_none(),
                "{what}: {stream}: _id {id} sent twice in one read"
            );
        }
        for (stream, rows) in batch {
            self.tables.entry(stream).or_default().extend(rows);
        }
    }

    /// The merge of reads, one after another.
    pub fn of_reads<'a>(reads: impl IntoIterator<Item = &'a [Value]>) -> MergingDestination {
        let mut dest = MergingDestination::default();
        for (i, messages) in reads.into_iter().enumerate() {
            dest.merge(messages, &format!("read {i}"));
        }
        dest
    }

    /// The live rows of a stream: `_id` → the document as Convex exports it (without the
    /// fields the connector adds).
    pub fn live(&self, stream: &str) -> BTreeMap<String, Value> {
        self.tables
            .get(stream)
            .into_iter()
            .flatten()
            .filter(|(_, r)| r["_deleted"] != true)
            .map(|(id, r)| (id.clone(), without_cdc(r.clone())))
            .collect()
    }

    /// Asserts that `stream` holds exactly the documents of `component`/`table` at `ts`.
    pub fn assert_matches(
        &self,
        dep: &Deployment,
        stream: &str,
        (component, table): (&str, &str),
        ts: i64,
        what: &str,
    ) {
        let want = documents_at(dep, component, table, ts);
        let have = self.live(stream);
        if let Some((id, doc)) = want.iter().find(|(id, doc)| have.get(*id) != Some(*doc)) {
            panic!(
                "{what}: {stream} at {ts}: {id} is {doc}, the destination has {:?}",
                have.get(id)
            );
        }
        if let Some(id) = have.keys().find(|id| !want.contains_key(*id)) {
            panic!(
                "{what}: {stream} at {ts}: {id} is live in the destination, not in the deployment"
            );
        }
    }
}

/// The documents of a table as of `ts`, keyed by `_id`, as typed columns carry them.
pub fn documents_at(
    dep: &Deployment,
    component: &str,
    table: &str,
    ts: i64,
) -> BTreeMap<String, Value> {
    dep.documents_at_in(component, table, ts, Format::Export)
        .into_iter()
        .map(|d| (d["_id"].as_str().unwrap().to_owned(), typed_value(d)))
        .collect()
}

/// A value in Convex's `export_json` as typed columns carry it: bytes as their base64 string,
/// NaN and ±Infinity (which JSON cannot carry as numbers) as null, everything else as is.
pub fn typed_value(v: Value) -> Value {
    match v {
        Value::Object(o) if o.len() == 1 && o.contains_key("$bytes") => o["$bytes"].clone(),
        Value::Object(o) if o.len() == 1 && o.contains_key("$float") => Value::Null,
        Value::Object(o) => {
            Value::Object(o.into_iter().map(|(k, v)| (k, typed_value(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(typed_value).collect()),
        other => other,
    }
}

/// A document as the connector delivered it, minus what the connector added.
pub fn without_cdc(mut data: Value) -> Value {
    let o = data.as_object_mut().unwrap();
    for k in [
        "_ab_cdc_lsn",
        "_ab_cdc_updated_at",
        "_ab_cdc_deleted_at",
        "_deleted",
    ] {
        o.remove(k);
    }
    data
}

/// What a destination keeps of a read that was killed: each stream's records up to its last
/// STATE (destinations commit at checkpoints; later records may or may not survive, and are
/// sent again by the next read).
pub fn committed(delivered: &[Value]) -> Vec<Value> {
    let mut last_state: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, m) in delivered.iter().enumerate() {
        if let Some(name) = m["state"]["stream"]["stream_descriptor"]["name"].as_str() {
            last_state.insert(name, i);
        }
    }
    delivered
        .iter()
        .enumerate()
        .filter(|(i, m)| match m["record"]["stream"].as_str() {
            Some(s) if m["type"] == "RECORD" => last_state.get(s).is_some_and(|l| i < l),
            _ => true,
        })
        .map(|(_, m)| m.clone())
        .collect()
}

/// The state a platform would save after `messages`, on top of `earlier` (a saved state, or
/// ""): the last STATE of each stream, as the next read's `--state`.
pub fn state_after(messages: &[Value], earlier: &str) -> String {
    // Keyed by namespace and name: a hand-written state may leave out `"namespace": null`.
    let key = |s: &Value| {
        let d = &s["stream"]["stream_descriptor"];
        format!("{}/{}", d["namespace"], d["name"])
    };
    let mut by_stream: BTreeMap<String, Value> = BTreeMap::new();
    if let Ok(Value::Array(prev)) = serde_json::from_str::<Value>(earlier) {
        for s in prev {
            by_stream.insert(key(&s), s);
        }
    }
    for m in messages.iter().filter(|m| m["type"] == "STATE") {
        by_stream.insert(key(&m["state"]), m["state"].clone());
    }
    Value::Array(by_stream.into_values().collect()).to_string()
}
