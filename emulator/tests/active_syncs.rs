//! `GET /api/v1/data/list_active_syncs` and the progress rows that `/api/v1/data/sync` pages
//! write, over real HTTP. Each test states the Convex rule it reproduces (the backend's
//! `model/src/data_sync_progress`, `application/src/streaming_export.rs` and
//! `local_backend/src/streaming_export.rs`).
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use convex_emulator::{Config, Deployment, EmulatorServer, Settings};
use serde_json::{json, Value};

const SYNC: &str = "/api/v1/data/sync";
const LIST: &str = "/api/v1/data/list_active_syncs";
const DAY_MS: u64 = 86_400_000;

/// An emulator whose progress rows are refreshed on every page, with `entries` per page.
fn emulator(interval_ms: u64, entries: usize) -> EmulatorServer {
    start_with(Config {
        settings: Settings {
            data_sync_progress_write_interval_ms: interval_ms,
            data_sync_page_entries: entries,
            ..Settings::default()
        },
        ..Config::default()
    })
}

fn sync_page(emu: &EmulatorServer, cursor: Option<&str>, selection: Option<&Value>) -> Value {
    let mut b = json!({});
    if let Some(c) = cursor {
        b["cursor"] = json!(c);
    }
    if let Some(s) = selection {
        b["selection"] = s.clone();
    }
    let r = post(emu, SYNC, &b);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn cursor(p: &Value) -> String {
    p["pagination"]["nextCursor"].as_str().unwrap().to_owned()
}

fn list(emu: &EmulatorServer, query: &str) -> Value {
    let r = get(emu, &format!("{LIST}{query}"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    r.json()
}

fn listed_ids(v: &Value) -> Vec<String> {
    v["syncs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["syncId"].as_str().unwrap().to_owned())
        .collect()
}

/// The listed row of `sync_id`.
fn row(emu: &EmulatorServer, sync_id: &str) -> Value {
    let v = list(emu, "?limit=100");
    v["syncs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["syncId"] == sync_id)
        .cloned()
        .unwrap_or_else(|| panic!("{sync_id} not listed: {v}"))
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

/// The emulator's clock in unix milliseconds, as `lastUpdated` reports it.
fn clock_ms(dep: &Deployment) -> i64 {
    dep.head() / 1_000_000
}

fn insert_rows(dep: &Deployment, table: &str, n: usize) -> Vec<String> {
    dep.transaction_with(|tx| {
        (0..n)
            .map(|i| tx.insert("", table, json!({"i": i as f64})))
            .collect()
    })
    .unwrap()
    .1
}

#[test]
fn each_page_records_the_syncs_progress_in_convexs_shape() {
    // Rule: a sync's progress row follows its pages. While snapshotting it names the table
    // being walked, how many tables are done, the documents sent from the current table and
    // in all, and the table sizes ("approximate": live documents now); once consistent it
    // holds the synced tables, the documents sent and the snapshot's ts. Field order is the
    // backend's struct order.
    let emu = emulator(0, 2);
    let dep = emu.deployment();
    insert_rows(dep, "a", 3);
    insert_rows(dep, "b", 2);
    let sizes = |t: &str| if t == "a" { 3 } else { 2 };
    let mut c: Option<String> = None;
    let (mut sent, mut done) = (0u64, 0u64);
    let mut current = String::new();
    let mut in_current = 0u64;
    for _ in 0..10 {
        let p = sync_page(&emu, c.as_deref(), None);
        let id = p["syncId"].as_str().unwrap().to_owned();
        let values = p["values"].as_array().unwrap();
        // A truncated table enters the walk: at the start of the page when its rows are on
        // it (a cold start), else at its end (the previous table finished on this page).
        let (starts, next): (Vec<&Value>, Vec<&Value>) = p["truncates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| &t["table"])
            .partition(|t| values.iter().any(|v| &v["table"] == *t));
        let mut enter = |t: &Value, current: &mut String, in_current: &mut u64| {
            if !current.is_empty() {
                done += 1;
            }
            *current = t.as_str().unwrap().to_owned();
            *in_current = 0;
        };
        for t in starts {
            enter(t, &mut current, &mut in_current);
        }
        for v in values {
            assert_eq!(v["table"], json!(current));
            in_current += 1;
            sent += 1;
        }
        for t in next {
            enter(t, &mut current, &mut in_current);
        }
        let r = row(&emu, &id);
        assert_eq!(keys(&r), ["syncId", "lastUpdated", "status"]);
        assert_eq!(r["lastUpdated"], json!(clock_ms(dep)));
        match p["status"]["type"].as_str().unwrap() {
            "snapshotting" => {
                assert_eq!(
                    r["status"],
                    json!({"type": "snapshotting", "numTablesSynced": done, "totalTables": 2,
                        "currentComponent": "", "currentTable": current,
                        "numDocumentsInCurrentTable": in_current,
                        "totalDocumentsInCurrentTable": sizes(&current),
                        "numDocumentsSynced": sent, "totalDocuments": 5})
                );
                assert_eq!(
                    keys(&r["status"]),
                    [
                        "type",
                        "numTablesSynced",
                        "totalTables",
                        "currentComponent",
                        "currentTable",
                        "numDocumentsInCurrentTable",
                        "totalDocumentsInCurrentTable",
                        "numDocumentsSynced",
                        "totalDocuments"
                    ]
                );
            }
            "upToDate" => {
                assert_eq!(sent, 5);
                assert_eq!(
                    r["status"],
                    json!({"type": "upToDate", "totalTables": 2, "numDocumentsSynced": 5,
                        "syncedTs": p["status"]["snapshotTs"]})
                );
                assert_eq!(
                    keys(&r["status"]),
                    ["type", "totalTables", "numDocumentsSynced", "syncedTs"]
                );
                return;
            }
            other => panic!("unexpected status {other}"),
        }
        c = Some(cursor(&p));
    }
    panic!("the sync never caught up");
}

#[test]
fn every_value_sent_counts_so_the_count_can_exceed_the_total() {
    // Rule: numDocumentsSynced counts every entry sent over the sync's life, tombstones and
    // re-sent revisions included, so it can exceed totalDocuments; a log page does not count
    // toward the current table's walk.
    let emu = emulator(0, 2);
    let dep = emu.deployment();
    insert_rows(dep, "t", 4);
    let p1 = sync_page(&emu, None, None);
    let id = p1["syncId"].as_str().unwrap().to_owned();
    let walked: Vec<String> = p1["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["value"]["_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(walked.len(), 2);
    dep.transaction(|tx| {
        tx.patch("", "t", &walked[0], json!({"i": 9.0}))?;
        tx.delete("", "t", &walked[1])
    })
    .unwrap();
    // Behind head by 30 s: the next page follows the log (the captured rows' new revisions).
    dep.advance_clock(Duration::from_secs(31));
    let p2 = sync_page(&emu, Some(&cursor(&p1)), None);
    let deleted: Vec<bool> = p2["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["deleted"].as_bool().unwrap())
        .collect();
    assert_eq!(deleted, [false, true]);
    let s = row(&emu, &id)["status"].clone();
    assert_eq!(
        (
            s["numDocumentsSynced"].clone(),
            s["numDocumentsInCurrentTable"].clone()
        ),
        (json!(4), json!(2))
    );
    let p3 = sync_page(&emu, Some(&cursor(&p2)), None);
    assert_eq!(p3["values"].as_array().unwrap().len(), 2);
    let s = row(&emu, &id)["status"].clone();
    assert_eq!(s["type"], "snapshotting");
    assert_eq!(s["numDocumentsSynced"], 6);
    assert_eq!(s["numDocumentsInCurrentTable"], 4);
    assert_eq!(s["totalDocuments"], 3, "4 inserted, 1 deleted");
    assert_eq!(s["totalDocumentsInCurrentTable"], 3);
}

#[test]
fn rows_are_refreshed_at_most_every_interval_unless_the_status_moves() {
    // Rule: after the first page, a row is rewritten only when the write interval (Convex:
    // 5 s) has passed, the status variant changed, or an upToDate page changed the count;
    // otherwise it keeps its previous progress and lastUpdated.
    let emu = emulator(5_000, 1);
    let dep = emu.deployment();
    insert_rows(dep, "t", 3);
    let p1 = sync_page(&emu, None, None);
    let id = p1["syncId"].as_str().unwrap().to_owned();
    let t0 = clock_ms(dep);
    let r = row(&emu, &id);
    assert_eq!(
        (
            r["lastUpdated"].clone(),
            r["status"]["numDocumentsSynced"].clone()
        ),
        (json!(t0), json!(1))
    );
    let p2 = sync_page(&emu, Some(&cursor(&p1)), None);
    let r = row(&emu, &id);
    assert_eq!(
        (
            r["lastUpdated"].clone(),
            r["status"]["numDocumentsSynced"].clone()
        ),
        (json!(t0), json!(1)),
        "throttled"
    );
    dep.advance_clock(Duration::from_millis(5_000));
    let p3 = sync_page(&emu, Some(&cursor(&p2)), None);
    let r = row(&emu, &id);
    assert_eq!(
        (
            r["lastUpdated"].clone(),
            r["status"]["numDocumentsSynced"].clone()
        ),
        (json!(t0 + 5_000), json!(3)),
        "the interval passed"
    );
    // The walk ends behind head (the clock moved): stale, then a log page catches up.
    let p4 = sync_page(&emu, Some(&cursor(&p3)), None);
    assert_eq!(p4["status"]["type"], "stale");
    assert_eq!(row(&emu, &id)["status"]["type"], "stale", "variant changed");
    let p5 = sync_page(&emu, Some(&cursor(&p4)), None);
    assert_eq!(p5["status"]["type"], "upToDate");
    assert_eq!(
        row(&emu, &id)["status"]["type"],
        "upToDate",
        "variant changed"
    );
    insert_rows(dep, "t", 1);
    let p6 = sync_page(&emu, Some(&cursor(&p5)), None);
    assert_eq!(p6["status"]["type"], "upToDate");
    let r = row(&emu, &id);
    assert_eq!(
        (
            r["lastUpdated"].clone(),
            r["status"]["numDocumentsSynced"].clone()
        ),
        (json!(clock_ms(dep)), json!(4)),
        "a caught-up page with a new count is written at once"
    );
    dep.advance_clock(Duration::from_millis(1_000));
    sync_page(&emu, Some(&cursor(&p6)), None);
    assert_eq!(row(&emu, &id), r, "nothing new within the interval");
}

#[test]
fn listing_pages_newest_first_with_an_opaque_cursor() {
    // Rule: rows come by (lastUpdated, creation) descending; `limit` rows per page (default
    // 50); a page that filled up has `hasMore: true` and a `nextCursor` (even when nothing
    // follows: that next page is empty); the last page has `hasMore: false` and no cursor.
    let emu = emulator(0, 16_384);
    let dep = emu.deployment();
    let none = json!({"_other": "excluded"});
    let mut firsts = Vec::new();
    for _ in 0..3 {
        firsts.push(sync_page(&emu, None, Some(&none)));
        dep.advance_clock(Duration::from_secs(1));
    }
    // Two syncs in the same millisecond: the one created later comes first.
    firsts.push(sync_page(&emu, None, Some(&none)));
    firsts.push(sync_page(&emu, None, Some(&none)));
    let newest_first: Vec<String> = firsts
        .iter()
        .rev()
        .map(|p| p["syncId"].as_str().unwrap().to_owned())
        .collect();

    let all = list(&emu, "");
    assert_eq!(keys(&all), ["syncs", "pagination"]);
    assert_eq!(listed_ids(&all), newest_first);
    assert_eq!(all["pagination"], json!({"hasMore": false}));

    let mut seen = Vec::new();
    let mut query = "?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let v = list(&emu, &query);
        pages += 1;
        seen.extend(listed_ids(&v));
        if v["pagination"]["hasMore"] == false {
            assert!(v["pagination"].get("nextCursor").is_none());
            break;
        }
        assert_eq!(keys(&v["pagination"]), ["hasMore", "nextCursor"]);
        let c = v["pagination"]["nextCursor"].as_str().unwrap();
        query = format!("?limit=2&cursor={}", enc(c));
    }
    assert_eq!(seen, newest_first);
    assert_eq!(pages, 3);

    // Exactly full: a cursor, then an empty last page.
    let v = list(&emu, "?limit=5");
    assert_eq!(listed_ids(&v), newest_first);
    assert_eq!(v["pagination"]["hasMore"], true);
    let c = v["pagination"]["nextCursor"].as_str().unwrap();
    let v = list(&emu, &format!("?limit=5&cursor={}", enc(c)));
    assert_eq!(v, json!({"syncs": [], "pagination": {"hasMore": false}}));

    // A new page of the oldest sync moves it to the front.
    dep.advance_clock(Duration::from_secs(1));
    sync_page(&emu, Some(&cursor(&firsts[0])), Some(&none));
    assert_eq!(
        listed_ids(&list(&emu, "?limit=1")),
        [firsts[0]["syncId"].as_str().unwrap()]
    );
}

#[test]
fn limit_and_cursor_are_checked_like_convex() {
    // Rule: `limit` must be an integer (else 400 BadQueryArgs, while the query is parsed,
    // before authentication) between 1 and 100 (else 400 LimitOutOfRange, after it); a
    // cursor that this deployment did not make for this listing is 400 InvalidCursor.
    let emu = emulator(0, 16_384);
    sync_page(&emu, None, None);
    for bad in ["0", "101", "1000"] {
        let r = get(&emu, &format!("{LIST}?limit={bad}"));
        r.assert_error(400, "LimitOutOfRange");
        assert_eq!(
            r.json()["message"],
            "The limit for listing active syncs must be between 1 and 100"
        );
    }
    for ok in ["1", "100"] {
        assert_eq!(get(&emu, &format!("{LIST}?limit={ok}")).status, 200);
    }
    for bad in ["abc", "-1", "1.5", "", "99999999999999999999999"] {
        get(&emu, &format!("{LIST}?limit={bad}")).assert_error(400, "BadQueryArgs");
    }
    get(&emu, &format!("{LIST}?limit=1&limit=2")).assert_error(400, "BadQueryArgs");
    let a = emu.addr();
    request(a, "GET", &format!("{LIST}?limit=abc"), &[], None)
        .unwrap()
        .assert_error(400, "BadQueryArgs");
    request(a, "GET", &format!("{LIST}?limit=0"), &[], None)
        .unwrap()
        .assert_error(403, "BadDeployKey");

    let sync_cursor = cursor(&sync_page(&emu, None, None));
    let other = emulator(0, 16_384);
    sync_page(&other, None, None);
    sync_page(&other, None, None);
    let foreign = list(&other, "?limit=1")["pagination"]["nextCursor"]
        .as_str()
        .unwrap()
        .to_owned();
    for bad in ["zz", "", "01abcdef", sync_cursor.as_str(), foreign.as_str()] {
        let r = get(&emu, &format!("{LIST}?cursor={}", enc(bad)));
        r.assert_error(400, "InvalidCursor");
        assert_eq!(r.json()["message"], "Failed to parse cursor");
    }
    // The limit is checked before the cursor.
    get(&emu, &format!("{LIST}?limit=0&cursor=zz")).assert_error(400, "LimitOutOfRange");
}

#[test]
fn syncs_idle_for_three_days_are_no_longer_listed() {
    // Rule: only rows updated within DATA_SYNC_ACTIVE_WINDOW (3 days) are listed; the
    // emulator's clock (head, moved by commits and `advance_clock` / `POST /_emulator/clock`)
    // is the one rows are stamped with, as it is the one cursors expire by.
    let emu = emulator(0, 16_384);
    let dep = emu.deployment();
    let old = sync_page(&emu, None, None)["syncId"].clone();
    control(
        &emu,
        "POST",
        "/_emulator/clock",
        Some(&json!({"advance_ms": 3 * DAY_MS})),
    );
    let fresh = sync_page(&emu, None, None)["syncId"].clone();
    assert_eq!(
        listed_ids(&list(&emu, "")),
        [fresh.as_str().unwrap(), old.as_str().unwrap()]
    );
    dep.advance_clock(Duration::from_millis(1));
    let v = list(&emu, "");
    assert_eq!(listed_ids(&v), [fresh.as_str().unwrap()]);
    assert_eq!(v["pagination"], json!({"hasMore": false}));
    // A page that reaches an inactive row ends the listing there.
    let v = list(&emu, "?limit=1");
    assert_eq!(v["pagination"]["hasMore"], true);
    let c = v["pagination"]["nextCursor"].as_str().unwrap();
    let v = list(&emu, &format!("?limit=1&cursor={}", enc(c)));
    assert_eq!(v, json!({"syncs": [], "pagination": {"hasMore": false}}));
}

#[test]
fn the_route_checks_the_caller_like_the_other_data_sync_routes() {
    // Rule: GET only; `Authorization`, the streaming export plan and `deployment:data:view`
    // are checked as for `/api/v1/data/sync`.
    let emu = emulator(0, 16_384);
    let a = emu.addr();
    request(a, "GET", LIST, &[], None)
        .unwrap()
        .assert_error(403, "BadDeployKey");
    request(a, "GET", LIST, &[("Authorization", "Convex nope")], None)
        .unwrap()
        .assert_error(401, "BadAdminKey");
    let auth = format!("Convex {KEY}");
    let r = request(a, "POST", LIST, &[("Authorization", &auth)], Some(b"{}")).unwrap();
    assert_eq!(r.status, 405);
    let dep = emu.deployment();
    dep.update_settings(|s| s.streaming_export_enabled = false);
    get(&emu, LIST).assert_error(403, "StreamingExportNotEnabled");
    dep.update_settings(|s| {
        s.streaming_export_enabled = true;
        s.data_view_permission = false;
    });
    get(&emu, LIST).assert_error(403, "OperationNotPermitted");
    dep.update_settings(|s| s.data_view_permission = true);
    assert_eq!(
        list(&emu, ""),
        json!({"syncs": [], "pagination": {"hasMore": false}})
    );
    let stats = dep.requests();
    assert_eq!(stats.by_endpoint["list_active_syncs"], 6);
}

#[test]
fn creating_a_row_needs_table_summaries_refreshing_it_does_not() {
    // Rule: a snapshotting row needs the table counts; while they bootstrap, a page that
    // would create its sync's row fails with a 500 (nothing recorded, retry the same
    // request), while a page of a sync that has a row succeeds and leaves the row as it was.
    let emu = emulator(0, 1);
    let dep = emu.deployment();
    insert_rows(dep, "t", 3);
    dep.update_settings(|s| s.table_summaries_ready = false);
    post(&emu, SYNC, &json!({})).assert_error(500, "InternalServerError");
    assert_eq!(listed_ids(&list(&emu, "")), Vec::<String>::new());
    // A sync with nothing to walk is consistent at once: no counts needed.
    let empty = sync_page(&emu, None, Some(&json!({"_other": "excluded"})));
    assert_eq!(
        listed_ids(&list(&emu, "")),
        [empty["syncId"].as_str().unwrap()]
    );
    dep.update_settings(|s| s.table_summaries_ready = true);
    let p1 = sync_page(&emu, None, None);
    let id = p1["syncId"].as_str().unwrap().to_owned();
    let before = row(&emu, &id);
    dep.update_settings(|s| s.table_summaries_ready = false);
    let p2 = sync_page(&emu, Some(&cursor(&p1)), None);
    assert_eq!(p2["values"].as_array().unwrap().len(), 1);
    assert_eq!(row(&emu, &id), before);
}

#[test]
fn a_converted_cursor_gets_its_row_on_its_first_page() {
    // Rule: `data_sync_cursor_from_deltas` mints a sync id but writes nothing; the first
    // `/v1/data/sync` page with that cursor creates the row (no row yet = creation).
    let emu = emulator(0, 16_384);
    let dep = emu.deployment();
    insert_rows(dep, "t", 2);
    let from = dep.head();
    insert_rows(dep, "t", 3);
    let r = post(
        &emu,
        "/api/data_sync_cursor_from_deltas",
        &json!({"cursor": from}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let c = r.json()["cursor"].as_str().unwrap().to_owned();
    assert_eq!(listed_ids(&list(&emu, "")), Vec::<String>::new());
    let p = sync_page(&emu, Some(&c), None);
    let id = p["syncId"].as_str().unwrap();
    assert_eq!(
        row(&emu, id)["status"],
        json!({"type": "upToDate", "totalTables": 1, "numDocumentsSynced": 3,
            "syncedTs": dep.head()})
    );
}
