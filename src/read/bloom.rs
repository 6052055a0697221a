//! A set that can say "maybe" but never forgets: what a change walk remembers of the documents
//! it sent once the exact ids would outgrow their share of the change buffer. A false "maybe"
//! only defers a change to the next read (which reads the log again from before it); a
//! document that was sent is always found.

use std::hash::BuildHasher;

/// Probes per key: with `BITS_PER_KEY` bits per key, about 1 % of other keys answer "maybe".
const PROBES: u64 = 7;
/// Bits per key the filter is sized for; past that many keys it answers "maybe" more often.
pub const BITS_PER_KEY: usize = 10;

pub struct Bloom {
    bits: Vec<u64>,
    hasher: foldhash::fast::RandomState,
}

impl Bloom {
    /// A filter of `bytes` bytes (at least one word).
    pub fn with_bytes(bytes: usize) -> Bloom {
        Bloom {
            bits: vec![0; (bytes / 8).max(1)],
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    pub fn bytes(&self) -> usize {
        self.bits.len() * 8
    }

    /// The bit positions of a key: double hashing, `h1 + i·h2`.
    fn probes(&self, stream: usize, id: &str) -> [usize; PROBES as usize] {
        let hash = self.hasher.hash_one((stream, id));
        let (h1, h2) = (hash, hash.rotate_left(32) | 1);
        let bits = self.bits.len() as u64 * 64;
        std::array::from_fn(|i| (h1.wrapping_add((i as u64).wrapping_mul(h2)) % bits) as usize)
    }

    pub fn insert(&mut self, stream: usize, id: &str) {
        for bit in self.probes(stream, id) {
            self.bits[bit / 64] |= 1 << (bit % 64);
        }
    }

    /// Whether the key may have been inserted (always true if it was).
    pub fn may_contain(&self, stream: usize, id: &str) -> bool {
        self.probes(stream, id)
            .iter()
            .all(|bit| self.bits[bit / 64] & (1 << (bit % 64)) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_inserted_key_is_found_and_few_others_are() {
        let n = 10_000;
        let mut bloom = Bloom::with_bytes(n * BITS_PER_KEY / 8);
        for i in 0..n {
            bloom.insert(i % 3, &format!("id{i}"));
        }
        assert!((0..n).all(|i| bloom.may_contain(i % 3, &format!("id{i}"))));
        // The same id in another stream is another key.
        let other_stream = (0..n)
            .filter(|i| bloom.may_contain(i % 3 + 1, &format!("id{i}")))
            .count();
        let unknown = (0..n)
            .filter(|i| bloom.may_contain(0, &format!("new{i}")))
            .count();
        assert!(other_stream < n / 50, "{other_stream} of {n}");
        assert!(unknown < n / 50, "{unknown} of {n}");
    }

    #[test]
    fn a_tiny_filter_still_works() {
        let mut bloom = Bloom::with_bytes(0);
        assert_eq!(bloom.bytes(), 8);
        bloom.insert(0, "a");
        assert!(bloom.may_contain(0, "a"));
    }
}
