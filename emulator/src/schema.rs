//! The active `schema.ts` of each component, which json_schemas falls back to for a table
//! whose inferred shape is not an object (Convex cannot describe it field by field).
//!
//! Tables are given as Convex's validator JSON (what `v.object({...})` serializes to):
//! `{"type":"object","value":{"name":{"fieldType":{"type":"string"},"optional":false}}}`,
//! with `string`, `boolean`, `null`, `number`, `bigint`, `bytes`, `any`,
//! `{"type":"id","tableName":..}`, `{"type":"literal","value":..}`,
//! `{"type":"array","value":V}`, `{"type":"record","keys":V,"values":{"fieldType":V}}` and
//! `{"type":"union","value":[V,..]}`.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value as Json};

use crate::api_error::ApiError;
use crate::shape::{finish_table_schema, special_float_schema, Shape};
use crate::value::Format;

/// A component's schema: table name → document validator.
pub type ComponentSchema = BTreeMap<String, Json>;

/// Checks a schema's validators before it becomes active.
pub fn validate(tables: &ComponentSchema) -> Result<(), String> {
    for (name, v) in tables {
        check(v).map_err(|e| format!("table {name:?}: {e}"))?;
    }
    Ok(())
}

fn field_type(f: &Json) -> Result<&Json, String> {
    f.get("fieldType")
        .ok_or_else(|| format!("field without `fieldType`: {f}"))
}

fn check(v: &Json) -> Result<(), String> {
    let ty = v
        .get("type")
        .and_then(Json::as_str)
        .ok_or_else(|| format!("validator without a `type`: {v}"))?;
    match ty {
        "string" | "boolean" | "null" | "number" | "bigint" | "int64" | "float64" | "bytes"
        | "any" => Ok(()),
        "id" => v
            .get("tableName")
            .and_then(Json::as_str)
            .map(drop)
            .ok_or_else(|| "`id` without `tableName`".to_owned()),
        "literal" => v
            .get("value")
            .map(drop)
            .ok_or_else(|| "`literal` without `value`".to_owned()),
        "array" => check(v.get("value").ok_or("`array` without `value`")?),
        "record" => {
            check(v.get("keys").ok_or("`record` without `keys`")?)?;
            check(field_type(
                v.get("values").ok_or("`record` without `values`")?,
            )?)
        }
        "union" => v
            .get("value")
            .and_then(Json::as_array)
            .ok_or_else(|| "`union` without a `value` array".to_owned())?
            .iter()
            .try_for_each(check),
        "object" => v
            .get("value")
            .and_then(Json::as_object)
            .ok_or_else(|| "`object` without a `value` object".to_owned())?
            .values()
            .try_for_each(|f| check(field_type(f)?)),
        other => Err(format!("unknown validator type {other:?}")),
    }
}

/// The json_schemas entry of `table` from the component's schema, with Convex's errors.
pub fn table_schema_from(
    schema: Option<&ComponentSchema>,
    component: &str,
    table: &str,
    format: Format,
    delta_schema: bool,
) -> Result<Json, ApiError> {
    let Some(schema) = schema else {
        return Err(ApiError::new(
            400,
            "NoSchemaForExport",
            format!(
                "Table {table:?}{} has documents that are not objects with at most 64 \
                 identifier fields, so its shape cannot be exported; add a schema.ts \
                 describing it.",
                in_component(component)
            ),
        ));
    };
    let Some(doc) = schema.get(table) else {
        return Err(ApiError::new(
            400,
            "NoTableDefinitionForExport",
            format!(
                "Table {table:?}{} has no definition in schema.ts, and its shape cannot be \
                 exported without one.",
                in_component(component)
            ),
        ));
    };
    let Some(fields) = (doc.get("type") == Some(&json!("object")))
        .then(|| doc.get("value").and_then(Json::as_object))
        .flatten()
    else {
        return Err(ApiError::new(
            400,
            "UnsupportedSchemaForExport",
            format!(
                "The schema.ts definition of table {table:?}{} is not an object, which \
                 export does not support.",
                in_component(component)
            ),
        ));
    };
    // Sorted like the inferred schemas: system fields among the others.
    let mut props: BTreeMap<String, (Json, bool)> = fields
        .iter()
        .map(|(k, f)| {
            let schema = validator_schema(field_type(f).unwrap_or(&Json::Null), format);
            (k.clone(), (schema, f.get("optional") != Some(&json!(true))))
        })
        .collect();
    let names = |_| None;
    let id = json!({"$description": format!("Id({table})"), "type": "string"});
    props.insert("_id".into(), (id, true));
    let creation = Shape::Float64 { special: false }.json_schema(format, &names);
    props.insert("_creationTime".into(), (creation, true));
    let required: Vec<Json> = props
        .iter()
        .filter(|(_, (_, req))| *req)
        .map(|(k, _)| Json::String(k.clone()))
        .collect();
    let props: Map<String, Json> = props.into_iter().map(|(k, (s, _))| (k, s)).collect();
    let mut out = json!({
        "type": "object",
        "properties": props,
        "additionalProperties": false,
        "required": required,
    });
    finish_table_schema(&mut out, delta_schema);
    Ok(out)
}

fn in_component(component: &str) -> String {
    if component.is_empty() {
        String::new()
    } else {
        format!(" in component {component:?}")
    }
}

/// JSON Schema of a validator, with the quirks of Convex's schema-derived schemas: every
/// `v.number()` may be a special float, and a record's value schema sits under
/// `additionalProperties.type` (not valid JSON Schema, as Convex answers it).
fn validator_schema(v: &Json, format: Format) -> Json {
    let names = |_| None;
    let ty = v.get("type").and_then(Json::as_str).unwrap_or("any");
    match ty {
        "string" => Shape::String.json_schema(format, &names),
        "boolean" => Shape::Boolean.json_schema(format, &names),
        "null" => Shape::Null.json_schema(format, &names),
        "number" | "float64" => special_float_schema(format),
        "bigint" | "int64" => Shape::Int64.json_schema(format, &names),
        "bytes" => Shape::Bytes.json_schema(format, &names),
        "id" => json!({
            "$description": format!("Id({})", v["tableName"].as_str().unwrap_or("")),
            "type": "string"
        }),
        "literal" => json!({"const": v["value"]}),
        "array" => json!({"type": "array", "items": validator_schema(&v["value"], format)}),
        "record" => json!({
            "type": "object",
            "additionalProperties": {"type": validator_schema(&v["values"]["fieldType"], format)}
        }),
        "union" => json!({"anyOf": v["value"].as_array().map(|m| m.iter()
            .map(|x| validator_schema(x, format)).collect::<Vec<_>>()).unwrap_or_default()}),
        "object" => {
            let mut props = Map::new();
            let mut required = Vec::new();
            if let Some(fields) = v["value"].as_object() {
                for (k, f) in fields {
                    props.insert(k.clone(), validator_schema(&f["fieldType"], format));
                    if f.get("optional") != Some(&json!(true)) {
                        required.push(Json::String(k.clone()));
                    }
                }
            }
            json!({"type": "object", "properties": props, "additionalProperties": false,
                   "required": required})
        }
        _ => json!({}),
    }
}
