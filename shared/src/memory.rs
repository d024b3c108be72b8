//! The process's allocator setting, made once at start by every binary (the CLI and each Lambda function).
//!
//! glibc's malloc serves blocks over its mmap threshold (128 KiB at first) by mapping them, and returns them to
//! the system when freed; but each time such a block is freed it raises the threshold to that block's size (up
//! to 32 MiB), after which blocks of that size come from the heap, where freed memory mostly stays with the
//! process. The backup's 2 MiB frames and 6 MiB parts then ratchet the resident size up as the dump goes on:
//! measured on the benchmark's corpus, 61 MiB flat for most of a 1 GB backup, then steps to 67–77 MiB, and
//! 77 MiB at 4 GB. Setting the threshold explicitly turns that adjustment off: large blocks are mapped and
//! returned again, and the same 1 GB backup peaks at 55 MiB. The cost is a mapping per large buffer (a few a
//! second), nothing beside compressing it.

/// Keeps glibc's mmap threshold at its initial 128 KiB (does nothing with other allocators).
pub fn return_large_blocks_when_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's parameters; any value is valid for M_MMAP_THRESHOLD up to
    // HEAP_MAX, and it may be called at any time.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}
