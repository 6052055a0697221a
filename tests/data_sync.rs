//! The real binary on Convex's Data Sync API (`api: data_sync`), against the emulator: the
//! same records as the streaming export API, a connection switched from one API to the other
//! continuing exactly, tables replaced by an import, expired and altered cursors, and a
//! randomized run with writes, clock jumps (so snapshots are caught up through the log) and
//! faults on any page, compared with the deployment at each stream's consistent timestamp.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{
    assert_exact_where_consistent, assert_no_id_twice, tables, BackgroundWriter, Harness,
};
use convex_emulator::{apply_changes, Deployment, FaultKind, FaultRule, Settings};
use serde_json::{json, Value};

/// Records without what differs between two reads of the same data (`emitted_at` is outside
/// `data`), by stream and `_id`.
fn by_id(run: &common::Run) -> BTreeMap<String, BTreeMap<String, Value>> {
    run.records()
        .into_iter()
        .map(|(stream, records)| {
            let rows = records
                .into_iter()
                .map(|r| (r["_id"].as_str().unwrap().to_owned(), r))
                .collect();
            (stream, rows)
        })
        .collect()
}

/// int64, bytes, NaN and ±infinity, components, nested values: Data Sync's `export_json`
/// values become exactly the records the streaming export API gives, with either column types.
#[test]
fn records_are_the_same_on_both_apis() {
    for legacy in [true, false] {
        records_are_the_same_on_both_apis_with(legacy);
    }
}

fn records_are_the_same_on_both_apis_with(legacy_columns: bool) {
    let mut h = Harness::generated(3, 300, true, Settings::default());
    if legacy_columns {
        h.use_legacy_columns();
    }
    let catalog = h.catalog_all("incremental");
    let legacy = h.read(&catalog, Some("[]"));
    assert_eq!(legacy.code, 0, "{}", legacy.stdout);
    h.use_data_sync();
    let synced = h.read(&catalog, Some("[]"));
    synced.assert_well_formed(h.emu.access_key());
    assert_eq!(synced.code, 0, "{}", synced.stdout);
    let (a, b) = (by_id(&legacy), by_id(&synced));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    let mut special = 0;
    for (stream, rows) in &a {
        assert_eq!(rows.len(), b[stream].len(), "{stream}");
        for (id, row) in rows {
            assert_eq!(Some(row), b[stream].get(id), "{stream} {id}");
            special += row
                .as_object()
                .unwrap()
                .values()
                .filter(|v| matches!(v.as_str(), Some("NaN" | "Infinity" | "-Infinity")))
                .count();
        }
    }
    // Typed columns carry them as null, each named in its record's meta.changes.
    let nulled = |run: &common::Run| run.stdout.matches(r#""change":"NULLED""#).count();
    if legacy_columns {
        assert!(special > 0, "the data had special floats");
        assert_eq!(nulled(&legacy) + nulled(&synced), 0);
    } else {
        assert_eq!(special, 0);
        assert!(nulled(&legacy) > 0, "the data had special floats");
        assert_eq!(nulled(&legacy), nulled(&synced));
    }
    let requests = h.dep().requests();
    assert!(requests.by_endpoint.contains_key("data_sync"));
    // Convex attributes the sync to Airbyte by its `Convex-Client` header.
    for s in synced.final_states().values() {
        assert!(
            s["sync_id"].as_str().unwrap().starts_with("airbyte-"),
            "{s}"
        );
    }
}

/// A first read of every stream through the Data Sync API: its catalog and the read.
fn synced_once(h: &mut Harness) -> (PathBuf, common::Run) {
    h.use_data_sync();
    h.read_all()
}

/// A first read on the streaming export API, `changes` generated changes (`seed`), then a read from its
/// saved state once `switch` changed the config's API: it converts each stream's position
/// once. Returns both reads; the emulator's request counters cover the second only.
fn switched(
    h: &mut Harness,
    catalog: &Path,
    (changes, seed): (usize, u64),
    switch: fn(&mut Harness),
) -> (common::Run, common::Run) {
    h.use_streaming_export();
    let first = h.read(catalog, Some("[]"));
    assert_eq!(first.code, 0);
    apply_changes(h.dep(), changes, seed).unwrap();
    switch(h);
    h.dep().reset_requests();
    let moved = h.read(catalog, Some(&first.saved_state()));
    moved.assert_well_formed(h.emu.access_key());
    assert_eq!(moved.code, 0, "{}", moved.stdout);
    let conversions = h.dep().requests().by_endpoint["data_sync_cursor_from_deltas"];
    assert_eq!(conversions, tables(h.dep()).len() as u64);
    (first, moved)
}

/// A connection switched to `api: data_sync` continues where the streaming export API left
/// it (one conversion per stream, no snapshot), exactly; switched back, it continues again.
#[test]
fn switching_the_api_continues_exactly_both_ways() {
    let mut h = Harness::generated(2, 200, true, Settings::default());
    // Every column: the changes add fields that a catalog discovered before them would not
    // select (Airbyte's field selection), whatever the API.
    let catalog = h.catalog_all_columns("incremental");
    let (first, moved) = switched(&mut h, &catalog, (60, 5), Harness::use_data_sync);
    let requests = h.dep().requests();
    let streams = tables(h.dep()).len() as u64;
    assert_eq!(
        requests.by_endpoint.get("list_snapshot"),
        None,
        "nothing read again"
    );
    let changed: usize = moved.records().values().map(Vec::len).sum();
    assert!(
        changed > 0 && changed <= 60,
        "{changed} records for 60 changes"
    );
    assert_eq!(
        assert_exact_where_consistent(&h, &[&first, &moved]),
        streams as usize
    );
    // Back to the streaming export API: document_deltas from the sync's consistent time.
    apply_changes(h.dep(), 30, 6).unwrap();
    h.use_streaming_export();
    h.dep().reset_requests();
    let back = h.read(&catalog, Some(&moved.saved_state()));
    assert_eq!(back.code, 0, "{}", back.stdout);
    assert_eq!(h.dep().requests().by_endpoint.get("list_snapshot"), None);
    assert_eq!(
        assert_exact_where_consistent(&h, &[&first, &moved, &back]),
        streams as usize
    );
}

/// `npx convex import --replace` gives the table a new tablet: the data sync truncates it and
/// walks it again. The read sends the new documents, and says (WARN and TRACE) that the old
/// ones stay in the destination until the stream is refreshed.
#[test]
fn a_replaced_table_is_read_again_and_the_remedy_is_named() {
    let mut h = Harness::with_tables(2, 50, false);
    let (catalog, first) = synced_once(&mut h);
    let name = "messages";
    h.dep()
        .import_table("", name, (0..7).map(|i| json!({"imported": i})))
        .unwrap();
    let second = h.read(&catalog, Some(&first.saved_state()));
    second.assert_well_formed(h.emu.access_key());
    assert_eq!(second.code, 0, "{}", second.stdout);
    let warn = second.logs("WARN");
    assert_eq!(warn.len(), 1, "{warn:?}");
    assert!(
        warn[0].contains(name)
            && warn[0].contains("Refresh")
            && warn[0].contains("force_full_refresh"),
        "{}",
        warn[0]
    );
    let traces: Vec<&Value> = second
        .messages
        .iter()
        .filter(|m| m["trace"]["type"] == "ANALYTICS")
        .collect();
    assert_eq!(traces.len(), 1);
    assert_eq!(
        traces[0]["trace"]["analytics"]["type"],
        "convex_table_replaced"
    );
    assert!(traces[0]["trace"]["analytics"]["value"]
        .as_str()
        .unwrap()
        .contains(name));
    let records = &second.records()[name];
    assert_eq!(records.len(), 7, "the new table, read from scratch");
    assert!(records.iter().all(|r| r["imported"].is_number()));
    assert_eq!(second.statuses(name).last().unwrap(), "COMPLETE");
}

#[test]
fn an_expired_cursor_restarts_the_sync_with_a_warning() {
    let mut h = Harness::with_settings(1, 40, false, |s| s.data_sync_retention_ms = 60_000);
    let (catalog, first) = synced_once(&mut h);
    h.dep().advance_clock(Duration::from_secs(120));
    let again = h.read(&catalog, Some(&first.saved_state()));
    again.assert_well_formed(h.emu.access_key());
    assert_eq!(again.code, 0, "{}", again.stdout);
    let warn = again.logs("WARN");
    assert!(
        warn.len() == 1 && warn[0].contains("DataSyncCursorExpired"),
        "{warn:?}"
    );
    assert_eq!(again.records()["users"].len(), 40);
    assert_eq!(assert_exact_where_consistent(&h, &[&first, &again]), 1);
}

#[test]
fn an_altered_cursor_fails_its_stream_with_what_to_do() {
    let mut h = Harness::with_tables(2, 10, false);
    let (catalog, first) = synced_once(&mut h);
    let mut state: Vec<Value> = serde_json::from_str(&first.saved_state()).unwrap();
    let s = &mut state[0]["stream"]["stream_state"];
    let cursor = s["data_sync_cursor"].as_str().unwrap().to_owned();
    let flipped: String = cursor
        .char_indices()
        .map(|(i, c)| {
            if i == 20 {
                if c == '0' {
                    '1'
                } else {
                    '0'
                }
            } else {
                c
            }
        })
        .collect();
    s["data_sync_cursor"] = json!(flipped);
    let name = state[0]["stream"]["stream_descriptor"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let run = h.read(&catalog, Some(&Value::Array(state).to_string()));
    run.assert_well_formed(h.emu.access_key());
    assert_ne!(run.code, 0);
    let errors = run.errors();
    let e = errors
        .iter()
        .find(|e| e["stream_descriptor"].is_object())
        .unwrap();
    assert_eq!(e["stream_descriptor"]["name"], name.as_str());
    assert_eq!(e["failure_type"], "config_error");
    let text = e["message"].as_str().unwrap();
    assert!(
        text.contains("InvalidDataSyncCursor") && text.contains("refresh this stream"),
        "{text}"
    );
    assert!(!text.contains(&cursor[..40]), "the cursor is not echoed");
    for (_, _, other) in tables(h.dep()).into_iter().filter(|t| t.2 != name) {
        assert_eq!(run.statuses(&other).last().unwrap(), "COMPLETE");
    }
}

/// Writes during every read, clock jumps past Convex's 30 s freshness window (so snapshots
/// are caught up through the log and documents come again), small pages, and resets,
/// truncations, 503s, 429s with `Retry-After` and stalls on any page: no `_id` twice in a read, and
/// after each read every consistent stream equals the deployment at its timestamp.
#[test]
fn randomized_faults_writes_and_clock_jumps_end_exact() {
    let mut compared = 0;
    let mut stops = 0;
    for seed in 0..3u64 {
        let mut h = Harness::with_settings(3, 300, true, |s| s.data_sync_page_entries = 40);
        h.use_data_sync();
        h.config_extra_timeout(2);
        let catalog = h.catalog_all_columns("incremental");
        let dep: Deployment = h.dep().clone();
        for rule in [
            FaultRule::new("data_sync", FaultKind::Reset).rate(0.04),
            FaultRule::new("data_sync", FaultKind::Truncate).rate(0.04),
            FaultRule::status("data_sync", 503, "Overloaded", "busy").rate(0.03),
            FaultRule {
                retry_after_secs: Some(1),
                ..FaultRule::new("data_sync", FaultKind::RateLimit)
                    .after(7)
                    .times(2)
            },
            FaultRule::new("data_sync_cursor_from_deltas", FaultKind::Reset).times(1),
            // Stalls longer than request_timeout_seconds (2 s): before and after the headers.
            FaultRule::new("data_sync", FaultKind::Stall)
                .ms(4000)
                .after(5)
                .times(1),
            FaultRule {
                after_headers: true,
                ..FaultRule::new("data_sync", FaultKind::Stall)
                    .ms(4000)
                    .after(11)
                    .times(1)
            },
        ] {
            dep.add_fault(rule).unwrap();
        }
        let mut runs: Vec<common::Run> = Vec::new();
        let mut state = "[]".to_owned();
        for round in 0..5u64 {
            let writer =
                BackgroundWriter::start(&dep, seed * 100_000 + round * 10_000, 400, Some(3));
            let run = h.read(&catalog, Some(&state));
            writer.stop();
            run.assert_well_formed(h.emu.access_key());
            assert_eq!(run.code, 0, "seed {seed} round {round}: {}", run.stdout);
            assert_no_id_twice(&run, &format!("seed {seed} round {round}"));
            stops += run
                .logs("INFO")
                .iter()
                .filter(|l| l.contains("changes came for documents this read had already sent"))
                .count();
            state = run.saved_state();
            runs.push(run);
            let refs: Vec<&common::Run> = runs.iter().collect();
            compared += assert_exact_where_consistent(&h, &refs);
        }
        let retried = dep
            .request_log()
            .iter()
            .filter(|r| r.endpoint == "data_sync" && r.status != 200)
            .count();
        assert!(retried > 0, "seed {seed}: no fault was hit");
    }
    assert!(
        compared >= 3 * 5 * 3,
        "only {compared} consistent comparisons"
    );
    eprintln!("stops {stops} compared {compared}");
    // Documents changed under a snapshot after they were sent made some read defer them.
    assert!(stops > 0, "no read met a document again");
}

/// A Data Sync position consistent at a timestamp later than the deployment's head (a page a
/// hostile or restored server answered) is not kept after a switch to the streaming export
/// API: the stream is read again from a fresh snapshot, with a WARN, and ends exact.
#[test]
fn a_data_sync_position_ahead_of_the_head_heals_after_a_switch() {
    let mut h = Harness::generated(2, 40, false, Settings::default());
    let (catalog, first) = synced_once(&mut h);
    let mut states: Vec<Value> = serde_json::from_str(&first.saved_state()).unwrap();
    for s in &mut states {
        let st = &mut s["stream"]["stream_state"];
        st["delta_cursor"] = json!(st["delta_cursor"].as_i64().unwrap() + 86_400_000_000_000);
    }
    h.use_streaming_export();
    let run = h.read(&catalog, Some(&Value::Array(states).to_string()));
    run.assert_well_formed(h.emu.access_key());
    assert_eq!(run.code, 0, "{}", run.stdout);
    let warn = run.logs("WARN");
    assert_eq!(warn.len(), 2, "{warn:?}");
    assert!(
        warn.iter()
            .all(|w| w.contains("later than anything this deployment has written")),
        "{warn:?}"
    );
    assert!(assert_exact_where_consistent(&h, &[&run]) > 0);
}

/// A first sync of a deployment written to during the whole sync finishes in one read: every
/// document that existed before it started and still exists is delivered, none twice, and
/// what changed after it was sent comes in the next read.
#[test]
fn a_busy_first_data_sync_finishes_in_one_read() {
    let settings = Settings {
        data_sync_page_entries: 50,
        ..Settings::default()
    };
    let mut h = Harness::generated(1, 600, false, settings);
    h.use_data_sync();
    // Every column: the writers add fields a catalog discovered before them would not select.
    let catalog = h.catalog_all_columns("incremental");
    let before: Vec<String> = tables(h.dep())
        .iter()
        .flat_map(|(component, table, _)| common::live(h.dep(), component, table).into_keys())
        .collect();
    let writer = BackgroundWriter::start(h.dep(), 77, 400, Some(5));
    let first = h.read(&catalog, Some("[]"));
    writer.stop();
    first.assert_well_formed(h.emu.access_key());
    assert_eq!(first.code, 0, "{}", first.stdout);
    assert_no_id_twice(&first, "the first read");
    let sent: std::collections::BTreeSet<String> = first
        .records()
        .into_values()
        .flatten()
        .map(|r| r["_id"].as_str().unwrap().to_owned())
        .collect();
    let still: Vec<&String> = before
        .iter()
        .filter(|id| {
            tables(h.dep()).iter().any(|(component, table, _)| {
                common::live(h.dep(), component, table).contains_key(*id)
            })
        })
        .collect();
    let missing: Vec<&&String> = still.iter().filter(|id| !sent.contains(**id)).collect();
    assert!(
        missing.is_empty(),
        "the first read left out {} of {} documents: {missing:?}",
        missing.len(),
        still.len()
    );
    // With the writers gone, the next read catches up and the copy is exact.
    let second = h.read(&catalog, Some(&first.saved_state()));
    assert_eq!(second.code, 0, "{}", second.stdout);
    assert_no_id_twice(&second, "the second read");
    assert!(assert_exact_where_consistent(&h, &[&first, &second]) > 0);
}

/// A 429 shows on the streams being read as RUNNING with reason RATE_LIMITED and the time
/// Convex expects requests to succeed again, and they are RUNNING again once one does: on
/// both APIs.
#[test]
fn a_rate_limit_shows_on_the_streams_until_requests_succeed() {
    for (api, endpoint) in [
        ("data_sync", "data_sync"),
        ("streaming_export", "list_snapshot"),
    ] {
        let mut h = Harness::generated(1, 30, false, Settings::default());
        h.config_extra["api"] = json!(api);
        let catalog = h.catalog_all("incremental");
        h.dep()
            .add_fault(FaultRule {
                retry_after_secs: Some(2),
                ..FaultRule::new(endpoint, FaultKind::RateLimit).times(1)
            })
            .unwrap();
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let run = h.read(&catalog, Some("[]"));
        run.assert_well_formed(h.emu.access_key());
        assert_eq!(run.code, 0, "{api}: {}", run.stdout);
        let statuses: Vec<&Value> = run
            .messages
            .iter()
            .filter(|m| m["trace"]["type"] == "STREAM_STATUS")
            .map(|m| &m["trace"]["stream_status"])
            .collect();
        let limited: Vec<&&Value> = statuses
            .iter()
            .filter(|s| s["reasons"][0]["type"] == "RATE_LIMITED")
            .collect();
        assert_eq!(limited.len(), 1, "{api}: {statuses:?}");
        assert_eq!(limited[0]["status"], "RUNNING");
        let reset = limited[0]["reasons"][0]["rate_limited"]["quota_reset"]
            .as_i64()
            .expect("quota_reset");
        assert!(
            reset >= started + 2000 && reset < started + 60_000,
            "{api}: quota_reset {reset} is not about 2 s after {started}"
        );
        // Then RUNNING without a reason, then COMPLETE.
        let at = statuses
            .iter()
            .position(|s| s["reasons"][0]["type"] == "RATE_LIMITED")
            .unwrap();
        let after: Vec<(&str, bool)> = statuses[at + 1..]
            .iter()
            .map(|s| (s["status"].as_str().unwrap(), s.get("reasons").is_some()))
            .collect();
        assert_eq!(after.first(), Some(&("RUNNING", false)), "{api}: {after:?}");
        assert_eq!(after.last(), Some(&("COMPLETE", false)), "{api}: {after:?}");
    }
}

/// The API a read took, by the position it saved: a Data Sync cursor or a timestamp.
fn saved_api(run: &common::Run) -> Vec<&'static str> {
    run.final_states()
        .values()
        .map(|s| {
            if s["api"] == "data_sync" {
                "data_sync"
            } else {
                "streaming_export"
            }
        })
        .collect()
}

/// `api: auto` (a config without `api`) on a deployment that serves the Data Sync API: a cold
/// start, a Python connector's state and a Data Sync state all read through it, exactly, and
/// nothing is read twice.
#[test]
fn auto_reads_through_data_sync_where_the_deployment_serves_it() {
    let mut h = Harness::generated(2, 60, true, Settings::default());
    h.use_auto();
    let catalog = h.catalog_all_columns("incremental");
    // A cold start.
    let cold = h.read(&catalog, Some("[]"));
    cold.assert_well_formed(h.emu.access_key());
    assert_eq!(cold.code, 0, "{}", cold.stdout);
    assert!(saved_api(&cold).iter().all(|a| *a == "data_sync"));
    assert!(!h
        .dep()
        .requests()
        .by_endpoint
        .contains_key("document_deltas"));
    // A Data Sync state goes on with the changes only.
    apply_changes(h.dep(), 20, 3).unwrap();
    let next = h.read(&catalog, Some(&cold.saved_state()));
    assert_eq!(next.code, 0, "{}", next.stdout);
    assert!(next.of_type("RECORD").len() <= 20 * 8, "{}", next.stdout);
    assert!(assert_exact_where_consistent(&h, &[&cold, &next]) > 0);
    // A Python connector's state (the streaming export shape) is converted once, and read on
    // from there: no snapshot.
    let mut h2 = Harness::generated(2, 60, true, Settings::default());
    let catalog2 = h2.catalog_all_columns("incremental");
    let (legacy, moved) = switched(&mut h2, &catalog2, (20, 4), Harness::use_auto);
    let requests = h2.dep().requests();
    assert!(
        requests
            .by_endpoint
            .get("list_snapshot")
            .copied()
            .unwrap_or(0)
            <= 1
    );
    assert!(saved_api(&moved).iter().all(|a| *a == "data_sync"));
    assert!(assert_exact_where_consistent(&h2, &[&legacy, &moved]) > 0);
}

/// `api: auto` on an older self-hosted backend without the Data Sync API (404): one INFO says
/// why, incremental streams read through the streaming export API, and component streams,
/// whose changes such a backend's document_deltas skips, are named in a WARN with the remedy.
/// A cold start, a Python connector's state and a Data Sync state (from before a downgrade)
/// all end exact.
#[test]
fn auto_falls_back_to_streaming_export_on_a_backend_without_data_sync() {
    let old = Settings {
        no_data_sync: true,
        ..Settings::default()
    };
    // A cold start.
    let mut h = Harness::generated(2, 40, true, old.clone());
    h.use_auto();
    let catalog = h.catalog_all_columns("incremental");
    let cold = h.read(&catalog, Some("[]"));
    cold.assert_well_formed(h.emu.access_key());
    assert_eq!(cold.code, 0, "{}", cold.stdout);
    let info = cold.logs("INFO");
    assert_eq!(
        info.iter()
            .filter(|l| l.contains("does not serve Convex's Data Sync API"))
            .count(),
        1,
        "{info:?}"
    );
    let warn = cold.logs("WARN");
    assert_eq!(warn.len(), 1, "{warn:?}");
    let named: std::collections::BTreeSet<&str> = warn[0]
        .strip_prefix("Streams ")
        .and_then(|w| w.split(" are tables").next())
        .unwrap()
        .split(", ")
        .collect();
    let components: std::collections::BTreeSet<String> = tables(h.dep())
        .into_iter()
        .filter(|(component, _, _)| !component.is_empty())
        .map(|(component, _, name)| format!("{component}.{name}"))
        .collect();
    assert_eq!(
        named,
        components.iter().map(String::as_str).collect(),
        "{}",
        warn[0]
    );
    assert!(warn[0].contains("Full refresh") && warn[0].contains("Upgrade the backend"));
    assert!(saved_api(&cold).iter().all(|a| *a == "streaming_export"));
    assert!(assert_exact_where_consistent(&h, &[&cold]) > 0);
    // A Python connector's state: the change walk, from where it stood.
    apply_changes(h.dep(), 10, 6).unwrap();
    let next = h.read(&catalog, Some(&cold.saved_state()));
    assert_eq!(next.code, 0, "{}", next.stdout);
    assert!(saved_api(&next).iter().all(|a| *a == "streaming_export"));
    assert!(h
        .dep()
        .requests()
        .by_endpoint
        .contains_key("document_deltas"));
    // A Data Sync state from before the backend was downgraded continues from its consistent
    // timestamp through document_deltas.
    let mut h3 = Harness::generated(2, 40, false, Settings::default());
    h3.use_data_sync();
    let catalog3 = h3.catalog_all_columns("incremental");
    let synced = h3.read(&catalog3, Some("[]"));
    assert_eq!(synced.code, 0, "{}", synced.stdout);
    h3.dep().set_settings(Settings {
        no_data_sync: true,
        ..h3.dep().settings()
    });
    apply_changes(h3.dep(), 10, 7).unwrap();
    h3.use_auto();
    let after = h3.read(&catalog3, Some(&synced.saved_state()));
    after.assert_well_formed(h3.emu.access_key());
    assert_eq!(after.code, 0, "{}", after.stdout);
    assert!(saved_api(&after).iter().all(|a| *a == "streaming_export"));
    assert!(after.of_type("RECORD").len() <= 10 * 8, "{}", after.stdout);
    assert!(assert_exact_where_consistent(&h3, &[&synced, &after]) > 0);
    // `api: data_sync` there is a config error that names the remedy.
    h3.use_data_sync();
    let forced = h3.read(&catalog3, Some(&synced.saved_state()));
    assert_ne!(forced.code, 0);
    let errors = forced.errors();
    assert!(errors.iter().all(|e| e["failure_type"] == "config_error"));
    assert!(errors.iter().any(|e| e["message"]
        .as_str()
        .unwrap()
        .contains("does not serve Convex's Data Sync API")));
}
