//! `GET /api/json_schemas`: a JSON schema per exported table.

use super::request::{parse_format, Request};
use crate::api_error::ApiError;
use crate::deployment::Deployment;
use crate::export;
use crate::http::{json_bytes, Resp};
use crate::value::Format;

pub struct Args {
    format: Format,
    delta_schema: bool,
    by_component: bool,
}

/// The query is parsed before the key is checked, but `format`'s value only after.
pub fn parse(req: &Request<'_>) -> Result<Args, ApiError> {
    let delta_schema = req.query_bool("deltaSchema")?;
    let by_component = req.query_bool("byComponent")?;
    let format = req.query_once("format")?;
    req.authorize()?;
    Ok(Args {
        format: parse_format(format)?,
        delta_schema,
        by_component,
    })
}

pub fn serve(dep: &Deployment, a: Args) -> Result<Resp, ApiError> {
    if !dep.settings().table_summaries_ready {
        return Err(ApiError::new(
            503,
            "TableSummariesUnavailable",
            "Table summary unavailable (still bootstrapping)",
        ));
    }
    let v = export::json_schemas(&dep.store(), a.format, a.delta_schema, a.by_component)?;
    Ok(json_bytes(200, serde_json::to_vec(&v).unwrap_or_default()))
}
