//! Shape inference for `/api/json_schemas`, modelled on Convex's: a table's schema is the union
//! of the shapes of its live documents, within Convex's limits (64 fields per object, 16
//! members per union); only a table whose shape is not an object needs `schema.ts`.
//!
//! Each document's shape is interned once at write time and the table keeps a count per
//! shape, so a schema request only unions the few distinct shapes instead of scanning data.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::{json, Map, Value as Json};

use crate::ids::mix;
use crate::value::{is_special_float, Format, Value};

/// Convex's shape limits (`shape_inference` config): fields per object, `_id` and
/// `_creationTime` included, and members per union.
pub const MAX_OBJECT_FIELDS: usize = 64;
pub const MAX_UNION_MEMBERS: usize = 16;

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
    /// A string that decodes as a document id of this table number.
    Id(u32),
    Bytes,
    Array(Box<Shape>),
    Object(BTreeMap<String, Field>),
    /// An object Convex cannot describe field by field: a key that is not an identifier,
    /// more than 64 fields, or objects merged past the limits. Described as `{}`.
    Record,
    /// 2..=16 members in Convex's order; objects with different field sets stay separate
    /// members until the union has to contract.
    Union(Vec<Shape>),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Field {
    pub shape: Shape,
    pub optional: bool,
}

/// Convex identifiers (what an object key must be for a field-by-field shape): ASCII letter
/// or `_` first, then letters, digits and `_`, at most 64 characters.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && s.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The table number of a string that is a valid document id.
fn id_table(s: &str) -> Option<u32> {
    crate::ids::decode_document_id(s).map(|(n, _)| n)
}

impl Shape {
    /// Member order of Convex's reduced shapes: Id < Null < Int64 < Float64 < Boolean <
    /// String < Bytes < Object < Array < Record.
    fn kind(&self) -> u8 {
        match self {
            Shape::Never => 0,
            Shape::Id(_) => 1,
            Shape::Null => 2,
            Shape::Int64 => 3,
            Shape::Float64 { .. } => 4,
            Shape::Boolean => 5,
            Shape::String => 6,
            Shape::Bytes => 7,
            Shape::Object(_) => 8,
            Shape::Array(_) => 9,
            Shape::Record => 10,
            Shape::Union(_) => 11,
        }
    }

    /// Whether `other` belongs in the same union member as `self`.
    fn same_member(&self, other: &Shape) -> bool {
        match (self, other) {
            (Shape::Id(a), Shape::Id(b)) => a == b,
            (Shape::Object(a), Shape::Object(b)) => a.keys().eq(b.keys()),
            (a, b) => a.kind() == b.kind(),
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
            Value::String(s) => id_table(s).map_or(Shape::String, Shape::Id),
            Value::Bytes(_) => Shape::Bytes,
            Value::Array(items) => Shape::Array(Box::new(
                items
                    .iter()
                    .fold(Shape::Never, |acc, v| acc.union(Shape::of_value(v))),
            )),
            Value::Object(map) => object_of(map.iter(), 0),
        }
    }

    /// The shape of a whole document of table number `table`, system fields included.
    pub fn of_document(table: u32, fields: &BTreeMap<String, Value>) -> Shape {
        match object_of(fields.iter(), 2) {
            Shape::Object(mut map) => {
                let required = |shape| Field {
                    shape,
                    optional: false,
                };
                map.insert("_id".into(), required(Shape::Id(table)));
                map.insert(
                    "_creationTime".into(),
                    required(Shape::Float64 { special: false }),
                );
                Shape::Object(map)
            }
            other => other,
        }
    }

    /// The least upper bound, as Convex's union builder computes it.
    pub fn union(self, other: Shape) -> Shape {
        self.union_tracked(other, &mut false)
    }

    /// [`Shape::union`], setting `widened` when the result lost precision that removing
    /// documents cannot give back: a union contracted past 16 members, or objects absorbed
    /// into a record. Convex's counted shapes stay that wide until the table empties.
    pub fn union_tracked(self, other: Shape, widened: &mut bool) -> Shape {
        let mut members = self.into_members();
        for m in other.into_members() {
            add_member(&mut members, m, widened);
        }
        if members.len() > MAX_UNION_MEMBERS {
            *widened = true;
            contract(&mut members, widened);
        }
        match members.len() {
            0 => Shape::Never,
            1 => members.pop().unwrap_or(Shape::Never),
            _ => Shape::Union(members),
        }
    }

    fn into_members(self) -> Vec<Shape> {
        match self {
            Shape::Never => Vec::new(),
            Shape::Union(m) => m,
            x => vec![x],
        }
    }

    /// Whether the shape contains a record anywhere.
    pub fn has_record(&self) -> bool {
        match self {
            Shape::Record => true,
            Shape::Array(e) => e.has_record(),
            Shape::Object(f) => f.values().any(|f| f.shape.has_record()),
            Shape::Union(m) => m.iter().any(Shape::has_record),
            _ => false,
        }
    }

    /// JSON Schema of a field value, per Convex's `json_schemas` builders; `names` maps a
    /// table number to its table's name (an id of a table that no longer exists is a string).
    pub fn json_schema(&self, format: Format, names: &dyn Fn(u32) -> Option<String>) -> Json {
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
            Shape::Float64 { special: true } => special_float_schema(format),
            Shape::Boolean => json!({"type": "boolean"}),
            Shape::String => json!({"type": "string"}),
            Shape::Id(n) => match names(*n) {
                Some(t) => json!({"$description": format!("Id({t})"), "type": "string"}),
                None => json!({"type": "string"}),
            },
            Shape::Bytes => match format {
                Format::Clean => json!({"$description": "base64 bytes", "type": "string"}),
                Format::Encoded | Format::Export => json!({
                    "type": "object", "$description": "base64 bytes",
                    "properties": {"$bytes": {"type": "string"}}
                }),
            },
            Shape::Array(items) => {
                json!({"type": "array", "items": items.json_schema(format, names)})
            }
            Shape::Object(fields) => object_schema(fields, format, names),
            Shape::Record => json!({}),
            Shape::Union(members) => {
                let reduced = reduce(members, names);
                if reduced.len() == 1 {
                    return reduced[0].json_schema(format, names);
                }
                json!({"anyOf": reduced.iter().map(|m| m.json_schema(format, names))
                    .collect::<Vec<_>>()})
            }
        }
    }
}

pub(crate) fn special_float_schema(format: Format) -> Json {
    match format {
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
    }
}

/// An object's shape: field by field if every key is an identifier and the object (with
/// `extra` system fields) stays within 64 fields, otherwise a record.
fn object_of<'a>(
    fields: impl ExactSizeIterator<Item = (&'a String, &'a Value)>,
    extra: usize,
) -> Shape {
    if fields.len() + extra > MAX_OBJECT_FIELDS {
        return Shape::Record;
    }
    let mut map = BTreeMap::new();
    for (k, v) in fields {
        if !is_identifier(k) {
            return Shape::Record;
        }
        let field = Field {
            shape: Shape::of_value(v),
            optional: false,
        };
        map.insert(k.clone(), field);
    }
    Shape::Object(map)
}

/// Field-wise merge: a field missing on one side becomes optional.
fn merge_fields(
    mut a: BTreeMap<String, Field>,
    b: BTreeMap<String, Field>,
    widened: &mut bool,
) -> BTreeMap<String, Field> {
    let mut merged = BTreeMap::new();
    for (k, fb) in b {
        let field = match a.remove(&k) {
            Some(fa) => Field {
                shape: fa.shape.union_tracked(fb.shape, widened),
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
    merged
}

fn merge_objects(
    a: BTreeMap<String, Field>,
    b: BTreeMap<String, Field>,
    widened: &mut bool,
) -> Shape {
    let merged = merge_fields(a, b, widened);
    if merged.len() > MAX_OBJECT_FIELDS {
        *widened = true;
        Shape::Record
    } else {
        Shape::Object(merged)
    }
}

/// Adds one (non-union) shape to a union's members, merging it into the member it belongs to.
fn add_member(members: &mut Vec<Shape>, new: Shape, widened: &mut bool) {
    match new {
        Shape::Never => return,
        Shape::Union(more) => {
            for m in more {
                add_member(members, m, widened);
            }
            return;
        }
        // A record overlaps every object: they merge into the record.
        Shape::Record => {
            let before = members.len();
            members.retain(|m| !matches!(m, Shape::Object(_)));
            *widened |= members.len() < before;
        }
        Shape::Object(_) if members.iter().any(|m| matches!(m, Shape::Record)) => {
            *widened = true;
            return;
        }
        // Every id is a string.
        Shape::String => members.retain(|m| !matches!(m, Shape::Id(_))),
        Shape::Id(_) if members.iter().any(|m| matches!(m, Shape::String)) => return,
        _ => {}
    }
    match members.iter().position(|m| m.same_member(&new)) {
        Some(i) => {
            let old = std::mem::replace(&mut members[i], Shape::Never);
            members[i] = merge_member(old, new, widened);
        }
        None => {
            let at = members
                .iter()
                .position(|m| order_key(m) > order_key(&new))
                .unwrap_or(members.len());
            members.insert(at, new);
        }
    }
}

fn order_key(s: &Shape) -> (u8, u32, Vec<&str>) {
    match s {
        Shape::Id(n) => (s.kind(), *n, Vec::new()),
        Shape::Object(f) => (s.kind(), 0, f.keys().map(String::as_str).collect()),
        _ => (s.kind(), 0, Vec::new()),
    }
}

/// Merges two shapes of the same member.
fn merge_member(a: Shape, b: Shape, widened: &mut bool) -> Shape {
    match (a, b) {
        (Shape::Float64 { special: x }, Shape::Float64 { special: y }) => {
            Shape::Float64 { special: x || y }
        }
        (Shape::Array(x), Shape::Array(y)) => Shape::Array(Box::new(x.union_tracked(*y, widened))),
        (Shape::Object(x), Shape::Object(y)) => merge_objects(x, y, widened),
        (a, _) => a,
    }
}

/// Brings a union back to at most 16 members: all objects merge into one (a record past
/// 64 fields), then ids of different tables merge into string.
fn contract(members: &mut Vec<Shape>, widened: &mut bool) {
    let objects: Vec<Shape> = members
        .iter()
        .filter(|m| matches!(m, Shape::Object(_)))
        .cloned()
        .collect();
    if objects.len() > 1 {
        members.retain(|m| !matches!(m, Shape::Object(_)));
        let merged = objects
            .into_iter()
            .reduce(|a, b| match (a, b) {
                (Shape::Object(x), Shape::Object(y)) => merge_objects(x, y, widened),
                _ => Shape::Record,
            })
            .unwrap_or(Shape::Never);
        add_member(members, merged, widened);
    }
    if members.len() > MAX_UNION_MEMBERS {
        members.retain(|m| !matches!(m, Shape::Id(_)));
        add_member(members, Shape::String, widened);
    }
}

/// Convex's reduced presentation of a union: object members merge field-wise (a field
/// missing from one becomes optional), ids of tables that no longer exist become strings.
fn reduce(members: &[Shape], names: &dyn Fn(u32) -> Option<String>) -> Vec<Shape> {
    let mut out: Vec<Shape> = Vec::new();
    let mut object: Option<BTreeMap<String, Field>> = None;
    for m in members {
        let m = match m {
            Shape::Id(n) if names(*n).is_none() => Shape::String,
            Shape::Object(f) => {
                object = Some(match object.take() {
                    None => f.clone(),
                    // Presentation only: the merged object keeps every field.
                    Some(prev) => merge_fields(prev, f.clone(), &mut false),
                });
                continue;
            }
            _ => m.clone(),
        };
        if !out.contains(&m) {
            out.push(m);
        }
    }
    if let Some(f) = object {
        out.push(Shape::Object(f));
    }
    out.sort_by(|a, b| order_key(a).cmp(&order_key(b)));
    out
}

fn object_schema(
    fields: &BTreeMap<String, Field>,
    format: Format,
    names: &dyn Fn(u32) -> Option<String>,
) -> Json {
    let mut props = Map::new();
    let mut required = Vec::new();
    for (k, f) in fields {
        props.insert(k.clone(), f.shape.json_schema(format, names));
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

/// The top-level schema of a table (number `table`) whose live documents have the given
/// (already unioned) shape; `Never` means an empty table, which exposes the system fields
/// only. `None` when the shape is not an object: Convex then describes the table from its
/// `schema.ts`.
pub fn table_schema(
    table: u32,
    shape: &Shape,
    format: Format,
    delta_schema: bool,
    names: &dyn Fn(u32) -> Option<String>,
) -> Option<Json> {
    let object = match shape {
        Shape::Never => Shape::of_document(table, &BTreeMap::new()),
        Shape::Object(_) => shape.clone(),
        Shape::Union(members) => match reduce(members, names).as_slice() {
            [only @ Shape::Object(_)] => only.clone(),
            _ => return None,
        },
        _ => return None,
    };
    let mut schema = object.json_schema(format, names);
    finish_table_schema(&mut schema, delta_schema);
    Some(schema)
}

/// Adds the delta metadata fields (with `deltaSchema`) and the `$schema` tag to a table's
/// top-level object schema.
pub fn finish_table_schema(schema: &mut Json, delta_schema: bool) {
    if let Json::Object(obj) = schema {
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
}

/// Top-level field names of a table's shape, as get_table_column_names answers them:
/// only the system fields when the shape is not an object.
pub fn column_names(shape: &Shape) -> Vec<String> {
    let names = |_| Some(String::new());
    match shape {
        Shape::Object(f) => f.keys().cloned().collect(),
        Shape::Union(members) => match reduce(members, &names).as_slice() {
            [Shape::Object(f)] => f.keys().cloned().collect(),
            _ => vec!["_creationTime".into(), "_id".into()],
        },
        _ => vec!["_creationTime".into(), "_id".into()],
    }
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
        Value::String(s) => match id_table(s) {
            Some(n) => combine(12, u64::from(n)),
            None => 6,
        },
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
pub fn fingerprint_document(table: u32, fields: &BTreeMap<String, Value>) -> u64 {
    fields
        .iter()
        .fold(combine(10, u64::from(table)), |h, (k, v)| {
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

    fn names(n: u32) -> Option<String> {
        (n == 10_001).then(|| "users".to_owned())
    }

    #[test]
    fn optional_fields_and_unions() {
        let a = Shape::of_document(10_001, &doc(json!({"name": "a", "age": 3.0})));
        let b = Shape::of_document(10_001, &doc(json!({"name": "b", "age": "x"})));
        let c = Shape::of_document(10_001, &doc(json!({"name": "c"})));
        let s = a.union(b).union(c);
        let schema = table_schema(10_001, &s, Format::Clean, false, &names).unwrap();
        assert_eq!(schema["required"], json!(["_creationTime", "_id", "name"]));
        assert_eq!(
            schema["properties"]["age"],
            json!({"anyOf": [{"type": "number"}, {"type": "string"}]})
        );
        assert_eq!(schema["additionalProperties"], json!(false));
    }

    #[test]
    fn empty_table_schema_has_system_fields_only() {
        let schema = table_schema(10_001, &Shape::Never, Format::Clean, true, &names).unwrap();
        assert_eq!(schema["required"], json!(["_creationTime", "_id"]));
        assert_eq!(
            schema["properties"]["_id"],
            json!({"$description": "Id(users)", "type": "string"})
        );
        assert_eq!(schema["properties"]["_ts"], json!({"type": "integer"}));
    }

    #[test]
    fn union_members_contract_past_sixteen() {
        // 16 distinct field sets stay 16 members; the 17th forces the merge.
        let objects = |n: usize| {
            (0..n).fold(Shape::Never, |acc, i| {
                acc.union(Shape::of_value(&Value::Object(doc(
                    json!({format!("f{i}"): 1.0}),
                ))))
            })
        };
        let mut widened = false;
        let s16 = objects(16);
        assert!(matches!(&s16, Shape::Union(m) if m.len() == 16));
        let s17 = s16.union_tracked(objects(17), &mut widened);
        assert!(widened);
        assert!(
            matches!(&s17, Shape::Object(f) if f.len() == 17 && f.values().all(|f| f.optional))
        );
    }

    #[test]
    fn identifiers() {
        for ok in ["a", "_x", "camelCase", "snake_case_9", &"a".repeat(64)] {
            assert!(is_identifier(ok), "{ok}");
        }
        for bad in [
            "",
            "9a",
            "Content-Type",
            "a@b.c",
            "a b",
            &"a".repeat(65),
            "é",
        ] {
            assert!(!is_identifier(bad), "{bad}");
        }
    }
}
