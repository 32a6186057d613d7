//! A global allocator that counts, per thread, the bytes allocated minus the bytes
//! freed, so the script engine can stop a run that holds too much memory.
//!
//! Size limits on single values cannot bound a run's memory (ten thousand variables of
//! one megabyte each are each within limits); counting allocations can. A script
//! thread runs one script at a time, so the difference of [`thread_allocated`] between
//! two points of a run is what that run allocated in between.
//!
//! This crate is the workspace's one use of `unsafe`: implementing [`GlobalAlloc`] is
//! unsafe by definition (and so is one call to tune glibc's allocator). Every method delegates to [`System`] unchanged and only adds
//! to a thread-local counter that needs no allocation and no destructor.

use std::alloc::{GlobalAlloc, Layout, System};
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

/// Makes glibc hand blocks of 1 MiB and more straight back to the system when freed.
///
/// glibc serves such blocks with `mmap` but raises that threshold to the size of each
/// one freed (up to 32 MiB), after which the next ones come from per-thread arenas and
/// stay resident after being freed: every argon2 password check (19 MiB) on another
/// blocking thread left ~20 MiB behind, growing an idle server from 22 to 60 MiB.
/// Setting the threshold explicitly switches the adjustment off. Call once at start.
pub fn return_large_blocks_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets a tuning parameter of the allocator; it takes the
    // allocator's own lock and is safe to call at any time.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Install with `#[global_allocator] static A: CountingAllocator = CountingAllocator;`.
pub struct CountingAllocator;

// SAFETY: every method forwards its arguments to `System` unchanged, with the caller's
// guarantees, and returns its result unchanged; the bookkeeping touches only a
// thread-local `Cell` and never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is (see above).
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            add(signed(layout.size()));
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            add(signed(layout.size()));
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) };
        add(-signed(layout.size()));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
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
