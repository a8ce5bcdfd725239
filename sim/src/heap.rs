//! Heap accounting for the scale runs: how many bytes dropping something
//! gives back.
//!
//! [`CountingAllocator`] wraps the system allocator. The `chorus-sim`
//! binary installs it as the global allocator; it counts nothing until a
//! thread asks, and then only that thread's allocations and frees, only
//! while [`net_freed_by`] runs. Outside that window the cost is one
//! thread-local read per free. The simulator never reads it to decide
//! anything: what it measures is reported, never fed back into a run, so
//! runs stay deterministic.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

/// The system allocator, counting on request (see the module docs).
pub struct CountingAllocator;

/// Set by the first allocation through [`CountingAllocator`]: tells
/// [`net_freed_by`] whether counting is possible at all.
static INSTALLED: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Whether this thread is inside [`net_freed_by`].
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    /// Bytes freed minus bytes allocated by this thread while counting.
    static NET_FREED: Cell<i64> = const { Cell::new(0) };
}

fn count(delta: i64) {
    // `try_with`: a thread being torn down has no thread-locals left, and an
    // allocator must not panic.
    let _ = COUNTING.try_with(|counting| {
        if counting.get() {
            let _ = NET_FREED.try_with(|net| net.set(net.get() + delta));
        }
    });
}

// SAFETY: every method forwards to `System` with the same arguments, so
// `System`'s guarantees hold; the counting touches only `Cell`s of const
// thread-locals, which neither allocate nor unwind.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !INSTALLED.load(Ordering::Relaxed) {
            INSTALLED.store(true, Ordering::Relaxed);
        }
        count(-(layout.size() as i64));
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(-(layout.size() as i64));
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(layout.size() as i64);
        // SAFETY: `ptr` came from this allocator, i.e. from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(layout.size() as i64 - new_size as i64);
        // SAFETY: as for `dealloc`; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Runs `f` and returns the heap bytes it gave back (freed minus allocated,
/// on this thread), or `None` when [`CountingAllocator`] is not the global
/// allocator (library tests, embedders).
pub fn net_freed_by(f: impl FnOnce()) -> Option<i64> {
    if !INSTALLED.load(Ordering::Relaxed) {
        f();
        return None;
    }
    NET_FREED.with(|net| net.set(0));
    COUNTING.with(|counting| counting.set(true));
    f();
    COUNTING.with(|counting| counting.set(false));
    Some(NET_FREED.with(Cell::get))
}
