//! "The documents as of timestamp T": what a list_snapshot walk at snapshot T would return,
//! available to tests through `Deployment::documents_at` and `GET /_emulator/documents?ts=T`,
//! so they can compare a read against the truth at its end position even when writes land
//! after it.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::*;
use serde_json::json;

/// Convex serves a snapshot read at T from each document's latest revision at or before T:
/// later patches, deletes and inserts are invisible, and a document deleted after T is still
/// there. `documents_at(T)` must equal a list_snapshot walk pinned at T, after more writes.
#[test]
fn documents_at_equals_a_snapshot_walk_at_t_despite_later_writes() {
    let emu = start();
    let dep = emu.deployment();
    let (_, a) = dep.insert("", "users", json!({"v": 1.0})).unwrap();
    let (_, b) = dep.insert("", "users", json!({"v": 2.0})).unwrap();
    let t = dep
        .transaction(|tx| tx.patch("", "users", &a, json!({"v": 11.0})))
        .unwrap();
    let at_t = dep.documents_at("", "users", t);
    assert_eq!(at_t, dep.live_documents("", "users"));
    assert_eq!(
        snapshot_values(&emu, &format!("tableName=users&snapshot={t}")),
        at_t
    );

    // Writes after T: a patch, a delete, an insert.
    dep.transaction(|tx| tx.patch("", "users", &a, json!({"v": 12.0})))
        .unwrap();
    dep.transaction(|tx| tx.delete("", "users", &b)).unwrap();
    dep.insert("", "users", json!({"v": 3.0})).unwrap();

    assert_eq!(dep.documents_at("", "users", t), at_t);
    let live = dep.live_documents("", "users");
    assert_ne!(live, at_t);
    assert_eq!(dep.documents_at("", "users", dep.head()), live);
    let doc_a = at_t.iter().find(|d| d["_id"] == a.as_str()).unwrap();
    assert_eq!(doc_a["v"], 11.0);
    assert_eq!(doc_a["_ts"], t);
    assert!(at_t.iter().any(|d| d["_id"] == b.as_str()));

    // Over HTTP: `ts` selects T, its absence means head, `format` still applies.
    let http = |q: &str| {
        let r = control(
            &emu,
            "GET",
            &format!("/_emulator/documents?table=users&{q}"),
            None,
        );
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["documents"].clone()
    };
    assert_eq!(http(&format!("ts={t}")), json!(at_t));
    assert_eq!(http(""), json!(live));
    assert_eq!(
        http(&format!("ts={t}&format=convex_encoded_json")),
        json!(dep.documents_at_in("", "users", t, convex_emulator::Format::Encoded))
    );
    assert_eq!(
        control(&emu, "GET", "/_emulator/documents?table=users&ts=x", None).status,
        400
    );
}

/// A table's name follows its tablet: before a table existed there are no documents; after
/// `npx convex import --replace` T before the swap still shows the old table's rows, and a
/// deleted table's documents stay readable at timestamps before its deletion.
#[test]
fn documents_at_follows_table_creation_import_and_deletion() {
    let emu = start();
    let dep = emu.deployment();
    let before = dep.head();
    let (t_old, _) = dep.insert("", "items", json!({"old": true})).unwrap();
    assert!(dep.documents_at("", "items", before).is_empty());
    let (rows_ts, swap_ts) = dep
        .import_table("", "items", vec![json!({"new": true})])
        .unwrap();
    let at = |ts: i64| dep.documents_at("", "items", ts);
    assert_eq!(at(t_old)[0]["old"], true);
    assert_eq!(
        at(rows_ts)[0]["old"],
        true,
        "the hidden import table is not the table yet"
    );
    assert_eq!(at(swap_ts)[0]["new"], true);
    assert_eq!(at(swap_ts).len(), 1);
    let del = dep.delete_table("", "items").unwrap();
    assert!(at(del).is_empty());
    assert_eq!(at(del - 1)[0]["new"], true);
}
