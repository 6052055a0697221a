//! How failures reach users: every error is classified as Airbyte's `config_error`,
//! `transient_error` or `system_error`, with a message that says what went wrong and what to do.

use crate::messages;
use crate::protocol::FailureType;
use convex::data_sync::codes as sync_codes;
use convex::{codes, ConvexError, NetworkFailure};

/// An error whose message is already written for the person who must act on it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct UserError {
    pub failure_type: FailureType,
    pub message: String,
}

impl UserError {
    pub fn config(message: impl Into<String>) -> Self {
        UserError {
            failure_type: FailureType::ConfigError,
            message: message.into(),
        }
    }

    pub fn system(message: impl Into<String>) -> Self {
        UserError {
            failure_type: FailureType::SystemError,
            message: message.into(),
        }
    }

    pub fn transient(message: impl Into<String>) -> Self {
        UserError {
            failure_type: FailureType::TransientError,
            message: message.into(),
        }
    }
}

/// A classified failure: (failure type, message for users, technical detail).
pub struct Classified {
    pub failure_type: FailureType,
    pub message: String,
    pub internal: String,
}

/// Finds the most specific explanation in an error chain. Unknown errors are `system_error`
/// with their full chain as the message: a bug should still say where it happened.
pub fn classify(err: &anyhow::Error) -> Classified {
    let internal = format!("{err:#}");
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<UserError>() {
            return Classified {
                failure_type: e.failure_type,
                message: e.message.clone(),
                internal,
            };
        }
        if let Some(e) = cause.downcast_ref::<ConvexError>() {
            return Classified {
                failure_type: failure_type(e),
                message: user_message(e),
                internal,
            };
        }
        if cause
            .downcast_ref::<crate::output::OutputClosed>()
            .is_some()
        {
            return Classified {
                failure_type: FailureType::SystemError,
                message: cause.to_string(),
                internal,
            };
        }
    }
    Classified {
        failure_type: FailureType::SystemError,
        message: format!("Unexpected error in source-convex: {internal}"),
        internal,
    }
}

/// Airbyte's failure type of a Convex error: what the user (config), time (transient) or we
/// (system) must fix.
pub fn failure_type(err: &ConvexError) -> FailureType {
    match err {
        ConvexError::Network {
            kind: NetworkFailure::Tls,
            ..
        } => FailureType::ConfigError,
        ConvexError::Network {
            kind: NetworkFailure::Unsendable | NetworkFailure::Cancelled,
            ..
        } => FailureType::SystemError,
        ConvexError::Network { .. } => FailureType::TransientError,
        e if e.is_retryable() => FailureType::TransientError,
        ConvexError::Api { status, code, .. } => match (*status, code.as_str()) {
            (401 | 403 | 404, _) => FailureType::ConfigError,
            (_, codes::SNAPSHOT_TOO_OLD | codes::INVALID_WINDOW) => FailureType::ConfigError,
            (_, "BadFormat") => FailureType::ConfigError,
            (
                _,
                sync_codes::CURSOR_EXPIRED
                | sync_codes::INVALID_CURSOR
                | "InvalidDataSyncSelection",
            ) => FailureType::ConfigError,
            _ => FailureType::SystemError,
        },
        ConvexError::Status { status, .. } => match status {
            401 | 403 | 404 => FailureType::ConfigError,
            _ => FailureType::SystemError,
        },
        ConvexError::InvalidResponse { .. } => FailureType::SystemError,
    }
}

/// What to tell a person, with what to do about it.
pub fn user_message(err: &ConvexError) -> String {
    format!("{}: {}", err.endpoint(), detail_with_hint(err))
}

/// `detail()` followed by what to do about it.
pub fn detail_with_hint(err: &ConvexError) -> String {
    let hint = match (err.status(), err.code()) {
        (_, Some("BadAdminKey" | "BadDeployKey")) => {
            messages::HINT_ACCESS_KEY_REFUSED
        }
        (_, Some("StreamingExportNotEnabled"))
            if err.endpoint() == convex::data_sync::DATA_SYNC
                || err.endpoint() == convex::data_sync::CURSOR_FROM_DELTAS =>
        {
            messages::HINT_DATA_SYNC_NOT_ON_PLAN
        }
        (_, Some("StreamingExportNotEnabled")) => {
            messages::HINT_STREAMING_EXPORT_NOT_ON_PLAN
        }
        (_, Some("BadFormat")) => {
            messages::HINT_NO_EXPORT_JSON
        }
        (_, Some(sync_codes::CURSOR_EXPIRED)) => {
            messages::HINT_DATA_SYNC_CURSOR_EXPIRED
        }
        (_, Some(sync_codes::INVALID_CURSOR)) => {
            messages::HINT_DATA_SYNC_CURSOR_FOREIGN
        }
        (_, Some("InvalidDataSyncSelection")) => {
            messages::HINT_SELECTION_REFUSED
        }
        (_, Some("OperationNotPermitted")) => {
            " — this key may not read data; use a deploy key with full access to the deployment."
        }
        (_, Some(codes::SNAPSHOT_TOO_OLD | codes::INVALID_WINDOW)) => {
            messages::HINT_HISTORY_EXPIRED
        }
        (Some(404), _)
            if err.endpoint() == convex::data_sync::DATA_SYNC
                || err.endpoint() == convex::data_sync::CURSOR_FROM_DELTAS =>
        {
            messages::HINT_NO_DATA_SYNC_API
        }
        (Some(404), _) => {
            messages::HINT_NO_API_AT_URL
        }
        (Some(401 | 403), _) => " — check access_key and the deployment's permissions.",
        (Some(429), _) => " — Convex kept rate-limiting the export after several retries; try again later.",
        (Some(s), _) if s >= 500 => {
            " — Convex kept failing after several retries; this is usually temporary, try again later."
        }
        _ => match err {
            ConvexError::Network {
                kind: NetworkFailure::Tls,
                ..
            } => {
                messages::HINT_TLS_UNTRUSTED
            }
            ConvexError::Network {
                kind: NetworkFailure::Connect,
                ..
            } => {
                messages::HINT_CANNOT_CONNECT
            }
            ConvexError::Network {
                kind: NetworkFailure::Timeout,
                ..
            } => {
                messages::HINT_TIMED_OUT
            }
            ConvexError::Network { .. } => " — the connection kept failing after several retries; try again later.",
            _ => "",
        },
    };
    format!("{}{hint}", err.detail())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backend_without_export_json_says_how_to_get_typed_columns() {
        let e = ConvexError::Api {
            endpoint: "/api/list_snapshot",
            status: 400,
            code: "BadFormat".into(),
            message: "format param must be one of [`json`]. Got export_json".into(),
        };
        assert_eq!(failure_type(&e), FailureType::ConfigError);
        let m = user_message(&e);
        assert!(
            m.contains("Got export_json") && m.contains("set column_types to legacy"),
            "{m}"
        );
        let plan = |endpoint| ConvexError::Api {
            endpoint,
            status: 403,
            code: "StreamingExportNotEnabled".into(),
            message: "m".into(),
        };
        assert!(!user_message(&plan("/api/list_snapshot")).contains("set api"));
        assert!(user_message(&plan(convex::data_sync::DATA_SYNC))
            .contains("set api to streaming_export"));
    }

    #[test]
    fn errors_are_classified_for_airbyte() {
        let e = |status, code: &str| ConvexError::Api {
            endpoint: "/api/list_snapshot",
            status,
            code: code.into(),
            message: "m".into(),
        };
        assert_eq!(
            failure_type(&e(401, "BadAdminKey")),
            FailureType::ConfigError
        );
        assert!(user_message(&e(401, "BadAdminKey")).contains("generate a deploy key"));
        assert_eq!(
            failure_type(&e(503, "Overloaded")),
            FailureType::TransientError
        );
        assert!(e(429, "RateLimited").is_retryable());
        assert!(!e(400, "BadQueryArgs").is_retryable());
        assert_eq!(
            failure_type(&e(400, "BadQueryArgs")),
            FailureType::SystemError
        );
        assert_eq!(
            e(401, "BadAdminKey").to_string(),
            "/api/list_snapshot: 401: BadAdminKey: m"
        );
        let tls = ConvexError::Network {
            endpoint: "/api/json_schemas",
            kind: NetworkFailure::Tls,
            detail: "invalid peer certificate: UnknownIssuer".into(),
        };
        assert!(!tls.is_retryable());
        assert_eq!(failure_type(&tls), FailureType::ConfigError);
        assert!(user_message(&tls).contains("SSL_CERT_FILE"));
    }

    use anyhow::Context;

    #[test]
    fn the_innermost_user_error_wins_and_context_is_kept_internally() {
        let err = anyhow::Error::new(UserError::config("fix the key"))
            .context("while reading stream users");
        let c = classify(&err);
        assert_eq!(c.failure_type, FailureType::ConfigError);
        assert_eq!(c.message, "fix the key");
        assert!(c.internal.contains("while reading stream users"));

        let err: anyhow::Result<()> = Err(anyhow::anyhow!("boom")).context("somewhere");
        let c = classify(&err.unwrap_err());
        assert_eq!(c.failure_type, FailureType::SystemError);
        assert!(c.message.contains("somewhere: boom"));
    }
}
