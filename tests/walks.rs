//! How the real binary reads the emulated Convex: the shape and cost of its walks (measured on
//! the emulator's request counters and cost model), deployments `json_schemas` cannot
//! describe, retried pages whose contents changed, and a randomized integrity run with a
//! background writer and faults on any page. Content is compared with the emulator's
//! documents as of each stream's end position T.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{assert_no_id_twice, tables, BackgroundWriter, Harness};
use convex_emulator::{apply_changes, Deployment, FaultKind, FaultRule};
use serde_json::{json, Value};

/// Asserts that applying `runs` in order leaves every stream equal to the deployment at the
/// stream's final `delta_cursor` (the end T of the last run).
fn assert_exact_at_t(h: &Harness, runs: &[&common::Run]) {
    let compared = common::assert_exact_where_consistent(h, runs);
    assert_eq!(compared, tables(h.dep()).len(), "every stream ends at a T");
}

fn log_rows(summary: &convex_emulator::ChangeSummary) -> u64 {
    (summary.inserted + summary.updated + summary.deleted) as u64
}

#[test]
fn one_change_walk_reads_the_log_once_for_every_table() {
    let h = Harness::with_tables(8, 30, false);
    let (_, first) = h.read_all();
    let summary = apply_changes(h.dep(), 3000, 11).unwrap();
    let catalog = h.catalog_all("incremental");
    h.dep().reset_requests();
    let second = h.read(&catalog, Some(&first.saved_state()));
    second.assert_well_formed(h.emu.access_key());
    assert_eq!(second.code, 0);
    let stats = h.dep().requests();
    let rows = log_rows(&summary);
    let requests = stats.by_endpoint["document_deltas"];
    // One walk: ceil(rows / 128) pages (fewer when transactions fill them), plus the last.
    let single_walk = rows.div_ceil(128) + 1;
    assert!(
        requests <= single_walk,
        "{requests} deltas requests for {rows} log rows; one walk needs at most {single_walk} (per-table walks would need about {})",
        8 * single_walk
    );
    let read = stats.rows_read["document_deltas"];
    assert!(
        read <= rows + requests,
        "the server read {read} log rows for {rows}: the log was read more than once"
    );
    assert_eq!(stats.by_endpoint.get("list_snapshot"), None);
    assert_exact_at_t(&h, &[&first, &second]);
}

#[test]
fn one_snapshot_walk_builds_one_iterator_for_every_table_even_on_an_aged_snapshot() {
    let h = Harness::with_settings(4, 2500, false, |s| {
        s.snapshot_build_base_ms = 2;
        s.snapshot_build_us_per_row = 5;
        s.snapshot_read_us_per_doc = 1;
    });
    let catalog = h.catalog_all("full_refresh");
    h.dep().reset_requests();
    let run = h.read(&catalog, None);
    assert_eq!(run.code, 0, "{}", run.stdout);
    let stats = h.dep().requests();
    // 3 pages a table (a page never spans two tables), all in one walk: one build for the
    // four tables, plus the head probe (a page of no table).
    assert_eq!(stats.by_endpoint["list_snapshot"], 4 * 3 + 1);
    assert_eq!(stats.snapshot_iterator_builds, 1 + 1, "{stats:?}");

    // A walk resumed on a snapshot that many commits have aged: still one build.
    let mid = run
        .of_type("STATE")
        .into_iter()
        .find(|s| s["state"]["stream"]["stream_state"]["snapshot_has_more"] == true)
        .unwrap()["state"]
        .clone();
    apply_changes(h.dep(), 2000, 3).unwrap();
    let one: Vec<Value> =
        serde_json::from_str::<Value>(&std::fs::read_to_string(&catalog).unwrap()).unwrap()
            ["streams"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["stream"]["name"] == mid["stream"]["stream_descriptor"]["name"])
            .cloned()
            .collect();
    let one = h.write("one.json", &json!({ "streams": one }).to_string());
    h.dep().reset_requests();
    let resumed = h.read(&one, Some(&json!([mid]).to_string()));
    assert_eq!(resumed.code, 0, "{}", resumed.stdout);
    let stats = h.dep().requests();
    assert_eq!(stats.snapshot_iterator_builds, 1, "{stats:?}");
    assert_eq!(stats.by_endpoint["list_snapshot"], 2);
}

/// One document with 63 user fields makes Convex's `json_schemas` refuse the whole
/// deployment; the connector still checks, discovers and reads every table.
#[test]
fn a_deployment_json_schemas_cannot_describe_is_checked_discovered_and_read() {
    let h = Harness::with_tables(2, 20, false);
    let wide: serde_json::Map<String, Value> =
        (0..63).map(|i| (format!("f{i}"), json!(i))).collect();
    h.dep()
        .transaction(|tx| {
            tx.insert("", "users", Value::Object(wide))?;
            Ok(())
        })
        .unwrap();
    let config = h.config();
    let check = h.run(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(check.code, 0);
    let status = check.of_type("CONNECTION_STATUS");
    assert_eq!(
        status[0]["connectionStatus"]["status"], "SUCCEEDED",
        "{}",
        check.stdout
    );
    let warn = |run: &common::Run| -> Vec<String> {
        run.messages
            .iter()
            .filter(|m| m["log"]["level"] == "WARN")
            .map(|m| m["log"]["message"].as_str().unwrap().to_owned())
            .collect()
    };
    let w = warn(&check);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("NoSchemaForExport") && w[0].contains("schema.ts"),
        "{}",
        w[0]
    );
    let streams = h.discover();
    assert_eq!(streams.len(), 2);
    // Column names are all Convex can tell of a table it cannot describe as an object: the
    // stream keeps `_id` and `_creationTime` and accepts any other field.
    let users = streams.iter().find(|s| s["name"] == "users").unwrap();
    assert!(users["json_schema"]["properties"]["_id"].is_object());
    assert_eq!(users["json_schema"]["additionalProperties"], true);
    let messages = streams.iter().find(|s| s["name"] == "messages").unwrap();
    assert!(messages["json_schema"]["properties"]["body"].is_object());
    let catalog = h.catalog_all("incremental");
    let run = h.read(&catalog, Some("[]"));
    run.assert_well_formed(h.emu.access_key());
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(warn(&run).len(), 1);
    assert_exact_at_t(&h, &[&run]);
}

/// Convex filters a deltas page against the current table mapping, so an
/// `npx convex import --replace` between two attempts at one page changes what the retry
/// answers. Skipping "the first N values" of the retry would drop changes that were never
/// sent; skipping by identity loses nothing.
#[test]
fn an_import_swap_between_a_faulted_attempt_and_its_retry_loses_nothing() {
    let h = Harness::with_tables(2, 10, false);
    let (users, orders) = ("users", "messages");
    let (catalog, first) = h.read_all();
    // The page will start with changes of the table that gets replaced, then other changes.
    let dep = h.dep().clone();
    let ids: Vec<String> = dep
        .live_documents("", orders)
        .iter()
        .map(|d| d["_id"].as_str().unwrap().to_owned())
        .collect();
    for id in &ids {
        dep.transaction(|tx| tx.patch("", orders, id, json!({"seen": true})).map(|_| ()))
            .unwrap();
    }
    let mut expected_users = Vec::new();
    for i in 0..40 {
        dep.transaction(|tx| {
            expected_users.push(tx.insert("", users, json!({"name": format!("late-{i}")}))?);
            Ok(())
        })
        .unwrap();
    }
    dep.add_fault(FaultRule::new("document_deltas", FaultKind::Truncate).times(1))
        .unwrap();
    let swapped = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (dep, swapped) = (dep.clone(), swapped.clone());
        std::thread::spawn(move || {
            for _ in 0..5000 {
                if dep
                    .request_log()
                    .iter()
                    .any(|r| r.endpoint == "document_deltas" && r.status == 0)
                {
                    dep.import_table("", orders, vec![json!({"imported": 1})])
                        .unwrap();
                    swapped.store(true, Ordering::SeqCst);
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        })
    };
    let second = h.read(&catalog, Some(&first.saved_state()));
    watcher.join().unwrap();
    assert!(
        swapped.load(Ordering::SeqCst),
        "the swap happened between the attempts"
    );
    second.assert_well_formed(h.emu.access_key());
    assert_eq!(second.code, 0, "{}", second.stdout);
    let got: Vec<String> = second.records()[users]
        .iter()
        .map(|r| r["_id"].as_str().unwrap().to_owned())
        .collect();
    for id in &expected_users {
        assert!(
            got.contains(id),
            "change {id} of {users} was lost in the retry"
        );
    }
}

/// A background writer and random resets and truncations on any page (the first ones
/// included), over several reads: every read leaves the destination exactly the deployment as
/// of its T.
#[test]
fn randomized_faults_and_writes_never_lose_or_duplicate_anything() {
    for seed in 0..3u64 {
        let mut h = Harness::with_settings(3, 400, true, |s| {
            s.snapshot_page_limit = 60;
            s.deltas_page_limit = 40;
        });
        h.config_extra_timeout(2);
        let catalog = h.catalog_all_columns("incremental");
        let dep: Deployment = h.dep().clone();
        for (endpoint, kind) in [
            ("list_snapshot", FaultKind::Reset),
            ("list_snapshot", FaultKind::Truncate),
            ("document_deltas", FaultKind::Reset),
            ("document_deltas", FaultKind::Truncate),
        ] {
            dep.add_fault(FaultRule::new(endpoint, kind).rate(0.1))
                .unwrap();
        }
        let mut runs: Vec<common::Run> = Vec::new();
        let mut state = "[]".to_owned();
        for round in 0..3 {
            let writer = BackgroundWriter::start(&dep, seed * 1000 + round * 100, 200, None);
            let run = h.read(&catalog, Some(&state));
            writer.stop();
            run.assert_well_formed(h.emu.access_key());
            assert_eq!(run.code, 0, "seed {seed} round {round}: {}", run.stdout);
            assert_no_id_twice(&run, &format!("seed {seed} round {round}"));
            state = run.saved_state();
            runs.push(run);
            let refs: Vec<&common::Run> = runs.iter().collect();
            assert_exact_at_t(&h, &refs);
        }
    }
}
