//! Shape inference for `/api/json_schemas`, modelled on Convex's: a table's schema is the union
//! of the shapes of its live documents, never `schema.ts`.
//!
//! Each document's shape is interned once at write time and the table keeps a count per
//! shape, so a schema request only unions the few distinct shapes instead of scanning data.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::{json, Map, Value as Json};

use crate::ids::mix;
use crate::value::{is_special_float, Format, Value};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Shape {
    /// No value at all (the element type of an always-empty array).
    Never,
    Null,
    Int64,
    Float64 {
        special: bool,
    },
    Boolean,
    String,
    /// A document id of the named table (only `_id` is inferred as an Id).
    Id(String),
    Bytes,
    Array(Box<Shape>),
    Object(BTreeMap<String, Field>),
    /// Members are kept sorted by kind with at most one member per kind.
    Union(Vec<Shape>),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Field {
    pub shape: Shape,
    pub optional: bool,
}

impl Shape {
    fn kind(&self) -> u8 {
        match self {
            Shape::Never => 0,
            Shape::Null => 1,
            Shape::Int64 => 2,
            Shape::Float64 { .. } => 3,
            Shape::Boolean => 4,
            Shape::String => 5,
            Shape::Id(_) => 6,
            Shape::Bytes => 7,
            Shape::Array(_) => 8,
            Shape::Object(_) => 9,
            Shape::Union(_) => 10,
        }
    }

    pub fn of_value(v: &Value) -> Shape {
        match v {
            Value::Null => Shape::Null,
            Value::Int64(_) => Shape::Int64,
            Value::Float64(f) => Shape::Float64 {
                special: is_special_float(*f),
            },
            Value::Boolean(_) => Shape::Boolean,
            Value::String(_) => Shape::String,
            Value::Bytes(_) => Shape::Bytes,
            Value::Array(items) => Shape::Array(Box::new(
                items
                    .iter()
                    .fold(Shape::Never, |acc, v| acc.union(Shape::of_value(v))),
            )),
            Value::Object(map) => Shape::Object(
                map.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            Field {
                                shape: Shape::of_value(v),
                                optional: false,
                            },
                        )
                    })
                    .collect(),
            ),
        }
    }

    /// The shape of a whole document including its system fields.
    pub fn of_document(table: &str, fields: &BTreeMap<String, Value>) -> Shape {
        let mut map: BTreeMap<String, Field> = fields
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    Field {
                        shape: Shape::of_value(v),
                        optional: false,
                    },
                )
            })
            .collect();
        map.insert(
            "_id".into(),
            Field {
                shape: Shape::Id(table.to_owned()),
                optional: false,
            },
        );
        map.insert(
            "_creationTime".into(),
            Field {
                shape: Shape::Float64 { special: false },
                optional: false,
            },
        );
        Shape::Object(map)
    }

    /// Least upper bound. Objects merge field-wise (a field missing on one side becomes
    /// optional), which is how Convex's reduced shapes present unions of objects.
    pub fn union(self, other: Shape) -> Shape {
        match (self, other) {
            (Shape::Never, x) | (x, Shape::Never) => x,
            (Shape::Union(a), b) => union_into(a, b),
            (a, Shape::Union(b)) => b.into_iter().fold(a, Shape::union),
            (Shape::Float64 { special: a }, Shape::Float64 { special: b }) => {
                Shape::Float64 { special: a || b }
            }
            (Shape::Array(a), Shape::Array(b)) => Shape::Array(Box::new(a.union(*b))),
            (Shape::Object(mut a), Shape::Object(b)) => {
                let mut merged = BTreeMap::new();
                for (k, fb) in b {
                    let field = match a.remove(&k) {
                        Some(fa) => Field {
                            shape: fa.shape.union(fb.shape),
                            optional: fa.optional || fb.optional,
                        },
                        None => Field {
                            shape: fb.shape,
                            optional: true,
                        },
                    };
                    merged.insert(k, field);
                }
                for (k, mut fa) in a {
                    fa.optional = true;
                    merged.insert(k, fa);
                }
                Shape::Object(merged)
            }
            (a, b) if a == b => a,
            (a, b) => union_into(vec![a], b),
        }
    }

    /// JSON Schema of a field value, per Convex's `json_schemas` builders.
    pub fn json_schema(&self, format: Format) -> Json {
        match self {
            Shape::Never => Json::Bool(false),
            Shape::Null => json!({"type": "null"}),
            Shape::Int64 => match format {
                Format::Clean => {
                    json!({"$description": "int64 represented as base10 string", "type": "string"})
                }
                Format::Encoded => json!({
                    "$description": "int64",
                    "type": "object",
                    "properties": {"$integer": {
                        "$description": "int64 -> little-endian -> base64", "type": "string"}}
                }),
                // Convex has no distinct schema builder for export_json; an integer is what
                // that format sends.
                Format::Export => json!({"$description": "int64", "type": "integer"}),
            },
            Shape::Float64 { special: false } => json!({"type": "number"}),
            Shape::Float64 { special: true } => match format {
                Format::Clean => json!({
                    "$description": "float64",
                    "anyOf": [{"type": "number"},
                              {"type": "string", "$description": "-inf, inf, or NaN"}]
                }),
                Format::Encoded | Format::Export => json!({
                    "$description": "float64",
                    "anyOf": [{"type": "number"},
                              {"type": "object", "$description": "-0, -inf, inf, or NaN",
                               "properties": {"$float": {
                                   "$description": "float64 -> little-endian -> base64",
                                   "type": "string"}}}]
                }),
            },
            Shape::Boolean => json!({"type": "boolean"}),
            Shape::String => json!({"type": "string"}),
            Shape::Id(t) => json!({"$description": format!("Id({t})"), "type": "string"}),
            Shape::Bytes => match format {
                Format::Clean => json!({"$description": "base64 bytes", "type": "string"}),
                Format::Encoded | Format::Export => json!({
                    "type": "object", "$description": "base64 bytes",
                    "properties": {"$bytes": {"type": "string"}}
                }),
            },
            Shape::Array(items) => json!({"type": "array", "items": items.json_schema(format)}),
            Shape::Object(fields) => object_schema(fields, format),
            Shape::Union(members) => json!({
                "anyOf": members.iter().map(|m| m.json_schema(format)).collect::<Vec<_>>()
            }),
        }
    }
}

fn union_into(mut members: Vec<Shape>, new: Shape) -> Shape {
    if let Shape::Union(more) = new {
        let mut acc = Shape::Union(members);
        for m in more {
            acc = acc.union(m);
        }
        return acc;
    }
    match members.iter().position(|m| m.kind() == new.kind()) {
        Some(i) => {
            let old = std::mem::replace(&mut members[i], Shape::Never);
            let merged = old.union(new);
            members[i] = merged;
        }
        None => {
            members.push(new);
            members.sort_by_key(Shape::kind);
        }
    }
    if members.len() == 1 {
        members.pop().unwrap_or(Shape::Never)
    } else {
        Shape::Union(members)
    }
}

fn object_schema(fields: &BTreeMap<String, Field>, format: Format) -> Json {
    let mut props = Map::new();
    let mut required = Vec::new();
    for (k, f) in fields {
        props.insert(k.clone(), f.shape.json_schema(format));
        if !f.optional {
            required.push(Json::String(k.clone()));
        }
    }
    json!({
        "type": "object",
        "properties": props,
        "additionalProperties": false,
        "required": required,
    })
}

/// The top-level schema of a table whose live documents have the given (already unioned)
/// shape; `Never` means an empty table.
pub fn table_schema(table: &str, shape: &Shape, format: Format, delta_schema: bool) -> Json {
    let empty;
    let shape = match shape {
        Shape::Object(_) => shape,
        // Empty tables (and, defensively, anything that is not an object) expose only the
        // system fields, both required, as Convex's `empty_table_schema` does.
        _ => {
            empty = Shape::of_document(table, &BTreeMap::new());
            &empty
        }
    };
    let mut schema = shape.json_schema(format);
    if let Json::Object(obj) = &mut schema {
        if delta_schema {
            if let Some(Json::Object(props)) = obj.get_mut("properties") {
                props.insert("_table".into(), json!({"type": "string"}));
                props.insert("_component".into(), json!({"type": "string"}));
                props.insert("_ts".into(), json!({"type": "integer"}));
                props.insert("_deleted".into(), json!({"type": "boolean"}));
            }
        }
        obj.insert(
            "$schema".into(),
            Json::String("http://json-schema.org/draft-07/schema#".into()),
        );
    }
    schema
}

fn hash_str(s: &str) -> u64 {
    // FNV-1a, then a final mix: field names are short, and this needs no allocation.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

fn combine(h: u64, x: u64) -> u64 {
    mix(h.rotate_left(5) ^ x)
}

/// A 64-bit fingerprint of a value's shape, computed without building the [`Shape`] tree
/// (which costs dozens of allocations per document during bulk loads). Equal shapes of
/// equal structure give equal fingerprints; arrays hash the *set* of their element
/// fingerprints, so element order and repetition do not matter.
pub fn fingerprint_value(v: &Value) -> u64 {
    match v {
        Value::Null => 1,
        Value::Int64(_) => 2,
        Value::Float64(f) => {
            if is_special_float(*f) {
                4
            } else {
                3
            }
        }
        Value::Boolean(_) => 5,
        Value::String(_) => 6,
        Value::Bytes(_) => 7,
        Value::Array(items) => {
            let mut fps: Vec<u64> = items.iter().map(fingerprint_value).collect();
            fps.sort_unstable();
            fps.dedup();
            fps.into_iter().fold(8, combine)
        }
        Value::Object(map) => map.iter().fold(9, |h, (k, v)| {
            combine(combine(h, hash_str(k)), fingerprint_value(v))
        }),
    }
}

/// Fingerprint of [`Shape::of_document`]`(table, fields)`.
pub fn fingerprint_document(table: &str, fields: &BTreeMap<String, Value>) -> u64 {
    fields
        .iter()
        .fold(combine(10, hash_str(table)), |h, (k, v)| {
            combine(combine(h, hash_str(k)), fingerprint_value(v))
        })
}

/// Interns document shapes so each revision stores a 4-byte id instead of a tree.
#[derive(Default)]
pub struct ShapeInterner {
    by_key: HashMap<u64, u32>,
    shapes: Vec<Arc<Shape>>,
}

impl ShapeInterner {
    /// The id of an already interned fingerprint.
    pub fn lookup(&self, key: u64) -> Option<u32> {
        self.by_key.get(&key).copied()
    }

    /// Interns `shape` under its fingerprint `key` (a 64-bit collision between different
    /// shapes is accepted as practically impossible).
    pub fn intern(&mut self, key: u64, shape: Shape) -> u32 {
        if let Some(id) = self.lookup(key) {
            return id;
        }
        let id = self.shapes.len() as u32;
        self.shapes.push(Arc::new(shape));
        self.by_key.insert(key, id);
        id
    }

    pub fn get(&self, id: u32) -> &Shape {
        &self.shapes[id as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(j: Json) -> BTreeMap<String, Value> {
        match Value::from_encoded_json(&j).unwrap() {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn optional_fields_and_unions() {
        let a = Shape::of_document("users", &doc(json!({"name": "a", "age": 3.0})));
        let b = Shape::of_document("users", &doc(json!({"name": "b", "age": "x"})));
        let c = Shape::of_document("users", &doc(json!({"name": "c"})));
        let s = a.union(b).union(c);
        let schema = table_schema("users", &s, Format::Clean, false);
        assert_eq!(schema["required"], json!(["_creationTime", "_id", "name"]));
        assert_eq!(
            schema["properties"]["age"],
            json!({"anyOf": [{"type": "number"}, {"type": "string"}]})
        );
        assert_eq!(schema["additionalProperties"], json!(false));
    }

    #[test]
    fn empty_table_schema_has_system_fields_only() {
        let schema = table_schema("t", &Shape::Never, Format::Clean, true);
        assert_eq!(schema["required"], json!(["_creationTime", "_id"]));
        assert_eq!(
            schema["properties"]["_id"],
            json!({"$description": "Id(t)", "type": "string"})
        );
        assert_eq!(schema["properties"]["_ts"], json!({"type": "integer"}));
    }
}
