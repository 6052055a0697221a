//! What a connection declares each top-level column to hold, and the values of a document
//! that do not fit.
//!
//! A destination creates its columns from the configured catalog. A value of another JSON
//! type (a field whose shape widened after the schema was last discovered) makes a typed load
//! fail: DuckDB and Postgres abort the whole batch on a cast. Such a value is found here, per
//! document, in one pass over its top-level members; nested values are not looked into (an
//! object or array column is stored as JSON, whatever it holds).

use serde_json::Value;

use convex::page::Member;

/// The JSON kinds of value a column accepts, as bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kinds(u8);

impl Kinds {
    pub const NULL: Kinds = Kinds(1);
    pub const BOOLEAN: Kinds = Kinds(2);
    /// A number without fraction or exponent (an int64 in `export_json`).
    pub const INTEGER: Kinds = Kinds(4);
    /// A number with a fraction or exponent (a float64).
    pub const FLOAT: Kinds = Kinds(8);
    pub const STRING: Kinds = Kinds(16);
    pub const OBJECT: Kinds = Kinds(32);
    pub const ARRAY: Kinds = Kinds(64);
    pub const ANY: Kinds = Kinds(127);

    pub fn contains(self, other: Kinds) -> bool {
        self.0 & other.0 == other.0
    }

    fn union(self, other: Kinds) -> Kinds {
        Kinds(self.0 | other.0)
    }

    /// What the kinds are, for messages (null, which every column takes, left unsaid).
    pub fn name(self) -> &'static str {
        match Kinds(self.0 & !Kinds::NULL.0) {
            Kinds(0) => "null",
            Kinds(12) => "number",
            Kinds::NULL => "null",
            Kinds::BOOLEAN => "boolean",
            Kinds::INTEGER => "integer",
            Kinds::FLOAT => "number with a fraction",
            Kinds::STRING => "string",
            Kinds::OBJECT => "object",
            Kinds::ARRAY => "array",
            _ => "value",
        }
    }

    /// What a property's schema accepts. Null always fits (every column is nullable in the
    /// destination); a schema without a `type` (an open union, `{}`) accepts anything.
    pub fn of_schema(property: &Value) -> Kinds {
        let of_name = |t: &str| match t {
            "null" => Kinds::NULL,
            "boolean" => Kinds::BOOLEAN,
            "integer" => Kinds::INTEGER,
            "number" => Kinds::INTEGER.union(Kinds::FLOAT),
            "string" => Kinds::STRING,
            "object" => Kinds::OBJECT,
            "array" => Kinds::ARRAY,
            _ => Kinds::ANY,
        };
        let kinds = match property.get("type") {
            Some(Value::String(t)) => of_name(t),
            Some(Value::Array(ts)) => ts
                .iter()
                .map(|t| t.as_str().map_or(Kinds::ANY, of_name))
                .fold(Kinds(0), Kinds::union),
            _ => Kinds::ANY,
        };
        kinds.union(Kinds::NULL)
    }
}

/// A top-level member whose value does not fit its declared column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Misfit<'a> {
    /// The key as it is in the document (between its quotes, escapes kept).
    pub raw_key: &'a [u8],
    pub found: Kinds,
    pub declared: Kinds,
}

/// The declared columns of one stream.
#[derive(Debug, Clone, Default)]
pub struct Declared {
    /// For each slot (and, last, the document's start), the slot of the member that followed it
    /// in the last document: documents of a table mostly share their field order, and a field
    /// one of them lacks changes only the successor of the field before it, so the usual
    /// lookup is one comparison.
    next: Vec<usize>,
    /// Open addressing on a hash of the name's first and last eight bytes: finding a column
    /// is a multiplication and one or two word comparisons, whatever the documents' field order
    /// (a general-purpose map hashed every name byte by byte, a tenth of the record's cost).
    slots: Vec<Option<Column>>,
    mask: usize,
}

/// A column's name and what it accepts.
type Column = (Box<[u8]>, Kinds);

impl Declared {
    /// The top-level properties of a stream's schema; `None` when it declares none (nothing
    /// to check against).
    pub fn from_schema(schema: &Value) -> Option<Declared> {
        let props = schema.get("properties")?.as_object()?;
        if props.is_empty() {
            return None;
        }
        // At most a quarter full: probes stay short.
        let size = (props.len() * 4).next_power_of_two();
        let mut d = Declared {
            next: vec![usize::MAX; size + 1],
            slots: vec![None; size],
            mask: size - 1,
        };
        for (name, s) in props {
            let mut i = d.home(name.as_bytes());
            while d.slots[i].is_some() {
                i = (i + 1) & d.mask;
            }
            d.slots[i] = Some((name.as_bytes().into(), Kinds::of_schema(s)));
        }
        Some(d)
    }

    fn home(&self, name: &[u8]) -> usize {
        let n = name.len();
        let (first, last) = if n >= 8 {
            (word(name, 0), word(name, n - 8))
        } else {
            // Byte by byte: a copy into a buffer would call `memcpy`.
            (name.iter().fold(0u64, |w, &b| (w << 8) | u64::from(b)), 0)
        };
        let h = (first ^ last.rotate_left(23) ^ n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (h >> 40) as usize & self.mask
    }

    /// [`Declared::kinds_of`] of the member after the one in slot `prev` (the start: the
    /// slots' count), and the slot to pass for the next member (the start again after a field
    /// the catalog does not know).
    #[inline]
    fn kinds_after(&mut self, prev: usize, raw_key: &[u8]) -> (Kinds, usize) {
        let start = self.slots.len();
        let guess = self.next.get(prev).copied().unwrap_or(usize::MAX);
        if let Some(Some((name, kinds))) = self.slots.get(guess) {
            if same_bytes(name, raw_key) {
                return (*kinds, guess);
            }
        }
        match self.slot_of(raw_key) {
            Some(slot) => {
                if let Some(n) = self.next.get_mut(prev) {
                    *n = slot;
                }
                let kinds = self.slots[slot].as_ref().map_or(Kinds::ANY, |c| c.1);
                (kinds, slot)
            }
            None => (self.kinds_of(raw_key), start),
        }
    }

    /// What the column `raw_key` (as the document writes it) accepts; anything, for a field
    /// the catalog does not know (it is not a column of the destination's table).
    fn kinds_of(&self, raw_key: &[u8]) -> Kinds {
        if let Some(slot) = self.slot_of(raw_key) {
            return self.slots[slot].as_ref().map_or(Kinds::ANY, |c| c.1);
        }
        // A name with an escape is found by its text (rare: only then is it unescaped).
        if raw_key.contains(&b'\\') {
            if let Ok(k) = convex::encoding::unescape(raw_key) {
                if let Some(slot) = self.slot_of(k.as_bytes()) {
                    return self.slots[slot].as_ref().map_or(Kinds::ANY, |c| c.1);
                }
            }
        }
        Kinds::ANY
    }

    /// The slot holding the column `name`.
    fn slot_of(&self, name: &[u8]) -> Option<usize> {
        let mut i = self.home(name);
        loop {
            match &self.slots[i] {
                None => return None,
                Some((k, _)) if same_bytes(k, name) => return Some(i),
                Some(_) => i = (i + 1) & self.mask,
            }
        }
    }

    /// Appends the members of `doc` (a valid JSON object) that do not fit to `misfits`.
    /// `members`: where its members are, when the page parser found them; else `doc` is walked.
    pub fn misfits<'a>(
        &mut self,
        doc: &'a [u8],
        members: Option<&[Member]>,
        misfits: &mut Vec<Misfit<'a>>,
    ) {
        let mut prev = self.slots.len();
        match members {
            Some(members) => {
                for m in members {
                    let (a, b) = (m.key.0 as usize, m.key.1 as usize);
                    let (c, d) = (m.value.0 as usize, m.value.1 as usize);
                    let (Some(raw_key), Some(value)) = (doc.get(a..b), doc.get(c..d)) else {
                        continue;
                    };
                    // System fields (`_id`, `_creationTime` and the export's metadata) have
                    // the types Convex gives them: user fields cannot start with `_`.
                    if raw_key.first() == Some(&b'_') {
                        continue;
                    }
                    let declared;
                    (declared, prev) = self.kinds_after(prev, raw_key);
                    if declared == Kinds::ANY {
                        continue;
                    }
                    if let Some(found) = misfit_kind(value, declared) {
                        misfits.push(Misfit {
                            raw_key,
                            found,
                            declared,
                        });
                    }
                }
            }
            None => for_each_member(doc, |raw_key, found| {
                let declared;
                (declared, prev) = self.kinds_after(prev, raw_key);
                if !declared.contains(found) {
                    misfits.push(Misfit {
                        raw_key,
                        found,
                        declared,
                    });
                }
            }),
        }
    }
}

/// `a == b`, for short names: their first and last eight bytes as two words each (most names
/// fit in sixteen), without a call to `memcmp`, whose set-up costs more than such a comparison.
#[inline]
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        let mut diff = 0;
        for (x, y) in a.iter().zip(b) {
            diff |= x ^ y;
        }
        return diff == 0;
    }
    word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8) && (n <= 16 || a[8..] == b[8..])
}

/// The eight bytes of `s` from `at` as a word (0 past its end).
#[inline]
fn word(s: &[u8], at: usize) -> u64 {
    s.get(at..at + 8)
        .and_then(|w| <[u8; 8]>::try_from(w).ok())
        .map_or(0, u64::from_ne_bytes)
}

/// The kind of `value` when it is not one `declared` accepts (`None`: it fits). Null fits any
/// column, and a number fits a `number` column without looking for its fraction.
#[inline]
fn misfit_kind(value: &[u8], declared: Kinds) -> Option<Kinds> {
    let found = match value.first() {
        Some(b'n') => return None,
        Some(b'"') => Kinds::STRING,
        Some(b't' | b'f') => Kinds::BOOLEAN,
        Some(b'[') => Kinds::ARRAY,
        Some(b'{') => object_kind(value),
        _ if declared.contains(Kinds::INTEGER.union(Kinds::FLOAT)) => return None,
        _ => kind_of(value),
    };
    (!declared.contains(found)).then_some(found)
}

/// The kind of a whole JSON value (its exact bytes).
fn kind_of(value: &[u8]) -> Kinds {
    match value.first() {
        Some(b'"') => Kinds::STRING,
        Some(b't' | b'f') => Kinds::BOOLEAN,
        Some(b'n') => Kinds::NULL,
        Some(b'[') => Kinds::ARRAY,
        Some(b'{') => object_kind(value),
        _ if convex::encoding::is_integer(value) => Kinds::INTEGER,
        _ => Kinds::FLOAT,
    }
}

/// An object, or one of `export_json`'s `$` objects: bytes are strings and the special floats
/// numbers.
fn object_kind(value: &[u8]) -> Kinds {
    let inner = &value[skip_ws(value, 1)..];
    if inner.starts_with(br#""$bytes""#) {
        Kinds::STRING
    } else if inner.starts_with(br#""$float""#) {
        Kinds::FLOAT
    } else {
        Kinds::OBJECT
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

/// The index after the string whose opening quote is at `i - 1`.
fn string_end(b: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let at = memchr::memchr2(b'"', b'\\', b.get(i..)?)?;
        if b[i + at] == b'\\' {
            i += at + 2;
        } else {
            return Some(i + at + 1);
        }
    }
}

/// The index after the object or array opening at `i`.
fn container_end(b: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    loop {
        match *b.get(i)? {
            b'"' => i = string_end(b, i + 1)?,
            b'{' | b'[' => {
                depth += 1;
                i += 1;
            }
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                i += 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => i += 1,
        }
    }
}

/// The kind of the value at `i` and the index after it.
fn value_end(b: &[u8], i: usize) -> Option<(Kinds, usize)> {
    Some(match *b.get(i)? {
        b'"' => (Kinds::STRING, string_end(b, i + 1)?),
        b'{' => {
            let end = container_end(b, i)?;
            (object_kind(&b[i..end]), end)
        }
        b'[' => (Kinds::ARRAY, container_end(b, i)?),
        b't' => (Kinds::BOOLEAN, i + 4),
        b'f' => (Kinds::BOOLEAN, i + 5),
        b'n' => (Kinds::NULL, i + 4),
        _ => {
            let len = b[i..]
                .iter()
                .position(|c| !matches!(c, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                .unwrap_or(b.len() - i);
            let token = &b[i..i + len];
            let kind = if convex::encoding::is_integer(token) {
                Kinds::INTEGER
            } else {
                Kinds::FLOAT
            };
            (kind, i + len)
        }
    })
}

/// Calls `f(raw key, kind of value)` for each top-level member of `doc`, a valid JSON object
/// (the page parser proved it; on anything else it stops early).
fn for_each_member<'a>(doc: &'a [u8], mut f: impl FnMut(&'a [u8], Kinds)) {
    let mut i = skip_ws(doc, 0);
    if doc.get(i) != Some(&b'{') {
        return;
    }
    i = skip_ws(doc, i + 1);
    while doc.get(i) == Some(&b'"') {
        let Some(key_end) = string_end(doc, i + 1) else {
            return;
        };
        let key = &doc[i + 1..key_end - 1];
        i = skip_ws(doc, key_end);
        if doc.get(i) != Some(&b':') {
            return;
        }
        let Some((kind, end)) = value_end(doc, skip_ws(doc, i + 1)) else {
            return;
        };
        f(key, kind);
        i = skip_ws(doc, end);
        if doc.get(i) != Some(&b',') {
            return;
        }
        i = skip_ws(doc, i + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn declared() -> Declared {
        Declared::from_schema(&json!({"properties": {
            "_id": {"type": "string"},
            "n": {"type": "integer"},
            "x": {"type": ["null", "number"]},
            "s": {"type": ["null", "string"]},
            "b": {"type": "boolean"},
            "o": {"type": "object"},
            "a": {"type": "array"},
            "mixed": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
            "we\"ird": {"type": "integer"},
        }}))
        .unwrap()
    }

    /// The misfits found by walking the document, checked equal to those found from the
    /// members the page parser reports.
    fn misfits(d: &mut Declared, doc: &str) -> Vec<(String, &'static str)> {
        let mut out = Vec::new();
        d.misfits(doc.as_bytes(), None, &mut out);
        let page = format!(r#"{{"values":[{doc}]}}"#);
        let mut parser = convex::page::PageParser::with_members();
        let mut from_members = Vec::new();
        parser
            .feed::<()>(page.as_bytes(), |raw, meta| {
                let Some(members) = meta.members else {
                    // Not compact: the fast path left it to the exact one.
                    assert!(doc.contains(' '), "{doc}");
                    return Ok(());
                };
                let mut found = Vec::new();
                d.misfits(raw, Some(members), &mut found);
                from_members = found
                    .iter()
                    .map(|m| (m.raw_key.to_vec(), m.found, m.declared))
                    .collect();
                Ok(())
            })
            .unwrap();
        let walked: Vec<_> = out
            .iter()
            .map(|m| (m.raw_key.to_vec(), m.found, m.declared))
            .collect();
        if !doc.contains(' ') {
            assert_eq!(walked, from_members, "{doc}");
        }
        out.iter()
            .map(|m| {
                (
                    String::from_utf8_lossy(m.raw_key).into_owned(),
                    m.found.name(),
                )
            })
            .collect()
    }

    #[test]
    fn values_of_the_declared_kind_fit() {
        let mut d = declared();
        let doc = r#"{"_id":"a","n":-9223372036854775808,"x":1.5,"s":null,"b":true,"o":{"k":[1,"}"]},"a":[{"x":"]"}],"mixed":"t","new":[1],"we\"ird":3}"#;
        // Bytes are strings and special floats numbers, in `export_json`'s `$` objects.
        assert!(misfits(
            &mut d,
            r#"{"s":{"$bytes":"AA=="},"x":{ "$float":"AAAAAAAA+H8="}}"#
        )
        .is_empty());
        assert!(misfits(&mut d, doc).is_empty());
        // Twice, so the second goes through the remembered field order.
        assert!(misfits(&mut d, doc).is_empty());
        assert!(misfits(&mut d, r#"{"x":7,"n":null,"b":false}"#).is_empty());
        assert!(misfits(&mut d, "{ \"n\" : 1 , \"x\" : 2e5 }").is_empty());
        assert!(misfits(&mut d, "{}").is_empty());
    }

    #[test]
    fn values_of_another_kind_are_found() {
        let mut d = declared();
        assert_eq!(
            misfits(
                &mut d,
                r#"{"_id":"a","n":1.5,"x":"NaN","s":5,"b":"yes","o":[],"a":{},"we\"ird":"3"}"#
            ),
            [
                ("n".to_owned(), "number with a fraction"),
                ("x".to_owned(), "string"),
                ("s".to_owned(), "integer"),
                ("b".to_owned(), "string"),
                ("o".to_owned(), "array"),
                ("a".to_owned(), "object"),
                ("we\\\"ird".to_owned(), "string"),
            ]
        );
    }

    #[test]
    fn schemas_without_types_declare_nothing_to_check() {
        assert!(Declared::from_schema(&json!({})).is_none());
        assert!(Declared::from_schema(&json!({"properties": {}})).is_none());
        assert_eq!(Kinds::of_schema(&json!({})), Kinds::ANY);
        assert_eq!(
            Kinds::of_schema(&json!({"type": "integer"})),
            Kinds::INTEGER.union(Kinds::NULL)
        );
    }
}
