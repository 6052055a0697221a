//! Fault rules that play a broken backend rather than a broken network: `selection_ignored`
//! (rows of tables the request did not select), `cursor` (an answer's cursor replaced, by a
//! fixed value or by the request's own), and rules scoped to the requests that select one
//! table (`table`). Installed through the control API, over HTTP.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::*;
use convex_emulator::EmulatorServer;
use serde_json::{json, Value};

const SNAPSHOT: &str = "/api/list_snapshot";
const DELTAS: &str = "/api/document_deltas";
const SYNC: &str = "/api/v1/data/sync";

/// A selection (the grammar both APIs share) of the root tables `tables`, every column.
fn only(tables: &[&str]) -> Value {
    let mut root = json!({"_other": "excluded"});
    for t in tables {
        root[*t] = json!({"_other": "included"});
    }
    json!({"_other": "excluded", "": root})
}

/// Installs a fault rule through the control API.
fn add_rule(emu: &EmulatorServer, rule: Value) {
    let r = control(emu, "POST", "/_emulator/faults", Some(&rule));
    assert_eq!(r.status, 200, "{}", r.text());
}

/// A successful POST's answer.
fn answer(emu: &EmulatorServer, path: &str, body: &Value) -> Value {
    let r = post(emu, path, body);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// The sorted, distinct tables of `values`, each named by its field `key`.
fn tables(values: &[Value], key: &str) -> Vec<String> {
    let mut names: Vec<String> = values
        .iter()
        .map(|v| v[key].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The values of a whole list_snapshot walk of `selection`.
fn walk(emu: &EmulatorServer, selection: &Value) -> Vec<Value> {
    let mut body = json!({"selection": selection});
    let mut values = Vec::new();
    loop {
        let p = answer(emu, SNAPSHOT, &body);
        values.extend(p["values"].as_array().unwrap().iter().cloned());
        if p["hasMore"] == false {
            return values;
        }
        body["snapshot"] = p["snapshot"].clone();
        body["cursor"] = p["cursor"].clone();
    }
}

/// The tables of a whole list_snapshot walk, of a document_deltas page from `before`, and of a
/// data sync until it is up to date, each of `selection`.
fn tables_served(emu: &EmulatorServer, before: i64, selection: &Value) -> [Vec<String>; 3] {
    let deltas = answer(
        emu,
        DELTAS,
        &json!({"cursor": before, "selection": selection}),
    );
    let mut body = json!({"selection": selection});
    let mut synced = Vec::new();
    loop {
        let p = answer(emu, SYNC, &body);
        synced.extend(p["values"].as_array().unwrap().iter().cloned());
        if p["status"]["type"] == "upToDate" {
            break;
        }
        body["cursor"] = p["pagination"]["nextCursor"].clone();
    }
    [
        tables(&walk(emu, selection), "_table"),
        tables(deltas["values"].as_array().unwrap(), "_table"),
        tables(&synced, "table"),
    ]
}

/// Tables `a` and `b` with `docs` documents each; returns the head before them.
fn two_tables(emu: &EmulatorServer, docs: usize) -> i64 {
    let dep = emu.deployment();
    let before = dep.head();
    for i in 0..docs {
        for t in ["a", "b"] {
            dep.insert("", t, json!({"x": i as f64})).unwrap();
        }
    }
    before
}

#[test]
fn selection_ignored_serves_every_table_whatever_was_selected() {
    let emu = start();
    let before = two_tables(&emu, 2);
    let a = only(&["a"]);
    let just_a = || vec!["a".to_owned()];
    let both = || vec!["a".to_owned(), "b".to_owned()];
    // Convex honours a selection, and so did the backend of issue #302: it ignored the
    // `tableName` filter (`ignore_table_filter`), never a `selection`.
    emu.deployment()
        .update_settings(|s| s.ignore_table_filter = true);
    assert_eq!(
        tables_served(&emu, before, &a),
        [just_a(), just_a(), just_a()]
    );
    emu.deployment()
        .update_settings(|s| s.ignore_table_filter = false);

    add_rule(&emu, json!({"kind": "selection_ignored"}));
    assert_eq!(tables_served(&emu, before, &a), [both(), both(), both()]);
    // Every column too.
    let id_only = json!({"_other": "excluded", "": {"_other": "excluded",
        "a": {"_other": "excluded", "_id": "included"}}});
    assert!(walk(&emu, &id_only).iter().all(|v| v.get("x").is_some()));
    // The `tableName` filter of a GET as well.
    let values = snapshot_values(&emu, "tableName=a");
    assert_eq!(tables(&values, "_table"), both());

    // Rules are counted as any other: one that is used up leaves the selection alone.
    control(&emu, "DELETE", "/_emulator/faults", None);
    add_rule(
        &emu,
        json!({"endpoint": "document_deltas", "kind": "selection_ignored",
        "after": 1, "times": 1}),
    );
    let asked = json!({"cursor": before, "selection": a});
    let served: Vec<Vec<String>> = (0..3)
        .map(|_| {
            tables(
                answer(&emu, DELTAS, &asked)["values"].as_array().unwrap(),
                "_table",
            )
        })
        .collect();
    assert_eq!(served, [just_a(), both(), just_a()]);
}

#[test]
fn a_cursor_rule_answers_its_cursor_instead_of_the_real_one() {
    let emu = start();
    let before = two_tables(&emu, 2);
    add_rule(
        &emu,
        json!({"endpoint": "document_deltas", "kind": "cursor", "cursor": -7}),
    );
    let p = deltas(&emu, before, "tableName=a");
    assert_eq!(
        p["values"].as_array().unwrap().len(),
        2,
        "the page itself is served"
    );
    assert_eq!(p["cursor"], -7);
    assert_eq!(p["hasMore"], false);
    let p = answer(
        &emu,
        DELTAS,
        &json!({"cursor": before, "selection": only(&["b"])}),
    );
    assert_eq!(
        (p["values"].as_array().unwrap().len(), &p["cursor"]),
        (2, &json!(-7))
    );

    add_rule(
        &emu,
        json!({"endpoint": "list_snapshot", "kind": "cursor", "cursor": "stuck"}),
    );
    // A walk of two tables: its first page names the next table, or would.
    let p = get(&emu, SNAPSHOT).json();
    assert_eq!(
        (&p["cursor"], &p["hasMore"]),
        (&json!("stuck"), &json!(true))
    );
    assert_eq!(p["values"].as_array().unwrap().len(), 2);
    // The last page of a walk has no cursor to replace.
    let p = get(&emu, &format!("{SNAPSHOT}?tableName=a")).json();
    assert_eq!((&p["cursor"], &p["hasMore"]), (&Value::Null, &json!(false)));
}

#[test]
fn a_repeat_cursor_rule_answers_the_cursor_it_was_asked_from() {
    let emu = start();
    let dep = emu.deployment();
    dep.update_settings(|s| {
        s.snapshot_page_limit = 1;
        s.deltas_page_limit = 1;
    });
    let before = dep.head();
    for i in 0..3 {
        dep.insert("", "a", json!({"x": i as f64})).unwrap();
    }
    add_rule(
        &emu,
        json!({"endpoint": "*", "kind": "cursor", "repeat_cursor": true}),
    );
    // A first page, asked from no cursor, keeps its own.
    let first = answer(&emu, SNAPSHOT, &json!({"selection": only(&["a"])}));
    let cursor = first["cursor"].clone();
    assert!(cursor.is_string());
    // The next page is served, but answers the same cursor: a client that follows it gets
    // that page again and again.
    let from = json!({"selection": only(&["a"]), "snapshot": first["snapshot"], "cursor": cursor});
    let second = answer(&emu, SNAPSHOT, &from);
    assert_eq!(second["cursor"], cursor);
    assert_ne!(second["values"], first["values"]);
    assert_eq!(answer(&emu, SNAPSHOT, &from), second);
    // document_deltas: each page answers the cursor it was asked from.
    for _ in 0..2 {
        let p = deltas(&emu, before, "tableName=a");
        assert_eq!(p["values"].as_array().unwrap().len(), 1);
        assert_eq!(
            (&p["cursor"], &p["hasMore"]),
            (&json!(before), &json!(true))
        );
    }
}

#[test]
fn a_rule_scoped_to_a_table_hits_only_the_requests_that_select_it() {
    let emu = start();
    let before = two_tables(&emu, 1);
    let dep = emu.deployment();
    dep.insert("comp", "a", json!({})).unwrap();
    add_rule(
        &emu,
        json!({"kind": "status", "status": 500, "code": "InternalServerError",
        "message": "table b cannot be read", "table": "b"}),
    );
    add_rule(
        &emu,
        json!({"kind": "status", "status": 502, "code": "BadGateway",
        "message": "comp/a cannot be read", "table": "a", "component": "comp"}),
    );
    let status = |path: &str, body: Option<Value>| match body {
        None => get(&emu, path).status,
        Some(b) => post(&emu, path, &b).status,
    };
    let deltas = |query: &str| format!("{DELTAS}?cursor={before}&{query}");
    let cases: [(&str, String, Option<Value>, u16); 12] = [
        ("a's walk", format!("{SNAPSHOT}?tableName=a"), None, 200),
        ("b's walk", format!("{SNAPSHOT}?tableName=b"), None, 500),
        ("every table", SNAPSHOT.into(), None, 500),
        (
            "a, in a body",
            SNAPSHOT.into(),
            Some(json!({"selection": only(&["a"])})),
            200,
        ),
        (
            "a and b",
            SNAPSHOT.into(),
            Some(json!({"selection": only(&["a", "b"])})),
            500,
        ),
        (
            "no table (a head probe)",
            SNAPSHOT.into(),
            Some(json!({"selection": only(&[])})),
            200,
        ),
        ("a's changes", deltas("tableName=a"), None, 200),
        ("b's changes", deltas("tableName=b"), None, 500),
        (
            "a's sync",
            SYNC.into(),
            Some(json!({"selection": only(&["a"])})),
            200,
        ),
        (
            "b's sync",
            SYNC.into(),
            Some(json!({"selection": only(&["b"])})),
            500,
        ),
        (
            "comp's a",
            format!("{SNAPSHOT}?tableName=a&component=comp"),
            None,
            502,
        ),
        ("no selection at all", "/api/json_schemas".into(), None, 200),
    ];
    for (what, path, body, expected) in cases {
        assert_eq!(status(&path, body), expected, "{what}");
    }
    // The rules round-trip with their table.
    let rules = control(&emu, "GET", "/_emulator/faults", None).json();
    assert_eq!(rules[0]["table"], "b");
    assert_eq!(rules[1]["component"], "comp");
}

#[test]
fn rules_that_could_never_fire_are_refused() {
    let emu = start();
    for rule in [
        json!({"endpoint": "json_schemas", "kind": "selection_ignored"}),
        json!({"endpoint": "data_sync", "kind": "cursor", "repeat_cursor": true}),
        json!({"endpoint": "list_snapshot", "kind": "cursor"}),
        json!({"endpoint": "list_snapshot", "kind": "cursor", "cursor": 1, "repeat_cursor": true}),
        json!({"endpoint": "*", "kind": "status", "cursor": 1}),
        json!({"endpoint": "json_schemas", "kind": "status", "table": "a"}),
        json!({"endpoint": "*", "kind": "status", "component": "comp"}),
    ] {
        let r = control(&emu, "POST", "/_emulator/faults", Some(&rule));
        assert_eq!(r.status, 400, "{rule}: {}", r.text());
    }
    assert_eq!(
        control(&emu, "GET", "/_emulator/faults", None).json(),
        json!([])
    );
}
