//! Turning one Convex document into one RECORD line, without re-serialising the document:
//! Convex's bytes are copied through and the CDC fields spliced in before its closing brace.
//!
//! With typed columns, a document arrives in `export_json` and is copied through the same way
//! unless it holds something its columns cannot take: a `$bytes`/`$float` object (written as
//! a base64 string, or `null` for NaN/±Infinity), or a top-level value of another type than
//! the catalog declares (written as `null`). Only such documents are rewritten, and every
//! value nulled is named in the record's `meta.changes`.

use std::collections::HashSet;

use crate::error::UserError;
use crate::messages;
use crate::protocol::{LogLevel, StreamDescriptor};
use crate::typed::declared::{same_bytes, Declared, Misfit};
use convex::encoding::{plain_bytes_only, transcode, unescape, Target};
use convex::page::{self, Member};
use convex::{ExportHead, TableRef, ValueMeta};

/// What one written record was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub ts: i64,
    pub deleted: bool,
}

/// How records carry values.
pub enum Columns {
    /// Convex's `json` values as they come, and the Python connector's `_ab_cdc_updated_at`.
    Legacy,
    /// `export_json` values in plain JSON, checked against the declared columns (`None`:
    /// the catalog declares none), and `_ab_cdc_*_at` as RFC 3339 instants.
    Typed(Option<Declared>),
}

/// Writes the records of one stream.
pub struct RecordWriter {
    /// `{"type":"RECORD","record":{"stream":…[,"namespace":…],"data":`
    prefix: Vec<u8>,
    table: TableRef,
    /// The metadata members written before a bare value's document.
    export_head: ExportHead,
    stream: String,
    updated_at: super::cdc_time::UpdatedAt,
    /// The end of a live record for the `emitted_at` of the last one written.
    tail: Tail,
    typed: Option<Typed>,
}

/// The typed-columns side of a writer.
struct Typed {
    declared: Option<Declared>,
    /// The documents that had to be rewritten, one at a time.
    scratch: Vec<u8>,
    /// The members of a document that came without them (a held change): found by the page
    /// parser's fast pass, which costs a third of walking the document member by member.
    members: Vec<Member>,
    /// Fields already told about (one line per stream and field, not per record).
    told: HashSet<String>,
}

/// Fields told about per stream, at most: beyond, one line says more were nulled.
const MAX_TOLD: usize = 32;

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
/// How every record line ends (after `emitted_at` or `meta`).
const LINE_END: &[u8] = b"}}\n";

impl Tail {
    fn get(&mut self, emitted_at: i64, with_deleted: bool) -> &[u8] {
        if self.emitted_at != Some(emitted_at) {
            self.bytes.clear();
            self.bytes.extend_from_slice(DELETED_FALSE);
            self.bytes
                .extend_from_slice(br#","_ab_cdc_deleted_at":null},"emitted_at":"#);
            self.bytes
                .extend_from_slice(itoa::Buffer::new().format(emitted_at).as_bytes());
            self.bytes.extend_from_slice(LINE_END);
            self.emitted_at = Some(emitted_at);
        }
        if with_deleted {
            &self.bytes
        } else {
            &self.bytes[DELETED_FALSE.len()..]
        }
    }
}

/// A value sent as `null`, for `meta.changes` and the line that tells the user.
struct Nulled {
    field: String,
    /// Declared and found kinds for a value that did not fit; `None`: NaN or ±Infinity.
    misfit: Option<(&'static str, &'static str)>,
}

impl RecordWriter {
    pub fn new(stream: &StreamDescriptor, table: TableRef, columns: Columns) -> Self {
        let mut prefix = br#"{"type":"RECORD","record":{"stream":"#.to_vec();
        serde_json::to_writer(&mut prefix, &stream.name).expect("string serialises");
        if let Some(ns) = &stream.namespace {
            prefix.extend_from_slice(br#","namespace":"#);
            serde_json::to_writer(&mut prefix, ns).expect("string serialises");
        }
        prefix.extend_from_slice(br#","data":"#);
        RecordWriter {
            prefix,
            export_head: ExportHead::new(&table),
            table,
            stream: stream.to_string(),
            updated_at: Default::default(),
            tail: Tail::default(),
            typed: match columns {
                Columns::Legacy => None,
                Columns::Typed(declared) => Some(Typed {
                    declared,
                    scratch: Vec::new(),
                    members: Vec::new(),
                    told: HashSet::new(),
                }),
            },
        }
    }

    /// Appends the RECORD line for `raw` (one element of a page's `values`) to `out`, and to
    /// `notices` a line for each field first seen nulled.
    ///
    /// Checks that the value belongs to this stream's table: a backend that ignores the table
    /// filter (convex-backend issue #302) must fail the stream, not mix tables silently.
    pub fn write(
        &mut self,
        raw: &[u8],
        meta: &ValueMeta<'_>,
        emitted_at: i64,
        out: &mut Vec<u8>,
        notices: &mut Vec<(LogLevel, String)>,
    ) -> Result<Written, UserError> {
        let table_ok = same_bytes(meta.table.as_bytes(), self.table.table.as_bytes());
        let component_ok = same_bytes(meta.component.as_bytes(), self.table.component.as_bytes());
        if !table_ok || !component_ok {
            return Err(UserError::system(messages::table_filter_ignored(
                &meta.table,
                &meta.component,
                &self.table,
            )));
        }
        let line_start = out.len();
        // One growth check for the whole line (the CDC fields and envelope are < 256 bytes).
        out.reserve(self.prefix.len() + raw.len() + 256);
        out.extend_from_slice(&self.prefix);
        let body_start = out.len();
        if meta.bare {
            let deleted = meta.deleted.unwrap_or(false);
            self.export_head.write(out, meta.ts, deleted);
        }
        let doc_start = out.len();
        let nulled = match &mut self.typed {
            None => {
                out.extend_from_slice(raw);
                Vec::new()
            }
            Some(t) => match t.write_doc(raw, meta.members, &self.table, out) {
                Ok(nulled) => nulled,
                Err(e) => {
                    out.truncate(line_start);
                    return Err(e);
                }
            },
        };
        // The page parser found it as a complete element; it must be an object.
        let document = &out[doc_start..];
        let is_object =
            document.first() == Some(&b'{') && document.iter().rposition(|&b| b == b'}').is_some();
        if !is_object {
            out.truncate(line_start);
            return Err(UserError::system(format!(
                "Convex sent a value of {} that is not a JSON object",
                self.table
            )));
        }
        if meta.bare {
            convex::join_head(out, doc_start);
        }
        // Its closing brace (the head's, for a bare document with no members of its own).
        let written = &out[body_start..];
        let close = written
            .iter()
            .rposition(|&b| b == b'}')
            .unwrap_or(written.len());
        let has_members = written
            .get(1..close)
            .is_some_and(|m| m.iter().any(|b| !b.is_ascii_whitespace()));
        out.truncate(body_start + close);
        if has_members {
            out.push(b',');
        }
        let mut ts_buf = itoa::Buffer::new();
        let ts = ts_buf.format(meta.ts);
        out.extend_from_slice(br#""_ab_cdc_lsn":"#);
        out.extend_from_slice(ts.as_bytes());
        out.extend_from_slice(br#","_ab_cdc_updated_at":""#);
        let mut when = [0u8; 27];
        let when = if self.typed.is_some() {
            self.updated_at.format_rfc3339(meta.ts, &mut when)
        } else {
            self.updated_at.format(meta.ts, &mut when)
        };
        out.extend_from_slice(when);
        out.push(b'"');
        let deleted = meta.deleted.unwrap_or(false);
        if deleted {
            out.extend_from_slice(br#","_ab_cdc_deleted_at":""#);
            out.extend_from_slice(when);
            out.extend_from_slice(br#""},"emitted_at":"#);
            out.extend_from_slice(itoa::Buffer::new().format(emitted_at).as_bytes());
            out.extend_from_slice(LINE_END);
        } else {
            // Snapshot values have no `_deleted`; deltas carry it and keep their own.
            out.extend_from_slice(self.tail.get(emitted_at, meta.deleted.is_none()));
        }
        if !nulled.is_empty() {
            out.truncate(out.len() - LINE_END.len());
            write_meta(&nulled, out);
            out.extend_from_slice(LINE_END);
            if let Some(t) = &mut self.typed {
                t.tell(&self.stream, &nulled, notices);
            }
        }
        Ok(Written {
            ts: meta.ts,
            deleted,
        })
    }
}

impl Typed {
    /// Appends the document as its record carries it to `out`: `raw` itself when every value
    /// fits, its `$bytes` spliced as strings when those are all it needs, else a rewritten copy.
    /// Returns what was nulled.
    fn write_doc(
        &mut self,
        raw: &[u8],
        members: Option<&[Member]>,
        table: &TableRef,
        out: &mut Vec<u8>,
    ) -> Result<Vec<Nulled>, UserError> {
        let mut misfits: Vec<Misfit<'_>> = Vec::new();
        if let Some(d) = &mut self.declared {
            let members = match members {
                Some(m) => Some(m),
                None => std::str::from_utf8(raw)
                    .ok()
                    .and_then(|text| page::prove(text, Some(&mut self.members)))
                    .map(|_| &self.members[..]),
            };
            d.misfits(raw, members, &mut misfits);
        }
        if misfits.is_empty() {
            // Where `"$` is, which begins every `$bytes`/`$float` object: found by its `$`, rare
            // in documents (a two-byte substring search costs more to set up per document).
            let mut dollars = memchr::memchr_iter(b'$', raw)
                .filter(|&at| at > 0 && raw[at - 1] == b'"')
                .map(|at| at - 1)
                .peekable();
            if dollars.peek().is_none() {
                out.extend_from_slice(raw);
                return Ok(Vec::new());
            }
            // Most `$` objects are bytes, which need no walk of the document.
            let start = out.len();
            if plain_bytes_only(raw, dollars, out) {
                return Ok(Vec::new());
            }
            out.truncate(start);
        }
        let keys: Vec<&[u8]> = misfits.iter().map(|m| m.raw_key).collect();
        self.scratch.clear();
        let found = transcode(raw, Target::Plain, &keys, &mut self.scratch).map_err(|e| {
            UserError::system(format!(
                "Convex sent a value of {table} that is not valid export_json ({e})"
            ))
        })?;
        out.extend_from_slice(&self.scratch);
        let mut nulled: Vec<Nulled> = misfits
            .iter()
            .map(|m| Nulled {
                field: unescape(m.raw_key)
                    .unwrap_or_else(|_| String::from_utf8_lossy(m.raw_key).into_owned()),
                misfit: Some((m.declared.name(), m.found.name())),
            })
            .collect();
        nulled.extend(found.not_representable.into_iter().map(|field| Nulled {
            field,
            misfit: None,
        }));
        Ok(nulled)
    }

    /// A misfit needs the user to act (a WARN); NaN and the infinities are what typed columns
    /// always do with them (an INFO).
    fn tell(&mut self, stream: &str, nulled: &[Nulled], notices: &mut Vec<(LogLevel, String)>) {
        for n in nulled {
            if self.told.len() > MAX_TOLD {
                return;
            }
            // One line per field, whatever array element it was in.
            let mut field = n.field.clone();
            while let Some(open) = field.find('[') {
                let close = field[open..]
                    .find(']')
                    .map_or(field.len(), |c| open + c + 1);
                field.replace_range(open..close, "");
            }
            if !self.told.insert(field.clone()) {
                continue;
            }
            notices.push(if self.told.len() > MAX_TOLD {
                (LogLevel::Warn, format!("Stream {stream}: more fields were sent as null; each record names its own in meta.changes."))
            } else {
                match n.misfit {
                    Some((declared, found)) => (
                        LogLevel::Warn,
                        messages::field_type_changed(stream, &field, found, declared),
                    ),
                    None => (LogLevel::Info, messages::field_not_a_number(stream, &field)),
                }
            });
        }
    }
}

/// `,"meta":{"changes":[…]}` for the values sent as null.
fn write_meta(nulled: &[Nulled], out: &mut Vec<u8>) {
    out.extend_from_slice(br#","meta":{"changes":["#);
    for (i, n) in nulled.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(br#"{"field":"#);
        // Serialising a str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, &n.field);
        out.extend_from_slice(br#","change":"NULLED","reason":"SOURCE_SERIALIZATION_ERROR"}"#);
    }
    out.extend_from_slice(b"]}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::typed::declared::Declared;
    use serde_json::{json, Value};

    /// Writes with the metadata serde finds, as an in-memory source would.
    fn write_json(
        w: &mut RecordWriter,
        raw: &[u8],
        emitted_at: i64,
        out: &mut Vec<u8>,
    ) -> Result<Written, UserError> {
        let meta = ValueMeta::from_json(raw).map_err(UserError::system)?;
        w.write(raw, &meta, emitted_at, out, &mut Vec::new())
    }

    fn users() -> RecordWriter {
        RecordWriter::new(
            &StreamDescriptor {
                name: "users".into(),
                namespace: None,
            },
            TableRef::root("users"),
            Columns::Legacy,
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
            Columns::Legacy,
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

    fn typed_users(declared: Value) -> RecordWriter {
        RecordWriter::new(
            &StreamDescriptor {
                name: "users".into(),
                namespace: None,
            },
            TableRef::root("users"),
            Columns::Typed(Declared::from_schema(&declared)),
        )
    }

    fn write_typed(w: &mut RecordWriter, raw: &str) -> (String, Vec<(LogLevel, String)>) {
        let mut out = Vec::new();
        let mut notices = Vec::new();
        let meta = ValueMeta::from_json(raw.as_bytes()).unwrap();
        w.write(raw.as_bytes(), &meta, 7, &mut out, &mut notices)
            .unwrap();
        (String::from_utf8(out).unwrap(), notices)
    }

    /// A bare document (a Data Sync value, see `convex::ValueMeta::bare`) gives the record of
    /// its whole value, byte for byte: typed or not, with or without members, empty, deleted,
    /// with a value that does not fit its column or with `$bytes`.
    #[test]
    fn bare_documents_give_the_records_of_their_whole_values() {
        let docs = [
            r#"{}"#,
            r#"{"_id":"j0","n":5,"s":"x"}"#,
            r#"{"_id":"j0","n":"five"}"#,
            r#"{"_id":"j0","b":{"$bytes":"AAEC"},"n":1}"#,
        ];
        let writers = || {
            [
                users(),
                typed_users(json!({"properties": {"n": {"type": "integer"}}})),
            ]
        };
        for doc in docs {
            for deleted in [false, true] {
                for with_members in [false, true] {
                    let mut members = Vec::new();
                    let proven =
                        with_members && convex::page::prove(doc, Some(&mut members)).is_some();
                    let meta = ValueMeta {
                        table: "users".into(),
                        component: "".into(),
                        id: "j0".into(),
                        ts: 1700000000000000123,
                        deleted: Some(deleted),
                        members: proven.then_some(&members[..]),
                        bare: true,
                    };
                    let whole = meta.whole(doc.as_bytes()).into_owned();
                    let whole_meta = ValueMeta {
                        bare: false,
                        members: None,
                        ..meta.clone()
                    };
                    for (mut bare_w, mut whole_w) in writers().into_iter().zip(writers()) {
                        let (mut a, mut b) = (Vec::new(), Vec::new());
                        let (mut na, mut nb) = (Vec::new(), Vec::new());
                        bare_w
                            .write(doc.as_bytes(), &meta, 7, &mut a, &mut na)
                            .unwrap();
                        whole_w
                            .write(&whole, &whole_meta, 7, &mut b, &mut nb)
                            .unwrap();
                        assert_eq!(String::from_utf8(a), String::from_utf8(b), "{doc}");
                        assert_eq!(na, nb, "{doc}");
                    }
                }
            }
        }
        // The whole value is the deltas shape: metadata first.
        let meta = ValueMeta {
            table: "users".into(),
            component: "".into(),
            id: "j0".into(),
            ts: 9,
            deleted: Some(true),
            members: None,
            bare: true,
        };
        assert_eq!(
            &*meta.whole(br#"{"_id":"j0"}"#),
            br#"{"_component":"","_table":"users","_ts":9,"_deleted":true,"_id":"j0"}"#
        );
        assert_eq!(
            &*meta.whole(b"{}"),
            br#"{"_component":"","_table":"users","_ts":9,"_deleted":true}"#
        );
    }

    #[test]
    fn typed_values_that_fit_pass_through_byte_for_byte() {
        let mut w = typed_users(
            json!({"properties": {"n": {"type": "integer"}, "f": {"type": ["null", "number"]}}}),
        );
        let raw = r#"{"_component":"","_table":"users","_ts":1700000000000000123,"_id":"j0","n":-9223372036854775808,"f":1.0,"s":"$x"}"#;
        let (line, notices) = write_typed(&mut w, raw);
        assert!(notices.is_empty());
        assert_eq!(
            line,
            concat!(
                r#"{"type":"RECORD","record":{"stream":"users","data":{"_component":"","_table":"users","_ts":1700000000000000123,"_id":"j0","n":-9223372036854775808,"f":1.0,"s":"$x","#,
                r#""_ab_cdc_lsn":1700000000000000123,"_ab_cdc_updated_at":"2023-11-14T22:13:20.000000Z","_deleted":false,"_ab_cdc_deleted_at":null},"emitted_at":7}}"#,
                "\n"
            )
        );
    }

    #[test]
    fn typed_values_json_cannot_hold_or_that_misfit_are_nulled_and_named() {
        let mut w = typed_users(
            json!({"properties": {"n": {"type": "integer"}, "f": {"type": "number"}, "b": {"type": "string"}}}),
        );
        let raw = r#"{"_component":"","_table":"users","_ts":1700000000000000123,"_deleted":false,"_id":"j0","n":"now text","f":{"$float":"AAAAAAAA+H8="},"b":{"$bytes":"AAEC"},"deep":[{"x":{"$float":"AAAAAAAA8H8="}}]}"#;
        let (line, notices) = write_typed(&mut w, raw);
        let v: Value = serde_json::from_str(&line).unwrap();
        let data = &v["record"]["data"];
        assert_eq!(data["n"], Value::Null);
        assert_eq!(data["f"], Value::Null);
        assert_eq!(data["b"], "AAEC");
        assert_eq!(data["deep"], json!([{"x": null}]));
        assert_eq!(data["_deleted"], false);
        assert_eq!(v["record"]["emitted_at"], 7);
        let changes: Vec<&str> = v["record"]["meta"]["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                assert_eq!(c["change"], "NULLED");
                assert_eq!(c["reason"], "SOURCE_SERIALIZATION_ERROR");
                c["field"].as_str().unwrap()
            })
            .collect();
        assert_eq!(changes, ["n", "f", "deep[0].x"]);
        assert_eq!(notices.len(), 3, "{notices:?}");
        assert_eq!(notices[0].0, LogLevel::Warn);
        assert!(
            notices[0]
                .1
                .contains("field `n` holds a string where the configured catalog declares integer"),
            "{}",
            notices[0].1
        );
        assert!(notices[0].1.contains("Refresh the source schema"));
        assert_eq!(notices[2].0, LogLevel::Info);
        assert!(
            notices[2]
                .1
                .contains("field `deep.x` holds NaN or an infinity"),
            "{}",
            notices[2].1
        );
        // Told once per stream and field.
        let (_, again) = write_typed(&mut w, raw);
        assert!(again.is_empty());
        // A delete keeps its shape.
        let (line, _) = write_typed(
            &mut w,
            r#"{"_component":"","_table":"users","_ts":1700000000000000123,"_deleted":true,"_id":"j0"}"#,
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            v["record"]["data"]["_ab_cdc_deleted_at"],
            "2023-11-14T22:13:20.000000Z"
        );
        assert!(v["record"].get("meta").is_none());
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
                assert_eq!(same_bytes(a.as_bytes(), b.as_bytes()), a == b, "{a} {b}");
            }
        }
        assert!(!same_bytes(b"abcdefghij", b"abcdefghiX"));
        assert!(!same_bytes(b"Xbcdefghij", b"abcdefghij"));
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
