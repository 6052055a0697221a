//! What serving a page costs the server in memory: a Data Sync page is written once into a
//! buffer of its final size (the stored `export_json` bytes copied once), not grown and then
//! copied into the response. Timing tests would be flaky on a shared machine; the bytes
//! the server allocates per byte it answers are deterministic. This binary counts them with
//! its own global allocator, so it holds this one test only.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use common::*;
use convex_emulator::{Config, GenerateSpec};
use serde_json::{json, Value};

/// Bytes requested by `alloc` and `realloc` (the new size) on threads not marked as the
/// client's.
static SERVER_BYTES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    // A const-initialized Cell needs no allocation or destructor, so the allocator may read
    // it.
    static CLIENT: Cell<bool> = const { Cell::new(false) };
}

struct Counting;

fn count(size: usize) {
    if !CLIENT.with(Cell::get) {
        SERVER_BYTES.fetch_add(size as u64, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting only reads a
// thread-local flag and bumps an atomic, neither of which allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller's contract for `alloc_zeroed` is passed on as is.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: `ptr` came from `System` through this allocator with this layout.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn a_data_sync_page_is_written_once_at_its_final_size() {
    CLIENT.with(|c| c.set(true));
    let emu = start_with(Config {
        generate: GenerateSpec {
            tables: 1,
            docs: 20_000,
            ..GenerateSpec::default()
        },
        ..Config::default()
    });
    let selection = json!({"_other": "excluded",
        "": {"_other": "excluded", "users": {"_other": "included"}}});
    let mut body = json!({ "selection": selection });
    let (mut pages, mut answered) = (0, 0usize);
    let before = SERVER_BYTES.load(Ordering::Relaxed);
    loop {
        let r = post(&emu, "/api/v1/data/sync", &body);
        assert_eq!(r.status, 200, "{}", r.text());
        // Sent whole with its length, as Convex does, not in chunks.
        assert_eq!(
            r.header("content-length"),
            Some(r.body.len().to_string().as_str())
        );
        pages += 1;
        answered += r.body.len();
        let p: Value = r.json();
        if p["status"]["type"] == "upToDate" {
            break;
        }
        body["cursor"] = p["pagination"]["nextCursor"].clone();
    }
    let allocated = SERVER_BYTES.load(Ordering::Relaxed) - before;
    assert_eq!(pages, 2, "16384 documents, then the rest");
    assert!(answered > 8_000_000, "{answered}");
    // The response buffer, plus the page's list of entries (a few dozen bytes per document)
    // and per-request odds and ends: about 1.2 times the answer. Growing a buffer by doubling
    // and copying it into the response took over 6 times.
    let ratio = allocated as f64 / answered as f64;
    assert!(
        ratio < 1.5,
        "the server allocated {allocated} bytes for {answered} bytes of pages ({ratio:.2}x)"
    );
}
