//! `GET /api/get_table_column_names`: the top-level field names of every exported table, by
//! component.

use super::request::Request;
use crate::api_error::ApiError;
use crate::deployment::Deployment;
use crate::export;
use crate::http::{json_bytes, Resp};

/// No arguments.
pub fn parse(req: &Request<'_>) -> Result<(), ApiError> {
    req.authorize()
}

pub fn serve(dep: &Deployment, (): ()) -> Result<Resp, ApiError> {
    let v = export::table_column_names(&dep.store());
    Ok(json_bytes(200, serde_json::to_vec(&v).unwrap_or_default()))
}
