//! A client of Convex's export APIs, as a read engine sees them: narrow traits, the positions
//! they deal in (each its own type), and the errors Convex can answer with. It knows nothing of
//! whoever embeds it (the Airbyte connector, here): it reports retries to a [`http::Listener`]
//! and returns typed errors; what a user is told is decided by the caller.
//!
//! - [`ConvexApi`]: the streaming export API (`list_snapshot`, `document_deltas`,
//!   `json_schemas`, …), pages of values handed to a [`PageSink`] as they arrive.
//! - [`data_sync::DataSyncApi`]: the Data Sync API (`POST /api/v1/data/sync`,
//!   `list_active_syncs`), whose values reach a [`PageSink`] in the shape `document_deltas`
//!   gives them (or bare, the document alone, with that shape's metadata members to write
//!   first: [`ValueMeta::bare`]).
//! - [`http::HttpConvex`] implements both over one HTTP client built from [`Settings`].

pub mod buffers;
pub mod data_sync;
pub mod encoding;
pub mod http;
pub mod page;
pub mod redact;
pub mod selection;
pub mod settings;

use std::borrow::Cow;
use std::future::Future;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use page::RawMeta;
pub use selection::{Columns, Selection};
pub use settings::Settings;

/// A database timestamp a snapshot walk reads at (ns since epoch; above 2^53, never f64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SnapshotTs(pub i64);

/// Convex's opaque `list_snapshot` cursor (a JSON document serialised into a string).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SnapshotCursor(pub String);

/// Exclusive lower bound of a `document_deltas` read (ns since epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeltaCursor(pub i64);

/// The one legal conversion: deltas continue exactly where a finished snapshot walk read.
impl From<SnapshotTs> for DeltaCursor {
    fn from(s: SnapshotTs) -> Self {
        DeltaCursor(s.0)
    }
}

impl std::fmt::Display for SnapshotTs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Display for DeltaCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A table of a deployment: component path (`""` = the app itself) and table name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableRef {
    pub component: String,
    pub table: String,
}

impl TableRef {
    pub fn root(table: impl Into<String>) -> Self {
        TableRef {
            component: String::new(),
            table: table.into(),
        }
    }
}

impl std::fmt::Display for TableRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.component.is_empty() {
            f.write_str(&self.table)
        } else {
            write!(f, "{}/{}", self.component, self.table)
        }
    }
}

/// What a finished `list_snapshot` page tells about the walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotPageEnd {
    pub snapshot: SnapshotTs,
    pub cursor: Option<SnapshotCursor>,
    pub has_more: bool,
    pub values: usize,
}

/// What a finished `document_deltas` page tells about the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeltasPageEnd {
    pub cursor: DeltaCursor,
    pub has_more: bool,
    pub values: usize,
}

/// The tables of a deployment with Convex's JSON Schema of each, per component, in the order
/// Convex listed them (root component first).
#[derive(Debug, Clone, Default)]
pub struct DeploymentSchemas {
    pub components: Vec<(String, Vec<(String, Value)>)>,
}

impl DeploymentSchemas {
    pub fn schema_of(&self, t: &TableRef) -> Option<&Value> {
        self.components
            .iter()
            .filter(|(c, _)| *c == t.component)
            .flat_map(|(_, tables)| tables.iter())
            .find(|(n, _)| *n == t.table)
            .map(|(_, s)| s)
    }
}

/// The metadata of one exported value: which document of which table it is, its commit
/// timestamp, and (deltas only) whether it is a delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueMeta<'a> {
    pub table: Cow<'a, str>,
    pub component: Cow<'a, str>,
    pub id: Cow<'a, str>,
    pub ts: i64,
    pub deleted: Option<bool>,
    /// Where the document's top-level members are, when the page parser found them (so
    /// consumers that look at every column need not walk the document again).
    pub members: Option<&'a [page::Member]>,
    /// The value is the document alone, as a Data Sync envelope holds it: the members a
    /// `document_deltas` value starts with (`_component`, `_table`, `_ts`, `_deleted`) are
    /// this metadata, and whoever writes the value out writes them first ([`ExportHead`],
    /// [`ValueMeta::whole`]), so the document is not copied to put them in front.
    pub bare: bool,
}

/// The members a `document_deltas` value starts with, for one table: built once, then written
/// before each of its bare values' documents (see [`ValueMeta::bare`]).
#[derive(Debug, Clone)]
pub struct ExportHead(Vec<u8>);

impl ExportHead {
    pub fn new(table: &TableRef) -> Self {
        let mut head = br#"{"_component":"#.to_vec();
        serde_json::to_writer(&mut head, &table.component).expect("a string serialises");
        head.extend_from_slice(br#","_table":"#);
        serde_json::to_writer(&mut head, &table.table).expect("a string serialises");
        head.extend_from_slice(br#","_ts":"#);
        ExportHead(head)
    }

    /// Appends `{"_component":…,"_table":…,"_ts":…,"_deleted":…` (open: the document's
    /// members follow, see [`join_head`]).
    pub fn write(&self, out: &mut Vec<u8>, ts: i64, deleted: bool) {
        out.extend_from_slice(&self.0);
        out.extend_from_slice(itoa::Buffer::new().format(ts).as_bytes());
        out.extend_from_slice(if deleted {
            br#","_deleted":true"#
        } else {
            br#","_deleted":false"#
        });
    }
}

/// Joins the document written to `out` from `doc_start` (a JSON object) to the head written
/// before it: its `{` becomes the `,` before its members, or, when it has none, it is
/// replaced by the head's closing `}`.
pub fn join_head(out: &mut Vec<u8>, doc_start: usize) {
    let body = out
        .get(doc_start + 1..out.len().saturating_sub(1))
        .unwrap_or_default();
    if body.iter().all(u8::is_ascii_whitespace) {
        out.truncate(doc_start);
        out.push(b'}');
    } else {
        out[doc_start] = b',';
    }
}

impl<'a> ValueMeta<'a> {
    /// The value as `document_deltas` sends it: `raw` itself, or, for a bare one, the
    /// members of its metadata followed by the document's own.
    pub fn whole<'r>(&self, raw: &'r [u8]) -> Cow<'r, [u8]> {
        if !self.bare {
            return Cow::Borrowed(raw);
        }
        let table = TableRef {
            component: self.component.to_string(),
            table: self.table.to_string(),
        };
        let mut out = Vec::with_capacity(raw.len() + 96);
        ExportHead::new(&table).write(&mut out, self.ts, self.deleted.unwrap_or(false));
        let start = out.len();
        out.extend_from_slice(raw);
        join_head(&mut out, start);
        Cow::Owned(out)
    }

    /// From the raw field values the page parser located.
    pub fn from_raw(raw: RawMeta<'a>) -> Result<Self, String> {
        let ts = raw.ts.ok_or("a value has no `_ts`")?;
        let ts = ts
            .trim_ascii()
            .parse::<i64>()
            .map_err(|_| format!("`_ts` {ts} is not an integer"))?;
        let table = raw_string(raw.table.ok_or("a value has no `_table`")?)?;
        let id = raw_string(raw.id.ok_or("a value has no `_id`")?)?;
        let component = match raw.component {
            Some(c) => raw_string(c)?,
            None => Cow::Borrowed(""),
        };
        let deleted = match raw.deleted.map(str::trim_ascii) {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(other) => return Err(format!("`_deleted` {other} is not a boolean")),
        };
        Ok(ValueMeta {
            table,
            component,
            id,
            ts,
            deleted,
            members: raw.members,
            bare: false,
        })
    }

    /// From a whole document, with serde (for in-memory sources; the HTTP path uses `from_raw`).
    pub fn from_json(doc: &'a [u8]) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Meta<'a> {
            #[serde(borrow, rename = "_table")]
            table: Cow<'a, str>,
            #[serde(borrow, rename = "_component", default)]
            component: Cow<'a, str>,
            #[serde(borrow, rename = "_id")]
            id: Cow<'a, str>,
            #[serde(rename = "_ts")]
            ts: i64,
            #[serde(rename = "_deleted")]
            deleted: Option<bool>,
        }
        let m: Meta<'a> = serde_json::from_slice(doc).map_err(|e| e.to_string())?;
        Ok(ValueMeta {
            table: m.table,
            component: m.component,
            id: m.id,
            ts: m.ts,
            deleted: m.deleted,
            members: None,
            bare: false,
        })
    }
}

/// A JSON string's content, borrowed when it has no escapes (table names never do).
fn raw_string(json: &str) -> Result<Cow<'_, str>, String> {
    let json = json.trim_ascii();
    let bad = || format!("{json} is not a JSON string");
    let inner = json
        .strip_prefix('"')
        .and_then(|j| j.strip_suffix('"'))
        .ok_or_else(bad)?;
    if inner.contains('\\') {
        return serde_json::from_str::<String>(json)
            .map(Cow::Owned)
            .map_err(|_| bad());
    }
    Ok(Cow::Borrowed(inner))
}

/// A JSON integer that fits an i64, in its plain form (`-` and up to 19 digits, nothing
/// around them); `None` for any other text, which a slower reading then judges.
pub(crate) fn json_i64(text: &str) -> Option<i64> {
    let text = text.as_bytes();
    let (negative, digits) = match text.strip_prefix(b"-") {
        Some(d) => (true, d),
        None => (false, text),
    };
    // Nineteen digits at most, as every i64: no overflow in a u64.
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let magnitude = decimal(digits)?;
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// The value of at most 19 ASCII digits (`None` if any byte is not one), eight at a time:
/// `_ts` has 19, and a digit at a time was a third of reading the metadata.
fn decimal(digits: &[u8]) -> Option<u64> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let mut words = digits.chunks_exact(8);
    let mut value = 0u64;
    for word in &mut words {
        let v = u64::from_le_bytes(word.try_into().ok()?);
        // A byte below `0` borrows into its high bit, one above `9` carries into it.
        if (v.wrapping_sub(ONES * 0x30) | v.wrapping_add(ONES * 0x46)) & (ONES * 0x80) != 0 {
            return None;
        }
        // Pairs, then fours, then all eight (the first byte is the most significant digit).
        let v = v - ONES * 0x30;
        let v = (v.wrapping_mul(10 * 256 + 1) >> 8) & 0x00ff_00ff_00ff_00ff;
        let v = (v.wrapping_mul(100 * 65_536 + 1) >> 16) & 0x0000_ffff_0000_ffff;
        let v = v.wrapping_mul(10_000 * (1 << 32) + 1) >> 32;
        value = value.checked_mul(100_000_000)?.checked_add(v)?;
    }
    for &d in words.remainder() {
        let v = d.wrapping_sub(b'0');
        if v > 9 {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(v))?;
    }
    Some(value)
}

/// Receives a page's documents one by one, as Convex's exact bytes, while the page streams in.
pub trait PageSink: Send {
    fn value(&mut self, raw: &[u8], meta: &ValueMeta<'_>) -> anyhow::Result<()>;
    /// Called between network chunks: where a sink hands finished output on (and waits if the
    /// consumer is slower than the network, which is what bounds memory).
    fn flush(&mut self) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// The read engine's whole view of Convex: walks over a selection of tables. Implementations
/// deliver each page's values to the sink exactly once, in order, even when they retry a
/// request internally (a retried page skips what was delivered, not "the first N values":
/// Convex does not promise to repeat a page's values in the same order).
pub trait ConvexApi: Send + Sync + 'static {
    /// Convex's JSON Schema of every table (`json_schemas`).
    fn json_schemas(&self) -> impl Future<Output = Result<DeploymentSchemas, ConvexError>> + Send;

    /// Every table's top-level column names (`get_table_column_names`), as open schemas: the
    /// description Convex can give of every deployment, even one `json_schemas` refuses.
    fn table_columns(&self) -> impl Future<Output = Result<DeploymentSchemas, ConvexError>> + Send;

    /// The deployment's current head timestamp: where a new snapshot walk reads.
    fn head(&self) -> impl Future<Output = anyhow::Result<SnapshotTs>> + Send;

    /// One `list_snapshot` page of `selection` at `snapshot`, continuing after `cursor`.
    fn list_snapshot<S: PageSink>(
        &self,
        selection: &Selection,
        snapshot: SnapshotTs,
        cursor: Option<&SnapshotCursor>,
        sink: &mut S,
    ) -> impl Future<Output = anyhow::Result<SnapshotPageEnd>> + Send;

    /// One `document_deltas` page of `selection` after `cursor`.
    fn document_deltas<S: PageSink>(
        &self,
        selection: &Selection,
        cursor: DeltaCursor,
        sink: &mut S,
    ) -> impl Future<Output = anyhow::Result<DeltasPageEnd>> + Send;
}

/// The codes with which `json_schemas` refuses a whole deployment because one table's shape is
/// not an object that it can describe (and no `schema.ts` describes it).
pub const UNDESCRIBABLE_CODES: [&str; 3] = [
    "NoSchemaForExport",
    "NoTableDefinitionForExport",
    "UnsupportedSchemaForExport",
];

/// Parses `get_table_column_names?byComponent=...` (`{"byComponent": {component: [{name,
/// columns}]}}`) into open schemas: `_id` and `_creationTime` typed, every other column any.
pub fn parse_table_columns(body: Value) -> Result<DeploymentSchemas, String> {
    let by_component = body
        .get("byComponent")
        .and_then(Value::as_object)
        .ok_or("get_table_column_names did not return a `byComponent` object")?;
    let mut components = Vec::with_capacity(by_component.len());
    for (component, tables) in by_component {
        let tables = tables.as_array().ok_or_else(|| {
            format!("get_table_column_names: component {component:?} is not a list of tables")
        })?;
        let mut out = Vec::with_capacity(tables.len());
        for t in tables {
            let name = t.get("name").and_then(Value::as_str).ok_or_else(|| {
                format!("get_table_column_names: a table of component {component:?} has no name")
            })?;
            let mut properties = serde_json::Map::new();
            for c in t
                .get("columns")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(c) = c.as_str() else { continue };
                let schema = match c {
                    "_id" => serde_json::json!({"type": "string"}),
                    "_creationTime" => serde_json::json!({"type": "number"}),
                    _ => serde_json::json!({}),
                };
                properties.insert(c.to_owned(), schema);
            }
            out.push((
                name.to_owned(),
                serde_json::json!({"type": "object", "properties": properties,
                                   "additionalProperties": true}),
            ));
        }
        components.push((component.clone(), out));
    }
    components.sort_by_key(|(c, _)| !c.is_empty());
    Ok(DeploymentSchemas { components })
}

/// Convex error codes the engine reacts to.
pub mod codes {
    pub const SNAPSHOT_TOO_OLD: &str = "SnapshotTooOld";
    pub const SNAPSHOT_TOO_NEW: &str = "SnapshotTooNew";
    pub const INVALID_WINDOW: &str = "InvalidWindowToReadDocuments";
    pub const INVALID_SNAPSHOT_CURSOR: &str = "InvalidListSnapshotCursor";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkFailure {
    Connect,
    Timeout,
    /// The connection broke or the body ended early.
    Body,
    /// The server's TLS certificate was refused: retrying cannot help.
    Tls,
    /// Abandoned: whoever ran the request stopped waiting for answers (its output is gone).
    Cancelled,
    /// The request cannot be sent at all (a URL too long or malformed for any HTTP client):
    /// retrying cannot help, and the fault is ours or the saved position's, not the network's.
    Unsendable,
    Other,
}

#[derive(Debug, Clone)]
pub enum ConvexError {
    /// Convex answered with its JSON error envelope.
    Api {
        endpoint: &'static str,
        status: u16,
        code: String,
        message: String,
    },
    /// A status without Convex's envelope (a proxy's HTML page, a bare 408…).
    Status {
        endpoint: &'static str,
        status: u16,
        body: String,
    },
    Network {
        endpoint: &'static str,
        kind: NetworkFailure,
        detail: String,
    },
    /// A 200 whose body is not what the API documents.
    InvalidResponse {
        endpoint: &'static str,
        detail: String,
    },
}

impl std::error::Error for ConvexError {}

impl std::fmt::Display for ConvexError {
    /// `{endpoint}: {status}: {code}: {message}`, the shape Airbyte users know.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.endpoint(), self.detail())
    }
}

impl ConvexError {
    pub fn endpoint(&self) -> &'static str {
        match self {
            ConvexError::Api { endpoint, .. }
            | ConvexError::Status { endpoint, .. }
            | ConvexError::Network { endpoint, .. }
            | ConvexError::InvalidResponse { endpoint, .. } => endpoint,
        }
    }

    /// The error without the endpoint: `401: BadAdminKey: message`.
    pub fn detail(&self) -> String {
        match self {
            ConvexError::Api {
                status,
                code,
                message,
                ..
            } => format!("{status}: {code}: {message}"),
            ConvexError::Status { status, body, .. } if body.is_empty() => format!("HTTP {status}"),
            ConvexError::Status { status, body, .. } => format!("HTTP {status}: {body}"),
            ConvexError::Network { detail, .. } => detail.clone(),
            ConvexError::InvalidResponse { detail, .. } => format!("unexpected response: {detail}"),
        }
    }

    pub fn code(&self) -> Option<&str> {
        match self {
            ConvexError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            ConvexError::Api { status, .. } | ConvexError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Worth another attempt: the network, timeouts, overload and rate limits.
    pub fn is_retryable(&self) -> bool {
        match self {
            ConvexError::Network {
                kind: NetworkFailure::Tls | NetworkFailure::Unsendable | NetworkFailure::Cancelled,
                ..
            } => false,
            ConvexError::Network { .. } => true,
            ConvexError::Api { status, .. } | ConvexError::Status { status, .. } => {
                matches!(status, 408 | 425 | 429) || *status >= 500
            }
            ConvexError::InvalidResponse { .. } => false,
        }
    }
}

/// Parses Convex's `json_schemas?byComponent=true` answer, or the flat answer of a backend
/// that ignores `byComponent` (a flat map's values are table schemas, recognisable by `type`).
pub fn parse_json_schemas(body: Value) -> Result<DeploymentSchemas, String> {
    let Value::Object(top) = body else {
        return Err("json_schemas did not return a JSON object".into());
    };
    let looks_flat = top
        .values()
        .any(|v| v.get("type").is_some_and(Value::is_string) || v.get("$schema").is_some());
    if looks_flat {
        return Ok(DeploymentSchemas {
            components: vec![(String::new(), top.into_iter().collect())],
        });
    }
    let mut components = Vec::with_capacity(top.len());
    for (component, tables) in top {
        let Value::Object(tables) = tables else {
            return Err(format!(
                "json_schemas: component {component:?} is not an object of table schemas"
            ));
        };
        components.push((component, tables.into_iter().collect()));
    }
    // Root first, as Convex lists it; the rest in the order Convex gave.
    components.sort_by_key(|(c, _)| !c.is_empty());
    Ok(DeploymentSchemas { components })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decimals_read_eight_digits_at_a_time_as_one_at_a_time() {
        let mut rng = fastrand::Rng::with_seed(0xdec);
        let plain = |d: &[u8]| -> Option<u64> {
            d.iter().try_fold(0u64, |v, &c| {
                c.is_ascii_digit()
                    .then(|| v.checked_mul(10)?.checked_add(u64::from(c - b'0')))?
            })
        };
        for _ in 0..50_000 {
            let len = rng.usize(0..=19);
            let mut d: Vec<u8> = (0..len).map(|_| b'0' + rng.u8(0..10)).collect();
            if len > 0 && rng.u8(..4) == 0 {
                d[rng.usize(..len)] = [b'/', b':', b'a', 0x00, 0xb0, 0xff, b' '][rng.usize(..7)];
            }
            assert_eq!(decimal(&d), plain(&d), "{:?}", String::from_utf8_lossy(&d));
        }
        assert_eq!(
            decimal(b"9999999999999999999"),
            Some(9_999_999_999_999_999_999)
        );
        assert_eq!(
            decimal(b"1770335566197682000"),
            Some(1_770_335_566_197_682_000)
        );
        assert_eq!(decimal(b""), Some(0));
        assert_eq!(json_i64("-9223372036854775808"), Some(i64::MIN));
        assert_eq!(json_i64("9223372036854775808"), None);
        assert_eq!(json_i64("-0"), Some(0));
        for other in ["", "-", "+5", " 7", "1.5", "1e3", "99999999999999999999"] {
            assert_eq!(json_i64(other), None, "{other}");
        }
    }

    #[test]
    fn by_component_and_flat_answers_both_parse() {
        let nested = parse_json_schemas(json!({
            "betterAuth": {"users": {"type": "object"}},
            "": {"users": {"type": "object"}, "posts": {"type": "object"}},
        }))
        .unwrap();
        assert_eq!(nested.components[0].0, "");
        assert_eq!(nested.components[0].1.len(), 2);
        assert!(nested
            .schema_of(&TableRef {
                component: "betterAuth".into(),
                table: "users".into()
            })
            .is_some());
        let flat =
            parse_json_schemas(json!({"users": {"type": "object", "properties": {}}})).unwrap();
        assert_eq!(flat.components.len(), 1);
        assert!(flat.schema_of(&TableRef::root("users")).is_some());
        assert!(parse_json_schemas(json!([1])).is_err());
    }
}
