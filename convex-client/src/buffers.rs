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

impl Classes {
    fn of(&mut self, capacity: usize) -> &mut Vec<Vec<u8>> {
        if capacity >= LARGE {
            &mut self.large
        } else {
            &mut self.small
        }
    }
}

impl BufferPool {
    /// An empty buffer of at least `capacity`: the smallest kept one of its class that holds
    /// it, or a new one. (A kept buffer that then had to grow would be copied into fresh
    /// pages, and one grown past `MAX_CAPACITY` would not come back.)
    pub fn take(&self, capacity: usize) -> Vec<u8> {
        let kept = self.0.lock().ok().and_then(|mut c| {
            let class = c.of(capacity);
            let fit = class
                .iter()
                .enumerate()
                .filter(|(_, b)| b.capacity() >= capacity)
                .min_by_key(|(_, b)| b.capacity())?
                .0;
            Some(class.swap_remove(fit))
        });
        kept.unwrap_or_else(|| Vec::with_capacity(capacity))
    }

    /// Keeps `buf` for a later `take`, unless it is too large or its class is full of
    /// buffers at least as large.
    pub fn give(&self, mut buf: Vec<u8>) {
        let capacity = buf.capacity();
        if capacity == 0 || capacity > MAX_CAPACITY {
            return;
        }
        buf.clear();
        if let Ok(mut c) = self.0.lock() {
            let class = c.of(capacity);
            if class.len() < KEEP {
                class.push(buf);
            } else if let Some(smallest) = class.iter_mut().min_by_key(|b| b.capacity()) {
                if smallest.capacity() < capacity {
                    *smallest = buf;
                }
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

    #[test]
    fn a_buffer_too_small_for_a_request_is_not_handed_out_and_a_full_class_keeps_the_largest() {
        let pool = BufferPool::default();
        pool.give(Vec::with_capacity(LARGE));
        // An output-sized request gets a new buffer, not a network-sized one it would outgrow.
        assert_eq!(pool.take(MAX_CAPACITY).capacity(), MAX_CAPACITY);
        assert_eq!(pool.kept(), (0, 1));
        // A full class trades its smallest buffer for a larger one, never the reverse.
        for _ in 0..KEEP {
            pool.give(Vec::with_capacity(LARGE));
        }
        pool.give(Vec::with_capacity(MAX_CAPACITY));
        pool.give(Vec::with_capacity(LARGE));
        assert_eq!(pool.kept(), (0, KEEP));
        assert_eq!(pool.take(MAX_CAPACITY).capacity(), MAX_CAPACITY);
        // The best fit: the smallest kept buffer that holds the request.
        pool.give(Vec::with_capacity(MAX_CAPACITY));
        assert_eq!(pool.take(LARGE).capacity(), LARGE);
        assert_eq!(pool.take(LARGE + 1).capacity(), MAX_CAPACITY);
    }
}
