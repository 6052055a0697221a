//! The connector's config contract: the spec (`spec.json`, kept identical to what `spec`
//! prints), validation of a caller's config against it, and the validated `Config`.

use std::time::Duration;

use anyhow::Context;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::error::UserError;

/// The SPEC payload, verbatim. Existing Airbyte connections were created against the Python
/// connector's spec; this one keeps its keys, types, secret flag and examples and only adds
/// optional properties whose defaults keep the old behaviour.
pub const SPEC_JSON: &str = include_str!("../spec.json");

pub const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 10;
pub const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 120;
pub const DEFAULT_CHANGE_BUFFER_MB: u64 = 256;

/// The config as callers send it. Unknown keys are ignored (the spec allows them).
/// Deliberately no `Debug`: it holds the access key.
#[derive(Deserialize, JsonSchema)]
pub struct RawConfig {
    pub deployment_url: String,
    pub access_key: String,
    #[serde(default)]
    pub concurrency: Option<u32>,
    #[serde(default)]
    pub connect_timeout_seconds: Option<u64>,
    #[serde(default)]
    pub request_timeout_seconds: Option<u64>,
    #[serde(default)]
    pub every_revision: Option<bool>,
    #[serde(default)]
    pub change_buffer_mb: Option<u64>,
}

/// The deploy key. Never printed: `Debug` and `Display` redact it.
#[derive(Clone)]
pub struct AccessKey(String);

impl AccessKey {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A deployment URL without trailing slash; any path prefix is kept for every request
/// (the Python connector dropped it on reads).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeploymentUrl(String);

impl DeploymentUrl {
    pub fn parse(raw: &str) -> Result<Self, UserError> {
        let trimmed = raw.trim();
        let url = url::Url::parse(trimmed).map_err(|e| {
            UserError::config(format!(
                "deployment_url {trimmed:?} is not a valid URL ({e}); it looks like https://<name>.convex.cloud"
            ))
        })?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(UserError::config(format!(
                "deployment_url must start with https:// (or http:// for a local backend), got {:?}",
                url.scheme()
            )));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(UserError::config(
                "deployment_url has no host; it looks like https://<name>.convex.cloud",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(UserError::config(
                "deployment_url must not contain a query (?…) or fragment (#…)",
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UserError::config(
                "deployment_url must not contain credentials; put the key in access_key",
            ));
        }
        let mut s = url.as_str().to_owned();
        while s.ends_with('/') {
            s.pop();
        }
        Ok(DeploymentUrl(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
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
}

fn spec_value() -> Value {
    serde_json::from_str(SPEC_JSON).expect("spec.json is valid JSON")
}

/// Validates `config` against the spec's JSON Schema, the way the Python connector did before
/// every command, then builds the typed config.
pub fn parse_config(config: &Value) -> Result<Config, UserError> {
    let spec = spec_value();
    let validator = jsonschema::draft7::new(&spec["connectionSpecification"])
        .expect("spec.json's connectionSpecification is a valid draft-07 schema");
    if let Some(err) = validator.iter_errors(config).next() {
        return Err(UserError::config(format!(
            "Config validation error: {}",
            describe_validation_error(&err, &spec)
        )));
    }
    let raw: RawConfig = serde_json::from_value(config.clone())
        .map_err(|e| UserError::config(format!("Config validation error: {e}")))?;
    if raw.access_key.trim().is_empty() {
        return Err(UserError::config(
            "Config validation error: access_key is empty; paste a deploy key from the Convex dashboard",
        ));
    }
    Ok(Config {
        deployment_url: DeploymentUrl::parse(&raw.deployment_url)?,
        access_key: AccessKey(raw.access_key.trim().to_owned()),
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
    })
}

/// Messages in the words Airbyte users know from the Python connector
/// (`'access_key' is a required property`); never echoes the offending value, which could be
/// the key itself.
fn describe_validation_error(err: &jsonschema::ValidationError<'_>, spec: &Value) -> String {
    use jsonschema::error::ValidationErrorKind as K;
    let at = err.instance_path().to_string();
    let field = at.trim_start_matches('/');
    match err.kind() {
        K::Required { property } => {
            format!(
                "'{}' is a required property",
                property.as_str().unwrap_or("?")
            )
        }
        K::Type { .. } => {
            let expected = spec["connectionSpecification"]["properties"][field]["type"]
                .as_str()
                .unwrap_or("another type");
            format!("'{field}' is not of type '{expected}'")
        }
        K::Minimum { limit } => format!("'{field}' must be at least {limit}"),
        K::Maximum { limit } => format!("'{field}' must be at most {limit}"),
        _ => format!("'{field}' is invalid"),
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
    fn urls_are_normalised_and_keep_their_path_prefix() {
        let u = DeploymentUrl::parse("https://murky-swan-635.convex.cloud/").unwrap();
        assert_eq!(u.as_str(), "https://murky-swan-635.convex.cloud");
        let u = DeploymentUrl::parse(" http://127.0.0.1:3210/proxy/convex// ").unwrap();
        assert_eq!(u.as_str(), "http://127.0.0.1:3210/proxy/convex");
        for bad in [
            "murky-swan-635.convex.cloud",
            "ftp://x.convex.cloud",
            "https://x.convex.cloud/?a=1",
            "https://user:pw@x.convex.cloud",
            "",
        ] {
            assert!(DeploymentUrl::parse(bad).is_err(), "{bad}");
        }
    }

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
        assert_eq!(c.change_buffer_bytes, 256 * 1024 * 1024);
        assert_eq!(c.request_timeout, Duration::from_secs(120));
        assert!(parse_config(&json!({"deployment_url": "https://a.convex.cloud", "access_key": "k", "concurrency": 0})).is_err());
        let err =
            parse_config(&json!({"deployment_url": "https://a.convex.cloud", "access_key": 5}))
                .err()
                .unwrap();
        assert!(err.message.contains("access_key"), "{}", err.message);
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
