//! One pool of byte buffers for the whole process: the network's chunk buffers and the output's
//! record buffers. A fresh buffer is fresh pages from the kernel (a page fault per 4 KiB, about
//! a tenth of a full refresh's CPU time); a reused one is not. Whoever embeds the client shares
//! its pool with its own writers (`HttpConvex::with_buffer_pool`).
//!
//! Two size classes, so a small network chunk never pins an output-sized buffer (the read-ahead
//! budget counts bytes held, not capacity). Memory kept idle: at most `KEEP` buffers of each
//! class, small ones under `LARGE` bytes and large ones at most `MAX_CAPACITY`: under 9 MiB.

use std::sync::{Arc, Mutex};

/// A buffer of at least this capacity is a large one.
pub const LARGE: usize = 256 * 1024;
/// Larger buffers (records of huge documents) are freed, not kept.
pub const MAX_CAPACITY: usize = 2 * 1024 * 1024;
/// Buffers kept per class.
pub const KEEP: usize = 4;

#[derive(Clone, Default)]
pub struct BufferPool(Arc<Mutex<Classes>>);

#[derive(Default)]
struct Classes {
    small: Vec<Vec<u8>>,
    large: Vec<Vec<u8>>,
}

impl BufferPool {
    /// An empty buffer: a kept one of the class `capacity` falls in, or a new one of that
    /// capacity.
    pub fn take(&self, capacity: usize) -> Vec<u8> {
        let kept = self.0.lock().ok().and_then(|mut c| {
            if capacity >= LARGE {
                c.large.pop()
            } else {
                c.small.pop()
            }
        });
        kept.unwrap_or_else(|| Vec::with_capacity(capacity))
    }

    /// Keeps `buf` for a later `take`, unless its class is full or it is too large.
    pub fn give(&self, mut buf: Vec<u8>) {
        let capacity = buf.capacity();
        if capacity == 0 || capacity > MAX_CAPACITY {
            return;
        }
        buf.clear();
        if let Ok(mut c) = self.0.lock() {
            let class = if capacity >= LARGE {
                &mut c.large
            } else {
                &mut c.small
            };
            if class.len() < KEEP {
                class.push(buf);
            }
        }
    }

    /// Buffers kept now, small and large (for tests and accounting).
    pub fn kept(&self) -> (usize, usize) {
        self.0
            .lock()
            .map(|c| (c.small.len(), c.large.len()))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_by_size_class_and_only_up_to_the_bounds() {
        let pool = BufferPool::default();
        let big = pool.take(LARGE + 1);
        assert!(big.capacity() > LARGE);
        let big_ptr = big.as_ptr();
        pool.give(big);
        // A small request never gets the large buffer; a large one does, emptied.
        let small = pool.take(100);
        assert_ne!(small.as_ptr(), big_ptr);
        let mut again = pool.take(LARGE);
        assert_eq!(again.as_ptr(), big_ptr);
        assert!(again.is_empty());
        again.extend_from_slice(b"x");
        pool.give(again);
        assert!(pool.take(LARGE).is_empty());
        // Bounded: KEEP per class, nothing over MAX_CAPACITY, no empty allocations.
        for _ in 0..KEEP + 3 {
            pool.give(Vec::with_capacity(LARGE));
            pool.give(Vec::with_capacity(16));
        }
        pool.give(Vec::with_capacity(MAX_CAPACITY + 1));
        pool.give(Vec::new());
        assert_eq!(pool.kept(), (KEEP, KEEP));
    }
}
