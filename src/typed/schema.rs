//! Convex's inferred JSON Schemas (as `json_schemas?format=json` describes them) → the typed
//! form Airbyte destinations and PyAirbyte map to SQL types.
//!
//! PyAirbyte (`airbyte/types.py`) types a property by its `type` (or `airbyte_type`): a
//! string, or a list with one member besides `"null"`. `anyOf`, `{}` and `"null"` alone become
//! text, with "Could not determine airbyte type" printed. Airbyte's typed destinations follow
//! the same JSON Schema types. So each Convex type is declared as:
//!
//! | Convex | declared |
//! |---|---|
//! | int64 (`"int64 represented as base10 string"`) | `{"type": "integer"}` |
//! | float64 | `{"type": "number"}` |
//! | float64 that held NaN/±Infinity | `{"type": ["null", "number"]}` (those arrive as null) |
//! | `X \| null` | `X` with `"type": ["null", X]` |
//! | Id, string, bytes (base64) | `{"type": "string"}` (Convex's `$description` kept) |
//! | object | `"object"`, properties typed alike, open, no nested `required` |
//! | array | `"array"`, items typed alike |
//! | int64 \| float64 | `{"type": "number"}` (both are JSON numbers) |
//! | a union of different JSON types | open: `anyOf` of its typed members |

use serde_json::{json, Map, Value};

/// The description Convex gives int64 in the `json` format.
const INT64_DESCRIPTION: &str = "int64 represented as base10 string";
/// The description of the string member of a float64 that held NaN or ±Infinity.
const SPECIAL_FLOAT_DESCRIPTION: &str = "-inf, inf, or NaN";

/// The typed form of one property's (or a whole table's) schema.
pub fn typed(schema: &Value) -> Value {
    let Value::Object(o) = schema else {
        // `false` (never: an empty array's items) and `true` stay as they are.
        return schema.clone();
    };
    if let Some(Value::Array(members)) = o.get("anyOf") {
        return union(members.iter().map(typed).collect());
    }
    let mut out = Map::new();
    for (k, v) in o {
        match k.as_str() {
            "properties" => {
                let props = v
                    .as_object()
                    .map(|p| p.iter().map(|(n, s)| (n.clone(), typed(s))).collect())
                    .unwrap_or_default();
                out.insert(k.clone(), Value::Object(props));
            }
            "items" => {
                out.insert(k.clone(), typed(v));
            }
            // Nested objects are open and require nothing: Convex infers them from today's
            // documents, and tomorrow's may lack a field or have one more.
            "additionalProperties" => {
                out.insert(k.clone(), Value::Bool(true));
            }
            "required" => {}
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    match (
        type_name(&out),
        out.get("$description").and_then(Value::as_str),
    ) {
        (Some("string"), Some(INT64_DESCRIPTION)) => json!({"type": "integer"}),
        // NaN and ±Infinity arrive as null (JSON cannot carry them as numbers).
        (Some("string"), Some(SPECIAL_FLOAT_DESCRIPTION)) => json!({"type": "null"}),
        _ => Value::Object(out),
    }
}

fn type_name(o: &Map<String, Value>) -> Option<&str> {
    o.get("type").and_then(Value::as_str)
}

/// A union of typed members: one JSON type (maybe with null) is declared as that type;
/// anything else stays open.
fn union(members: Vec<Value>) -> Value {
    let is_null = |m: &Value| m.get("type").and_then(Value::as_str) == Some("null");
    let mut nullable = members.iter().any(is_null);
    let mut rest: Vec<Value> = Vec::new();
    for mut m in members.into_iter().filter(|m| !is_null(m)) {
        // A member already typed `["null", X]` (a nested union): its null joins this one's.
        if let Some(Value::Array(types)) = m.get("type") {
            if let [Value::String(n), x] = types.as_slice() {
                if n == "null" {
                    nullable = true;
                    let x = x.clone();
                    m["type"] = x;
                }
            }
        }
        if !rest.contains(&m) {
            rest.push(m);
        }
    }
    let names: Option<Vec<&str>> = rest
        .iter()
        .map(|m| m.as_object().and_then(type_name))
        .collect();
    let merged = match names.as_deref() {
        None => None,
        Some([]) => return json!({"type": "null"}),
        Some([_]) => Some(rest[0].clone()),
        Some(names) if names.iter().all(|n| *n == names[0]) => Some(same_type(&rest, names[0])),
        Some(names) if names.iter().all(|n| matches!(*n, "integer" | "number")) => {
            Some(json!({"type": "number"}))
        }
        Some(_) => None,
    };
    match merged {
        Some(Value::Object(mut o)) => {
            if nullable {
                let t = o.get("type").cloned().unwrap_or(Value::Null);
                o.insert("type".into(), json!(["null", t]));
            }
            Value::Object(o)
        }
        _ => {
            if nullable {
                rest.push(json!({"type": "null"}));
            }
            json!({ "anyOf": rest })
        }
    }
}

/// Several members of one JSON type (two Id tables, a string and an Id, two object shapes).
fn same_type(members: &[Value], name: &str) -> Value {
    match name {
        "object" => {
            // The properties of every shape, the first shape's schema winning a name.
            let mut props = Map::new();
            for m in members {
                if let Some(p) = m.get("properties").and_then(Value::as_object) {
                    for (k, v) in p {
                        props.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
            }
            json!({"type": "object", "properties": props, "additionalProperties": true})
        }
        "array" => {
            let items: Vec<Value> = members
                .iter()
                .map(|m| m.get("items").cloned().unwrap_or(json!({})))
                .collect();
            json!({"type": "array", "items": union(items)})
        }
        _ => json!({ "type": name }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Convex's `json_schemas?format=json` says for each leaf type and union.
    fn convex(name: &str) -> Value {
        match name {
            "id" => json!({"$description": "Id(users)", "type": "string"}),
            "int64" => json!({"$description": INT64_DESCRIPTION, "type": "string"}),
            "float" => json!({"type": "number"}),
            "special" => json!({"$description": "float64", "anyOf": [
                {"type": "number"}, {"type": "string", "$description": SPECIAL_FLOAT_DESCRIPTION}]}),
            "bytes" => json!({"$description": "base64 bytes", "type": "string"}),
            "null" => json!({"type": "null"}),
            other => json!({ "type": other }),
        }
    }

    fn either(a: &str, b: &str) -> Value {
        json!({"anyOf": [convex(a), convex(b)]})
    }

    #[test]
    fn leaves_get_the_type_destinations_map() {
        assert_eq!(typed(&convex("int64")), json!({"type": "integer"}));
        assert_eq!(typed(&convex("float")), json!({"type": "number"}));
        assert_eq!(
            typed(&convex("special")),
            json!({"type": ["null", "number"]})
        );
        assert_eq!(typed(&convex("bytes")), convex("bytes"));
        assert_eq!(typed(&convex("id")), convex("id"));
        assert_eq!(typed(&convex("boolean")), json!({"type": "boolean"}));
        assert_eq!(typed(&json!({})), json!({}));
        assert_eq!(typed(&json!(false)), json!(false));
    }

    #[test]
    fn a_type_or_null_is_that_type_nullable() {
        // Convex lists null first (its shape order); either order is the same union.
        for (a, b, declared) in [
            ("null", "float", "number"),
            ("int64", "null", "integer"),
            ("null", "special", "number"),
            ("null", "string", "string"),
            ("null", "boolean", "boolean"),
        ] {
            assert_eq!(
                typed(&either(a, b)),
                json!({"type": ["null", declared]}),
                "{a} | {b}"
            );
        }
        assert_eq!(
            typed(&either("null", "id")),
            json!({"$description": "Id(users)", "type": ["null", "string"]})
        );
        assert_eq!(typed(&convex("null")), json!({"type": "null"}));
    }

    #[test]
    fn unions_of_one_json_type_are_that_type() {
        assert_eq!(typed(&either("int64", "float")), json!({"type": "number"}));
        assert_eq!(typed(&either("id", "string")), json!({"type": "string"}));
        let objects = json!({"anyOf": [
            {"type": "object", "properties": {"a": convex("int64")}, "additionalProperties": false, "required": ["a"]},
            {"type": "object", "properties": {"b": convex("string")}, "additionalProperties": false, "required": ["b"]},
            convex("null")]});
        assert_eq!(
            typed(&objects),
            json!({"type": ["null", "object"], "properties": {"a": {"type": "integer"}, "b": {"type": "string"}},
                   "additionalProperties": true})
        );
        let arrays = json!({"anyOf": [
            {"type": "array", "items": convex("int64")}, {"type": "array", "items": convex("null")}]});
        assert_eq!(
            typed(&arrays),
            json!({"type": "array", "items": {"type": ["null", "integer"]}})
        );
    }

    #[test]
    fn a_real_mix_stays_open() {
        assert_eq!(
            typed(&json!({"anyOf": [convex("null"), convex("int64"), convex("string")]})),
            json!({"anyOf": [{"type": "integer"}, {"type": "string"}, {"type": "null"}]})
        );
        assert_eq!(
            typed(&json!({"anyOf": [convex("float"), {}]})),
            json!({"anyOf": [{"type": "number"}, {}]})
        );
    }

    #[test]
    fn tables_and_nested_objects_are_typed_throughout() {
        let table = json!({"type": "object",
            "properties": {
                "_id": convex("id"), "_creationTime": convex("float"),
                "n": convex("int64"),
                "addr": {"type": "object", "properties": {"zip": convex("int64"), "geo": {"type": "array", "items": convex("float")}},
                         "additionalProperties": false, "required": ["geo", "zip"]}},
            "additionalProperties": false, "required": ["_creationTime", "_id", "addr", "n"],
            "$schema": "http://json-schema.org/draft-07/schema#"});
        assert_eq!(
            typed(&table),
            json!({"type": "object",
                "properties": {
                    "_id": convex("id"), "_creationTime": {"type": "number"},
                    "n": {"type": "integer"},
                    "addr": {"type": "object", "properties": {"zip": {"type": "integer"}, "geo": {"type": "array", "items": {"type": "number"}}},
                             "additionalProperties": true}},
                "additionalProperties": true,
                "$schema": "http://json-schema.org/draft-07/schema#"})
        );
    }
}
