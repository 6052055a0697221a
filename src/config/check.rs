//! A config checked against the spec's `connectionSpecification`, the way the Python connector
//! checked it before every command.
//!
//! The spec uses a small part of JSON Schema (draft 7): an object with `required` properties,
//! each of one `type`, some bounded by `minimum` and `maximum` or listed in an `enum`. The
//! rules are read from the spec itself, not restated here; a unit test fails if the spec uses a
//! keyword this does not enforce, and another compares every verdict with a full JSON Schema
//! validator's. (Compiling such a validator cost every command about 1.6 ms of CPU: a read
//! of nothing new took 4.25 ms with it and 2.63 ms without, measured on the static binary.)

use serde_json::{Number, Value};

/// The first rule of the spec a config breaks.
#[derive(Debug, PartialEq)]
pub enum Violation<'s> {
    NotAnObject,
    Required(&'s str),
    Type { field: &'s str, expected: &'s str },
    Minimum { field: &'s str, limit: &'s Number },
    Maximum { field: &'s str, limit: &'s Number },
    Enum { field: &'s str, options: &'s Value },
}

/// The first rule of `schema` (a `connectionSpecification`) that `config` breaks: its type,
/// then the required properties, then each property in the spec's order.
pub fn first_violation<'s>(schema: &'s Value, config: &Value) -> Option<Violation<'s>> {
    let Some(config) = config.as_object() else {
        return Some(Violation::NotAnObject);
    };
    let required = schema["required"].as_array().map(Vec::as_slice);
    for name in required
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_str)
    {
        if !config.contains_key(name) {
            return Some(Violation::Required(name));
        }
    }
    let properties = schema["properties"].as_object()?;
    for (field, rules) in properties {
        let Some(value) = config.get(field) else {
            continue;
        };
        let field = field.as_str();
        if let Some(expected) = rules["type"].as_str() {
            if !has_type(value, expected) {
                return Some(Violation::Type { field, expected });
            }
        }
        if let Some(options) = rules.get("enum") {
            let listed = options.as_array().is_some_and(|o| o.contains(value));
            if !listed {
                return Some(Violation::Enum { field, options });
            }
        }
        let number = value.as_f64();
        if let (Some(n), Value::Number(limit)) = (number, &rules["minimum"]) {
            if limit.as_f64().is_some_and(|l| n < l) {
                return Some(Violation::Minimum { field, limit });
            }
        }
        if let (Some(n), Value::Number(limit)) = (number, &rules["maximum"]) {
            if limit.as_f64().is_some_and(|l| n > l) {
                return Some(Violation::Maximum { field, limit });
            }
        }
    }
    None
}

/// Draft 7's types: an "integer" is any number without a fractional part (`8.0` is one).
fn has_type(value: &Value, expected: &str) -> bool {
    match expected {
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "null" => value.is_null(),
        "number" => value.is_number(),
        "integer" => match value {
            Value::Number(n) => {
                n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
            }
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        let spec: Value = serde_json::from_str(crate::config::SPEC_JSON).unwrap();
        spec["connectionSpecification"].clone()
    }

    /// Every keyword of the spec is enforced here or only annotates: a new rule in the spec
    /// fails this test instead of going unchecked.
    #[test]
    fn the_spec_uses_only_what_is_enforced() {
        let schema = schema();
        for key in schema.as_object().unwrap().keys() {
            assert!(
                [
                    "$schema",
                    "title",
                    "type",
                    "required",
                    "properties",
                    "additionalProperties"
                ]
                .contains(&key.as_str()),
                "connectionSpecification.{key} is not enforced"
            );
        }
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["additionalProperties"], true);
        for (name, rules) in schema["properties"].as_object().unwrap() {
            for key in rules.as_object().unwrap().keys() {
                let enforced = ["type", "minimum", "maximum", "enum"].contains(&key.as_str());
                let annotation = [
                    "title",
                    "description",
                    "default",
                    "examples",
                    "order",
                    "airbyte_secret",
                ]
                .contains(&key.as_str());
                assert!(enforced || annotation, "{name}.{key} is not enforced");
            }
            assert!(rules["type"].is_string(), "{name} has one type");
        }
    }

    /// The same verdict as a full draft 7 validator, on every kind of config the spec tells
    /// apart.
    #[test]
    fn verdicts_match_a_json_schema_validator() {
        let schema = schema();
        let full = jsonschema::draft7::new(&schema).unwrap();
        let base = json!({"deployment_url": "https://a.convex.cloud", "access_key": "k"});
        let mut configs = vec![json!(null), json!([base.clone()]), json!("x"), json!(5)];
        configs.push(base.clone());
        for missing in ["deployment_url", "access_key"] {
            let mut c = base.clone();
            c.as_object_mut().unwrap().remove(missing);
            configs.push(c);
        }
        let values = [
            json!(null),
            json!(true),
            json!("auto"),
            json!("typed"),
            json!("legacy"),
            json!("data_sync"),
            json!("streaming_export"),
            json!("v2"),
            json!(""),
            json!(0),
            json!(1),
            json!(-1),
            json!(8),
            json!(8.0),
            json!(8.5),
            json!(64),
            json!(65),
            json!(600),
            json!(601),
            json!(3600),
            json!(3601),
            json!(65536),
            json!(65537),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(1e300),
            json!([1]),
            json!({"a": 1}),
        ];
        for field in schema["properties"].as_object().unwrap().keys() {
            for value in &values {
                let mut c = base.clone();
                c[field] = value.clone();
                configs.push(c);
            }
        }
        let mut unknown = base.clone();
        unknown["not_in_the_spec"] = json!({"anything": [1, 2]});
        configs.push(unknown);
        for config in &configs {
            assert_eq!(
                first_violation(&schema, config).is_none(),
                full.is_valid(config),
                "{config}: {:?}",
                first_violation(&schema, config)
            );
        }
    }

    #[test]
    fn the_first_violation_names_its_rule() {
        let schema = schema();
        let base = json!({"deployment_url": "https://a.convex.cloud", "access_key": "k"});
        let with = |field: &str, value: Value| {
            let mut c = base.clone();
            c[field] = value;
            c
        };
        assert_eq!(
            first_violation(&schema, &json!([])),
            Some(Violation::NotAnObject)
        );
        assert_eq!(
            first_violation(&schema, &json!({})),
            Some(Violation::Required("deployment_url"))
        );
        assert_eq!(
            first_violation(&schema, &with("access_key", json!(5))),
            Some(Violation::Type {
                field: "access_key",
                expected: "string"
            })
        );
        let Some(Violation::Minimum { field, limit }) =
            first_violation(&schema, &with("concurrency", json!(0)))
        else {
            panic!("a minimum violation")
        };
        assert_eq!((field, limit.to_string().as_str()), ("concurrency", "1"));
        let Some(Violation::Maximum { field, limit }) =
            first_violation(&schema, &with("change_buffer_mb", json!(65537)))
        else {
            panic!("a maximum violation")
        };
        assert_eq!(
            (field, limit.to_string().as_str()),
            ("change_buffer_mb", "65536")
        );
        let Some(Violation::Enum { field, options }) =
            first_violation(&schema, &with("api", json!("v2")))
        else {
            panic!("an enum violation")
        };
        assert_eq!(field, "api");
        assert_eq!(options, &json!(["auto", "streaming_export", "data_sync"]));
    }
}
