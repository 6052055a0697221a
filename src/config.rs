//! The connector's config contract: the spec (`spec.json`, kept identical to what `spec`
//! prints), validation of a caller's config against it, and the validated `Config`.

use std::time::Duration;

use anyhow::Context;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use convex::settings::{AccessKey, DeploymentUrl};

use crate::error::UserError;
use crate::messages;

mod check;

use check::Violation;

/// The SPEC payload, verbatim. Existing Airbyte connections were created against the Python
/// connector's spec; this one keeps its keys, types, secret flag and examples and only adds
/// optional properties whose defaults keep the old behaviour.
pub const SPEC_JSON: &str = include_str!("../spec.json");

pub const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 10;
pub const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 120;
pub const DEFAULT_CHANGE_BUFFER_MB: u64 = 256;

/// The config as callers send it. Unknown keys are ignored (the spec allows them); a missing
/// optional key is `None`.
/// Deliberately no `Debug`: it holds the access key.
#[derive(Deserialize, JsonSchema)]
pub struct RawConfig {
    pub deployment_url: String,
    pub access_key: String,
    pub concurrency: Option<u32>,
    pub connect_timeout_seconds: Option<u64>,
    pub request_timeout_seconds: Option<u64>,
    pub every_revision: Option<bool>,
    pub change_buffer_mb: Option<u64>,
    /// `"streaming_export"` or `"data_sync"` (the spec's enum is checked first).
    pub api: Option<String>,
    /// `"typed"` or `"legacy"` (the spec's enum is checked first).
    pub column_types: Option<String>,
}

/// How columns are declared and values encoded for destinations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColumnTypes {
    /// Each Convex type declared in the form Airbyte and PyAirbyte type (int64 as `integer`,
    /// nullable fields as `["null", X]`), and values exactly of that form.
    #[default]
    Typed,
    /// The Python connector 0.4.x's schemas and its lossy `json` values (int64 and bytes as
    /// strings, NaN and infinities as strings), for connections that must not change.
    Legacy,
}

/// Which of Convex's export APIs incremental streams read through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Api {
    /// The Data Sync API where the deployment serves it, else the streaming export API.
    #[default]
    Auto,
    /// `list_snapshot` / `document_deltas` (what the Python connector used).
    StreamingExport,
    /// `POST /api/v1/data/sync`.
    DataSync,
}

/// Longer than any deploy key: HTTP servers refuse headers of a few KiB (431), which would
/// otherwise surface as a server error on every sync.
pub const MAX_ACCESS_KEY_LEN: usize = 2048;

/// A key that can go in an `Authorization` header as Convex issues them: printable ASCII, no
/// spaces. Anything else was mis-pasted, and is said so before any request is made.
fn check_access_key(key: &str) -> Result<(), UserError> {
    if key.len() > MAX_ACCESS_KEY_LEN {
        return Err(UserError::config(messages::access_key_too_long(
            key.len(),
            MAX_ACCESS_KEY_LEN,
        )));
    }
    if let Some(bad) = key.chars().find(|c| !c.is_ascii_graphic()) {
        let what = if bad.is_ascii_whitespace() {
            "a space or line break"
        } else if bad.is_ascii() {
            "a control character"
        } else {
            "a non-ASCII character"
        };
        return Err(UserError::config(messages::access_key_bad_character(what)));
    }
    Ok(())
}

/// JSON Schema's `integer` accepts `8.0`; serde's `u32` does not. Whole floats of the integer
/// properties become integers, so what the spec check lets through also parses.
fn whole_numbers_as_integers(config: &Value) -> Value {
    let mut config = config.clone();
    if let Some(o) = config.as_object_mut() {
        for name in [
            "concurrency",
            "connect_timeout_seconds",
            "request_timeout_seconds",
        ] {
            if let Some(Value::Number(n)) = o.get(name) {
                if let Some(f) = n.as_f64().filter(|f| n.is_f64() && f.fract() == 0.0) {
                    if (0.0..=u32::MAX as f64).contains(&f) {
                        o.insert(name.to_owned(), Value::from(f as u64));
                    }
                }
            }
        }
    }
    config
}

#[derive(Clone, Debug)]
pub struct Config {
    pub deployment_url: DeploymentUrl,
    pub access_key: AccessKey,
    /// Retired in 0.6.0 (a read walks one table at a time); kept so old configs parse.
    pub concurrency: Option<u32>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Send every revision of a changed document instead of its latest per read.
    pub every_revision: bool,
    /// Bytes of changed documents one read buffers before it stops taking changes.
    pub change_buffer_bytes: usize,
    pub api: Api,
    pub column_types: ColumnTypes,
}

impl Config {
    /// What the Convex client needs of this config, and how it names this connector to Convex
    /// (Convex tells Airbyte's syncs apart by the `airbyte-export-` prefix; the rest a semver).
    pub fn client_settings(&self) -> convex::Settings {
        convex::Settings {
            deployment_url: self.deployment_url.clone(),
            access_key: self.access_key.clone(),
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            client_id: CONVEX_CLIENT_ID.to_owned(),
            user_agent: concat!("source-convex/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// The `Convex-Client` header of this connector's requests.
pub const CONVEX_CLIENT_ID: &str = concat!("airbyte-export-", env!("CARGO_PKG_VERSION"));

fn spec_value() -> Value {
    serde_json::from_str(SPEC_JSON).expect("spec.json is valid JSON")
}

/// Validates `config` against the spec's JSON Schema, the way the Python connector did before
/// every command, then builds the typed config.
pub fn parse_config(config: &Value) -> Result<Config, UserError> {
    let spec = spec_value();
    if let Some(violation) = check::first_violation(&spec["connectionSpecification"], config) {
        return Err(UserError::config(format!(
            "Config validation error: {}",
            describe_violation(&violation)
        )));
    }
    let raw: RawConfig = serde_json::from_value(whole_numbers_as_integers(config))
        .map_err(|e| UserError::config(format!("Config validation error: {e}")))?;
    let key = raw.access_key.trim();
    if key.is_empty() {
        return Err(UserError::config(
            "Config validation error: access_key is empty; paste a deploy key from the Convex dashboard",
        ));
    }
    // Registered before anything else can fail: from here on no message can carry it.
    convex::redact::register_secret(key);
    check_access_key(key)?;
    Ok(Config {
        deployment_url: DeploymentUrl::parse(&raw.deployment_url)
            .map_err(|e| UserError::config(e.to_string()))?,
        access_key: AccessKey::new(key),
        concurrency: raw.concurrency,
        connect_timeout: Duration::from_secs(
            raw.connect_timeout_seconds
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT_SECS),
        ),
        request_timeout: Duration::from_secs(
            raw.request_timeout_seconds
                .unwrap_or(DEFAULT_REQUEST_TIMEOUT_SECS),
        ),
        every_revision: raw.every_revision.unwrap_or(false),
        change_buffer_bytes: usize::try_from(
            raw.change_buffer_mb
                .unwrap_or(DEFAULT_CHANGE_BUFFER_MB)
                .saturating_mul(1024 * 1024),
        )
        .unwrap_or(usize::MAX),
        api: choice(
            "api",
            raw.api.as_deref(),
            &[
                ("auto", Api::Auto),
                ("streaming_export", Api::StreamingExport),
                ("data_sync", Api::DataSync),
            ],
        )?,
        column_types: choice(
            "column_types",
            raw.column_types.as_deref(),
            &[
                ("typed", ColumnTypes::Typed),
                ("legacy", ColumnTypes::Legacy),
            ],
        )?,
    })
}

/// The value of the enum property `name`: one of `options`, the first when it is absent.
fn choice<T: Copy>(name: &str, value: Option<&str>, options: &[(&str, T)]) -> Result<T, UserError> {
    let value = value.unwrap_or(options[0].0);
    match options.iter().find(|(text, _)| *text == value) {
        Some((_, v)) => Ok(*v),
        None => {
            let allowed: Vec<String> = options.iter().map(|(t, _)| format!("{t:?}")).collect();
            Err(UserError::config(format!(
                "Config validation error: {name} {value:?} is not one of {}",
                allowed.join(", ")
            )))
        }
    }
}

/// Messages in the words Airbyte users know from the Python connector
/// (`'access_key' is a required property`); never echoes the offending value, which could be
/// the key itself.
fn describe_violation(violation: &Violation<'_>) -> String {
    match violation {
        Violation::NotAnObject => messages::CONFIG_NOT_AN_OBJECT.to_owned(),
        Violation::Required(property) => format!("'{property}' is a required property"),
        Violation::Type { field, expected } => format!("'{field}' is not of type '{expected}'"),
        Violation::Minimum { field, limit } => format!("'{field}' must be at least {limit}"),
        Violation::Maximum { field, limit } => format!("'{field}' must be at most {limit}"),
        Violation::Enum { field, options } => format!("'{field}' must be one of {options}"),
    }
}

/// Reads and parses a JSON file given on the command line.
pub fn read_json_file(path: &std::path::Path, what: &str) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        UserError::config(format!(
            "cannot read the {what} file {}: {e}",
            path.display()
        ))
    })?;
    serde_json::from_str(&text)
        .map_err(|e| {
            UserError::config(format!(
                "the {what} file {} is not valid JSON: {e}",
                path.display()
            ))
        })
        .context(format!("reading {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn missing_key_reads_like_the_python_connector() {
        let err = parse_config(&json!({"deployment_url": "https://a.convex.cloud"}))
            .err()
            .unwrap();
        assert_eq!(
            err.message,
            "Config validation error: 'access_key' is a required property"
        );
    }

    #[test]
    fn optional_properties_have_defaults_and_are_validated() {
        let c = parse_config(
            &json!({"deployment_url": "https://a.convex.cloud", "access_key": "k", "unknown": 1}),
        )
        .unwrap();
        assert_eq!(c.concurrency, None);
        assert!(!c.every_revision);
        assert_eq!(c.api, Api::Auto);
        let c = parse_config(&json!({"deployment_url": "https://a.convex.cloud", "access_key": "k", "api": "streaming_export"}))
            .unwrap();
        assert_eq!(c.api, Api::StreamingExport);
        let c = parse_config(&json!({"deployment_url": "https://a.convex.cloud", "access_key": "k", "api": "data_sync"}))
            .unwrap();
        assert_eq!(c.api, Api::DataSync);
        let bad = parse_config(
            &json!({"deployment_url": "https://a.convex.cloud", "access_key": "k", "api": "v2"}),
        );
        assert!(bad.is_err());
        assert_eq!(c.change_buffer_bytes, 256 * 1024 * 1024);
        assert_eq!(c.request_timeout, Duration::from_secs(120));
        assert!(parse_config(&json!({"deployment_url": "https://a.convex.cloud", "access_key": "k", "concurrency": 0})).is_err());
        let err =
            parse_config(&json!({"deployment_url": "https://a.convex.cloud", "access_key": 5}))
                .err()
                .unwrap();
        assert!(err.message.contains("access_key"), "{}", err.message);
    }

    /// A mistyped `http://x.convex.cloud` would send the key in clear: a config error.
    #[test]
    fn cleartext_convex_cloud_urls_are_config_errors() {
        for cloud in [
            "http://murky-swan-635.convex.cloud",
            "http://murky-swan-635.CONVEX.cloud./x",
            "http://a.convex.site",
        ] {
            let err = parse_config(&json!({"deployment_url": cloud, "access_key": "k"}))
                .err()
                .unwrap();
            assert_eq!(err.failure_type, crate::protocol::FailureType::ConfigError);
            assert!(err.message.contains("use https://"), "{}", err.message);
        }
    }

    /// Keys no header can carry (a 431 would be a system error), odd config values, and whole
    /// floats that the spec check lets through: config errors that say why, or values that parse.
    #[test]
    fn bad_keys_odd_configs_and_whole_floats() {
        let url = "https://a.convex.cloud";
        for key in [
            "prod:a|tökén".to_owned(),
            "prod:a |token".to_owned(),
            "prod:a|\u{7}".to_owned(),
            format!("prod:a|{}", "x".repeat(MAX_ACCESS_KEY_LEN)),
        ] {
            let err = parse_config(&json!({"deployment_url": url, "access_key": key}))
                .err()
                .unwrap();
            assert_eq!(err.failure_type, crate::protocol::FailureType::ConfigError);
            assert!(err.message.contains("access_key"), "{}", err.message);
            assert!(!err.message.contains(&key), "{}", err.message);
        }
        for not_object in [json!([1]), json!("x"), json!(null)] {
            let err = parse_config(&not_object).err().unwrap();
            assert!(
                err.message.contains("must be a JSON object"),
                "{}",
                err.message
            );
        }
        let c = parse_config(&json!({"deployment_url": url, "access_key": "k", "concurrency": 8.0, "request_timeout_seconds": 30.0}))
            .unwrap();
        assert_eq!(c.concurrency, Some(8));
        assert_eq!(c.request_timeout, Duration::from_secs(30));
        assert!(parse_config(
            &json!({"deployment_url": url, "access_key": "k", "concurrency": 8.5})
        )
        .is_err());
        let long = format!("https://{}", "a".repeat(200));
        let err = parse_config(&json!({"deployment_url": format!("{long} x"), "access_key": "k"}))
            .err()
            .unwrap();
        assert_eq!(err.failure_type, crate::protocol::FailureType::ConfigError);
        assert!(!err.message.contains(&long), "{}", err.message);
    }

    #[test]
    fn the_key_is_never_debug_printed() {
        let c = parse_config(&json!({"deployment_url": "https://a.convex.cloud", "access_key": "prod:secret-key-123"}))
            .unwrap();
        assert!(!format!("{c:?}").contains("secret-key-123"));
    }

    /// The spec is hand-written JSON (its key order and wording are a compatibility contract);
    /// the schema derived from the struct that reads configs keeps the two honest.
    #[test]
    fn spec_json_matches_the_config_struct() {
        let derived = serde_json::to_value(schemars::schema_for!(RawConfig)).unwrap();
        let spec = spec_value();
        let spec_props = spec["connectionSpecification"]["properties"]
            .as_object()
            .unwrap();
        let derived_props = derived["properties"].as_object().unwrap();
        let mut a: Vec<_> = spec_props.keys().collect();
        let mut b: Vec<_> = derived_props.keys().collect();
        a.sort();
        b.sort();
        assert_eq!(a, b);
        for (name, prop) in derived_props {
            let derived_type = match &prop["type"] {
                Value::Array(types) => types[0].clone(), // Option<T> → ["integer", "null"]
                t => t.clone(),
            };
            assert_eq!(spec_props[name]["type"], derived_type, "{name}");
        }
        assert_eq!(
            spec["connectionSpecification"]["required"],
            derived["required"]
        );
        assert_eq!(
            spec["connectionSpecification"]["properties"]["access_key"]["airbyte_secret"],
            true
        );
    }
}
