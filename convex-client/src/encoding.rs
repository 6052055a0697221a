//! Convex's value encodings, and re-encoding `export_json` documents for consumers.
//!
//! `export_json` is the one encoding that says what every value is: int64 as a JSON integer,
//! float64 as a number with a fraction or exponent (`1.0`, `-0.0`, `1e300`), bytes as
//! `{"$bytes": <base64>}` and NaN/±Infinity as `{"$float": <base64 of 8 LE bytes>}`. User keys
//! cannot start with `$`, so those objects are unambiguous. The legacy `json` encoding writes
//! int64 and bytes as strings and the special floats as `"NaN"`, `"Infinity"`, `"-Infinity"`,
//! so a string there says nothing of the value's type.
//!
//! [`transcode`] walks one `export_json` document once, copying its bytes verbatim except
//! where the target differs, so only documents that need it are rewritten.

/// The `format` Convex is asked to encode values in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ValueFormat {
    /// The legacy `json` (Convex's "clean" export): what the Python connector read.
    #[default]
    Json,
    /// `export_json`: lossless, types told apart by their JSON form.
    ExportJson,
}

impl ValueFormat {
    /// The `format` argument's value.
    pub fn as_str(self) -> &'static str {
        match self {
            ValueFormat::Json => "json",
            ValueFormat::ExportJson => "export_json",
        }
    }
}

/// What an `export_json` document becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `export_json` unchanged (only checked, and its `_id` found).
    Unchanged,
    /// The legacy `json` encoding, as `list_snapshot` with `format=json` sends it.
    Legacy,
    /// Plain JSON with every value in its natural form: int64 and finite floats as the numbers
    /// Convex sent, bytes as a base64 string, and a NaN or ±Infinity, which JSON cannot carry
    /// as a number, as `null` with its path reported in [`Transcoded::not_representable`].
    Plain,
}

/// What [`transcode`] found besides the output.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Transcoded {
    /// The top-level `_id`, if it is a string.
    pub id: Option<String>,
    /// `Plain`: the paths (`a.b[2]`) of the non-finite floats written as `null`.
    pub not_representable: Vec<String>,
}

/// Deeper nesting than Convex allows (64 levels) is refused rather than recursed into.
const MAX_DEPTH: usize = 128;

/// Appends `doc` (one `export_json` object, valid JSON) to `out` in the `target` encoding.
/// Top-level members whose raw key (the bytes between the quotes) is in `nulled` are written
/// as `null`, whatever they held.
pub fn transcode(
    doc: &[u8],
    target: Target,
    nulled: &[&[u8]],
    out: &mut Vec<u8>,
) -> Result<Transcoded, String> {
    let mut t = Transcoder {
        src: doc,
        at: 0,
        out,
        depth: 0,
        target,
        path: Vec::new(),
        found: Transcoded::default(),
    };
    t.ws();
    if t.peek() != Some(b'{') {
        return Err("the value is not a JSON object".into());
    }
    t.object(Some(nulled))?;
    t.ws();
    if t.at != t.src.len() {
        return Err(format!("unexpected bytes after the value at byte {}", t.at));
    }
    Ok(t.found)
}

/// The `Plain` form of `doc` for the common case, found without walking it: every `"$` in it
/// (`dollars`, the positions of its quote) begins a compact `{"$bytes":"…"}` object, and each
/// becomes its base64 string. Returns false (and leaves `out` in any state) when something
/// else is there, a `$float` or a string that starts with `$`: [`transcode`] then does it.
///
/// Why no walk is needed: in valid JSON a `"` inside a string is escaped, so `{"$bytes":"` can
/// only be an object whose first key is `$bytes`, and base64 holds no quote.
pub fn plain_bytes_only(
    doc: &[u8],
    dollars: impl Iterator<Item = usize>,
    out: &mut Vec<u8>,
) -> bool {
    const OPEN: &[u8] = br#"{"$bytes":""#;
    let mut copied = 0;
    for quote in dollars {
        let Some(start) = quote.checked_sub(1) else {
            return false;
        };
        if start < copied || !doc[start..].starts_with(OPEN) {
            return false;
        }
        let payload = start + OPEN.len();
        let Some(len) = memchr::memchr(b'"', &doc[payload..]) else {
            return false;
        };
        let end = payload + len;
        if doc.get(end + 1) != Some(&b'}') {
            return false;
        }
        out.extend_from_slice(&doc[copied..start]);
        out.extend_from_slice(&doc[end - len - 1..=end]);
        copied = end + 2;
    }
    out.extend_from_slice(&doc[copied..]);
    true
}

/// One step of a value's path inside a document.
#[derive(Clone, Copy)]
enum Step<'a> {
    Key(&'a [u8]),
    Index(usize),
}

struct Transcoder<'a, 'o> {
    src: &'a [u8],
    at: usize,
    out: &'o mut Vec<u8>,
    depth: usize,
    target: Target,
    path: Vec<Step<'a>>,
    found: Transcoded,
}

impl<'a> Transcoder<'a, '_> {
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

    /// A string, copied verbatim; returns its raw content (between the quotes).
    fn string(&mut self) -> Result<&'a [u8], String> {
        let start = self.at;
        self.expect(b'"')?;
        loop {
            let rest = self.src.get(self.at..).unwrap_or_default();
            match memchr::memchr2(b'"', b'\\', rest) {
                None => return Err("unterminated string".into()),
                Some(i) if self.src[self.at + i] == b'\\' => self.at += i + 2,
                Some(i) => {
                    self.at += i + 1;
                    break;
                }
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
        // Convex writes every float with a fraction or exponent; a bare integer is an int64.
        if self.target == Target::Legacy && is_integer(token) {
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
            return self.close(b']');
        }
        let mut index = 0;
        loop {
            self.ws();
            self.path.push(Step::Index(index));
            self.value()?;
            self.path.pop();
            index += 1;
            if !self.comma()? {
                break;
            }
        }
        self.close(b']')
    }

    /// After a member or element: whether a `,` follows (it is copied).
    fn comma(&mut self) -> Result<bool, String> {
        self.ws();
        if self.peek() != Some(b',') {
            return Ok(false);
        }
        self.expect(b',')?;
        Ok(true)
    }

    /// The closing bracket of the container being walked.
    fn close(&mut self, bracket: u8) -> Result<(), String> {
        self.expect(bracket)?;
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

    /// An object; `top` (the document itself only) holds the keys to write as `null`.
    fn object(&mut self, top: Option<&[&[u8]]>) -> Result<(), String> {
        if top.is_none() && self.encoded()? {
            return Ok(());
        }
        self.enter()?;
        self.expect(b'{')?;
        self.ws();
        if self.peek() == Some(b'}') {
            return self.close(b'}');
        }
        loop {
            self.ws();
            let key = self.string()?;
            self.ws();
            self.expect(b':')?;
            self.ws();
            self.path.push(Step::Key(key));
            match top {
                Some(_) if key == b"_id" && self.peek() == Some(b'"') => {
                    let raw = self.string()?;
                    self.found.id = Some(unescape(raw)?);
                }
                Some(nulled) if nulled.contains(&key) => {
                    // Walked for its end (and checked), then replaced, with anything it reported.
                    let (mark, reported) = (self.out.len(), self.found.not_representable.len());
                    self.value()?;
                    self.out.truncate(mark);
                    self.found.not_representable.truncate(reported);
                    self.out.extend_from_slice(b"null");
                }
                _ => self.value()?,
            }
            self.path.pop();
            if !self.comma()? {
                break;
            }
        }
        self.close(b'}')
    }

    /// `{"$bytes": …}` / `{"$float": …}` at the cursor: writes it in the target encoding and
    /// returns true; anything else leaves the cursor alone and returns false.
    fn encoded(&mut self) -> Result<bool, String> {
        let Some((tag, payload, end)) = encoded_object(self.src, self.at) else {
            return Ok(false);
        };
        match (tag, self.target) {
            (_, Target::Unchanged) => self.out.extend_from_slice(&self.src[self.at..end]),
            (Tag::Bytes, _) => {
                self.out.push(b'"');
                self.out.extend_from_slice(payload);
                self.out.push(b'"');
            }
            (Tag::Float, target) => {
                let f = decode_float(payload).ok_or_else(|| {
                    format!(
                        "a $float payload {:?} is not 8 bytes of base64",
                        String::from_utf8_lossy(payload)
                    )
                })?;
                if f.is_finite() {
                    // Convex sends a finite $float only for -0.0, and only in other encodings.
                    let n = serde_json::Number::from_f64(f).ok_or("a non-finite float")?;
                    self.out.extend_from_slice(n.to_string().as_bytes());
                } else if target == Target::Plain {
                    self.out.extend_from_slice(b"null");
                    let path = self.path_text();
                    self.found.not_representable.push(path);
                } else if f.is_nan() {
                    self.out.extend_from_slice(b"\"NaN\"");
                } else if f > 0.0 {
                    self.out.extend_from_slice(b"\"Infinity\"");
                } else {
                    self.out.extend_from_slice(b"\"-Infinity\"");
                }
            }
        }
        self.at = end;
        Ok(true)
    }

    /// `a.b[2]`: the current value's path, keys unescaped.
    fn path_text(&self) -> String {
        let mut s = String::new();
        for step in &self.path {
            match step {
                Step::Key(raw) => {
                    if !s.is_empty() {
                        s.push('.');
                    }
                    match unescape(raw) {
                        Ok(k) => s.push_str(&k),
                        Err(_) => s.push_str(&String::from_utf8_lossy(raw)),
                    }
                }
                Step::Index(i) => {
                    s.push('[');
                    s.push_str(itoa::Buffer::new().format(*i));
                    s.push(']');
                }
            }
        }
        s
    }
}

/// A number token without fraction or exponent: an int64 in `export_json`.
pub fn is_integer(token: &[u8]) -> bool {
    !token.iter().any(|b| matches!(b, b'.' | b'e' | b'E'))
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
pub fn unescape(raw: &[u8]) -> Result<String, String> {
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

    fn run(doc: &str, target: Target, nulled: &[&[u8]]) -> (String, Transcoded) {
        let mut out = Vec::new();
        let t = transcode(doc.as_bytes(), target, nulled, &mut out).unwrap();
        (String::from_utf8(out).unwrap(), t)
    }

    const EVERY_TYPE: &str = r#"{"_creationTime":1770335566197.5,"_id":"jd7a","age":33,"big":-9223372036854775808,"f":1.0,"z":-0.0,"e":1e300,"b":{"$bytes":"AAEC"},"nan":{"$float":"AAAAAAAA+H8="},"inf":{"$float":"AAAAAAAA8H8="},"ninf":{"$float":"AAAAAAAA8P8="},"nested":{"a":[1,2.5,{"$bytes":""},"x\"y",{"$float":"AAAAAAAA+H8="}],"t":true,"n":null}}"#;

    #[test]
    fn legacy_json_is_what_format_json_sends() {
        let (out, t) = run(EVERY_TYPE, Target::Legacy, &[]);
        assert_eq!(t.id.as_deref(), Some("jd7a"));
        assert!(t.not_representable.is_empty());
        assert_eq!(
            serde_json::from_str::<Value>(&out).unwrap(),
            json!({"_creationTime":1770335566197.5,"_id":"jd7a","age":"33","big":"-9223372036854775808",
                "f":1.0,"z":-0.0,"e":1e300,"b":"AAEC","nan":"NaN","inf":"Infinity","ninf":"-Infinity",
                "nested":{"a":["1",2.5,"","x\"y","NaN"],"t":true,"n":null}})
        );
    }

    #[test]
    fn plain_json_keeps_numbers_exact_and_nulls_what_json_cannot_hold() {
        let (out, t) = run(EVERY_TYPE, Target::Plain, &[]);
        // Numbers are copied as Convex wrote them: no f64 round trip, int64 beyond 2^53 exact.
        assert_eq!(
            out,
            r#"{"_creationTime":1770335566197.5,"_id":"jd7a","age":33,"big":-9223372036854775808,"f":1.0,"z":-0.0,"e":1e300,"b":"AAEC","nan":null,"inf":null,"ninf":null,"nested":{"a":[1,2.5,"","x\"y",null],"t":true,"n":null}}"#
        );
        assert_eq!(t.not_representable, ["nan", "inf", "ninf", "nested.a[4]"]);
    }

    #[test]
    fn nulled_members_drop_what_they_reported() {
        let (out, t) = run(
            r#"{"_id":"a","x":"now a string","y":{"$float":"AAAAAAAA+H8="},"n":{"deep":{"$float":"AAAAAAAA8H8="}},"k":5}"#,
            Target::Plain,
            &[b"x", b"n"],
        );
        assert_eq!(out, r#"{"_id":"a","x":null,"y":null,"n":null,"k":5}"#);
        assert_eq!(t.not_representable, ["y"]);
    }

    #[test]
    fn export_json_is_copied_verbatim() {
        let (out, t) = run(EVERY_TYPE, Target::Unchanged, &[]);
        assert_eq!(out, EVERY_TYPE);
        assert!(t.not_representable.is_empty());
        let pretty =
            "{ \"_id\" : \"a\\u00e9\", \"s\": \"\\u0000 \\ud83d\\ude00 1.5\" ,\"f\":2.50 }";
        let (out, t) = run(pretty, Target::Plain, &[]);
        assert_eq!(out, pretty);
        assert_eq!(t.id.as_deref(), Some("a\u{e9}"));
    }

    #[test]
    fn compact_bytes_are_spliced_without_a_walk() {
        let dollars = |d: &str| {
            memchr::memmem::find_iter(d.as_bytes(), b"\"$")
                .collect::<Vec<_>>()
                .into_iter()
        };
        for (doc, done) in [
            (
                r#"{"_id":"a","b":{"$bytes":"AAEC"},"n":[{"$bytes":""}],"s":"x"}"#,
                true,
            ),
            (r#"{"_id":"a","s":"no dollars"}"#, true),
            (r#"{"_id":"a","f":{"$float":"AAAAAAAA+H8="}}"#, false),
            (r#"{"_id":"a","s":"$5"}"#, false),
            (r#"{"_id":"a","b":{ "$bytes":"AAEC"}}"#, false),
        ] {
            let mut fast = Vec::new();
            assert_eq!(
                plain_bytes_only(doc.as_bytes(), dollars(doc), &mut fast),
                done,
                "{doc}"
            );
            if done {
                let mut walked = Vec::new();
                transcode(doc.as_bytes(), Target::Plain, &[], &mut walked).unwrap();
                assert_eq!(
                    String::from_utf8(fast).unwrap(),
                    String::from_utf8(walked).unwrap()
                );
            }
        }
    }

    #[test]
    fn malformed_documents_are_refused() {
        for bad in [
            "[1]",
            "{\"a\":1",
            "{\"a\":\"x}",
            "{\"a\":1} x",
            "{\"f\":{\"$float\":\"AAAA\"}}",
        ] {
            let mut out = Vec::new();
            assert!(
                transcode(bad.as_bytes(), Target::Plain, &[], &mut out).is_err(),
                "{bad}"
            );
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
}
