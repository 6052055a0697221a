//! `read` of the real binary against the emulator: content equals the deployment's, state
//! resumes exactly, failures heal or fail the right stream.

// Test helpers outside #[test] fns may unwrap and panic too (clippy.toml covers only those fns).
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

/// Two tests of each `body(data_sync: bool)`: `streaming` on the streaming export API,
/// `data_sync` on the Data Sync API.
macro_rules! on_both_apis {
    ($($body:ident: $streaming:ident, $data_sync:ident;)*) => {$(
        #[test]
        fn $streaming() {
            $body(false);
        }

        #[test]
        fn $data_sync() {
            $body(true);
        }
    )*};
}

on_both_apis! {
    resumes_everywhere_on: resumes_from_every_checkpoint_of_an_interrupted_sync, resumes_from_every_checkpoint_of_an_interrupted_data_sync;
    python_state_continues_on: the_python_connectors_saved_state_continues_exactly, the_python_connectors_saved_state_continues_exactly_on_data_sync;
    field_selection_on: a_configured_schema_with_fewer_properties_reads_only_those_columns, a_configured_schema_with_fewer_properties_reads_only_those_columns_on_data_sync;
}

use std::collections::BTreeMap;

use common::oracle::committed;
use common::{assert_matches_live, assert_no_id_twice, state_after, tables, without_cdc, Harness};
use convex_emulator::{apply_changes, FaultKind, FaultRule, Settings};
use serde_json::{json, Value};

#[test]
fn full_refresh_of_tables_and_components_equals_the_deployment() {
    let h = Harness::generated(3, 1100, true, Settings::default());
    let catalog = h.catalog_all("full_refresh");
    let run = h.read(&catalog, None);
    run.assert_well_formed(h.emu.access_key());
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_matches_live(&h, &[&run]);
    // Each snapshot document exactly once, with `_deleted: false` and the CDC fields.
    for (name, records) in run.records() {
        let mut ids: Vec<_> = records.iter().map(|r| r["_id"].as_str().unwrap()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), records.len(), "duplicates in {name}");
        for r in &records {
            assert_eq!(r["_deleted"], false);
            assert_eq!(r["_ab_cdc_lsn"], r["_ts"]);
            assert!(r["_ab_cdc_deleted_at"].is_null());
        }
    }
    // One head probe (an empty snapshot page) and one json_schemas: then pages of 1024, plus
    // Convex's extra empty page when a table ends exactly at a page boundary.
    let stats = h.dep().requests();
    assert_eq!(
        stats.by_endpoint.get("json_schemas").copied(),
        Some(2),
        "discover + read"
    );
    let streams = tables(h.dep()).len() as u64;
    assert_eq!(
        stats.by_endpoint.get("list_snapshot").copied(),
        Some(streams * 2 + 1)
    );
    for name in run.records().keys() {
        assert_eq!(run.statuses(name), ["STARTED", "RUNNING", "COMPLETE"]);
    }
}

#[test]
fn all_streams_read_at_one_snapshot_even_with_writes_during_the_sync() {
    let h = Harness::with_settings(3, 300, false, |s| s.snapshot_page_limit = 50);
    // The writer's changes add columns: let the configured schema know them already, so it
    // asks for every column (a schema with fewer properties is a field selection).
    for seed in 0..3 {
        apply_changes(h.dep(), 30, 90 + seed).unwrap();
    }
    let catalog = h.catalog_all("incremental");
    // Slow pages, and a writer changing every table while the walks run.
    h.dep()
        .add_fault(FaultRule::new("list_snapshot", FaultKind::Latency).ms(40))
        .unwrap();
    let dep = h.dep().clone();
    let writer = std::thread::spawn(move || {
        for i in 0..20 {
            apply_changes(&dep, 5, 100 + i).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
    });
    let first = h.read(&catalog, Some("[]"));
    writer.join().unwrap();
    first.assert_well_formed(h.emu.access_key());
    assert_eq!(first.code, 0);
    // One timestamp T for the whole read: every stream ends at it, no record is newer.
    let ends: Vec<i64> = first
        .final_states()
        .values()
        .map(|s| s["delta_cursor"].as_i64().unwrap())
        .collect();
    assert_eq!(ends.len(), 3);
    assert!(ends.iter().all(|t| *t == ends[0]), "one snapshot: {ends:?}");
    assert!(first
        .records()
        .values()
        .flatten()
        .all(|r| r["_ts"].as_i64().unwrap() <= ends[0]));
    h.dep().clear_faults();
    // New columns appeared: refresh the configured schema, as the platform does.
    let catalog = h.catalog_all("incremental");
    let second = h.read(&catalog, Some(&first.saved_state()));
    second.assert_well_formed(h.emu.access_key());
    assert_matches_live(&h, &[&first, &second]);
}

#[test]
fn incremental_brings_only_changes_with_deletes_and_whole_transactions() {
    let h = Harness::generated(2, 400, true, Settings::default());
    let (_, first) = h.read_all();
    let summary = apply_changes(h.dep(), 600, 42).unwrap();
    assert!(summary.deleted > 0 && summary.updated > 0 && summary.inserted > 0);
    // A multi-document transaction bigger than a deltas page.
    h.dep()
        .transaction(|tx| {
            for i in 0..300 {
                tx.insert("", "users", json!({"name": format!("bulk-{i}")}))?;
            }
            Ok(())
        })
        .unwrap();
    let catalog = h.catalog_all("incremental");
    let second = h.read(&catalog, Some(&first.saved_state()));
    second.assert_well_formed(h.emu.access_key());
    assert_eq!(second.code, 0);
    // Only the changed documents, each once at its latest revision: 600 changes touch fewer
    // documents than that, plus the 300 of the big transaction.
    let changed: usize = second.records().values().map(Vec::len).sum();
    assert!((600..900).contains(&changed), "only the changes: {changed}");
    for (name, records) in second.records() {
        let mut ids: Vec<_> = records.iter().map(|r| r["_id"].as_str().unwrap()).collect();
        ids.sort();
        let n = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), n, "one revision per document in {name}");
    }
    let deletes: Vec<Value> = second
        .records()
        .values()
        .flatten()
        .filter(|r| r["_deleted"] == true)
        .cloned()
        .collect();
    assert!(!deletes.is_empty());
    for d in &deletes {
        assert_eq!(d["_ab_cdc_deleted_at"], d["_ab_cdc_updated_at"]);
        assert!(d.get("_creationTime").is_none());
    }
    assert_matches_live(&h, &[&first, &second]);
    // Nothing new: nothing read, the cursor stays.
    let third = h.read(&catalog, Some(&second.saved_state()));
    assert!(third.of_type("RECORD").is_empty());
    let cursors = |r: &common::Run| -> Vec<Value> {
        serde_json::from_str::<Vec<Value>>(&r.saved_state())
            .unwrap()
            .into_iter()
            .map(|s| s["stream"]["stream_state"].clone())
            .collect()
    };
    assert_eq!(cursors(&third), cursors(&second));
}

/// Resumes from each STATE of `run` as if the sync had died right after it (the platform keeps
/// the last state of each stream, on top of `prior_state`); returns, per resume, the records
/// checkpointed before the crash and the resumed run.
fn resume_everywhere(
    h: &Harness,
    catalog: &std::path::Path,
    run: &common::Run,
    prior_state: &str,
) -> Vec<(common::Run, common::Run)> {
    let mut out = Vec::new();
    let states = run.messages.iter().enumerate();
    for (upto, _) in states.filter(|(_, m)| m["type"] == "STATE") {
        let delivered = &run.messages[..=upto];
        // Records after the last STATE of their stream were not checkpointed.
        let prefix = common::Run {
            code: 0,
            stdout: String::new(),
            stderr: String::new(),
            messages: committed(delivered),
            elapsed: std::time::Duration::ZERO,
        };
        let state = state_after(delivered, prior_state);
        let resumed = h.read(catalog, Some(&state));
        resumed.assert_well_formed(h.emu.access_key());
        assert_eq!(resumed.code, 0);
        out.push((prefix, resumed));
    }
    out
}

/// Resumes from every checkpoint of an interrupted sync, snapshot and changes, and ends exact.
fn resumes_everywhere_on(data_sync: bool) {
    let mut h = Harness::with_settings(2, 23, false, |s| {
        s.snapshot_page_limit = 5;
        s.deltas_page_limit = 4;
        s.data_sync_page_entries = 5;
    });
    h.use_data_sync_if(data_sync);
    let catalog = h.catalog_all("incremental");
    let base = h.read(&catalog, Some("[]"));
    let resumes = resume_everywhere(&h, &catalog, &base, "[]");
    assert!(resumes.len() >= 10);
    for (k, (prefix, resumed)) in resumes.iter().enumerate() {
        // Snapshot phase: every document exactly once across the checkpointed part and the rest.
        let total: usize = [prefix, resumed]
            .iter()
            .map(|r| r.records().values().map(Vec::len).sum::<usize>())
            .sum();
        assert_eq!(
            total, 46,
            "resume at state {k}: no document lost or repeated"
        );
        assert_matches_live(&h, &[prefix, resumed]);
    }
    apply_changes(h.dep(), 30, 9).unwrap();
    let catalog = h.catalog_all("incremental");
    let deltas = h.read(&catalog, Some(&base.saved_state()));
    // One change walk: each stream's STATE follows its changes.
    let resumes = resume_everywhere(&h, &catalog, &deltas, &base.saved_state());
    assert_eq!(resumes.len(), 2);
    for (prefix, resumed) in &resumes {
        assert_matches_live(&h, &[&base, prefix, resumed]);
    }
}

/// The Python connector's saved state continues exactly; on the Data Sync API,
/// Convex converts it and the read continues with the changes since, without a snapshot.
fn python_state_continues_on(data_sync: bool) {
    let mut h = Harness::with_tables(1, 50, false);
    h.use_data_sync_if(data_sync);
    let head = h.dep().head();
    apply_changes(h.dep(), 20, 3).unwrap();
    let catalog = h.catalog_all("incremental");
    let peer_state = format!(
        r#"[{{"type": "STREAM", "stream": {{"stream_descriptor": {{"name": "users", "namespace": null}}, "stream_state": {{"snapshot_cursor": null, "snapshot_has_more": false, "delta_cursor": {head}}}}}, "sourceStats": {{"recordCount": 50.0}}}}]"#
    );
    let run = h.read(&catalog, Some(&peer_state));
    run.assert_well_formed(h.emu.access_key());
    let records = &run.records()["users"];
    assert!(!records.is_empty() && records.len() <= 20);
    assert!(records.iter().all(|r| r["_ts"].as_i64().unwrap() > head));
    assert_eq!(
        h.dep().requests().by_endpoint.get("list_snapshot"),
        None,
        "no snapshot, no probe"
    );
    if data_sync {
        assert_eq!(
            h.dep()
                .requests()
                .by_endpoint
                .get("data_sync_cursor_from_deltas"),
            Some(&1)
        );
        let state = &run.final_states().into_values().next().unwrap();
        assert_eq!(state["api"], "data_sync");
        assert!(state["delta_cursor"].as_i64().unwrap() >= head);
    }
}

#[test]
fn injected_failures_mid_sync_still_end_with_exact_content() {
    let mut h = Harness::with_settings(2, 700, false, |s| s.snapshot_page_limit = 100);
    h.config_extra_timeout(2);
    let catalog = h.catalog_all("incremental");
    let dep = h.dep();
    // The schedule, in the emulator's JSON form of fault rules.
    for rule in [
        json!({"endpoint": "list_snapshot", "kind": "status", "status": 503, "code": "Overloaded", "message": "busy", "after": 1, "times": 2}),
        json!({"endpoint": "list_snapshot", "kind": "rate_limit", "retry_after_secs": 1, "after": 4, "times": 1}),
        json!({"endpoint": "list_snapshot", "kind": "reset", "after": 6, "times": 1}),
        json!({"endpoint": "list_snapshot", "kind": "truncate", "after": 8, "times": 1}),
        json!({"endpoint": "list_snapshot", "kind": "html", "status": 502, "after": 10, "times": 1}),
        json!({"endpoint": "list_snapshot", "kind": "stall", "ms": 60_000, "after": 12, "times": 1}),
        json!({"endpoint": "document_deltas", "kind": "stall", "ms": 60_000, "after_headers": true, "times": 1}),
        // The read's own json_schemas (discover's came before): a proxy's HTML page.
        json!({"endpoint": "json_schemas", "kind": "html", "status": 502, "times": 1}),
    ] {
        dep.add_fault(serde_json::from_value(rule).unwrap())
            .unwrap();
    }
    let first = h.read(&catalog, Some("[]"));
    first.assert_well_formed(h.emu.access_key());
    assert_eq!(first.code, 0, "{}", first.stdout);
    // Exactly once, even across resets mid-page.
    assert_no_id_twice(&first, "a read with faults");
    assert_matches_live(&h, &[&first]);
    let warns = first
        .messages
        .iter()
        .filter(|m| m["log"]["level"] == "WARN")
        .count();
    assert!(warns >= 7, "each retry is logged");
    let schemas: Vec<u16> = h
        .dep()
        .request_log()
        .into_iter()
        .filter(|r| r.endpoint == "json_schemas")
        .map(|r| r.status)
        .collect();
    assert_eq!(
        schemas,
        [200, 502, 200],
        "discover, the read's failed try, its retry"
    );
}

/// convex-backend #302 ignored `tableName`: walks that name their tables in a `selection`
/// do not depend on it. (The guard against foreign rows is tested in the engine's tests, with
/// the emulator's `selection_ignored` fault: `src/read/tests/failures.rs`.)
#[test]
fn a_backend_ignoring_table_name_filters_does_not_mix_tables() {
    let h = Harness::with_tables(2, 10, false);
    let catalog = h.catalog_all("full_refresh");
    h.dep().update_settings(|s| s.ignore_table_filter = true);
    let run = h.read(&catalog, None);
    run.assert_well_formed(h.emu.access_key());
    assert_eq!(run.code, 0, "{}", run.stdout);
    for (name, records) in run.records() {
        assert!(
            records.iter().all(|r| r["_table"] == name.as_str()),
            "no foreign rows emitted"
        );
    }
    assert_matches_live(&h, &[&run]);
}

#[test]
fn an_expired_delta_cursor_heals_with_a_fresh_snapshot() {
    let h = Harness::with_settings(1, 30, false, |s| s.retention_ms = 60_000);
    let (_, first) = h.read_all();
    h.dep().advance_clock(std::time::Duration::from_secs(3600));
    apply_changes(h.dep(), 5, 1).unwrap();
    let catalog = h.catalog_all("incremental");
    let second = h.read(&catalog, Some(&first.saved_state()));
    second.assert_well_formed(h.emu.access_key());
    assert_eq!(second.code, 0);
    let warn = second
        .messages
        .iter()
        .find(|m| m["log"]["level"] == "WARN")
        .expect("a warning");
    assert!(warn["log"]["message"]
        .as_str()
        .unwrap()
        .contains("InvalidWindowToReadDocuments"));
    assert_matches_live(&h, &[&second]);
}

#[test]
fn an_expired_snapshot_heals_with_a_fresh_snapshot() {
    let h = Harness::with_settings(1, 30, false, |s| s.snapshot_page_limit = 10);
    let (catalog, first) = h.read_all();
    let mid = first.of_type("STATE")[0]["state"].clone();
    assert_eq!(mid["stream"]["stream_state"]["snapshot_has_more"], true);
    h.dep()
        .advance_clock(std::time::Duration::from_secs(6 * 24 * 3600));
    let second = h.read(&catalog, Some(&json!([mid]).to_string()));
    second.assert_well_formed(h.emu.access_key());
    assert_eq!(second.code, 0);
    assert!(second.messages.iter().any(|m| m["log"]["message"]
        .as_str()
        .is_some_and(|s| s.contains("SnapshotTooOld"))));
    assert_matches_live(&h, &[&second]);
}

#[test]
fn a_bad_key_ends_every_stream_incomplete_with_a_config_error() {
    let h = Harness::with_tables(2, 5, true);
    let catalog = h.catalog_all("incremental");
    let secret = "prod:definitely-not-the-key-42";
    let run = h.bin.read(&h.config_with_key(secret), &catalog, None);
    run.assert_well_formed(secret);
    assert_eq!(run.code, 1);
    // Every stream, components' included; no record at all.
    for (_, _, name) in tables(h.dep()) {
        assert_eq!(run.statuses(&name), ["STARTED", "INCOMPLETE"]);
    }
    assert!(run.of_type("RECORD").is_empty(), "{}", run.stdout);
    let errors = run.errors();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["failure_type"], "config_error");
}

#[test]
fn an_unreadable_state_ends_every_configured_stream_incomplete() {
    let h = Harness::with_tables(2, 3, false);
    let catalog = h.catalog_all("incremental");
    for bad in ["\"not a list\"", "{broken"] {
        let run = h.read(&catalog, Some(bad));
        run.assert_well_formed(h.emu.access_key());
        assert_eq!(run.code, 1, "{bad}");
        for (_, _, name) in tables(h.dep()) {
            assert_eq!(
                run.statuses(&name),
                ["STARTED", "INCOMPLETE"],
                "{name} with state {bad}"
            );
        }
        assert_eq!(run.errors().len(), 1);
        assert_eq!(run.errors()[0]["failure_type"], "config_error");
    }
    // An unusable state of one stream fails that stream only.
    let run = h.read(
        &catalog,
        Some(r#"[{"type":"STREAM","stream":{"stream_descriptor":{"name":"users"},"stream_state":{"delta_cursor":-5}}}]"#),
    );
    run.assert_well_formed(h.emu.access_key());
    assert_eq!(run.code, 1);
    assert_eq!(run.statuses("users"), ["STARTED", "INCOMPLETE"]);
    assert_eq!(run.statuses("messages").last().unwrap(), "COMPLETE");
}

#[test]
fn an_invalid_catalog_is_a_config_error_not_a_crash() {
    let h = Harness::with_tables(1, 1, false);
    let bad = h.write("bad.json", r#"{"streams":[{"stream":{"name":"__AIRBYTE__stream_that_does_not_exist","json_schema":{}},"sync_mode":"INVALID","destination_sync_mode":"INVALID"}]}"#);
    let run = h.bin.read(&h.config(), &bad, None);
    assert_eq!(run.code, 1);
    assert_eq!(run.errors().len(), 1);
    assert_eq!(run.errors()[0]["failure_type"], "config_error");
    for garbage in ["", "{", "[5]", "{\"streams\": 5}"] {
        let p = h.write("garbage.json", garbage);
        let run = h.bin.read(&h.config(), &p, None);
        assert_eq!(run.code, 1, "{garbage:?}");
        assert_eq!(run.errors().len(), 1);
    }
}

/// Every form of "no state yet" that callers send starts from scratch: a full snapshot of every
/// stream. So does a state of a stream the catalog does not have: it resumes nothing.
#[test]
fn every_form_of_no_state_starts_from_a_full_snapshot() {
    let h = Harness::with_tables(2, 15, false);
    let catalog = h.catalog_all("incremental");
    let null_state = r#"[{"type": "STREAM", "stream": {"stream_descriptor": {"name": "users", "namespace": null}, "stream_state": null}}]"#;
    let unknown = r#"[{"type": "STREAM", "stream": {"stream_descriptor": {"name": "nope"}, "stream_state": {"delta_cursor": 5}}, "sourceStats": {"recordCount": 1.0}}]"#;
    let forms = [
        None,
        Some(""),
        Some(" \n\t\n"),
        Some("{}"),
        Some("[]"),
        Some(null_state),
        Some(unknown),
    ];
    for state in forms {
        let run = h.read(&catalog, state);
        run.assert_well_formed(h.emu.access_key());
        assert_eq!(run.code, 0, "{state:?}: {}", run.stdout);
        let read: usize = run.records().values().map(Vec::len).sum();
        assert_eq!(read, 30, "{state:?}: every document");
        assert_matches_live(&h, &[&run]);
        // An empty state is nothing to warn about.
        if state != Some(unknown) {
            assert!(run.logs("WARN").is_empty(), "{state:?}: {}", run.stdout);
        }
    }
}

/// The state file PyAirbyte 0.71.3 hands to `read` (`to_state_input_file_text`, written to a
/// `.txt` file) for the last STATE of each stream of `run`: its entries joined by `"\n, "`, each
/// with the null `global_`, `data`, `destinationStats` and `rejectedRecordCount` its models add.
/// Spaced, and with `global_` twice, to be harder than PyAirbyte's own compact text.
fn pyairbyte_state_file(run: &common::Run) -> String {
    let states: Vec<Value> = serde_json::from_str(&run.saved_state()).unwrap();
    let lines: Vec<String> = states
        .iter()
        .map(|s| {
            let d = &s["stream"]["stream_descriptor"];
            format!(
                r#"{{"type": "STREAM", "stream": {{"stream_descriptor": {{"name": {}, "namespace": {}}}, "stream_state": {}}}, "global_": null, "global_": null, "data": null, "sourceStats": {{"recordCount": 5.0, "rejectedRecordCount": null}}, "destinationStats": null}}"#,
                d["name"], d["namespace"], s["stream"]["stream_state"]
            )
        })
        .collect();
    format!("[{}]", lines.join("\n, "))
}

/// An incremental read resumes from the state file PyAirbyte writes: exactly the changes since,
/// each in its stream (a component table's in its own).
#[test]
fn the_state_file_pyairbyte_writes_resumes_an_incremental_read() {
    let h = Harness::with_tables(2, 40, true);
    let (catalog, first) = h.read_all();
    let ids: Vec<String> = common::live(h.dep(), "", "users").into_keys().collect();
    let (patched, deleted) = (ids[0].clone(), ids[1].clone());
    let dep = h.dep();
    dep.transaction(|tx| {
        let doc = json!({"name": "new-user", "age": 42.0, "tags": ["a", "b"]});
        tx.insert("", "users", doc).map(drop)
    })
    .unwrap();
    dep.transaction(|tx| tx.patch("", "users", &patched, json!({"name": "patched"})))
        .unwrap();
    dep.transaction(|tx| tx.delete("", "users", &deleted))
        .unwrap();
    dep.transaction(|tx| {
        tx.insert("betterAuth", "users", json!({"name": "component-user"}))
            .map(drop)
    })
    .unwrap();
    let file = h.write("state.txt", &pyairbyte_state_file(&first));
    let second = h.bin.read_files(&h.config(), &catalog, Some(&file));
    second.assert_well_formed(h.emu.access_key());
    assert_eq!(second.code, 0, "{}", second.stdout);
    let mut records = second.records();
    let users = records.remove("users").unwrap_or_default();
    assert_eq!(users.len(), 3, "{users:?}");
    assert!(users.iter().any(|r| r["name"] == "new-user"));
    let of = |id: &str| users.iter().find(|r| r["_id"] == id).unwrap();
    assert_eq!(
        (&of(&patched)["name"], &of(&patched)["_deleted"]),
        (&json!("patched"), &json!(false))
    );
    assert_eq!(of(&deleted)["_deleted"], true);
    assert_eq!(
        of(&deleted)["_ab_cdc_deleted_at"],
        of(&deleted)["_ab_cdc_updated_at"]
    );
    let component = records.remove("betterAuth/users").unwrap_or_default();
    let names: Vec<&Value> = component.iter().map(|r| &r["name"]).collect();
    assert_eq!(names, [&json!("component-user")]);
    assert!(
        records.values().all(Vec::is_empty),
        "nothing else: {records:?}"
    );
    for (_, _, name) in tables(h.dep()) {
        assert_eq!(second.statuses(&name).last().unwrap(), "COMPLETE", "{name}");
    }
    assert_matches_live(&h, &[&first, &second]);
}

/// A full-refresh catalog reads every document again, whatever the state says: here a finished
/// incremental sync's.
#[test]
fn a_full_refresh_catalog_with_a_finished_syncs_state_rereads_everything() {
    let h = Harness::with_tables(2, 12, false);
    let (_, first) = h.read_all();
    let catalog = h.catalog_all("full_refresh");
    let run = h.read(&catalog, Some(&first.saved_state()));
    run.assert_well_formed(h.emu.access_key());
    assert_eq!(run.code, 0, "{}", run.stdout);
    let read: usize = run.records().values().map(Vec::len).sum();
    assert_eq!(read, 24, "every document");
    assert_matches_live(&h, &[&run]);
}

/// The catalog the CDK sends (explicit nulls, keys from a newer protocol) of some streams, a
/// component's among them: those streams are read whole, no other.
#[test]
fn a_catalog_with_explicit_nulls_and_unknown_keys_reads_just_its_streams() {
    let h = Harness::with_tables(3, 10, true);
    let chosen = ["messages", "betterAuth/users"];
    let streams: Vec<Value> = h
        .discover()
        .into_iter()
        .filter(|s| chosen.contains(&s["name"].as_str().unwrap()))
        .map(|s| {
            json!({"stream": s, "sync_mode": "full_refresh", "destination_sync_mode": "append",
                "cursor_field": null, "primary_key": null, "generation_id": null,
                "minimum_generation_id": null, "sync_id": null, "unknown_future_key": {"x": 1}})
        })
        .collect();
    assert_eq!(streams.len(), 2);
    let catalog = h.write("catalog.json", &json!({ "streams": streams }).to_string());
    let run = h.read(&catalog, None);
    run.assert_well_formed(h.emu.access_key());
    assert_eq!(run.code, 0, "{}", run.stdout);
    let read: Vec<String> = run.records().into_keys().collect();
    assert_eq!(read, ["betterAuth/users", "messages"]);
    common::assert_streams_match_live(&h, &[&run], &chosen);
}

/// A configured table the deployment does not have (dropped or renamed since discovery) fails
/// its stream with a config error that names it; the other streams complete; exit 1.
#[test]
fn a_configured_table_the_deployment_lacks_fails_only_its_stream() {
    let h = Harness::with_tables(2, 4, false);
    let users = h
        .discover()
        .into_iter()
        .find(|s| s["name"] == "users")
        .unwrap();
    let mut ghost = users.clone();
    ghost["name"] = json!("ghost_table");
    let streams: Vec<Value> = [users, ghost]
        .into_iter()
        .map(
            |s| json!({"stream": s, "sync_mode": "incremental", "destination_sync_mode": "append"}),
        )
        .collect();
    let catalog = h.write("catalog.json", &json!({ "streams": streams }).to_string());
    let run = h.read(&catalog, None);
    run.assert_well_formed(h.emu.access_key());
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert_eq!(run.statuses("ghost_table").last().unwrap(), "INCOMPLETE");
    assert_eq!(run.statuses("users").last().unwrap(), "COMPLETE");
    assert!(!run.records().contains_key("ghost_table"));
    assert_eq!(run.records()["users"].len(), 4);
    let (failure, message) = run.error();
    assert_eq!(failure, "config_error", "{message}");
    assert!(message.contains("ghost_table"), "{message}");
}

/// A permanent error of Convex (403) mid-read, after pages were read: the streams it stops end
/// INCOMPLETE, each with a TRACE ERROR, and the read exits non-zero.
#[test]
fn a_permanent_error_mid_read_fails_the_stream_and_the_read() {
    let h = Harness::with_settings(3, 5, false, |s| s.snapshot_page_limit = 2);
    let catalog = h.catalog_all("incremental");
    // The head probe and two pages pass; every list_snapshot after them is refused.
    h.dep()
        .add_fault(
            FaultRule::status("list_snapshot", 403, "OperationNotPermitted", "no access").after(3),
        )
        .unwrap();
    let run = h.read(&catalog, Some("[]"));
    run.assert_well_formed(h.emu.access_key());
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(
        !run.of_type("RECORD").is_empty(),
        "mid-read: {}",
        run.stdout
    );
    let mut incomplete: Vec<String> = tables(h.dep())
        .into_iter()
        .map(|(_, _, name)| name)
        .filter(|name| run.statuses(name).last().unwrap() == "INCOMPLETE")
        .collect();
    assert!(!incomplete.is_empty(), "{}", run.stdout);
    let mut failed: Vec<String> = run
        .errors()
        .iter()
        .map(|e| e["stream_descriptor"]["name"].as_str().unwrap().to_owned())
        .collect();
    failed.sort();
    incomplete.sort();
    assert_eq!(failed, incomplete, "{}", run.stdout);
}

#[test]
fn records_validate_against_the_discovered_schemas_deletes_included() {
    let h = Harness::generated(3, 200, true, Settings::default());
    let streams = h.discover();
    let (catalog, first) = h.read_all();
    apply_changes(h.dep(), 300, 5).unwrap();
    let second = h.read(&catalog, Some(&first.saved_state()));
    let validators: BTreeMap<String, jsonschema::Validator> = streams
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                jsonschema::draft7::new(&s["json_schema"]).unwrap(),
            )
        })
        .collect();
    let mut checked = 0;
    for run in [&first, &second] {
        for (name, records) in run.records() {
            for r in records {
                let errors: Vec<String> = validators[&name]
                    .iter_errors(&r)
                    .map(|e| e.to_string())
                    .collect();
                assert!(
                    errors.is_empty(),
                    "{name}: {errors:?} in {}",
                    without_cdc(r.clone())
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 1000);
    assert!(second
        .records()
        .values()
        .flatten()
        .any(|r| r["_deleted"] == true));
}

/// Airbyte's field selection: a configured schema with fewer properties than discover offers
/// asks Convex for just those columns (`_id` always), and records still validate.
fn field_selection_on(data_sync: bool) {
    let mut h = Harness::with_tables(2, 40, true);
    h.use_data_sync_if(data_sync);
    let mut streams = h.discover();
    for s in &mut streams {
        let props = s["json_schema"]["properties"].as_object_mut().unwrap();
        props.retain(|k, _| k == "_id" || k == "name" || k.starts_with("_ab_cdc"));
    }
    let streams: Vec<Value> = streams
        .into_iter()
        .map(|s| json!({"stream": s, "sync_mode": "incremental", "destination_sync_mode": "append_dedup"}))
        .collect();
    let catalog = h.write("catalog.json", &json!({ "streams": streams }).to_string());
    let run = h.read(&catalog, Some("[]"));
    run.assert_well_formed(h.emu.access_key());
    assert_eq!(run.code, 0, "{}", run.stdout);
    let records = run.records();
    assert!(!records.is_empty());
    for (name, rows) in &records {
        assert!(!rows.is_empty(), "{name}");
        for r in rows {
            let mut keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
            keys.retain(|k| {
                !k.starts_with("_ab_cdc")
                    && !["_table", "_component", "_ts", "_deleted"].contains(k)
            });
            keys.sort();
            let want: &[&str] = if r.get("name").is_some() {
                &["_id", "name"]
            } else {
                &["_id"]
            };
            assert_eq!(keys, want, "{name}: {r}");
        }
    }
    // The same columns in the change walk.
    apply_changes(h.dep(), 20, 5).unwrap();
    let next = h.read(&catalog, Some(&run.saved_state()));
    assert_eq!(next.code, 0);
    for r in next
        .records()
        .values()
        .flatten()
        .filter(|r| r["_deleted"] == false)
    {
        assert!(
            r.get("email").is_none() && r.get("_creationTime").is_none(),
            "{r}"
        );
    }
}

/// Every stream's saved state moved `by` nanoseconds later (as if it came from a deployment
/// whose clock is ahead), in the shape `--state` takes.
fn state_shifted(state: &str, by: i64, mid_snapshot: bool) -> String {
    let mut states: Vec<Value> = serde_json::from_str(state).unwrap();
    for s in &mut states {
        let st = &mut s["stream"]["stream_state"];
        let t = st["delta_cursor"].as_i64().unwrap();
        st["delta_cursor"] = json!(t + by);
        if mid_snapshot {
            st["snapshot_has_more"] = json!(true);
            st["snapshot_cursor"] = Value::Null;
        }
    }
    Value::Array(states).to_string()
}

/// A saved position later than anything the deployment has written can never receive the
/// changes in between: it is not kept (Convex answers its head below it); the stream is read
/// again from a fresh snapshot with a WARN that names the likely cause, and the next read goes
/// on from the head.
#[test]
fn a_position_ahead_of_the_deployment_heals_with_a_fresh_snapshot() {
    for mid_snapshot in [false, true] {
        let h = Harness::generated(2, 60, false, Settings::default());
        let (catalog, first) = h.read_all();
        let day = 86_400_000_000_000;
        let ahead = state_shifted(&first.saved_state(), day, mid_snapshot);
        let run = h.read(&catalog, Some(&ahead));
        run.assert_well_formed(h.emu.access_key());
        assert_eq!(run.code, 0, "{}", run.stdout);
        let w = run.logs("WARN");
        assert_eq!(w.len(), 2, "{w:?}");
        let cause = if mid_snapshot {
            "SnapshotTooNew"
        } else {
            "later than anything this deployment has written"
        };
        assert!(
            w.iter()
                .all(|w| w.contains(cause) && w.contains("another deployment")),
            "{w:?}"
        );
        assert_matches_live(&h, &[&run]);
        let head = h.dep().head();
        for s in run.final_states().values() {
            assert!(s["delta_cursor"].as_i64().unwrap() <= head, "{s}");
        }
        // From there, changes flow again (fields they add are columns after a new discovery).
        apply_changes(h.dep(), 30, 3).unwrap();
        let catalog = h.catalog_all("incremental");
        let next = h.read(&catalog, Some(&run.saved_state()));
        assert_eq!(next.code, 0);
        assert!(next.logs("WARN").is_empty());
        assert!(!next.records().is_empty());
        assert_matches_live(&h, &[&run, &next]);
    }
}

/// Pointing an existing connection at another deployment (dev → prod, say) whose clock is
/// behind the first one's: its tables are read whole, with a WARN, and the destination ends
/// equal to the new deployment (rows of the old one aside, which only a refresh removes).
#[test]
fn a_state_from_another_deployment_ends_exact_with_a_warning() {
    let dev = Harness::generated(2, 40, false, Settings::default());
    dev.dep()
        .advance_clock(std::time::Duration::from_secs(3600));
    apply_changes(dev.dep(), 20, 1).unwrap();
    let catalog = dev.catalog_all("incremental");
    let on_dev = dev.read(&catalog, Some("[]"));
    assert_eq!(on_dev.code, 0);
    let prod = Harness::new(
        convex_emulator::GenerateSpec {
            tables: 2,
            docs: 70,
            seed: 99,
            ..convex_emulator::GenerateSpec::default()
        },
        Settings::default(),
    );
    assert!(prod.dep().head() < dev.dep().head());
    let catalog = prod.catalog_all("incremental");
    let run = prod.read(&catalog, Some(&on_dev.saved_state()));
    run.assert_well_formed(prod.emu.access_key());
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(run.logs("WARN").len(), 2, "{:?}", run.logs("WARN"));
    assert_matches_live(&prod, &[&run]);
}

/// A deployment restored from a backup: its timestamps are behind the connection's state.
/// Every table is read again from a fresh snapshot, with a WARN, and ends exact.
#[test]
fn a_deployment_restored_with_older_timestamps_ends_exact_with_a_warning() {
    let spec = || convex_emulator::GenerateSpec {
        tables: 2,
        docs: 50,
        seed: 5,
        ..convex_emulator::GenerateSpec::default()
    };
    let before = Harness::new(spec(), Settings::default());
    let catalog = before.catalog_all("incremental");
    apply_changes(before.dep(), 40, 2).unwrap();
    let synced = before.read(&catalog, Some("[]"));
    assert_eq!(synced.code, 0);
    // The backup: the same documents as at the start, at the start's timestamps.
    let restored = Harness::new(spec(), Settings::default());
    apply_changes(restored.dep(), 10, 3).unwrap();
    assert!(restored.dep().head() < before.dep().head());
    let catalog = restored.catalog_all("incremental");
    let run = restored.read(&catalog, Some(&synced.saved_state()));
    assert_eq!(run.code, 0, "{}", run.stdout);
    let w = run.logs("WARN");
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w.iter().all(|w| w.contains("restored from a backup")),
        "{w:?}"
    );
    assert_matches_live(&restored, &[&run]);
}
