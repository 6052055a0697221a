//! [`ApiError`]: an error answer of the Convex API (`{"code","message"}` with a status).
//! Every layer that can refuse a request builds one: the request checks, the export reads,
//! the data sync pages and the schema fallback; only the HTTP layer turns it into bytes.

/// A Convex API error: status, `code`, `message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// What Convex answers for an error without metadata (e.g. a negative timestamp).
    pub fn internal() -> ApiError {
        ApiError::new(
            500,
            "InternalServerError",
            "Your request couldn't be completed. Try again later.",
        )
    }

    /// A query string Convex's extractor refuses.
    pub fn bad_query(msg: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            400,
            "BadQueryArgs",
            format!("Failed to deserialize query string: {msg}"),
        )
    }

    /// A body that is not the JSON object the endpoint takes.
    pub fn bad_json(msg: impl std::fmt::Display) -> ApiError {
        ApiError::new(400, "BadJsonBody", msg.to_string())
    }

    /// A JSON body whose fields do not deserialize into the endpoint's arguments (serde's
    /// message after Convex's prefix).
    pub fn bad_json_target(msg: impl std::fmt::Display) -> ApiError {
        ApiError::bad_json(format!(
            "Failed to deserialize the JSON body into the target type: {msg}"
        ))
    }
}
