//! Texts users read in more than one message, so each remedy is said one way everywhere.
//! The verb is Airbyte's UI's: "refresh".

/// How to refresh a stream, in parentheses after "until this stream is refreshed".
pub const REFRESH: &str =
    "Airbyte: Refresh or Clear data; PyAirbyte: read(force_full_refresh=True)";

/// The remedy itself, as an imperative.
pub const REFRESH_STREAM: &str = "refresh this stream (Airbyte: Refresh or Clear data; PyAirbyte: read(force_full_refresh=True))";

/// `concurrency` in a config: said once per read, at INFO (the setting does no harm).
pub const CONCURRENCY_IGNORED: &str = "The concurrency setting is deprecated since 0.6.0 and ignored: a read makes one change walk and one snapshot walk at a time, the way Convex serves data. Remove it from the configuration.";
