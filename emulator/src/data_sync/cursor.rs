//! The data sync cursor: the whole state of a sync, sealed so that clients can neither read
//! nor forge it.
//!
//! Convex keeps no server-side state for a sync: `pagination.nextCursor` carries everything
//! (encrypted with a key derived from the deployment's secret; hex of a version byte, a random
//! nonce, the ciphertext and a tag). The emulator reproduces the properties a client can
//! observe: the string is opaque, changes on every page even for the same state, and any
//! modified, forged or other-deployment cursor is refused. The emulator has no cryptography
//! dependency, so sealing uses std's keyed SipHash (`RandomState`, random keys per deployment
//! and process) as a PRF: a counter-mode keystream for secrecy and a 128-bit tag over the
//! whole cursor. That is plenty against clients of a test double, not a security boundary.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::progress::Position;

/// Convex's `DATA_SYNC_CURSOR_VERSION`.
const VERSION: u8 = 1;
/// Convex seals query cursors (such as list_active_syncs's) as version 7 under another key;
/// here the version byte, which the tag covers, keeps the two kinds apart.
const LIST_VERSION: u8 = 7;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

// Domain separators of the PRF uses.
const KEYSTREAM: u8 = 1;
const TAG_HI: u8 = 2;
const TAG_LO: u8 = 3;
const NONCE: u8 = 4;
const UUID: u8 = 5;

/// The position in the by-id walk of the table being snapshotted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InProgress {
    pub tablet: [u8; 16],
    /// Internal id of the last document walked; `None` = not started.
    pub current_id: Option<[u8; 16]>,
    pub docs_synced: u64,
}

/// What a cursor holds (Convex's `DataSyncCursor`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CursorState {
    /// Every captured document has been emitted at its latest revision at or before this.
    pub synced_ts: i64,
    /// Tablets whose whole id space has been walked (and that are followed in the log since).
    pub synced: Vec<[u8; 16]>,
    /// The table being walked by id, if any.
    pub current: Option<InProgress>,
    pub sync_id: String,
    /// Entries emitted over the sync's lifetime (tombstones and re-emitted revisions included).
    pub num_docs_synced: u64,
}

impl CursorState {
    /// Tablets this cursor tracks: synced ones and the one in progress.
    pub fn tracked(&self) -> impl Iterator<Item = &[u8; 16]> {
        self.synced
            .iter()
            .chain(self.current.as_ref().map(|c| &c.tablet))
    }
}

/// A deployment's cursor secret and uniqueness counter.
pub struct Sealer {
    prf: RandomState,
    counter: AtomicU64,
}

impl Default for Sealer {
    fn default() -> Self {
        Sealer::new()
    }
}

impl Sealer {
    /// A fresh secret: cursors of one `Sealer` are refused by every other.
    pub fn new() -> Sealer {
        Sealer {
            prf: RandomState::new(),
            counter: AtomicU64::new(0),
        }
    }

    fn next(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }

    fn tag(&self, sealed: &[u8]) -> [u8; TAG_LEN] {
        let mut t = [0u8; TAG_LEN];
        t[..8].copy_from_slice(&self.prf.hash_one((TAG_HI, sealed)).to_le_bytes());
        t[8..].copy_from_slice(&self.prf.hash_one((TAG_LO, sealed)).to_le_bytes());
        t
    }

    fn xor_keystream(&self, nonce: &[u8], data: &mut [u8]) {
        for (i, chunk) in data.chunks_mut(8).enumerate() {
            let block = self
                .prf
                .hash_one((KEYSTREAM, nonce, i as u64))
                .to_le_bytes();
            for (b, k) in chunk.iter_mut().zip(block) {
                *b ^= k;
            }
        }
    }

    /// Lowercase hex of `version ‖ nonce ‖ ciphertext ‖ tag`.
    pub fn seal(&self, state: &CursorState) -> String {
        // Serializing plain integers, byte arrays and strings cannot fail.
        self.seal_bytes(VERSION, serde_json::to_vec(state).unwrap_or_default())
    }

    /// The state sealed in `cursor`, or `None` if this deployment did not seal it unchanged.
    pub fn open(&self, cursor: &str) -> Option<CursorState> {
        serde_json::from_slice(&self.open_bytes(VERSION, cursor)?).ok()
    }

    /// A list_active_syncs cursor.
    pub fn seal_list_cursor(&self, at: Position) -> String {
        self.seal_bytes(LIST_VERSION, serde_json::to_vec(&at).unwrap_or_default())
    }

    pub fn open_list_cursor(&self, cursor: &str) -> Option<Position> {
        serde_json::from_slice(&self.open_bytes(LIST_VERSION, cursor)?).ok()
    }

    fn seal_bytes(&self, version: u8, mut body: Vec<u8>) -> String {
        let n = self.next();
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..8].copy_from_slice(&n.to_le_bytes());
        nonce[8..].copy_from_slice(&self.prf.hash_one((NONCE, n)).to_le_bytes()[..4]);
        self.xor_keystream(&nonce, &mut body);
        let mut out = Vec::with_capacity(1 + NONCE_LEN + body.len() + TAG_LEN);
        out.push(version);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        let tag = self.tag(&out);
        out.extend_from_slice(&tag);
        hex(&out)
    }

    fn open_bytes(&self, version: u8, cursor: &str) -> Option<Vec<u8>> {
        let raw = unhex(cursor)?;
        if raw.len() < 1 + NONCE_LEN + TAG_LEN || raw[0] != version {
            return None;
        }
        let (sealed, tag) = raw.split_at(raw.len() - TAG_LEN);
        let want = self.tag(sealed);
        // Compare without an early exit (habit; timing is not a concern here).
        if tag.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b)) != 0 {
            return None;
        }
        let nonce = &sealed[1..1 + NONCE_LEN];
        let mut body = sealed[1 + NONCE_LEN..].to_vec();
        self.xor_keystream(nonce, &mut body);
        Some(body)
    }

    /// A random-looking UUID v4 string, unique within this deployment.
    pub fn uuid_v4(&self) -> String {
        let n = self.next();
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.prf.hash_one((UUID, n, 0u8)).to_le_bytes());
        b[8..].copy_from_slice(&self.prf.hash_one((UUID, n, 1u8)).to_le_bytes());
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h = hex(&b);
        format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    b.chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> CursorState {
        CursorState {
            synced_ts: 1_770_335_566_197_682_922,
            synced: vec![[7; 16]],
            current: Some(InProgress {
                tablet: [9; 16],
                current_id: Some([3; 16]),
                docs_synced: 5,
            }),
            sync_id: "airbyte-x".into(),
            num_docs_synced: 12,
        }
    }

    #[test]
    fn seals_round_trip_opaque_and_fresh_each_time() {
        let s = Sealer::new();
        let a = s.seal(&state());
        let b = s.seal(&state());
        assert_ne!(a, b, "a random nonce makes every cursor string different");
        assert!(a.starts_with("01"));
        assert!(
            !a.contains(&hex(b"airbyte-x")),
            "the plaintext must not show"
        );
        assert_eq!(s.open(&a), Some(state()));
        assert_eq!(s.open(&b), Some(state()));
    }

    #[test]
    fn any_change_or_other_secret_is_refused() {
        let s = Sealer::new();
        let c = s.seal(&state());
        for i in 0..c.len() {
            let mut m = c.clone().into_bytes();
            m[i] = if m[i] == b'0' { b'1' } else { b'0' };
            let m = String::from_utf8(m).unwrap();
            assert_eq!(s.open(&m), None, "flip at {i}");
        }
        assert_eq!(s.open(&c[..c.len() - 2]), None);
        assert_eq!(s.open("zz"), None);
        assert_eq!(s.open(""), None);
        assert_eq!(Sealer::new().open(&c), None);
        assert_eq!(s.open_list_cursor(&c), None, "not a listing cursor");
    }

    #[test]
    fn uuids_are_v4_and_distinct() {
        let s = Sealer::new();
        let (a, b) = (s.uuid_v4(), s.uuid_v4());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
    }
}
