//! Convex values and their three wire encodings.
//!
//! Documents are encoded once, at write time, into the bytes the streaming export endpoints
//! send, so serving a page is a concatenation of stored bytes. This module holds the typed
//! value, the parser for Convex's encoded JSON (what tests hand in) and the three writers.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::error::{message_error, Error};

/// A Convex value. Objects keep their fields sorted by name, as Convex stores them.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Int64(i64),
    Float64(f64),
    Boolean(bool),
    String(String),
    Bytes(Vec<u8>),
    Array(Vec<Value>),
    Object(BTreeMap<String, Value>),
}

/// The fields of a document (without `_id`/`_creationTime`, which the emulator assigns).
pub type Fields = BTreeMap<String, Value>;

/// Value encodings of the `format` parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// `json` / `convex_clean_json` (default): int64 as decimal strings, bytes as base64.
    Clean,
    /// `convex_encoded_json` / `convex_json`: lossless `$integer`/`$float`/`$bytes` objects.
    Encoded,
    /// `export_json`: int64 as JSON numbers, bytes and non-finite floats as `$` objects.
    Export,
}

impl Format {
    /// Parses the `format` argument exactly as Convex's `ValueFormat::from_str` accepts it.
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "json" | "convex_clean_json" => Some(Format::Clean),
            "convex_encoded_json" | "convex_json" => Some(Format::Encoded),
            "export_json" => Some(Format::Export),
            _ => None,
        }
    }
}

message_error!(
    /// Why a value handed to the emulator was refused.
    ValueError
);

impl From<ValueError> for Error {
    fn from(e: ValueError) -> Self {
        Error(e.0)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, ValueError> {
    Err(ValueError(msg.into()))
}

// Convex's limits; enforcing them keeps the emulator from accepting data a real deployment
// would refuse (and bounds recursion depth in the encoders).
const MAX_DEPTH: usize = 64;
const MAX_ARRAY_LEN: usize = 8192;
const MAX_OBJECT_FIELDS: usize = 1024;

impl Value {
    /// Parses Convex's encoded JSON: a plain number is a float64, `{"$integer": b64}` an int64,
    /// `{"$float": b64}` a float64 from its little-endian bits, `{"$bytes": b64}` bytes.
    pub fn from_encoded_json(json: &serde_json::Value) -> Result<Value, ValueError> {
        Self::from_json_depth(json, 0)
    }

    fn from_json_depth(json: &serde_json::Value, depth: usize) -> Result<Value, ValueError> {
        if depth > MAX_DEPTH {
            return err("value is nested too deeply");
        }
        Ok(match json {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Boolean(*b),
            serde_json::Value::Number(n) => match n.as_f64() {
                Some(f) => Value::Float64(f),
                None => return err(format!("unrepresentable number {n}")),
            },
            serde_json::Value::String(s) => Value::String(s.clone()),
            serde_json::Value::Array(items) => {
                if items.len() > MAX_ARRAY_LEN {
                    return err("array has more than 8192 items");
                }
                Value::Array(
                    items
                        .iter()
                        .map(|v| Self::from_json_depth(v, depth + 1))
                        .collect::<Result<_, _>>()?,
                )
            }
            serde_json::Value::Object(map) => {
                if map.len() == 1 {
                    let (k, v) = map.iter().next().expect("len is 1");
                    if k.starts_with('$') {
                        return decode_special(k, v);
                    }
                }
                if map.len() > MAX_OBJECT_FIELDS {
                    return err("object has more than 1024 fields");
                }
                let mut out = BTreeMap::new();
                for (k, v) in map {
                    if k.starts_with('$') {
                        return err(format!("field name {k:?} starts with '$'"));
                    }
                    out.insert(k.clone(), Self::from_json_depth(v, depth + 1)?);
                }
                Value::Object(out)
            }
        })
    }

    /// Appends this value in the given encoding.
    pub fn write(&self, format: Format, out: &mut Vec<u8>) {
        match self {
            Value::Null => out.extend_from_slice(b"null"),
            Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Value::Int64(i) => match format {
                Format::Clean => {
                    out.push(b'"');
                    out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes());
                    out.push(b'"');
                }
                Format::Encoded => {
                    out.extend_from_slice(b"{\"$integer\":\"");
                    out.extend_from_slice(B64.encode(i.to_le_bytes()).as_bytes());
                    out.extend_from_slice(b"\"}");
                }
                Format::Export => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
            },
            Value::Float64(f) => write_float(*f, format, out),
            Value::String(s) => write_str(s, out),
            Value::Bytes(b) => match format {
                Format::Clean => {
                    out.push(b'"');
                    out.extend_from_slice(B64.encode(b).as_bytes());
                    out.push(b'"');
                }
                Format::Encoded | Format::Export => {
                    out.extend_from_slice(b"{\"$bytes\":\"");
                    out.extend_from_slice(B64.encode(b).as_bytes());
                    out.extend_from_slice(b"\"}");
                }
            },
            Value::Array(items) => {
                out.push(b'[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    v.write(format, out);
                }
                out.push(b']');
            }
            Value::Object(map) => {
                out.push(b'{');
                write_fields(map.iter(), format, out);
                out.push(b'}');
            }
        }
    }

    /// This value in the given encoding, as a `serde_json::Value`.
    pub fn to_json(&self, format: Format) -> serde_json::Value {
        let mut buf = Vec::new();
        self.write(format, &mut buf);
        // The writers only produce valid JSON; Null is an unreachable fallback.
        serde_json::from_slice(&buf).unwrap_or(serde_json::Value::Null)
    }
}

/// Writes `"k":v` pairs separated by commas (no braces).
pub fn write_fields<'a>(
    fields: impl Iterator<Item = (&'a String, &'a Value)>,
    format: Format,
    out: &mut Vec<u8>,
) {
    for (i, (k, v)) in fields.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(k, out);
        out.push(b':');
        v.write(format, out);
    }
}

fn decode_special(key: &str, v: &serde_json::Value) -> Result<Value, ValueError> {
    let Some(s) = v.as_str() else {
        return err(format!("{key} must hold a base64 string"));
    };
    let bytes = match B64.decode(s) {
        Ok(b) => b,
        Err(e) => return err(format!("{key}: invalid base64: {e}")),
    };
    match key {
        "$integer" => match <[u8; 8]>::try_from(bytes.as_slice()) {
            Ok(b) => Ok(Value::Int64(i64::from_le_bytes(b))),
            Err(_) => err("$integer must be 8 bytes"),
        },
        "$float" => match <[u8; 8]>::try_from(bytes.as_slice()) {
            Ok(b) => Ok(Value::Float64(f64::from_le_bytes(b))),
            Err(_) => err("$float must be 8 bytes"),
        },
        "$bytes" => Ok(Value::Bytes(bytes)),
        // Sets and maps were removed from Convex in Oct 2025.
        other => err(format!("unsupported special object {other}")),
    }
}

/// True for the float64 values the clean format cannot write as a JSON number, or (for
/// `-0.0`) the encoded format writes as `$float`.
pub fn is_special_float(f: f64) -> bool {
    !f.is_finite() || (f == 0.0 && f.is_sign_negative())
}

fn write_float(f: f64, format: Format, out: &mut Vec<u8>) {
    if f.is_finite() {
        let negative_zero = f == 0.0 && f.is_sign_negative();
        if negative_zero && format == Format::Encoded {
            write_float_bits(f, out);
        } else {
            write_finite(f, out);
        }
        return;
    }
    match format {
        Format::Clean => out.extend_from_slice(if f.is_nan() {
            b"\"NaN\""
        } else if f > 0.0 {
            b"\"Infinity\""
        } else {
            b"\"-Infinity\""
        }),
        Format::Encoded | Format::Export => write_float_bits(f, out),
    }
}

fn write_float_bits(f: f64, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"$float\":\"");
    out.extend_from_slice(B64.encode(f.to_le_bytes()).as_bytes());
    out.extend_from_slice(b"\"}");
}

/// Formats a finite float the way serde_json does (shortest round-trip, `1.0` keeps its `.0`,
/// `-0.0` stays `-0.0`), because Convex serialises through serde_json.
pub fn write_finite(f: f64, out: &mut Vec<u8>) {
    // serde_json never fails writing a finite f64 into a Vec.
    let _ = serde_json::to_writer(&mut *out, &f);
}

/// Writes a JSON string with serde_json's escaping (non-ASCII stays raw UTF-8).
pub fn write_str(s: &str, out: &mut Vec<u8>) {
    let _ = serde_json::to_writer(&mut *out, s);
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int64(v)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float64(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Boolean(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::String(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::String(v)
    }
}

/// Something that can become a document's user fields: a `serde_json::Value` object in
/// Convex's encoded JSON, a typed `Value::Object`, or a field map.
pub trait IntoFields {
    fn into_fields(self) -> Result<Fields, ValueError>;
}

impl IntoFields for Fields {
    fn into_fields(self) -> Result<Fields, ValueError> {
        Ok(self)
    }
}

impl IntoFields for Value {
    fn into_fields(self) -> Result<Fields, ValueError> {
        match self {
            Value::Object(m) => Ok(m),
            _ => err("a document must be an object"),
        }
    }
}

impl IntoFields for &serde_json::Value {
    fn into_fields(self) -> Result<Fields, ValueError> {
        Value::from_encoded_json(self)?.into_fields()
    }
}

impl IntoFields for serde_json::Value {
    fn into_fields(self) -> Result<Fields, ValueError> {
        (&self).into_fields()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn enc(v: &Value, f: Format) -> String {
        let mut b = Vec::new();
        v.write(f, &mut b);
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn clean_encoding_matches_convex() {
        assert_eq!(enc(&Value::Int64(5), Format::Clean), "\"5\"");
        assert_eq!(
            enc(&Value::Int64(i64::MIN), Format::Clean),
            "\"-9223372036854775808\""
        );
        assert_eq!(enc(&Value::Float64(f64::NAN), Format::Clean), "\"NaN\"");
        assert_eq!(
            enc(&Value::Float64(f64::INFINITY), Format::Clean),
            "\"Infinity\""
        );
        assert_eq!(
            enc(&Value::Float64(f64::NEG_INFINITY), Format::Clean),
            "\"-Infinity\""
        );
        assert_eq!(enc(&Value::Float64(-0.0), Format::Clean), "-0.0");
        assert_eq!(enc(&Value::Float64(1.0), Format::Clean), "1.0");
        assert_eq!(
            enc(&Value::Bytes(vec![0, 16, 131]), Format::Clean),
            "\"ABCD\""
        );
    }

    #[test]
    fn encoded_encoding_matches_convex() {
        assert_eq!(
            enc(&Value::Int64(5), Format::Encoded),
            r#"{"$integer":"BQAAAAAAAAA="}"#
        );
        assert_eq!(
            enc(&Value::Float64(-0.0), Format::Encoded),
            r#"{"$float":"AAAAAAAAAIA="}"#
        );
        assert_eq!(
            enc(&Value::Float64(f64::INFINITY), Format::Encoded),
            r#"{"$float":"AAAAAAAA8H8="}"#
        );
        assert_eq!(enc(&Value::Float64(2.5), Format::Encoded), "2.5");
        assert_eq!(enc(&Value::Int64(-7), Format::Export), "-7");
        assert_eq!(enc(&Value::Float64(-0.0), Format::Export), "-0.0");
    }

    #[test]
    fn encoded_json_round_trips() {
        let j = json!({"a": {"$integer": "BQAAAAAAAAA="}, "b": 1.5, "c": {"$bytes": "ABCD"},
                       "d": [null, true, "é"], "e": {"$float": "AAAAAAAA+H8="}});
        let v = Value::from_encoded_json(&j).unwrap();
        assert_eq!(v.to_json(Format::Encoded), j);
        assert!(Value::from_encoded_json(&json!({"$set": []})).is_err());
        assert!(Value::from_encoded_json(&json!({"$integer": "AA=="})).is_err());
        assert!(Value::from_encoded_json(&json!({"a": 1, "$b": 2})).is_err());
    }
}
