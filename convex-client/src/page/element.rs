//! Strict checking of one complete `values` element before any byte of it reaches stdout.
//!
//! The page scanner only finds where an element ends; this pass proves the element is one
//! RFC 8259 JSON object in UTF-8 (no raw control characters in strings, no `+5`, no trailing
//! garbage) and, when it is not already compact, returns a compact copy: a RECORD must be one
//! line. Convex sends compact JSON, so the copy is the rare path.

use std::borrow::Cow;

/// Why an element was refused, with the byte offset inside the element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElementError {
    pub offset: usize,
    pub reason: &'static str,
}

/// The element as one compact line, or why it is not valid JSON.
pub fn compact_element(raw: &[u8]) -> Result<Cow<'_, [u8]>, ElementError> {
    if let Err(e) = std::str::from_utf8(raw) {
        return Err(ElementError {
            offset: e.valid_up_to(),
            reason: "invalid UTF-8",
        });
    }
    if raw.first() != Some(&b'{') {
        return Err(ElementError {
            offset: 0,
            reason: "a document must be a JSON object",
        });
    }
    let mut v = Validator {
        b: raw,
        i: 0,
        whitespace: false,
    };
    v.document()?;
    Ok(if v.whitespace {
        Cow::Owned(strip_whitespace(raw))
    } else {
        Cow::Borrowed(raw)
    })
}

struct Validator<'a> {
    b: &'a [u8],
    i: usize,
    /// Insignificant whitespace was seen: the element needs compacting.
    whitespace: bool,
}

impl Validator<'_> {
    fn fail<T>(&self, reason: &'static str) -> Result<T, ElementError> {
        Err(ElementError {
            offset: self.i,
            reason,
        })
    }

    fn peek(&mut self) -> Option<u8> {
        while let Some(&c) = self.b.get(self.i) {
            if !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                return Some(c);
            }
            self.whitespace = true;
            self.i += 1;
        }
        None
    }

    /// The whole element: one value, nothing after it. Containers are tracked on an explicit
    /// stack, so deep nesting costs memory (bounded by the element cap), never the call stack.
    fn document(&mut self) -> Result<(), ElementError> {
        let mut stack = Nesting::default();
        'value: loop {
            match self.peek() {
                Some(open @ (b'{' | b'[')) => {
                    self.i += 1;
                    let object = open == b'{';
                    if self.peek() == Some(if object { b'}' } else { b']' }) {
                        self.i += 1;
                    } else {
                        stack.push(object);
                        if object {
                            self.key()?;
                        }
                        continue 'value;
                    }
                }
                Some(b'"') => self.string()?,
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                Some(b'-' | b'0'..=b'9') => self.number()?,
                Some(_) => return self.fail("expected a JSON value"),
                None => return self.fail("the document ends inside a value"),
            }
            // After a value: close containers, or go on to the next member.
            loop {
                let Some(object) = stack.top() else {
                    return match self.peek() {
                        None => Ok(()),
                        Some(_) => self.fail("bytes after the end of the document"),
                    };
                };
                match self.peek() {
                    Some(b',') => {
                        self.i += 1;
                        if object {
                            self.key()?;
                        }
                        continue 'value;
                    }
                    Some(b'}') if object => {}
                    Some(b']') if !object => {}
                    _ => return self.fail("expected `,` or the end of a container"),
                }
                self.i += 1;
                stack.pop();
            }
        }
    }

    /// `"key" :` (the value follows).
    fn key(&mut self) -> Result<(), ElementError> {
        if self.peek() != Some(b'"') {
            return self.fail("expected a string key");
        }
        self.string()?;
        if self.peek() != Some(b':') {
            return self.fail("expected `:` after a key");
        }
        self.i += 1;
        Ok(())
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<(), ElementError> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            self.fail("invalid literal (expected true, false or null)")
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Result<(), ElementError> {
        let b = self.b;
        if b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        match b.get(self.i) {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return self.fail("invalid number"),
        }
        if b.get(self.i) == Some(&b'.') {
            self.i += 1;
            if !b.get(self.i).is_some_and(u8::is_ascii_digit) {
                return self.fail("invalid number (no digit after `.`)");
            }
            self.digits();
        }
        if matches!(b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !b.get(self.i).is_some_and(u8::is_ascii_digit) {
                return self.fail("invalid number (no digit in the exponent)");
            }
            self.digits();
        }
        Ok(())
    }

    fn digits(&mut self) {
        while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
    }

    /// A string from its opening quote. UTF-8 was checked for the whole element already.
    fn string(&mut self) -> Result<(), ElementError> {
        self.i += 1;
        loop {
            self.i = next_special(self.b, self.i);
            match self.b.get(self.i) {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.i += 1;
                    match self.b.get(self.i) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 1,
                        Some(b'u') => {
                            let hex = self.b.get(self.i + 1..self.i + 5);
                            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                return self.fail("invalid \\u escape in a string");
                            }
                            self.i += 5;
                        }
                        _ => return self.fail("invalid escape in a string"),
                    }
                }
                Some(_) => return self.fail("raw control character in a string"),
                None => return self.fail("unterminated string"),
            }
        }
    }
}

/// Open containers, innermost last, one bit each (1 = object). Convex nests values at most 64
/// deep, so one word holds every real document without allocating; deeper ones spill.
#[derive(Default)]
struct Nesting {
    depth: usize,
    word: u64,
    spilled: Vec<u64>,
}

impl Nesting {
    fn push(&mut self, object: bool) {
        if self.depth >= 64 && self.depth.is_multiple_of(64) {
            self.spilled.push(self.word);
            self.word = 0;
        }
        self.word = (self.word << 1) | u64::from(object);
        self.depth += 1;
    }

    fn pop(&mut self) {
        self.word >>= 1;
        self.depth -= 1;
        if self.depth >= 64 && self.depth.is_multiple_of(64) {
            self.word = self.spilled.pop().unwrap_or(0);
        }
    }

    /// Whether the innermost open container is an object; `None` at the top level.
    fn top(&self) -> Option<bool> {
        (self.depth > 0).then_some(self.word & 1 == 1)
    }
}

/// The next `"`, `\\` or control byte (< 0x20) at or after `from`, or the end.
/// Eight bytes at a time: the lowest flagged byte of a word is always a true match.
fn next_special(b: &[u8], from: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let mut i = from;
    while let Some(word) = b.get(i..i + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let v = u64::from_le_bytes(w);
        let below_space = v.wrapping_sub(ONES * 0x20) & !v & HIGHS;
        let hits = zero(v ^ (ONES * b'"' as u64)) | zero(v ^ (ONES * b'\\' as u64)) | below_space;
        if hits != 0 {
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    b[i.min(b.len())..]
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .map_or(b.len(), |j| i + j)
}

/// Drops whitespace outside strings (the element is already known to be valid).
fn strip_whitespace(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut in_string = false;
    let mut escaped = false;
    for &c in raw {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_string = false;
            }
        } else if matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
            continue;
        } else if c == b'"' {
            in_string = true;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every accepted element parses with serde to the same value, and is one compact line.
    #[test]
    fn accepts_what_serde_accepts_and_compacts_it() {
        for ok in [
            r#"{}"#,
            r#"{"a":1}"#,
            r#"{ "a" : [ 1 , -0.5e+3 , "x\"y\\" , true , false , null , { } , [ ] ] }"#,
            "{\n  \"s\": \"tab\\t é✓ \\u00e9 \\ud83d\\ude00\",\n  \"n\": 0\n}",
            r#"{"big":123456789012345678901234567890,"e":1E9,"z":-0}"#,
        ] {
            let out = compact_element(ok.as_bytes()).unwrap();
            let want: serde_json::Value = serde_json::from_str(ok).unwrap();
            let got: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(got, want, "{ok}");
            assert!(!out.contains(&b'\n'), "{ok}");
        }
        assert_eq!(
            &*compact_element(b"{ \"a\" : [ 1 , \"x y\" ] ,\n\t\"b\":{ } }").unwrap(),
            br#"{"a":[1,"x y"],"b":{}}"#
        );
        assert!(matches!(
            compact_element(br#"{"a":1}"#).unwrap(),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn refuses_what_is_not_strict_json() {
        for bad in [
            &br#"{"_ts":+5}"#[..],
            br#"{"a":01}"#,
            br#"{"a":1.}"#,
            br#"{"a":.5}"#,
            br#"{"a":1e}"#,
            br#"{"a":NaN}"#,
            br#"{"a":tru}"#,
            br#"{"a":1,}"#,
            br#"{"a" 1}"#,
            br#"{a:1}"#,
            br#"{"a":[1 2]}"#,
            br#"{"a":1}}"#,
            br#"{"a":1} x"#,
            br#"{"a":"\x"}"#,
            br#"{"a":"\u12g4"}"#,
            b"{\"a\":\"raw\nnewline\"}",
            b"{\"a\":\"bell\x07\"}",
            b"{\"a\":\"\xff\"}",
            b"{\"a\":\"\xe9\"}",
            b"{\"a\":1\x0b}",
            br#"[1,2]"#,
            br#""s""#,
            br#"{"a":"unterminated}"#,
            br#"{"a":[}"#,
        ] {
            assert!(
                compact_element(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
            // serde agrees that none of these is a JSON object.
            assert!(
                serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// Nesting far beyond one word of the container stack, objects and arrays mixed.
    #[test]
    fn deep_nesting_is_tracked_exactly() {
        for depth in [1, 63, 64, 65, 128, 129, 300] {
            let open: String = (0..depth)
                .map(|i| if i % 3 == 0 { r#"{"k":"# } else { "[" })
                .collect();
            let close: String = (0..depth)
                .rev()
                .map(|i| if i % 3 == 0 { "}" } else { "]" })
                .collect();
            let doc = format!("{{\"d\":{open}1{close}}}");
            assert!(compact_element(doc.as_bytes()).is_ok(), "depth {depth}");
            // The same with one closer swapped: a `]` where a `}` belongs, or the reverse.
            let swapped = format!(
                "{{\"d\":{open}1{}}}",
                close.replacen('}', "]", 1).replacen(']', "}", 1)
            );
            if swapped != doc {
                assert_eq!(
                    compact_element(swapped.as_bytes()).is_ok(),
                    serde_json::from_str::<serde_json::Value>(&swapped).is_ok(),
                    "depth {depth}: {swapped}"
                );
            }
        }
    }

    #[test]
    fn special_byte_search_matches_a_plain_scan() {
        let mut rng = fastrand::Rng::with_seed(15);
        for _ in 0..2000 {
            let len = rng.usize(0..40);
            let buf: Vec<u8> = (0..len)
                .map(|_| [b'a', b'"', b'\\', 0x1f, 0x20, 0x7f, 0xc3, 0x00][rng.usize(..8)])
                .collect();
            let from = rng.usize(0..=len);
            let want = buf[from..]
                .iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
                .map_or(len, |j| from + j);
            assert_eq!(next_special(&buf, from), want, "{buf:?} from {from}");
        }
    }
}
