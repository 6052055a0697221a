//! json_schemas and get_table_column_names with Convex's shape-inference limits: at most 64
//! fields per object (`_id` and `_creationTime` included) and 16 members per union; records
//! for keys that are not identifiers; `Id(<table>)` for reference fields; union members in
//! Convex's order; the schema.ts fallback and its errors; sticky widening.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::*;
use convex_emulator::{Deployment, EmulatorServer};
use serde_json::{json, Map, Value};

fn schemas(emu: &EmulatorServer) -> common::Resp {
    get(emu, "/api/json_schemas?format=json")
}

fn ok_schemas(emu: &EmulatorServer) -> Value {
    let r = schemas(emu);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn columns(emu: &EmulatorServer, table: &str) -> Value {
    let r = get(emu, "/api/get_table_column_names");
    assert_eq!(r.status, 200, "{}", r.text());
    let by = r.json()["byComponent"][""].clone();
    by.as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == table)
        .map(|t| t["columns"].clone())
        .unwrap()
}

fn wide_doc(prefix: &str, n: usize) -> Value {
    let fields: Map<String, Value> = (0..n)
        .map(|i| (format!("{prefix}{i}"), json!(1.0)))
        .collect();
    Value::Object(fields)
}

fn insert(dep: &Deployment, table: &str, doc: Value) -> String {
    dep.insert("", table, doc).unwrap().1
}

/// An object shape holds at most 64 fields, the two system fields included: 62 user fields
/// are described field by field, 63 make the document a record, and a top-level record
/// without a schema.ts fails the whole json_schemas call (every table) with
/// 400 NoSchemaForExport. get_table_column_names then lists only the system fields.
#[test]
fn sixty_three_user_fields_make_a_record_and_fail_json_schemas() {
    let emu = start();
    let dep = emu.deployment();
    insert(dep, "fine", json!({"a": 1.0}));
    insert(dep, "wide", wide_doc("f", 62));
    let s = ok_schemas(&emu);
    assert_eq!(s["wide"]["properties"].as_object().unwrap().len(), 64);
    assert_eq!(columns(&emu, "wide").as_array().unwrap().len(), 64);

    let id = insert(dep, "wide", wide_doc("g", 63));
    schemas(&emu).assert_error(400, "NoSchemaForExport");
    assert_eq!(columns(&emu, "wide"), json!(["_creationTime", "_id"]));
    assert_eq!(columns(&emu, "fine"), json!(["_creationTime", "_id", "a"]));

    // Sticky: deleting the wide document does not narrow the shape back...
    dep.transaction(|tx| tx.delete("", "wide", &id)).unwrap();
    schemas(&emu).assert_error(400, "NoSchemaForExport");
    assert!(dep
        .json_schemas(convex_emulator::Format::Clean, false, false)
        .unwrap_err()
        .0
        .starts_with("NoSchemaForExport: "));
    // ...only emptying the table does.
    dep.clear_table("", "wide").unwrap();
    assert_eq!(
        ok_schemas(&emu)["wide"]["required"],
        json!(["_creationTime", "_id"])
    );
    insert(dep, "wide", json!({"x": 1.0}));
    assert_eq!(columns(&emu, "wide"), json!(["_creationTime", "_id", "x"]));
}

/// A key that is not an identifier (`Content-Type`, an e-mail address, a key starting with a
/// digit) makes its object a record: nested it is described as `{}`, in an array as
/// `items: {}`, and at the top level it needs a schema.ts.
#[test]
fn non_identifier_keys_make_records() {
    let emu = start();
    let dep = emu.deployment();
    insert(
        dep,
        "t",
        json!({"headers": {"Content-Type": "x"}, "list": [{"a@b.c": 1.0}], "ok": {"k": 1.0}}),
    );
    let p = ok_schemas(&emu)["t"]["properties"].clone();
    assert_eq!(p["headers"], json!({}));
    assert_eq!(p["list"], json!({"type": "array", "items": {}}));
    assert_eq!(p["ok"]["properties"]["k"], json!({"type": "number"}));

    insert(dep, "top", json!({"9lives": true}));
    schemas(&emu).assert_error(400, "NoSchemaForExport");
    assert_eq!(columns(&emu, "top"), json!(["_creationTime", "_id"]));
}

/// Strings that decode as ids of an existing table are described
/// `{"$description":"Id(<table>)","type":"string"}`; once the table is gone they are strings.
/// Union members come in Convex's order: Id < Null < Int64 < Float64 < Boolean < String <
/// Bytes < Object < Array (an id and a plain string merge into string, see `author`).
#[test]
fn reference_fields_and_union_member_order() {
    let emu = start();
    let dep = emu.deployment();
    let user = insert(dep, "users", json!({"name": "ada"}));
    insert(dep, "posts", json!({"author": user, "v": [1.0]}));
    insert(
        dep,
        "posts",
        json!({"author": "not an id", "v": {"a": 1.0}}),
    );
    insert(
        dep,
        "posts",
        json!({"author": user, "v": {"$bytes": "AA=="}}),
    );
    insert(dep, "posts", json!({"author": user, "v": true}));
    insert(dep, "posts", json!({"author": user, "v": 2.5}));
    insert(
        dep,
        "posts",
        json!({"author": user, "v": {"$integer": "AQAAAAAAAAA="}}),
    );
    insert(dep, "posts", json!({"author": user, "v": null}));
    insert(dep, "posts", json!({"author": user, "v": user}));
    let s = ok_schemas(&emu);
    let v = &s["posts"]["properties"]["v"]["anyOf"];
    let kinds: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m.get("$description")
                .or_else(|| m.get("type"))
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "Id(users)",
            "null",
            "int64 represented as base10 string",
            "number",
            "boolean",
            "base64 bytes",
            "object",
            "array"
        ]
    );
    // Id and string: every id is a string, so the union is just string.
    assert_eq!(
        s["posts"]["properties"]["author"],
        json!({"type": "string"})
    );

    insert(dep, "refs", json!({"u": user}));
    assert_eq!(
        ok_schemas(&emu)["refs"]["properties"]["u"],
        json!({"$description": "Id(users)", "type": "string"})
    );
    assert_eq!(
        ok_schemas(&emu)["refs"]["properties"]["_id"],
        json!({"$description": "Id(refs)", "type": "string"})
    );
    dep.delete_table("", "users").unwrap();
    assert_eq!(
        ok_schemas(&emu)["refs"]["properties"]["u"],
        json!({"type": "string"})
    );
}

/// A union holds at most 16 members: sixteen documents with distinct field sets stay
/// distinct; a seventeenth contracts them into one object. When the merged object exceeds
/// 64 fields it becomes a record, so more than 16 field sets that together exceed 62 user
/// fields fail json_schemas, and stay failing after the documents are deleted.
#[test]
fn seventeen_field_sets_past_62_fields_fail_and_stay_failed() {
    let emu = start();
    let dep = emu.deployment();
    // 17 field sets of 2 fields each: 34 fields, fine after contraction.
    for i in 0..17 {
        insert(
            dep,
            "narrow",
            json!({format!("a{i}"): 1.0, format!("b{i}"): 1.0}),
        );
    }
    let p = ok_schemas(&emu)["narrow"].clone();
    assert_eq!(p["properties"].as_object().unwrap().len(), 36);
    assert_eq!(p["required"], json!(["_creationTime", "_id"]));

    // 16 field sets of 4 fields (64 user fields) are still 16 members: described.
    let mut ids = Vec::new();
    for i in 0..16 {
        let doc: Map<String, Value> = (0..4).map(|j| (format!("f{i}_{j}"), json!(1.0))).collect();
        ids.push(insert(dep, "many", Value::Object(doc)));
    }
    let s = ok_schemas(&emu);
    assert_eq!(s["many"]["properties"].as_object().unwrap().len(), 66);
    // The seventeenth set forces the contraction into 68 user fields: a record.
    ids.push(insert(dep, "many", json!({"last": 1.0})));
    schemas(&emu).assert_error(400, "NoSchemaForExport");
    for id in &ids[1..] {
        dep.transaction(|tx| tx.delete("", "many", id)).unwrap();
    }
    schemas(&emu).assert_error(400, "NoSchemaForExport");
    dep.delete_table("", "many").unwrap();
    ok_schemas(&emu);
}

/// A table whose shape is not an object is described from the active schema.ts (set here
/// through the control API). A table missing from it gives 400 NoTableDefinitionForExport,
/// a document type that is a union of objects 400 UnsupportedSchemaForExport. Schema-derived
/// schemas keep Convex's quirks: `v.number()` gets the special-float `anyOf`, and a
/// `v.record` puts its value schema under `additionalProperties.type`.
#[test]
fn schema_ts_fallback_and_its_errors() {
    let emu = start();
    let dep = emu.deployment();
    insert(dep, "events", json!({"Content-Type": "text/html"}));
    insert(dep, "plain", json!({"n": 1.0}));
    schemas(&emu).assert_error(400, "NoSchemaForExport");

    let set = |tables: Value| {
        let r = control(
            &emu,
            "POST",
            "/_emulator/schema",
            Some(&json!({"component": "", "tables": tables})),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    };
    set(json!({"plain": {"type": "object", "value": {}}}));
    schemas(&emu).assert_error(400, "NoTableDefinitionForExport");

    set(json!({"events": {"type": "union", "value": [
        {"type": "object", "value": {}}, {"type": "object", "value": {}}]}}));
    schemas(&emu).assert_error(400, "UnsupportedSchemaForExport");

    set(json!({"events": {"type": "object", "value": {
        "headers": {"fieldType": {"type": "record", "keys": {"type": "string"},
                    "values": {"fieldType": {"type": "string"}, "optional": false}},
                    "optional": false},
        "score": {"fieldType": {"type": "number"}, "optional": true},
        "user": {"fieldType": {"type": "id", "tableName": "users"}, "optional": false}
    }}}));
    let s = ok_schemas(&emu);
    let e = &s["events"];
    assert_eq!(
        e["required"],
        json!(["_creationTime", "_id", "headers", "user"])
    );
    assert_eq!(
        e["properties"]["headers"],
        json!({"type": "object", "additionalProperties": {"type": {"type": "string"}}})
    );
    assert_eq!(e["properties"]["score"]["anyOf"][1]["type"], "string");
    assert_eq!(
        e["properties"]["user"],
        json!({"$description": "Id(users)", "type": "string"})
    );
    // Tables with an object shape still come from inference, not from schema.ts.
    assert_eq!(s["plain"]["properties"]["n"], json!({"type": "number"}));

    // The Rust API sets the same; invalid validators are refused.
    assert!(dep
        .set_schema("", Some(json!({"t": {"type": "nope"}})))
        .is_err());
    dep.set_schema("", None).unwrap();
    schemas(&emu).assert_error(400, "NoSchemaForExport");
    assert_eq!(
        control(&emu, "GET", "/_emulator/schema", None).json(),
        json!({})
    );
}
