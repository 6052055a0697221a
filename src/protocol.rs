//! Airbyte protocol 0.18 messages, hand-written: the wire mixes snake_case and camelCase keys,
//! and no crate on crates.io serialises it correctly.
//!
//! Output types borrow what they print; records are not built here at all (see
//! `read::record`), because their `data` is Convex's own bytes spliced into a line.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

/// Milliseconds since the Unix epoch, as Airbyte's `emitted_at` wants them.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A stream's identity in the protocol: name plus optional namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StreamDescriptor {
    pub name: String,
    /// Written as `null` for root tables, exactly as the Python connector's state did.
    #[serde(default)]
    pub namespace: Option<String>,
}

impl std::fmt::Display for StreamDescriptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Message<'a> {
    Spec {
        spec: &'a RawValue,
    },
    ConnectionStatus {
        #[serde(rename = "connectionStatus")]
        connection_status: ConnectionStatus<'a>,
    },
    Catalog {
        catalog: Catalog<'a>,
    },
    State {
        state: StateMessage<'a>,
    },
    Log {
        log: LogMessage<'a>,
    },
    Trace {
        trace: Trace<'a>,
    },
}

#[derive(Serialize)]
pub struct ConnectionStatus<'a> {
    pub status: CheckStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<&'a str>,
}

#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CheckStatus {
    Succeeded,
    Failed,
}

#[derive(Serialize)]
pub struct Catalog<'a> {
    pub streams: &'a [AirbyteStream],
}

#[derive(Serialize, Debug, Clone)]
pub struct AirbyteStream {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub json_schema: Value,
    pub supported_sync_modes: [SyncMode; 2],
    pub source_defined_cursor: bool,
    pub default_cursor_field: [&'static str; 1],
    pub source_defined_primary_key: [[&'static str; 1]; 1],
    pub is_resumable: bool,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    FullRefresh,
    Incremental,
}

#[derive(Serialize)]
pub struct StateMessage<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub stream: StreamState<'a>,
    #[serde(rename = "sourceStats")]
    pub source_stats: SourceStats,
}

#[derive(Serialize)]
pub struct StreamState<'a> {
    pub stream_descriptor: &'a StreamDescriptor,
    /// The source's own state, already JSON: the protocol does not know its shape.
    pub stream_state: &'a RawValue,
}

#[derive(Serialize)]
pub struct SourceStats {
    /// A double on the wire: the protocol says it "should always have a decimal point".
    #[serde(rename = "recordCount")]
    pub record_count: f64,
}

#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LogLevel {
    Warn,
    Info,
    Debug,
}

#[derive(Serialize)]
pub struct LogMessage<'a> {
    pub level: LogLevel,
    pub message: &'a str,
}

#[derive(Serialize)]
pub struct Trace<'a> {
    #[serde(rename = "type")]
    pub kind: TraceKind,
    pub emitted_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<TraceError<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_status: Option<StreamStatus<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub analytics: Option<Analytics<'a>>,
}

/// An ANALYTICS trace: an event the platform records without failing the sync.
#[derive(Serialize)]
pub struct Analytics<'a> {
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub value: &'a str,
}

#[derive(Serialize, Clone, Copy, Debug)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TraceKind {
    Error,
    StreamStatus,
    Analytics,
}

#[derive(Serialize)]
pub struct TraceError<'a> {
    pub message: &'a str,
    pub internal_message: &'a str,
    pub failure_type: FailureType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_descriptor: Option<&'a StreamDescriptor>,
}

// The variant names are the wire values (`config_error`, …).
#[allow(clippy::enum_variant_names)]
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FailureType {
    ConfigError,
    TransientError,
    SystemError,
}

#[derive(Serialize)]
pub struct StreamStatus<'a> {
    pub stream_descriptor: &'a StreamDescriptor,
    pub status: StreamStatusKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasons: Option<[StatusReason; 1]>,
}

/// Why a stream is in its status; the one reason the protocol has: Convex rate-limits it.
#[derive(Serialize)]
pub struct StatusReason {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub rate_limited: RateLimited,
}

#[derive(Serialize)]
pub struct RateLimited {
    /// When requests are expected to succeed again (ms since the epoch), if the server said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_reset: Option<i64>,
}

#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StreamStatusKind {
    Started,
    Running,
    Complete,
    Incomplete,
}

impl<'a> Message<'a> {
    pub fn log(level: LogLevel, message: &'a str) -> Self {
        Message::Log {
            log: LogMessage { level, message },
        }
    }

    pub fn stream_status(stream: &'a StreamDescriptor, status: StreamStatusKind) -> Self {
        Message::status_trace(StreamStatus {
            stream_descriptor: stream,
            status,
            reasons: None,
        })
    }

    /// RUNNING, rate limited until `quota_reset` (ms since the epoch) if known: the Airbyte UI
    /// shows it on the stream.
    pub fn rate_limited(stream: &'a StreamDescriptor, quota_reset: Option<i64>) -> Self {
        Message::status_trace(StreamStatus {
            stream_descriptor: stream,
            status: StreamStatusKind::Running,
            reasons: Some([StatusReason {
                kind: "RATE_LIMITED",
                rate_limited: RateLimited { quota_reset },
            }]),
        })
    }

    fn status_trace(status: StreamStatus<'a>) -> Self {
        Message::Trace {
            trace: Trace {
                kind: TraceKind::StreamStatus,
                emitted_at: now_ms(),
                error: None,
                stream_status: Some(status),
                analytics: None,
            },
        }
    }

    pub fn error(
        message: &'a str,
        internal_message: &'a str,
        failure_type: FailureType,
        stream: Option<&'a StreamDescriptor>,
    ) -> Self {
        Message::Trace {
            trace: Trace {
                kind: TraceKind::Error,
                emitted_at: now_ms(),
                error: Some(TraceError {
                    message,
                    internal_message,
                    failure_type,
                    stream_descriptor: stream,
                }),
                stream_status: None,
                analytics: None,
            },
        }
    }

    /// A TRACE ANALYTICS event (`kind`, `value`): recorded by the platform, never a failure.
    pub fn analytics(kind: &'a str, value: &'a str) -> Self {
        Message::Trace {
            trace: Trace {
                kind: TraceKind::Analytics,
                emitted_at: now_ms(),
                error: None,
                stream_status: None,
                analytics: Some(Analytics { kind, value }),
            },
        }
    }

    /// Appends this message as one compact JSON line, with any secret redacted (this is the
    /// one place every non-RECORD line passes: see `redact`).
    pub fn write_line(&self, out: &mut Vec<u8>) {
        let start = out.len();
        // Serialising our own types into a Vec cannot fail: no maps with non-string keys.
        serde_json::to_writer(&mut *out, self).expect("protocol message serialises");
        if convex::redact::contains_secret(&out[start..]) {
            let mut v: Value =
                serde_json::from_slice(&out[start..]).expect("a line we just wrote parses");
            convex::redact::redact_value(&mut v);
            out.truncate(start);
            serde_json::to_writer(&mut *out, &v).expect("a JSON value serialises");
        }
        out.push(b'\n');
    }

    pub fn to_line(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.write_line(&mut out);
        out
    }
}

// ---- Input: the configured catalog, parsed leniently (callers send nulls and unknown keys).

#[derive(Deserialize, Debug)]
pub struct ConfiguredCatalog {
    pub streams: Vec<ConfiguredStream>,
}

#[derive(Deserialize, Debug)]
pub struct ConfiguredStream {
    pub stream: ConfiguredStreamInfo,
    pub sync_mode: SyncMode,
}

#[derive(Deserialize, Debug)]
pub struct ConfiguredStreamInfo {
    pub name: String,
    pub namespace: Option<String>,
    /// The schema as configured: fewer properties than discovered means field selection.
    pub json_schema: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_exact_wire_shape() {
        let d = StreamDescriptor {
            name: "users".into(),
            namespace: None,
        };
        let line =
            String::from_utf8(Message::stream_status(&d, StreamStatusKind::Complete).to_line())
                .unwrap();
        assert!(
            line.starts_with(r#"{"type":"TRACE","trace":{"type":"STREAM_STATUS","emitted_at":"#)
        );
        assert!(line.ends_with(
            "\"stream_status\":{\"stream_descriptor\":{\"name\":\"users\",\"namespace\":null},\"status\":\"COMPLETE\"}}}\n"
        ));
        let limited =
            String::from_utf8(Message::rate_limited(&d, Some(1765000000000)).to_line()).unwrap();
        assert!(limited.ends_with(
            "\"status\":\"RUNNING\",\"reasons\":[{\"type\":\"RATE_LIMITED\",\"rate_limited\":{\"quota_reset\":1765000000000}}]}}}\n"
        ), "{limited}");
        let status = Message::ConnectionStatus {
            connection_status: ConnectionStatus {
                status: CheckStatus::Failed,
                message: Some("nope"),
            },
        };
        assert_eq!(
            String::from_utf8(status.to_line()).unwrap(),
            "{\"type\":\"CONNECTION_STATUS\",\"connectionStatus\":{\"status\":\"FAILED\",\"message\":\"nope\"}}\n"
        );
        let err = Message::error("m", "i", FailureType::ConfigError, Some(&d)).to_line();
        let v: Value = serde_json::from_slice(&err).unwrap();
        assert_eq!(v["trace"]["error"]["failure_type"], "config_error");
        assert_eq!(v["trace"]["error"]["stream_descriptor"]["name"], "users");
        assert!(v["trace"]["emitted_at"].is_i64());
    }

    /// A key echoed by a server reached TRACE messages, WARN logs and
    /// check's status. Every message type is redacted when its line is written.
    #[test]
    fn a_registered_key_never_leaves_in_a_message() {
        let key = "prod:protocol-test|c2VjcmV0LXRva2VuLWZvci1wcm90b2NvbA";
        convex::redact::register_secret(key);
        let echo = format!("401: BadAdminKey: header was Convex {key}");
        let d = StreamDescriptor {
            name: echo.clone(),
            namespace: None,
        };
        let lines = [
            Message::error(&echo, &echo, FailureType::ConfigError, Some(&d)).to_line(),
            Message::log(LogLevel::Warn, &echo).to_line(),
            Message::ConnectionStatus {
                connection_status: ConnectionStatus {
                    status: CheckStatus::Failed,
                    message: Some(&echo),
                },
            }
            .to_line(),
        ];
        for line in lines {
            let text = String::from_utf8(line).unwrap();
            assert!(
                !text.contains("c2VjcmV0LXRva2VuLWZvci1wcm90b2NvbA"),
                "{text}"
            );
            assert!(text.ends_with('\n') && text.matches('\n').count() == 1);
            let v: Value = serde_json::from_str(&text).unwrap();
            assert!(
                v.to_string().contains("header was Convex <redacted>"),
                "{v}"
            );
        }
    }

    #[test]
    fn configured_catalog_tolerates_nulls_and_unknown_keys() {
        let c: ConfiguredCatalog = serde_json::from_str(
            r#"{"streams":[{"stream":{"name":"a","namespace":null,"json_schema":{},"x":1},
                "sync_mode":"incremental","destination_sync_mode":"overwrite","cursor_field":null,
                "primary_key":null,"generation_id":1}],"extra":true}"#,
        )
        .unwrap();
        assert_eq!(c.streams[0].sync_mode, SyncMode::Incremental);
        assert!(serde_json::from_str::<ConfiguredCatalog>(
            r#"{"streams":[{"stream":{"name":"a"},"sync_mode":"INVALID"}]}"#
        )
        .is_err());
    }
}
