//! The read engine against an in-process fake of Convex: message order, checkpoints, snapshot
//! pinning, self-healing and per-stream failure, without HTTP. (The real binary against the
//! emulator is covered in `tests/`.)

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::*;
use crate::convex::{DeltasPageEnd, DeploymentSchemas, SnapshotCursor};
use crate::output::SharedBuffer;
use crate::protocol::ConfiguredCatalog;

/// A tiny Convex: tables of documents at one head timestamp, plus a change log. Snapshot pages
/// of `page` documents; the cursor is the next index as a string.
#[derive(Default)]
struct Fake {
    tables: BTreeMap<String, Vec<Value>>,
    log: Vec<Value>,
    head: i64,
    page: usize,
    /// Requests made, for assertions (`endpoint table snapshot cursor`).
    calls: Mutex<Vec<String>>,
    /// Error codes to answer with, by endpoint, consumed one per call.
    errors: Mutex<Vec<(&'static str, &'static str)>>,
    /// Answer every table's rows whatever was asked (convex-backend #302).
    ignore_filter: bool,
    schemas_fail: bool,
}

impl Fake {
    fn new(tables: &[(&str, usize)]) -> Self {
        let head = 1_700_000_000_000_000_000;
        let mut t = BTreeMap::new();
        for (name, n) in tables {
            let docs = (0..*n)
                .map(|i| json!({"_component":"","_table":name,"_ts":head - 1000 + i as i64,"_id":format!("{name}{i}"),"n":i}))
                .collect();
            t.insert(name.to_string(), docs);
        }
        Fake {
            tables: t,
            head,
            page: 3,
            ..Default::default()
        }
    }

    fn fail_next(&self, endpoint: &'static str, code: &'static str) {
        self.errors.lock().unwrap().push((endpoint, code));
    }

    fn take_error(&self, endpoint: &'static str) -> Result<(), ConvexError> {
        let mut errors = self.errors.lock().unwrap();
        if let Some(i) = errors.iter().position(|(e, _)| *e == endpoint) {
            let (_, code) = errors.remove(i);
            return Err(ConvexError::Api {
                endpoint,
                status: 400,
                code: code.into(),
                message: "injected".into(),
            });
        }
        Ok(())
    }
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
        Ok(DeploymentSchemas {
            components: vec![(
                String::new(),
                self.tables.keys().map(|k| (k.clone(), json!({}))).collect(),
            )],
        })
    }

    async fn list_snapshot<S: PageSink>(
        &self,
        table: &TableRef,
        snapshot: Option<SnapshotTs>,
        cursor: Option<&SnapshotCursor>,
        sink: &mut S,
    ) -> anyhow::Result<SnapshotPageEnd> {
        self.calls.lock().unwrap().push(format!(
            "list_snapshot {} {:?} {:?}",
            table.table,
            snapshot.map(|s| s.0),
            cursor.map(|c| c.0.clone())
        ));
        self.take_error("/api/list_snapshot")?;
        let empty = Vec::new();
        let docs: Vec<&Value> = if self.ignore_filter {
            self.tables.values().flatten().collect()
        } else {
            self.tables
                .get(&table.table)
                .unwrap_or(&empty)
                .iter()
                .collect()
        };
        let start: usize = cursor.map_or(0, |c| c.0.parse().unwrap());
        let end = (start + self.page).min(docs.len());
        for d in &docs[start..end] {
            let raw = d.to_string();
            sink.value(
                raw.as_bytes(),
                &ValueMeta::from_json(raw.as_bytes()).unwrap(),
            )?;
        }
        sink.flush().await?;
        let has_more = end < docs.len();
        Ok(SnapshotPageEnd {
            snapshot: snapshot.unwrap_or(SnapshotTs(self.head)),
            cursor: has_more.then(|| SnapshotCursor(end.to_string())),
            has_more,
            values: end - start,
        })
    }

    async fn document_deltas<S: PageSink>(
        &self,
        table: &TableRef,
        cursor: DeltaCursor,
        sink: &mut S,
    ) -> anyhow::Result<DeltasPageEnd> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("document_deltas {} {}", table.table, cursor.0));
        self.take_error("/api/document_deltas")?;
        // Two log entries a page, all tables counted, like Convex's read limit.
        let after: Vec<&Value> = self
            .log
            .iter()
            .filter(|v| v["_ts"].as_i64().unwrap() > cursor.0)
            .take(2)
            .collect();
        let mut values = 0;
        for v in &after {
            if v["_table"] == table.table.as_str() {
                let raw = v.to_string();
                sink.value(
                    raw.as_bytes(),
                    &ValueMeta::from_json(raw.as_bytes()).unwrap(),
                )?;
                values += 1;
            }
        }
        let has_more = self
            .log
            .iter()
            .filter(|v| v["_ts"].as_i64().unwrap() > cursor.0)
            .count()
            > 2;
        Ok(DeltasPageEnd {
            cursor: DeltaCursor(if has_more {
                after.last().unwrap()["_ts"].as_i64().unwrap()
            } else {
                self.head
            }),
            has_more,
            values,
        })
    }
}

fn catalog(streams: &[(&str, &str)]) -> ConfiguredCatalog {
    serde_json::from_value(json!({"streams": streams.iter().map(|(n, m)| json!({
        "stream": {"name": n, "json_schema": {}, "supported_sync_modes": ["full_refresh", "incremental"]},
        "sync_mode": m, "destination_sync_mode": "append"})).collect::<Vec<_>>()}))
    .unwrap()
}

/// Runs a read against `fake` and returns (success, messages).
fn run(
    fake: Arc<Fake>,
    streams: &[(&str, &str)],
    state: &str,
    concurrency: usize,
) -> (bool, Vec<Value>) {
    let buf = SharedBuffer::default();
    let (out, writer) = Output::start(buf.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ok = rt
        .block_on(read(
            fake,
            out,
            catalog(streams),
            InputState::parse(state).unwrap(),
            ReadOptions {
                concurrency,
                debug: false,
            },
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

#[test]
fn full_refresh_checkpoints_every_page_and_ends_complete() {
    let fake = Arc::new(Fake::new(&[("users", 7), ("posts", 0)]));
    let (ok, messages) = run(
        fake.clone(),
        &[("users", "full_refresh"), ("posts", "full_refresh")],
        "",
        2,
    );
    assert!(ok);
    let users = of_stream(&messages, "users");
    assert_eq!(
        kinds(&users),
        [
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
            "COMPLETE"
        ]
    );
    let s = last_state(&users);
    assert_eq!(
        s,
        json!({"snapshot_cursor": null, "snapshot_has_more": false, "delta_cursor": fake.head})
    );
    // A stream with nothing in it still gets a final STATE.
    assert_eq!(
        kinds(&of_stream(&messages, "posts")),
        ["STARTED", "STATE(0.0)", "COMPLETE"]
    );
    // Records are the documents plus the CDC fields.
    let first = users.iter().find(|m| m["type"] == "RECORD").unwrap();
    assert_eq!(first["record"]["data"]["_id"], "users0");
    assert_eq!(first["record"]["data"]["_deleted"], false);
    assert_eq!(first["record"]["data"]["_ab_cdc_lsn"], fake.head - 1000);
}

#[test]
fn every_stream_that_starts_a_walk_reads_at_one_pinned_snapshot() {
    let fake = Arc::new(Fake::new(&[("a", 4), ("b", 4), ("c", 1)]));
    let (ok, _) = run(
        fake.clone(),
        &[
            ("a", "incremental"),
            ("b", "incremental"),
            ("c", "full_refresh"),
        ],
        "[]",
        3,
    );
    assert!(ok);
    let calls = fake.calls.lock().unwrap().clone();
    let unpinned: Vec<_> = calls
        .iter()
        .filter(|c| c.starts_with("list_snapshot") && c.contains(" None None"))
        .collect();
    assert_eq!(
        unpinned.len(),
        1,
        "exactly one walk starts without a snapshot: {calls:?}"
    );
    let pinned = format!("Some({})", fake.head);
    assert!(calls
        .iter()
        .filter(|c| c.starts_with("list_snapshot"))
        .all(|c| c.contains(" None None") || c.contains(&pinned)));
    // No probe pages: 2 + 2 + 1 pages, and deltas only for the incremental streams.
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.starts_with("list_snapshot"))
            .count(),
        5
    );
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.starts_with("document_deltas"))
            .count(),
        2
    );
}

#[test]
fn incremental_resumes_mid_snapshot_then_reads_deltas() {
    let mut fake = Fake::new(&[("users", 7)]);
    let h = fake.head;
    fake.log = vec![
        json!({"_component":"","_table":"users","_ts":h + 1,"_deleted":false,"_id":"new","n":1}),
        json!({"_component":"","_table":"other","_ts":h + 2,"_deleted":false,"_id":"o","n":1}),
        json!({"_component":"","_table":"users","_ts":h + 3,"_deleted":true,"_id":"users0"}),
    ];
    fake.head = h + 3;
    let fake = Arc::new(fake);
    let state = format!(
        r#"[{{"type":"STREAM","stream":{{"stream_descriptor":{{"name":"users","namespace":null}},"stream_state":{{"snapshot_cursor":"6","snapshot_has_more":true,"delta_cursor":{h}}}}}}}]"#
    );
    let (ok, messages) = run(fake.clone(), &[("users", "incremental")], &state, 1);
    assert!(ok);
    let users = of_stream(&messages, "users");
    assert_eq!(
        kinds(&users),
        [
            "STARTED",
            "RUNNING",
            "RECORD",
            "STATE(1.0)",
            "RECORD",
            "STATE(1.0)",
            "RECORD",
            "STATE(1.0)",
            "COMPLETE"
        ]
    );
    let calls = fake.calls.lock().unwrap().clone();
    assert_eq!(
        calls[0],
        format!("list_snapshot users Some({h}) Some(\"6\")")
    );
    assert_eq!(calls[1], format!("document_deltas users {h}"));
    let delete = users.iter().rfind(|m| m["type"] == "RECORD").unwrap();
    assert_eq!(delete["record"]["data"]["_deleted"], true);
    assert_eq!(
        delete["record"]["data"]["_ab_cdc_deleted_at"],
        delete["record"]["data"]["_ab_cdc_updated_at"]
    );
    assert_eq!(last_state(&users)["delta_cursor"], h + 3);
}

#[test]
fn full_refresh_with_a_finished_state_walks_again() {
    let fake = Arc::new(Fake::new(&[("users", 2)]));
    let state =
        r#"{"users": {"snapshot_cursor": null, "snapshot_has_more": false, "delta_cursor": 5}}"#;
    let (ok, messages) = run(fake, &[("users", "full_refresh")], state, 1);
    assert!(ok);
    assert_eq!(messages.iter().filter(|m| m["type"] == "RECORD").count(), 2);
}

#[test]
fn expired_positions_heal_with_a_fresh_snapshot() {
    let fake = Arc::new(Fake::new(&[("users", 2)]));
    fake.fail_next("/api/document_deltas", codes::INVALID_WINDOW);
    let state = r#"[{"type":"STREAM","stream":{"stream_descriptor":{"name":"users"},"stream_state":{"delta_cursor":5}}}]"#;
    let (ok, messages) = run(fake.clone(), &[("users", "incremental")], state, 1);
    assert!(ok, "{messages:#?}");
    let warn = messages
        .iter()
        .find(|m| m["log"]["level"] == "WARN")
        .unwrap();
    assert!(warn["log"]["message"]
        .as_str()
        .unwrap()
        .contains("InvalidWindowToReadDocuments"));
    assert_eq!(messages.iter().filter(|m| m["type"] == "RECORD").count(), 2);

    let fake = Arc::new(Fake::new(&[("users", 2)]));
    fake.fail_next("/api/list_snapshot", codes::SNAPSHOT_TOO_OLD);
    let state = r#"[{"type":"STREAM","stream":{"stream_descriptor":{"name":"users"},"stream_state":{"snapshot_cursor":"1","snapshot_has_more":true,"delta_cursor":5}}}]"#;
    let (ok, messages) = run(fake.clone(), &[("users", "incremental")], state, 1);
    assert!(ok);
    assert_eq!(messages.iter().filter(|m| m["type"] == "RECORD").count(), 2);
    let calls = fake.calls.lock().unwrap().clone();
    assert!(
        calls[1].ends_with("None None"),
        "the new walk takes a fresh snapshot: {calls:?}"
    );
}

#[test]
fn a_failing_stream_ends_incomplete_and_the_others_finish() {
    let fake = Arc::new(Fake::new(&[("users", 2), ("posts", 2)]));
    fake.fail_next("/api/list_snapshot", "BadQueryArgs");
    let (ok, messages) = run(
        fake,
        &[("users", "full_refresh"), ("posts", "full_refresh")],
        "",
        1,
    );
    assert!(!ok);
    let users = kinds(&of_stream(&messages, "users"));
    assert_eq!(users, ["STARTED", "INCOMPLETE", "ERROR"]);
    let err = first_error(&messages);
    assert_eq!(err["failure_type"], "system_error");
    assert!(err["message"]
        .as_str()
        .unwrap()
        .starts_with("Stream users: /api/list_snapshot: 400: BadQueryArgs"));
    assert_eq!(
        kinds(&of_stream(&messages, "posts")).last().unwrap(),
        "COMPLETE"
    );
}

#[test]
fn a_backend_ignoring_the_table_filter_fails_the_stream_loudly() {
    let mut fake = Fake::new(&[("users", 2), ("posts", 2)]);
    fake.ignore_filter = true;
    let (ok, messages) = run(Arc::new(fake), &[("users", "full_refresh")], "", 1);
    assert!(!ok);
    let err = first_error(&messages);
    assert!(err["message"].as_str().unwrap().contains("#302"));
    assert!(messages
        .iter()
        .filter(|m| m["type"] == "RECORD")
        .all(|m| m["record"]["data"]["_table"] == "users"));
}

#[test]
fn a_failure_before_any_stream_ends_every_stream_incomplete() {
    let mut fake = Fake::new(&[("users", 2)]);
    fake.schemas_fail = true;
    let (ok, messages) = run(
        Arc::new(fake),
        &[("users", "incremental"), ("gone", "incremental")],
        "",
        1,
    );
    assert!(!ok);
    let k: Vec<String> = kinds(
        &messages
            .iter()
            .filter(|m| m["type"] != "LOG")
            .collect::<Vec<_>>(),
    );
    assert_eq!(k, ["INCOMPLETE", "INCOMPLETE", "ERROR"]);
    let err = &messages.last().unwrap()["trace"]["error"];
    assert_eq!(err["failure_type"], "config_error");
    assert!(err["message"]
        .as_str()
        .unwrap()
        .contains("generate a deploy key"));
}

#[test]
fn unusable_state_or_stream_fails_only_that_stream() {
    let fake = Arc::new(Fake::new(&[("users", 1), ("posts", 1)]));
    let state = r#"[{"type":"STREAM","stream":{"stream_descriptor":{"name":"users"},"stream_state":{"delta_cursor":"yesterday"}}}]"#;
    let (ok, messages) = run(
        fake,
        &[
            ("users", "incremental"),
            ("posts", "incremental"),
            ("/bad", "incremental"),
        ],
        state,
        2,
    );
    assert!(!ok);
    assert_eq!(
        kinds(&of_stream(&messages, "users")),
        ["INCOMPLETE", "ERROR"]
    );
    assert_eq!(
        kinds(&of_stream(&messages, "/bad")),
        ["INCOMPLETE", "ERROR"]
    );
    assert_eq!(
        kinds(&of_stream(&messages, "posts")).last().unwrap(),
        "COMPLETE"
    );
}

#[test]
fn a_table_gone_from_the_deployment_fails_its_stream_only() {
    let fake = Arc::new(Fake::new(&[("users", 1)]));
    let (ok, messages) = run(
        fake.clone(),
        &[("users", "incremental"), ("ghost", "incremental")],
        "",
        2,
    );
    assert!(!ok);
    assert_eq!(
        kinds(&of_stream(&messages, "ghost")),
        ["INCOMPLETE", "ERROR"]
    );
    let err = first_error(&messages);
    assert_eq!(err["failure_type"], "config_error");
    assert!(err["message"]
        .as_str()
        .unwrap()
        .contains("refresh the source schema"));
    assert_eq!(
        kinds(&of_stream(&messages, "users")).last().unwrap(),
        "COMPLETE"
    );
    assert!(
        fake.calls
            .lock()
            .unwrap()
            .iter()
            .all(|c| !c.contains("ghost")),
        "nothing requested for it"
    );
}
