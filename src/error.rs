//! How failures reach users: every error is classified as Airbyte's `config_error`,
//! `transient_error` or `system_error`, with a message that says what went wrong and what to do.

use crate::convex::ConvexError;
use crate::protocol::FailureType;

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
                failure_type: e.failure_type(),
                message: e.user_message(),
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

#[cfg(test)]
mod tests {
    use super::*;
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
