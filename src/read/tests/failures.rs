//! Failures end only the stream they belong to, INCOMPLETE with a TRACE ERROR that says what
//! to do, and the other streams finish; a failure before any stream (the deployment cannot be
//! described) ends them all. Servers that break the API's promises (a repeated snapshot
//! cursor, a deltas cursor that does not advance, rows of tables not asked for) stop their
//! walk instead of looping or mixing tables, and nothing of a broken walk is checkpointed.
//! The broken servers are the emulator's fault rules.

use convex_emulator::FaultKind;

use super::*;

/// A table whose documents Convex cannot send: every list_snapshot request that selects it
/// fails, whatever else it selects and whenever it comes.
fn unreadable(emu: &Emu, table: &str) {
    emu.fail(
        FaultRule::status(
            "list_snapshot",
            500,
            "InternalServerError",
            &format!("injected: table {table} cannot be read"),
        )
        .table(table),
    );
}

#[test]
fn a_failing_stream_ends_incomplete_and_the_others_finish() {
    let emu = Emu::new(&[("users", 2), ("posts", 2), ("tags", 2)]);
    // The head probe (selects no table), the walk of the three (fails), users alone, posts
    // alone (fails), tags alone.
    unreadable(&emu, "posts");
    let streams = [
        ("users", "full_refresh"),
        ("posts", "full_refresh"),
        ("tags", "full_refresh"),
    ];
    let (ok, messages) = emu.run(&streams, "");
    assert!(!ok);
    assert_eq!(emu.requests("list_snapshot"), 5);
    let posts = kinds(&of_stream(&messages, "posts"));
    assert_eq!(posts, FAILED);
    let err = first_error(&messages);
    assert_eq!(err["failure_type"], "transient_error", "{err}");
    assert!(
        error_text(&messages)
            .starts_with("Stream posts: /api/list_snapshot: 500: InternalServerError"),
        "{err}"
    );
    // The walk of the three stopped at posts; the others went on alone and finished.
    for name in ["users", "tags"] {
        assert_eq!(last_kind(&messages, name), "COMPLETE");
        assert_eq!(records(&messages, name).len(), 2, "{name}");
    }
    assert!(logs(&messages, "WARN")
        .iter()
        .any(|l| l.contains("go on alone from their last checkpoint")));

    // A failure that belongs to no stream (before any value): every stream still finishes.
    let emu = Emu::new(&[("users", 2), ("posts", 2)]);
    emu.fail(
        FaultRule::status("list_snapshot", 400, "BadQueryArgs", "injected")
            .after(1)
            .times(1),
    );
    let (ok, messages) = emu.run(&streams[..2], "");
    assert!(ok, "{messages:#?}");
    assert_eq!(records(&messages, "users").len(), 2);
    assert_eq!(records(&messages, "posts").len(), 2);

    // A single stream fails as it always did.
    let emu = Emu::new(&[("users", 2)]);
    emu.fail(
        FaultRule::status("list_snapshot", 400, "BadQueryArgs", "injected")
            .after(1)
            .times(1),
    );
    let (ok, messages) = emu.run(&streams[..1], "");
    assert!(!ok);
    assert!(
        error_text(&messages).starts_with("Stream users: /api/list_snapshot: 400: BadQueryArgs")
    );
}

#[test]
fn a_server_that_repeats_a_snapshot_cursor_fails_the_stream_instead_of_looping() {
    let emu = Emu::new(&[("users", 9), ("posts", 1)]);
    // Each page answers the cursor it was asked from (the first page, asked from none, its own).
    emu.fail(FaultRule::repeated_cursor("list_snapshot"));
    let (ok, messages) = emu.run(&[("users", "full_refresh")], "");
    assert!(!ok);
    assert!(error_text(&messages).contains("already answered"));
    // The first page, then the stuck cursor once more: no third round of the same records.
    assert_eq!(records(&messages, "users").len(), 6);
}

#[test]
fn a_deltas_cursor_that_does_not_advance_or_goes_negative_is_never_saved() {
    for bad in ["negative", "behind", "the same"] {
        let emu = Emu::new(&[("t", 2)]);
        emu.dep().update_settings(|s| s.deltas_page_limit = 1);
        // The position: after the documents.
        let h = emu.head();
        let bad = match bad {
            "negative" => -7,
            "behind" => h - 10,
            _ => h,
        };
        emu.fail(FaultRule::fixed_cursor("document_deltas", json!(bad)));
        for i in 0..3 {
            emu.insert("t", json!({ "v": i }));
        }
        let state = json!([saved("t", json!({ "delta_cursor": h }))]).to_string();
        let (ok, messages) = emu.run(&[("t", "incremental")], &state);
        let states = states_of(&messages, "t", "delta_cursor");
        assert!(!ok, "{bad}");
        assert!(
            states.is_empty(),
            "{bad}: nothing of a broken walk is checkpointed: {states:?}"
        );
        assert!(error_text(&messages).contains("does not advance"));
    }
}

#[test]
fn a_backend_ignoring_the_selection_fails_loudly() {
    let emu = Emu::new(&[("users", 2), ("posts", 2)]);
    let before = emu.docs("users")[0]["_ts"].as_i64().unwrap() - 1;
    // Every request that selects users gets every table's rows (not the head probe, which
    // selects no table).
    emu.fail(FaultRule::new("*", FaultKind::SelectionIgnored).table("users"));
    let (ok, messages) = emu.run(&[("users", "full_refresh")], "");
    assert!(!ok);
    assert!(error_text(&messages).contains("#302"));
    assert!(messages
        .iter()
        .filter(|m| m["type"] == "RECORD")
        .all(|m| m["record"]["data"]["_table"] == "users"));
    // The change walk too, from before the first document.
    let state = json!([saved("users", json!({ "delta_cursor": before }))]).to_string();
    let (ok, messages) = emu.run(&[("users", "incremental")], &state);
    assert!(!ok);
    assert!(error_text(&messages).contains("#302"));
    assert!(
        records(&messages, "users").is_empty(),
        "nothing of a bad walk is sent"
    );
    // And a data sync.
    let (ok, messages) = emu.run_data_sync(&[("users", "full_refresh")], "");
    assert!(!ok);
    assert!(error_text(&messages).contains("#302"), "{messages:#?}");
    assert!(records(&messages, "users").is_empty());
}

#[test]
fn a_failure_before_any_stream_ends_every_stream_incomplete() {
    let mut emu = Emu::new(&[("users", 2)]);
    emu.use_key("prod:not-the-deploy-key|c2VjcmV0");
    let (ok, messages) = emu.run(&[("users", "incremental"), ("gone", "incremental")], "");
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

/// One document with 63 user fields makes Convex's `json_schemas` refuse the whole deployment.
#[test]
fn a_deployment_json_schemas_cannot_describe_is_read_through_its_column_names() {
    let emu = Emu::new(&[("users", 2)]);
    let wide: serde_json::Map<String, Value> =
        (0..63).map(|i| (format!("f{i}"), json!(i))).collect();
    emu.insert("wide", Value::Object(wide));
    let (ok, messages) = emu.run(&[("users", "full_refresh")], "");
    assert!(ok);
    assert_eq!(records(&messages, "users").len(), 2);
    let warn = logs(&messages, "WARN");
    assert_eq!(warn.len(), 1);
    assert!(
        warn[0].contains("NoSchemaForExport") && warn[0].contains("schema.ts"),
        "{}",
        warn[0]
    );
    assert_eq!(emu.calls()[..2], ["json_schemas", "table_columns"]);
}

#[test]
fn unusable_state_or_stream_fails_only_that_stream() {
    let emu = Emu::new(&[("users", 1), ("posts", 1)]);
    let state = json!([saved("users", json!({"delta_cursor": "yesterday"}))]).to_string();
    let (ok, messages) = emu.run(
        &[
            ("users", "incremental"),
            ("posts", "incremental"),
            ("/bad", "incremental"),
        ],
        &state,
    );
    assert!(!ok);
    for s in ["users", "/bad"] {
        assert_eq!(kinds(&of_stream(&messages, s)), FAILED);
    }
    assert_eq!(last_kind(&messages, "posts"), "COMPLETE");
}

#[test]
fn a_table_gone_from_the_deployment_fails_its_stream_only() {
    let emu = Emu::new(&[("users", 1), ("ghost", 1)]);
    // `ghost` was synced before (it has a state): its table went.
    emu.dep().delete_table("", "ghost").unwrap();
    let synced = json!([saved(
        "ghost",
        json!({"snapshot_cursor": null, "snapshot_has_more": false, "delta_cursor": 5})
    )])
    .to_string();
    let (ok, messages) = emu.run(
        &[("users", "incremental"), ("ghost", "incremental")],
        &synced,
    );
    assert!(!ok);
    assert_eq!(kinds(&of_stream(&messages, "ghost")), FAILED);
    let err = first_error(&messages);
    assert_eq!(err["failure_type"], "config_error");
    assert!(error_text(&messages).contains("refresh the source schema"));
    // Never synced: a name that is no table, most likely mistyped.
    let (ok, typo) = emu.run(&[("users", "incremental"), ("usres", "incremental")], "");
    assert!(!ok);
    let err = first_error(&typo);
    assert_eq!(err["failure_type"], "config_error");
    let text = err["message"].as_str().unwrap();
    assert!(text.contains(r#"did you mean "users"?"#), "{text}");
    assert_eq!(last_kind(&messages, "users"), "COMPLETE");
    assert!(emu.calls().iter().all(|c| !c.contains("ghost")));
}
