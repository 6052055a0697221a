//! Argument and cursor checks that Convex makes: repeated scalar query arguments, repeated
//! table selectors, exact decoding of list_snapshot cursor ids, and the order of the cursor
//! and snapshot-age checks.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

/// Convex's query-string extractor rejects a repeated scalar argument ("duplicate field")
/// with 400 BadQueryArgs, before authentication.
#[test]
fn repeated_scalar_query_arguments_are_bad_query_args() {
    let emu = start();
    let dep = emu.deployment();
    dep.insert("", "t", json!({})).unwrap();
    let head = dep.head();
    for path in [
        format!("/api/list_snapshot?snapshot={head}&snapshot={head}"),
        "/api/list_snapshot?format=json&format=json".to_owned(),
        "/api/list_snapshot?cursor=a&cursor=b".to_owned(),
        format!("/api/document_deltas?cursor={head}&cursor={head}"),
        format!("/api/document_deltas?cursor={head}&format=json&format=json"),
        "/api/json_schemas?deltaSchema=true&deltaSchema=true".to_owned(),
        "/api/json_schemas?byComponent=true&byComponent=false".to_owned(),
        "/api/json_schemas?format=json&format=json".to_owned(),
    ] {
        let r = get(&emu, &path);
        r.assert_error(400, "BadQueryArgs");
        assert!(r.json()["message"]
            .as_str()
            .unwrap()
            .contains("duplicate field"));
        // Query parsing precedes authentication.
        request(emu.addr(), "GET", &path, &[], None)
            .unwrap()
            .assert_error(400, "BadQueryArgs");
    }
    // Once each is fine.
    assert_eq!(
        get(
            &emu,
            &format!("/api/list_snapshot?snapshot={head}&format=json")
        )
        .status,
        200
    );
}

/// Convex's table selection is an untagged enum: a repeated `tableName` (or `tableName`
/// plus its alias `table_name`, or a repeated `component`) does not parse as one table, and
/// the request silently selects every table.
#[test]
fn repeated_table_selectors_select_every_table() {
    let emu = start();
    let dep = emu.deployment();
    dep.insert("", "a", json!({})).unwrap();
    dep.insert("", "b", json!({})).unwrap();
    dep.insert("c1", "x", json!({})).unwrap();
    let tables = |q: &str| {
        let mut t: Vec<String> = snapshot_values(&emu, q)
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
    let all = vec!["/a".to_owned(), "/b".to_owned(), "c1/x".to_owned()];
    assert_eq!(tables("tableName=a"), ["/a"]);
    assert_eq!(tables("tableName=a&tableName=a"), all);
    assert_eq!(tables("tableName=a&table_name=b"), all);
    assert_eq!(tables("component=c1&component=c1"), all);
    // One second before head: before the three inserts, within retention.
    let since = dep.head() - 1_000_000_000;
    let (pages, _) = all_deltas(&emu, since, "tableName=a&tableName=a");
    let n: usize = pages
        .iter()
        .map(|p| p["values"].as_array().unwrap().len())
        .sum();
    assert_eq!(n, 3);
}

/// A list_snapshot cursor id must decode exactly as a Convex v6 id (length, canonical
/// base32, non-zero table number, Fletcher-16 checksum footer) or the request gets
/// 400 InvalidListSnapshotCursor.
#[test]
fn cursor_ids_must_carry_a_valid_checksum() {
    let emu = start();
    let dep = emu.deployment();
    dep.update_settings(|s| s.snapshot_page_limit = 1);
    for _ in 0..3 {
        dep.insert("", "t", json!({})).unwrap();
    }
    let page = get(&emu, "/api/list_snapshot?tableName=t").json();
    let cursor: serde_json::Value = serde_json::from_str(page["cursor"].as_str().unwrap()).unwrap();
    let id = cursor["id"].as_str().unwrap().to_owned();
    let with_id = |id: &str| {
        let c = json!({"tablet": cursor["tablet"], "id": id}).to_string();
        get(
            &emu,
            &format!(
                "/api/list_snapshot?tableName=t&snapshot={}&cursor={}",
                page["snapshot"],
                enc(&c)
            ),
        )
    };
    assert_eq!(with_id(&id).status, 200);
    let last = id.chars().last().unwrap();
    let flipped = format!(
        "{}{}",
        &id[..id.len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    with_id(&flipped).assert_error(400, "InvalidListSnapshotCursor");
    with_id(&id.to_uppercase()).assert_error(400, "InvalidListSnapshotCursor");
    with_id(&id[..id.len() - 1]).assert_error(400, "InvalidListSnapshotCursor");
    with_id(&format!("{id}0")).assert_error(400, "InvalidListSnapshotCursor");
}

/// Convex parses the cursor while reading the arguments, before the database checks the
/// snapshot's age: a bad cursor with a too-old snapshot is InvalidListSnapshotCursor.
#[test]
fn cursor_is_parsed_before_the_snapshot_age_check() {
    let emu = start();
    let dep = emu.deployment();
    dep.insert("", "t", json!({})).unwrap();
    let old = dep.head();
    dep.advance_clock(Duration::from_secs(6 * 24 * 3600));
    get(
        &emu,
        &format!("/api/list_snapshot?snapshot={old}&cursor=nope"),
    )
    .assert_error(400, "InvalidListSnapshotCursor");
    get(&emu, &format!("/api/list_snapshot?snapshot={old}")).assert_error(400, "SnapshotTooOld");
}
