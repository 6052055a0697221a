//! Per-stream state: where a stream's export stands, in the shape Airbyte's Python
//! `source-convex` 0.4.51 saved (so existing connections resume after the image swap), and the
//! many shapes callers hand state back in.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;

use crate::error::UserError;
use crate::messages;
use crate::naming::table_for;
use crate::protocol::StreamDescriptor;
use convex::data_sync::DataSyncCursor;
use convex::{DeltaCursor, SnapshotCursor, SnapshotTs};

/// A saved snapshot cursor longer than this cannot be one of Convex's.
const MAX_SNAPSHOT_CURSOR_BYTES: usize = 4096;
/// A Data Sync cursor holds the names of the synced tables, so it grows with the selection;
/// ours select one table. Longer than this, it is corrupt.
const MAX_DATA_SYNC_CURSOR_BYTES: usize = 64 * 1024;

/// The `state_version` of a Data Sync position. States without one are version 1: the Python
/// connector's shape, which the streaming export API positions keep.
pub const DATA_SYNC_STATE_VERSION: u64 = 2;

/// Where a stream stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// Nothing read yet: start a snapshot walk.
    Fresh,
    /// A snapshot walk at `snapshot`, continuing after `cursor` (`None` = from its start).
    Snapshot {
        snapshot: SnapshotTs,
        cursor: Option<SnapshotCursor>,
    },
    /// The walk finished; the log continues after `cursor`.
    Deltas(DeltaCursor),
    /// A sync of the Data Sync API continues after `cursor`. `consistent_at`: the
    /// deployment's timestamp that everything delivered adds up to, once the sync has a
    /// consistent copy (`None` while it snapshots); a streaming export read can continue
    /// from there.
    DataSync {
        cursor: DataSyncCursor,
        sync_id: String,
        consistent_at: Option<SnapshotTs>,
        /// After a read that deferred changes to the next one, the sync re-reads the log from
        /// before them; the destination already holds revisions up to this timestamp, so it
        /// is a copy at one timestamp only once the sync is consistent at or past it.
        settles_at: Option<SnapshotTs>,
    },
}

/// The saved form. Key names and meanings are the Python connector's: `delta_cursor` holds the
/// snapshot timestamp during the walk and the deltas cursor after it.
///
/// A Data Sync position (`state_version` 2, `api: "data_sync"`) adds its cursor and keeps
/// those keys meaningful: `delta_cursor` is the timestamp the sync is consistent at, or null
/// while it snapshots, so an older connector (or this one on the streaming export API)
/// continues from there instead of misreading the cursor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConvexStreamState {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_sync_cursor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settles_at: Option<i64>,
    pub snapshot_cursor: Option<String>,
    pub snapshot_has_more: bool,
    pub delta_cursor: Option<i64>,
}

impl ConvexStreamState {
    fn legacy(snapshot_cursor: Option<String>, has_more: bool, delta: Option<i64>) -> Self {
        ConvexStreamState {
            state_version: None,
            api: None,
            data_sync_cursor: None,
            sync_id: None,
            settles_at: None,
            snapshot_cursor,
            snapshot_has_more: has_more,
            delta_cursor: delta,
        }
    }
}

impl Position {
    pub fn to_state(&self) -> ConvexStreamState {
        match self {
            Position::Fresh => ConvexStreamState::legacy(None, false, None),
            Position::Snapshot { snapshot, cursor } => ConvexStreamState::legacy(
                cursor.as_ref().map(|c| c.0.clone()),
                true,
                Some(snapshot.0),
            ),
            Position::Deltas(c) => ConvexStreamState::legacy(None, false, Some(c.0)),
            Position::DataSync {
                cursor,
                sync_id,
                consistent_at,
                settles_at,
            } => ConvexStreamState {
                state_version: Some(DATA_SYNC_STATE_VERSION),
                api: Some("data_sync"),
                data_sync_cursor: Some(cursor.0.clone()),
                sync_id: Some(sync_id.clone()),
                settles_at: settles_at.map(|t| t.0),
                ..ConvexStreamState::legacy(None, false, consistent_at.map(|t| t.0))
            },
        }
    }

    /// Whether a later read resumes exactly here: the saved shape reads back as this very
    /// position. Checked before every STATE, so the connector never writes a state it would
    /// refuse (a cursor beyond the size Convex gives, a timestamp of 0 or below).
    pub fn check_resumable(&self) -> Result<(), String> {
        let saved = serde_json::to_value(self.to_state()).map_err(|e| e.to_string())?;
        match Position::from_state(&saved) {
            Ok(back) if back == *self => Ok(()),
            Ok(_) => Err("it would read back as another position".into()),
            Err(e) => Err(e),
        }
    }

    /// Reads a Data Sync position (`state_version` 2).
    fn data_sync_from_state(obj: &serde_json::Map<String, Value>) -> Result<Position, String> {
        match obj.get("api") {
            Some(Value::String(a)) if a == "data_sync" => {}
            other => {
                return Err(format!(
                    "a version {DATA_SYNC_STATE_VERSION} state names api {}, not \"data_sync\"",
                    other.map_or("nothing".to_owned(), Value::to_string)
                ))
            }
        }
        let cursor = match obj.get("data_sync_cursor") {
            Some(Value::String(s)) if s.len() > MAX_DATA_SYNC_CURSOR_BYTES => {
                return Err(format!(
                    "data_sync_cursor is {} bytes long, not a cursor Convex gave",
                    s.len()
                ))
            }
            Some(Value::String(s)) if !s.is_empty() => DataSyncCursor(s.clone()),
            _ => return Err("a data_sync state has no data_sync_cursor string".into()),
        };
        let sync_id = match obj.get("sync_id") {
            Some(Value::String(s)) => s.chars().take(200).collect(),
            _ => String::new(),
        };
        let timestamp = |key: &str| match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match v.as_i64() {
                Some(t) if t > 0 => Ok(Some(SnapshotTs(t))),
                _ => Err(format!(
                    "{key} {v} is not a positive 64-bit integer timestamp"
                )),
            },
        };
        let consistent_at = timestamp("delta_cursor")?;
        let settles_at = timestamp("settles_at")?;
        Ok(Position::DataSync {
            cursor,
            sync_id,
            consistent_at,
            settles_at,
        })
    }

    /// Reads a saved `stream_state`. Missing keys and nulls are normal (the Python connector
    /// crashed on them); `delta_cursor: 0` meant "none" there and means it here.
    pub fn from_state(state: &Value) -> Result<Position, String> {
        let obj = match state {
            Value::Null => return Ok(Position::Fresh),
            Value::Object(o) => o,
            other => return Err(format!("stream_state is not an object: {other}")),
        };
        match obj.get("state_version") {
            None | Some(Value::Null) => {}
            Some(v) if v.as_u64() == Some(1) => {}
            Some(v) if v.as_u64() == Some(DATA_SYNC_STATE_VERSION) => {
                return Position::data_sync_from_state(obj)
            }
            Some(v) => return Err(messages::state_version_unknown(v, DATA_SYNC_STATE_VERSION)),
        }
        let delta = match obj.get("delta_cursor") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => match n.as_i64() {
                Some(0) => None,
                Some(v) if v > 0 => Some(v),
                _ => {
                    return Err(format!(
                        "delta_cursor {n} is not a positive 64-bit integer timestamp"
                    ))
                }
            },
            // Some tools stringify big integers to protect them from JavaScript.
            Some(Value::String(s)) => match s.trim().parse::<i64>() {
                Ok(0) => None,
                Ok(v) if v > 0 => Some(v),
                _ => return Err(format!("delta_cursor {s:?} is not an integer timestamp")),
            },
            Some(other) => return Err(format!("delta_cursor {other} is not an integer timestamp")),
        };
        let has_more = match obj.get("snapshot_has_more") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => return Err(format!("snapshot_has_more {other} is not a boolean")),
        };
        let cursor = match obj.get("snapshot_cursor") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            // Convex's cursors are a few dozen bytes: a huge one is corrupt, and sending it
            // back would only fail (or echo it into every message).
            Some(Value::String(s)) if s.len() > MAX_SNAPSHOT_CURSOR_BYTES => {
                return Err(format!(
                    "snapshot_cursor is {} bytes long, not a cursor Convex gave (those are under 200 bytes)",
                    s.len()
                ))
            }
            Some(Value::String(s)) => Some(SnapshotCursor(s.clone())),
            Some(other) => return Err(format!("snapshot_cursor {other} is not a string")),
        };
        Ok(match (delta, has_more) {
            (None, _) => Position::Fresh,
            (Some(s), true) => Position::Snapshot {
                snapshot: SnapshotTs(s),
                cursor,
            },
            (Some(d), false) => Position::Deltas(DeltaCursor(d)),
        })
    }
}

/// The state a caller passed with `--state`, by stream.
#[derive(Debug, Default)]
pub struct InputState {
    by_stream: HashMap<(String, Option<String>), Value>,
    /// Entries that name no stream, described for a WARN log (see `unrecognised`).
    unrecognised: Vec<String>,
}

impl InputState {
    /// Accepts what real callers send: a JSON array of state messages (PyAirbyte spreads it over
    /// lines, with nulls, unknown keys and even duplicate keys), `[]`, an empty file, a single
    /// message, a GLOBAL message, or a legacy `{stream name: state}` object; and what people
    /// collect from `read`: whole `{"type": "STATE", "state": …}` lines, as an array or as JSON
    /// Lines (a whole `read` output too: its other messages are passed over). The last state of
    /// a stream wins, as it would in a destination.
    pub fn parse(text: &str) -> Result<InputState, UserError> {
        let mut state = InputState::default();
        let mut values = serde_json::Deserializer::from_str(text).into_iter::<Value>();
        let mut all = Vec::new();
        for (line, value) in (1..).zip(&mut values) {
            all.push(value.map_err(|e| UserError::config(messages::state_file_not_json(line, e)))?);
        }
        if all.len() > 1 {
            // JSON Lines: each value is one message (or a list of them).
            for value in all {
                match value {
                    Value::Array(items) => items.into_iter().for_each(|i| state.add_message(i)),
                    other => state.add_message(other),
                }
            }
            return Ok(state);
        }
        let Some(value) = all.pop() else {
            return Ok(state);
        };
        match value {
            Value::Array(items) => {
                for item in items {
                    state.add_message(item);
                }
            }
            Value::Object(ref o) if o.contains_key("type") || o.contains_key("stream") => {
                state.add_message(value)
            }
            Value::Object(o) => {
                let data = match o.get("data") {
                    Some(Value::Object(d)) => d.clone(),
                    _ => o,
                };
                state.add_legacy(data);
            }
            Value::Null => {}
            other => {
                return Err(UserError::config(format!(
                    "the state file holds {}, not a list of state messages",
                    match other {
                        Value::Bool(_) => "a boolean",
                        Value::Number(_) => "a number",
                        _ => "a string",
                    }
                )))
            }
        }
        Ok(state)
    }

    fn add_message(&mut self, msg: Value) {
        let msg = match msg {
            Value::Object(m) => m,
            // PyAirbyte's arrays hold nulls between messages.
            Value::Null => return,
            other => {
                self.unrecognised.push(format!(
                    "a state entry that is not an object ({})",
                    short(&other)
                ));
                return;
            }
        };
        let kind = msg.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            // A whole Airbyte message as `read` prints it: its `state` is the state message.
            "STATE" if msg.get("state").is_some_and(Value::is_object) => {
                if let Some(inner) = msg.get("state") {
                    self.add_message(inner.clone());
                }
            }
            // The other messages of a `read` output carry no position.
            "RECORD" | "LOG" | "TRACE" | "CONTROL" | "SPEC" | "CATALOG" | "CONNECTION_STATUS" => {}
            "GLOBAL" => {
                if let Some(Value::Array(states)) =
                    msg.get("global").and_then(|g| g.get("stream_states"))
                {
                    for s in states {
                        self.add_stream(s);
                    }
                } else {
                    self.unrecognised
                        .push("a GLOBAL state without global.stream_states".into());
                }
            }
            "LEGACY" => {
                if let Some(Value::Object(d)) = msg.get("data") {
                    self.add_legacy(d.clone());
                }
            }
            _ => {
                if let Some(s) = msg.get("stream") {
                    self.add_stream(s);
                } else if let Some(Value::Object(d)) = msg.get("data") {
                    self.add_legacy(d.clone());
                } else {
                    self.unrecognised.push(format!(
                        "a state message of type {kind:?} with neither `stream` nor `data`"
                    ));
                }
            }
        }
    }

    fn add_stream(&mut self, s: &Value) {
        let Some(name) = s
            .get("stream_descriptor")
            .and_then(|d| d.get("name"))
            .and_then(Value::as_str)
        else {
            self.unrecognised.push(format!(
                "a stream state without stream_descriptor.name ({})",
                short(s)
            ));
            return;
        };
        // No namespace and an empty one are the same stream (the protocol's null vs "").
        let namespace = s["stream_descriptor"]
            .get("namespace")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map(str::to_owned);
        let st = s.get("stream_state").cloned().unwrap_or(Value::Null);
        self.by_stream.insert((name.to_owned(), namespace), st);
    }

    fn add_legacy(&mut self, data: serde_json::Map<String, Value>) {
        for (name, st) in data {
            self.by_stream.insert((name, None), st);
        }
    }

    /// The saved state of exactly this stream: an entry with its name that denotes the same
    /// table. So a component stream's entry saved without its namespace (callers such as
    /// PyAirbyte key state by name; the name holds the component) still applies, but the root
    /// `users` never takes `betterAuth`'s `users` position, nor the other way round.
    pub fn get(&self, stream: &StreamDescriptor) -> Option<&Value> {
        let exact = (
            stream.name.clone(),
            stream.namespace.clone().filter(|n| !n.is_empty()),
        );
        if let Some(v) = self.by_stream.get(&exact) {
            return Some(v);
        }
        let table = table_for(stream).ok()?;
        self.by_stream
            .iter()
            .find(|((name, namespace), _)| {
                *name == stream.name
                    && table_for(&StreamDescriptor {
                        name: name.clone(),
                        namespace: namespace.clone(),
                    })
                    .is_ok_and(|t| t == table)
            })
            .map(|(_, v)| v)
    }

    /// Entries of the state file that name no stream at all: ignoring them silently would
    /// turn a mangled state into a full resync without a word. For the caller to LOG.
    pub fn unrecognised(&self) -> &[String] {
        &self.unrecognised
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.by_stream.is_empty()
    }
}

/// A JSON value, cut short for a log line (state can hold anything).
fn short(v: &Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(80) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn users() -> StreamDescriptor {
        StreamDescriptor {
            name: "users".into(),
            namespace: None,
        }
    }

    #[test]
    fn python_connector_states_resume_exactly() {
        let done = json!({"snapshot_cursor": null, "snapshot_has_more": false, "delta_cursor": 1700000799995400102i64});
        assert_eq!(
            Position::from_state(&done).unwrap(),
            Position::Deltas(DeltaCursor(1700000799995400102))
        );
        let mid = json!({"snapshot_cursor": "{\"tablet\":\"a\",\"id\":\"b\"}", "snapshot_has_more": true, "delta_cursor": 1700000799995400102i64});
        assert_eq!(
            Position::from_state(&mid).unwrap(),
            Position::Snapshot {
                snapshot: SnapshotTs(1700000799995400102),
                cursor: Some(SnapshotCursor("{\"tablet\":\"a\",\"id\":\"b\"}".into()))
            }
        );
        for fresh in [
            json!({}),
            json!(null),
            json!({"delta_cursor": 0}),
            json!({"snapshot_has_more": true}),
        ] {
            assert_eq!(
                Position::from_state(&fresh).unwrap(),
                Position::Fresh,
                "{fresh}"
            );
        }
        assert!(Position::from_state(&json!({"delta_cursor": 1.5})).is_err());
        assert!(Position::from_state(&json!({"delta_cursor": -3})).is_err());
        assert!(Position::from_state(&json!([1])).is_err());
    }

    #[test]
    fn positions_a_later_read_would_refuse_are_found_before_they_are_saved() {
        let sync = |cursor: String, at: Option<i64>| Position::DataSync {
            cursor: DataSyncCursor(cursor),
            sync_id: "airbyte-1".into(),
            consistent_at: at.map(SnapshotTs),
            settles_at: None,
        };
        assert!(sync("01ab".into(), Some(1770335566197682922))
            .check_resumable()
            .is_ok());
        assert!(sync("01ab".into(), None).check_resumable().is_ok());
        let e = sync("x".repeat(MAX_DATA_SYNC_CURSOR_BYTES + 1), Some(5)).check_resumable();
        assert!(e.unwrap_err().contains("bytes long"));
        for at in [0, -5] {
            let e = sync("01ab".into(), Some(at)).check_resumable().unwrap_err();
            assert!(e.contains("not a positive"), "{e}");
        }
        assert!(Position::Deltas(DeltaCursor(0)).check_resumable().is_err());
        assert!(Position::Deltas(DeltaCursor(7)).check_resumable().is_ok());
        let long = Position::Snapshot {
            snapshot: SnapshotTs(7),
            cursor: Some(SnapshotCursor("c".repeat(MAX_SNAPSHOT_CURSOR_BYTES + 1))),
        };
        assert!(long.check_resumable().is_err());
    }

    #[test]
    fn positions_round_trip_through_the_saved_shape() {
        for p in [
            Position::Snapshot {
                snapshot: SnapshotTs(1770335566197682922),
                cursor: None,
            },
            Position::Snapshot {
                snapshot: SnapshotTs(1770335566197682922),
                cursor: Some(SnapshotCursor("c".into())),
            },
            Position::Deltas(DeltaCursor(i64::MAX)),
            Position::DataSync {
                cursor: DataSyncCursor("01abcdef".into()),
                sync_id: "airbyte-1".into(),
                consistent_at: Some(SnapshotTs(1770335566197682922)),
                settles_at: None,
            },
        ] {
            let saved = serde_json::to_value(p.to_state()).unwrap();
            assert_eq!(Position::from_state(&saved).unwrap(), p);
            // Big integers stay integers on the wire.
            assert!(serde_json::to_string(&p.to_state())
                .unwrap()
                .contains(&format!("{}", p.to_state().delta_cursor.unwrap())));
        }
        let snapshotting = Position::DataSync {
            cursor: DataSyncCursor("01".into()),
            sync_id: String::new(),
            consistent_at: None,
            settles_at: None,
        };
        let saved = serde_json::to_value(snapshotting.to_state()).unwrap();
        assert_eq!(Position::from_state(&saved).unwrap(), snapshotting);
        // After a read that deferred changes: not consistent until the sync passes settles_at.
        let settling = Position::DataSync {
            cursor: DataSyncCursor("02".into()),
            sync_id: "airbyte-x".into(),
            consistent_at: None,
            settles_at: Some(SnapshotTs(1770335566197682922)),
        };
        let saved = serde_json::to_value(settling.to_state()).unwrap();
        assert_eq!(saved["settles_at"], 1770335566197682922i64);
        assert_eq!(saved["delta_cursor"], Value::Null);
        assert_eq!(Position::from_state(&saved).unwrap(), settling);
        let mut bad = saved.clone();
        bad["settles_at"] = json!(-1);
        assert!(Position::from_state(&bad).is_err());
    }

    #[test]
    fn data_sync_states_are_versioned_and_keep_the_legacy_keys_meaningful() {
        let p = Position::DataSync {
            cursor: DataSyncCursor("01ab".into()),
            sync_id: "airbyte-x".into(),
            consistent_at: Some(SnapshotTs(1770335566197682922)),
            settles_at: None,
        };
        assert_eq!(
            serde_json::to_value(p.to_state()).unwrap(),
            json!({"state_version": 2, "api": "data_sync", "data_sync_cursor": "01ab",
                   "sync_id": "airbyte-x", "snapshot_cursor": null, "snapshot_has_more": false,
                   "delta_cursor": 1770335566197682922i64})
        );
        // The legacy shape has no version keys at all (the Python connector's).
        assert_eq!(
            serde_json::to_value(Position::Deltas(DeltaCursor(5)).to_state()).unwrap(),
            json!({"snapshot_cursor": null, "snapshot_has_more": false, "delta_cursor": 5})
        );
        for bad in [
            json!({"state_version": 3, "delta_cursor": 5}),
            json!({"state_version": 2, "api": "data_sync"}),
            json!({"state_version": 2, "api": "other", "data_sync_cursor": "01"}),
            json!({"state_version": 2, "api": "data_sync", "data_sync_cursor": "x".repeat(70_000)}),
        ] {
            assert!(Position::from_state(&bad).is_err(), "{bad}");
        }
        assert_eq!(
            Position::from_state(&json!({"state_version": 1, "delta_cursor": 5})).unwrap(),
            Position::Deltas(DeltaCursor(5))
        );
    }

    #[test]
    fn pyairbyte_multiline_state_with_nulls_and_duplicate_keys() {
        let text = "[{\"type\":\"STREAM\",\"stream\":{\"stream_descriptor\":{\"name\":\"users\",\"namespace\":null},\"stream_state\":{\"snapshot_cursor\":null,\"snapshot_has_more\":false,\"delta_cursor\":1700000799995400102}},\"global_\":null,\"global_\":null,\"data\":null,\"sourceStats\":{\"recordCount\":5.0,\"rejectedRecordCount\":null},\"destinationStats\":null}\n, null\n, {\"type\":\"STREAM\",\"stream\":{\"stream_descriptor\":{\"name\":\"users\",\"namespace\":\"betterAuth\"},\"stream_state\":{\"delta_cursor\":7}}}]";
        let s = InputState::parse(text).unwrap();
        assert_eq!(
            s.get(&users()).unwrap()["delta_cursor"],
            json!(1700000799995400102i64)
        );
        let ns = StreamDescriptor {
            name: "users".into(),
            namespace: Some("betterAuth".into()),
        };
        assert_eq!(s.get(&ns).unwrap()["delta_cursor"], 7);
    }

    /// The root `users` must not resume from `betterAuth`'s `users` position (a name-only
    /// fallback would, and sync nothing): each stream takes only its own entry.
    #[test]
    fn state_applies_to_exactly_its_stream() {
        let only_component = r#"[{"type":"STREAM","stream":{"stream_descriptor":{"name":"users","namespace":"betterAuth"},"stream_state":{"delta_cursor":7}}}]"#;
        let s = InputState::parse(only_component).unwrap();
        assert_eq!(s.get(&users()), None);
        let component_users = StreamDescriptor {
            name: "users".into(),
            namespace: Some("betterAuth".into()),
        };
        assert_eq!(s.get(&component_users).unwrap()["delta_cursor"], 7);
        // And the other way round: a root entry is not a component stream's.
        let only_root = r#"[{"type":"STREAM","stream":{"stream_descriptor":{"name":"users","namespace":null},"stream_state":{"delta_cursor":5}}}]"#;
        let s = InputState::parse(only_root).unwrap();
        assert_eq!(s.get(&component_users), None);
        // `""` is no namespace; a component stream's entry saved without its namespace (its
        // name says the component) is still its own, one with another namespace is not.
        let saved = r#"[{"type":"STREAM","stream":{"stream_descriptor":{"name":"users","namespace":""},"stream_state":{"delta_cursor":1}}},
            {"type":"STREAM","stream":{"stream_descriptor":{"name":"betterAuth/users"},"stream_state":{"delta_cursor":2}}},
            {"type":"STREAM","stream":{"stream_descriptor":{"name":"a/t","namespace":"b"},"stream_state":{"delta_cursor":3}}}]"#;
        let s = InputState::parse(saved).unwrap();
        assert_eq!(s.get(&users()).unwrap()["delta_cursor"], 1);
        let named = StreamDescriptor {
            name: "betterAuth/users".into(),
            namespace: Some("betterAuth".into()),
        };
        assert_eq!(s.get(&named).unwrap()["delta_cursor"], 2);
        let a_t = StreamDescriptor {
            name: "a/t".into(),
            namespace: Some("a".into()),
        };
        assert_eq!(s.get(&a_t), None);
        assert!(s.unrecognised().is_empty());
    }

    #[test]
    fn entries_naming_no_stream_are_reported() {
        let s = InputState::parse(
            r#"[null, 5, {"type":"STREAM","stream":{"stream_state":{"delta_cursor":1}}}, {"type":"GLOBAL"}, {"type":"STREAM"}]"#,
        )
        .unwrap();
        let found = s.unrecognised();
        assert_eq!(found.len(), 4, "{found:?}");
        assert!(found[0].contains("not an object (5)"));
        assert!(found[1].contains("without stream_descriptor.name"));
        assert!(found[2].contains("GLOBAL"));
        assert!(found[3].contains("neither `stream` nor `data`"));
    }

    #[test]
    fn other_shapes_callers_send() {
        assert!(InputState::parse("").unwrap().is_empty());
        assert!(InputState::parse(" \n").unwrap().is_empty());
        assert!(InputState::parse("[]").unwrap().is_empty());
        let legacy = InputState::parse(r#"{"users": {"delta_cursor": 9}}"#).unwrap();
        assert_eq!(legacy.get(&users()).unwrap()["delta_cursor"], 9);
        let legacy_msg =
            InputState::parse(r#"[{"type":"LEGACY","data":{"users":{"delta_cursor":9}}}]"#)
                .unwrap();
        assert_eq!(legacy_msg.get(&users()).unwrap()["delta_cursor"], 9);
        let global = InputState::parse(r#"{"type":"GLOBAL","global":{"shared_state":{},"stream_states":[{"stream_descriptor":{"name":"users"},"stream_state":{"delta_cursor":3}}]}}"#).unwrap();
        assert_eq!(global.get(&users()).unwrap()["delta_cursor"], 3);
        assert!(InputState::parse("{not json").is_err());
        assert!(InputState::parse("42").is_err());
    }

    /// What people collect from `read`: its STATE lines, whole, as an array or one per line,
    /// or the whole output; the last state of each stream wins.
    #[test]
    fn state_messages_as_read_prints_them_are_taken() {
        let line = |t: i64| {
            json!({"type": "STATE", "state": {"type": "STREAM", "stream": {
                "stream_descriptor": {"name": "users", "namespace": null},
                "stream_state": {"snapshot_cursor": null, "snapshot_has_more": false, "delta_cursor": t}},
                "sourceStats": {"recordCount": 1.0}}})
            .to_string()
        };
        let record =
            r#"{"type":"RECORD","record":{"stream":"users","data":{"_id":"a"},"emitted_at":1}}"#;
        let log = r#"{"type":"LOG","log":{"level":"INFO","message":"hi"}}"#;
        let forms = [
            format!("[{}, {}]", line(5), line(1770335566197682922)),
            format!("{}\n{}\n", line(5), line(1770335566197682922)),
            format!(
                "{log}\n{}\n{record}\n{}\n{log}",
                line(5),
                line(1770335566197682922)
            ),
            line(1770335566197682922),
        ];
        for text in forms {
            let s = InputState::parse(&text).unwrap();
            assert!(s.unrecognised().is_empty(), "{:?}", s.unrecognised());
            assert_eq!(
                s.get(&users()).unwrap()["delta_cursor"].as_i64(),
                Some(1770335566197682922),
                "{text}"
            );
        }
        let e = InputState::parse(&format!("{}\n{{broken", line(5))).unwrap_err();
        assert!(e.message.contains("value 2"), "{}", e.message);
    }
}
