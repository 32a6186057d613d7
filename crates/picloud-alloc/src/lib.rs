//! A global allocator that counts, per thread, the bytes allocated minus the bytes
//! freed, so the script engine can stop a run that holds too much memory.
//!
//! Size limits on single values cannot bound a run's memory (ten thousand variables of
//! one megabyte each are each within limits); counting allocations can. A script
//! thread runs one script at a time, so the difference of [`thread_allocated`] between
//! two points of a run is what that run allocated in between.
//!
//! The allocator underneath is mimalloc: the request path allocates and frees many
//! small blocks across threads, where glibc's malloc spent ~19% of the server's CPU
//! (consolidating fast bins on every block over 1 KiB); mimalloc cut a script route's
//! CPU per request by ~18%.
//!
//! This crate is the workspace's one use of `unsafe`: implementing [`GlobalAlloc`] is
//! unsafe by definition (and so is one call to tune the allocator). Every method
//! delegates to mimalloc unchanged and only adds to a thread-local counter that needs
//! no allocation and no destructor.

use std::alloc::{GlobalAlloc, Layout};

use mimalloc::MiMalloc as Inner;
use std::cell::Cell;

thread_local! {
    static NET: Cell<isize> = const { Cell::new(0) };
}

fn add(delta: isize) {
    // `try_with`: the slot may be gone while a thread is being torn down.
    let _ = NET.try_with(|n| n.set(n.get().wrapping_add(delta)));
}

fn signed(n: usize) -> isize {
    isize::try_from(n).unwrap_or(isize::MAX)
}

/// Bytes this thread allocated minus bytes it freed, since it started. Meaningful only
/// as a difference, and only when [`CountingAllocator`] is the global allocator
/// (otherwise it stays 0).
pub fn thread_allocated() -> isize {
    NET.try_with(Cell::get).unwrap_or(0)
}

/// Counts `bytes` as allocated by this thread, for memory another thread allocated
/// that this one now owns (and will free here): a buffer filled by the I/O threads and
/// handed to a script, say. Its free is counted here either way; without the charge it
/// would lower this thread's count below what the thread holds.
pub fn charge(bytes: usize) {
    add(signed(bytes));
}

/// Makes the allocator hand freed memory back to the system at once.
///
/// mimalloc keeps freed pages for a second before purging them; right for a busy
/// server, wrong for an idle one: an argon2 password check (19 MiB, on a blocking
/// thread that then sleeps) would stay resident. (It is also built without
/// transparent huge pages, `no_thp`, which cost ~15 MiB of RSS at start-up: each
/// touched page of its arenas became 2 MiB.) Idle RSS stays at ~23 MiB, and the
/// request path, which reuses small blocks from thread-local pages, does not notice.
/// Call once, first thing in `main`.
pub fn return_freed_memory_promptly() {
    // `mi_option_purge_delay` in mimalloc.h's `mi_option_e` (v2 and v3 alike).
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: `mi_option_set` stores a tuning value that later frees read; it is safe
    // to call at any time from any thread.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 0) }
}

/// Install with `#[global_allocator] static A: CountingAllocator = CountingAllocator;`.
pub struct CountingAllocator;

// SAFETY: every method forwards its arguments to mimalloc unchanged, with the caller's
// guarantees, and returns its result unchanged; the bookkeeping touches only a
// thread-local `Cell` and never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is (see above).
        let ptr = unsafe { Inner.alloc(layout) };
        if !ptr.is_null() {
            add(signed(layout.size()));
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let ptr = unsafe { Inner.alloc_zeroed(layout) };
        if !ptr.is_null() {
            add(signed(layout.size()));
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { Inner.dealloc(ptr, layout) };
        add(-signed(layout.size()));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is.
        let new = unsafe { Inner.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            add(signed(new_size) - signed(layout.size()));
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[global_allocator]
    static A: CountingAllocator = CountingAllocator;

    #[test]
    fn counts_what_this_thread_holds() {
        let before = thread_allocated();
        let big = vec![0u8; 10 << 20];
        let during = thread_allocated();
        assert!(during - before >= 10 << 20);
        drop(big);
        assert!(thread_allocated() - before < 1 << 20);
        // Other threads do not count here.
        let here = thread_allocated();
        std::thread::spawn(|| vec![1u8; 8 << 20].len())
            .join()
            .expect("thread");
        assert!(thread_allocated() - here < 1 << 20);
    }
}
