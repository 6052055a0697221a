//! [`Error`]: why a write or a control request was refused (bad input, unknown document,
//! ...). Unlike [`crate::api_error::ApiError`] it is no Convex answer, just a message.

/// Declares an error type that is nothing but its message (`Name(pub String)`), which it
/// displays as it is.
macro_rules! message_error {
    ($(#[$attr:meta])* $name:ident) => {
        $(#[$attr])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name(pub String);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::error::Error for $name {}
    };
}
pub(crate) use message_error;

message_error!(
    /// An error from the control API (bad input, unknown document, ...).
    Error
);

/// `Err(Error(msg))`, for the many refusals of the write path.
pub(crate) fn fail<T>(msg: impl Into<String>) -> Result<T, Error> {
    Err(Error(msg.into()))
}
