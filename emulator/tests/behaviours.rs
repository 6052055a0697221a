//! One test per behaviour of the Convex streaming export API that the connector relies on,
//! over real HTTP; each test's name states the rule it reproduces.

// Test helpers outside #[test] fns may unwrap and panic too (clippy.toml covers only those fns).
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use convex_emulator::{Deployment, Value};
use serde_json::json;

/// Inserts `n` documents into a root table in one transaction; returns its timestamp.
fn commit_rows(dep: &Deployment, table: &str, n: usize) -> i64 {
    dep.transaction(|tx| {
        for i in 0..n {
            tx.insert("", table, json!({"i": i as f64}))?;
        }
        Ok(())
    })
    .unwrap()
}

fn insert(dep: &Deployment, table: &str, doc: serde_json::Value) -> (i64, String) {
    dep.insert("", table, doc).unwrap()
}

fn ids_of(values: &[serde_json::Value]) -> Vec<String> {
    values
        .iter()
        .map(|v| v["_id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn b01_authentication() {
    let emu = start();
    let a = emu.addr();
    let p = "/api/test_streaming_export_connection";
    let ok = request(
        a,
        "GET",
        p,
        &[("Authorization", "convex emulator-access-key")],
        None,
    )
    .unwrap();
    assert_eq!(ok.status, 200);
    let ok = request(
        a,
        "GET",
        p,
        &[("Authorization", "CONVEX emulator-access-key")],
        None,
    )
    .unwrap();
    assert_eq!(ok.status, 200);
    request(a, "GET", p, &[("Authorization", "Convex wrong")], None)
        .unwrap()
        .assert_error(401, "BadAdminKey");
    request(a, "GET", p, &[], None)
        .unwrap()
        .assert_error(403, "BadDeployKey");
    request(a, "GET", p, &[("Authorization", "abc")], None)
        .unwrap()
        .assert_error(400, "InvalidHeaderFailure");
    // The adminKey query parameter is honoured when there is no header.
    let r = request(a, "GET", &format!("{p}?adminKey={KEY}"), &[], None).unwrap();
    assert_eq!(r.status, 200);
}

#[test]
fn b02_feature_disabled_and_missing_permission() {
    let emu = start();
    let dep = emu.deployment();
    dep.update_settings(|s| s.streaming_export_enabled = false);
    for path in [
        "/api/test_streaming_export_connection",
        "/api/json_schemas",
        "/api/list_snapshot",
        "/api/document_deltas?cursor=1",
        "/api/get_table_column_names",
    ] {
        get(&emu, path).assert_error(403, "StreamingExportNotEnabled");
    }
    // Order of checks: no credentials on a disabled deployment is still "not enabled".
    request(emu.addr(), "GET", "/api/json_schemas", &[], None)
        .unwrap()
        .assert_error(403, "StreamingExportNotEnabled");
    dep.update_settings(|s| {
        s.streaming_export_enabled = true;
        s.keys_without_data_view = vec!["viewer-less".into()];
    });
    request(
        emu.addr(),
        "GET",
        "/api/list_snapshot",
        &[("Authorization", "Convex viewer-less")],
        None,
    )
    .unwrap()
    .assert_error(403, "OperationNotPermitted");
    dep.update_settings(|s| s.data_view_permission = false);
    get(&emu, "/api/json_schemas").assert_error(403, "OperationNotPermitted");
}

#[test]
fn b03_convex_client_header() {
    let emu = start();
    let auth = format!("Convex {KEY}");
    let p = "/api/test_streaming_export_connection";
    let with = |v: &str| {
        request(
            emu.addr(),
            "GET",
            p,
            &[("Authorization", &auth), ("Convex-Client", v)],
            None,
        )
        .unwrap()
    };
    with("foo").assert_error(400, "InvalidClientVersion");
    assert_eq!(with("airbyte-export-1.2.3").status, 200);
    assert_eq!(with("airbyte-export-0.5.0-rc.1").status, 200);
    assert_eq!(get(&emu, p).status, 200);
}

#[test]
fn b04_test_connection_returns_null() {
    let emu = start();
    let r = get(&emu, "/api/test_streaming_export_connection");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"null");
    assert_eq!(r.header("content-type"), Some("application/json"));
}

#[test]
fn b05_snapshot_is_pinned() {
    let emu = start();
    let dep = emu.deployment();
    for i in 0..5 {
        insert(dep, "t", json!({"i": i as f64}));
    }
    dep.update_settings(|s| s.snapshot_page_limit = 2);
    let first = get(&emu, "/api/list_snapshot?tableName=t").json();
    let s = first["snapshot"].as_i64().unwrap();
    assert_eq!(s, dep.head());
    insert(dep, "t", json!({"i": 99.0}));
    let mut cursor = first["cursor"].as_str().unwrap().to_owned();
    loop {
        let p = get(
            &emu,
            &format!(
                "/api/list_snapshot?tableName=t&snapshot={s}&cursor={}",
                enc(&cursor)
            ),
        )
        .json();
        assert_eq!(p["snapshot"].as_i64(), Some(s));
        match p["cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
}

#[test]
fn b06_later_commits_invisible_later_deletes_visible() {
    let emu = start();
    let dep = emu.deployment();
    let (_, a) = insert(dep, "t", json!({"v": "old"}));
    let (_, b) = insert(dep, "t", json!({"v": "b"}));
    let s = dep.head();
    dep.transaction(|tx| {
        tx.patch("", "t", &a, json!({"v": "new"}))?;
        tx.delete("", "t", &b)?;
        tx.insert("", "t", json!({"v": "c"}))?;
        Ok(())
    })
    .unwrap();
    let values = snapshot_values(&emu, &format!("tableName=t&snapshot={s}"));
    assert_eq!(values.len(), 2);
    for v in &values {
        assert!(v["_ts"].as_i64().unwrap() <= s);
        if v["_id"] == a {
            assert_eq!(v["v"], "old");
        } else {
            assert_eq!(v["_id"], b.as_str());
        }
    }
}

#[test]
fn b07_snapshot_ts_is_last_write() {
    let emu = start();
    let dep = emu.deployment();
    let (t1, a) = insert(dep, "t", json!({"v": 1.0}));
    let t2 = dep
        .transaction(|tx| tx.patch("", "t", &a, json!({"v": 2.0})))
        .unwrap();
    let (t3, _) = insert(dep, "other", json!({}));
    assert!(t1 < t2 && t2 < t3);
    let values = snapshot_values(&emu, "tableName=t");
    assert_eq!(values[0]["_ts"].as_i64(), Some(t2));
    assert!(values[0].get("_deleted").is_none());
    assert_eq!(values[0]["_table"], "t");
    assert_eq!(values[0]["_component"], "");
}

#[test]
fn b08_pages_never_span_tables() {
    let emu = start();
    let dep = emu.deployment();
    for t in ["a", "b", "c"] {
        dep.create_table("", t).unwrap();
    }
    insert(dep, "a", json!({"x": 1.0}));
    insert(dep, "c", json!({"x": 1.0}));
    let pages = walk_snapshot(&emu, "");
    assert_eq!(pages.len(), 3, "one page per table: {pages:?}");
    for p in &pages[..2] {
        assert_eq!(p["hasMore"], true);
        let c: serde_json::Value = serde_json::from_str(p["cursor"].as_str().unwrap()).unwrap();
        assert_eq!(c["tablet"].as_str().unwrap().len(), 22);
        assert!(c["id"].is_string());
    }
    for p in &pages {
        let tables: std::collections::BTreeSet<&str> = p["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["_table"].as_str().unwrap())
            .collect();
        assert!(tables.len() <= 1);
    }
    let empty = pages
        .iter()
        .filter(|p| p["values"].as_array().unwrap().is_empty());
    assert_eq!(empty.count(), 1, "table b is an empty page");
}

#[test]
fn b09_page_limit_1024() {
    let emu = start();
    let dep = emu.deployment();
    dep.transaction(|tx| {
        for i in 0..1024 {
            tx.insert("", "t", json!({"i": i as f64}))?;
        }
        Ok(())
    })
    .unwrap();
    let pages = walk_snapshot(&emu, "tableName=t");
    assert_eq!(pages.len(), 2);
    assert_eq!(pages[0]["values"].as_array().unwrap().len(), 1024);
    assert_eq!(pages[0]["hasMore"], true);
    assert_eq!(pages[1]["values"].as_array().unwrap().len(), 0);
    assert_eq!(pages[1]["hasMore"], false);
}

#[test]
fn b10_last_page_and_unknown_table() {
    let emu = start();
    let dep = emu.deployment();
    insert(dep, "t", json!({}));
    let p = get(&emu, "/api/list_snapshot?tableName=t").json();
    assert_eq!(p["cursor"], serde_json::Value::Null);
    assert_eq!(p["hasMore"], false);
    let r = get(&emu, "/api/list_snapshot?tableName=nope");
    assert_eq!(
        r.text(),
        format!(
            r#"{{"values":[],"snapshot":{},"cursor":null,"hasMore":false}}"#,
            dep.head()
        )
    );
}

#[test]
fn b11_snapshot_too_new_and_too_old() {
    let emu = start();
    let dep = emu.deployment();
    insert(dep, "t", json!({}));
    let head = dep.head();
    get(&emu, &format!("/api/list_snapshot?snapshot={}", head + 1))
        .assert_error(400, "SnapshotTooNew");
    dep.advance_clock(Duration::from_secs(5 * 24 * 3600 + 1));
    get(&emu, &format!("/api/list_snapshot?snapshot={head}")).assert_error(400, "SnapshotTooOld");
    dep.update_settings(|s| s.snapshot_max_age_ms = 30 * 24 * 3600 * 1000);
    assert_eq!(
        get(&emu, &format!("/api/list_snapshot?snapshot={head}")).status,
        200
    );
}

#[test]
fn b12_invalid_list_snapshot_cursor() {
    let emu = start();
    for c in ["abc", "{}", r#"{"tablet":"x","id":"y"}"#, "5", ""] {
        get(&emu, &format!("/api/list_snapshot?cursor={}", enc(c)))
            .assert_error(400, "InvalidListSnapshotCursor");
    }
}

#[test]
fn b13_cursor_without_snapshot_reads_at_head() {
    let emu = start();
    let dep = emu.deployment();
    dep.update_settings(|s| s.snapshot_page_limit = 1);
    insert(dep, "t", json!({"n": 1.0}));
    insert(dep, "t", json!({"n": 2.0}));
    let p = get(&emu, "/api/list_snapshot?tableName=t").json();
    insert(dep, "t", json!({"n": 3.0}));
    let c = p["cursor"].as_str().unwrap();
    let r = get(
        &emu,
        &format!("/api/list_snapshot?tableName=t&cursor={}", enc(c)),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["snapshot"].as_i64(), Some(dep.head()));
}

#[test]
fn b14_document_deltas_argument_errors() {
    let emu = start();
    get(&emu, "/api/document_deltas").assert_error(400, "DocumentDeltasCursorRequired");
    get(&emu, "/api/document_deltas?cursor=abc").assert_error(400, "BadQueryArgs");
    // GET query parsing happens before auth.
    request(
        emu.addr(),
        "GET",
        "/api/document_deltas?cursor=abc",
        &[],
        None,
    )
    .unwrap()
    .assert_error(400, "BadQueryArgs");
    post(&emu, "/api/document_deltas", &json!({"cursor": "5"})).assert_error(400, "BadJsonBody");
    let auth = format!("Convex {KEY}");
    request(
        emu.addr(),
        "POST",
        "/api/document_deltas",
        &[("Authorization", &auth), ("Content-Type", "text/plain")],
        Some(br#"{"cursor":5}"#),
    )
    .unwrap()
    .assert_error(400, "BadJsonBody");
    request(
        emu.addr(),
        "POST",
        "/api/document_deltas",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        Some(b"{not json"),
    )
    .unwrap()
    .assert_error(400, "BadJsonBody");
    let r = request(
        emu.addr(),
        "POST",
        "/api/document_deltas",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/vnd.api+json; charset=utf-8"),
        ],
        Some(format!(r#"{{"cursor":{}}}"#, emu.deployment().head()).as_bytes()),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    post(&emu, "/api/document_deltas", &json!({}))
        .assert_error(400, "DocumentDeltasCursorRequired");
}

#[test]
fn b15_deltas_cursor_is_exclusive() {
    let emu = start();
    let dep = emu.deployment();
    let (t1, _) = insert(dep, "t", json!({"n": 1.0}));
    let (t2, _) = insert(dep, "t", json!({"n": 2.0}));
    let p = deltas(&emu, t1, "");
    let v = p["values"].as_array().unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["_ts"].as_i64(), Some(t2));
}

#[test]
fn b16_caught_up_cursor_is_head_and_stable() {
    let emu = start();
    let dep = emu.deployment();
    let (t1, _) = insert(dep, "t", json!({}));
    let p = deltas(&emu, t1, "");
    assert_eq!(p["values"], json!([]));
    assert_eq!(p["cursor"].as_i64(), Some(dep.head()));
    assert_eq!(p["hasMore"], false);
    let again = deltas(&emu, p["cursor"].as_i64().unwrap(), "");
    assert_eq!(again["cursor"], p["cursor"]);
    // A clock bump without commits moves the caught-up cursor without values.
    let head = dep.advance_clock(Duration::from_secs(1));
    let bumped = deltas(&emu, t1, "");
    assert_eq!(bumped["cursor"].as_i64(), Some(head));
}

#[test]
fn b17_transaction_never_split() {
    let emu = start();
    let dep = emu.deployment();
    let start_ts = dep.head();
    let ts = commit_rows(dep, "t", 300);
    let p = deltas(&emu, start_ts, "");
    assert_eq!(p["values"].as_array().unwrap().len(), 300);
    assert_eq!(p["cursor"].as_i64(), Some(ts));
    assert_eq!(p["hasMore"], false);

    // Two transactions of 100 rows and nothing after: one page of 200, hasMore false.
    let before = dep.head();
    for _ in 0..2 {
        commit_rows(dep, "t", 100);
    }
    let p = deltas(&emu, before, "");
    assert_eq!(p["values"].as_array().unwrap().len(), 200);
    assert_eq!(p["hasMore"], false);

    // A later commit after the cutoff makes hasMore true.
    let before = dep.head();
    for _ in 0..2 {
        commit_rows(dep, "t", 100);
    }
    insert(dep, "t", json!({}));
    let p = deltas(&emu, before, "");
    assert_eq!(p["values"].as_array().unwrap().len(), 200);
    assert_eq!(p["hasMore"], true);
}

#[test]
fn b18_excluded_rows_count_toward_read_limit() {
    let emu = start();
    let dep = emu.deployment();
    let start_ts = dep.head();
    let mut b_ts = Vec::new();
    for i in 0..200 {
        b_ts.push(insert(dep, "b", json!({"i": i as f64})).0);
    }
    let (a_ts, _) = insert(dep, "a", json!({}));
    let p = deltas(&emu, start_ts, "tableName=a");
    assert_eq!(p["values"], json!([]));
    assert_eq!(p["hasMore"], true);
    // The first commit also created table `b`: its `_tables` row and two `_index` rows count
    // too, so the 128th row read is b's 125th insert.
    assert_eq!(p["cursor"].as_i64(), Some(b_ts[124]));
    let p2 = deltas(&emu, b_ts[124], "tableName=a");
    let v = p2["values"].as_array().unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["_ts"].as_i64(), Some(a_ts));
    assert_eq!(p2["cursor"].as_i64(), Some(dep.head()));
    assert_eq!(p2["hasMore"], false);

    // System tables count too, and never appear.
    let s = dep.head();
    for _ in 0..130 {
        insert(dep, "_scheduled_jobs", json!({}));
    }
    let p = deltas(&emu, s, "");
    assert_eq!(p["values"], json!([]));
    assert_eq!(p["hasMore"], true);
}

#[test]
fn b19_ordering_within_and_across_pages() {
    let emu = start();
    let dep = emu.deployment();
    let s = dep.head();
    for _ in 0..20 {
        dep.transaction(|tx| {
            for t in ["x", "y", "z"] {
                for _ in 0..5 {
                    tx.insert("", t, json!({}))?;
                }
            }
            Ok(())
        })
        .unwrap();
    }
    dep.update_settings(|st| st.deltas_page_limit = 7);
    let tablets: std::collections::HashMap<String, String> = dep
        .tables()
        .into_iter()
        .map(|t| (t.table, t.tablet))
        .collect();
    let (pages, _) = all_deltas(&emu, s, "");
    let values: Vec<&serde_json::Value> = pages
        .iter()
        .flat_map(|p| p["values"].as_array().unwrap())
        .collect();
    assert_eq!(values.len(), 300);
    let tablet_bytes = |t: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&tablets[t])
            .unwrap()
    };
    for w in values.windows(2) {
        let k = |v: &serde_json::Value| {
            (
                v["_ts"].as_i64().unwrap(),
                tablet_bytes(v["_table"].as_str().unwrap()),
                v["_id"].as_str().unwrap().to_owned(),
            )
        };
        assert!(k(w[0]) < k(w[1]), "{:?} !< {:?}", k(w[0]), k(w[1]));
    }
}

#[test]
fn b20_one_entry_per_document_per_transaction() {
    let emu = start();
    let dep = emu.deployment();
    let s = dep.head();
    dep.transaction(|tx| {
        let id = tx.insert("", "t", json!({"v": 1.0}))?;
        tx.patch("", "t", &id, json!({"v": 2.0}))?;
        tx.patch("", "t", &id, json!({"w": true}))?;
        Ok(())
    })
    .unwrap();
    let p = deltas(&emu, s, "");
    let v = p["values"].as_array().unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["v"], 2.0);
    assert_eq!(v[0]["w"], true);
    assert_eq!(v[0]["_deleted"], false);
}

#[test]
fn b21_tombstones() {
    let emu = start();
    let dep = emu.deployment();
    let (s, id) = insert(dep, "t", json!({"v": 1.0}));
    let ts = dep.transaction(|tx| tx.delete("", "t", &id)).unwrap();
    let p = deltas(&emu, s, "");
    assert_eq!(
        p["values"],
        json!([{"_component": "", "_table": "t", "_ts": ts, "_deleted": true, "_id": id}])
    );
    let raw = get(&emu, &format!("/api/document_deltas?cursor={s}")).text();
    assert!(raw.contains(&format!(r#""_ts":{ts},"_deleted":true,"_id":"{id}"}}"#)));
}

#[test]
fn b22_deleting_a_table_emits_nothing() {
    let emu = start();
    let dep = emu.deployment();
    let s = dep.head();
    insert(dep, "gone", json!({}));
    insert(dep, "kept", json!({}));
    dep.delete_table("", "gone").unwrap();
    let (pages, _) = all_deltas(&emu, s, "");
    let v: Vec<_> = pages
        .iter()
        .flat_map(|p| p["values"].as_array().unwrap().clone())
        .collect();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["_table"], "kept");
    let schemas = get(&emu, "/api/json_schemas").json();
    assert!(schemas.get("gone").is_none());
    assert!(schemas.get("kept").is_some());
}

#[test]
fn b23_delete_and_recreate_table() {
    let emu = start();
    let dep = emu.deployment();
    let s = dep.head();
    insert(dep, "t", json!({"gen": 1.0}));
    dep.delete_table("", "t").unwrap();
    let (_, new_id) = insert(dep, "t", json!({"gen": 2.0}));
    let (pages, _) = all_deltas(&emu, s, "tableName=t");
    let v: Vec<_> = pages
        .iter()
        .flat_map(|p| p["values"].as_array().unwrap().clone())
        .collect();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["_id"], new_id.as_str());
    assert_eq!(v[0]["_deleted"], false);
}

#[test]
fn b24_import_replace_appears_as_inserts() {
    let emu = start();
    let dep = emu.deployment();
    insert(dep, "t", json!({"old": true}));
    let s = dep.head();
    let (rows_ts, _) = dep
        .import_table("", "t", vec![json!({"new": 1.0}), json!({"new": 2.0})])
        .unwrap();
    let (pages, _) = all_deltas(&emu, s, "tableName=t");
    let v: Vec<_> = pages
        .iter()
        .flat_map(|p| p["values"].as_array().unwrap().clone())
        .collect();
    assert_eq!(v.len(), 2);
    assert!(v
        .iter()
        .all(|x| x["_deleted"] == false && x["_ts"] == rows_ts));
    let live = dep.live_documents("", "t");
    assert_eq!(live.len(), 2);
    let schema = &get(&emu, "/api/json_schemas").json()["t"];
    assert!(schema["properties"].get("new").is_some());
    assert!(schema["properties"].get("old").is_none());
}

#[test]
fn b25_retention_window() {
    let emu = start();
    let dep = emu.deployment();
    let (s, _) = insert(dep, "t", json!({}));
    dep.update_settings(|st| st.retention_ms = 1000);
    assert_eq!(
        get(&emu, &format!("/api/document_deltas?cursor={s}")).status,
        200
    );
    dep.advance_clock(Duration::from_secs(2));
    get(&emu, &format!("/api/document_deltas?cursor={s}"))
        .assert_error(400, "InvalidWindowToReadDocuments");
}

#[test]
fn b26_cursor_past_head() {
    let emu = start();
    let dep = emu.deployment();
    insert(dep, "t", json!({}));
    let head = dep.head();
    let p = deltas(&emu, head + 1_000_000_000, "");
    assert_eq!(p, json!({"values": [], "cursor": head, "hasMore": false}));
}

#[test]
fn b27_negative_timestamps_are_500() {
    let emu = start();
    for path in [
        "/api/document_deltas?cursor=-1",
        "/api/list_snapshot?snapshot=-5",
    ] {
        let r = get(&emu, path);
        assert_eq!(r.status, 500);
        assert_eq!(
            r.json(),
            json!({"code": "InternalServerError",
                   "message": "Your request couldn't be completed. Try again later."})
        );
    }
}

#[test]
fn b28_format_values() {
    let emu = start();
    insert(
        emu.deployment(),
        "t",
        json!({"n": {"$integer": "BQAAAAAAAAA="}}),
    );
    for f in ["", "&format=json", "&format=convex_clean_json"] {
        let v = snapshot_values(&emu, &format!("tableName=t{f}"));
        assert_eq!(v[0]["n"], "5");
    }
    for f in ["convex_json", "convex_encoded_json"] {
        let v = snapshot_values(&emu, &format!("tableName=t&format={f}"));
        assert_eq!(v[0]["n"], json!({"$integer": "BQAAAAAAAAA="}));
    }
    let v = snapshot_values(&emu, "tableName=t&format=export_json");
    assert_eq!(v[0]["n"], 5);
    let r = get(&emu, "/api/list_snapshot?format=xml");
    r.assert_error(400, "BadFormat");
    assert_eq!(
        r.json()["message"],
        "format param must be one of [`json`]. Got xml"
    );
    get(&emu, "/api/document_deltas?cursor=1&format=xml")
        .assert_error(400, "InvalidWindowToReadDocuments");
    let h = emu.deployment().head();
    get(&emu, &format!("/api/document_deltas?cursor={h}&format=xml"))
        .assert_error(400, "BadFormat");
    get(&emu, "/api/json_schemas?format=xml").assert_error(400, "BadFormat");
}

fn special_doc() -> Value {
    let mut m = std::collections::BTreeMap::new();
    m.insert("i".to_owned(), Value::Int64(5));
    m.insert("min".to_owned(), Value::Int64(i64::MIN));
    m.insert("nan".to_owned(), Value::Float64(f64::NAN));
    m.insert("inf".to_owned(), Value::Float64(f64::INFINITY));
    m.insert("ninf".to_owned(), Value::Float64(f64::NEG_INFINITY));
    m.insert("nz".to_owned(), Value::Float64(-0.0));
    m.insert("one".to_owned(), Value::Float64(1.0));
    m.insert("b".to_owned(), Value::Bytes(vec![0, 16, 131]));
    m.insert("s".to_owned(), Value::String("é\"\n".into()));
    Value::Object(m)
}

#[test]
fn b29_clean_json_encoding() {
    let emu = start();
    emu.deployment().insert("", "t", special_doc()).unwrap();
    let raw = get(&emu, "/api/list_snapshot?tableName=t&format=json").text();
    for frag in [
        r#""i":"5""#,
        r#""min":"-9223372036854775808""#,
        r#""nan":"NaN""#,
        r#""inf":"Infinity""#,
        r#""ninf":"-Infinity""#,
        r#""nz":-0.0"#,
        r#""one":1.0"#,
        r#""b":"ABCD""#,
        r#""s":"é\"\n""#,
    ] {
        assert!(raw.contains(frag), "{frag} not in {raw}");
    }
    let v = snapshot_values(&emu, "tableName=t");
    let ct = v[0]["_creationTime"].as_f64().unwrap();
    assert!(ct.fract() != 0.0 && ct > 1.7e12);
}

#[test]
fn b30_encoded_json_encoding() {
    let emu = start();
    emu.deployment().insert("", "t", special_doc()).unwrap();
    let v = &snapshot_values(&emu, "tableName=t&format=convex_encoded_json")[0];
    assert_eq!(v["i"], json!({"$integer": "BQAAAAAAAAA="}));
    assert_eq!(v["nan"], json!({"$float": "AAAAAAAA+H8="}));
    assert_eq!(v["inf"], json!({"$float": "AAAAAAAA8H8="}));
    assert_eq!(v["ninf"], json!({"$float": "AAAAAAAA8P8="}));
    assert_eq!(v["nz"], json!({"$float": "AAAAAAAAAIA="}));
    assert_eq!(v["b"], json!({"$bytes": "ABCD"}));
    assert_eq!(v["one"], 1.0);
    assert!(v["_creationTime"].is_f64());
    // Round trip: what comes out in encoded JSON goes back in losslessly.
    let mut doc = v.as_object().unwrap().clone();
    doc.retain(|k, _| !k.starts_with('_'));
    let back = Value::from_encoded_json(&serde_json::Value::Object(doc)).unwrap();
    let Value::Object(m) = back else { panic!() };
    assert_eq!(m["i"], Value::Int64(5));
    assert!(matches!(m["nz"], Value::Float64(f) if f == 0.0 && f.is_sign_negative()));
}

/// `export_json` as the backend's `export_clean_lossless` writes it, on both walk endpoints,
/// for a document the emulator re-encodes (it holds an int64) and one it copies (no int64).
#[test]
fn b30b_export_json_encoding() {
    let emu = start();
    emu.deployment().insert("", "t", special_doc()).unwrap();
    let mut plain = special_doc();
    if let Value::Object(m) = &mut plain {
        m.retain(|k, _| k != "i" && k != "min" && k != "nz");
    }
    emu.deployment().insert("", "u", plain).unwrap();
    let cursor = emu.deployment().head() - 1_000_000_000_000;
    for (table, copied) in [("t", false), ("u", true)] {
        for raw in [
            get(
                &emu,
                &format!("/api/list_snapshot?tableName={table}&format=export_json"),
            )
            .text(),
            get(
                &emu,
                &format!(
                    "/api/document_deltas?tableName={table}&cursor={cursor}&format=export_json"
                ),
            )
            .text(),
        ] {
            let mut frags = vec![
                r#""nan":{"$float":"AAAAAAAA+H8="}"#,
                r#""inf":{"$float":"AAAAAAAA8H8="}"#,
                r#""ninf":{"$float":"AAAAAAAA8P8="}"#,
                r#""one":1.0"#,
                r#""b":{"$bytes":"ABCD"}"#,
                r#""s":"é\"\n""#,
            ];
            if !copied {
                frags.extend([r#""i":5"#, r#""min":-9223372036854775808"#, r#""nz":-0.0"#]);
            }
            for frag in frags {
                assert!(raw.contains(frag), "{frag} not in {raw}");
            }
        }
    }
}

#[test]
fn b31_selection_variants() {
    let emu = start();
    let dep = emu.deployment();
    insert(dep, "users", json!({"name": "a", "ssn": "1"}));
    insert(dep, "posts", json!({"title": "t"}));
    dep.insert("waitlist", "users", json!({"name": "w"}))
        .unwrap();
    let tables = |vals: &[serde_json::Value]| {
        let mut t: Vec<String> = vals
            .iter()
            .map(|v| {
                format!(
                    "{}/{}",
                    v["_component"].as_str().unwrap(),
                    v["_table"].as_str().unwrap()
                )
            })
            .collect();
        t.sort();
        t
    };
    assert_eq!(
        tables(&snapshot_values(&emu, "tableName=users")),
        ["/users"]
    );
    assert_eq!(
        tables(&snapshot_values(&emu, "table_name=users")),
        ["/users"]
    );
    assert_eq!(
        tables(&snapshot_values(&emu, "tableName=users&component=waitlist")),
        ["waitlist/users"]
    );
    assert_eq!(
        tables(&snapshot_values(&emu, "component=")),
        ["/posts", "/users"]
    );
    assert_eq!(
        tables(&snapshot_values(&emu, "component=waitlist")),
        ["waitlist/users"]
    );
    assert_eq!(tables(&snapshot_values(&emu, "")).len(), 3);

    let sel = json!({"_other": "excluded", "": {"_other": "excluded",
        "posts": {"_other": "included"}, "users": {"_other": "included", "ssn": "excluded"}}});
    let p = post(&emu, "/api/list_snapshot", &json!({"selection": sel}));
    assert_eq!(p.status, 200, "{}", p.text());
    let mut all = Vec::new();
    let mut page = p.json();
    loop {
        all.extend(page["values"].as_array().unwrap().clone());
        if page["hasMore"] == false {
            break;
        }
        page = post(
            &emu,
            "/api/list_snapshot",
            &json!({"selection": sel, "snapshot": page["snapshot"], "cursor": page["cursor"]}),
        )
        .json();
    }
    assert_eq!(tables(&all), ["/posts", "/users"]);
    let u = all.iter().find(|v| v["_table"] == "users").unwrap();
    assert!(u.get("ssn").is_none());
    assert_eq!(u["name"], "a");

    // A selection missing `_other` silently exports everything.
    let p = post(
        &emu,
        "/api/list_snapshot",
        &json!({"selection": {"": {"_other": "included"}}}),
    );
    assert_eq!(p.status, 200);
    let s = p.json()["snapshot"].as_i64().unwrap();
    let (pages, _) = {
        let mut v = Vec::new();
        let mut body = json!({"selection": {"": {"_other": "included"}}, "snapshot": s});
        loop {
            let pg = post(&emu, "/api/list_snapshot", &body).json();
            let more = pg["hasMore"] == true;
            body["cursor"] = pg["cursor"].clone();
            v.extend(pg["values"].as_array().unwrap().clone());
            if !more {
                break;
            }
        }
        (v, ())
    };
    assert_eq!(tables(&pages).len(), 3);

    // Excluding `_id` is a 500; excluding `_creationTime` drops it.
    let bad = json!({"_other": "included", "": {"_other": "included",
        "users": {"_other": "included", "_id": "excluded"}}});
    let r = post(&emu, "/api/list_snapshot", &json!({"selection": bad}));
    r.assert_error(500, "InternalServerError");
    let no_ct = json!({"_other": "excluded", "": {"_other": "excluded",
        "users": {"_other": "included", "_creationTime": "excluded"}}});
    let r = post(&emu, "/api/list_snapshot", &json!({"selection": no_ct})).json();
    let first_nonempty = r["values"].as_array().unwrap();
    if let Some(v) = first_nonempty.first() {
        assert!(v.get("_creationTime").is_none());
        assert!(v.get("_id").is_some());
    }
    // The same selection on document_deltas.
    let d = post(
        &emu,
        "/api/document_deltas",
        &json!({"cursor": 1, "selection": no_ct}),
    );
    assert_eq!(d.status, 400); // cursor 1 is outside retention
    let s0 = dep.head();
    let id = dep.insert("", "users", json!({"name": "z"})).unwrap().1;
    let d = post(
        &emu,
        "/api/document_deltas",
        &json!({"cursor": s0, "selection": no_ct}),
    )
    .json();
    assert_eq!(d["values"][0]["_id"], id.as_str());
    assert!(d["values"][0].get("_creationTime").is_none());
    // Unparsable table name: 500.
    get(&emu, "/api/list_snapshot?tableName=bad%20name").assert_error(500, "InternalServerError");
}

#[test]
fn b32_component_paths() {
    let emu = start();
    let dep = emu.deployment();
    dep.insert("a/b", "t", json!({})).unwrap();
    insert(dep, "t", json!({"root": true}));
    let v = snapshot_values(&emu, "tableName=t");
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["_component"], "");
    let v = snapshot_values(&emu, "tableName=t&component=a%2Fb");
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["_component"], "a/b");
}

#[test]
fn b33_json_schemas_shape() {
    let emu = start();
    let dep = emu.deployment();
    dep.create_table("", "empty").unwrap();
    insert(
        dep,
        "users",
        json!({"name": "a", "age": 3.0, "addr": {"city": "x"}}),
    );
    insert(
        dep,
        "users",
        json!({"name": "b", "n": {"$integer": "AQAAAAAAAAA="}, "addr": {"city": "y", "zip": "1"}}),
    );
    let s = get(&emu, "/api/json_schemas?deltaSchema=true&format=json").json();
    let e = &s["empty"];
    assert_eq!(e["required"], json!(["_creationTime", "_id"]));
    assert_eq!(e["$schema"], "http://json-schema.org/draft-07/schema#");
    let u = &s["users"];
    assert_eq!(u["type"], "object");
    assert_eq!(u["additionalProperties"], false);
    assert_eq!(
        u["required"],
        json!(["_creationTime", "_id", "addr", "name"])
    );
    assert_eq!(
        u["properties"]["_id"],
        json!({"$description": "Id(users)", "type": "string"})
    );
    assert_eq!(u["properties"]["_creationTime"], json!({"type": "number"}));
    assert_eq!(
        u["properties"]["n"],
        json!({"$description": "int64 represented as base10 string", "type": "string"})
    );
    assert_eq!(u["properties"]["addr"]["required"], json!(["city"]));
    assert_eq!(u["properties"]["addr"]["additionalProperties"], false);
    for (k, t) in [
        ("_table", "string"),
        ("_component", "string"),
        ("_ts", "integer"),
        ("_deleted", "boolean"),
    ] {
        assert_eq!(u["properties"][k], json!({"type": t}));
        assert!(!u["required"].as_array().unwrap().contains(&json!(k)));
    }
    let plain = get(&emu, "/api/json_schemas").json();
    assert!(plain["users"]["properties"].get("_ts").is_none());
    get(&emu, "/api/json_schemas?deltaSchema=1").assert_error(400, "BadQueryArgs");
    let enc = get(&emu, "/api/json_schemas?format=convex_encoded_json").json();
    assert_eq!(enc["users"]["properties"]["n"]["type"], "object");
}

#[test]
fn b34_json_schemas_by_component() {
    let emu = start();
    let dep = emu.deployment();
    insert(dep, "users", json!({"root": true}));
    dep.insert("betterAuth", "users", json!({"child": true}))
        .unwrap();
    dep.insert("betterAuth", "sessions", json!({})).unwrap();
    let flat = get(&emu, "/api/json_schemas").json();
    let keys: Vec<&String> = flat.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 2);
    assert!(
        flat["users"]["properties"].get("child").is_some(),
        "child overwrites root"
    );
    let nested = get(&emu, "/api/json_schemas?byComponent=true").json();
    assert!(nested[""]["users"]["properties"].get("root").is_some());
    assert!(nested["betterAuth"]["users"]["properties"]
        .get("child")
        .is_some());
    assert!(nested["betterAuth"]["sessions"].is_object());
    assert_eq!(nested.as_object().unwrap().keys().next().unwrap(), "");
    let cols = get(&emu, "/api/get_table_column_names").json();
    assert!(cols["byComponent"]["betterAuth"].is_array());
}

#[test]
fn b35_schema_unavailable_and_special_floats() {
    let emu = start();
    let dep = emu.deployment();
    insert(dep, "t", json!({"f": 1.5}));
    let s = get(&emu, "/api/json_schemas").json();
    assert_eq!(s["t"]["properties"]["f"], json!({"type": "number"}));
    dep.insert("", "t", special_doc()).unwrap();
    let s = get(&emu, "/api/json_schemas").json();
    assert_eq!(s["t"]["properties"]["nan"]["$description"], "float64");
    assert_eq!(
        s["t"]["properties"]["nan"]["anyOf"][1],
        json!({"type": "string", "$description": "-inf, inf, or NaN"})
    );
    dep.update_settings(|st| st.table_summaries_ready = false);
    get(&emu, "/api/json_schemas").assert_error(503, "TableSummariesUnavailable");
}

#[test]
fn b36_system_tables_hidden() {
    let emu = start();
    let dep = emu.deployment();
    let s = dep.head();
    insert(dep, "_scheduled_functions", json!({"x": 1.0}));
    insert(dep, "visible", json!({}));
    assert!(get(&emu, "/api/json_schemas")
        .json()
        .get("_scheduled_functions")
        .is_none());
    let v = snapshot_values(&emu, "");
    assert!(v.iter().all(|x| x["_table"] == "visible"));
    assert!(snapshot_values(&emu, "tableName=_scheduled_functions").is_empty());
    let (pages, _) = all_deltas(&emu, s, "");
    assert!(pages
        .iter()
        .flat_map(|p| p["values"].as_array().unwrap())
        .all(|x| x["_table"] == "visible"));
}

#[test]
fn b37_timestamps_are_19_digit_i64() {
    let emu = start();
    let dep = emu.deployment();
    let (ts, _) = insert(dep, "t", json!({}));
    assert_eq!(ts.to_string().len(), 19);
    assert!(ts > 1 << 53);
    let raw = get(&emu, "/api/list_snapshot?tableName=t").text();
    assert!(raw.contains(&format!(r#""_ts":{ts}"#)));
    assert!(raw.contains(&format!(r#""snapshot":{ts}"#)));
    let p = deltas(&emu, ts - 1, "");
    assert_eq!(p["values"][0]["_ts"].as_i64(), Some(ts));
}

#[test]
fn b38_retries_return_the_same_page() {
    let emu = start();
    let dep = emu.deployment();
    dep.update_settings(|s| s.snapshot_page_limit = 3);
    for i in 0..10 {
        insert(dep, "t", json!({"i": i as f64}));
    }
    let first = get(&emu, "/api/list_snapshot?tableName=t").json();
    let q = format!(
        "/api/list_snapshot?tableName=t&snapshot={}&cursor={}",
        first["snapshot"],
        enc(first["cursor"].as_str().unwrap())
    );
    let a = get(&emu, &q).text();
    insert(dep, "t", json!({"late": true}));
    assert_eq!(get(&emu, &q).text(), a);
    // Deltas are not frozen: a retry after a caught-up answer includes new commits.
    let s = dep.head();
    let p1 = deltas(&emu, s, "");
    assert_eq!(p1["values"], json!([]));
    insert(dep, "t", json!({}));
    assert_eq!(deltas(&emu, s, "")["values"].as_array().unwrap().len(), 1);
}

#[test]
fn b39_request_timeout_is_bare_408() {
    let emu = start();
    emu.deployment().update_settings(|s| {
        s.latency_ms = 300;
        s.request_timeout_ms = 100;
    });
    let r = get(&emu, "/api/test_streaming_export_connection");
    assert_eq!(r.status, 408);
    assert!(r.body.is_empty());
}

#[test]
fn b40_get_and_post_are_equivalent() {
    let emu = start();
    let dep = emu.deployment();
    let s = dep.head();
    insert(dep, "t", json!({"x": 1.0}));
    let g = get(&emu, "/api/list_snapshot?tableName=t").text();
    let p = post(&emu, "/api/list_snapshot", &json!({"tableName": "t"})).text();
    assert_eq!(g, p);
    let g = get(
        &emu,
        &format!("/api/document_deltas?cursor={s}&table_name=t"),
    )
    .text();
    let p = post(
        &emu,
        "/api/document_deltas",
        &json!({"cursor": s, "table_name": "t"}),
    )
    .text();
    assert_eq!(g, p);
    for path in [
        "/api/json_schemas",
        "/api/test_streaming_export_connection",
        "/api/get_table_column_names",
    ] {
        assert_eq!(post(&emu, path, &json!({})).status, 405);
    }
}

#[test]
fn snapshot_then_deltas_reproduces_live_state() {
    // The snapshot/deltas hand-off: a snapshot pinned at S, then the deltas after S, rebuild
    // exactly the live documents, through generated changes.
    let emu = start();
    let dep = emu.deployment();
    convex_emulator::generate(
        dep,
        &convex_emulator::GenerateSpec {
            tables: 3,
            docs: 500,
            seed: 9,
            ..Default::default()
        },
    )
    .unwrap();
    let pages = walk_snapshot(&emu, "");
    let s = pages[0]["snapshot"].as_i64().unwrap();
    let mut state: std::collections::BTreeMap<String, serde_json::Value> = pages
        .iter()
        .flat_map(|p| p["values"].as_array().unwrap().clone())
        .map(|v| (v["_id"].as_str().unwrap().to_owned(), v))
        .collect();
    convex_emulator::apply_changes(dep, 2000, 4).unwrap();
    let (pages, _) = all_deltas(&emu, s, "");
    for v in pages.iter().flat_map(|p| p["values"].as_array().unwrap()) {
        let id = v["_id"].as_str().unwrap().to_owned();
        if v["_deleted"] == true {
            assert!(state.remove(&id).is_some());
        } else {
            let mut v = v.clone();
            v.as_object_mut().unwrap().remove("_deleted");
            state.insert(id, v);
        }
    }
    let mut live = std::collections::BTreeMap::new();
    for t in dep.tables() {
        for v in dep.live_documents(&t.component, &t.table) {
            live.insert(v["_id"].as_str().unwrap().to_owned(), v);
        }
    }
    assert_eq!(state.len(), live.len());
    assert!(state == live);
    let _ = ids_of(&[]);
}
