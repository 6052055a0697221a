//! Turning one Convex document into one RECORD line, without re-serialising the document:
//! Convex's bytes are copied through and the CDC fields spliced in before its closing brace.

use crate::convex::{TableRef, ValueMeta};
use crate::error::UserError;
use crate::protocol::StreamDescriptor;

/// What one written record was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub ts: i64,
    pub deleted: bool,
}

/// Writes the records of one stream.
pub struct RecordWriter {
    /// `{"type":"RECORD","record":{"stream":…[,"namespace":…],"data":`
    prefix: Vec<u8>,
    table: TableRef,
    updated_at: super::cdc_time::UpdatedAt,
    /// The end of a live record for the `emitted_at` of the last one written.
    tail: Tail,
}

/// `","_deleted":false,"_ab_cdc_deleted_at":null},"emitted_at":<ms>}}` and a newline, and the
/// same without `_deleted` (deltas carry their own): the same bytes for every record of a
/// network chunk, so built once per chunk instead of piece by piece per record.
#[derive(Default)]
struct Tail {
    emitted_at: Option<i64>,
    /// Starts with `,"_deleted":false`; `[DELETED_FALSE.len()..]` is the one without it.
    bytes: Vec<u8>,
}

const DELETED_FALSE: &[u8] = br#","_deleted":false"#;

impl Tail {
    fn get(&mut self, emitted_at: i64, with_deleted: bool) -> &[u8] {
        if self.emitted_at != Some(emitted_at) {
            self.bytes.clear();
            self.bytes.extend_from_slice(DELETED_FALSE);
            self.bytes
                .extend_from_slice(br#","_ab_cdc_deleted_at":null},"emitted_at":"#);
            self.bytes
                .extend_from_slice(itoa::Buffer::new().format(emitted_at).as_bytes());
            self.bytes.extend_from_slice(b"}}\n");
            self.emitted_at = Some(emitted_at);
        }
        if with_deleted {
            &self.bytes
        } else {
            &self.bytes[DELETED_FALSE.len()..]
        }
    }
}

impl RecordWriter {
    pub fn new(stream: &StreamDescriptor, table: TableRef) -> Self {
        let mut prefix = br#"{"type":"RECORD","record":{"stream":"#.to_vec();
        serde_json::to_writer(&mut prefix, &stream.name).expect("string serialises");
        if let Some(ns) = &stream.namespace {
            prefix.extend_from_slice(br#","namespace":"#);
            serde_json::to_writer(&mut prefix, ns).expect("string serialises");
        }
        prefix.extend_from_slice(br#","data":"#);
        RecordWriter {
            prefix,
            table,
            updated_at: Default::default(),
            tail: Tail::default(),
        }
    }

    /// Appends the RECORD line for `raw` (one element of a page's `values`) to `out`.
    ///
    /// Checks that the value belongs to this stream's table: a backend that ignores the table
    /// filter (convex-backend issue #302) must fail the stream, not mix tables silently.
    pub fn write(
        &mut self,
        raw: &[u8],
        meta: &ValueMeta<'_>,
        emitted_at: i64,
        out: &mut Vec<u8>,
    ) -> Result<Written, UserError> {
        let table_ok = same(meta.table.as_bytes(), self.table.table.as_bytes());
        let component_ok = same(meta.component.as_bytes(), self.table.component.as_bytes());
        if !table_ok || !component_ok {
            return Err(UserError::system(format!(
                "Convex returned a document of table {:?} (component {:?}) when asked for {}: the deployment ignored the table filter (see get-convex/convex-backend issue #302). The stream was stopped instead of mixing tables; upgrade or contact Convex support.",
                meta.table, meta.component,
                self.table
            )));
        }
        // The page parser found it as a complete element; it must be an object.
        let close = raw
            .iter()
            .rposition(|&b| b == b'}')
            .filter(|_| raw.first() == Some(&b'{'))
            .ok_or_else(|| {
                UserError::system(format!(
                    "Convex sent a value of {} that is not a JSON object",
                    self.table
                ))
            })?;
        let body = &raw[..close];
        // One growth check for the whole line (the CDC fields and envelope are < 256 bytes).
        out.reserve(self.prefix.len() + body.len() + 256);
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(body);
        if body[1..].iter().any(|b| !b.is_ascii_whitespace()) {
            out.push(b',');
        }
        let mut ts_buf = itoa::Buffer::new();
        let ts = ts_buf.format(meta.ts);
        out.extend_from_slice(br#""_ab_cdc_lsn":"#);
        out.extend_from_slice(ts.as_bytes());
        out.extend_from_slice(br#","_ab_cdc_updated_at":""#);
        let mut when = [0u8; 26];
        let when = self.updated_at.format(meta.ts, &mut when);
        out.extend_from_slice(when);
        out.push(b'"');
        let deleted = meta.deleted.unwrap_or(false);
        if deleted {
            out.extend_from_slice(br#","_ab_cdc_deleted_at":""#);
            out.extend_from_slice(when);
            out.extend_from_slice(br#""},"emitted_at":"#);
            out.extend_from_slice(itoa::Buffer::new().format(emitted_at).as_bytes());
            out.extend_from_slice(b"}}\n");
        } else {
            // Snapshot values have no `_deleted`; deltas carry it and keep their own.
            out.extend_from_slice(self.tail.get(emitted_at, meta.deleted.is_none()));
        }
        Ok(Written {
            ts: meta.ts,
            deleted,
        })
    }
}

/// `a == b`, for the short names of tables: without a call to `memcmp`, whose (vectorised)
/// set-up cost more than the comparison itself in profiles (a tenth of the record loop).
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut words_a = a.chunks_exact(8);
    let mut words_b = b.chunks_exact(8);
    for (x, y) in (&mut words_a).zip(&mut words_b) {
        if u64::from_ne_bytes(x.try_into().unwrap_or_default())
            != u64::from_ne_bytes(y.try_into().unwrap_or_default())
        {
            return false;
        }
    }
    let mut diff = 0;
    for (x, y) in words_a.remainder().iter().zip(words_b.remainder()) {
        diff |= x ^ y;
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// Writes with the metadata serde finds, as an in-memory source would.
    fn write_json(
        w: &mut RecordWriter,
        raw: &[u8],
        emitted_at: i64,
        out: &mut Vec<u8>,
    ) -> Result<Written, UserError> {
        let meta = ValueMeta::from_json(raw).map_err(UserError::system)?;
        w.write(raw, &meta, emitted_at, out)
    }

    fn users() -> RecordWriter {
        RecordWriter::new(
            &StreamDescriptor {
                name: "users".into(),
                namespace: None,
            },
            TableRef::root("users"),
        )
    }

    #[test]
    fn snapshot_values_pass_through_byte_for_byte() {
        let raw = r#"{"_component":"","_table":"users","_ts":1700000000000000123,"_creationTime":1699999000000.0,"_id":"j0","name":"us\u00e9rs-é","balance":"-5000000000","note":null}"#.as_bytes();
        let mut out = Vec::new();
        let w = write_json(&mut users(), raw, 1795500651484, &mut out).unwrap();
        assert_eq!(
            w,
            Written {
                ts: 1700000000000000123,
                deleted: false
            }
        );
        let line = String::from_utf8(out).unwrap();
        assert_eq!(
            line,
            concat!(
                r#"{"type":"RECORD","record":{"stream":"users","data":{"_component":"","_table":"users","_ts":1700000000000000123,"_creationTime":1699999000000.0,"_id":"j0","name":"us\u00e9rs-é","balance":"-5000000000","note":null,"#,
                r#""_ab_cdc_lsn":1700000000000000123,"_ab_cdc_updated_at":"2023-11-14T22:13:20","_deleted":false,"_ab_cdc_deleted_at":null},"emitted_at":1795500651484}}"#,
                "\n"
            )
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            v["record"]["data"]["_ab_cdc_lsn"].as_i64(),
            Some(1700000000000000123)
        );
    }

    #[test]
    fn deletes_keep_their_deleted_flag_and_get_a_deleted_at() {
        let raw = br#"{"_component":"","_table":"users","_ts":1700000000000000500,"_deleted":true,"_id":"j1"}"#;
        let mut out = Vec::new();
        let w = write_json(&mut users(), raw, 1, &mut out).unwrap();
        assert!(w.deleted);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v["record"]["data"],
            json!({"_component":"","_table":"users","_ts":1700000000000000500u64,"_deleted":true,"_id":"j1",
                   "_ab_cdc_lsn":1700000000000000500u64,"_ab_cdc_updated_at":"2023-11-14T22:13:20",
                   "_ab_cdc_deleted_at":"2023-11-14T22:13:20"})
        );
        // No duplicate `_deleted` key.
        assert_eq!(
            String::from_utf8(out)
                .unwrap()
                .matches("\"_deleted\"")
                .count(),
            1
        );
    }

    /// One writer, its records' `emitted_at` and deleted flag changing from one to the next:
    /// every line says its own (the end of live records is kept between them).
    #[test]
    fn each_record_ends_with_its_own_emitted_at_and_deleted_flag() {
        let mut w = users();
        let mut rng = fastrand::Rng::with_seed(5);
        for i in 0..200 {
            let emitted_at = 1_795_500_651_000 + i64::from(rng.u8(..3));
            let deleted = [None, Some(false), Some(true)][rng.usize(..3)];
            let flag = deleted.map_or(String::new(), |d| format!(r#","_deleted":{d}"#));
            let raw =
                format!(r#"{{"_table":"users","_ts":1700000000000000500{flag},"_id":"j{i}"}}"#);
            let mut out = Vec::new();
            write_json(&mut w, raw.as_bytes(), emitted_at, &mut out).unwrap();
            let line = String::from_utf8(out).unwrap();
            assert_eq!(line.matches('\n').count(), 1, "{line}");
            assert_eq!(line.matches("\"_deleted\"").count(), 1, "{line}");
            let v: Value = serde_json::from_str(&line).unwrap();
            let data = &v["record"]["data"];
            assert_eq!(v["record"]["emitted_at"], json!(emitted_at), "{line}");
            assert_eq!(data["_id"], json!(format!("j{i}")));
            assert_eq!(data["_deleted"], json!(deleted == Some(true)), "{line}");
            let deleted_at = if deleted == Some(true) {
                json!("2023-11-14T22:13:20")
            } else {
                Value::Null
            };
            assert_eq!(data["_ab_cdc_deleted_at"], deleted_at, "{line}");
        }
    }

    #[test]
    fn component_streams_carry_their_namespace() {
        let mut w = RecordWriter::new(
            &StreamDescriptor {
                name: "betterAuth/users".into(),
                namespace: Some("betterAuth".into()),
            },
            TableRef {
                component: "betterAuth".into(),
                table: "users".into(),
            },
        );
        let mut out = Vec::new();
        write_json(
            &mut w,
            br#"{"_component":"betterAuth","_table":"users","_ts":5,"_id":"b"}"#,
            1,
            &mut out,
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["record"]["namespace"], "betterAuth");
        assert_eq!(v["record"]["stream"], "betterAuth/users");
        // The root table of the same name is a different stream.
        let err = write_json(
            &mut users(),
            br#"{"_component":"betterAuth","_table":"users","_ts":5,"_id":"b"}"#,
            1,
            &mut out,
        )
        .unwrap_err();
        assert!(err.message.contains("#302"), "{}", err.message);
    }

    #[test]
    fn foreign_tables_and_garbage_are_refused() {
        let mut out = Vec::new();
        let err = write_json(
            &mut users(),
            br#"{"_component":"","_table":"messages","_ts":5,"_id":"x"}"#,
            1,
            &mut out,
        )
        .unwrap_err();
        assert!(err.message.contains("ignored the table filter"));
        for bad in [
            &br#"{"_table":"users","_ts":"5"}"#[..],
            b"[1]",
            br#"{"_table":"users"}"#,
            b"12",
        ] {
            assert!(write_json(&mut users(), bad, 1, &mut out).is_err());
        }
        assert!(out.is_empty(), "nothing is written for a refused value");
    }

    #[test]
    fn names_compare_as_bytes() {
        let names = [
            "",
            "a",
            "users",
            "usert",
            "messages",
            "messagesX",
            "é",
            "0123456789abcdef",
        ];
        for a in names {
            for b in names {
                assert_eq!(same(a.as_bytes(), b.as_bytes()), a == b, "{a} {b}");
            }
        }
        assert!(!same(b"abcdefghij", b"abcdefghiX"));
        assert!(!same(b"Xbcdefghij", b"abcdefghij"));
    }

    #[test]
    fn whitespace_inside_values_is_tolerated() {
        let mut out = Vec::new();
        write_json(
            &mut users(),
            b"{ \"_table\" : \"users\" , \"_ts\" : 7 , \"_id\" : \"w\" }",
            1,
            &mut out,
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["record"]["data"]["_ab_cdc_lsn"], 7);
    }
}
