//! What every endpoint reads from a request (query arguments, the JSON body, the client
//! name) and the checks Convex makes before any endpoint runs: the `Convex-Client` header,
//! then the key, the streaming-export switch and the data-view permission.

use bytes::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::http::request::Parts;
use hyper::Method;
use serde_json::Value as Json;

use crate::api_error::ApiError;
use crate::deployment::Deployment;
use crate::http::parse_query;
use crate::value::Format;
use crate::version::client_name;

/// One `/api/` request, its query string decoded once.
pub struct Request<'a> {
    pub dep: &'a Deployment,
    pub parts: &'a Parts,
    pub body: &'a Bytes,
    query: Vec<(String, String)>,
}

enum Identity {
    Admin,
    NoDataView,
    Unknown,
}

impl<'a> Request<'a> {
    pub fn new(dep: &'a Deployment, parts: &'a Parts, body: &'a Bytes) -> Request<'a> {
        Request {
            dep,
            parts,
            body,
            query: parse_query(parts.uri.query()),
        }
    }

    pub fn is_get(&self) -> bool {
        self.parts.method == Method::GET
    }

    /// The `Convex-Client` header, when it is valid UTF-8.
    pub fn client(&self) -> Option<&str> {
        self.parts
            .headers
            .get("convex-client")
            .and_then(|v| v.to_str().ok())
    }

    /// `Convex-Client` must look like `<client>-<semver>` when present.
    pub fn check_client_version(&self) -> Result<(), ApiError> {
        let Some(v) = self.parts.headers.get("convex-client") else {
            return Ok(());
        };
        let ok = v
            .to_str()
            .ok()
            .is_some_and(|s| !s.starts_with('-') && client_name(s).is_some());
        if ok {
            Ok(())
        } else {
            Err(ApiError::new(
                400,
                "InvalidClientVersion",
                format!(
                    "Invalid Convex-Client header value {:?}: expected <client>-<semver>",
                    v.to_str().unwrap_or("<non-ascii>")
                ),
            ))
        }
    }

    /// The key check (header, or the `adminKey` query parameter without one), then the
    /// streaming-export switch, then the data-view permission.
    pub fn authorize(&self) -> Result<(), ApiError> {
        let settings = self.dep.settings();
        let check_key = |key: &str| -> Result<Identity, ApiError> {
            if key == self.dep.access_key() {
                Ok(Identity::Admin)
            } else if settings.keys_without_data_view.iter().any(|k| k == key) {
                Ok(Identity::NoDataView)
            } else {
                Err(ApiError::new(
                    401,
                    "BadAdminKey",
                    "The provided admin key was invalid for this instance",
                ))
            }
        };
        let identity = match self.parts.headers.get(AUTHORIZATION) {
            Some(v) => {
                let Ok(s) = v.to_str() else {
                    return Err(ApiError::new(
                        400,
                        "HeaderParseFailure",
                        "Failed to parse the Authorization header",
                    ));
                };
                let invalid =
                    || ApiError::new(400, "InvalidHeaderFailure", "Invalid authentication header");
                let prefix = s.get(..7).ok_or_else(invalid)?;
                if !prefix.eq_ignore_ascii_case("convex ") {
                    return Err(invalid());
                }
                check_key(s[7..].trim())?
            }
            None => match self.query.iter().rev().find(|(k, _)| k == "adminKey") {
                Some((_, key)) => check_key(key)?,
                None => Identity::Unknown,
            },
        };
        if !settings.streaming_export_enabled {
            return Err(ApiError::new(
                403,
                "StreamingExportNotEnabled",
                "Streaming export is not available on your current subscription. See \
                 https://www.convex.dev/plans to upgrade.",
            ));
        }
        match identity {
            Identity::Unknown => Err(ApiError::new(
                403,
                "BadDeployKey",
                "The provided deploy key was invalid for this deployment. Please ensure your \
                 deploy key is correct and try again.",
            )),
            Identity::NoDataView => Err(not_permitted()),
            Identity::Admin if !settings.data_view_permission => Err(not_permitted()),
            Identity::Admin => Ok(()),
        }
    }

    /// A scalar query argument. Like Convex's query extractor, a repeated one is
    /// 400 BadQueryArgs ("duplicate field").
    pub fn query_once(&self, key: &str) -> Result<Option<&str>, ApiError> {
        let mut found = self
            .query
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str());
        let first = found.next();
        if found.next().is_some() {
            return Err(ApiError::bad_query(format!("duplicate field `{key}`")));
        }
        Ok(first)
    }

    /// A scalar query argument that must parse as `T` (a number).
    pub fn query_parsed<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, ApiError>
    where
        T::Err: std::fmt::Display,
    {
        self.query_once(key)?
            .map(|s| s.parse::<T>())
            .transpose()
            .map_err(|e| ApiError::bad_query(format!("{key}: {e}")))
    }

    /// How many query arguments have one of these names.
    pub fn query_count(&self, keys: &[&str]) -> usize {
        self.query
            .iter()
            .filter(|(k, _)| keys.contains(&k.as_str()))
            .count()
    }

    /// The first query argument of this name (for arguments that may repeat).
    pub fn query_first(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A `true`/`false` query argument, `false` when absent.
    pub fn query_bool(&self, key: &str) -> Result<bool, ApiError> {
        match self.query_once(key)? {
            None => Ok(false),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(other) => Err(ApiError::bad_query(format!(
                "{key}: provided string was not `true` or `false`: {other:?}"
            ))),
        }
    }

    /// The body as a JSON object, with Convex's `Json` extractor's checks: a JSON
    /// content type, valid JSON, an object.
    pub fn json_body(&self) -> Result<Json, ApiError> {
        let is_json = self
            .parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|ct| {
                let mime = ct
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                mime.split_once('/')
                    .is_some_and(|(_, sub)| sub == "json" || sub.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::bad_json(
                "Expected request with `Content-Type: application/json`",
            ));
        }
        let v: Json = serde_json::from_slice(self.body).map_err(|e| {
            ApiError::bad_json(format!("Failed to parse the request body as JSON: {e}"))
        })?;
        if !v.is_object() {
            return Err(ApiError::bad_json_target("expected a map"));
        }
        Ok(v)
    }
}

fn not_permitted() -> ApiError {
    ApiError::new(
        403,
        "OperationNotPermitted",
        "You do not have permission to perform this operation (deployment:data:view).",
    )
}

/// The `format` argument (`json` when absent).
pub fn parse_format(f: Option<&str>) -> Result<Format, ApiError> {
    match f {
        None => Ok(Format::Clean),
        Some(s) => Format::parse(s).ok_or_else(|| {
            ApiError::new(
                400,
                "BadFormat",
                format!("format param must be one of [`json`]. Got {s}"),
            )
        }),
    }
}
