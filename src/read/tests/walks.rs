//! The shape of a read's walks: every stream that needs a snapshot shares one list_snapshot
//! walk at the read's timestamp; every incremental stream shares one document_deltas walk from
//! the oldest position; each changed document is sent once, at its latest revision (every
//! revision on request); a catalog with fewer properties asks Convex for only those columns.

use super::*;

#[test]
fn streams_that_need_a_snapshot_share_one_walk_at_the_reads_timestamp() {
    let emu = Emu::new(&[("a", 4), ("b", 4), ("c", 1)]);
    let (ok, messages) = emu.run(
        &[
            ("a", "incremental"),
            ("b", "incremental"),
            ("c", "full_refresh"),
        ],
        "[]",
    );
    assert!(ok);
    let head = emu.head();
    // Each stream checkpoints only the pages with its values, in the shape a walk of its
    // table alone has; at the end every stream is at T.
    let a = states_of(&messages, "a", "snapshot_cursor");
    let b = states_of(&messages, "b", "snapshot_cursor");
    assert_eq!(a.len(), 3, "{a:?}");
    assert_eq!(a[0], emu.cursor("a", &emu.ids("a")[2]));
    assert!(emu.starts(&a[1], "b"), "{}", a[1]);
    assert_eq!(a[2], Value::Null);
    assert_eq!(b.len(), 3, "{b:?}");
    assert_eq!(b[0], emu.cursor("b", &emu.ids("b")[2]));
    assert!(emu.starts(&b[1], "c"), "{}", b[1]);
    assert_eq!(b[2], Value::Null);
    assert_eq!(states_of(&messages, "c", "snapshot_cursor"), [Value::Null]);
    for name in ["a", "b"] {
        assert_eq!(
            last_state(&of_stream(&messages, name))["delta_cursor"],
            head
        );
    }
    // One head probe, then one walk over the three tables at that timestamp: Convex's one
    // cached iterator goes on from table to table instead of being built once per table.
    let walk = |cursor: &Value| walk_call("a, b, c", head, cursor.as_str());
    assert_eq!(
        emu.calls(),
        [
            "json_schemas".to_owned(),
            "head".to_owned(),
            walk(&Value::Null),
            walk(&a[0]),
            walk(&a[1]),
            walk(&b[0]),
            walk(&b[1]),
        ]
    );
}

#[test]
fn one_change_walk_serves_every_incremental_stream_from_the_oldest_position() {
    let streams = incremental(&["a", "b", "c"]);
    let emu = Emu::new(&[("a", 2), ("b", 2), ("c", 2)]);
    let (ok, first) = emu.run(&streams, "");
    assert!(ok);
    let t1 = emu.head();
    // Streams a and b are at t1; c is moved ahead (its state saved after a later write).
    let mut inserted = Vec::new();
    for i in 0..6 {
        let table = ["a", "b", "c"][i % 3];
        inserted.push(emu.insert(table, json!({ "n": i })));
    }
    let c_pos = emu.head() - 1;
    let mut state: Value = serde_json::from_str(&state_after(&first, "")).unwrap();
    for s in state.as_array_mut().unwrap() {
        if s["stream"]["stream_descriptor"]["name"] == "c" {
            assert_eq!(s["stream"]["stream_state"]["delta_cursor"], t1);
            s["stream"]["stream_state"]["delta_cursor"] = json!(c_pos);
        }
    }
    let state = state.to_string();
    assert!(state.contains(&c_pos.to_string()), "{state}");
    emu.api.clear_calls();
    let (ok, second) = emu.run(&streams, &state);
    assert!(ok);
    // One walk over all three tables: 6 rows, 2 a page → 3 requests, from the oldest position.
    let calls = emu.calls();
    let deltas: Vec<_> = calls
        .iter()
        .filter(|c| c.starts_with("document_deltas"))
        .collect();
    assert_eq!(deltas.len(), 3, "{deltas:?}");
    assert!(deltas[0].ends_with(&format!("a, b, c {t1}")), "{deltas:?}");
    assert!(!calls.iter().any(|c| c.starts_with("list_snapshot")));
    assert_eq!(records(&second, "a").len(), 2);
    assert_eq!(records(&second, "b").len(), 2);
    // c never receives a change at or before its own position.
    let c = records(&second, "c");
    assert_eq!(c.len(), 1);
    assert_eq!(c[0]["_id"], inserted[5]);
    for s in ["a", "b", "c"] {
        assert_eq!(
            last_state(&of_stream(&second, s))["delta_cursor"],
            emu.head()
        );
    }
}

#[test]
fn a_read_sends_each_changed_document_once_at_its_latest_revision() {
    let emu = Emu::new(&[("t", 3)]);
    let ids = emu.ids("t");
    let (_, first) = emu.run(&[("t", "incremental")], "");
    let state = state_after(&first, "");
    for v in [11, 12, 13] {
        emu.replace("t", &ids[0], json!({ "v": v }));
    }
    emu.replace("t", &ids[1], json!({"v": 1}));
    emu.delete("t", &ids[1]);
    let fresh = emu.insert("t", json!({"v": 2}));
    emu.delete("t", &fresh);
    let (ok, second) = emu.run(&[("t", "incremental")], &state);
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
            (ids[0].clone(), false, json!(13)),
            (ids[1].clone(), true, Value::Null),
            (fresh, true, Value::Null),
        ]
    );
    // With every_revision, history destinations get all seven revisions in commit order.
    let mut history = options();
    history.changes.every_revision = true;
    let (ok, all) = emu.run_with(
        catalog_of(&[("t", "incremental")], json!({})),
        &state,
        history,
    );
    assert!(ok);
    assert_eq!(records(&all, "t").len(), 7);
}

#[test]
fn full_refresh_with_a_finished_state_walks_again() {
    let emu = Emu::new(&[("users", 2)]);
    let state =
        r#"{"users": {"snapshot_cursor": null, "snapshot_has_more": false, "delta_cursor": 5}}"#;
    let (ok, messages) = emu.run(&[("users", "full_refresh")], state);
    assert!(ok);
    assert_eq!(records(&messages, "users").len(), 2);
}

#[test]
fn fewer_configured_properties_request_only_those_columns() {
    let emu = Emu::new(&[("users", 2)]);
    emu.replace(
        "users",
        &emu.ids("users")[0],
        json!({"n": 1, "x": "secret"}),
    );
    let schema = json!({"type":"object","properties":{"_id":{"type":"string"},"x":{"type":"string"},
        "_ab_cdc_lsn":{"type":"number"}}});
    let (ok, messages) = emu.run_with(
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
