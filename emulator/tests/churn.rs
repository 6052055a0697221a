//! Churn as a real deployment has it: creating and deleting a table writes system rows
//! (`_tables`, `_index`) that document_deltas reads and counts toward its 128-row page budget
//! without returning them, and a busy deployment's scheduler writes system rows all the time.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// Convex records a new table in `_tables` and its two default indexes (`by_id`,
/// `by_creation_time`) in `_index`; deleting the table rewrites those rows. document_deltas
/// reads them (they fill its 128-row budget) and never returns them.
#[test]
fn table_creation_and_deletion_write_system_rows_that_fill_delta_pages() {
    let emu = start();
    let dep = emu.deployment();
    dep.create_table("", "keep").unwrap();
    let before = dep.head();
    dep.reset_requests();
    dep.create_table("", "x").unwrap();
    let p = deltas(&emu, before, "");
    assert_eq!(p["values"], json!([]));
    assert_eq!(p["hasMore"], false);
    assert_eq!(dep.requests().rows_read["document_deltas"], 3);

    let before = dep.head();
    dep.reset_requests();
    dep.delete_table("", "x").unwrap();
    let p = deltas(&emu, before, "");
    assert_eq!(p["values"], json!([]));
    assert_eq!(dep.requests().rows_read["document_deltas"], 3);

    // 43 table creations are 129 system rows: they use up the first page's 128-row budget
    // (the page then finishes its last commit), so it returns nothing with `hasMore` true;
    // the user row after them comes on a later page.
    let before = dep.head();
    for i in 0..43 {
        dep.create_table("", &format!("t{i}")).unwrap();
    }
    let (ts, _) = dep.insert("", "keep", json!({"v": 1.0})).unwrap();
    let p = deltas(&emu, before, "tableName=keep");
    assert_eq!(p["values"], json!([]));
    assert_eq!(p["hasMore"], true);
    let (pages, end) = all_deltas(&emu, before, "tableName=keep");
    let values: Vec<_> = pages
        .iter()
        .flat_map(|p| p["values"].as_array().unwrap().clone())
        .collect();
    assert_eq!(values.len(), 1);
    assert_eq!(values[0]["_ts"], ts);
    assert_eq!(end, dep.head());
    // The catalog tables are not user tables.
    assert!(dep.tables().iter().all(|t| !t.table.starts_with('_')));
    assert!(ok_json(&emu, "/api/json_schemas").get("_tables").is_none());
}

fn ok_json(emu: &convex_emulator::EmulatorServer, path: &str) -> serde_json::Value {
    let r = get(emu, path);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// With `system_write_interval_ms` set, a background writer commits scheduler rows: head
/// moves on an otherwise idle deployment, delta pages read rows they do not return, and
/// nothing of it is exported. Setting it back to 0 stops it.
#[test]
fn background_system_writer_churns_at_the_set_rate() {
    let emu = start();
    let dep = emu.deployment();
    dep.insert("", "users", json!({})).unwrap();
    let before = dep.head();
    let r = control(
        &emu,
        "POST",
        "/_emulator/settings",
        Some(&json!({"system_write_interval_ms": 10})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let t = Instant::now();
    while dep.head() == before {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no background writes"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    dep.update_settings(|s| s.system_write_interval_ms = 0);
    std::thread::sleep(Duration::from_millis(150));
    let stopped = dep.head();
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(dep.head(), stopped, "the writer stops at 0");

    dep.reset_requests();
    let (pages, end) = all_deltas(&emu, before, "");
    assert!(pages.iter().all(|p| p["values"] == json!([])));
    assert_eq!(end, stopped);
    // At least ~10 commits in the ~200 ms it ran (1 row each, or 2 with a clean-up delete).
    let read = dep.requests().rows_read["document_deltas"];
    assert!(read >= 10, "{read} rows");
    assert_eq!(snapshot_values(&emu, "").len(), 1);
}
