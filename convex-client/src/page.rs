//! Incremental parser for Convex's paged responses (`{"values":[…], "cursor":…, …}`).
//!
//! A `list_snapshot` page holds up to 1,024 documents of up to 1 MiB each, so a page can be
//! far larger than what we want in memory. The parser is fed body chunks as they arrive and
//! hands out each element of `values` as the exact bytes Convex sent, as soon as it is complete;
//! the other top-level fields (`cursor`, `snapshot`, `hasMore`) are kept as raw JSON.
//! Memory is one document plus one network chunk, whatever the page size.
//!
//! Every element is checked to be strict JSON and handed out compact (`element`) before any of
//! it can reach stdout; a page with a bad element fails as a whole, as a syntax error, so the
//! stream stops before the STATE that would have covered it.
//!
//! The other fields are held until the page ends, [`MAX_VALUE_BYTES`] of them at most in all, so
//! a page costs at most one element, one chunk and that, whatever its size.
//!
//! Elements are documents (`list_snapshot`, `document_deltas`: their metadata is `_table`,
//! `_ts`… among their members) or, for a Data Sync page ([`PageParser::sync_envelopes`]),
//! envelopes `{"component","table","ts","deleted","value":{document}}`, whose metadata is the
//! envelope's and whose document (`value`) is located, with its `_id` and members, in the same
//! pass.

mod element;
pub(crate) mod fast;
pub use fast::{prove, Member};

use memchr::memchr2;

/// The largest single value (one document, one cursor) a page may hold. Convex caps a document
/// at 1 MiB of Convex value; its JSON export can be several times larger (`\u00XX` escapes are
/// six bytes for one, bytes become base64), so the cap leaves room for that and still bounds a
/// hostile endless element to a few MiB per stream.
pub const MAX_VALUE_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PageSyntaxError {
    #[error("response body is not a JSON object of the expected shape (unexpected {found:?} at byte {offset})")]
    Unexpected { found: char, offset: u64 },
    #[error("response body ended before the page was complete (truncated)")]
    Truncated,
    #[error("response body has a malformed key: {0}")]
    BadKey(String),
    #[error("a document in the page is not valid JSON ({reason} at byte {offset} of the body)")]
    Invalid { reason: &'static str, offset: u64 },
    #[error("a single value in the page is larger than {} MiB, far beyond Convex's 1 MiB document limit", MAX_VALUE_BYTES / (1024 * 1024))]
    TooLarge,
}

#[derive(Debug)]
pub enum FeedError<E> {
    Syntax(PageSyntaxError),
    Sink(E),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    KeyOrEnd { first: bool },
    Key,
    Colon,
    FieldStart,
    FieldValue,
    ValuesStart,
    ElemOrEnd { first: bool },
    Elem,
    AfterElem,
    AfterField,
    End,
}

/// The metadata fields of a document the connector looks at, found while scanning it.
const META_KEYS: [&[u8]; 5] = [b"_table", b"_component", b"_ts", b"_deleted", b"_id"];
/// The same, for a Data Sync envelope: its `value` (the document) where a document has `_id`.
const ENVELOPE_KEYS: [&[u8]; 5] = [b"table", b"component", b"ts", b"deleted", b"value"];

/// Where the metadata fields' values are in the current element (offsets into the buffer).
#[derive(Debug, Clone, Copy, Default)]
struct MetaSpans {
    spans: [Option<(usize, usize)>; 5],
    /// The element is an object: only then do its top-level strings alternate key, value.
    object: bool,
    /// A Data Sync envelope ([`ENVELOPE_KEYS`]), not a document.
    envelope: bool,
    expect_key: bool,
    string_start: usize,
    pending: Option<usize>,
    value_start: usize,
}

/// The raw JSON of an element's metadata fields (`_table`, `_component`, `_ts`, `_deleted`,
/// `_id`), as text: the element was proven UTF-8 before it is handed out, so reading them
/// needs no second check.
///
/// Of a Data Sync envelope: `table`, `component`, `ts` and `deleted` are the envelope's, `value`
/// is its document, `id` that document's `_id` and `members` its members (offsets into `value`),
/// the last two only when the fast path found them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawMeta<'a> {
    pub table: Option<&'a str>,
    pub component: Option<&'a str>,
    pub ts: Option<&'a str>,
    pub deleted: Option<&'a str>,
    pub id: Option<&'a str>,
    /// An envelope's document (always `None` for a document element).
    pub value: Option<&'a str>,
    /// Known: no string among `table`, `component` and `id` holds an escape (false: not known).
    pub plain_names: bool,
    /// The element's top-level members, when the pass that checked it found them.
    pub members: Option<&'a [fast::Member]>,
}

/// Resumable scan of one JSON value starting at `start` in the buffer.
///
/// For elements of `values` it also notes where the top-level metadata fields are, in the same
/// pass: reading them with serde instead would scan every document a second time, which was
/// a third of the connector's CPU time.
#[derive(Debug, Clone, Copy)]
struct Scan {
    start: usize,
    at: usize,
    depth: u32,
    in_string: bool,
    escaped: bool,
    scalar: bool,
    meta: Option<MetaSpans>,
}

impl Scan {
    fn new(start: usize) -> Self {
        Scan {
            start,
            at: start,
            depth: 0,
            in_string: false,
            escaped: false,
            scalar: false,
            meta: None,
        }
    }

    fn element(start: usize) -> Self {
        Scan {
            meta: Some(MetaSpans::default()),
            ..Scan::new(start)
        }
    }

    fn envelope(start: usize) -> Self {
        Scan {
            meta: Some(MetaSpans {
                envelope: true,
                ..MetaSpans::default()
            }),
            ..Scan::new(start)
        }
    }

    /// An element of a page of `envelopes` or of documents.
    fn of(envelopes: bool, start: usize) -> Self {
        if envelopes {
            Scan::envelope(start)
        } else {
            Scan::element(start)
        }
    }

    fn shift(&mut self, by: usize) {
        self.start -= by;
        self.at -= by;
        if let Some(m) = &mut self.meta {
            m.string_start = m.string_start.saturating_sub(by);
            m.value_start = m.value_start.saturating_sub(by);
            for (a, b) in m.spans.iter_mut().flatten() {
                *a -= by;
                *b -= by;
            }
        }
    }

    /// The metadata of the scanned element, whose text (from `self.start`) is `element`.
    fn raw_meta<'a>(&self, element: &'a str) -> RawMeta<'a> {
        let m = self.meta.unwrap_or_default();
        let get = |i: usize| {
            m.spans[i].and_then(|(a, b)| element.get(a.checked_sub(self.start)?..b - self.start))
        };
        let (id, value) = if m.envelope {
            (None, get(4))
        } else {
            (get(4), None)
        };
        RawMeta {
            table: get(0),
            component: get(1),
            ts: get(2),
            deleted: get(3),
            id,
            value,
            plain_names: false,
            members: None,
        }
    }

    /// A string starts at `at` (its opening quote).
    #[inline]
    fn open_string(&mut self, at: usize, depth: u32) {
        self.in_string = true;
        if depth == 1 {
            if let Some(m) = &mut self.meta {
                m.string_start = at;
            }
        }
    }

    /// A `:` or `,` directly inside the element, at `at`.
    #[inline]
    fn separator(&mut self, b: u8, at: usize) {
        if b == b',' {
            self.end_member(at);
        } else if let Some(m) = &mut self.meta {
            m.value_start = at + 1;
        }
    }

    /// A top-level value of the element ends at `at`.
    fn end_member(&mut self, at: usize) {
        if let Some(m) = &mut self.meta {
            if let Some(k) = m.pending.take() {
                m.spans[k] = Some((m.value_start, at));
            }
            m.expect_key = m.object;
        }
    }

    /// Advances over `buf`; returns the end offset (exclusive) once the value is complete.
    /// The input is trusted to be JSON only so far as the parser checks structure here and
    /// serde checks each element later; this just finds boundaries.
    fn advance(&mut self, buf: &[u8]) -> Result<Option<usize>, PageSyntaxError> {
        // Position and depth live in locals: this loop is the hottest code of a sync.
        let len = buf.len();
        let mut at = self.at;
        let mut depth = self.depth;
        let result = loop {
            if at >= len {
                break Ok(None);
            }
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                    at += 1;
                    continue;
                }
                let Some(q) = find_quote_or_backslash(buf, at) else {
                    at = len;
                    break Ok(None);
                };
                if buf[q] == b'\\' {
                    // Skip the escaped byte (it may be a quote).
                    if q + 1 < len {
                        at = q + 2;
                    } else {
                        self.escaped = true;
                        at = q + 1;
                    }
                    continue;
                }
                self.in_string = false;
                at = q + 1;
                if depth == 0 {
                    break Ok(Some(at));
                }
                if depth == 1 {
                    if let Some(m) = &mut self.meta {
                        if m.expect_key {
                            let key = &buf[m.string_start + 1..q];
                            // User fields cannot start with `_`: most keys are rejected here.
                            m.pending = if m.envelope {
                                ENVELOPE_KEYS.iter().position(|k| *k == key)
                            } else if key.first() == Some(&b'_') {
                                META_KEYS.iter().position(|k| *k == key)
                            } else {
                                None
                            };
                            m.expect_key = false;
                            // The `:` moves it on; a malformed element without one must still
                            // get a span inside itself (the element check rejects it later).
                            m.value_start = at;
                        }
                    }
                }
                // Compact JSON, as Convex sends it: a string inside a container is followed by
                // `:` or `,`, and those often by the next string. Taking them here saves two
                // trips through the dispatch below per field (its branches mispredict).
                if at < len && (buf[at] == b':' || buf[at] == b',') {
                    if depth == 1 {
                        self.separator(buf[at], at);
                    }
                    at += 1;
                    if at < len && buf[at] == b'"' {
                        self.open_string(at, depth);
                        at += 1;
                    }
                }
                continue;
            }
            if depth > 0 {
                // Inside a container only these bytes matter; skip the rest in a tight loop.
                while at < len && !STRUCTURAL[buf[at] as usize] {
                    at += 1;
                }
                if at == len {
                    break Ok(None);
                }
            }
            let b = buf[at];
            match b {
                b'"' if !self.scalar => self.open_string(at, depth),
                b'{' | b'[' if !self.scalar => {
                    depth += 1;
                    if depth == 1 {
                        if let Some(m) = &mut self.meta {
                            m.object = b == b'{';
                            m.expect_key = m.object;
                        }
                    }
                }
                b',' | b':' if depth > 0 => {
                    if depth == 1 {
                        self.separator(b, at);
                    }
                    // A string usually follows (the next key, or a string value).
                    if at + 1 < len && buf[at + 1] == b'"' {
                        at += 1;
                        self.open_string(at, depth);
                    }
                }
                b'}' | b']' | b',' | b' ' | b'\n' | b'\r' | b'\t' if depth == 0 => {
                    if self.scalar {
                        break Ok(Some(at));
                    }
                    break Err(unexpected(b, at));
                }
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        self.end_member(at);
                        at += 1;
                        break Ok(Some(at));
                    }
                }
                _ if depth == 0 => self.scalar = true,
                _ => {}
            }
            at += 1;
        };
        self.at = at;
        self.depth = depth;
        result
    }
}

/// Bytes that change the scanner's state inside a container.
static STRUCTURAL: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 7 {
        t[b"\"{}[],:"[i] as usize] = true;
        i += 1;
    }
    t
};

/// The next `"` or `\\` at or after `from`. Eight bytes at a time: most strings in documents
/// are short, where a SIMD search costs more to set up than it saves.
fn find_quote_or_backslash(buf: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let mut i = from;
    while i + 8 <= buf.len() {
        let word = u64::from_le_bytes(buf[i..i + 8].try_into().expect("8 bytes"));
        let hits = has_zero(word ^ (ONES * b'"' as u64)) | has_zero(word ^ (ONES * b'\\' as u64));
        if hits != 0 {
            // The lowest flagged byte is always a true match (borrows only run upwards).
            return Some(i + (hits.trailing_zeros() / 8) as usize);
        }
        i += 8;
        if buf.len() - i > 256 {
            // A long string: hand over to memchr's vectorised search.
            return memchr2(b'"', b'\\', &buf[i..]).map(|j| i + j);
        }
    }
    buf[i..]
        .iter()
        .position(|&b| b == b'"' || b == b'\\')
        .map(|j| i + j)
}

fn unexpected(b: u8, offset: usize) -> PageSyntaxError {
    PageSyntaxError::Unexpected {
        found: b as char,
        offset: offset as u64,
    }
}

/// The top-level members after `values` in a page's body (`"snapshot":…,"cursor":…,
/// "hasMore":…}`), read backwards from the body's end, as (raw key, raw value) pairs, last
/// member first; `None` when the end of `tail` is not of that shape. A value is a scalar, a
/// string, or an object of those (a Data Sync page's `pagination`).
///
/// Only a guess, for requesting the next page early: the page parser reads these fields only
/// after every document, and the guess is used only when the request it leads to is exactly
/// the one the walk then makes from what the parser read.
pub fn trailing_fields(tail: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let b = tail;
    let mut i = ws_before(b, b.len());
    if i == 0 || b[i - 1] != b'}' {
        return None;
    }
    i -= 1;
    let mut out = Vec::new();
    loop {
        let end = ws_before(b, i);
        let start = match *b.get(end.checked_sub(1)?)? {
            // An object of plain members, or else the end of `values` (or of another
            // container): what follows is known.
            b'}' => match flat_object_start(b, end - 1) {
                Some(start) => start,
                None => return Some(out),
            },
            b']' => return Some(out),
            _ => plain_value_start(b, end)?,
        };
        let (key_start, key_end) = key_before(b, start)?;
        out.push((&b[key_start..key_end], &b[start..end]));
        i = ws_before(b, key_start);
        match b.get(i.checked_sub(1)?) {
            Some(b',') => i -= 1,
            Some(b'{') => return Some(out),
            _ => return None,
        }
    }
}

/// Where the whitespace that ends at `i` starts.
fn ws_before(b: &[u8], mut i: usize) -> usize {
    while i > 0 && matches!(b[i - 1], b' ' | b'\n' | b'\r' | b'\t') {
        i -= 1;
    }
    i
}

/// The start of the string or scalar that ends at `end`.
fn plain_value_start(b: &[u8], end: usize) -> Option<usize> {
    if *b.get(end.checked_sub(1)?)? == b'"' {
        return string_start(b, end - 1);
    }
    let mut j = end;
    while j > 0 && (b[j - 1].is_ascii_alphanumeric() || matches!(b[j - 1], b'.' | b'+' | b'-')) {
        j -= 1;
    }
    (j < end).then_some(j)
}

/// The key (with its quotes) of the member whose value starts at `value_start`.
fn key_before(b: &[u8], value_start: usize) -> Option<(usize, usize)> {
    let i = ws_before(b, value_start);
    if b.get(i.checked_sub(1)?) != Some(&b':') {
        return None;
    }
    let key_end = ws_before(b, i - 1);
    if b.get(key_end.checked_sub(1)?) != Some(&b'"') {
        return None;
    }
    Some((string_start(b, key_end - 1)?, key_end))
}

/// The `{` of the object whose `}` is at `close`, when its members are all strings or scalars.
fn flat_object_start(b: &[u8], close: usize) -> Option<usize> {
    let mut i = ws_before(b, close);
    if b.get(i.checked_sub(1)?) == Some(&b'{') {
        return Some(i - 1);
    }
    loop {
        let start = plain_value_start(b, i)?;
        let (key_start, _) = key_before(b, start)?;
        i = ws_before(b, key_start);
        match b.get(i.checked_sub(1)?)? {
            b',' => i = ws_before(b, i - 1),
            b'{' => return Some(i - 1),
            _ => return None,
        }
    }
}

/// The top-level members before `values` at the start of a page's body, as (raw key, raw
/// value) pairs in order: up to `values`, the end of `head`, or anything unexpected. Like
/// [`trailing_fields`], only a guess: values are not checked beyond their boundaries.
pub fn leading_fields(head: &[u8]) -> Vec<(&[u8], &[u8])> {
    let ws = |mut i: usize| {
        while head
            .get(i)
            .is_some_and(|c| matches!(c, b' ' | b'\n' | b'\r' | b'\t'))
        {
            i += 1;
        }
        i
    };
    // One JSON value at `i`, if it ends within `head`.
    let value_at = |i: usize| -> Option<usize> {
        if !matches!(
            head.get(i)?,
            b'"' | b'{' | b'[' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n'
        ) {
            return None;
        }
        Scan::new(i).advance(head).ok()?
    };
    let mut out = Vec::new();
    let mut i = ws(0);
    if head.get(i) != Some(&b'{') {
        return out;
    }
    i += 1;
    loop {
        i = ws(i);
        if head.get(i) != Some(&b'"') {
            return out;
        }
        let Some(key_end) = value_at(i) else {
            return out;
        };
        let key = &head[i..key_end];
        i = ws(key_end);
        if head.get(i) != Some(&b':') || key == br#""values""# {
            return out;
        }
        i = ws(i + 1);
        let Some(end) = value_at(i) else {
            return out;
        };
        out.push((key, &head[i..end]));
        i = ws(end);
        if head.get(i) != Some(&b',') {
            return out;
        }
        i += 1;
    }
}

/// The opening quote of the JSON string whose closing quote is at `close`: the nearest `"`
/// before it that is not escaped (not preceded by an odd run of backslashes).
fn string_start(b: &[u8], close: usize) -> Option<usize> {
    let mut j = close;
    loop {
        let q = memchr::memrchr(b'"', &b[..j])?;
        let run = b[..q].iter().rev().take_while(|&&c| c == b'\\').count();
        if run % 2 == 0 {
            return Some(q);
        }
        j = q;
    }
}

pub struct PageParser {
    buf: Vec<u8>,
    /// Bytes of the body dropped from the front of `buf` so far (for error offsets).
    dropped: u64,
    pos: usize,
    state: State,
    scan: Scan,
    key: String,
    fields: Vec<(String, Vec<u8>)>,
    /// The members of the element the fast path proved last, when asked for.
    members: Option<Vec<fast::Member>>,
    /// Elements are Data Sync envelopes, not documents.
    envelopes: bool,
    /// What `fields` holds, in bytes (with a little for each field's own overhead).
    fields_bytes: usize,
    /// The page has a `values` member.
    saw_values: bool,
}

impl Default for PageParser {
    fn default() -> Self {
        Self::new()
    }
}

impl PageParser {
    pub fn new() -> Self {
        PageParser {
            buf: Vec::new(),
            dropped: 0,
            pos: 0,
            state: State::Start,
            scan: Scan::new(0),
            key: String::new(),
            fields: Vec::new(),
            members: None,
            envelopes: false,
            fields_bytes: 0,
            saw_values: false,
        }
    }

    /// A parser that also hands out where each element's top-level members are
    /// ([`RawMeta::members`]), for consumers that look at every member.
    pub fn with_members() -> Self {
        PageParser {
            members: Some(Vec::new()),
            ..PageParser::new()
        }
    }

    /// A parser of a Data Sync page, whose elements are envelopes (see [`RawMeta`]); with
    /// `members`, it also hands out where each document's members are, when it finds them.
    pub fn sync_envelopes(members: bool) -> Self {
        PageParser {
            members: members.then(Vec::new),
            envelopes: true,
            ..PageParser::new()
        }
    }

    /// Whether the page had a `values` member (so far).
    pub fn saw_values(&self) -> bool {
        self.saw_values
    }

    /// Feeds the next body chunk; calls `on_value` with each complete element of `values`.
    ///
    /// The chunk is scanned where it is: only a value split by a chunk boundary is copied
    /// into the buffer (its start, and of the next chunk what completes it, a growing piece at
    /// a time), not every byte of the body.
    pub fn feed<E>(
        &mut self,
        chunk: &[u8],
        mut on_value: impl FnMut(&[u8], RawMeta<'_>) -> Result<(), E>,
    ) -> Result<(), FeedError<E>> {
        let mut rest = chunk;
        let mut piece = 4096;
        // The buffer holds only a value still being scanned, if any.
        while !self.buf.is_empty() && !rest.is_empty() {
            let split = self.buf.len();
            let part = &rest[..piece.min(rest.len())];
            piece = piece.saturating_mul(2);
            let mut buf = std::mem::take(&mut self.buf);
            buf.extend_from_slice(part);
            let result = self.run(&buf, &mut on_value);
            let keep_from = self.keep_from();
            if result.is_ok() && keep_from >= split {
                // The split value is complete: what follows it is scanned in the chunk itself
                // (`keep_from` in the buffer is `keep_from - split` in the chunk), not copied.
                rest = &rest[keep_from - split..];
                buf.clear();
                self.buf = buf;
                self.rebase(keep_from);
                break;
            }
            rest = &rest[part.len()..];
            self.buf = buf;
            self.compact();
            result?;
        }
        if !rest.is_empty() {
            let result = self.run(rest, &mut on_value);
            let keep_from = self.keep_from();
            self.buf.extend_from_slice(&rest[keep_from..]);
            self.rebase(keep_from);
            result?;
        }
        if self.buf.len() > MAX_VALUE_BYTES {
            return Err(FeedError::Syntax(PageSyntaxError::TooLarge));
        }
        Ok(())
    }

    /// Declares the body complete; returns the top-level fields other than `values`, as raw JSON.
    pub fn finish(self) -> Result<Vec<(String, Vec<u8>)>, PageSyntaxError> {
        if self.state != State::End {
            return Err(PageSyntaxError::Truncated);
        }
        Ok(self.fields)
    }

    fn skip_ws(&mut self, data: &[u8]) -> Option<u8> {
        while self.pos < data.len() {
            let b = data[self.pos];
            if !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
                return Some(b);
            }
            self.pos += 1;
        }
        None
    }

    fn err(&self, b: u8) -> PageSyntaxError {
        PageSyntaxError::Unexpected {
            found: b as char,
            offset: self.dropped + self.pos as u64,
        }
    }

    /// Goes on over `data`: the buffer, or a chunk when the buffer is empty. Positions
    /// (`pos`, the scan's) are offsets into `data`.
    fn run<E>(
        &mut self,
        data: &[u8],
        on_value: &mut impl FnMut(&[u8], RawMeta<'_>) -> Result<(), E>,
    ) -> Result<(), FeedError<E>> {
        use FeedError::Syntax;
        // The UTF-8 part of `data`, checked once for all the elements the fast path proves.
        let mut text: Option<&str> = None;
        loop {
            match self.state {
                State::Key | State::FieldValue | State::Elem => {
                    let Some(end) = self.scan.advance(data).map_err(|e| {
                        Syntax(match e {
                            PageSyntaxError::Unexpected { found, offset } => {
                                PageSyntaxError::Unexpected {
                                    found,
                                    offset: offset + self.dropped,
                                }
                            }
                            other => other,
                        })
                    })?
                    else {
                        return Ok(());
                    };
                    let raw = &data[self.scan.start..end];
                    self.pos = end;
                    match self.state {
                        State::Key => {
                            self.key = serde_json::from_slice(raw)
                                .map_err(|e| Syntax(PageSyntaxError::BadKey(e.to_string())))?;
                            self.state = State::Colon;
                        }
                        State::FieldValue => {
                            // Each field is bounded by the buffer's cap; all of them by this.
                            self.fields_bytes += raw.len() + self.key.len() + 64;
                            if self.fields_bytes > MAX_VALUE_BYTES {
                                return Err(Syntax(PageSyntaxError::TooLarge));
                            }
                            self.fields
                                .push((std::mem::take(&mut self.key), raw.to_vec()));
                            self.state = State::AfterField;
                        }
                        _ => {
                            let start = self.dropped + self.scan.start as u64;
                            let invalid = |e: element::ElementError| {
                                Syntax(PageSyntaxError::Invalid {
                                    reason: e.reason,
                                    offset: start + e.offset as u64,
                                })
                            };
                            let doc = element::compact_element(raw).map_err(invalid)?;
                            // Proven UTF-8 by the check above; read again only on this path.
                            let not_utf8 = |e: std::str::Utf8Error| {
                                invalid(element::ElementError {
                                    offset: e.valid_up_to(),
                                    reason: "invalid UTF-8",
                                })
                            };
                            if self.envelopes {
                                // Spans into `doc`, which may be a compacted copy: the
                                // document must be handed on compact.
                                let text = std::str::from_utf8(&doc).map_err(not_utf8)?;
                                let meta = match fast::prove_envelope(text, self.members.as_mut()) {
                                    Some(p) => p.raw_meta(text, self.members.as_deref()),
                                    None => {
                                        let mut scan = Scan::envelope(0);
                                        let end = scan.advance(&doc).ok().flatten();
                                        if end != Some(doc.len()) {
                                            return Err(Syntax(PageSyntaxError::Invalid {
                                                reason: "not one JSON object",
                                                offset: start,
                                            }));
                                        }
                                        scan.raw_meta(text)
                                    }
                                };
                                on_value(&doc, meta).map_err(FeedError::Sink)?;
                            } else {
                                let element = std::str::from_utf8(raw).map_err(not_utf8)?;
                                on_value(&doc, self.scan.raw_meta(element))
                                    .map_err(FeedError::Sink)?;
                            }
                            self.state = State::AfterElem;
                        }
                    }
                }
                _ => {
                    let Some(b) = self.skip_ws(data) else {
                        return Ok(());
                    };
                    let pos = self.pos;
                    let next = match (self.state, b) {
                        (State::Start, b'{') => State::KeyOrEnd { first: true },
                        (State::KeyOrEnd { first: true }, b'}') => State::End,
                        (State::KeyOrEnd { .. }, b'"') => {
                            self.scan = Scan::new(pos);
                            self.state = State::Key;
                            continue;
                        }
                        (State::Colon, b':') if self.key == "values" => {
                            self.saw_values = true;
                            State::ValuesStart
                        }
                        (State::Colon, b':') => State::FieldStart,
                        (State::ElemOrEnd { first: true }, b']') => State::AfterField,
                        (State::ElemOrEnd { .. }, b'{') if self.envelopes => {
                            let text = *text.get_or_insert_with(|| fast::valid_prefix(data));
                            let proven = text
                                .get(pos..)
                                .and_then(|t| fast::prove_envelope(t, self.members.as_mut()));
                            if let Some(p) = proven {
                                let element = &text[pos..pos + p.end];
                                let meta = p.raw_meta(element, self.members.as_deref());
                                on_value(element.as_bytes(), meta).map_err(FeedError::Sink)?;
                                self.pos = pos + p.end;
                                self.state = State::AfterElem;
                                continue;
                            }
                            self.scan = Scan::envelope(pos);
                            self.state = State::Elem;
                            continue;
                        }
                        (State::ElemOrEnd { .. }, b'{') => {
                            // Most elements: proven whole, compact and valid in one pass.
                            let text = *text.get_or_insert_with(|| fast::valid_prefix(data));
                            let proven = text
                                .get(pos..)
                                .and_then(|t| fast::prove(t, self.members.as_mut()));
                            if let Some(p) = proven {
                                let end = pos + p.end;
                                let get = |i: usize| {
                                    p.spans[i].and_then(|(a, b)| text.get(pos + a..pos + b))
                                };
                                let meta = RawMeta {
                                    table: get(0),
                                    component: get(1),
                                    ts: get(2),
                                    deleted: get(3),
                                    id: get(4),
                                    value: None,
                                    plain_names: p.plain_names,
                                    members: self.members.as_deref(),
                                };
                                on_value(&data[pos..end], meta).map_err(FeedError::Sink)?;
                                self.pos = end;
                                self.state = State::AfterElem;
                                continue;
                            }
                            // The rest (split by a chunk boundary, pretty, or invalid): the
                            // exact path, from the element's start.
                            self.scan = Scan::element(pos);
                            self.state = State::Elem;
                            continue;
                        }
                        (State::FieldStart, _) | (State::ElemOrEnd { .. }, _) => {
                            (self.scan, self.state) = if self.state == State::FieldStart {
                                (Scan::new(pos), State::FieldValue)
                            } else {
                                (Scan::of(self.envelopes, pos), State::Elem)
                            };
                            continue;
                        }
                        (State::ValuesStart, b'[') => State::ElemOrEnd { first: true },
                        (State::AfterElem, b',') => State::ElemOrEnd { first: false },
                        (State::AfterElem, b']') => State::AfterField,
                        (State::AfterField, b',') => State::KeyOrEnd { first: false },
                        (State::AfterField, b'}') => State::End,
                        _ => return Err(Syntax(self.err(b))),
                    };
                    self.pos += 1;
                    self.state = next;
                }
            }
        }
    }

    /// Where what is still needed starts: the value being scanned, or the next byte.
    fn keep_from(&self) -> usize {
        match self.state {
            State::Key | State::FieldValue | State::Elem => self.scan.start,
            _ => self.pos,
        }
    }

    /// Positions become offsets from `by` on (the bytes before it are gone).
    fn rebase(&mut self, by: usize) {
        self.dropped += by as u64;
        self.pos -= by;
        if matches!(self.state, State::Key | State::FieldValue | State::Elem) {
            self.scan.shift(by);
        }
    }

    /// Drops consumed bytes so the buffer holds at most the value being scanned.
    fn compact(&mut self) {
        let keep_from = self.keep_from();
        if keep_from == 0 {
            return;
        }
        self.buf.drain(..keep_from);
        self.rebase(keep_from);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Up to two random edits of `bytes`: a byte flipped, a piece of `pool` inserted, a byte
    /// removed, (with `duplicate`) a run of up to 19 bytes repeated, or the rest cut off.
    fn mutate(bytes: &mut Vec<u8>, rng: &mut fastrand::Rng, pool: &[&[u8]], duplicate: bool) {
        for _ in 0..rng.usize(0..3) {
            if bytes.is_empty() {
                break;
            }
            let at = rng.usize(..bytes.len());
            match (rng.u8(0..4 + u8::from(duplicate)), duplicate) {
                (0, _) => bytes[at] = rng.u8(..),
                (1, _) => {
                    let ins = pool[rng.usize(..pool.len())];
                    bytes.splice(at..at, ins.iter().copied());
                }
                (2, _) => {
                    bytes.remove(at);
                }
                (3, true) => {
                    let end = (at + rng.usize(1..20)).min(bytes.len());
                    let dup = bytes[at..end].to_vec();
                    bytes.splice(at..at, dup);
                }
                _ => bytes.truncate(at),
            }
        }
    }

    /// (values, other fields) of a parsed page, as strings.
    type Parsed = (Vec<String>, Vec<(String, String)>);

    fn parse_in_chunks(body: &[u8], chunk: usize) -> Result<Parsed, PageSyntaxError> {
        let mut p = PageParser::new();
        let mut values = Vec::new();
        for part in body.chunks(chunk.max(1)) {
            p.feed(part, |v, _| {
                values.push(String::from_utf8(v.to_vec()).unwrap());
                Ok::<(), ()>(())
            })
            .map_err(|e| match e {
                FeedError::Syntax(s) => s,
                FeedError::Sink(()) => unreachable!(),
            })?;
        }
        let fields = p
            .finish()?
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8(v).unwrap()))
            .collect();
        Ok((values, fields))
    }

    const PAGE: &str = r#"{"values":[{"_component":"","_table":"users","_ts":1770335566197682000,"_id":"j57","s":"a \"quoted\" }] \\ back\\","n":[1,{"x":[]}],"u":"é✓"},{}, {"e":{}}],"snapshot":1770335566197682922,"cursor":"{\"tablet\":\"X0yj\",\"id\":\"j5\"}","hasMore":true}"#;

    #[test]
    fn elements_are_exact_bytes_whatever_the_chunking() {
        let whole = parse_in_chunks(PAGE.as_bytes(), PAGE.len()).unwrap();
        assert_eq!(whole.0.len(), 3);
        assert!(
            whole.0[0].starts_with(r#"{"_component":"","#) && whole.0[0].ends_with(r#""u":"é✓"}"#)
        );
        assert_eq!(whole.0[1], "{}");
        assert_eq!(whole.0[2], r#"{"e":{}}"#);
        assert_eq!(
            whole.1,
            vec![
                ("snapshot".to_owned(), "1770335566197682922".to_owned()),
                (
                    "cursor".to_owned(),
                    r#""{\"tablet\":\"X0yj\",\"id\":\"j5\"}""#.to_owned()
                ),
                ("hasMore".to_owned(), "true".to_owned()),
            ]
        );
        for chunk in 1..40 {
            assert_eq!(
                parse_in_chunks(PAGE.as_bytes(), chunk).unwrap(),
                whole,
                "chunk {chunk}"
            );
        }
    }

    /// The metadata found while scanning equals what a full JSON parse finds, wherever the
    /// fields are and whatever surrounds them; nested look-alikes are not picked up.
    #[test]
    fn metadata_spans_agree_with_serde() {
        use crate::ValueMeta;
        let docs = [
            r#"{"_component":"","_table":"users","_ts":1770335566197682000,"_id":"j57","n":1}"#,
            r#"{"a":{"_ts":1,"_table":"x"},"b":[{"_deleted":true}],"_id":"k","_deleted":false,"_ts":5,"_table":"t\u0061b","_component":"a/b"}"#,
            r#"{ "_ts" : 42 , "s":"\"_ts\":7,", "_table" : "t" , "_deleted" : true, "_id" : "i" }"#,
            r#"{"_table":"t","x":"}{][,:","_ts":-3,"_id":"\u0069d"}"#,
        ];
        for doc in docs {
            let want = ValueMeta::from_json(doc.as_bytes()).unwrap();
            for chunk in 1..doc.len() {
                let body = format!(r#"{{"values":[{doc},{doc}],"cursor":null,"hasMore":false}}"#);
                let mut p = PageParser::new();
                let mut got = Vec::new();
                for part in body.as_bytes().chunks(chunk) {
                    p.feed(part, |_, raw| {
                        got.push(ValueMeta::from_raw(raw).map(|m| {
                            (
                                m.table.into_owned(),
                                m.component.into_owned(),
                                m.id.into_owned(),
                                m.ts,
                                m.deleted,
                            )
                        }));
                        Ok::<(), ()>(())
                    })
                    .unwrap();
                }
                let want = (
                    want.table.to_string(),
                    want.component.to_string(),
                    want.id.to_string(),
                    want.ts,
                    want.deleted,
                );
                assert_eq!(
                    got,
                    vec![Ok(want.clone()), Ok(want)],
                    "{doc} in chunks of {chunk}"
                );
            }
        }
    }

    #[test]
    fn quote_search_finds_the_first_match_at_every_position() {
        for len in 0..300 {
            for pos in 0..=len {
                let mut buf = vec![b'x'; len];
                if pos < len {
                    buf[pos] = if pos % 2 == 0 { b'"' } else { b'\\' };
                    if pos + 1 < len {
                        buf[pos + 1] = b'"';
                    }
                }
                let want = buf.iter().position(|&b| b == b'"' || b == b'\\');
                for from in [0, pos.saturating_sub(1), pos] {
                    let want = want.filter(|&w| w >= from).or_else(|| {
                        buf[from.min(len)..]
                            .iter()
                            .position(|&b| b == b'"' || b == b'\\')
                            .map(|j| from + j)
                    });
                    assert_eq!(
                        find_quote_or_backslash(&buf, from.min(len)),
                        want,
                        "len {len} pos {pos} from {from}"
                    );
                }
            }
        }
        // Bytes just above and below the targets, and high bytes (UTF-8), are not matches.
        let tricky = "!#[]é✓\x01\x7f\u{80}\u{22}".as_bytes().to_vec();
        assert_eq!(
            find_quote_or_backslash(&tricky, 0),
            tricky.iter().position(|&b| b == b'"' || b == b'\\')
        );
    }

    /// Random documents (nesting, escapes, non-ASCII, numbers, metadata at random places),
    /// compact or pretty, split into random chunks: every element comes out as serde delimits
    /// it (compacted when pretty), with the same metadata.
    #[test]
    fn random_documents_in_random_chunks_match_serde() {
        use crate::ValueMeta;
        use serde_json::{json, Map, Value};
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        fn random_value(rng: &mut fastrand::Rng, depth: u32) -> Value {
            match rng.u8(0..if depth > 3 { 5 } else { 7 }) {
                0 => Value::Null,
                1 => json!(rng.bool()),
                2 => json!(rng.i64(..)),
                3 => json!(rng.f64() * 1e6),
                4 => {
                    let pool = [
                        "",
                        "a",
                        "\"",
                        "\\",
                        "é✓",
                        "}{][,:",
                        "_ts",
                        "line\nbreak",
                        "\u{1}",
                    ];
                    json!((0..rng.usize(0..4))
                        .map(|_| pool[rng.usize(..pool.len())])
                        .collect::<String>())
                }
                5 => Value::Array(
                    (0..rng.usize(0..4))
                        .map(|_| random_value(rng, depth + 1))
                        .collect(),
                ),
                _ => {
                    let mut m = Map::new();
                    for i in 0..rng.usize(0..5) {
                        m.insert(
                            format!("k{i}_{}", ["_ts", "_table", "x\"y", ""][rng.usize(..4)]),
                            random_value(rng, depth + 1),
                        );
                    }
                    Value::Object(m)
                }
            }
        }
        for round in 0..300 {
            let mut docs = Vec::new();
            for _ in 0..rng.usize(0..6) {
                let mut m = Map::new();
                for i in 0..rng.usize(0..6) {
                    m.insert(format!("f{i}"), random_value(&mut rng, 1));
                }
                m.insert(
                    "_table".into(),
                    json!(["users", "t\"q", "é"][rng.usize(..3)]),
                );
                m.insert("_ts".into(), json!(rng.i64(0..)));
                m.insert(
                    "_id".into(),
                    json!(["k57", "a\"b", "\u{e9}"][rng.usize(..3)]),
                );
                if rng.bool() {
                    m.insert("_deleted".into(), json!(rng.bool()));
                }
                if rng.bool() {
                    m.insert("_component".into(), json!("a/b"));
                }
                for i in 0..rng.usize(0..3) {
                    m.insert(format!("g{i}"), random_value(&mut rng, 1));
                }
                docs.push(Value::Object(m));
            }
            let page = json!({"values": docs, "cursor": null, "hasMore": rng.bool()});
            let body = if round % 3 == 0 {
                serde_json::to_string_pretty(&page).unwrap()
            } else {
                page.to_string()
            };
            let want: Vec<String> = serde_json::from_str::<Map<String, Value>>(&body)
                .map(|_| ())
                .and_then(|()| {
                    #[derive(serde::Deserialize)]
                    struct P<'a> {
                        #[serde(borrow)]
                        values: Vec<&'a serde_json::value::RawValue>,
                    }
                    serde_json::from_str::<P<'_>>(&body)
                        // Compact JSON comes out byte for byte; pretty JSON comes out compact.
                        .map(|p| {
                            p.values
                                .iter()
                                .map(|v| {
                                    serde_json::from_str::<Value>(v.get()).unwrap().to_string()
                                })
                                .collect()
                        })
                })
                .unwrap();
            let mut p = PageParser::new();
            let mut got = Vec::new();
            let mut rest = body.as_bytes();
            while !rest.is_empty() {
                let n = rng.usize(1..=rest.len().min(64));
                let (part, tail) = rest.split_at(n);
                rest = tail;
                p.feed(part, |v, raw| {
                    let meta = ValueMeta::from_raw(raw).unwrap();
                    assert_eq!(meta, ValueMeta::from_json(v).unwrap(), "round {round}");
                    got.push(String::from_utf8(v.to_vec()).unwrap());
                    Ok::<(), ()>(())
                })
                .unwrap();
            }
            p.finish().unwrap();
            assert_eq!(got, want, "round {round}");
        }
    }

    /// A `,` directly inside an *array* element made the next string
    /// look like a key, so `"_ts"` there recorded a metadata span with a stale start, which
    /// underflowed when the buffer was compacted between two chunks.
    #[test]
    fn metadata_names_inside_array_elements_split_anywhere() {
        for doc in [
            r#"[1,"_ts",2]"#,
            r#"["a","_ts","b"]"#,
            r#"["_table","x","_ts"]"#,
        ] {
            let body = format!(r#"{{"values":[{doc}],"cursor":null,"hasMore":false}}"#);
            for cut in 1..body.len() {
                let mut p = PageParser::new();
                let mut metas = Vec::new();
                for part in [&body.as_bytes()[..cut], &body.as_bytes()[cut..]] {
                    // Not an object: a clean error, or nothing found; never a panic.
                    let _ = p.feed(part, |_, raw| {
                        metas.push(raw.ts.is_some() || raw.table.is_some());
                        Ok::<(), ()>(())
                    });
                }
                assert!(metas.iter().all(|found| !found), "{doc} cut at {cut}");
            }
        }
    }

    /// Mutated pages: valid pages are mutated (bytes flipped, inserted,
    /// deleted, duplicated, cut; `+`, control bytes, invalid UTF-8, whitespace), split into
    /// random chunks and fed. Whatever the body, the parser never panics; every value it hands
    /// out is one line of valid JSON; and when serde accepts the body as a page, the parser
    /// hands out exactly serde's values and finishes cleanly.
    #[test]
    fn mutated_pages_in_random_chunks_give_exact_values_or_a_clean_error() {
        use serde_json::{json, Map, Value};
        #[derive(serde::Deserialize)]
        struct P {
            values: Vec<Map<String, Value>>,
        }
        let mut rng = fastrand::Rng::with_seed(0x15);
        let pool: [&[u8]; 14] = [
            b"+", b"-", b"\n", b"\n", b" ", b"\x01", b"\xff", b"\xc3", b"\"", b"\\", b"}", b"]",
            b",", b"\"_ts\"",
        ];
        let mut outcomes = [0usize; 2];
        for round in 0..3000 {
            let docs: Vec<Value> = (0..rng.usize(0..4))
                .map(|i| {
                    let s = ["a\"b", "é✓", "_ts", "x\ny", "}]"][rng.usize(..5)];
                    let n = [json!(null), json!(1.5e-3), json!([1, {"k": []}]), json!(-0)];
                    let n = n[rng.usize(..4)].clone();
                    json!({"_table": "t", "_ts": rng.i64(0..), "_id": format!("d{i}"), "s": s, "n": n})
                })
                .collect();
            let page = json!({"values": docs, "cursor": "c", "hasMore": false});
            let mut body = if rng.bool() {
                serde_json::to_vec_pretty(&page).unwrap()
            } else {
                serde_json::to_vec(&page).unwrap()
            };
            mutate(&mut body, &mut rng, &pool, true);
            let mut p = PageParser::new();
            let mut got = Vec::new();
            let mut rest = &body[..];
            let mut result = Ok(());
            while !rest.is_empty() && result.is_ok() {
                let n = rng.usize(1..=rest.len().min(48));
                let (part, tail) = rest.split_at(n);
                rest = tail;
                result = p
                    .feed(part, |v, _| {
                        let line = std::str::from_utf8(v).expect("a value is UTF-8");
                        assert!(!line.contains('\n'), "round {round}: {line}");
                        let parsed: Value = serde_json::from_str(line)
                            .unwrap_or_else(|e| panic!("round {round}: {line}: {e}"));
                        got.push(parsed);
                        Ok::<(), ()>(())
                    })
                    .map_err(|_| ());
            }
            let finished = result.is_ok() && p.finish().is_ok();
            outcomes[usize::from(finished)] += 1;
            if let Ok(want) = serde_json::from_slice::<P>(&body) {
                let want: Vec<Value> = want.values.into_iter().map(Value::Object).collect();
                assert!(
                    finished,
                    "round {round}: serde accepts {:?}",
                    String::from_utf8_lossy(&body)
                );
                assert_eq!(got, want, "round {round}");
            }
        }
        // Both outcomes occur often, or the campaign would prove little.
        assert!(outcomes.iter().all(|&n| n > 500), "{outcomes:?}");
    }

    /// What the exact path (the resumable scan, then the element check) makes of an element
    /// at the start of `input`: its end, compact bytes and metadata, when it accepts it as is.
    fn exact_path(input: &[u8]) -> Option<(usize, Vec<Option<Vec<u8>>>)> {
        let mut scan = Scan::element(0);
        let end = scan.advance(input).ok()??;
        let doc = element::compact_element(&input[..end]).ok()?;
        if !matches!(doc, std::borrow::Cow::Borrowed(_)) {
            return None;
        }
        let m = scan.raw_meta(std::str::from_utf8(&input[..end]).ok()?);
        let meta = [m.table, m.component, m.ts, m.deleted, m.id];
        Some((
            end,
            meta.iter()
                .map(|v| v.map(|v| v.as_bytes().to_vec()))
                .collect(),
        ))
    }

    /// The fast path accepts an element only when the exact path accepts it whole and as is,
    /// with the same end and the same metadata; and it does accept compact documents whole in
    /// the buffer (or it would not be a fast path). Random documents, mutated (bytes flipped,
    /// inserted, deleted; control bytes, invalid UTF-8, `+`, whitespace, quotes) and cut.
    #[test]
    fn the_fast_path_agrees_with_the_exact_path() {
        use serde_json::json;
        let mut rng = fastrand::Rng::with_seed(0xfa57);
        let pool: [&[u8]; 18] = [
            b"+",
            b"-",
            b"0",
            b".",
            b"e",
            b" ",
            b"\x01",
            b"\xff",
            b"\xc3",
            b"\xe2\x9c",
            b"\"",
            b"\\",
            b"}",
            b"]",
            b"{",
            b",",
            b":",
            b"\\u00",
        ];
        let strings = ["a\"b", "é✓", "_ts", "x\ny", "}]", "\u{1}", "😀", "\\", "/"];
        let (mut proven, mut exact_ok) = (0, 0);
        for round in 0..20_000 {
            let s = strings[rng.usize(..strings.len())];
            let n = [
                json!(null),
                json!(1.5e-3),
                json!([1, {"k": []}]),
                json!(-0),
                json!(12345678901234567890u64),
                json!({"_ts": 1}),
            ];
            let n = n[rng.usize(..n.len())].clone();
            let mut doc = if rng.bool() {
                json!({"_table": "t", "_ts": rng.i64(..), "_id": s, "s": s, "n": n, "_deleted": rng.bool()})
            } else {
                json!({"n": n, "_component": s, "_id": "i", "_ts": rng.i64(0..), "_table": s, "e": {}, "a": []})
            };
            if rng.u8(..8) == 0 {
                doc = json!({"d": doc, "_ts": doc.clone()});
            }
            let mut bytes = serde_json::to_vec(&doc).unwrap();
            mutate(&mut bytes, &mut rng, &pool, false);
            // What follows the element in the buffer, if anything.
            let tails: [&[u8]; 5] = [b"", b",", b"]", b",{\"a\":1}]", b"x"];
            bytes.extend_from_slice(tails[rng.usize(..tails.len())]);
            let exact = exact_path(&bytes);
            exact_ok += usize::from(exact.is_some());
            // As the parser tries it: on the part of the buffer that is UTF-8.
            match fast::prove(fast::valid_prefix(&bytes), None) {
                Some(p) => {
                    proven += 1;
                    let spans: Vec<Option<Vec<u8>>> = p
                        .spans
                        .iter()
                        .map(|s| s.map(|(a, b)| bytes[a..b].to_vec()))
                        .collect();
                    assert_eq!(
                        exact,
                        Some((p.end, spans)),
                        "round {round}: {:?}",
                        String::from_utf8_lossy(&bytes)
                    );
                    let names = [0, 1, 4].map(|k| p.spans[k].map(|(a, b)| &bytes[a..b]));
                    if p.plain_names {
                        assert!(
                            names.iter().flatten().all(|n| !n.contains(&b'\\')),
                            "round {round}: {:?}",
                            String::from_utf8_lossy(&bytes)
                        );
                    }
                }
                None => assert!(
                    exact.is_none(),
                    "round {round}: the fast path passed over {:?}",
                    String::from_utf8_lossy(&bytes)
                ),
            }
        }
        // Both outcomes occur often, or the comparison would prove little.
        assert!(
            proven > 4000 && 20_000 - exact_ok > 4000,
            "{proven} {exact_ok}"
        );
    }

    /// Elements split anywhere by chunk boundaries, in compact pages: the same values and
    /// metadata as one whole chunk gives, whichever path each element took.
    #[test]
    fn compact_pages_split_anywhere_give_the_same_values() {
        let body = PAGE.replace(", ", ",");
        let docs = r#"{"_table":"t","_ts":1,"_id":"a","s":"é✓\u00e9\"","n":-1.5e3},{"_table":"t","_ts":2,"_id":"b","x":[{},[],null,true]}"#;
        let body2 = format!(r#"{{"values":[{docs},{docs}],"cursor":"c","hasMore":false}}"#);
        for body in [body, body2] {
            let whole = parse_with_meta(body.as_bytes(), &[body.len()]);
            for cut in 1..body.len() {
                for cut2 in [cut + 1, cut + 7, body.len()] {
                    let cut2 = cut2.min(body.len());
                    let parts = [cut, cut2 - cut, body.len() - cut2];
                    assert_eq!(
                        parse_with_meta(body.as_bytes(), &parts),
                        whole,
                        "cut at {cut} and {cut2}"
                    );
                }
            }
        }
    }

    /// A chunk that begins by completing a value split at the previous boundary: only that
    /// value goes through the buffer, the rest of the chunk is scanned where it is.
    #[test]
    fn only_the_split_value_is_copied() {
        let value = format!(
            r#"{{"_table":"t","_ts":1,"_id":"a","s":"{}"}}"#,
            "x".repeat(80)
        );
        let values = vec![value.as_str(); 20_000];
        let body = format!(
            r#"{{"values":[{}],"cursor":"c","hasMore":false}}"#,
            values.join(",")
        );
        let cut = body.find(&value).unwrap() + 30;
        let mut p = PageParser::new();
        let mut seen = 0;
        for part in [&body.as_bytes()[..cut], &body.as_bytes()[cut..]] {
            p.feed(part, |v, _| {
                assert_eq!(v, value.as_bytes());
                seen += 1;
                Ok::<(), ()>(())
            })
            .unwrap();
        }
        assert_eq!(seen, 20_000);
        assert!(
            p.buf.capacity() <= 8192,
            "{} bytes buffered",
            p.buf.capacity()
        );
        p.finish().unwrap();
    }

    /// Large chunks, as the network brings them, cut anywhere: a value split by a boundary is
    /// completed in the buffer a piece at a time, the rest scanned in the chunk. The same
    /// values, metadata, fields and errors (kind and offset) as one whole chunk gives.
    #[test]
    fn large_chunks_cut_anywhere_give_the_same_values_and_errors() {
        let mut rng = fastrand::Rng::with_seed(0xc4);
        for round in 0..200 {
            let docs: Vec<String> = (0..rng.usize(1..12))
                .map(|i| {
                    let longest = [10, 3000, 20_000][rng.usize(..3)];
                    let pad = "é".repeat(rng.usize(0..longest));
                    if rng.bool() {
                        format!(r#"{{"_table":"t","_ts":{i},"_id":"d{i}","pad":"{pad}"}}"#)
                    } else {
                        format!(
                            r#"{{ "_table" : "t", "pad" : "{pad}", "_ts" : {i}, "_id" : "d{i}" }}"#
                        )
                    }
                })
                .collect();
            let mut body = format!(
                r#"{{"values":[{}],"cursor":"c","hasMore":false}}"#,
                docs.join(",")
            )
            .into_bytes();
            if round % 4 == 3 {
                // A bad byte somewhere: the same error whatever the chunks.
                let at = rng.usize(..body.len());
                body[at] = [b'\x01', b'+', b'}', 0xff][rng.usize(..4)];
            }
            let whole = parse_outcome(&body, &[body.len()]);
            for _ in 0..10 {
                let a = rng.usize(0..=body.len());
                let b = rng.usize(a..=body.len());
                let parts = [a, b - a, body.len() - b];
                assert_eq!(
                    parse_outcome(&body, &parts),
                    whole,
                    "round {round}: {parts:?}"
                );
            }
        }
    }

    /// Values with their metadata, the fields, or the error, the body fed in parts.
    fn parse_outcome(body: &[u8], parts: &[usize]) -> Result<Parsed, String> {
        let mut p = PageParser::new();
        let mut values = Vec::new();
        let mut rest = body;
        for &n in parts {
            let (part, tail) = rest.split_at(n);
            rest = tail;
            p.feed(part, |v, m| {
                let meta = [m.table, m.component, m.ts, m.deleted, m.id];
                values.push(format!("{} {meta:?}", String::from_utf8_lossy(v)));
                Ok::<(), ()>(())
            })
            .map_err(|e| format!("{e:?}"))?;
        }
        let fields = p
            .finish()
            .map_err(|e| format!("{e:?}"))?
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8(v).unwrap()))
            .collect();
        Ok((values, fields))
    }

    /// Values and their metadata, the body fed in parts of the given sizes.
    fn parse_with_meta(body: &[u8], parts: &[usize]) -> Vec<(String, Vec<Option<String>>)> {
        let mut p = PageParser::new();
        let mut got = Vec::new();
        let mut rest = body;
        for &n in parts {
            let (part, tail) = rest.split_at(n.min(rest.len()));
            rest = tail;
            p.feed(part, |v, m| {
                let meta = [m.table, m.component, m.ts, m.deleted, m.id];
                got.push((
                    String::from_utf8(v.to_vec()).unwrap(),
                    meta.iter().map(|x| x.map(str::to_owned)).collect(),
                ));
                Ok::<(), ()>(())
            })
            .unwrap();
        }
        p.finish().unwrap();
        got
    }

    #[test]
    fn trailing_fields_are_read_from_the_end() {
        let got = trailing_fields(PAGE.as_bytes()).unwrap();
        assert_eq!(
            got,
            vec![
                (&br#""hasMore""#[..], &b"true"[..]),
                (br#""cursor""#, br#""{\"tablet\":\"X0yj\",\"id\":\"j5\"}""#),
                (br#""snapshot""#, b"1770335566197682922"),
            ]
        );
        let pretty = " {\n \"values\" : [ {} ] , \"cursor\" : \"a\\\\\" , \"hasMore\":false } \n";
        assert_eq!(
            trailing_fields(pretty.as_bytes()).unwrap(),
            vec![
                (&br#""hasMore""#[..], &b"false"[..]),
                (br#""cursor""#, br#""a\\""#)
            ]
        );
        // Fields only: all of them; a cut or odd tail: nothing, and never a panic.
        assert_eq!(trailing_fields(br#"{"a":1,"b":null}"#).unwrap().len(), 2);
        for cut in 0..PAGE.len() {
            let _ = trailing_fields(&PAGE.as_bytes()[cut..]);
            let _ = trailing_fields(&PAGE.as_bytes()[..cut]);
        }
        for bad in [
            &b""[..],
            b"}",
            b"x}",
            b"\"}",
            b":1}",
            b"\"a\"1}",
            b"[\"a\":1}",
        ] {
            assert_eq!(
                trailing_fields(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn whitespace_key_order_and_empty_pages() {
        let body =
            " {\n \"hasMore\" : false , \"cursor\" : null,\"values\" : [ ] , \"snapshot\":5 } \n";
        for chunk in 1..body.len() {
            let (values, fields) = parse_in_chunks(body.as_bytes(), chunk).unwrap();
            assert!(values.is_empty());
            assert_eq!(fields.len(), 3);
            assert_eq!(fields[1], ("cursor".to_owned(), "null".to_owned()));
            assert_eq!(fields[2], ("snapshot".to_owned(), "5".to_owned()));
        }
    }

    #[test]
    fn truncation_and_garbage_are_errors() {
        for cut in 0..PAGE.len() {
            assert!(
                parse_in_chunks(&PAGE.as_bytes()[..cut], 7).is_err(),
                "cut at {cut}"
            );
        }
        for bad in [
            "<html>502</html>",
            "[1,2]",
            r#"{"values":[1,,2]}"#,
            r#"{"values":[{}]}x"#,
            r#"{"a" 1}"#,
        ] {
            assert!(parse_in_chunks(bad.as_bytes(), 3).is_err(), "{bad}");
        }
    }

    /// An endless element (or cursor) fails once it passes the cap,
    /// instead of growing the buffer until the machine runs out of memory.
    #[test]
    fn an_endless_value_fails_at_the_cap() {
        for start in [&br#"{"values":[{"pad":""#[..], br#"{"cursor":""#] {
            let mut p = PageParser::new();
            p.feed(start, |_, _| Ok::<(), ()>(())).unwrap();
            let chunk = vec![b'x'; 1024 * 1024];
            let mut fed = 0;
            let err = loop {
                match p.feed(&chunk, |_, _| Ok::<(), ()>(())) {
                    Ok(()) => fed += chunk.len(),
                    Err(e) => break e,
                }
                assert!(fed <= MAX_VALUE_BYTES, "no error after {fed} bytes");
            };
            assert!(matches!(err, FeedError::Syntax(PageSyntaxError::TooLarge)));
            assert!(p.buf.len() <= MAX_VALUE_BYTES + chunk.len());
        }
    }

    /// A Data Sync page's tail: `pagination` is an object, read whole.
    #[test]
    fn trailing_fields_read_flat_objects() {
        let tail = br#"...,"value":{"_id":"a"}}],"syncId":"airbyte-1", "pagination" : { "hasMore" : true , "nextCursor" : "01ab" } }"#;
        assert_eq!(
            trailing_fields(tail).unwrap(),
            vec![
                (
                    &br#""pagination""#[..],
                    &br#"{ "hasMore" : true , "nextCursor" : "01ab" }"#[..]
                ),
                (br#""syncId""#, br#""airbyte-1""#),
            ]
        );
        assert_eq!(
            trailing_fields(br#"{"a":{},"b":1}"#).unwrap(),
            vec![(&br#""b""#[..], &b"1"[..]), (br#""a""#, b"{}")]
        );
        // A nested object is no plain field: reading stops there.
        assert_eq!(
            trailing_fields(br#"{"a":{"b":{"c":1}}}"#).unwrap(),
            Vec::<(&[u8], &[u8])>::new()
        );
        for bad in [
            &br#"{"a":{"b" 1}}"#[..],
            br#"{"a":{,"b":1}}"#,
            br#"{"a":{"b":}}"#,
        ] {
            assert!(
                trailing_fields(bad).is_none_or(|f| f.is_empty()),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn leading_fields_are_read_up_to_values() {
        let head = br#" { "status" : {"type":"stale","snapshotTs":5} , "truncates":[{"component":"","table":"t"}],"values":[{"component":"#;
        assert_eq!(
            leading_fields(head),
            vec![
                (
                    &br#""status""#[..],
                    &br#"{"type":"stale","snapshotTs":5}"#[..]
                ),
                (br#""truncates""#, br#"[{"component":"","table":"t"}]"#),
            ]
        );
        assert_eq!(
            leading_fields(br#"{"n":-1.5,"s":"a\"b","t":true}"#),
            vec![
                (&br#""n""#[..], &b"-1.5"[..]),
                (br#""s""#, br#""a\"b""#),
                (br#""t""#, b"true"),
            ]
        );
        // Cut anywhere: what is whole so far, never a panic.
        for cut in 0..head.len() {
            let got = leading_fields(&head[..cut]);
            assert!(got.len() <= 2);
        }
        for bad in [&b""[..], b"[1]", b"{1:2}", b"{\"a\" 1}", b"{\"a\":x}"] {
            assert!(leading_fields(bad).is_empty());
        }
    }

    /// Random envelopes, mutated and cut, as the parser tries them: the fast path accepts an
    /// envelope only as the exact path would (same end, same spans), and finds the document's
    /// `_id` and members where a proof of the document alone finds them.
    #[test]
    fn the_envelope_fast_path_agrees_with_the_exact_path() {
        use serde_json::json;
        let mut rng = fastrand::Rng::with_seed(0xe7);
        let pool: [&[u8]; 10] = [
            b"+", b"0", b" ", b"\x01", b"\xff", b"\"", b"\\", b"}", b",", b":",
        ];
        let (mut proven, mut with_id) = (0, 0);
        for round in 0..20_000 {
            let doc = match rng.u8(..4) {
                0 => json!({"_id": "a\"b", "n": [1, {"k": null}], "_creationTime": 1.5}),
                1 => json!({"x": "_id", "_id": 5}),
                2 => json!([1]),
                _ => json!({"_id": "é✓", "value": {"_id": "inner"}}),
            };
            let env = if rng.bool() {
                json!({"component": "", "table": "t", "ts": rng.i64(..), "deleted": rng.bool(), "value": doc})
            } else {
                json!({"value": doc, "deleted": false, "extra": {"table": "no"}, "ts": 1, "table": "t\"", "component": "a/b"})
            };
            let mut bytes = serde_json::to_vec(&env).unwrap();
            mutate(&mut bytes, &mut rng, &pool, false);
            let tails: [&[u8]; 3] = [b"", b",", b"]"];
            bytes.extend_from_slice(tails[rng.usize(..tails.len())]);
            let text = fast::valid_prefix(&bytes);
            let mut members = Vec::new();
            let Some(p) = fast::prove_envelope(text, Some(&mut members)) else {
                continue;
            };
            proven += 1;
            let element = &bytes[..p.end];
            // The exact path: the scan finds the same end and spans, the check accepts it as is.
            let mut scan = Scan::envelope(0);
            let end = scan
                .advance(&bytes)
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert_eq!(
                end,
                Some(p.end),
                "round {round}: {:?}",
                String::from_utf8_lossy(&bytes)
            );
            assert!(matches!(
                element::compact_element(element),
                Ok(std::borrow::Cow::Borrowed(_))
            ));
            let exact = scan.raw_meta(std::str::from_utf8(element).unwrap());
            let fast = p.raw_meta(text, Some(&members));
            assert_eq!(
                (
                    exact.table,
                    exact.component,
                    exact.ts,
                    exact.deleted,
                    exact.value
                ),
                (
                    fast.table,
                    fast.component,
                    fast.ts,
                    fast.deleted,
                    fast.value
                ),
                "round {round}"
            );
            // The document's own proof agrees on `_id` and members.
            if let Some(value) = fast.value.filter(|v| v.starts_with('{')) {
                let mut own = Vec::new();
                let doc = fast::prove(value, Some(&mut own)).unwrap();
                assert_eq!(fast.id, doc.spans[4].map(|(a, b)| &value[a..b]));
                assert_eq!(fast.members, Some(&own[..]));
                with_id += usize::from(fast.id.is_some());
            } else {
                assert_eq!((fast.id, fast.members), (None, None));
            }
        }
        assert!(proven > 4000 && with_id > 2000, "{proven} {with_id}");
    }

    /// An envelope page is held one element at a time too, and its other members are bounded
    /// all together.
    #[test]
    fn envelope_pages_hold_one_element_and_bounded_fields() {
        let env = format!(
            r#"{{"component":"","table":"t","ts":1,"deleted":false,"value":{{"_id":"a","pad":"{}"}}}}"#,
            "x".repeat(10_000)
        );
        let body = format!(
            r#"{{"status":{{"type":"snapshotting"}},"values":[{}],"pagination":{{"nextCursor":"c"}}}}"#,
            vec![env; 200].join(",")
        );
        let mut p = PageParser::sync_envelopes(true);
        let (mut max_buf, mut n) = (0, 0);
        for part in body.as_bytes().chunks(4096) {
            p.feed(part, |raw, m| {
                assert!(m
                    .value
                    .is_some_and(|v| raw.ends_with(format!("{v}}}").as_bytes())));
                n += 1;
                Ok::<(), ()>(())
            })
            .unwrap();
            max_buf = max_buf.max(p.buf.capacity());
        }
        assert_eq!(n, 200);
        assert!(max_buf < 64 * 1024, "parser buffer grew to {max_buf}");
        assert!(p.saw_values());
        assert_eq!(p.finish().unwrap().len(), 2);
        // Many small members: refused once together they pass the cap.
        let mut p = PageParser::new();
        p.feed(b"{", |_, _| Ok::<(), ()>(())).unwrap();
        let many = r#""k":1,"#.repeat(100_000);
        let err = (0..100)
            .find_map(|_| p.feed(many.as_bytes(), |_, _| Ok::<(), ()>(())).err())
            .unwrap();
        assert!(matches!(err, FeedError::Syntax(PageSyntaxError::TooLarge)));
    }

    #[test]
    fn memory_holds_one_element_not_the_page() {
        let doc = format!(r#"{{"pad":"{}"}}"#, "x".repeat(10_000));
        let body = format!(
            r#"{{"values":[{}],"cursor":null,"hasMore":false}}"#,
            vec![doc; 200].join(",")
        );
        let mut p = PageParser::new();
        let mut max_buf = 0;
        let mut n = 0;
        for part in body.as_bytes().chunks(4096) {
            p.feed(part, |_, _| {
                n += 1;
                Ok::<(), ()>(())
            })
            .unwrap();
            max_buf = max_buf.max(p.buf.capacity());
        }
        assert_eq!(n, 200);
        assert!(max_buf < 64 * 1024, "parser buffer grew to {max_buf}");
        p.finish().unwrap();
    }
}
