//! Behaviour tests of the Data Sync API (`POST /api/v1/data/sync`,
//! `POST /api/data_sync_cursor_from_deltas`), over real HTTP. Each test states the Convex rule
//! it reproduces (from the backend's `streaming_export` crates and the Deployment API docs).
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use convex_emulator::{Deployment, EmulatorServer, FaultRule, Format};
use serde_json::{json, Value};

const SYNC: &str = "/api/v1/data/sync";
const FROM_DELTAS: &str = "/api/data_sync_cursor_from_deltas";

fn body(cursor: Option<&str>, selection: Option<&Value>) -> Value {
    let mut b = json!({});
    if let Some(c) = cursor {
        b["cursor"] = json!(c);
    }
    if let Some(s) = selection {
        b["selection"] = s.clone();
    }
    b
}

/// One page, which must succeed.
fn page(emu: &EmulatorServer, cursor: Option<&str>, selection: Option<&Value>) -> Value {
    let r = post(emu, SYNC, &body(cursor, selection));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn next_cursor(p: &Value) -> String {
    p["pagination"]["nextCursor"].as_str().unwrap().to_owned()
}

fn status(p: &Value) -> &str {
    p["status"]["type"].as_str().unwrap()
}

fn values(p: &Value) -> &Vec<Value> {
    p["values"].as_array().unwrap()
}

fn truncates(p: &Value) -> Vec<(String, String)> {
    p["truncates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["component"].as_str().unwrap().to_owned(),
                t["table"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// A page's outline: how many values, which truncates, which status.
type Outline<'a> = (usize, Vec<(String, String)>, &'a str);

fn tr(c: &str, t: &str) -> (String, String) {
    (c.to_owned(), t.to_owned())
}

/// Selects whole tables only: `[(component, table)]`.
fn only(tables: &[(&str, &str)]) -> Value {
    let mut sel = json!({"_other": "excluded"});
    for (c, t) in tables {
        if sel.get(*c).is_none() {
            sel[*c] = json!({"_other": "excluded"});
        }
        sel[*c][*t] = json!({"_other": "included"});
    }
    sel
}

/// A destination applying pages the way Convex's docs say: truncates first, then values in
/// order (upsert by `_id`, delete on tombstone).
#[derive(Default)]
struct Replica {
    tables: BTreeMap<(String, String), BTreeMap<String, Value>>,
}

impl Replica {
    fn apply(&mut self, p: &Value) {
        for t in truncates(p) {
            self.tables.remove(&t);
        }
        for v in values(p) {
            let key = tr(
                v["component"].as_str().unwrap(),
                v["table"].as_str().unwrap(),
            );
            let id = v["value"]["_id"].as_str().unwrap().to_owned();
            let rows = self.tables.entry(key).or_default();
            if v["deleted"].as_bool().unwrap() {
                assert_eq!(v["value"], json!({"_id": id}), "tombstone shape");
                rows.remove(&id);
            } else {
                rows.insert(id, v["value"].clone());
            }
        }
    }

    fn rows(&self, c: &str, t: &str) -> Vec<Value> {
        self.tables
            .get(&tr(c, t))
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    fn nonempty_tables(&self) -> Vec<(String, String)> {
        self.tables
            .iter()
            .filter(|(_, m)| !m.is_empty())
            .map(|(k, _)| k.clone())
            .collect()
    }
}

/// Live documents in `export_json` as data sync sends them (no `_component`/`_table`/`_ts`),
/// ordered by `_id` like the replica.
fn expected(dep: &Deployment, c: &str, t: &str) -> Vec<Value> {
    let mut docs: Vec<Value> = dep
        .live_documents_in(c, t, Format::Export)
        .into_iter()
        .map(|mut d| {
            let o = d.as_object_mut().unwrap();
            o.remove("_component");
            o.remove("_table");
            o.remove("_ts");
            d
        })
        .collect();
    docs.sort_by(|a, b| a["_id"].as_str().cmp(&b["_id"].as_str()));
    docs
}

/// Pages until `upToDate`, applying each; returns the pages.
fn drain(
    emu: &EmulatorServer,
    cursor: &mut Option<String>,
    selection: Option<&Value>,
    replica: &mut Replica,
) -> Vec<Value> {
    let mut pages = Vec::new();
    loop {
        let p = page(emu, cursor.as_deref(), selection);
        replica.apply(&p);
        *cursor = Some(next_cursor(&p));
        let done = status(&p) == "upToDate";
        pages.push(p);
        if done {
            return pages;
        }
        assert!(pages.len() < 10_000, "the sync never catches up");
    }
}

fn commit_rows(dep: &Deployment, table: &str, n: usize) -> i64 {
    dep.transaction(|tx| {
        for i in 0..n {
            tx.insert("", table, json!({"i": i as f64}))?;
        }
        Ok(())
    })
    .unwrap()
}

fn ids(vals: &[Value]) -> Vec<String> {
    vals.iter()
        .map(|v| v["value"]["_id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn cold_start_on_a_small_table_is_one_consistent_page() {
    // Rule: a missing cursor starts a sync at the current timestamp; the first table's
    // truncate is on the first page; a table that fits in one by-id page finishes there, and
    // with nothing committed meanwhile the page is `upToDate` with `snapshotTs` = latest.
    // `hasMore` is always true and `nextCursor` always present; fields come in the order
    // status, truncates, values, syncId, pagination.
    let emu = start();
    let dep = emu.deployment();
    commit_rows(dep, "users", 4);
    let (ts_b, id_b) = dep.insert("", "users", json!({"i": 9.0})).unwrap();
    let r = post(&emu, SYNC, &json!({}));
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let text = r.text();
    let order: Vec<usize> = [
        "\"status\"",
        "\"truncates\"",
        "\"values\"",
        "\"syncId\"",
        "\"pagination\"",
    ]
    .iter()
    .map(|k| text.find(k).unwrap())
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
    let p = r.json();
    assert_eq!(
        p["status"],
        json!({"type": "upToDate", "snapshotTs": dep.head()})
    );
    assert_eq!(truncates(&p), vec![tr("", "users")]);
    assert_eq!(p["pagination"]["hasMore"], json!(true));
    let vals = values(&p);
    assert_eq!(vals.len(), 5);
    // By-id pages are in document id order, each value with its own last-write ts.
    let mut sorted = ids(vals);
    sorted.sort();
    assert_eq!(ids(vals), sorted);
    let b = vals
        .iter()
        .find(|v| v["value"]["_id"] == json!(id_b))
        .unwrap();
    assert_eq!(b["ts"].as_i64(), Some(ts_b));
    assert!(ts_b > 1 << 53, "ts must exceed 2^53 to catch f64 clients");
    assert_eq!(b["deleted"], json!(false));
    let mut rep = Replica::default();
    rep.apply(&p);
    assert_eq!(rep.rows("", "users"), expected(dep, "", "users"));
    // Idle: further pages stay upToDate and empty; snapshotTs follows the clock.
    let p2 = page(&emu, Some(&next_cursor(&p)), None);
    assert_eq!(status(&p2), "upToDate");
    assert!(values(&p2).is_empty() && truncates(&p2).is_empty());
    let head = dep.advance_clock(Duration::from_secs(5));
    let p3 = page(&emu, Some(&next_cursor(&p2)), None);
    assert_eq!(
        p3["status"],
        json!({"type": "upToDate", "snapshotTs": head})
    );
}

#[test]
fn nothing_selected_is_up_to_date_at_once() {
    // Rule: with no table selected (or none existing) the first page is `upToDate` with no
    // truncates and no values; a valid name of a table that does not exist is no error.
    let emu = start();
    let p = page(&emu, None, None);
    assert_eq!(
        p["status"],
        json!({"type": "upToDate", "snapshotTs": emu.deployment().head()})
    );
    assert!(values(&p).is_empty() && truncates(&p).is_empty());
    commit_rows(emu.deployment(), "users", 2);
    let p = page(&emu, None, Some(&only(&[("", "nosuch")])));
    assert_eq!(status(&p), "upToDate");
    assert!(values(&p).is_empty() && truncates(&p).is_empty());
}

#[test]
fn values_are_export_json_with_sorted_keys() {
    // Rule: data sync always sends `export_json` (no `format` parameter): int64 as a JSON
    // integer, float64 as a number (`-0.0` kept, NaN/±inf as `{"$float": base64 LE}`), bytes
    // as `{"$bytes": base64}`, `_creationTime` a float; keys in field-name order.
    let emu = start();
    let dep = emu.deployment();
    let (_, id) = dep
        .insert(
            "",
            "t",
            json!({
                "big": {"$integer": "/////////38="}, "small": {"$integer": "AAAAAAAAAIA="},
                "neg0": {"$float": "AAAAAAAAAIA="}, "inf": {"$float": "AAAAAAAA8H8="},
                "one": 1.0, "b": {"$bytes": "AAEC"}, "Upper": "x", "nested": {"z": [null, true]}
            }),
        )
        .unwrap();
    let r = post(&emu, SYNC, &json!({"format": "json"}));
    let text = r.text();
    assert!(text.contains("\"big\":9223372036854775807"), "{text}");
    assert!(text.contains("\"small\":-9223372036854775808"), "{text}");
    assert!(text.contains("\"neg0\":-0.0"), "{text}");
    assert!(text.contains("\"one\":1.0"), "{text}");
    assert!(
        text.contains("\"inf\":{\"$float\":\"AAAAAAAA8H8=\"}"),
        "{text}"
    );
    assert!(text.contains("\"b\":{\"$bytes\":\"AAEC\"}"), "{text}");
    let p = r.json();
    let v = &values(&p)[0]["value"];
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(keys[0], "Upper");
    assert_eq!(v["_id"], json!(id));
    assert!(v["_creationTime"].is_f64());
}

#[test]
fn snapshot_walks_tables_one_after_another_in_pages() {
    // Rule: a by-id page holds documents of one table and stops at the entry limit; when a
    // page finishes a table, the next table's truncate is on that page and its rows start on
    // the next; a table whose last page was exactly full gets one more (empty) page. Status is
    // `snapshotting` while a table is in progress.
    let emu = start();
    let dep = emu.deployment();
    dep.update_settings(|s| s.data_sync_page_entries = 3);
    commit_rows(dep, "a", 6);
    commit_rows(dep, "b", 2);
    let sel = only(&[("", "a"), ("", "b")]);
    let mut rep = Replica::default();
    let mut cursor = None;
    let pages = drain(&emu, &mut cursor, Some(&sel), &mut rep);
    let shape: Vec<Outline> = pages
        .iter()
        .map(|p| (values(p).len(), truncates(p), status(p)))
        .collect();
    // The first table walked is the first in tablet order, whichever that is.
    let x = values(&pages[0])[0]["table"].as_str().unwrap();
    let y = if x == "a" { "b" } else { "a" };
    let n = |t: &str| if t == "a" { 6 } else { 2 };
    let mut want: Vec<Outline> = Vec::new();
    // Pages of the first table, the one that ends it naming the second one.
    let mut left: usize = n(x);
    let mut first_page = true;
    loop {
        let k = left.min(3);
        left -= k;
        let mut t = Vec::new();
        if first_page {
            t.push(tr("", x));
            first_page = false;
        }
        if k < 3 {
            t.push(tr("", y));
            t.sort();
            want.push((k, t, "snapshotting"));
            break;
        }
        want.push((k, t, "snapshotting"));
    }
    let mut left = n(y);
    loop {
        let k = left.min(3);
        left -= k;
        if k < 3 {
            want.push((k, vec![], "upToDate"));
            break;
        }
        want.push((k, vec![], "snapshotting"));
    }
    assert_eq!(shape, want);
    for p in &pages {
        let tables: std::collections::BTreeSet<&str> = values(p)
            .iter()
            .map(|v| v["table"].as_str().unwrap())
            .collect();
        assert!(tables.len() <= 1, "a by-id page holds one table");
    }
    assert_eq!(rep.rows("", "a"), expected(dep, "", "a"));
    assert_eq!(rep.rows("", "b"), expected(dep, "", "b"));
}

#[test]
fn page_limits_never_split_a_transaction() {
    // Rule: log pages end at a commit boundary once the entry or byte limit is reached (the
    // commit that crosses it is sent whole), and a single document larger than the byte
    // limit is still sent. `stale` = consistent, but more is available; `upToDate` = caught up.
    let emu = start();
    let dep = emu.deployment();
    commit_rows(dep, "t", 1);
    let mut rep = Replica::default();
    let mut cursor = None;
    drain(&emu, &mut cursor, None, &mut rep);
    dep.update_settings(|s| s.data_sync_page_entries = 2);
    let big = commit_rows(dep, "t", 5);
    let small = commit_rows(dep, "t", 1);
    let p = page(&emu, cursor.as_deref(), None);
    assert_eq!(values(&p).len(), 5);
    assert!(values(&p).iter().all(|v| v["ts"].as_i64() == Some(big)));
    assert_eq!(p["status"], json!({"type": "stale", "snapshotTs": big}));
    let p = page(&emu, Some(&next_cursor(&p)), None);
    assert_eq!(values(&p).len(), 1);
    assert_eq!(
        p["status"],
        json!({"type": "upToDate", "snapshotTs": small})
    );
    // Byte limit of 1: every commit crosses it, so each page holds exactly one commit.
    dep.update_settings(|s| {
        s.data_sync_page_entries = 16_384;
        s.data_sync_page_bytes = 1;
    });
    let c1 = commit_rows(dep, "t", 3);
    let c2 = commit_rows(dep, "t", 2);
    let p = page(&emu, Some(&next_cursor(&p)), None);
    assert_eq!(values(&p).len(), 3);
    assert_eq!(p["status"], json!({"type": "stale", "snapshotTs": c1}));
    let p = page(&emu, Some(&next_cursor(&p)), None);
    assert_eq!(values(&p).len(), 2);
    assert_eq!(p["status"], json!({"type": "upToDate", "snapshotTs": c2}));
    // The same byte limit makes by-id pages one document each.
    let mut rep = Replica::default();
    let mut cold = None;
    let pages = drain(&emu, &mut cold, None, &mut rep);
    assert_eq!(
        pages.len(),
        13,
        "12 one-document pages, then the empty end of the table"
    );
    assert_eq!(rep.rows("", "t"), expected(dep, "", "t"));
}

#[test]
fn writes_during_the_snapshot_reach_the_replica_exactly() {
    // Rule: a document is captured once its table is synced or the walk has passed its id;
    // when `synced_ts` lags 30 s or more behind, a log page emits revisions (and tombstones)
    // of captured documents only and moves `synced_ts` on; uncaptured ones are read later by
    // id at the newer time. Applying every page gives the tables at `snapshotTs`.
    let emu = start();
    let dep = emu.deployment();
    dep.update_settings(|s| s.data_sync_page_entries = 2);
    commit_rows(dep, "t", 6);
    let p1 = page(&emu, None, None);
    let mut rep = Replica::default();
    rep.apply(&p1);
    let walked = ids(values(&p1));
    let all: Vec<String> = expected(dep, "", "t")
        .iter()
        .map(|d| d["_id"].as_str().unwrap().to_owned())
        .collect();
    let unwalked: Vec<&String> = all.iter().filter(|i| !walked.contains(i)).collect();
    let up_ts = dep
        .transaction(|tx| {
            tx.patch("", "t", &walked[0], json!({"i": 100.0}))?;
            tx.delete("", "t", &walked[1])?;
            tx.patch("", "t", unwalked[0], json!({"i": 200.0}))
        })
        .unwrap();
    dep.advance_clock(Duration::from_secs(31));
    let p2 = page(&emu, Some(&next_cursor(&p1)), None);
    assert_eq!(status(&p2), "snapshotting");
    let v2 = values(&p2);
    assert_eq!(v2.len(), 2, "only captured documents: {v2:?}");
    assert!(v2.iter().all(|v| v["ts"].as_i64() == Some(up_ts)));
    assert_eq!(v2[0]["value"]["i"], json!(100.0));
    assert_eq!(v2[1]["deleted"], json!(true));
    rep.apply(&p2);
    let mut cursor = Some(next_cursor(&p2));
    let rest = drain(&emu, &mut cursor, None, &mut rep);
    let later = rest
        .iter()
        .flat_map(values)
        .find(|v| v["value"]["_id"] == json!(unwalked[0]))
        .unwrap();
    assert_eq!(
        later["ts"].as_i64(),
        Some(up_ts),
        "read by id at the newer synced_ts"
    );
    assert_eq!(later["value"]["i"], json!(200.0));
    assert_eq!(rep.rows("", "t"), expected(dep, "", "t"));
}

#[test]
fn randomized_writes_between_pages_end_exact() {
    // Rule (the API's guarantee): whatever is written between pages, applying all pages in
    // order reproduces the selected tables exactly once the sync reports `upToDate`.
    let emu = start_with(convex_emulator::Config {
        generate: convex_emulator::GenerateSpec {
            tables: 3,
            docs: 40,
            components: true,
            ..Default::default()
        },
        seed: 7,
        ..Default::default()
    });
    let dep = emu.deployment();
    dep.update_settings(|s| s.data_sync_page_entries = 7);
    let mut rep = Replica::default();
    let mut cursor: Option<String> = None;
    for round in 0..12u64 {
        for _ in 0..(round % 4 + 1) {
            let p = page(&emu, cursor.as_deref(), None);
            rep.apply(&p);
            cursor = Some(next_cursor(&p));
            convex_emulator::apply_changes(dep, 5, round * 31 + 1).unwrap();
            if round % 3 == 0 {
                dep.advance_clock(Duration::from_secs(31));
            }
        }
        drain(&emu, &mut cursor, None, &mut rep);
        for t in dep.tables() {
            assert_eq!(
                rep.rows(&t.component, &t.table),
                expected(dep, &t.component, &t.table),
                "round {round}, {}/{}",
                t.component,
                t.table
            );
        }
        let live: Vec<(String, String)> = dep
            .tables()
            .into_iter()
            .filter(|t| t.documents > 0)
            .map(|t| (t.component, t.table))
            .collect();
        let mut got = rep.nonempty_tables();
        got.sort();
        let mut live = live;
        live.sort();
        assert_eq!(got, live);
    }
    assert!(
        rep.tables.keys().any(|(c, _)| c == "betterAuth"),
        "components have their path"
    );
}

#[test]
fn selection_filters_components_tables_and_columns() {
    // Rule: the selection picks components, tables and columns (`_other` says what happens to
    // unlisted names); excluded columns are absent from every value, `_creationTime` may be
    // excluded, `_id` may not; system tables are never exported.
    let emu = start();
    let dep = emu.deployment();
    dep.insert("", "users", json!({"name": "ada", "ssn": "1"}))
        .unwrap();
    dep.insert("", "posts", json!({"title": "x"})).unwrap();
    dep.insert("comp", "users", json!({"name": "bob"})).unwrap();
    dep.insert("", "_secret", json!({"k": 1.0})).unwrap();
    let sel = json!({"_other": "excluded", "": {"_other": "excluded",
        "users": {"_other": "included", "ssn": "excluded", "_creationTime": "excl"}}});
    let mut rep = Replica::default();
    drain(&emu, &mut None, Some(&sel), &mut rep);
    assert_eq!(rep.nonempty_tables(), vec![tr("", "users")]);
    let row = &rep.rows("", "users")[0];
    let keys: Vec<&String> = row.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["_id", "name"]);
    // Everything: both components, no system table.
    let mut all = Replica::default();
    drain(&emu, &mut None, None, &mut all);
    assert_eq!(
        all.nonempty_tables(),
        vec![tr("", "posts"), tr("", "users"), tr("comp", "users")]
    );
    // Excluding a component.
    let mut no_comp = Replica::default();
    drain(
        &emu,
        &mut None,
        Some(&json!({"_other": "included", "comp": "excluded"})),
        &mut no_comp,
    );
    assert_eq!(
        no_comp.nonempty_tables(),
        vec![tr("", "posts"), tr("", "users")]
    );
}

#[test]
fn bad_bodies_and_selections_are_400s() {
    // Rule: the body is `{cursor?: string, selection?: Selection}`; wrong JSON shapes are
    // 400 BadJsonBody (`selection: null`, a missing `_other`, an unknown inclusion, a
    // component given as "included", a non-string cursor), while a well-formed but invalid
    // selection is 400 InvalidDataSyncSelection "Invalid selection: ...". Unknown keys are
    // ignored.
    let emu = start();
    for b in [
        json!({"selection": null}),
        json!({"selection": {}}),
        json!({"selection": {"_other": "bogus"}}),
        json!({"selection": {"_other": "included", "": "included"}}),
        json!({"selection": {"_other": "included", "": {"t": {"_other": "included"}}}}),
        json!({"selection": {"_other": "included", "": {"_other": "included", "t": {"_other": "included", "c": true}}}}),
        json!({"selection": [1]}),
        json!({"cursor": 123}),
        json!({"cursor": {}}),
    ] {
        post(&emu, SYNC, &b).assert_error(400, "BadJsonBody");
    }
    for sel in [
        json!({"_other": "included", "": {"_other": "included", "t": {"_other": "included", "_id": "excluded"}}}),
        json!({"_other": "included", "": {"_other": "included", "t": {"_other": "excluded"}}}),
        json!({"_other": "included", "": {"_other": "included", "no-dash": "excluded"}}),
        json!({"_other": "included", "bad path!": "excluded"}),
    ] {
        let r = post(&emu, SYNC, &json!({ "selection": sel }));
        r.assert_error(400, "InvalidDataSyncSelection");
        assert!(r.json()["message"]
            .as_str()
            .unwrap()
            .starts_with("Invalid selection: "));
    }
    assert_eq!(
        post(
            &emu,
            SYNC,
            &json!({"cursor": null, "format": "json", "x": 1})
        )
        .status,
        200
    );
    let r = request(
        emu.addr(),
        "POST",
        SYNC,
        &[
            ("Authorization", &format!("Convex {KEY}")),
            ("Content-Type", "text/plain"),
        ],
        Some(b"{}"),
    )
    .unwrap();
    r.assert_error(400, "BadJsonBody");
}

#[test]
fn cursors_are_opaque_sealed_and_per_deployment() {
    // Rule: the cursor is an encrypted, authenticated hex string under a per-deployment key,
    // with a random nonce (the same state never gives the same string twice). A modified,
    // invented or other-deployment cursor is 400 InvalidDataSyncCursor "Could not parse the
    // data sync cursor"; an old cursor may be replayed.
    let emu = start();
    let dep = emu.deployment();
    commit_rows(dep, "t", 3);
    let p = page(&emu, None, None);
    let c = next_cursor(&p);
    assert!(
        c.starts_with("01") && c.bytes().all(|b| b.is_ascii_hexdigit()),
        "{c}"
    );
    let again = page(&emu, Some(&c), None);
    let again2 = page(&emu, Some(&c), None);
    assert_ne!(next_cursor(&again), next_cursor(&again2));
    assert_eq!(again["syncId"], p["syncId"]);
    let mut flipped = c.clone().into_bytes();
    let mid = flipped.len() / 2;
    flipped[mid] = if flipped[mid] == b'a' { b'b' } else { b'a' };
    let other = start();
    let foreign = next_cursor(&page(&other, None, None));
    for bad in [
        String::from_utf8(flipped).unwrap(),
        c[..c.len() - 2].to_owned(),
        "not hex".to_owned(),
        String::new(),
        format!("02{}", &c[2..]),
        foreign,
    ] {
        let r = post(&emu, SYNC, &json!({ "cursor": bad }));
        r.assert_error(400, "InvalidDataSyncCursor");
        assert_eq!(r.json()["message"], "Could not parse the data sync cursor");
    }
    // The cursor is checked before the selection.
    post(
        &emu,
        SYNC,
        &json!({"cursor": "00", "selection": {"_other": "included", "9": "excluded"}}),
    )
    .assert_error(400, "InvalidDataSyncCursor");
}

#[test]
fn expired_cursors_must_restart() {
    // Rule: a cursor is resumable while its position is within the deployment's document
    // retention (the API docs: call at least once every 3 days); beyond it 400
    // DataSyncCursorExpired with Convex's message, and a call without cursor starts over.
    let emu = start();
    let dep = emu.deployment();
    commit_rows(dep, "t", 2);
    let c = next_cursor(&page(&emu, None, None));
    dep.advance_clock(Duration::from_secs(3 * 86_400 - 60));
    let c2 = next_cursor(&page(&emu, Some(&c), None));
    dep.advance_clock(Duration::from_secs(3 * 86_400 + 1));
    let r = post(&emu, SYNC, &json!({ "cursor": c2 }));
    r.assert_error(400, "DataSyncCursorExpired");
    assert_eq!(
        r.json()["message"],
        "The cursor is outside the deployment's data retention window and can no longer be \
         resumed. Restart the sync from scratch by calling /data/sync without a cursor."
    );
    assert_eq!(status(&page(&emu, None, None)), "upToDate");
    // The retention is a setting.
    let c3 = next_cursor(&page(&emu, None, None));
    dep.update_settings(|s| s.data_sync_retention_ms = 60_000);
    dep.advance_clock(Duration::from_secs(61));
    post(&emu, SYNC, &json!({ "cursor": c3 })).assert_error(400, "DataSyncCursorExpired");
}

#[test]
fn selection_changes_truncate_new_tables_only() {
    // Rule: each call reconciles the cursor with the selection: a newly selected table is
    // walked from scratch after a truncate; a deselected table is dropped silently (no
    // truncate, no tombstones); selecting it again walks it again with a truncate.
    let emu = start();
    let dep = emu.deployment();
    commit_rows(dep, "a", 2);
    commit_rows(dep, "b", 3);
    let (sa, sab) = (only(&[("", "a")]), only(&[("", "a"), ("", "b")]));
    let mut rep = Replica::default();
    let mut cursor = None;
    drain(&emu, &mut cursor, Some(&sa), &mut rep);
    assert_eq!(rep.nonempty_tables(), vec![tr("", "a")]);
    let p = page(&emu, cursor.as_deref(), Some(&sab));
    assert_eq!(truncates(&p), vec![tr("", "b")]);
    assert_eq!(values(&p).len(), 3);
    rep.apply(&p);
    cursor = Some(next_cursor(&p));
    drain(&emu, &mut cursor, Some(&sab), &mut rep);
    assert_eq!(rep.rows("", "b"), expected(dep, "", "b"));
    // Deselect b, change it: nothing about b arrives.
    let (_, id) = dep.insert("", "b", json!({"i": 50.0})).unwrap();
    dep.insert("", "a", json!({"i": 51.0})).unwrap();
    let pages = drain(&emu, &mut cursor, Some(&sa), &mut rep);
    assert!(pages.iter().all(|p| truncates(p).is_empty()));
    let tables: Vec<&str> = pages
        .iter()
        .flat_map(values)
        .map(|v| v["table"].as_str().unwrap())
        .collect();
    assert_eq!(tables, ["a"]);
    assert_eq!(rep.rows("", "b").len(), 3, "the replica keeps b's old rows");
    // Select b again: truncate and a full walk, including the row written meanwhile.
    let p = page(&emu, cursor.as_deref(), Some(&sab));
    assert_eq!(truncates(&p), vec![tr("", "b")]);
    assert!(ids(values(&p)).contains(&id));
    rep.apply(&p);
    assert_eq!(rep.rows("", "b"), expected(dep, "", "b"));
}

#[test]
fn replaced_recreated_and_deleted_tables() {
    // Rule: tables are tracked by tablet, not name. A table replaced by `npx convex import
    // --replace` or deleted and created again is a new table: truncate, then a fresh walk
    // (the old rows get no tombstones). A table just deleted disappears silently.
    let emu = start();
    let dep = emu.deployment();
    commit_rows(dep, "a", 3);
    commit_rows(dep, "b", 2);
    commit_rows(dep, "c", 2);
    let mut rep = Replica::default();
    let mut cursor = None;
    drain(&emu, &mut cursor, None, &mut rep);
    dep.import_table("", "a", vec![json!({"new": true})])
        .unwrap();
    let pages = drain(&emu, &mut cursor, None, &mut rep);
    let all_truncates: Vec<(String, String)> = pages.iter().flat_map(truncates).collect();
    assert_eq!(all_truncates, vec![tr("", "a")]);
    assert!(pages
        .iter()
        .flat_map(values)
        .all(|v| v["deleted"] == json!(false)));
    assert_eq!(rep.rows("", "a"), expected(dep, "", "a"));
    assert_eq!(rep.rows("", "a").len(), 1);
    // Deleted and re-created under the same name.
    dep.delete_table("", "b").unwrap();
    dep.insert("", "b", json!({"again": 1.0})).unwrap();
    let pages = drain(&emu, &mut cursor, None, &mut rep);
    let all_truncates: Vec<(String, String)> = pages.iter().flat_map(truncates).collect();
    assert_eq!(all_truncates, vec![tr("", "b")]);
    assert_eq!(rep.rows("", "b"), expected(dep, "", "b"));
    // Deleted only: no truncate, no tombstone.
    dep.delete_table("", "c").unwrap();
    let pages = drain(&emu, &mut cursor, None, &mut rep);
    assert!(pages
        .iter()
        .all(|p| truncates(p).is_empty() && values(p).is_empty()));
    assert_eq!(rep.rows("", "c").len(), 2);
}

#[test]
fn cursor_from_deltas_continues_after_the_legacy_position() {
    // Rule: `data_sync_cursor_from_deltas` takes `{cursor: i64, selection?}` and returns
    // `{cursor}`: every revision at or before the cursor of the tables the selection resolves
    // to is treated as synced, so the first data sync page carries no truncate and exactly
    // the revisions after it (exclusive), like document_deltas; tables selected later on the
    // data sync are walked from scratch with a truncate.
    let emu = start();
    let dep = emu.deployment();
    commit_rows(dep, "a", 3);
    commit_rows(dep, "b", 2);
    // A completed legacy walk's position: the head timestamp.
    let legacy = dep.head();
    let t1 = commit_rows(dep, "a", 2);
    dep.transaction(|tx| {
        let id = tx.insert("", "a", json!({"x": 1.0}))?;
        tx.insert("", "b", json!({"x": 2.0}))?;
        tx.patch("", "a", &id, json!({"x": 3.0}))
    })
    .unwrap();
    let sa = only(&[("", "a")]);
    let r = post(
        &emu,
        FROM_DELTAS,
        &json!({"cursor": legacy, "selection": sa}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let conv = r.json();
    assert_eq!(conv.as_object().unwrap().len(), 1);
    let c = conv["cursor"].as_str().unwrap();
    let p = page(&emu, Some(c), Some(&sa));
    assert!(truncates(&p).is_empty());
    assert_eq!(
        p["status"],
        json!({"type": "upToDate", "snapshotTs": dep.head()})
    );
    let (deltas_pages, _) = all_deltas(&emu, legacy, "tableName=a");
    let want: Vec<(String, i64)> = deltas_pages
        .iter()
        .flat_map(|d| d["values"].as_array().unwrap().clone())
        .map(|v| {
            (
                v["_id"].as_str().unwrap().to_owned(),
                v["_ts"].as_i64().unwrap(),
            )
        })
        .collect();
    let got: Vec<(String, i64)> = values(&p)
        .iter()
        .map(|v| {
            (
                v["value"]["_id"].as_str().unwrap().to_owned(),
                v["ts"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, want);
    assert!(values(&p).iter().all(|v| v["ts"].as_i64().unwrap() >= t1));
    // A wider selection on the data sync adds b with a truncate and a walk.
    let p2 = page(
        &emu,
        Some(&next_cursor(&p)),
        Some(&only(&[("", "a"), ("", "b")])),
    );
    assert_eq!(truncates(&p2), vec![tr("", "b")]);
    assert_eq!(values(&p2).len(), 3);
    // Each conversion is a new sync.
    let c2 = post(&emu, FROM_DELTAS, &json!({ "cursor": legacy })).json();
    let id1 = page(&emu, Some(c), None)["syncId"].clone();
    let id2 = page(&emu, c2["cursor"].as_str(), None)["syncId"].clone();
    assert_ne!(id1, id2);
}

#[test]
fn cursor_from_deltas_errors() {
    // Rule: a negative cursor is "not a valid timestamp", one past the deployment's latest
    // timestamp is "ahead" (both 400 InvalidDataSyncCursor), one outside retention is 400
    // DataSyncCursorExpired; a missing or non-integer cursor is 400 BadJsonBody and a bad
    // selection 400 InvalidDataSyncSelection.
    let emu = start();
    let dep = emu.deployment();
    let head = dep.head();
    let r = post(&emu, FROM_DELTAS, &json!({"cursor": -1}));
    r.assert_error(400, "InvalidDataSyncCursor");
    assert_eq!(
        r.json()["message"],
        "The document_deltas cursor is not a valid timestamp"
    );
    let r = post(&emu, FROM_DELTAS, &json!({"cursor": head + 1}));
    r.assert_error(400, "InvalidDataSyncCursor");
    assert_eq!(
        r.json()["message"],
        "document_deltas cursor is ahead of the deployment's latest timestamp"
    );
    for b in [
        json!({}),
        json!({"cursor": "5"}),
        json!({"cursor": 1.5}),
        json!({"cursor": head, "selection": null}),
    ] {
        post(&emu, FROM_DELTAS, &b).assert_error(400, "BadJsonBody");
    }
    post(
        &emu,
        FROM_DELTAS,
        &json!({"cursor": head, "selection": {"_other": "included", "": {"_other": "included", "t": {"_other": "excluded"}}}}),
    )
    .assert_error(400, "InvalidDataSyncSelection");
    assert_eq!(
        post(&emu, FROM_DELTAS, &json!({"cursor": head})).status,
        200
    );
    dep.advance_clock(Duration::from_secs(3 * 86_400 + 1));
    post(&emu, FROM_DELTAS, &json!({"cursor": head})).assert_error(400, "DataSyncCursorExpired");
}

#[test]
fn auth_client_header_and_sync_ids_as_elsewhere() {
    // Rule: both routes are POST-only and check `Authorization`, the deployment's plan,
    // `deployment:data:view` and `Convex-Client` like the other streaming export endpoints,
    // before the body. `Convex-Client: airbyte-export-<semver>` gives `airbyte-` sync ids
    // (`fivetran-` for Fivetran's clients, none otherwise); the id is stable over a sync's
    // pages and new for every cold start.
    let emu = start();
    let a = emu.addr();
    let auth = format!("Convex {KEY}");
    let ct = ("Content-Type", "application/json");
    for path in [SYNC, FROM_DELTAS] {
        let b = br#"{"cursor": 0}"#;
        request(a, "POST", path, &[ct], Some(b))
            .unwrap()
            .assert_error(403, "BadDeployKey");
        request(
            a,
            "POST",
            path,
            &[ct, ("Authorization", "Convex nope")],
            Some(b),
        )
        .unwrap()
        .assert_error(401, "BadAdminKey");
        request(
            a,
            "POST",
            path,
            &[ct, ("Authorization", "Bearer x")],
            Some(b),
        )
        .unwrap()
        .assert_error(400, "InvalidHeaderFailure");
        request(
            a,
            "POST",
            path,
            &[ct, ("Authorization", &auth), ("Convex-Client", "nodash")],
            Some(b),
        )
        .unwrap()
        .assert_error(400, "InvalidClientVersion");
        assert_eq!(
            request(a, "GET", path, &[("Authorization", &auth)], None)
                .unwrap()
                .status,
            405
        );
    }
    let dep = emu.deployment();
    dep.update_settings(|s| s.streaming_export_enabled = false);
    post(&emu, SYNC, &json!({})).assert_error(403, "StreamingExportNotEnabled");
    dep.update_settings(|s| {
        s.streaming_export_enabled = true;
        s.data_view_permission = false;
    });
    post(&emu, SYNC, &json!({})).assert_error(403, "OperationNotPermitted");
    dep.update_settings(|s| s.data_view_permission = true);

    let with_client = |client: &str, b: &Value| {
        let body = serde_json::to_vec(b).unwrap();
        let r = request(
            a,
            "POST",
            SYNC,
            &[ct, ("Authorization", &auth), ("Convex-Client", client)],
            Some(&body),
        )
        .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    };
    let p = with_client("airbyte-export-0.5.0", &json!({}));
    let id = p["syncId"].as_str().unwrap().to_owned();
    assert!(id.starts_with("airbyte-") && id.len() == 8 + 36, "{id}");
    let p2 = with_client("airbyte-export-0.5.0", &json!({"cursor": next_cursor(&p)}));
    assert_eq!(p2["syncId"], json!(id));
    let p3 = with_client("airbyte-export-0.5.0", &json!({}));
    assert_ne!(p3["syncId"], json!(id));
    let f = with_client("fivetran-import-1.0.0", &json!({}));
    assert!(f["syncId"].as_str().unwrap().starts_with("fivetran-"));
    let plain = page(&emu, None, None);
    assert_eq!(plain["syncId"].as_str().unwrap().len(), 36);
}

#[test]
fn faults_and_request_counters_cover_the_new_routes() {
    // Rule (emulator): fault rules match endpoints by name (`data_sync`,
    // `data_sync_cursor_from_deltas`, or `*`), and every request is counted and logged; a
    // client retrying a failed page with the same cursor continues correctly.
    let emu = start();
    let dep = emu.deployment();
    commit_rows(dep, "t", 3);
    dep.add_fault(FaultRule::status("data_sync", 503, "Overloaded", "busy").times(1))
        .unwrap();
    dep.add_fault(
        FaultRule::status(
            "data_sync_cursor_from_deltas",
            500,
            "InternalServerError",
            "x",
        )
        .times(1),
    )
    .unwrap();
    post(&emu, SYNC, &json!({})).assert_error(503, "Overloaded");
    let p = page(&emu, None, None);
    post(&emu, FROM_DELTAS, &json!({"cursor": dep.head()}))
        .assert_error(500, "InternalServerError");
    assert_eq!(
        post(&emu, FROM_DELTAS, &json!({"cursor": dep.head()})).status,
        200
    );
    dep.add_fault(FaultRule::new("data_sync", convex_emulator::FaultKind::Truncate).times(1))
        .unwrap();
    let c = next_cursor(&p);
    let auth = format!("Convex {KEY}");
    let b = serde_json::to_vec(&json!({ "cursor": c })).unwrap();
    let cut = request(
        emu.addr(),
        "POST",
        SYNC,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        Some(&b),
    );
    assert!(cut.is_err(), "a truncated body is an error for the client");
    assert_eq!(status(&page(&emu, Some(&c), None)), "upToDate");
    let stats = dep.requests();
    assert_eq!(stats.by_endpoint["data_sync"], 4);
    assert_eq!(stats.by_endpoint["data_sync_cursor_from_deltas"], 2);
    let log = dep.request_log();
    let statuses: Vec<(String, &str, u16)> = log
        .iter()
        .map(|r| (r.endpoint.clone(), r.uri.as_str(), r.status))
        .collect();
    assert_eq!(
        statuses,
        vec![
            ("data_sync".to_owned(), SYNC, 503),
            ("data_sync".to_owned(), SYNC, 200),
            ("data_sync_cursor_from_deltas".to_owned(), FROM_DELTAS, 500),
            ("data_sync_cursor_from_deltas".to_owned(), FROM_DELTAS, 200),
            ("data_sync".to_owned(), SYNC, 0),
            ("data_sync".to_owned(), SYNC, 200),
        ]
    );
}
