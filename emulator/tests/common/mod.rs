//! A tiny HTTP/1.1 client over `std::net::TcpStream` for the emulator's tests: the workspace
//! keeps reqwest out of the emulator, and raw sockets also let tests observe truncated and
//! reset responses exactly.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use convex_emulator::{Config, EmulatorServer};
use serde_json::Value;

pub const KEY: &str = "emulator-access-key";

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts a Convex error: status and `code`.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "body: {}", self.text());
        assert_eq!(self.json()["code"], code, "body: {}", self.text());
        assert!(self.json()["message"].is_string());
    }
}

/// A keep-alive connection.
pub struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> io::Result<Conn> {
        let s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        s.set_nodelay(true)?;
        Ok(Conn {
            reader: BufReader::new(s),
        })
    }

    pub fn set_read_timeout(&self, d: Duration) {
        self.reader.get_ref().set_read_timeout(Some(d)).unwrap();
    }

    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> io::Result<Resp> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(b) = body {
            req.push_str(&format!("Content-Length: {}\r\n", b.len()));
        }
        req.push_str("\r\n");
        let s = self.reader.get_mut();
        s.write_all(req.as_bytes())?;
        if let Some(b) = body {
            s.write_all(b)?;
        }
        self.read_response()
    }

    fn read_response(&mut self) -> io::Result<Resp> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "no response"));
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "eof in headers",
                ));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        let len = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse::<usize>().ok());
        let mut body = Vec::new();
        match len {
            Some(n) => {
                body.resize(n, 0);
                let mut got = 0;
                while got < n {
                    let k = self.reader.read(&mut body[got..])?;
                    if k == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("truncated body: {got} of {n} bytes"),
                        ));
                    }
                    got += k;
                }
            }
            None => {
                if headers.iter().any(|(k, v)| {
                    k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked")
                }) {
                    loop {
                        line.clear();
                        self.reader.read_line(&mut line)?;
                        let size = usize::from_str_radix(line.trim(), 16)
                            .map_err(|e| io::Error::other(format!("bad chunk size: {e}")))?;
                        let mut chunk = vec![0; size + 2];
                        self.reader.read_exact(&mut chunk)?;
                        if size == 0 {
                            break;
                        }
                        body.extend_from_slice(&chunk[..size]);
                    }
                } else {
                    self.reader.read_to_end(&mut body)?;
                }
            }
        }
        Ok(Resp {
            status,
            headers,
            body,
        })
    }
}

/// One request on a fresh connection.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> io::Result<Resp> {
    Conn::open(addr)?.send(method, path, headers, body)
}

pub fn start() -> EmulatorServer {
    EmulatorServer::start(Config::default()).expect("emulator starts")
}

pub fn start_with(config: Config) -> EmulatorServer {
    EmulatorServer::start(config).expect("emulator starts")
}

/// Authenticated GET.
pub fn get(emu: &EmulatorServer, path: &str) -> Resp {
    let auth = format!("Convex {}", emu.access_key());
    request(emu.addr(), "GET", path, &[("Authorization", &auth)], None).expect("request")
}

/// Authenticated POST with a JSON body.
pub fn post(emu: &EmulatorServer, path: &str, body: &Value) -> Resp {
    let auth = format!("Convex {}", emu.access_key());
    let b = serde_json::to_vec(body).unwrap();
    request(
        emu.addr(),
        "POST",
        path,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        Some(&b),
    )
    .expect("request")
}

/// Unauthenticated control-API call.
pub fn control(emu: &EmulatorServer, method: &str, path: &str, body: Option<&Value>) -> Resp {
    let b = body.map(|b| serde_json::to_vec(b).unwrap());
    request(
        emu.addr(),
        method,
        path,
        &[("Content-Type", "application/json")],
        b.as_deref(),
    )
    .expect("request")
}

pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A full list_snapshot walk with `query` (e.g. `tableName=users`): returns the pages.
pub fn walk_snapshot(emu: &EmulatorServer, query: &str) -> Vec<Value> {
    let mut pages = Vec::new();
    let mut extra = String::new();
    loop {
        let r = get(emu, &format!("/api/list_snapshot?{query}{extra}"));
        assert_eq!(r.status, 200, "{}", r.text());
        let page = r.json();
        let more = page["hasMore"].as_bool().unwrap();
        let snapshot = page["snapshot"].as_i64().unwrap();
        let cursor = page["cursor"].as_str().map(str::to_owned);
        pages.push(page);
        if !more {
            return pages;
        }
        extra = format!("&snapshot={snapshot}&cursor={}", enc(&cursor.unwrap()));
        assert!(pages.len() < 100_000, "walk does not end");
    }
}

/// All values of a snapshot walk.
pub fn snapshot_values(emu: &EmulatorServer, query: &str) -> Vec<Value> {
    walk_snapshot(emu, query)
        .into_iter()
        .flat_map(|p| p["values"].as_array().unwrap().clone())
        .collect()
}

/// One document_deltas page.
pub fn deltas(emu: &EmulatorServer, cursor: i64, query: &str) -> Value {
    let r = get(
        emu,
        &format!("/api/document_deltas?cursor={cursor}&{query}"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// Follows document_deltas from `cursor` until `hasMore` is false: (pages, final cursor).
pub fn all_deltas(emu: &EmulatorServer, mut cursor: i64, query: &str) -> (Vec<Value>, i64) {
    let mut pages = Vec::new();
    loop {
        let p = deltas(emu, cursor, query);
        cursor = p["cursor"].as_i64().unwrap();
        let more = p["hasMore"].as_bool().unwrap();
        pages.push(p);
        if !more {
            return (pages, cursor);
        }
    }
}

/// The address an emulator started by [`spawn_binary`] serves on, from its startup line.
pub fn address(info: &Value) -> std::net::SocketAddr {
    info["url"]
        .as_str()
        .unwrap()
        .trim_start_matches("http://")
        .parse()
        .unwrap()
}

/// The emulator's settings, as `GET /_emulator/settings` answers them.
pub fn settings_at(addr: std::net::SocketAddr) -> Value {
    request(addr, "GET", "/_emulator/settings", &[], None)
        .unwrap()
        .json()
}

/// Starts the emulator `binary` (`env!("CARGO_BIN_EXE_convex-emulator")`, which only test
/// crates have) with `args` and reads its startup line (`{"url","access_key"[,"ca_file"]}`);
/// the caller stops the child.
pub fn spawn_binary(binary: &str, args: &[&str]) -> (std::process::Child, Value) {
    use std::process::{Command, Stdio};
    let mut child = Command::new(binary)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let info = serde_json::from_str(&line).unwrap();
    (child, info)
}
