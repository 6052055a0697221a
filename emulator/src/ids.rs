//! Deterministic randomness and Convex-like identifiers.
//!
//! Everything random in the emulator (tablet ids, document ids, generated data, fault rates)
//! comes from [`Rng`] seeded from the configured seed, so the same seed gives the same bytes.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// SplitMix64: tiny, fast and good enough for test data; chosen so the emulator needs no
/// random-number crate and its output never changes with a dependency upgrade.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5851_f42d_4c95_7f2d)
    }

    /// A generator derived from a seed and a path of indices (table, document, ...), so items
    /// can be generated independently (and in parallel) yet deterministically.
    pub fn derive(seed: u64, parts: &[u64]) -> Rng {
        let mut h = mix(seed ^ 0x9e37_79b9_7f4a_7c15);
        for p in parts {
            h = mix(h ^ mix(p.wrapping_add(0x632b_e59b_d9b4_e019)));
        }
        Rng(h)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform in `0..n` (`n > 0`); the modulo bias is irrelevant for test data.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo).max(1) as u64) as i64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    pub fn bytes16(&mut self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        b[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        b
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Convex's base32 alphabet (Crockford-like, no i/l/o/u). It is in ascending ASCII order, so
/// for equal-length ids string order equals byte order, which the snapshot walk relies on.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let mut buf: u32 = 0;
    let mut bits = 0;
    for &b in bytes {
        buf = (buf << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buf >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buf << (5 - bits)) & 31) as usize] as char);
    }
    out
}

fn base32_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 5 / 8);
    let mut buf: u32 = 0;
    let mut bits = 0;
    for c in s.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        buf = (buf << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    Some(out)
}

/// Builds a document id string as Convex's v6 ids are: base32 of `varint(table number) ++
/// 16-byte internal id ++ footer`, the footer being the Fletcher-16 checksum (modulus 256) of
/// the bytes before it, little-endian, XOR the id version 0 (32 characters for table numbers
/// below 16384).
pub fn document_id(table_number: u32, internal: &[u8; 16]) -> String {
    let mut bytes = Vec::with_capacity(23);
    let mut n = table_number;
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            bytes.push(b);
            break;
        }
        bytes.push(b | 0x80);
    }
    bytes.extend_from_slice(internal);
    let footer = fletcher16(&bytes);
    bytes.extend_from_slice(&footer.to_le_bytes());
    base32_encode(&bytes)
}

fn fletcher16(bytes: &[u8]) -> u16 {
    let (mut c0, mut c1) = (0u8, 0u8);
    for &b in bytes {
        c0 = c0.wrapping_add(b);
        c1 = c1.wrapping_add(c0);
    }
    (u16::from(c1) << 8) | u16::from(c0)
}

/// Shortest and longest v6 id strings: 1 to 5 varint bytes + 16 + 2, in base32.
const MIN_ID_LEN: usize = 31;
const MAX_ID_LEN: usize = 37;

/// Decodes a document id exactly as Convex does: length, base32 in canonical form, a varint
/// table number that is not zero, 16 bytes, the checksum footer, nothing after it.
pub fn decode_document_id(s: &str) -> Option<(u32, [u8; 16])> {
    if !(MIN_ID_LEN..=MAX_ID_LEN).contains(&s.len()) {
        return None;
    }
    let bytes = base32_decode(s)?;
    if base32_encode(&bytes) != s {
        return None;
    }
    let mut number: u32 = 0;
    let mut pos = 0;
    loop {
        let b = *bytes.get(pos)?;
        if pos >= 5 {
            return None;
        }
        number |= u32::from(b & 0x7f).checked_shl(7 * pos as u32)?;
        pos += 1;
        if b & 0x80 == 0 {
            break;
        }
    }
    if number == 0 || bytes.len() != pos + 18 {
        return None;
    }
    let internal: [u8; 16] = bytes[pos..pos + 16].try_into().ok()?;
    let footer = u16::from_le_bytes([bytes[pos + 16], bytes[pos + 17]]);
    (footer == fletcher16(&bytes[..pos + 16])).then_some((number, internal))
}

/// The 16-byte internal id of a valid document id string.
pub fn parse_document_id(s: &str) -> Option<[u8; 16]> {
    decode_document_id(s).map(|(_, internal)| internal)
}

/// Tablet ids are shown as 22-character URL-safe base64 without padding.
pub fn tablet_string(tablet: &[u8; 16]) -> String {
    URL_SAFE_NO_PAD.encode(tablet)
}

pub fn parse_tablet(s: &str) -> Option<[u8; 16]> {
    URL_SAFE_NO_PAD.decode(s).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_ids_round_trip_and_sort_like_bytes() {
        let mut rng = Rng::new(7);
        let mut pairs: Vec<([u8; 16], String)> = (0..200)
            .map(|_| {
                let b = rng.bytes16();
                (b, document_id(10_001, &b))
            })
            .collect();
        for (b, s) in &pairs {
            assert_eq!(s.len(), 32);
            assert_eq!(parse_document_id(s), Some(*b));
        }
        let mut by_string = pairs.clone();
        by_string.sort_by(|a, b| a.1.cmp(&b.1));
        pairs.sort();
        assert_eq!(pairs, by_string);
        assert_eq!(parse_document_id("not an id"), None);
    }

    #[test]
    fn only_exact_ids_decode() {
        let id = document_id(10_001, &[7u8; 16]);
        assert_eq!(decode_document_id(&id), Some((10_001, [7u8; 16])));
        // Any changed character breaks the checksum (or the canonical form).
        for i in 0..id.len() {
            let mut bad = id.clone().into_bytes();
            bad[i] = if bad[i] == b'0' { b'1' } else { b'0' };
            let bad = String::from_utf8(bad).unwrap();
            assert_eq!(decode_document_id(&bad), None, "{bad}");
        }
        assert_eq!(decode_document_id(&id.to_uppercase()), None);
        assert_eq!(decode_document_id(&id[..31]), None);
        // Table number zero is not a table.
        assert_eq!(decode_document_id(&document_id(0, &[7u8; 16])), None);
        let long = document_id(u32::MAX, &[9u8; 16]);
        assert_eq!(long.len(), 37);
        assert_eq!(decode_document_id(&long), Some((u32::MAX, [9u8; 16])));
    }

    #[test]
    fn tablet_strings_are_22_chars() {
        let t = Rng::new(1).bytes16();
        let s = tablet_string(&t);
        assert_eq!(s.len(), 22);
        assert_eq!(parse_tablet(&s), Some(t));
    }
}
