//! Reads that bypass the page cache (`O_DIRECT`), for passes over files that are not in it
//! and would not stay there.
//!
//! A pass reads a cold file through its memory map: the kernel reads ahead into the page
//! cache, and every page is then touched for the first time by the pass. That first touch of
//! a freshly filled page-cache page is not free: on the virtual machines audits commonly run
//! on it costs about 3 µs of CPU per 4 KiB page (a second-level page fault the guest cannot
//! see, which shows as user or system time of whichever instruction touched it) — 22 s of
//! CPU for a 27 GB pair, more than the pass's own arithmetic, whether the pass or `cat`
//! touches the pages (BENCHMARKS.md, "Direct reads of cold files"). For a model pair larger
//! than the memory that could cache it, the page cache buys nothing either: the pages are
//! evicted before anything reads them again. So such a pass reads each window of each side
//! (a subsample: each of its chunks) with `O_DIRECT` into a buffer its thread reuses — the
//! disk writes straight into memory the CPU already knows — and decodes from there: the same
//! bytes, so the same results, bit for bit. The hashes' left-over units are read the same way.
//!
//! [`DirectReads::Auto`] decides per tensor and side: direct when the files mapped in this
//! process add up to more than half the memory available (`MemAvailable`, read once per
//! process), the tensor's pages are mostly not in the page cache (`mincore`, trusted only for
//! files this process owns or may write: Linux reports only this process's own mappings of
//! other files), and the file takes `O_DIRECT` (not every file system does: tmpfs refuses
//! it). Anywhere else, and for every window or chunk a direct read fails on (a file that
//! shrank, an I/O error), the pass reads the map as before.

use std::alloc::{self, Layout};
use std::ptr::NonNull;

/// Whether a pass (a full one, a subsample, the hashes' left-over units) may read a tensor's
/// bytes with `O_DIRECT` (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DirectReads {
    /// Direct where it pays: a cold tensor of files too large to stay cached.
    #[default]
    Auto,
    /// Direct wherever the file system allows it (tests, benchmarks).
    Always,
    /// Always through the memory map.
    Never,
}

/// Alignment of a direct read's file offset, length and buffer: the logical block size of
/// every common device (512 B or 4 KiB) divides it.
pub(crate) const ALIGN: usize = 4096;

/// A zeroed, [`ALIGN`]-aligned byte buffer that grows to the largest read asked of it and is
/// reused: memory the CPU has touched once, so the disk's writes into it cost no first-touch
/// faults.
pub(crate) struct AlignedBuf {
    ptr: NonNull<u8>,
    cap: usize,
}

// SAFETY: the buffer owns its allocation outright (no sharing, no interior mutability).
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    /// An empty buffer (allocates nothing).
    pub(crate) const fn new() -> AlignedBuf {
        AlignedBuf {
            ptr: NonNull::dangling(),
            cap: 0,
        }
    }

    /// The first `len` bytes, growing the buffer to at least `len` (rounded up to [`ALIGN`])
    /// when it is smaller; `None` when that allocation fails. Callers bound `len` (a pass asks
    /// for one window: at most a few MiB).
    pub(crate) fn get(&mut self, len: usize) -> Option<&mut [u8]> {
        if len > self.cap {
            let cap = len.checked_next_multiple_of(ALIGN)?;
            let layout = Layout::from_size_align(cap, ALIGN).ok()?;
            // SAFETY: `layout` has a non-zero size (`len > cap ≥ 0`, rounded up).
            let ptr = NonNull::new(unsafe { alloc::alloc_zeroed(layout) })?;
            self.free();
            (self.ptr, self.cap) = (ptr, cap);
        }
        // SAFETY: `ptr` points to `cap ≥ len` initialised (zeroed, then only ever written
        // with bytes) bytes this buffer owns, borrowed mutably through `self`.
        Some(unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), len) })
    }

    fn free(&mut self) {
        if self.cap > 0 {
            // SAFETY: allocated in `get` with exactly this layout (checked there).
            unsafe {
                alloc::dealloc(
                    self.ptr.as_ptr(),
                    Layout::from_size_align_unchecked(self.cap, ALIGN),
                );
            }
            (self.ptr, self.cap) = (NonNull::dangling(), 0);
        }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        self.free();
    }
}

thread_local! {
    /// This thread's buffers for direct reads, two (a pair's sides), kept for its next reads.
    static BUFFERS: std::cell::RefCell<[AlignedBuf; 2]> =
        const { std::cell::RefCell::new([AlignedBuf::new(), AlignedBuf::new()]) };
}

/// Runs `f` with this thread's two direct-read buffers, or with `None` when they are taken
/// already (a task nested in one that holds them: rayon may run another task on a thread that
/// waits), in which case the caller reads through the map.
pub(crate) fn with_buffers<R>(f: impl FnOnce(Option<&mut [AlignedBuf; 2]>) -> R) -> R {
    BUFFERS.with(|bufs| match bufs.try_borrow_mut() {
        Ok(mut bufs) => f(Some(&mut bufs)),
        Err(_) => f(None),
    })
}

/// The memory the kernel reports available (`MemAvailable` of `/proc/meminfo`), in bytes;
/// `None` where it cannot tell.
pub(crate) fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// Whether a pass should read `part` (a slice of `file`'s map) directly under `policy`.
pub(crate) fn wanted(file: &crate::MappedFile, part: &[u8], policy: DirectReads) -> bool {
    match policy {
        DirectReads::Never => false,
        DirectReads::Always => file.can_read_direct(),
        DirectReads::Auto => {
            // Read once per process (a file read per pass would cost more than the check).
            static AVAILABLE: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
            let too_big = AVAILABLE
                .get_or_init(mem_available)
                .is_some_and(|avail| crate::mmap::mapped_bytes() > avail / 2);
            too_big
                && file
                    .cached_fraction(part)
                    .is_some_and(|cached| cached < 0.5)
                && file.can_read_direct()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn aligned_buffers_grow_and_keep_their_alignment() {
        let mut b = AlignedBuf::new();
        assert_eq!(b.get(0).unwrap().len(), 0);
        let s = b.get(10).unwrap();
        assert_eq!((s.len(), s.as_ptr() as usize % ALIGN), (10, 0));
        assert!(s.iter().all(|&x| x == 0));
        s.fill(7);
        let s = b.get(ALIGN).unwrap();
        assert_eq!(s[..10], [7; 10]); // no regrowth within the capacity
        let s = b.get(3 * ALIGN + 1).unwrap();
        assert_eq!((s.len(), s.as_ptr() as usize % ALIGN), (3 * ALIGN + 1, 0));
        assert_eq!(b.cap, 4 * ALIGN);
    }

    #[test]
    fn available_memory_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(mem_available().is_some_and(|m| m > 0));
        }
    }
}
