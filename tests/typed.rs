//! Column types end to end with the real binary: one table holding every Convex value type,
//! discovered and read on both APIs, with typed columns (the default) and with the Python
//! connector's legacy ones; and a field whose shape widens after discovery.

// Test helpers outside #[test] fns may unwrap and panic too (clippy.toml covers only those fns).
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;

use common::Harness;
use convex_emulator::Value as Convex;
use serde_json::{json, Value};

fn object(fields: Vec<(&str, Convex)>) -> Convex {
    Convex::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// A deployment whose table `every` holds each Convex value type, and `other` a document
/// the Ids point at. Returns the `_id`s of `every`'s two documents.
fn every_type(h: &Harness) -> (String, String) {
    let dep = h.dep();
    let (_, target) = dep.insert("", "other", json!({"name": "x"})).unwrap();
    let first = object(vec![
        ("f", Convex::Float64(1.5)),
        ("special", Convex::Float64(f64::NAN)),
        ("big", Convex::Int64(9_007_199_254_740_993)),
        ("maybe_n", Convex::Null),
        ("maybe_s", Convex::String("s".into())),
        ("maybe_b", Convex::Null),
        ("bytes", Convex::Bytes(vec![0, 16, 131])),
        ("ref", Convex::String(target.clone())),
        (
            "obj",
            object(vec![
                ("a", Convex::Int64(1)),
                ("b", Convex::String("t".into())),
            ]),
        ),
        (
            "arr",
            Convex::Array(vec![Convex::Int64(2), Convex::Float64(2.5)]),
        ),
        ("opt", Convex::Boolean(true)),
        ("mixed", Convex::Int64(7)),
    ]);
    let second = object(vec![
        ("f", Convex::Float64(0.5)),
        ("special", Convex::Float64(-0.0)),
        ("big", Convex::Int64(i64::MIN)),
        ("maybe_n", Convex::Float64(4.5)),
        ("maybe_s", Convex::Null),
        ("maybe_b", Convex::Boolean(false)),
        ("bytes", Convex::Bytes(vec![])),
        ("ref", Convex::String(target)),
        (
            "obj",
            object(vec![
                ("a", Convex::Int64(-1)),
                ("b", Convex::String("u".into())),
            ]),
        ),
        ("arr", Convex::Array(vec![])),
        ("mixed", Convex::String("seven".into())),
    ]);
    let (_, a) = dep.insert("", "every", first).unwrap();
    let (_, b) = dep.insert("", "every", second).unwrap();
    (a, b)
}

fn stream<'a>(streams: &'a [Value], name: &str) -> &'a Value {
    streams.iter().find(|s| s["name"] == name).unwrap()
}

/// The `every` records of a run, by `_id`, with each record's nulled fields.
fn records(run: &common::Run) -> BTreeMap<String, (Value, Vec<String>)> {
    run.messages
        .iter()
        .filter(|m| m["type"] == "RECORD" && m["record"]["stream"] == "every")
        .map(|m| {
            let data = m["record"]["data"].clone();
            let nulled = m["record"]["meta"]["changes"]
                .as_array()
                .map(|c| {
                    c.iter()
                        .map(|c| {
                            assert_eq!(c["change"], "NULLED");
                            assert_eq!(c["reason"], "SOURCE_SERIALIZATION_ERROR");
                            c["field"].as_str().unwrap().to_owned()
                        })
                        .collect()
                })
                .unwrap_or_default();
            (data["_id"].as_str().unwrap().to_owned(), (data, nulled))
        })
        .collect()
}

/// The record line of `id`, as printed (numbers as Convex wrote them).
fn line<'a>(run: &'a common::Run, id: &str) -> &'a str {
    run.stdout
        .lines()
        .find(|l| l.contains(r#""type":"RECORD""#) && l.contains(&format!(r#""_id":"{id}""#)))
        .unwrap()
}

#[test]
fn every_convex_type_is_declared_and_carried_as_what_it_is() {
    for data_sync in [false, true] {
        for legacy in [false, true] {
            let mut h = Harness::with_tables(0, 0, false);
            h.use_data_sync_if(data_sync);
            if legacy {
                h.use_legacy_columns();
            }
            let (a, b) = every_type(&h);
            let streams = h.discover();
            let schema = &stream(&streams, "every")["json_schema"];
            let p = &schema["properties"];
            let catalog = h.catalog_all("incremental");
            let run = h.read(&catalog, Some("[]"));
            run.assert_well_formed(h.emu.access_key());
            assert_eq!(run.code, 0, "{}", run.stdout);
            let recs = records(&run);
            let ((ra, na), (rb, nb)) = (&recs[&a], &recs[&b]);
            let what = format!("data_sync={data_sync} legacy={legacy}");
            // Every record is valid against the schema its stream declares.
            let validator = jsonschema::draft7::new(schema).unwrap();
            for r in [ra, rb] {
                let errors: Vec<String> = validator.iter_errors(r).map(|e| e.to_string()).collect();
                assert!(errors.is_empty(), "{what}: {errors:?} in {r}");
            }
            if legacy {
                assert_eq!(
                    p["big"],
                    json!({"$description": "int64 represented as base10 string", "type": "string"}),
                    "{what}"
                );
                assert!(p["special"]["anyOf"].is_array(), "{what}");
                assert!(p["maybe_n"]["anyOf"].is_array(), "{what}");
                assert_eq!(p["_ab_cdc_updated_at"], json!({"type": "string"}), "{what}");
                assert_eq!(ra["big"], "9007199254740993", "{what}");
                assert_eq!(rb["big"], "-9223372036854775808", "{what}");
                assert_eq!(ra["special"], "NaN", "{what}");
                assert_eq!(ra["bytes"], "ABCD", "{what}");
                assert!(na.is_empty() && nb.is_empty(), "{what}");
                continue;
            }
            // Typed: the form Airbyte destinations and PyAirbyte map to SQL types.
            assert_eq!(p["f"], json!({"type": "number"}), "{what}");
            assert_eq!(p["special"], json!({"type": ["null", "number"]}), "{what}");
            assert_eq!(p["big"], json!({"type": "integer"}), "{what}");
            assert_eq!(p["maybe_n"], json!({"type": ["null", "number"]}), "{what}");
            assert_eq!(p["maybe_s"], json!({"type": ["null", "string"]}), "{what}");
            assert_eq!(p["maybe_b"], json!({"type": ["null", "boolean"]}), "{what}");
            assert_eq!(
                p["bytes"],
                json!({"$description": "base64 bytes", "type": "string"}),
                "{what}"
            );
            assert_eq!(
                p["ref"],
                json!({"$description": "Id(other)", "type": "string"}),
                "{what}"
            );
            assert_eq!(
                p["obj"],
                json!({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}}, "additionalProperties": true}),
                "{what}"
            );
            assert_eq!(
                p["arr"],
                json!({"type": "array", "items": {"type": "number"}}),
                "{what}"
            );
            assert_eq!(p["opt"], json!({"type": "boolean"}), "{what}");
            assert_eq!(
                p["mixed"],
                json!({"anyOf": [{"type": "integer"}, {"type": "string"}]}),
                "{what}"
            );
            assert_eq!(p["_creationTime"], json!({"type": "number"}), "{what}");
            assert_eq!(p["_ts"], json!({"type": "integer"}), "{what}");
            assert_eq!(
                p["_ab_cdc_updated_at"],
                json!({"type": "string", "format": "date-time", "airbyte_type": "timestamp_with_timezone"}),
                "{what}"
            );
            assert_eq!(schema["required"], json!(["_id"]), "{what}");
            // Values: int64 exact as JSON integers (never through f64), floats as Convex
            // wrote them, bytes as base64, NaN as null and named.
            let la = line(&run, &a);
            assert!(la.contains(r#""big":9007199254740993"#), "{what}: {la}");
            assert!(
                line(&run, &b).contains(r#""big":-9223372036854775808"#),
                "{what}"
            );
            assert!(line(&run, &b).contains(r#""special":-0.0"#), "{what}");
            assert!(la.contains(r#""arr":[2,2.5]"#), "{what}: {la}");
            assert_eq!(ra["f"], 1.5);
            assert_eq!(ra["special"], Value::Null, "{what}");
            assert_eq!(rb["special"], 0.0, "{what}");
            assert_eq!(ra["bytes"], "ABCD", "{what}");
            assert_eq!(rb["bytes"], "", "{what}");
            assert_eq!(ra["obj"], json!({"a": 1, "b": "t"}), "{what}");
            assert_eq!(ra["mixed"], 7, "{what}");
            assert_eq!(rb["mixed"], "seven", "{what}");
            assert_eq!(ra["maybe_n"], Value::Null);
            assert_eq!(rb["maybe_n"], 4.5);
            assert!(rb.get("opt").is_none());
            assert_eq!(na, &["special"], "{what}");
            assert!(nb.is_empty(), "{what}");
            let at = ra["_ab_cdc_updated_at"].as_str().unwrap();
            assert!(at.len() == 27 && at.ends_with('Z'), "{what}: {at}");
            // The NaN is told once, as an INFO, not as a warning.
            let infos: Vec<&str> = run
                .messages
                .iter()
                .filter(|m| m["log"]["level"] == "INFO")
                .filter_map(|m| m["log"]["message"].as_str())
                .filter(|m| m.contains("NaN or an infinity"))
                .collect();
            assert_eq!(infos.len(), 1, "{what}: {infos:?}");
        }
    }
}

/// A field whose type changes after the connection's schema was discovered: its values of the
/// new type are sent as null and named, the read succeeds, and one WARN says what to do.
#[test]
fn a_field_that_widened_after_discovery_is_nulled_named_and_told_once() {
    for data_sync in [false, true] {
        let mut h = Harness::with_tables(0, 0, false);
        h.use_data_sync_if(data_sync);
        every_type(&h);
        let (catalog, first) = h.read_all();
        let dep = h.dep();
        let mut ids = Vec::new();
        for i in 0..3 {
            let doc = object(vec![
                ("big", Convex::String(format!("no longer a number {i}"))),
                ("f", Convex::Float64(2.0)),
            ]);
            ids.push(dep.insert("", "every", doc).unwrap().1);
        }
        let second = h.read(&catalog, Some(&first.saved_state()));
        second.assert_well_formed(h.emu.access_key());
        assert_eq!(second.code, 0, "{}", second.stdout);
        let recs = records(&second);
        for id in &ids {
            let (r, nulled) = &recs[id];
            assert_eq!(r["big"], Value::Null);
            assert_eq!(r["f"], 2.0);
            assert_eq!(nulled, &["big"]);
        }
        let warns: Vec<&str> = second
            .messages
            .iter()
            .filter(|m| m["log"]["level"] == "WARN")
            .filter_map(|m| m["log"]["message"].as_str())
            .collect();
        assert_eq!(warns.len(), 1, "{warns:?}");
        assert!(
            warns[0].contains(
                "field `big` holds a string where the configured catalog declares integer"
            ) && warns[0].contains("Refresh the source schema"),
            "{}",
            warns[0]
        );
        // A fresh discovery describes the new shape: nothing is nulled against it.
        let catalog = h.catalog_all("full_refresh");
        let third = h.read(&catalog, None);
        assert_eq!(third.code, 0);
        assert!(!third.stdout.contains(r#""field":"big""#));
    }
}
