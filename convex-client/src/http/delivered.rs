//! Which values one page has handed to the sink, across the attempts at it: a retried page
//! skips what an earlier attempt delivered, by identity (component, table, `_id`, `_ts`),
//! never by count, and reports what its last attempt no longer sent. With it, the fast
//! reading of a value's metadata ([`plain_meta`]) that gives that identity on the hot path.
//! Apart because it is bookkeeping on values alone, with no I/O, tested on its own.

use crate::data_sync::Unrepeated;
use crate::page::RawMeta;
use crate::{json_i64, TableRef, ValueMeta};

/// The values one page has handed to the sink, across attempts. The first attempt only
/// appends keys to one buffer (no allocation per value on the hot path); a retry indexes them.
#[derive(Default)]
pub(super) struct Delivered {
    keys: Vec<u8>,
    ends: Vec<usize>,
    index: Option<std::collections::HashSet<Box<[u8]>>>,
    scratch: Vec<u8>,
    /// How many of `ends` earlier attempts delivered (the attempt in progress adds the rest).
    earlier: usize,
    /// The documents (keys without `_ts`) the attempt in progress sent, new or not: kept
    /// only once a page is retried.
    sent: std::collections::HashSet<Box<[u8]>>,
}

/// The bytes of a key ([`key_of`]) that are the document's, not the revision's.
fn document_part(key: &[u8]) -> &[u8] {
    &key[..key.len() - 8]
}

impl Delivered {
    /// Whether `meta`'s value is new to this page; if so it counts as delivered from now on.
    pub(super) fn take(&mut self, meta: &ValueMeta<'_>) -> bool {
        let Some(index) = &mut self.index else {
            // The first attempt: nothing to check against, the key goes straight in.
            key_of(meta, &mut self.keys);
            self.ends.push(self.keys.len());
            return true;
        };
        self.scratch.clear();
        key_of(meta, &mut self.scratch);
        let document = document_part(&self.scratch);
        if !self.sent.contains(document) {
            self.sent.insert(document.into());
        }
        if !index.insert(self.scratch.as_slice().into()) {
            return false;
        }
        self.keys.extend_from_slice(&self.scratch);
        self.ends.push(self.keys.len());
        true
    }

    /// Before a retry: what was delivered becomes a set to check against.
    pub(super) fn retrying(&mut self) {
        self.earlier = self.ends.len();
        self.sent.clear();
        if self.index.is_some() {
            return;
        }
        let mut start = 0;
        let mut set = std::collections::HashSet::with_capacity(self.ends.len());
        for &end in &self.ends {
            set.insert(self.keys[start..end].into());
            start = end;
        }
        self.index = Some(set);
    }

    /// The same, empty, keeping the allocations of its key buffers (up to a bound) for the
    /// next page.
    pub(super) fn emptied(mut self) -> Delivered {
        /// Bytes of keys kept between pages: a full data sync page's (16,384 values).
        const KEEP_BYTES: usize = 2 * 1024 * 1024;
        if self.keys.capacity() > KEEP_BYTES {
            return Delivered::default();
        }
        self.keys.clear();
        self.ends.clear();
        Delivered {
            keys: self.keys,
            ends: self.ends,
            ..Delivered::default()
        }
    }

    pub(super) fn count(&self) -> usize {
        self.ends.len()
    }

    /// Values earlier attempts delivered whose document the last attempt did not send at all
    /// (neither that revision nor another).
    pub(super) fn unrepeated(&self) -> Vec<Unrepeated> {
        let mut start = 0;
        let mut out = Vec::new();
        for &end in &self.ends[..self.earlier] {
            let key = &self.keys[start..end];
            start = end;
            if self.sent.contains(document_part(key)) {
                continue;
            }
            let mut names = document_part(key)
                .split(|&b| b == 0)
                .map(String::from_utf8_lossy);
            let (component, table, id) = (names.next(), names.next(), names.next());
            let ts = key[key.len() - 8..].try_into().map(i64::from_le_bytes);
            if let (Some(component), Some(table), Some(id), Ok(ts)) = (component, table, id, ts) {
                out.push(Unrepeated {
                    table: TableRef {
                        component: component.into_owned(),
                        table: table.into_owned(),
                    },
                    id: id.into_owned(),
                    ts,
                });
            }
        }
        out
    }
}

/// `ValueMeta::from_raw` for the usual shape of the metadata (compact, `_ts` a plain integer,
/// names and id without escapes), with no search or parse call per field: it is a sixth of the
/// work per record otherwise. `None` for any other shape, which `from_raw` then reads (and
/// refuses where it must); where this gives a value, it is the one `from_raw` gives.
pub(super) fn plain_meta<'a>(raw: &RawMeta<'a>) -> Option<ValueMeta<'a>> {
    let plain_string = |json: &'a str| -> Option<std::borrow::Cow<'a, str>> {
        let inner = json.strip_prefix('"')?.strip_suffix('"')?;
        if !raw.plain_names {
            // A loop, not `contains` (a `memchr` call costs more than these short names).
            for &c in inner.as_bytes() {
                if c == b'\\' {
                    return None;
                }
            }
        }
        Some(std::borrow::Cow::Borrowed(inner))
    };
    let ts = json_i64(raw.ts?)?;
    Some(ValueMeta {
        table: plain_string(raw.table?)?,
        component: match raw.component {
            Some(c) => plain_string(c)?,
            None => std::borrow::Cow::Borrowed(""),
        },
        id: plain_string(raw.id?)?,
        ts,
        deleted: match raw.deleted {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(_) => return None,
        },
        members: raw.members,
        bare: false,
    })
}

/// Appends a value's identity (component, table, `_id`, `_ts`) to `out`: the names each end
/// with a NUL, the timestamp is its eight bytes.
fn key_of(meta: &ValueMeta<'_>, out: &mut Vec<u8>) {
    for part in [&*meta.component, &*meta.table, &*meta.id] {
        out.extend_from_slice(part.as_bytes());
        out.push(0);
    }
    out.extend_from_slice(&meta.ts.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wherever the plain reading of the metadata gives a value, `from_raw` gives the same;
    /// and it does give one for the usual shape.
    #[test]
    fn plain_metadata_agrees_with_from_raw() {
        let mut rng = fastrand::Rng::with_seed(0x3e7a);
        let strings: [&str; 12] = [
            "\"users\"",
            "\"\"",
            "\"",
            "\"a\\\"b\"",
            "\"\\u0061\"",
            " \"t\" ",
            "\"é\"",
            "\"✓\"",
            "users",
            "\"j57\"",
            "null",
            "\"a/b\"",
        ];
        let numbers: [&str; 14] = [
            "9223372036854775808",
            "-9999999999999999999",
            "0",
            "-0",
            "17",
            "-5",
            "1770335566197682000",
            "999999999999999999",
            "9223372036854775807",
            "-9223372036854775808",
            "1.5",
            " 7",
            "+5",
            "-",
        ];
        let bools: [&str; 5] = ["true", "false", " true", "1", "null"];
        let mut plain = 0;
        for _ in 0..20_000 {
            let pick = |rng: &mut fastrand::Rng, pool: &[&'static str]| {
                (rng.u8(..8) != 0).then(|| pool[rng.usize(..pool.len())])
            };
            let mut raw = RawMeta {
                table: pick(&mut rng, &strings),
                component: pick(&mut rng, &strings),
                ts: pick(&mut rng, &numbers),
                deleted: pick(&mut rng, &bools),
                id: pick(&mut rng, &strings),
                value: None,
                plain_names: false,
                members: None,
            };
            // What the fast path promises, when it is true.
            raw.plain_names = rng.bool()
                && [raw.table, raw.component, raw.id]
                    .iter()
                    .flatten()
                    .all(|s| !s.contains('\\'));
            if let Some(m) = plain_meta(&raw) {
                plain += 1;
                assert_eq!(ValueMeta::from_raw(raw), Ok(m), "{raw:?}");
            }
        }
        assert!(plain > 100, "{plain}");
        let usual = RawMeta {
            table: Some("\"users\""),
            component: Some("\"\""),
            ts: Some("1770335566197682000"),
            deleted: None,
            id: Some("\"j57\""),
            value: None,
            plain_names: true,
            members: None,
        };
        assert_eq!(plain_meta(&usual), ValueMeta::from_raw(usual).ok());
        assert!(plain_meta(&usual).is_some());
    }

    /// A retried page skips what it delivered, and counts what its last attempt did not send.
    #[test]
    fn retried_pages_skip_delivered_values_and_count_unrepeated_ones() {
        let meta = |id: &'static str, ts: i64| ValueMeta {
            table: "t".into(),
            component: "".into(),
            id: id.into(),
            ts,
            deleted: Some(false),
            members: None,
            bare: false,
        };
        let mut d = Delivered::default();
        for (id, ts) in [("a", 1), ("b", 1), ("c", 1), ("d", 1)] {
            assert!(d.take(&meta(id, ts)));
        }
        assert_eq!(d.unrepeated(), []);
        d.retrying();
        // The retry: `a` again, `b` at a later revision, `e` new; `c` and `d` not at all.
        assert!(!d.take(&meta("a", 1)));
        assert!(d.take(&meta("b", 2)));
        assert!(d.take(&meta("e", 1)));
        let ids = |d: &Delivered| -> Vec<(String, i64)> {
            d.unrepeated().into_iter().map(|u| (u.id, u.ts)).collect()
        };
        assert_eq!(d.count(), 6);
        assert_eq!(ids(&d), [("c".into(), 1), ("d".into(), 1)]);
        assert_eq!(d.unrepeated()[0].table, TableRef::root("t"));
        d.retrying();
        // `b` at another revision counts as sent; `d` is left out.
        for (id, ts) in [("a", 1), ("b", 2), ("c", 1), ("e", 1)] {
            assert!(!d.take(&meta(id, ts)));
        }
        assert_eq!((d.count(), ids(&d)), (6, vec![("d".into(), 1)]));
    }
}
