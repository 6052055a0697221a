//! The Data Sync API: a cold sync sends its table once and saves Convex's cursor; a streaming
//! export position is converted by Convex once, and a Data Sync position reads on through
//! document_deltas; cursors Convex cannot convert, expired or altered ones restart or fail
//! their stream with what to do; a busy first sync ends in one read without sending a
//! document twice; `every_revision`; a legacy snapshot in progress finishes first; long reads
//! log their progress on both APIs.

use super::*;

#[test]
fn a_cold_data_sync_sends_the_table_once_and_saves_a_versioned_cursor() {
    let emu = Emu::new(&[("users", 7)]);
    let (ok, messages) = emu.run_data_sync(&[("users", "incremental")], "");
    assert!(ok);
    assert_eq!(records(&messages, "users").len(), 7);
    let users = of_stream(&messages, "users");
    // One STATE per by-id page (3 documents each), the last one consistent at the head.
    assert_eq!(kinds(&users), SEVEN_IN_PAGES_OF_THREE);
    let state = last_state(&users);
    assert_eq!(state["state_version"], 2);
    assert_eq!(state["api"], "data_sync");
    assert_eq!(state["delta_cursor"].as_i64(), Some(emu.head()));
    assert_eq!(state["data_sync_cursor"], json!(emu.api.last_sync_cursor()));
    // Nothing new: one page, no records.
    emu.api.clear_calls();
    let (ok, again) = emu.run_data_sync(&[("users", "incremental")], &state_after(&messages, ""));
    assert!(ok);
    assert!(records(&again, "users").is_empty());
    let pages = emu
        .calls()
        .iter()
        .filter(|c| c.starts_with("data_sync"))
        .count();
    assert_eq!(pages, 1);
    assert_eq!(
        emu.requests("list_snapshot") + emu.requests("document_deltas"),
        0
    );
}

/// Switching a connection to `api: data_sync`: its streaming export position is converted
/// by Convex, so only what changed since is read, and the conversion happens once.
#[test]
fn a_streaming_export_state_moves_to_data_sync_without_a_reread() {
    let emu = Emu::new(&[("users", 5)]);
    let ids = emu.ids("users");
    let (ok, first) = emu.run(&[("users", "incremental")], "");
    assert!(ok);
    let legacy = state_after(&first, "");
    emu.replace("users", &ids[1], json!({"n": 100}));
    emu.delete("users", &ids[2]);
    let (ok, moved) = emu.run_data_sync(&[("users", "incremental")], &legacy);
    assert!(ok);
    let r = records(&moved, "users");
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(
        (r[0]["_id"].as_str(), r[0]["n"].as_i64()),
        (Some(ids[1].as_str()), Some(100))
    );
    assert_eq!(
        (r[1]["_id"].as_str(), r[1]["_deleted"].as_bool()),
        (Some(ids[2].as_str()), Some(true))
    );
    assert!(logs(&moved, "INFO")
        .iter()
        .any(|l| l.contains("nothing is read again")));
    assert_eq!(emu.requests("data_sync_cursor_from_deltas"), 1);
    let saved = state_after(&moved, &legacy);
    assert!(saved.contains("\"api\":\"data_sync\""));
    let (ok, next) = emu.run_data_sync(&[("users", "incremental")], &saved);
    assert!(ok && records(&next, "users").is_empty());
    assert_eq!(
        emu.requests("data_sync_cursor_from_deltas"),
        1,
        "converted once"
    );
    // And back: the data sync's consistent timestamp is a document_deltas position.
    emu.replace("users", &ids[3], json!({"n": 7}));
    let (ok, back) = emu.run(&[("users", "incremental")], &saved);
    assert!(ok);
    let r = records(&back, "users");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["_id"], ids[3]);
    assert!(logs(&back, "INFO")
        .iter()
        .any(|l| l.contains("continues from that timestamp")));
}

/// After a first read of `users` (4 documents) on `api`, Convex's clock moves past its Data
/// Sync retention (3 days), and a read on the Data Sync API, which must read the table again
/// from scratch, follows. Returns its messages.
fn read_past_data_sync_retention(api: Api, new_documents: usize) -> Vec<Value> {
    let emu = Emu::new(&[("users", 4)]);
    let streams = incremental(&["users"]);
    let first_options = ReadOptions { api, ..options() };
    let (ok, first) = emu.run_with(catalog_of(&streams, json!({})), "", first_options);
    assert!(ok);
    for n in 0..new_documents {
        emu.insert("users", json!({ "n": n }));
    }
    let retention = emu.dep().settings().data_sync_retention_ms;
    emu.dep()
        .advance_clock(std::time::Duration::from_millis(retention + 1));
    let (ok, again) = emu.run_data_sync(&streams, &state_after(&first, ""));
    assert!(ok);
    let read = records(&again, "users").len();
    assert_eq!(read, 4 + new_documents, "read again from scratch");
    again
}

/// Convex converts no streaming export position older than its Data Sync retention.
#[test]
fn a_position_convex_cannot_convert_starts_a_new_sync_and_says_what_it_means() {
    let moved = read_past_data_sync_retention(Api::StreamingExport, 0);
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
    let again = read_past_data_sync_retention(Api::DataSync, 1);
    let warn = logs(&again, "WARN");
    assert!(warn.len() == 1 && warn[0].contains("expired"), "{warn:?}");
    assert_eq!(last_kind(&again, "users"), "COMPLETE");
}

#[test]
fn a_tampered_cursor_fails_its_stream_with_what_to_do() {
    let emu = Emu::new(&[("users", 2), ("posts", 2)]);
    let state = r#"[{"type":"STREAM","stream":{"stream_descriptor":{"name":"users"},"stream_state":{"state_version":2,"api":"data_sync","data_sync_cursor":"01deadbeef","delta_cursor":null}}}]"#;
    let (ok, messages) =
        emu.run_data_sync(&[("users", "incremental"), ("posts", "incremental")], state);
    assert!(!ok);
    assert_eq!(kinds(&of_stream(&messages, "users")), FAILED);
    let err = first_error(&messages);
    assert_eq!(err["failure_type"], "config_error");
    let text = error_text(&messages);
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
        let emu = Emu::new(&[("t", 30)]);
        // A write before about every other page, each past the freshness window.
        emu.api.set_before_data_sync(Some(churn(seed, 1)));
        let initial = emu.ids("t");
        let mut state = String::new();
        let mut dest = MergingDestination::default();
        for read in 0..6 {
            if read == 5 {
                // Writes stop: the next read catches up, and the copy is exact.
                emu.api.set_before_data_sync(None);
            }
            let (ok, m) = emu.run_data_sync(&[("t", "incremental")], &state);
            assert!(ok);
            let what = format!("seed {seed} read {read}");
            dest.merge(&m, &what); // panics on an _id sent twice in one read
            if read == 0 {
                // Every document that existed when the sync started was walked in this read
                // (unless a writer deleted it first).
                let live_now = emu.ids("t");
                let sent = dest.tables.get("t").map(|t| t.len()).unwrap_or(0);
                let kept = initial.iter().filter(|id| live_now.contains(id)).count();
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
            if assert_consistent(&emu, &dest, &m, &["t"], &what) == 0 {
                assert!(
                    read < 5,
                    "seed {seed}: the read without writes ends consistent"
                );
            }
        }
    }
    assert!(deferred > 0, "the churn never made a read defer a document");
}

/// A busy first sync whose change buffer fills while it defers changes (here: a buffer of
/// 2,000 bytes, which the ids of what it sent one by one outgrow) goes on to a consistent
/// copy: ended before it, its position would go back before documents it sent, and a later
/// delete of one would never reach the destination. Read after read nothing is sent twice in
/// one read, and once the writes stop the copy is exact.
#[test]
fn a_busy_first_data_sync_whose_buffer_fills_while_deferring_loses_no_delete() {
    let mut deferring_reads = 0;
    for seed in 0..10 {
        let emu = Emu::new(&[("t", 90)]);
        emu.api.set_before_data_sync(Some(churn(seed, 1)));
        let mut state = String::new();
        let mut dest = MergingDestination::default();
        let mut exact = false;
        for read in 0..40 {
            if read == 12 {
                emu.api.set_before_data_sync(None);
            }
            let mut options = data_sync_options();
            options.changes.buffer_bytes = 2_000;
            let catalog = catalog_of(&[("t", "incremental")], json!({}));
            let (ok, m) = emu.run_with(catalog, &state, options);
            assert!(ok);
            let what = format!("seed {seed} read {read}");
            dest.merge(&m, &what);
            let deferring = logs(&m, "INFO")
                .iter()
                .any(|l| l.contains("changes came for documents this read had already sent"));
            if deferring {
                // Where the walk ended: its last progress line says what the sync had reached.
                deferring_reads += 1;
                let phase = logs(&m, "INFO")
                    .into_iter()
                    .rfind(|l| l.contains("Data Sync"))
                    .unwrap_or_default();
                assert!(
                    !phase.contains("snapshotting"),
                    "{what}: deferred changes, then ended while snapshotting: {phase}"
                );
            }
            state = state_after(&m, &state);
            if read >= 12 && assert_consistent(&emu, &dest, &m, &["t"], &what) > 0 {
                exact = true;
                break;
            }
        }
        assert!(
            exact,
            "seed {seed}: the reads after the writes never caught up"
        );
    }
    assert!(
        deferring_reads > 0,
        "the churn never made a read defer a document"
    );
}

#[test]
fn every_revision_on_data_sync_sends_each_revision_with_a_state_per_page() {
    let emu = Emu::new(&[("t", 2)]);
    let (ok, first) = emu.run_data_sync(&[("t", "incremental")], "");
    assert!(ok);
    let id = &emu.ids("t")[0];
    emu.replace("t", id, json!({"v": 1}));
    emu.replace("t", id, json!({"v": 2}));
    let mut opts = data_sync_options();
    opts.changes.every_revision = true;
    let (ok, m) = emu.run_with(
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
    let emu = Emu::new(&[("t", 7)]);
    let (ok, first) = emu.run(&[("t", "incremental")], "");
    assert!(ok);
    let mid = first
        .iter()
        .find(|m| m["state"]["stream"]["stream_state"]["snapshot_has_more"] == true)
        .unwrap();
    let state = Value::Array(vec![mid["state"].clone()]).to_string();
    let (ok, rest) = emu.run_data_sync(&[("t", "incremental")], &state);
    assert!(ok);
    assert_eq!(records(&rest, "t").len(), 4, "the rest of the walk");
    assert_eq!(emu.requests("data_sync"), 0);
    let (ok, next) = emu.run_data_sync(&[("t", "incremental")], &state_after(&rest, &state));
    assert!(ok && records(&next, "t").is_empty());
    assert_eq!(emu.requests("data_sync_cursor_from_deltas"), 1);
}

/// A long read says how it is doing (every 15 s in a real read; here at every chance): records
/// so far and their rate, and on Data Sync the sync's own status.
#[test]
fn long_reads_log_their_progress_on_both_apis() {
    let emu = Emu::new(&[("a", 7), ("b", 4)]);
    let often = |api| ReadOptions {
        api,
        progress_every: std::time::Duration::ZERO,
        ..options()
    };
    let catalog = || catalog_of(&[("a", "incremental"), ("b", "full_refresh")], json!({}));
    let (ok, legacy) = emu.run_with(catalog(), "", often(Api::StreamingExport));
    assert!(ok);
    let info = logs(&legacy, "INFO");
    assert!(
        info.iter()
            .any(|l| l.starts_with("Stream a: list_snapshot walk at") && l.contains("records/s")),
        "{info:?}"
    );
    let (ok, synced) = emu.run_with(catalog(), "", often(Api::DataSync));
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
    let (ok, quiet) = emu.run_data_sync(&[("a", "incremental")], "");
    assert!(ok);
    let progress: Vec<&str> = logs(&quiet, "INFO")
        .into_iter()
        .filter(|l| l.contains("values received"))
        .collect();
    assert_eq!(progress.len(), 1, "{progress:?}");
    assert!(progress[0].starts_with("Stream a: Data Sync up to date at "));
}
