//! `GET /api/test_streaming_export_connection`: `null` once the caller may export.

use super::request::Request;
use crate::api_error::ApiError;
use crate::http::{json_bytes, Resp};

/// No arguments: the key and the permissions are the whole test.
pub fn parse(req: &Request<'_>) -> Result<(), ApiError> {
    req.authorize()
}

pub fn serve((): ()) -> Result<Resp, ApiError> {
    Ok(json_bytes(200, &b"null"[..]))
}
