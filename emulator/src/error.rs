//! [`Error`]: why a write or a control request was refused (bad input, unknown document,
//! ...). Unlike [`crate::api_error::ApiError`] it is no Convex answer, just a message.

use std::fmt;

use crate::value::ValueError;

/// An error from the control API (bad input, unknown document, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<ValueError> for Error {
    fn from(e: ValueError) -> Self {
        Error(e.0)
    }
}

/// `Err(Error(msg))`, for the many refusals of the write path.
pub(crate) fn fail<T>(msg: impl Into<String>) -> Result<T, Error> {
    Err(Error(msg.into()))
}
