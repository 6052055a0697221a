//! The fast path for one `values` element: a single pass that proves a compact element is
//! strict JSON and finds its end and its metadata fields at once.
//!
//! The exact path (the resumable [`super::Scan`] to find the end, then
//! [`super::element::compact_element`] to check it) reads every document twice. Convex sends
//! compact JSON, and most elements lie whole in the buffer, so this pass is tried first on what
//! the buffer holds. It only ever says "this is the element, valid, compact, with these
//! metadata spans" or "not proven here" (`None`): the element is longer than the buffer, has
//! whitespace, nests deeper than 64, or is invalid. On `None` the parser takes the exact path
//! from the element's start, so errors (their kind, offset and reason) and pretty-printed
//! pages are handled exactly as before, and the fast path can only be wrong by accepting
//! something the exact path refuses (the tests compare the two on random and mutated input).
//!
//! Why both paths agree on what this accepts: the grammar checked here is the exact path's
//! (RFC 8259), and on valid JSON the exact path's bracket-matching scan ends where the grammar
//! does. UTF-8 is not checked here: the input is a `str`, the part of the buffer that
//! [`valid_prefix`] proved is UTF-8 all at once (vectorised, a twentieth of what checking it
//! character by character inside strings cost), so an element holding invalid UTF-8 lies
//! beyond it, is not proven, and takes the exact path, which refuses it.

/// The longest prefix of `b` that is valid UTF-8 (a chunk may end inside a character, or hold
/// an invalid document further on).
pub fn valid_prefix(b: &[u8]) -> &str {
    match simdutf8::compat::from_utf8(b) {
        Ok(s) => s,
        // `valid_up_to` bytes were proven valid; the second call only re-reads them.
        Err(e) => simdutf8::basic::from_utf8(&b[..e.valid_up_to()]).unwrap_or_default(),
    }
}

/// What the fast path proved about the element at the start of its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proven {
    /// The element is `input[..end]`.
    pub end: usize,
    /// Spans (`start..end` in the input) of the top-level values of `META_KEYS`, in its order.
    pub spans: [Option<(usize, usize)>; 5],
    /// No string value of `_table`, `_component` or `_id` holds an escape (so its content is
    /// the span without its quotes).
    pub plain_names: bool,
}

/// Where one top-level member of an element is: its key's content (between the quotes) and
/// its value, as `start..end` offsets into the element. Consumers that look at every member
/// (the type of each column) get them from this pass instead of walking the element again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub key: (u32, u32),
    pub value: (u32, u32),
}

/// The element at the start of `text`, if `text` holds it whole, compact and valid. The spans
/// lie on character boundaries of `text` (they start and end next to ASCII punctuation).
/// `members`, when given, receives the element's top-level members (complete only when it is
/// proven; not collected past 4 GiB of input, where the offsets would not fit).
pub fn prove(text: &str, mut members: Option<&mut Vec<Member>>) -> Option<Proven> {
    let b = text.as_bytes();
    if let Some(m) = members.as_deref_mut() {
        m.clear();
    }
    if u32::try_from(b.len()).is_err() {
        members = None;
    }
    let mut spans = [None; 5];
    let mut plain_names = true;
    // The element's members, where the metadata fields are; nested values are passed over
    // by `value`.
    let end = object(b, |sp, key, start| {
        let meta = slot(&b[key.0..key.1], &super::META_KEYS);
        let end = match meta {
            // `_table`, `_component`, `_id`.
            Some(0 | 1 | 4) if b.get(start) == Some(&b'"') => {
                let (end, escaped) = string_noting_escapes(b, sp, start + 1)?;
                plain_names &= !escaped;
                end
            }
            _ => value(b, sp, start)?,
        };
        if let Some(k) = meta {
            // A repeated name: the last one counts, as for the exact path.
            spans[k] = Some((start, end));
        }
        if let Some(m) = members.as_deref_mut() {
            // Offsets within `b`, whose length fits in u32 (checked above).
            m.push(Member {
                key: (key.0 as u32, key.1 as u32),
                value: (start as u32, end as u32),
            });
        }
        Some(end)
    })?;
    Some(Proven {
        end,
        spans,
        plain_names,
    })
}

/// What the fast path proved about a Data Sync envelope at the start of its input
/// (`{"component":…,"table":…,"ts":…,"deleted":…,"value":{document}}`, members in any order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProvenEnvelope {
    /// The envelope is `input[..end]`.
    pub end: usize,
    /// Spans of the envelope's `table`, `component`, `ts`, `deleted` and `value`, in
    /// `ENVELOPE_KEYS` order.
    pub spans: [Option<(usize, usize)>; 5],
    /// The span of the document's top-level `_id`, when `value` is an object that has one.
    pub id: Option<(usize, usize)>,
    /// `value` is an object, whose members (if asked for) were collected.
    pub document: bool,
    /// No string value of `table`, `component` or the document's `_id` holds an escape.
    pub plain_names: bool,
}

impl ProvenEnvelope {
    /// The metadata, `element` being the text the spans are offsets into; `members`, what the
    /// proof collected (offsets into `value`).
    pub fn raw_meta<'a>(
        &self,
        element: &'a str,
        members: Option<&'a [Member]>,
    ) -> super::RawMeta<'a> {
        let get = |s: Option<(usize, usize)>| s.and_then(|(a, b)| element.get(a..b));
        super::RawMeta {
            table: get(self.spans[0]),
            component: get(self.spans[1]),
            ts: get(self.spans[2]),
            deleted: get(self.spans[3]),
            id: get(self.id),
            value: get(self.spans[4]),
            plain_names: self.plain_names,
            members: members.filter(|_| self.document),
        }
    }
}

/// The envelope at the start of `text`, if `text` holds it whole, compact and valid; its
/// document (`value`) is proven by [`prove`], which finds its `_id` and `members`.
pub fn prove_envelope(text: &str, mut members: Option<&mut Vec<Member>>) -> Option<ProvenEnvelope> {
    let b = text.as_bytes();
    let mut proven = ProvenEnvelope {
        end: 2,
        spans: [None; 5],
        id: None,
        document: false,
        plain_names: true,
    };
    proven.end = object(b, |sp, key, start| {
        let slot = slot(&b[key.0..key.1], &super::ENVELOPE_KEYS);
        let end = match slot {
            // `table`, `component`.
            Some(0 | 1) if b.get(start) == Some(&b'"') => {
                let (end, escaped) = string_noting_escapes(b, sp, start + 1)?;
                proven.plain_names &= !escaped;
                end
            }
            Some(4) if b.get(start) == Some(&b'{') => {
                let p = prove(text.get(start..)?, members.as_deref_mut())?;
                proven.id = p.spans[4].map(|(a, c)| (start + a, start + c));
                proven.document = true;
                // The document's own escapes that matter: those of its `_id`.
                proven.plain_names &= p.plain_names;
                start + p.end
            }
            Some(4) => {
                // A repeated `value` that is no object: nothing of an earlier one holds.
                proven.id = None;
                proven.document = false;
                value(b, sp, start)?
            }
            _ => value(b, sp, start)?,
        };
        if let Some(k) = slot {
            // A repeated name: the last one counts, as for the exact path.
            proven.spans[k] = Some((start, end));
        }
        Some(end)
    })?;
    Some(proven)
}

/// The object at the start of `b`, member by member: `member(specials, key, start)` is given
/// the span of a member's key (its content, between the quotes) and where its value starts,
/// and returns where the value ends. Returns where the object ends.
// Always inlined, with `member`, into each of its two callers: a call per member would cost
// more than the member's key does.
#[inline(always)]
fn object(
    b: &[u8],
    mut member: impl FnMut(&mut Specials, (usize, usize), usize) -> Option<usize>,
) -> Option<usize> {
    let sp = &mut Specials::new(b);
    if b.first() != Some(&b'{') {
        return None;
    }
    if *b.get(1)? == b'}' {
        return Some(2);
    }
    let mut i = 1;
    loop {
        let start = key(b, sp, i)?;
        // `start` is just after the key's closing quote and its colon.
        let end = member(sp, (i + 1, start - 2), start)?;
        match *b.get(end)? {
            b',' => i = end + 1,
            b'}' => return Some(end + 1),
            _ => return None,
        }
    }
}

/// The index of `key` in `keys` (`META_KEYS` or `ENVELOPE_KEYS`). Inlined, with `keys` a
/// constant, it costs no more than a `match` on the bytes, which the parsers had before.
#[inline(always)]
fn slot(key: &[u8], keys: &[&[u8]; 5]) -> Option<usize> {
    keys.iter().position(|k| *k == key)
}

/// One value at `i`; returns where it ends.
#[inline(always)]
fn value(b: &[u8], sp: &mut Specials, i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => string(b, sp, i + 1),
        b'-' | b'0'..=b'9' => number(b, i),
        b'{' | b'[' => container(b, sp, i),
        b't' => literal(b, i, b"true"),
        b'f' => literal(b, i, b"false"),
        b'n' => literal(b, i, b"null"),
        _ => None,
    }
}

/// An object or array nested in the element, at `i`; returns where it ends. Containers are
/// tracked in one word, so at most 63 levels below the element (deeper: not proven).
fn container(b: &[u8], sp: &mut Specials, mut i: usize) -> Option<usize> {
    // Open containers, innermost in bit 0 (1 = object).
    let mut stack: u64 = 0;
    let mut depth: u32 = 0;
    'value: loop {
        match *b.get(i)? {
            open @ (b'{' | b'[') => {
                i += 1;
                let close = if open == b'{' { b'}' } else { b']' };
                if *b.get(i)? == close {
                    i += 1;
                } else {
                    if depth == 63 {
                        return None;
                    }
                    stack = (stack << 1) | u64::from(open == b'{');
                    depth += 1;
                    if open == b'{' {
                        i = key(b, sp, i)?;
                    }
                    continue 'value;
                }
            }
            _ => i = value(b, sp, i)?,
        }
        // After a value: close containers, or go on to the next member.
        loop {
            if depth == 0 {
                return Some(i);
            }
            let object = stack & 1 == 1;
            match *b.get(i)? {
                b',' => {
                    i += 1;
                    if object {
                        i = key(b, sp, i)?;
                    }
                    continue 'value;
                }
                b'}' if object => {}
                b']' if !object => {}
                _ => return None,
            }
            stack >>= 1;
            depth -= 1;
            i += 1;
        }
    }
}

/// `"key":` at `i`; returns where the value starts.
// Always inlined, as the other steps: called a few dozen times per document, a call costs
// more than the step does.
#[inline(always)]
fn key(b: &[u8], sp: &mut Specials, i: usize) -> Option<usize> {
    if *b.get(i)? != b'"' {
        return None;
    }
    let end = string(b, sp, i + 1)?;
    if *b.get(end)? != b':' {
        return None;
    }
    Some(end + 1)
}

#[inline(always)]
fn literal(b: &[u8], i: usize, word: &[u8]) -> Option<usize> {
    b.get(i..)?.starts_with(word).then_some(i + word.len())
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?` at `i`; returns its end. A number that
/// reaches the end of the input may go on in the next chunk: not proven.
#[inline(always)]
fn number(b: &[u8], mut i: usize) -> Option<usize> {
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match *b.get(i)? {
        b'0' => i += 1,
        b'1'..=b'9' => i = digits(b, i + 1),
        _ => return None,
    }
    if b.get(i) == Some(&b'.') {
        if !b.get(i + 1)?.is_ascii_digit() {
            return None;
        }
        i = digits(b, i + 2);
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !b.get(i)?.is_ascii_digit() {
            return None;
        }
        i = digits(b, i + 1);
    }
    // The byte after the number must be in the input (the caller checks which it is).
    b.get(i)?;
    Some(i)
}

/// The end of the run of ASCII digits at `i`. Eight bytes at a time: a byte below `0` borrows
/// its high bit in `v - 0x30…`, one above `9` carries into it in `v + 0x46…`; the lowest
/// flagged byte is always a true non-digit (borrows and carries only run upwards, and only out
/// of bytes that are flagged themselves).
#[inline(always)]
fn digits(b: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    while let Some(word) = b.get(i..i + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let v = u64::from_le_bytes(w);
        let other = (v.wrapping_sub(ONES * 0x30) | v.wrapping_add(ONES * 0x46)) & HIGHS;
        if other != 0 {
            return i + (other.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    i
}

/// A string's contents from `i` (just after the opening quote); returns the index just after
/// the closing quote. Checks escapes and refuses raw control characters (the input is UTF-8).
#[inline(always)]
fn string(b: &[u8], sp: &mut Specials, i: usize) -> Option<usize> {
    string_noting_escapes(b, sp, i).map(|(end, _)| end)
}

/// [`string`], and whether the string holds an escape.
#[inline(always)]
fn string_noting_escapes(b: &[u8], sp: &mut Specials, mut i: usize) -> Option<(usize, bool)> {
    let mut escaped = false;
    loop {
        i = sp.next(i);
        let c = *b.get(i)?;
        match c {
            b'"' => return Some((i + 1, escaped)),
            b'\\' => {
                escaped = true;
                i = match *b.get(i + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i + 2,
                    b'u' => {
                        let hex = b.get(i + 2..i + 6)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        i + 6
                    }
                    _ => return None,
                }
            }
            _ => return None,
        }
    }
}

/// Where the bytes a string stops at (`"`, `\\`, control bytes) are: a bit mask of the 64
/// bytes from `start`, made with SSE2 where there is SSE2. Finding the end of a string is then
/// a shift and a count of trailing zeros, not a loop whose exit the CPU cannot predict (that
/// loop, eight bytes at a time, was half of this pass; the masks made it a quarter faster).
struct Specials<'a> {
    b: &'a [u8],
    /// `mask` bit k: `b[start + k]` is one (or lies past the end of `b`).
    start: usize,
    mask: u64,
}

impl<'a> Specials<'a> {
    fn new(b: &'a [u8]) -> Self {
        // No mask yet: `start` so far off that every position is outside it.
        Specials {
            b,
            start: usize::MAX / 2,
            mask: 0,
        }
    }

    /// The first special byte at or after `i`; `b.len()` or more if there is none.
    #[inline(always)]
    fn next(&mut self, mut i: usize) -> usize {
        loop {
            let off = i.wrapping_sub(self.start);
            if off < 64 {
                let m = self.mask >> off;
                if m != 0 {
                    return i + m.trailing_zeros() as usize;
                }
                i = self.start + 64;
            }
            if i >= self.b.len() {
                return self.b.len();
            }
            self.start = i;
            self.mask = block_mask(&self.b[i..]);
        }
    }
}

/// Bit k set: `b[k]` is `"`, `\\` or below 0x20, or k ≥ `b.len()`.
#[inline(always)]
fn block_mask(b: &[u8]) -> u64 {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    if let Some(block) = b.first_chunk::<64>() {
        // SAFETY: the function needs only SSE2, which this build enables (`cfg` above; it is
        // in the x86_64 baseline, so in every build for it).
        return unsafe { block_mask_sse2(block) };
    }
    block_mask_portable(b)
}

fn block_mask_portable(b: &[u8]) -> u64 {
    let mut m = if b.len() >= 64 { 0 } else { !0u64 << b.len() };
    for (k, &c) in b.iter().take(64).enumerate() {
        m |= u64::from(c == b'"' || c == b'\\' || c < 0x20) << k;
    }
    m
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
fn block_mask_sse2(block: &[u8; 64]) -> u64 {
    use std::arch::x86_64::*;
    let quote = _mm_set1_epi8(b'"' as i8);
    let backslash = _mm_set1_epi8(b'\\' as i8);
    let below = _mm_set1_epi8(0x1f);
    let mut m = 0u64;
    for (k, part) in block.chunks_exact(16).enumerate() {
        let lo = u64::from_le_bytes(part[..8].try_into().unwrap_or_default());
        let hi = u64::from_le_bytes(part[8..].try_into().unwrap_or_default());
        let v = _mm_set_epi64x(hi as i64, lo as i64);
        let hits = _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
            _mm_cmpeq_epi8(_mm_min_epu8(v, below), v),
        );
        m |= u64::from(_mm_movemask_epi8(hits) as u16) << (16 * k);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proves_compact_documents_and_finds_their_metadata() {
        let doc = br#"{"_component":"","_table":"users","_ts":17,"_id":"j5\"7","x":{"_ts":1},"a":[1,-0.5e+3,"\u00e9",true,false,null,{},[]],"_deleted":false}"#;
        let mut input = doc.to_vec();
        input.extend_from_slice(br#",{"next":1}]"#);
        let input = std::str::from_utf8(&input).unwrap();
        let p = prove(input, None).unwrap();
        assert_eq!(p.end, doc.len());
        let got: Vec<Option<&[u8]>> = p
            .spans
            .iter()
            .map(|s| s.map(|(a, b)| &input.as_bytes()[a..b]))
            .collect();
        assert_eq!(
            got,
            [
                Some(&br#""users""#[..]),
                Some(&br#""""#[..]),
                Some(&b"17"[..]),
                Some(&b"false"[..]),
                Some(&br#""j5\"7""#[..]),
            ]
        );
        // `_id` holds an escape; one in any other field does not count.
        assert!(!p.plain_names);
        let p = prove(r#"{"_table":"t","_id":"j5","x":"\n","_ts":1}"#, None).unwrap();
        assert!(p.plain_names);
        // No strict prefix is proven (the element may go on in the next chunk).
        for cut in 0..doc.len() {
            assert_eq!(prove(&input[..cut], None), None, "cut at {cut}");
        }
    }

    /// As the parser calls it: on the part of the buffer that is UTF-8.
    fn prove_bytes(b: &[u8]) -> Option<Proven> {
        prove(valid_prefix(b), None)
    }

    #[test]
    fn leaves_whitespace_depth_bad_json_and_bad_utf8_to_the_exact_path() {
        for s in [
            &b"{ \"a\":1}"[..],
            b"{\"a\":1 }",
            b"[1]",
            b"\"s\"",
            br#"{"a":01}"#,
            br#"{"a":1.}"#,
            br#"{"a":+1}"#,
            br#"{"a":"\x"}"#,
            br#"{"a":"\u12g4"}"#,
            b"{\"a\":\"\x01\"}",
            b"{\"a\":\"\xff\"}",
            b"{\"a\":\"\xc3\"}",
            b"{\"a\":\"\xed\xa0\x80\"}",
            br#"{"a":1,}"#,
            br#"{"a":[}]}"#,
            br#"{"a"1}"#,
            br#"{"a":tru}"#,
        ] {
            assert_eq!(prove_bytes(s), None, "{}", String::from_utf8_lossy(s));
        }
        let deep = |n: usize| format!("{{\"d\":{}1{}}}", "[".repeat(n), "]".repeat(n));
        assert!(prove(&deep(63), None).is_some());
        assert!(prove(&deep(64), None).is_none());
        // Characters of every length are passed over inside strings.
        let p = prove_bytes(r#"{"a":"é✓😀\u00e9","_id":"x"}"#.as_bytes()).unwrap();
        assert_eq!(p.spans[4], Some((29, 32)));
    }

    /// The prefix is exactly what `std::str::from_utf8` accepts, for random bytes around every
    /// boundary of the encoding, cut anywhere.
    #[test]
    fn valid_prefix_matches_std() {
        let mut rng = fastrand::Rng::with_seed(18);
        let pool: [&[u8]; 12] = [
            b"a",
            b"\xc3\xa9",
            b"\xe2\x9c\x93",
            b"\xf0\x9f\x98\x80",
            b"\xed\x9f\xbf",
            b"\xed\xa0\x80",
            b"\xc0\xaf",
            b"\xf4\x90\x80\x80",
            b"\xff",
            b"\x80",
            b"\xe2\x9c",
            b"\"",
        ];
        for _ in 0..20_000 {
            let mut buf = Vec::new();
            for _ in 0..rng.usize(0..80) {
                buf.extend_from_slice(pool[rng.usize(..pool.len())]);
            }
            buf.truncate(rng.usize(0..=buf.len()));
            let want = match std::str::from_utf8(&buf) {
                Ok(s) => s.len(),
                Err(e) => e.valid_up_to(),
            };
            assert_eq!(valid_prefix(&buf).len(), want, "{buf:x?}");
        }
    }

    #[test]
    fn metadata_names_are_found_in_meta_keys_order() {
        for (k, name) in crate::page::META_KEYS.iter().enumerate() {
            let name = std::str::from_utf8(name).unwrap();
            let doc = format!(r#"{{"a":1,"{name}":[2],"{name}x":3,"z":"_id"}}"#);
            let p = prove(&doc, None).unwrap();
            for (i, span) in p.spans.iter().enumerate() {
                assert_eq!(
                    span.map(|(a, b)| &doc[a..b]),
                    (i == k).then_some("[2]"),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn digit_runs_match_a_plain_scan() {
        let mut rng = fastrand::Rng::with_seed(17);
        for _ in 0..5000 {
            let len = rng.usize(0..30);
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    let pool = [
                        b'0', b'5', b'9', b'/', b':', 0x00, 0xb9, 0xba, 0xff, b'.', b'e',
                    ];
                    if rng.u8(..4) == 0 {
                        pool[rng.usize(..pool.len())]
                    } else {
                        b'0' + rng.u8(0..10)
                    }
                })
                .collect();
            let from = rng.usize(0..=len);
            let want = buf[from..]
                .iter()
                .position(|c| !c.is_ascii_digit())
                .map_or(len, |j| from + j);
            assert_eq!(digits(&buf, from), want, "{buf:?} from {from}");
        }
    }

    /// The masks find what a plain scan finds, from any position, in any order of questions
    /// (a string scan asks in increasing order, jumping over escapes), across and at the end
    /// of 64-byte blocks; and the SSE2 mask is the portable one.
    #[test]
    fn special_bytes_are_found_as_a_plain_scan_finds_them() {
        let mut rng = fastrand::Rng::with_seed(16);
        let pool = [
            b'a', b'"', b'\\', 0x1f, 0x20, 0x7f, 0x80, 0xc3, 0xff, 0x00, b'!', b']',
        ];
        for _ in 0..5000 {
            let len = rng.usize(0..300);
            // Sparse or dense specials, so both long runs and short ones occur.
            let dense = rng.u8(..4);
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    if rng.u8(..16) <= dense {
                        pool[rng.usize(..pool.len())]
                    } else {
                        b'x'
                    }
                })
                .collect();
            let want = |from: usize| {
                buf[from..]
                    .iter()
                    .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
                    .map_or(len, |j| from + j)
            };
            let mut sp = Specials::new(&buf);
            let mut from = rng.usize(0..=len);
            for _ in 0..20 {
                assert_eq!(sp.next(from), want(from), "{buf:?} from {from}");
                from = match rng.u8(..4) {
                    0 => rng.usize(0..=len),
                    _ => (want(from) + rng.usize(1..8)).min(len),
                };
            }
            for at in 0..len {
                assert_eq!(block_mask(&buf[at..]), block_mask_portable(&buf[at..]));
            }
        }
    }
}
