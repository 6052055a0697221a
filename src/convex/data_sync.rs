//! Convex's Data Sync API (`POST /api/v1/data/sync`, and `POST
//! /api/data_sync_cursor_from_deltas` to move a legacy position onto it), as a second backend
//! beside `list_snapshot` / `document_deltas`.
//!
//! A data sync is an endless series of pages, each with an opaque cursor for the next. A page
//! either walks one table by `_id` (while a table is being snapshotted) or follows the
//! document log; `status` says when the pages so far add up to a consistent copy
//! (`stale` / `upToDate`, at `snapshotTs`). `truncates` name tables whose earlier rows are void
//! (a cold start, or a table replaced by an import or re-created).
//!
//! Values arrive in Convex's `export_json` encoding inside an envelope. This module hands the
//! engine every value in the shape the legacy endpoints give with `format=json` (int64 as a
//! decimal string, bytes as base64, NaN and infinities as strings, and the `_component`,
//! `_table`, `_ts`, `_deleted` members), so streams and records are the same on both APIs.
//!
//! A page is held whole while it is converted: Convex bounds one at 16,384 entries / 64 MiB
//! of values (more only for a single larger transaction), and [`MAX_PAGE_BODY_BYTES`] refuses
//! anything beyond reason.

use std::borrow::Cow;
use std::future::Future;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{ConvexError, DeltaCursor, Selection, SnapshotTs, TableRef};

pub const DATA_SYNC: &str = "/api/v1/data/sync";
pub const CURSOR_FROM_DELTAS: &str = "/api/data_sync_cursor_from_deltas";

/// One data sync page is read whole, up to this size (Convex's own page target is 64 MiB of
/// values; one transaction larger than that still comes in one page).
pub const MAX_PAGE_BODY_BYTES: usize = 1 << 30;

/// A Data Sync cursor: opaque, sealed by the deployment, different text for the same position
/// each time (never compare two), valid for the retention window (3 days on Convex Cloud).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataSyncCursor(pub String);

/// Convex error codes of the Data Sync API the engine reacts to.
pub mod codes {
    pub const CURSOR_EXPIRED: &str = "DataSyncCursorExpired";
    pub const INVALID_CURSOR: &str = "InvalidDataSyncCursor";
}

/// Where the sync stands after a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncStatus {
    /// A table is still being walked: the pages so far are not a consistent copy yet.
    Snapshotting,
    /// Consistent at the timestamp; more changes are already waiting.
    Stale(SnapshotTs),
    /// Consistent at the timestamp, which is the deployment's latest.
    UpToDate(SnapshotTs),
}

impl SyncStatus {
    /// The timestamp the pages so far are a consistent copy at, if they are one.
    pub fn consistent_at(self) -> Option<SnapshotTs> {
        match self {
            SyncStatus::Snapshotting => None,
            SyncStatus::Stale(t) | SyncStatus::UpToDate(t) => Some(t),
        }
    }
}

/// One value of a page, converted to the legacy `json` shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncValue {
    pub table: TableRef,
    pub id: String,
    /// Commit timestamp of this revision.
    pub ts: i64,
    pub deleted: bool,
    /// `{"_component":…,"_table":…,"_ts":…,"_deleted":…, <fields>}`: what `document_deltas`
    /// would send for this revision.
    pub raw: Vec<u8>,
}

/// One page of a data sync.
#[derive(Debug, Clone)]
pub struct SyncPage {
    pub status: SyncStatus,
    /// Tables whose previously synced rows are void, before this page's values apply.
    pub truncates: Vec<TableRef>,
    pub values: Vec<SyncValue>,
    pub sync_id: String,
    pub next: DataSyncCursor,
}

/// The Data Sync API as the read engine sees it.
pub trait DataSyncApi: Send + Sync + 'static {
    /// The page after `cursor` (`None` = a cold start) of `selection`.
    fn data_sync(
        &self,
        selection: &Selection,
        cursor: Option<&DataSyncCursor>,
    ) -> impl Future<Output = Result<SyncPage, ConvexError>> + Send;

    /// A cursor that treats every revision at or before `cursor` of the tables of
    /// `selection` as synced: a legacy position moved onto the Data Sync API.
    fn cursor_from_deltas(
        &self,
        selection: &Selection,
        cursor: DeltaCursor,
    ) -> impl Future<Output = Result<DataSyncCursor, ConvexError>> + Send;
}

/// The request body of a page.
pub fn sync_body(selection: &Selection, cursor: Option<&DataSyncCursor>) -> String {
    let mut body = serde_json::Map::new();
    if let Some(c) = cursor {
        body.insert("cursor".into(), c.0.clone().into());
    }
    body.insert("selection".into(), selection.to_json());
    serde_json::Value::Object(body).to_string()
}

/// The request body of a conversion.
pub fn from_deltas_body(selection: &Selection, cursor: DeltaCursor) -> String {
    serde_json::json!({"cursor": cursor.0, "selection": selection.to_json()}).to_string()
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
enum WireStatus {
    Snapshotting,
    Stale {
        #[serde(rename = "snapshotTs")]
        snapshot_ts: i64,
    },
    UpToDate {
        #[serde(rename = "snapshotTs")]
        snapshot_ts: i64,
    },
}

#[derive(Deserialize)]
struct WireTable<'a> {
    #[serde(borrow)]
    component: Cow<'a, str>,
    #[serde(borrow)]
    table: Cow<'a, str>,
}

#[derive(Deserialize)]
struct WireValue<'a> {
    #[serde(borrow)]
    component: Cow<'a, str>,
    #[serde(borrow)]
    table: Cow<'a, str>,
    ts: i64,
    deleted: bool,
    #[serde(borrow)]
    value: &'a RawValue,
}

#[derive(Deserialize)]
struct WirePagination {
    #[serde(rename = "nextCursor")]
    next_cursor: String,
}

#[derive(Deserialize)]
struct WirePage<'a> {
    status: WireStatus,
    #[serde(borrow, default)]
    truncates: Vec<WireTable<'a>>,
    #[serde(borrow)]
    values: Vec<WireValue<'a>>,
    #[serde(rename = "syncId", default)]
    sync_id: String,
    pagination: WirePagination,
}

/// Parses and converts one page body.
pub fn parse_page(body: &[u8]) -> Result<SyncPage, String> {
    let wire: WirePage<'_> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let status = match wire.status {
        WireStatus::Snapshotting => SyncStatus::Snapshotting,
        WireStatus::Stale { snapshot_ts } => SyncStatus::Stale(SnapshotTs(snapshot_ts)),
        WireStatus::UpToDate { snapshot_ts } => SyncStatus::UpToDate(SnapshotTs(snapshot_ts)),
    };
    if wire.pagination.next_cursor.is_empty() {
        return Err("the page has an empty `pagination.nextCursor`".into());
    }
    let mut values = Vec::with_capacity(wire.values.len());
    for v in wire.values {
        let table = TableRef {
            component: v.component.into_owned(),
            table: v.table.into_owned(),
        };
        let converted = to_legacy(&table, v.ts, v.deleted, v.value.get().as_bytes())
            .map_err(|e| format!("a value of {table} at {}: {e}", v.ts))?;
        values.push(SyncValue {
            table,
            id: converted.id,
            ts: v.ts,
            deleted: v.deleted,
            raw: converted.raw,
        });
    }
    Ok(SyncPage {
        status,
        truncates: wire
            .truncates
            .into_iter()
            .map(|t| TableRef {
                component: t.component.into_owned(),
                table: t.table.into_owned(),
            })
            .collect(),
        values,
        sync_id: wire.sync_id,
        next: DataSyncCursor(wire.pagination.next_cursor),
    })
}

/// Parses `{"cursor": "<data sync cursor>"}`.
pub fn parse_converted(body: &[u8]) -> Result<DataSyncCursor, String> {
    #[derive(Deserialize)]
    struct Converted {
        cursor: String,
    }
    let c: Converted = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if c.cursor.is_empty() {
        return Err("the conversion answered an empty cursor".into());
    }
    Ok(DataSyncCursor(c.cursor))
}

struct Converted {
    id: String,
    raw: Vec<u8>,
}

/// One `export_json` document (already valid JSON: serde parsed it) → the legacy `json`
/// shape with its metadata members, and its `_id`.
fn to_legacy(table: &TableRef, ts: i64, deleted: bool, value: &[u8]) -> Result<Converted, String> {
    let value = value.trim_ascii();
    if value.first() != Some(&b'{') {
        return Err("the value is not a JSON object".into());
    }
    let mut raw = Vec::with_capacity(value.len() + 96 + table.table.len());
    raw.extend_from_slice(b"{\"_component\":");
    write_json_str(&table.component, &mut raw);
    raw.extend_from_slice(b",\"_table\":");
    write_json_str(&table.table, &mut raw);
    raw.extend_from_slice(b",\"_ts\":");
    raw.extend_from_slice(itoa::Buffer::new().format(ts).as_bytes());
    raw.extend_from_slice(if deleted {
        b",\"_deleted\":true"
    } else {
        b",\"_deleted\":false"
    });
    // The value is transcoded in place after the metadata; its `{` then becomes the `,`
    // that joins its members to them (or goes, with its whitespace, if it has none).
    let start = raw.len();
    let id = Transcoder::new(value, &mut raw).object_top()?;
    let id = id.ok_or("the value has no `_id` string")?;
    let members = raw.get(start + 1..raw.len() - 1).unwrap_or_default();
    if members.iter().all(u8::is_ascii_whitespace) {
        raw.truncate(start);
        raw.push(b'}');
    } else {
        raw[start] = b',';
    }
    Ok(Converted { id, raw })
}

fn write_json_str(s: &str, out: &mut Vec<u8>) {
    // Serialising a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Rewrites `export_json` into the legacy `json` encoding, copying everything else byte for
/// byte: an integer number (int64) becomes a decimal string, `{"$bytes": b}` becomes `b`, and
/// `{"$float": <8 LE bytes>}` becomes `"NaN"`, `"Infinity"` or `"-Infinity"` (or the number,
/// for a finite one). User keys cannot start with `$`, so such objects are unambiguous.
struct Transcoder<'a, 'o> {
    src: &'a [u8],
    at: usize,
    out: &'o mut Vec<u8>,
    depth: usize,
}

/// Deeper nesting than Convex allows (64 levels) is refused rather than recursed into.
const MAX_DEPTH: usize = 128;

impl<'a, 'o> Transcoder<'a, 'o> {
    fn new(src: &'a [u8], out: &'o mut Vec<u8>) -> Self {
        Transcoder {
            src,
            at: 0,
            out,
            depth: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.src.get(self.at).copied()
    }

    fn ws(&mut self) {
        while let Some(b) = self.peek() {
            if !b.is_ascii_whitespace() {
                break;
            }
            self.out.push(b);
            self.at += 1;
        }
    }

    fn expect(&mut self, b: u8) -> Result<(), String> {
        if self.peek() != Some(b) {
            return Err(format!("expected {:?} at byte {}", b as char, self.at));
        }
        self.out.push(b);
        self.at += 1;
        Ok(())
    }

    /// The top-level object; returns its `_id` string.
    fn object_top(mut self) -> Result<Option<String>, String> {
        let mut id = None;
        self.object(Some(&mut id))?;
        Ok(id)
    }

    /// A string, copied verbatim; returns its raw content (between the quotes).
    fn string(&mut self) -> Result<&'a [u8], String> {
        let start = self.at;
        self.expect(b'"')?;
        loop {
            match self.peek() {
                None => return Err("unterminated string".into()),
                Some(b'\\') => self.at += 2,
                Some(b'"') => {
                    self.at += 1;
                    break;
                }
                Some(_) => self.at += 1,
            }
        }
        let end = self.at.min(self.src.len());
        self.out.extend_from_slice(&self.src[start + 1..end]);
        Ok(&self.src[start + 1..end - 1])
    }

    fn value(&mut self) -> Result<(), String> {
        match self.peek() {
            Some(b'{') => self.object(None),
            Some(b'[') => self.array(),
            Some(b'"') => self.string().map(|_| ()),
            Some(b'-' | b'0'..=b'9') => {
                self.number();
                Ok(())
            }
            Some(b't' | b'f' | b'n') => {
                while let Some(b'a'..=b'z') = self.peek() {
                    self.out.push(self.src[self.at]);
                    self.at += 1;
                }
                Ok(())
            }
            other => Err(format!(
                "unexpected {:?} at byte {}",
                other.map(char::from),
                self.at
            )),
        }
    }

    fn number(&mut self) {
        let start = self.at;
        while let Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
        let token = &self.src[start..self.at];
        // serde_json writes every float with a fraction or exponent; a bare integer is int64.
        let integer = !token.iter().any(|b| matches!(b, b'.' | b'e' | b'E'));
        if integer {
            self.out.push(b'"');
            self.out.extend_from_slice(token);
            self.out.push(b'"');
        } else {
            self.out.extend_from_slice(token);
        }
    }

    fn array(&mut self) -> Result<(), String> {
        self.enter()?;
        self.expect(b'[')?;
        self.ws();
        if self.peek() == Some(b']') {
            self.expect(b']')?;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            self.ws();
            self.value()?;
            self.ws();
            match self.peek() {
                Some(b',') => self.expect(b',')?,
                _ => break,
            }
        }
        self.expect(b']')?;
        self.depth -= 1;
        Ok(())
    }

    fn enter(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        Ok(())
    }

    /// An object; `id` (top level only) receives the `_id` member's string.
    fn object(&mut self, mut id: Option<&mut Option<String>>) -> Result<(), String> {
        if id.is_none() && self.encoded()? {
            return Ok(());
        }
        self.enter()?;
        self.expect(b'{')?;
        self.ws();
        if self.peek() == Some(b'}') {
            self.expect(b'}')?;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            self.ws();
            let key = self.string()?;
            self.ws();
            self.expect(b':')?;
            self.ws();
            match id.as_deref_mut() {
                Some(slot) if key == b"_id" && self.peek() == Some(b'"') => {
                    let raw = self.string()?;
                    *slot = Some(unescape(raw)?);
                }
                _ => self.value()?,
            }
            self.ws();
            match self.peek() {
                Some(b',') => self.expect(b',')?,
                _ => break,
            }
        }
        self.expect(b'}')?;
        self.depth -= 1;
        Ok(())
    }

    /// `{"$bytes": …}` / `{"$float": …}` at the cursor: writes its legacy form and returns
    /// true; anything else leaves the cursor alone and returns false.
    fn encoded(&mut self) -> Result<bool, String> {
        let Some((tag, payload, end)) = encoded_object(self.src, self.at) else {
            return Ok(false);
        };
        match tag {
            Tag::Bytes => {
                self.out.push(b'"');
                self.out.extend_from_slice(payload);
                self.out.push(b'"');
            }
            Tag::Float => {
                let f = decode_float(payload).ok_or_else(|| {
                    format!(
                        "a $float payload {:?} is not 8 bytes of base64",
                        String::from_utf8_lossy(payload)
                    )
                })?;
                if f.is_nan() {
                    self.out.extend_from_slice(b"\"NaN\"");
                } else if f.is_infinite() {
                    self.out.extend_from_slice(if f > 0.0 {
                        b"\"Infinity\""
                    } else {
                        b"\"-Infinity\""
                    });
                } else {
                    // A finite $float (Convex sends those only for -0.0 in other encodings).
                    let n = serde_json::Number::from_f64(f).ok_or("a non-finite float")?;
                    self.out.extend_from_slice(n.to_string().as_bytes());
                }
            }
        }
        self.at = end;
        Ok(true)
    }
}

enum Tag {
    Bytes,
    Float,
}

/// Recognises `{ "$bytes" : "…" }` or `{ "$float" : "…" }` starting at `at`: the tag, the
/// string's raw content and the index after the closing brace.
fn encoded_object(src: &[u8], at: usize) -> Option<(Tag, &[u8], usize)> {
    let skip = |mut i: usize| {
        while src.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        i
    };
    let mut i = skip(at + 1);
    let rest = src.get(i..)?;
    let tag = if rest.starts_with(b"\"$bytes\"") {
        Tag::Bytes
    } else if rest.starts_with(b"\"$float\"") {
        Tag::Float
    } else {
        return None;
    };
    i = skip(i + 8);
    if src.get(i) != Some(&b':') {
        return None;
    }
    i = skip(i + 1);
    if src.get(i) != Some(&b'"') {
        return None;
    }
    let start = i + 1;
    // Base64 has no quotes or escapes.
    let len = src.get(start..)?.iter().position(|&b| b == b'"')?;
    let payload = &src[start..start + len];
    i = skip(start + len + 1);
    if src.get(i) != Some(&b'}') {
        return None;
    }
    Some((tag, payload, i + 1))
}

/// Standard base64 of exactly 8 little-endian bytes → f64.
fn decode_float(b64: &[u8]) -> Option<f64> {
    let digit = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        })
    };
    // 8 bytes = 12 characters with one `=` of padding.
    if b64.len() != 12 || b64[11] != b'=' {
        return None;
    }
    let mut bytes = Vec::with_capacity(9);
    for chunk in b64[..8].chunks(4) {
        let mut n = 0u32;
        for &c in chunk {
            n = (n << 6) | digit(c)?;
        }
        bytes.extend_from_slice(&n.to_be_bytes()[1..]);
    }
    let mut n = 0u32;
    for &c in &b64[8..11] {
        n = (n << 6) | digit(c)?;
    }
    n <<= 6;
    bytes.extend_from_slice(&n.to_be_bytes()[1..3]);
    let arr: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    Some(f64::from_le_bytes(arr))
}

/// A JSON string's raw content → the string.
fn unescape(raw: &[u8]) -> Result<String, String> {
    if !raw.contains(&b'\\') {
        return std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|e| e.to_string());
    }
    let mut quoted = Vec::with_capacity(raw.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(raw);
    quoted.push(b'"');
    serde_json::from_slice(&quoted).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn convert(value: &str) -> Value {
        let c = to_legacy(
            &TableRef::root("users"),
            1770335566197682922,
            false,
            value.as_bytes(),
        )
        .unwrap();
        serde_json::from_slice(&c.raw).unwrap()
    }

    #[test]
    fn export_json_becomes_the_legacy_json_shape() {
        let v = convert(
            r#"{"_creationTime":1770335566197.5,"_id":"jd7a","age":33,"big":-9223372036854775808,"f":1.0,"z":-0.0,"e":1e300,"b":{"$bytes":"AAEC"},"nan":{"$float":"AAAAAAAA+H8="},"inf":{"$float":"AAAAAAAA8H8="},"ninf":{"$float":"AAAAAAAA8P8="},"nested":{"a":[1,2.5,{"$bytes":""},"x\"y"],"t":true,"n":null}}"#,
        );
        assert_eq!(
            v,
            json!({"_component":"","_table":"users","_ts":1770335566197682922i64,"_deleted":false,
                "_creationTime":1770335566197.5,"_id":"jd7a","age":"33","big":"-9223372036854775808",
                "f":1.0,"z":-0.0,"e":1e300,"b":"AAEC","nan":"NaN","inf":"Infinity","ninf":"-Infinity",
                "nested":{"a":["1",2.5,"","x\"y"],"t":true,"n":null}})
        );
    }

    #[test]
    fn bytes_outside_numbers_are_copied_verbatim() {
        let c = to_legacy(
            &TableRef::root("t"),
            5,
            false,
            br#"{"_id":"a\u00e9","s":"\u0000 \ud83d\ude00 1.5","f":2.50}"#,
        )
        .unwrap();
        assert_eq!(c.id, "a\u{e9}");
        assert_eq!(
            std::str::from_utf8(&c.raw).unwrap(),
            r#"{"_component":"","_table":"t","_ts":5,"_deleted":false,"_id":"a\u00e9","s":"\u0000 \ud83d\ude00 1.5","f":2.50}"#
        );
    }

    #[test]
    fn tombstones_have_the_deltas_shape() {
        let c = to_legacy(
            &TableRef {
                component: "auth".into(),
                table: "users".into(),
            },
            9,
            true,
            br#"{"_id":"x1"}"#,
        )
        .unwrap();
        assert_eq!(
            std::str::from_utf8(&c.raw).unwrap(),
            r#"{"_component":"auth","_table":"users","_ts":9,"_deleted":true,"_id":"x1"}"#
        );
    }

    #[test]
    fn a_page_parses_with_its_status_truncates_and_cursor() {
        let body = br#"{"status":{"type":"stale","snapshotTs":1770335566197682922},"truncates":[{"component":"","table":"users"}],"values":[{"component":"","table":"users","ts":1770335566197682000,"deleted":false,"value":{"_id":"a","n":1}}],"syncId":"airbyte-1","pagination":{"hasMore":true,"nextCursor":"01ab"}}"#;
        let p = parse_page(body).unwrap();
        assert_eq!(p.status, SyncStatus::Stale(SnapshotTs(1770335566197682922)));
        assert_eq!(p.truncates, vec![TableRef::root("users")]);
        assert_eq!(p.values.len(), 1);
        assert_eq!(p.values[0].id, "a");
        assert_eq!(p.values[0].ts, 1770335566197682000);
        assert_eq!(p.next, DataSyncCursor("01ab".into()));
        assert_eq!(p.sync_id, "airbyte-1");
        let snap = br#"{"status":{"type":"snapshotting"},"truncates":[],"values":[],"syncId":"s","pagination":{"hasMore":true,"nextCursor":"c"}}"#;
        assert_eq!(parse_page(snap).unwrap().status, SyncStatus::Snapshotting);
        for bad in [
            &br#"{"status":{"type":"later"},"values":[],"pagination":{"nextCursor":"c"}}"#[..],
            br#"{"status":{"type":"snapshotting"},"values":[{"component":"","table":"t","ts":1,"deleted":false,"value":[1]}],"pagination":{"nextCursor":"c"}}"#,
            br#"{"status":{"type":"snapshotting"},"values":[{"component":"","table":"t","ts":1,"deleted":false,"value":{"n":1}}],"pagination":{"nextCursor":"c"}}"#,
            br#"{"status":{"type":"snapshotting"},"values":[],"pagination":{"nextCursor":""}}"#,
            br#"{"status":{"type":"snapshotting"},"values":[{"component":"","table":"t","ts":1,"deleted":false,"value":{"_id":"a","s":"\u0001"#,
            b"{\"status\":{\"type\":\"snapshotting\"},\"values\":[{\"component\":\"\",\"table\":\"t\",\"ts\":1,\"deleted\":false,\"value\":{\"_id\":\"a\xff\"}}],\"pagination\":{\"nextCursor\":\"c\"}}",
        ] {
            assert!(parse_page(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn floats_decode_from_little_endian_base64() {
        assert!(decode_float(b"AAAAAAAA+H8=").unwrap().is_nan());
        assert_eq!(decode_float(b"AAAAAAAA8H8="), Some(f64::INFINITY));
        assert_eq!(decode_float(b"AAAAAAAA8P8="), Some(f64::NEG_INFINITY));
        let z = decode_float(b"AAAAAAAAAIA=").unwrap();
        assert!(z == 0.0 && z.is_sign_negative());
        assert_eq!(decode_float(b"AAAAAAAA8D8="), Some(1.0));
        assert_eq!(decode_float(b"AAAA"), None);
        assert_eq!(decode_float(b"AAAAAAAA8D*="), None);
    }

    #[test]
    fn bodies_carry_the_selection_and_cursor() {
        let s = Selection::one(TableRef::root("users"), None);
        let b: Value = serde_json::from_str(&sync_body(&s, None)).unwrap();
        assert_eq!(
            b,
            json!({"selection":{"_other":"excluded","":{"_other":"excluded","users":{"_other":"included"}}}})
        );
        let c = DataSyncCursor("01ff".into());
        let b: Value = serde_json::from_str(&sync_body(&s, Some(&c))).unwrap();
        assert_eq!(b["cursor"], "01ff");
        let b: Value =
            serde_json::from_str(&from_deltas_body(&s, DeltaCursor(1770335566197682922))).unwrap();
        assert_eq!(b["cursor"].as_i64(), Some(1770335566197682922));
    }
}
