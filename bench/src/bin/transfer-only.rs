//! transfer-only: the smallest client that pages through the same Convex export responses the
//! connector reads, and throws the documents away.
//!
//! It is the "what the wire allows on this machine" baseline of the benchmark: plain
//! `std::net` HTTP/1.1 with keep-alive (no async runtime), the body read into a reused buffer,
//! and one pass over it that finds what paging needs and counts the elements of `values`
//! (needed to page and to check counts) without building them.
//!
//! Two APIs, as the connector's `api` option:
//! - `--api streaming_export` (default): `list_snapshot` then `document_deltas` per table, one
//!   connection per table walk; `--delta-cursors` starts from saved deltas cursors.
//! - `--api data_sync`: `POST /api/v1/data/sync`, one data sync per table over a selection of
//!   exactly that table (as the connector runs them: one after another), all on one keep-alive
//!   connection; a cold start without `--data-sync-cursors`, else from each table's saved
//!   cursor. A table's sync ends at its first `upToDate` page, as the connector's does. Like
//!   the connector, it asks for the next page as soon as a page has arrived and scans the page
//!   meanwhile (a page is up to 16384 documents, so without that the client and Convex would
//!   take turns).
//!
//! Usage:
//!   transfer-only --url URL --key KEY --tables a,b [--mode full|incremental]
//!                 [--delta-cursors a=TS,b=TS] [--parallel]
//!   transfer-only --url URL --key KEY --tables a,b --api data_sync [--data-sync-cursors a=HEX,b=HEX]
//! Prints one JSON line: {"records":N,"requests":R,"body_bytes":B,"tables":{...}}.

/// The value format the connector reads by default (typed columns): the same bytes from the
/// same server work, so the comparison is of the clients alone.
const FORMAT: &str = "export_json";
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::exit;

type Res<T> = Result<T, String>;

struct Conn {
    host: String,
    key: String,
    stream: Option<BufReader<TcpStream>>,
    body: Vec<u8>,
    requests: u64,
    body_bytes: u64,
}

impl Conn {
    fn new(host: &str, key: &str) -> Self {
        Conn {
            host: host.to_string(),
            key: key.to_string(),
            stream: None,
            body: Vec::with_capacity(1 << 20),
            requests: 0,
            body_bytes: 0,
        }
    }

    /// GET `path`; the body is left in `self.body`.
    fn get(&mut self, path: &str) -> Res<()> {
        self.request("GET", path, None)
    }

    /// POST `path` with a JSON body; the answer's body is left in `self.body`.
    fn post(&mut self, path: &str, body: &str) -> Res<()> {
        self.request("POST", path, Some(body))
    }

    fn request(&mut self, method: &str, path: &str, body: Option<&str>) -> Res<()> {
        for attempt in 0..2 {
            self.connect()?;
            match self
                .try_send(method, path, body)
                .and_then(|()| self.try_receive(method, path))
            {
                Ok(()) => {
                    self.count();
                    return Ok(());
                }
                // A keep-alive connection closed by the server between requests: reconnect once.
                Err((true, _)) if attempt == 0 => self.stream = None,
                Err((_, e)) => return Err(e),
            }
        }
        unreachable!()
    }

    /// Sends a POST without waiting for its answer (`receive` reads it): the next page is asked
    /// for before the last one is scanned, on the same connection.
    fn send_post(&mut self, path: &str, body: &str) -> Res<()> {
        self.connect()?;
        self.try_send("POST", path, Some(body)).map_err(|(_, e)| e)
    }

    /// Reads the answer to the request `send_post` sent; the body is left in `self.body`.
    fn receive(&mut self, path: &str) -> Res<()> {
        self.try_receive("POST", path).map_err(|(_, e)| e)?;
        self.count();
        Ok(())
    }

    fn connect(&mut self) -> Res<()> {
        if self.stream.is_none() {
            let s = TcpStream::connect(&self.host)
                .map_err(|e| format!("connect {}: {e}", self.host))?;
            s.set_nodelay(true).ok();
            self.stream = Some(BufReader::with_capacity(256 * 1024, s));
        }
        Ok(())
    }

    fn count(&mut self) {
        self.requests += 1;
        self.body_bytes += self.body.len() as u64;
    }

    /// Err((retryable, message)).
    fn try_send(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<(), (bool, String)> {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Convex {}\r\nConvex-Client: airbyte-export-0.5.0\r\nAccept: application/json\r\n",
            self.host, self.key
        );
        match body {
            Some(b) => {
                req.push_str(&format!(
                    "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    b.len()
                ));
                req.push_str(b);
            }
            None => req.push_str("\r\n"),
        }
        let Some(r) = self.stream.as_mut() else {
            return Err((true, "not connected".into()));
        };
        r.get_mut()
            .write_all(req.as_bytes())
            .map_err(|e| (true, format!("write: {e}")))
    }

    /// Err((retryable, message)).
    fn try_receive(&mut self, method: &str, path: &str) -> Result<(), (bool, String)> {
        let Some(r) = self.stream.as_mut() else {
            return Err((true, "not connected".into()));
        };
        let mut line = String::new();
        let n = r
            .read_line(&mut line)
            .map_err(|e| (true, format!("read: {e}")))?;
        if n == 0 {
            return Err((true, "connection closed".into()));
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or((false, format!("bad status line {line:?}")))?;
        let mut content_length: Option<usize> = None;
        let mut chunked = false;
        let mut close = false;
        loop {
            line.clear();
            r.read_line(&mut line)
                .map_err(|e| (false, format!("read header: {e}")))?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let v = v.trim();
                if k.eq_ignore_ascii_case("content-length") {
                    content_length = v.parse().ok();
                } else if k.eq_ignore_ascii_case("transfer-encoding")
                    && v.to_ascii_lowercase().contains("chunked")
                {
                    chunked = true;
                } else if k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close") {
                    close = true;
                }
            }
        }
        self.body.clear();
        if chunked {
            loop {
                line.clear();
                r.read_line(&mut line)
                    .map_err(|e| (false, format!("read chunk: {e}")))?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| (false, format!("bad chunk size {line:?}")))?;
                if size == 0 {
                    // trailers until empty line
                    loop {
                        line.clear();
                        r.read_line(&mut line)
                            .map_err(|e| (false, format!("read trailer: {e}")))?;
                        if line.trim_end().is_empty() {
                            break;
                        }
                    }
                    break;
                }
                let start = self.body.len();
                self.body.resize(start + size, 0);
                r.read_exact(&mut self.body[start..])
                    .map_err(|e| (false, format!("read chunk body: {e}")))?;
                let mut crlf = [0u8; 2];
                r.read_exact(&mut crlf)
                    .map_err(|e| (false, format!("read chunk end: {e}")))?;
            }
        } else if let Some(n) = content_length {
            self.body.resize(n, 0);
            r.read_exact(&mut self.body)
                .map_err(|e| (false, format!("read body: {e}")))?;
        } else {
            r.read_to_end(&mut self.body)
                .map_err(|e| (false, format!("read body: {e}")))?;
            close = true;
        }
        if close {
            self.stream = None;
        }
        if status != 200 {
            return Err((
                false,
                format!(
                    "{method} {path}: HTTP {status}: {}",
                    String::from_utf8_lossy(&self.body[..self.body.len().min(500)])
                ),
            ));
        }
        Ok(())
    }
}

#[derive(Default, Debug)]
struct Page {
    count: u64,
    cursor: Option<String>, // string cursor unescaped, or the raw integer
    has_more: bool,
    snapshot: Option<i64>,
}

fn ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\n' | b'\r' | b'\t') {
        i += 1;
    }
    i
}

/// `i` is at the opening quote; returns the index after the closing quote.
fn skip_string(b: &[u8], mut i: usize) -> Res<usize> {
    i += 1;
    while i < b.len() {
        match b[i] {
            b'"' => return Ok(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    Err("unterminated string".into())
}

fn skip_value(b: &[u8], i: usize) -> Res<usize> {
    let mut i = ws(b, i);
    match b.get(i) {
        Some(b'"') => skip_string(b, i),
        Some(b'{') | Some(b'[') => {
            let mut depth = 0usize;
            while i < b.len() {
                match b[i] {
                    b'"' => {
                        i = skip_string(b, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Ok(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            Err("unterminated container".into())
        }
        Some(_) => {
            while i < b.len() && !matches!(b[i], b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t')
            {
                i += 1;
            }
            Ok(i)
        }
        None => Err("unexpected end".into()),
    }
}

fn unescape(s: &[u8]) -> Res<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    let mut pending_high: Option<u32> = None;
    while i < s.len() {
        if s[i] != b'\\' {
            out.push(s[i]);
            i += 1;
            continue;
        }
        let c = *s.get(i + 1).ok_or("bad escape")?;
        i += 2;
        let ch = match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hex = std::str::from_utf8(s.get(i..i + 4).ok_or("bad \\u")?)
                    .map_err(|e| e.to_string())?;
                let v = u32::from_str_radix(hex, 16).map_err(|e| e.to_string())?;
                i += 4;
                if (0xD800..0xDC00).contains(&v) {
                    pending_high = Some(v);
                    continue;
                }
                let v = match pending_high.take() {
                    Some(h) => 0x10000 + ((h - 0xD800) << 10) + (v - 0xDC00),
                    None => v,
                };
                char::from_u32(v).ok_or("bad code point")?
            }
            _ => return Err("bad escape".into()),
        };
        let mut buf = [0u8; 4];
        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
    }
    String::from_utf8(out).map_err(|e| e.to_string())
}

/// One pass over a page: top-level keys only; `values` elements are counted and skipped.
fn scan(b: &[u8]) -> Res<Page> {
    let mut p = Page::default();
    members(b, 0, &mut |key, i| {
        let end = match key {
            b"values" => {
                if b.get(i) != Some(&b'[') {
                    return Err("values is not an array".into());
                }
                let mut i = i + 1;
                loop {
                    i = ws(b, i);
                    match b.get(i) {
                        Some(b']') => break i + 1,
                        Some(b',') => i += 1,
                        Some(_) => {
                            i = skip_value(b, i)?;
                            p.count += 1;
                        }
                        None => return Err("unterminated values".into()),
                    }
                }
            }
            b"cursor" | b"hasMore" | b"snapshot" => {
                let end = skip_value(b, i)?;
                let raw = &b[i..end];
                match key {
                    b"cursor" => {
                        p.cursor = if raw == b"null" {
                            None
                        } else if raw[0] == b'"' {
                            Some(unescape(&raw[1..raw.len() - 1])?)
                        } else {
                            Some(String::from_utf8_lossy(raw).into_owned())
                        }
                    }
                    b"hasMore" => p.has_more = raw == b"true",
                    _ => p.snapshot = std::str::from_utf8(raw).ok().and_then(|s| s.parse().ok()),
                }
                end
            }
            _ => return Ok(None),
        };
        Ok(Some(end))
    })?;
    Ok(p)
}

/// `name=value,name=value` (a name may hold `=`: the value is after the last one).
fn name_values(list: &str, flag: &str) -> Res<Vec<(String, String)>> {
    list.split(',')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            kv.rsplit_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| format!("{flag} wants name=value,..."))
        })
        .collect()
}

type MemberFn<'a> = dyn FnMut(&[u8], usize) -> Res<Option<usize>> + 'a;

/// A JSON string's text (`raw` from its opening to its closing quote).
fn json_text(raw: &[u8]) -> Res<String> {
    if raw.first() == Some(&b'"') && raw.len() >= 2 {
        unescape(&raw[1..raw.len() - 1])
    } else {
        Err(format!(
            "expected a string, got {}",
            String::from_utf8_lossy(&raw[..raw.len().min(100)])
        ))
    }
}

/// Calls `f(key, value_start)` for each member of the object at `i`: `f` returns the index
/// after the value if it walked it, `None` to have it skipped. Returns the index after the
/// object.
fn members(b: &[u8], i: usize, f: &mut MemberFn<'_>) -> Res<usize> {
    let mut i = ws(b, i);
    if b.get(i) != Some(&b'{') {
        return Err("expected an object".into());
    }
    i += 1;
    loop {
        i = ws(b, i);
        match b.get(i) {
            Some(b'}') => return Ok(i + 1),
            Some(b',') => {
                i += 1;
                continue;
            }
            Some(b'"') => {}
            _ => return Err(format!("unexpected byte at {i}")),
        }
        let kend = skip_string(b, i)?;
        let key = &b[i + 1..kend - 1];
        i = ws(b, kend);
        if b.get(i) != Some(&b':') {
            return Err("expected ':'".into());
        }
        let start = ws(b, i + 1);
        i = match f(key, start)? {
            Some(end) => end,
            None => skip_value(b, start)?,
        };
    }
}

/// Counts the elements of the array at `i` (each skipped once); returns the count and the
/// index after the array.
fn count_array(b: &[u8], i: usize) -> Res<(u64, usize)> {
    if b.get(i) != Some(&b'[') {
        return Err("expected an array".into());
    }
    let mut i = i + 1;
    let mut n = 0;
    loop {
        i = ws(b, i);
        match b.get(i) {
            Some(b']') => return Ok((n, i + 1)),
            Some(b',') => i += 1,
            Some(_) => {
                i = skip_value(b, i)?;
                n += 1;
            }
            None => return Err("unterminated array".into()),
        }
    }
}

/// One Data Sync page, as far as paging and counting need it.
#[derive(Default, Debug)]
struct SyncPage {
    count: u64,
    truncates: u64,
    /// `snapshotting`, `stale` or `upToDate`.
    status: String,
    snapshot_ts: Option<i64>,
    next_cursor: Option<String>,
}

/// One pass over a Data Sync page: `values` elements are counted and skipped; `status`,
/// `truncates` and `pagination` are read.
fn scan_sync(b: &[u8]) -> Res<SyncPage> {
    let mut p = SyncPage::default();
    members(b, 0, &mut |key, start| {
        Ok(match key {
            b"values" => {
                let (n, end) = count_array(b, start)?;
                p.count = n;
                Some(end)
            }
            b"truncates" => {
                let (n, end) = count_array(b, start)?;
                p.truncates = n;
                Some(end)
            }
            b"status" => Some(members(b, start, &mut |k, s| {
                let e = skip_value(b, s)?;
                match k {
                    b"type" => p.status = json_text(&b[s..e])?,
                    b"snapshotTs" => {
                        p.snapshot_ts = std::str::from_utf8(&b[s..e])
                            .ok()
                            .and_then(|v| v.parse().ok())
                    }
                    _ => {}
                }
                Ok(Some(e))
            })?),
            b"pagination" => Some(members(b, start, &mut |k, s| {
                let e = skip_value(b, s)?;
                if k == b"nextCursor" {
                    p.next_cursor = Some(json_text(&b[s..e])?);
                }
                Ok(Some(e))
            })?),
            _ => None,
        })
    })?;
    if p.status.is_empty() {
        return Err("data sync page without status".into());
    }
    Ok(p)
}

fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

#[derive(Default)]
struct SyncResult {
    records: u64,
    pages: u64,
    truncates: u64,
    snapshot_ts: Option<i64>,
    cursor: Option<String>,
}

/// The status type and `nextCursor` of a Data Sync page without walking its values: `status`
/// is its first member and `pagination` its last (Convex's field order), so the next page can
/// be asked for before this one is scanned.
fn page_ends(b: &[u8]) -> Res<(String, String)> {
    let mut i = ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return Err("page is not an object".into());
    }
    i = ws(b, i + 1);
    if !b[i..].starts_with(b"\"status\"") {
        return Err("a data sync page whose first member is not status".into());
    }
    i = ws(b, i + b"\"status\"".len());
    if b.get(i) != Some(&b':') {
        return Err("expected ':'".into());
    }
    let mut status = String::new();
    members(b, i + 1, &mut |k, s| {
        let e = skip_value(b, s)?;
        if k == b"type" {
            status = json_text(&b[s..e])?;
        }
        Ok(Some(e))
    })?;
    let key = b"\"pagination\"";
    let at = b
        .windows(key.len())
        .rposition(|w| w == key)
        .ok_or("a data sync page without pagination")?;
    let mut i = ws(b, at + key.len());
    if b.get(i) != Some(&b':') {
        return Err("expected ':'".into());
    }
    i += 1;
    let mut next = None;
    members(b, i, &mut |k, s| {
        let e = skip_value(b, s)?;
        if k == b"nextCursor" {
            next = Some(json_text(&b[s..e])?);
        }
        Ok(Some(e))
    })?;
    Ok((
        status,
        next.ok_or("data sync page without pagination.nextCursor")?,
    ))
}

/// Pages one data sync of `table` (root component, every column) from `cursor` (`None` = a
/// cold start) to its first `upToDate` page, on `c`. As the connector does, the next page is
/// asked for as soon as a page has arrived, and the page is scanned while Convex computes the
/// next one (one request in flight on the keep-alive connection).
fn sync_table(c: &mut Conn, table: &str, cursor: Option<String>) -> Res<SyncResult> {
    const PATH: &str = "/api/v1/data/sync";
    let selection = format!(
        "{{\"_other\":\"excluded\",\"\":{{\"_other\":\"excluded\",{}:{{\"_other\":\"included\"}}}}}}",
        json_str(table)
    );
    let body = |cursor: Option<&str>| match cursor {
        Some(cur) => format!("{{\"selection\":{selection},\"cursor\":{}}}", json_str(cur)),
        None => format!("{{\"selection\":{selection}}}"),
    };
    let mut r = SyncResult {
        cursor,
        ..SyncResult::default()
    };
    // The first request with a reconnect if the kept-alive connection was closed meanwhile.
    c.post(PATH, &body(r.cursor.as_deref()))?;
    // A server that never says upToDate would be paged forever: bound it far above any
    // benchmark table (16384 values per page).
    for _ in 0..1_000_000 {
        let (status, next) = page_ends(&c.body)?;
        let last = status == "upToDate";
        if !last {
            c.send_post(PATH, &body(Some(&next)))?;
        }
        let p = scan_sync(&c.body)?;
        if p.status != status || p.next_cursor.as_deref() != Some(next.as_str()) {
            return Err("a data sync page read two ways disagrees".into());
        }
        r.pages += 1;
        r.records += p.count;
        r.truncates += p.truncates;
        r.cursor = Some(next);
        if last {
            r.snapshot_ts = p.snapshot_ts;
            return Ok(r);
        }
        c.receive(PATH)?;
    }
    Err(format!(
        "data sync of {table}: no upToDate page in a million pages"
    ))
}

fn run_data_sync(
    host: &str,
    key: &str,
    tables: &[String],
    cursors: &[(String, String)],
) -> Res<()> {
    let mut c = Conn::new(host, key);
    let mut total = 0u64;
    let mut per = String::new();
    for t in tables {
        let from = cursors.iter().find(|(k, _)| k == t).map(|(_, v)| v.clone());
        let r = sync_table(&mut c, t, from)?;
        total += r.records;
        if !per.is_empty() {
            per.push(',');
        }
        per.push_str(&format!(
            "{}:{{\"records\":{},\"pages\":{},\"truncates\":{},\"snapshot_ts\":{},\"data_sync_cursor\":{}}}",
            json_str(t),
            r.records,
            r.pages,
            r.truncates,
            r.snapshot_ts.map_or("null".to_string(), |v| v.to_string()),
            r.cursor.as_deref().map_or("null".to_string(), json_str),
        ));
    }
    println!(
        "{{\"api\":\"data_sync\",\"records\":{total},\"requests\":{},\"body_bytes\":{},\"tables\":{{{per}}}}}",
        c.requests, c.body_bytes
    );
    Ok(())
}

fn pct(s: &str) -> String {
    let mut o = String::with_capacity(s.len() * 3);
    for &c in s.as_bytes() {
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~') {
            o.push(c as char);
        } else {
            o.push_str(&format!("%{c:02X}"));
        }
    }
    o
}

#[derive(Default)]
struct TableResult {
    records: u64,
    snapshot_records: u64,
    delta_records: u64,
    snapshot: Option<i64>,
    delta_cursor: Option<i64>,
    requests: u64,
    body_bytes: u64,
}

fn walk_table(
    host: &str,
    key: &str,
    table: &str,
    incremental: bool,
    delta_from: Option<i64>,
    pinned: Option<i64>,
) -> Res<TableResult> {
    let mut c = Conn::new(host, key);
    let mut r = TableResult::default();
    let t = pct(table);
    let mut delta = delta_from;
    if delta.is_none() {
        let mut cursor: Option<String> = None;
        let mut snapshot = pinned;
        loop {
            let mut path = format!("/api/list_snapshot?tableName={t}&format={FORMAT}");
            if let Some(cur) = &cursor {
                path.push_str("&cursor=");
                path.push_str(&pct(cur));
            }
            if let Some(s) = snapshot {
                path.push_str(&format!("&snapshot={s}"));
            }
            c.get(&path)?;
            let p = scan(&c.body)?;
            r.snapshot_records += p.count;
            if snapshot.is_none() {
                snapshot = p.snapshot;
            }
            if !p.has_more {
                break;
            }
            cursor = p.cursor;
        }
        r.snapshot = snapshot;
        delta = snapshot;
    }
    if incremental {
        let mut cur = delta.ok_or("no snapshot timestamp to start deltas from")?;
        loop {
            c.get(&format!(
                "/api/document_deltas?tableName={t}&format={FORMAT}&cursor={cur}"
            ))?;
            let p = scan(&c.body)?;
            r.delta_records += p.count;
            cur = p
                .cursor
                .as_deref()
                .and_then(|s| s.parse().ok())
                .ok_or("document_deltas without integer cursor")?;
            if !p.has_more {
                break;
            }
        }
        r.delta_cursor = Some(cur);
    }
    r.records = r.snapshot_records + r.delta_records;
    r.requests = c.requests;
    r.body_bytes = c.body_bytes;
    Ok(r)
}

fn run() -> Res<()> {
    let mut url = None;
    let mut key = String::new();
    let mut tables: Vec<String> = Vec::new();
    let mut incremental = false;
    let mut parallel = false;
    let mut cursors: Vec<(String, i64)> = Vec::new();
    let mut data_sync = false;
    let mut sync_cursors: Vec<(String, String)> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--url" => url = Some(val()?),
            "--key" => key = val()?,
            "--tables" => {
                tables = val()?
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            }
            "--mode" => {
                incremental = match val()?.as_str() {
                    "full" | "full_refresh" => false,
                    "incremental" => true,
                    m => return Err(format!("unknown mode {m}")),
                }
            }
            "--delta-cursors" => {
                for (k, v) in name_values(&val()?, "--delta-cursors")? {
                    let ts = v.parse().map_err(|_| format!("bad cursor {v}"))?;
                    cursors.push((k, ts));
                }
            }
            "--parallel" => parallel = true,
            "--api" => {
                data_sync = match val()?.as_str() {
                    "streaming_export" => false,
                    "data_sync" => true,
                    a => return Err(format!("unknown api {a}")),
                }
            }
            "--data-sync-cursors" => sync_cursors = name_values(&val()?, "--data-sync-cursors")?,
            "-h" | "--help" => {
                println!("transfer-only --url URL --key KEY --tables a,b [--mode full|incremental] [--delta-cursors a=TS,...] [--parallel]");
                println!("transfer-only --url URL --key KEY --tables a,b --api data_sync [--data-sync-cursors a=HEX,...]");
                return Ok(());
            }
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    let url = url.ok_or("--url is required")?;
    let host = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    if host.contains('/') || url.starts_with("https://") {
        return Err("only plain http://host:port URLs are supported".into());
    }
    if data_sync {
        if parallel || !cursors.is_empty() {
            return Err("--parallel and --delta-cursors are for the streaming export API".into());
        }
        return run_data_sync(&host, &key, &tables, &sync_cursors);
    }
    if !sync_cursors.is_empty() {
        return Err("--data-sync-cursors needs --api data_sync".into());
    }
    if !cursors.is_empty() {
        incremental = true;
    }
    let from = |t: &str| cursors.iter().find(|(k, _)| k == t).map(|(_, v)| *v);
    let results: Vec<(String, TableResult)> = if parallel {
        let handles: Vec<_> = tables
            .iter()
            .map(|t| {
                let (h, k, t2, d) = (host.clone(), key.clone(), t.clone(), from(t));
                std::thread::spawn(move || {
                    walk_table(&h, &k, &t2, incremental, d, None).map(|r| (t2, r))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| "thread panicked".to_string())?)
            .collect::<Res<_>>()?
    } else {
        // One connection per table keeps the code simple; keep-alive reuse is within a table
        // walk, where all but one request per table are made. One snapshot for all tables.
        let mut out = Vec::new();
        let mut pinned = None;
        for t in &tables {
            let r = walk_table(&host, &key, t, incremental, from(t), pinned)?;
            if pinned.is_none() {
                pinned = r.snapshot;
            }
            out.push((t.clone(), r));
        }
        out
    };
    let mut total = TableResult::default();
    let mut per = String::new();
    for (t, r) in &results {
        total.records += r.records;
        total.requests += r.requests;
        total.body_bytes += r.body_bytes;
        if !per.is_empty() {
            per.push(',');
        }
        let opt = |v: Option<i64>| v.map_or("null".to_string(), |v| v.to_string());
        per.push_str(&format!(
            "\"{}\":{{\"records\":{},\"snapshot_records\":{},\"delta_records\":{},\"snapshot\":{},\"delta_cursor\":{}}}",
            t.replace('\\', "\\\\").replace('"', "\\\""),
            r.records,
            r.snapshot_records,
            r.delta_records,
            opt(r.snapshot),
            opt(r.delta_cursor)
        ));
    }
    println!(
        "{{\"records\":{},\"requests\":{},\"body_bytes\":{},\"tables\":{{{per}}}}}",
        total.records, total.requests, total.body_bytes
    );
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("transfer-only: {e}");
        exit(1);
    }
}
