//! Giving freed heap back to the kernel.
//!
//! glibc's allocator keeps the pages it has freed resident while live allocations sit above
//! them in the heap. A process that builds large structures once and then idles — the daemon
//! compiles the guards' pattern sets at start-up, allocating and freeing tens of MB in small
//! pieces — would stay at several times its live size. [`release_free_heap`] asks the
//! allocator to return every wholly free page (`malloc_trim(0)`).
//!
//! It frees nothing in use and may be called at any time from any thread. It walks the heap
//! (about a millisecond), so it is for moments such as "start-up finished", not per request.
//! It lives here because this is the one crate allowed to call into libc.

/// Returns free heap pages to the kernel; `true` if the allocator released any. Always `false`
/// where the allocator is not glibc's (which then has its own policy).
pub fn release_free_heap() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes no pointer and touches only the allocator's own free
        // lists, under the allocator's locks; glibc documents it MT-Safe (malloc_trim(3)).
        #[allow(unsafe_code)]
        unsafe {
            libc::malloc_trim(0) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rss_anon_kb() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find(|l| l.starts_with("RssAnon:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    }

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn freed_pages_below_a_live_block_are_returned() {
        // 64 MiB in 32 KiB blocks (below glibc's mmap threshold, so they come from the heap),
        // each written so its pages are resident; then all but the last are freed. The last
        // one pins the top of the heap, so glibc's own trimming cannot return the rest.
        let mut blocks: Vec<Vec<u8>> = (0..2048).map(|_| vec![1u8; 32 * 1024]).collect();
        let keep = blocks.pop().unwrap();
        drop(blocks);
        let before = rss_anon_kb();
        assert!(release_free_heap());
        let after = rss_anon_kb();
        assert!(
            before.saturating_sub(after) > 32 * 1024,
            "RssAnon {before} kB -> {after} kB"
        );
        assert_eq!(keep.iter().map(|&b| u64::from(b)).sum::<u64>(), 32 * 1024);
    }
}
