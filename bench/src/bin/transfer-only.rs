//! transfer-only: the smallest client that pages through the same Convex streaming-export
//! responses the connector reads, and throws the documents away.
//!
//! It is the "what the wire allows on this machine" baseline of the benchmark: one keep-alive
//! HTTP/1.1 connection per table walk (plain `std::net`, no async runtime), the body read into a
//! reused buffer, and one pass over it that finds `cursor`, `hasMore` and `snapshot` and counts
//! the elements of `values` (needed to page and to check counts) without building them.
//!
//! Usage:
//!   transfer-only --url URL --key KEY --tables a,b [--mode full|incremental]
//!                 [--delta-cursors a=TS,b=TS] [--parallel]
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
        for attempt in 0..2 {
            if self.stream.is_none() {
                let s = TcpStream::connect(&self.host)
                    .map_err(|e| format!("connect {}: {e}", self.host))?;
                s.set_nodelay(true).ok();
                self.stream = Some(BufReader::with_capacity(256 * 1024, s));
            }
            match self.try_get(path) {
                Ok(()) => {
                    self.requests += 1;
                    self.body_bytes += self.body.len() as u64;
                    return Ok(());
                }
                // A keep-alive connection closed by the server between requests: reconnect once.
                Err((true, _)) if attempt == 0 => self.stream = None,
                Err((_, e)) => return Err(e),
            }
        }
        unreachable!()
    }

    /// Err((retryable, message)).
    fn try_get(&mut self, path: &str) -> Result<(), (bool, String)> {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Convex {}\r\nConvex-Client: airbyte-export-0.5.0\r\nAccept: application/json\r\n\r\n",
            self.host, self.key
        );
        let Some(r) = self.stream.as_mut() else {
            return Err((true, "not connected".into()));
        };
        r.get_mut()
            .write_all(req.as_bytes())
            .map_err(|e| (true, format!("write: {e}")))?;
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
                    "GET {path}: HTTP {status}: {}",
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
    let mut i = ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return Err("page is not an object".into());
    }
    i += 1;
    loop {
        i = ws(b, i);
        match b.get(i) {
            Some(b'}') => return Ok(p),
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
        i = ws(b, i + 1);
        match key {
            b"values" => {
                if b.get(i) != Some(&b'[') {
                    return Err("values is not an array".into());
                }
                i += 1;
                loop {
                    i = ws(b, i);
                    match b.get(i) {
                        Some(b']') => {
                            i += 1;
                            break;
                        }
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
                i = end;
            }
            _ => i = skip_value(b, i)?,
        }
    }
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
                for kv in val()?.split(',').filter(|s| !s.is_empty()) {
                    let (k, v) = kv
                        .rsplit_once('=')
                        .ok_or("--delta-cursors wants name=ts,...")?;
                    cursors.push((
                        k.to_string(),
                        v.parse().map_err(|_| format!("bad cursor {v}"))?,
                    ));
                }
            }
            "--parallel" => parallel = true,
            "-h" | "--help" => {
                println!("transfer-only --url URL --key KEY --tables a,b [--mode full|incremental] [--delta-cursors a=TS,...] [--parallel]");
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
