//! `discover`: one stream per Convex table, root tables exactly as the Python connector listed
//! them, component tables as their own namespaced streams.

use serde_json::{json, Map, Value};

use crate::config::ColumnTypes;
use crate::error::UserError;
use crate::messages;
use crate::naming::stream_for;
use crate::protocol::{AirbyteStream, ConfiguredCatalog, SyncMode};
use convex::{DeploymentSchemas, TableRef};

/// A configured catalog names each stream once: a stream listed twice would be read twice,
/// every record duplicated. Names compare as the protocol sees them (no namespace = `""`).
pub fn check_streams_unique(catalog: &ConfiguredCatalog) -> Result<(), UserError> {
    let mut seen = std::collections::HashSet::new();
    for s in &catalog.streams {
        let ns = s.stream.namespace.as_deref().unwrap_or("");
        if !seen.insert((s.stream.name.as_str(), ns)) {
            let shown = if ns.is_empty() {
                format!("{:?}", s.stream.name)
            } else {
                format!("{:?} (namespace {ns:?})", s.stream.name)
            };
            return Err(UserError::config(format!(
                "the configured catalog lists stream {shown} more than once; list each stream once"
            )));
        }
    }
    Ok(())
}

/// Whether a catalog file is `discover`'s output (a CATALOG message, or its streams without a
/// sync mode) rather than a configured catalog.
pub fn is_discovered_catalog(value: &Value) -> bool {
    if value.get("type").and_then(Value::as_str) == Some("CATALOG")
        || value.get("catalog").is_some()
    {
        return true;
    }
    value
        .get("streams")
        .and_then(Value::as_array)
        .and_then(|s| s.first())
        .is_some_and(|s| s.get("name").is_some() && s.get("stream").is_none())
}

/// What to say of a stream name the deployment has no table for and that was never synced
/// (a typo, most likely): the closest names, and where the names come from.
pub fn unknown_stream(name: &str, names: &[&str]) -> String {
    let mut by_distance: Vec<(usize, &str)> =
        names.iter().map(|n| (edit_distance(name, n), *n)).collect();
    by_distance.sort();
    let close: Vec<String> = by_distance
        .iter()
        .take_while(|(d, _)| *d <= name.chars().count().max(2) / 2)
        .take(3)
        .map(|(_, n)| format!("{n:?}"))
        .collect();
    let hint = if close.is_empty() {
        String::new()
    } else {
        format!(" (did you mean {}?)", close.join(" or "))
    };
    let mut listed: Vec<String> = names.iter().take(20).map(|n| format!("{n:?}")).collect();
    if names.len() > 20 {
        listed.push(format!("and {} more", names.len() - 20));
    }
    let listed = if listed.is_empty() {
        "none".to_owned()
    } else {
        listed.join(", ")
    };
    messages::unknown_stream(name, &hint, &listed)
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

pub fn build_catalog(schemas: DeploymentSchemas, types: ColumnTypes) -> Vec<AirbyteStream> {
    let mut streams = Vec::new();
    for (component, tables) in schemas.components {
        for (table, schema) in tables {
            let desc = stream_for(&TableRef {
                component: component.clone(),
                table,
            });
            streams.push(AirbyteStream {
                name: desc.name,
                namespace: desc.namespace,
                json_schema: stream_schema(schema, types),
                supported_sync_modes: [SyncMode::FullRefresh, SyncMode::Incremental],
                source_defined_cursor: true,
                default_cursor_field: ["_ts"],
                source_defined_primary_key: [["_id"]],
                is_resumable: true,
            });
        }
    }
    streams
}

/// A table's schema as the stream declares it: Convex's inferred schema, typed (see
/// [`crate::typed::schema`]) or in the Python connector's form, made to accept every record the
/// connector emits:
/// - the CDC fields are declared, as the Python connector did (same keys, same order);
/// - `additionalProperties` becomes `true` everywhere, at the top in place as before, and in
///   nested objects too: Convex infers schemas from today's documents, so tomorrow's document
///   with one more nested field must not be invalid (and airbyte-cdk's tests reject `false`);
/// - top-level `required` keeps only `_id`, because a delete carries nothing but `_id` and
///   metadata (the Python connector's deletes violated its own schema).
///
/// Both changes only make the schema more permissive.
pub fn stream_schema(schema: Value, types: ColumnTypes) -> Value {
    let Value::Object(mut top) = schema else {
        return json!({});
    };
    if top.is_empty() {
        return Value::Object(top);
    }
    let requires_id = top
        .get("required")
        .and_then(Value::as_array)
        .is_some_and(|r| r.iter().any(|n| n == "_id"));
    if types == ColumnTypes::Typed {
        // Typed nested objects are already open and require nothing.
        match crate::typed::schema::typed(&Value::Object(top)) {
            Value::Object(t) => top = t,
            _ => return json!({}),
        }
    } else if let Some(props) = top.get_mut("properties").and_then(Value::as_object_mut) {
        for v in props.values_mut() {
            open_nested_objects(v);
        }
    }
    top.insert("additionalProperties".into(), Value::Bool(true));
    if let Some(Value::Array(req)) = top.get_mut("required") {
        req.retain(|r| r == "_id");
    } else if requires_id {
        top.insert("required".into(), json!(["_id"]));
    }
    let props = top
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(props) = props {
        // `integer`, not the Python connector's `number`: the value is `_ts`, a 19-digit
        // timestamp, and destinations (PyAirbyte: DECIMAL, then float64 in pandas) round a
        // `number`. `["null", "string"]` rather than `anyOf`, which PyAirbyte cannot map.
        props.insert("_ab_cdc_lsn".into(), json!({"type": "integer"}));
        match types {
            ColumnTypes::Legacy => {
                props.insert("_ab_cdc_updated_at".into(), json!({"type": "string"}));
                props.insert(
                    "_ab_cdc_deleted_at".into(),
                    json!({"type": ["null", "string"]}),
                );
            }
            ColumnTypes::Typed => {
                props.insert(
                    "_ab_cdc_updated_at".into(),
                    json!({"type": "string", "format": "date-time", "airbyte_type": "timestamp_with_timezone"}),
                );
                props.insert(
                    "_ab_cdc_deleted_at".into(),
                    json!({"type": ["null", "string"], "format": "date-time", "airbyte_type": "timestamp_with_timezone"}),
                );
            }
        }
    }
    Value::Object(top)
}

fn open_nested_objects(v: &mut Value) {
    match v {
        Value::Object(o) => {
            if let Some(ap) = o.get_mut("additionalProperties") {
                if *ap == Value::Bool(false) {
                    *ap = Value::Bool(true);
                }
            }
            for child in o.values_mut() {
                open_nested_objects(child);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(open_nested_objects),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::naming::table_for;
    use crate::protocol::StreamDescriptor;
    use convex::parse_json_schemas;

    #[test]
    fn root_schema_is_the_python_connectors_plus_relaxations() {
        let convex = json!({"type":"object",
            "properties":{"_creationTime":{"type":"number"},"_id":{"$description":"Id(users)","type":"string"},
                          "age":{"type":"number"},"name":{"type":"string"},
                          "addr":{"type":"object","properties":{"city":{"type":"string"}},"additionalProperties":false,"required":["city"]},
                          "_table":{"type":"string"},"_component":{"type":"string"},"_ts":{"type":"integer"},"_deleted":{"type":"boolean"}},
            "additionalProperties":false,
            "required":["_creationTime","_id","name"],
            "$schema":"http://json-schema.org/draft-07/schema#"});
        let s = stream_schema(convex, ColumnTypes::Legacy);
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(
            text,
            concat!(
                r#"{"type":"object","properties":{"_creationTime":{"type":"number"},"_id":{"$description":"Id(users)","type":"string"},"age":{"type":"number"},"name":{"type":"string"},"#,
                r#""addr":{"type":"object","properties":{"city":{"type":"string"}},"additionalProperties":true,"required":["city"]},"#,
                r#""_table":{"type":"string"},"_component":{"type":"string"},"_ts":{"type":"integer"},"_deleted":{"type":"boolean"},"#,
                r#""_ab_cdc_lsn":{"type":"integer"},"_ab_cdc_updated_at":{"type":"string"},"_ab_cdc_deleted_at":{"type":["null","string"]}},"#,
                r#""additionalProperties":true,"required":["_id"],"$schema":"http://json-schema.org/draft-07/schema#"}"#
            )
        );
        assert_eq!(stream_schema(json!({}), ColumnTypes::Legacy), json!({}));
        assert_eq!(stream_schema(json!({}), ColumnTypes::Typed), json!({}));
    }

    #[test]
    fn delete_records_satisfy_the_schema() {
        for (types, when) in [
            (ColumnTypes::Legacy, "1970-01-01T00:00:00"),
            (ColumnTypes::Typed, "1970-01-01T00:00:00.000000Z"),
        ] {
            let s = stream_schema(
                json!({"type":"object","properties":{"_id":{"type":"string"},"_creationTime":{"type":"number"},"name":{"type":"string"}},
                "additionalProperties":false,"required":["_creationTime","_id","name"]}),
                types,
            );
            assert_eq!(s["required"], json!(["_id"]));
            let v = jsonschema::draft7::new(&s).unwrap();
            let delete = json!({"_id":"x","_ts":5,"_table":"users","_component":"","_deleted":true,
                "_ab_cdc_lsn":5,"_ab_cdc_updated_at":when,"_ab_cdc_deleted_at":when});
            assert!(v.is_valid(&delete));
        }
    }

    /// A stream listed twice would be read twice: a config error instead.
    #[test]
    fn a_stream_listed_twice_is_a_config_error() {
        let catalog = |streams: serde_json::Value| -> ConfiguredCatalog {
            serde_json::from_value(json!({ "streams": streams })).unwrap()
        };
        let s = |name: &str, ns: serde_json::Value| json!({"stream": {"name": name, "namespace": ns}, "sync_mode": "incremental"});
        let twice = catalog(json!([
            s("users", json!(null)),
            s("posts", json!(null)),
            s("users", json!(""))
        ]));
        let err = check_streams_unique(&twice).unwrap_err();
        assert_eq!(err.failure_type, crate::protocol::FailureType::ConfigError);
        assert!(
            err.message.contains("\"users\" more than once"),
            "{}",
            err.message
        );
        let distinct = catalog(json!([
            s("users", json!(null)),
            s("users", json!("betterAuth")),
            s("betterAuth/users", json!("betterAuth"))
        ]));
        assert!(check_streams_unique(&distinct).is_ok());
    }

    #[test]
    fn a_mistyped_stream_gets_the_closest_names() {
        let names = ["users", "messages", "betterAuth/users"];
        let m = unknown_stream("usres", &names);
        assert!(m.contains(r#"did you mean "users"?"#), "{m}");
        assert!(
            m.contains(r#""messages""#) && m.contains("source-convex catalog"),
            "{m}"
        );
        assert!(!unknown_stream("zzzzzzzz", &names).contains("did you mean"));
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn discover_output_is_told_from_a_configured_catalog() {
        let stream =
            json!({"name": "users", "json_schema": {}, "supported_sync_modes": ["full_refresh"]});
        assert!(is_discovered_catalog(
            &json!({"type": "CATALOG", "catalog": {"streams": [stream]}})
        ));
        assert!(is_discovered_catalog(&json!({"streams": [stream]})));
        assert!(!is_discovered_catalog(
            &json!({"streams": [{"stream": stream, "sync_mode": "incremental"}]})
        ));
        assert!(!is_discovered_catalog(&json!({"streams": []})));
    }

    #[test]
    fn components_become_namespaced_streams_and_map_back() {
        let schemas = parse_json_schemas(json!({
            "": {"users": {"type":"object"}},
            "betterAuth": {"users": {"type":"object"}, "sessions": {"type":"object"}},
            "a/b": {"t": {"type":"object"}},
        }))
        .unwrap();
        let catalog = build_catalog(schemas, ColumnTypes::Typed);
        let names: Vec<_> = catalog
            .iter()
            .map(|s| (s.name.as_str(), s.namespace.as_deref()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("users", None),
                ("betterAuth/users", Some("betterAuth")),
                ("betterAuth/sessions", Some("betterAuth")),
                ("a/b/t", Some("a/b"))
            ]
        );
        for s in &catalog {
            let d = StreamDescriptor {
                name: s.name.clone(),
                namespace: s.namespace.clone(),
            };
            assert_eq!(stream_for(&table_for(&d).unwrap()), d);
            // Callers that drop the namespace still reach the same table.
            let bare = StreamDescriptor {
                name: s.name.clone(),
                namespace: None,
            };
            assert_eq!(table_for(&bare).unwrap(), table_for(&d).unwrap());
        }
        let bad = StreamDescriptor {
            name: "x/users".into(),
            namespace: Some("y".into()),
        };
        assert!(table_for(&bad).is_err());
        assert!(table_for(&StreamDescriptor {
            name: "/users".into(),
            namespace: None
        })
        .is_err());
    }
}
