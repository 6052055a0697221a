//! A read's checkpoints: a STATE after every page with a stream's values, one for an empty
//! stream, and reads resumed from them: a walk of several tables continues stream by stream,
//! a walk saved mid-table continues at its own timestamp, a read cut by its change buffer
//! ends at a checkpoint that the next read continues from; nothing is lost or sent twice.

use super::*;

#[test]
fn full_refresh_checkpoints_every_page_and_ends_complete() {
    let emu = Emu::new(&[("users", 7), ("posts", 0)]);
    let (ok, messages) = emu.run(&[("users", "full_refresh"), ("posts", "full_refresh")], "");
    assert!(ok);
    let users = of_stream(&messages, "users");
    assert_eq!(kinds(&users), SEVEN_IN_PAGES_OF_THREE);
    assert_eq!(
        last_state(&users),
        json!({"snapshot_cursor": null, "snapshot_has_more": false, "delta_cursor": emu.head()})
    );
    // A stream with nothing in it still gets a final STATE.
    assert_eq!(
        kinds(&of_stream(&messages, "posts")),
        ["STARTED", "STATE(0.0)", "COMPLETE"]
    );
    // Records are the documents plus the CDC fields.
    let first = records(&messages, "users")[0];
    let doc = &emu.docs("users")[0];
    assert_eq!(first["_id"], doc["_id"]);
    assert_eq!(first["_deleted"], false);
    assert_eq!(first["_ab_cdc_lsn"], doc["_ts"]);
}

/// A read killed in the middle of a walk of several tables: each stream resumes alone from
/// its own last STATE, and the destination ends exactly the deployment, no document twice.
#[test]
fn a_walk_of_several_tables_resumes_stream_by_stream() {
    let emu = Emu::new(&[("a", 5), ("b", 5), ("c", 5)]);
    let streams = incremental(&["a", "b", "c"]);
    let (ok, messages) = emu.run(&streams, "[]");
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
    emu.api.clear_calls();
    let (ok, next) = emu.run(&streams, &state);
    assert!(ok);
    let calls = emu.calls();
    let b_cursor = emu.cursor("b", &emu.ids("b")[2]);
    assert!(
        calls.contains(&walk_call("b", emu.head(), Some(&b_cursor))),
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
fn a_full_change_buffer_ends_the_read_at_a_checkpoint_and_the_next_continues() {
    let emu = Emu::new(&[("t", 1)]);
    let (_, first) = emu.run(&[("t", "incremental")], "");
    let mut state = state_after(&first, "");
    for _ in 0..10 {
        emu.insert("t", json!({"pad": "x".repeat(200)}));
    }
    let mut small = options();
    small.changes.buffer_bytes = 700; // two documents
    let mut reads = 0;
    let mut seen = 0;
    loop {
        reads += 1;
        let (ok, m) = emu.run_with(
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
        if at == emu.head() {
            break;
        }
        assert!(
            logs(&m, "WARN")
                .iter()
                .any(|l| l.contains("change_buffer_mb")),
            "a cut read says so"
        );
        assert!(reads < 10);
    }
    assert!(reads > 2, "the budget cut the walk");
    assert_eq!(seen, 10, "every change exactly once across the reads");
}

#[test]
fn a_resumed_snapshot_continues_at_its_own_timestamp_and_joins_the_walk_next_read() {
    let emu = Emu::new(&[("users", 7), ("posts", 2)]);
    let s0 = emu.head();
    let users = emu.ids("users");
    emu.delete("users", &users[0]);
    emu.replace("posts", &emu.ids("posts")[0], json!({"n": 99}));
    let cursor = emu.cursor("users", &users[5]);
    let state = json!([
        saved(
            "users",
            json!({"snapshot_cursor": cursor, "snapshot_has_more": true, "delta_cursor": s0})
        ),
        saved("posts", json!({ "delta_cursor": s0 })),
    ])
    .to_string();
    let streams = [("users", "incremental"), ("posts", "incremental")];
    let (ok, messages) = emu.run(&streams, &state);
    assert!(ok);
    let calls = emu.calls();
    assert_eq!(
        &calls[1..],
        [
            format!("document_deltas posts {s0}"),
            walk_call("users", s0, Some(&cursor)),
        ]
    );
    assert_eq!(records(&messages, "users").len(), 1);
    assert_eq!(
        last_state(&of_stream(&messages, "users"))["delta_cursor"],
        s0
    );
    let state = state_after(&messages, &state);
    let (ok, next) = emu.run(&streams, &state);
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
