//! The one memory-mapping helper every format uses.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use memmap2::Mmap;

use crate::{Error, Result};

/// Page size assumed when releasing pages. A larger real page size only makes
/// [`MappedFile::release`] round to fewer whole pages (the kernel rejects unaligned ranges,
/// which is then ignored); 4 KiB is the base page on x86-64 and most ARM64 Linux.
const PAGE: usize = 4096;

#[cfg(unix)]
fn release_pages(map: &Mmap, start: usize, end: usize) {
    let first = start.div_ceil(PAGE) * PAGE;
    let last = end / PAGE * PAGE;
    if last > first {
        // SAFETY: `MADV_DONTNEED` on a read-only private file mapping that this process never
        // writes discards no data: the pages are re-read from the file on the next access,
        // so every `&[u8]` into the map keeps seeing the file's bytes (the same caveat as
        // mapping at all: another process rewriting the file). The range lies within the map.
        let _ = unsafe {
            map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, first, last - first)
        };
    }
}

/// The file at `path` opened again with `O_DIRECT`, if it is still the file `id` identifies
/// (device and inode when it was mapped: a file replaced since is not read, and the audit's
/// change check names it); `None` where that fails (not Linux, a file system that refuses
/// `O_DIRECT`, another file at the path now).
fn open_direct(path: &Path, id: Option<(u64, u64)>) -> Option<File> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .ok()?;
        let m = file.metadata().ok()?;
        (Some((m.dev(), m.ino())) == id).then_some(file)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (path, id);
        None
    }
}

/// The device and inode of `file`, where the system has them.
fn file_id(file: &File) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        file.metadata().ok().map(|m| (m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        None
    }
}

/// `pread` of `file` at `offset` into `buf`.
fn read_at(file: &File, buf: &mut [u8], offset: usize) -> std::io::Result<usize> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.read_at(buf, offset as u64)
    }
    #[cfg(not(unix))]
    {
        let _ = (file, buf, offset);
        Err(std::io::ErrorKind::Unsupported.into())
    }
}

/// Whether Linux's `mincore` reports the page cache for `file` to this process: for files it
/// owns or may write (else only its own mappings' pages), root included.
fn mincore_sees_cache(file: &File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::MetadataExt;
        // SAFETY: `geteuid` has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        if euid == 0 || file.metadata().is_ok_and(|m| m.uid() == euid) {
            return true;
        }
        let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
            return false;
        };
        // SAFETY: `c` is a NUL-terminated path that lives across the call.
        unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
    }
    #[cfg(not(unix))]
    {
        let _ = (file, path);
        false
    }
}

/// The unit [`MappedFile::release`] hands pages back in: 2 MiB of address space, aligned — the
/// size of a huge page (a PMD) on x86-64 and 4 KiB-page ARM64. Linux maps a page-cached file
/// held in large folios with whole huge pages; handing back part of one first splits it, and
/// every split flushes the TLB of every CPU running the process (an inter-processor interrupt,
/// a VM exit under virtualisation): 10–15 % of a pass's time on such files (BENCHMARKS.md,
/// "Huge pages handed back whole"). Released in whole blocks, the huge mappings are dropped
/// whole.
const BLOCK: usize = 1 << 21;

/// Blocks a file may hold partly handed back, waiting for the rest of their bytes (the
/// neighbouring tensor another thread is still reading, or one never read): beyond this the
/// least recently released is handed back in pages, as if blocks were not tracked. Bounds
/// what the tracking keeps resident to 32 MiB per file (plus [`FLUSH`]), and a release in the
/// file's last block hands back all of it.
const PENDING: usize = 16;

/// Whole blocks gathered before they are handed back, in bytes (per file; all of them once a
/// release reaches the file's last block): each hand-back flushes the TLB of every CPU
/// running the process (an inter-processor interrupt, about 30 µs under virtualisation), so a
/// pass that handed back every 4 MiB window spent 7 % of its time there; runs read front to
/// back merge into one range per thread.
const FLUSH: usize = 16 << 20;

/// Bytes of a block that may stay unreleased when it is handed back whole: what lies between
/// tensors and no tensor read releases (GGUF's alignment padding, a zip's local headers), or
/// a small tensor another thread is still reading (which then faults its page in again).
const SLACK: usize = 16 << 10;

/// Which bytes of a map callers are done with, per [`BLOCK`]: turns each release into the
/// byte ranges to hand back now — whole blocks, with the blocks at its edges only once all of
/// them but [`SLACK`] bytes is released (by this call and earlier ones) — so a pass that
/// releases tensor after tensor never splits a huge page, while every byte released is still
/// handed back eventually (at the latest when more than [`PENDING`] blocks wait, in pages).
#[derive(Debug, Default, PartialEq)]
struct Released {
    /// Blocks partly released, least recently released first: the block's index and its
    /// released byte intervals (map offsets, sorted, disjoint, not touching).
    pending: Vec<(usize, Vec<(usize, usize)>)>,
    /// Whole blocks done with but not yet handed back (sorted, disjoint, not touching):
    /// handed back together once they hold [`FLUSH`] bytes.
    ready: Vec<(usize, usize)>,
}

impl Released {
    /// Records bytes `start .. end` of a map of `len` bytes whose first byte lies at address
    /// `base` as released, and returns the byte ranges to hand back now, in order: a run of
    /// whole blocks (cut at the map's ends), then the released intervals of any block evicted
    /// from the pending list (to be handed back in whole pages).
    fn release(
        &mut self,
        base: usize,
        len: usize,
        start: usize,
        end: usize,
    ) -> Vec<(usize, usize)> {
        let end = end.min(len);
        if start >= end {
            return Vec::new();
        }
        // The block holding byte `at`, and a block's bytes, as map offsets.
        let block_of = |at: usize| (base + at) / BLOCK;
        let bytes_of = |b: usize| {
            let lo = (b * BLOCK).saturating_sub(base);
            (lo, ((b + 1) * BLOCK - base).min(len))
        };
        let (first, last) = (block_of(start), block_of(end - 1));
        // Blocks strictly between `first` and `last` lie wholly inside `start .. end`; an edge
        // block is done once this call and earlier ones released all of it but `SLACK` bytes.
        let mut done = |b: usize| -> bool {
            let (lo, hi) = bytes_of(b);
            let (s, e) = (start.max(lo), end.min(hi));
            if (s, e) == (lo, hi) {
                return true;
            }
            // Most recently released last.
            let mut entry = match self.pending.iter().position(|(p, _)| *p == b) {
                Some(i) => self.pending.remove(i),
                None => (b, Vec::new()),
            };
            merge(&mut entry.1, s, e);
            self.pending.push(entry);
            let intervals = &self.pending[self.pending.len() - 1].1;
            let covered: usize = intervals.iter().map(|(a, b)| b - a).sum();
            hi - lo - covered < SLACK
        };
        let from = if done(first) { first } else { first + 1 };
        let to = if last == first || done(last) {
            last + 1
        } else {
            last
        };
        let mut out = Vec::new();
        if from < to {
            // Blocks handed back whole wait no more, whatever was pending of them.
            self.pending.retain(|(p, _)| !(from..to).contains(p));
            merge(&mut self.ready, bytes_of(from).0, bytes_of(to - 1).1);
        }
        // A release in the map's last block: a pass reading the file front to back is at its
        // end (one shard of a sharded model, say, before the next), so nothing is kept back
        // for later — else every shard read would leave its last blocks mapped.
        let at_end = last == block_of(len - 1);
        let ready: usize = self.ready.iter().map(|(a, b)| b - a).sum();
        if ready >= FLUSH || (at_end && ready > 0) {
            out.append(&mut self.ready);
        }
        if at_end {
            out.extend(self.pending.drain(..).flat_map(|(_, intervals)| intervals));
        }
        while self.pending.len() > PENDING {
            // The block released least recently goes first: one whose other bytes were never
            // read, or a block already handed back with `SLACK` bytes unreleased (the small
            // tensor read after it), rather than one a thread is reading now.
            let (_, intervals) = self.pending.remove(0);
            out.extend(intervals);
        }
        out
    }
}

/// Adds `s .. e` to sorted, disjoint, non-touching intervals, merging what it overlaps or
/// touches.
fn merge(intervals: &mut Vec<(usize, usize)>, s: usize, e: usize) {
    let (mut s, mut e) = (s, e);
    intervals.retain(|&(a, b)| {
        if b < s || a > e {
            return true;
        }
        (s, e) = (s.min(a), e.max(b));
        false
    });
    let at = intervals.partition_point(|&(a, _)| a < s);
    intervals.insert(at, (s, e));
}

/// How far past the start of the piece it decodes a streaming loop asks for a cache line
/// ([`prefetch_ahead`]), in bytes.
const AHEAD: usize = 2048;

/// Asks the CPU to start loading the cache line 2 KiB past the start of `piece`,
/// for a loop that streams through a mapped file front to back and calls this once per
/// piece it decodes (a software prefetch: no architectural effect, never a fault, dropped
/// for an address that is not mapped; nothing on other architectures). The hardware
/// prefetcher stops at every 4 KiB page boundary, so a loop streaming two runs from a map
/// otherwise waits on a miss at the start of each page of each side: measured on the BF16
/// benchmark pair, 0.20 → 0.17 s (BENCHMARKS.md, "Software prefetch").
#[inline(always)]
pub fn prefetch_ahead<T>(piece: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let p = piece.as_ptr().cast::<i8>().wrapping_add(AHEAD);
        // SAFETY: a prefetch reads nothing architecturally and cannot fault, whatever the
        // address; SSE is part of the x86-64 baseline.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = piece;
}

#[cfg(not(unix))]
fn release_pages(_map: &Mmap, _start: usize, _end: usize) {}

/// Bytes of every [`MappedFile`] open in this process.
static MAPPED: AtomicU64 = AtomicU64::new(0);

/// Bytes of every [`MappedFile`] open in this process now (both models of an audit, every
/// shard): what [`crate::DirectReads::Auto`] weighs against the memory available.
pub(crate) fn mapped_bytes() -> u64 {
    MAPPED.load(Ordering::Relaxed)
}

/// Direct reads ([`MappedFile::read_direct`]) that succeeded in this process.
static DIRECT_READS: AtomicU64 = AtomicU64::new(0);

/// How many direct reads have succeeded in this process (tests check that a pass really
/// read directly).
#[cfg(test)]
pub(crate) fn direct_reads() -> u64 {
    DIRECT_READS.load(Ordering::Relaxed)
}

/// A read-only memory-mapped file.
#[derive(Debug)]
pub struct MappedFile {
    path: PathBuf,
    /// Turns faults past a shrunken file's end into zero reads, recorded ([`crate::guard`]).
    /// Declared before `map`: unregistered before the map is unmapped.
    _guard: crate::guard::Registration,
    map: Mmap,
    /// What [`Self::release`] was told, per huge-page block.
    released: std::sync::Mutex<Released>,
    /// Device and inode of the file the map was made from.
    id: Option<(u64, u64)>,
    /// The same file opened again for reads that bypass the page cache, once asked for;
    /// `None` where that cannot be done ([`crate::DirectReads`]). Only files read directly
    /// hold a descriptor.
    direct: OnceLock<Option<File>>,
    /// Whether `mincore` reports the page cache for this file, not only this process's own
    /// mappings: Linux does so for files the process owns or may write.
    mincore_sees_cache: bool,
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        MAPPED.fetch_sub(self.map.len() as u64, Ordering::Relaxed);
    }
}

impl MappedFile {
    /// Maps `path` read-only.
    pub fn open(path: &Path) -> Result<MappedFile> {
        let io = |action, source| Error::Io {
            path: path.to_owned(),
            action,
            source,
        };
        let file = File::open(path).map_err(|e| io("open", e))?;
        // SAFETY: the mapping is read-only and private to this process. If another process
        // truncates or rewrites the file while it is mapped, reads may see changed bytes or
        // fault (SIGBUS); that is the accepted caveat of every mmap-based model loader
        // (safetensors, candle, llama.cpp). Contents are still treated as untrusted bytes.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| io("map into memory", e))?;
        #[cfg(unix)]
        {
            // Audits read each tensor front to back; ask the kernel for aggressive read-ahead.
            // A failed hint changes nothing but speed, so its error is deliberately ignored.
            let _ = map.advise(memmap2::Advice::Sequential);
        }
        MAPPED.fetch_add(map.len() as u64, Ordering::Relaxed);
        Ok(MappedFile {
            path: path.to_owned(),
            _guard: crate::guard::register(map.as_ptr(), map.len(), path),
            map,
            released: std::sync::Mutex::default(),
            mincore_sees_cache: mincore_sees_cache(&file, path),
            id: file_id(&file),
            direct: OnceLock::new(),
        })
    }

    /// Whether [`Self::read_direct`] can read this file (it opens the file for that the first
    /// time it is asked).
    pub(crate) fn can_read_direct(&self) -> bool {
        self.direct
            .get_or_init(|| open_direct(&self.path, self.id))
            .is_some()
    }

    /// Bytes `start .. start + len` of the file read with `O_DIRECT` (not through the page
    /// cache) into `buf`, or `None` when they cannot be: past the map's end, a file system
    /// that refuses `O_DIRECT`, a read error, or a file now shorter than its map. The read
    /// covers the range rounded out to [`crate::direct::ALIGN`]; `len` is the caller's bound
    /// on the buffer.
    pub(crate) fn read_direct<'b>(
        &self,
        start: usize,
        len: usize,
        buf: &'b mut crate::direct::AlignedBuf,
    ) -> Option<&'b [u8]> {
        use crate::direct::ALIGN;
        let end = start.checked_add(len)?;
        if end > self.map.len() {
            return None;
        }
        let file = self
            .direct
            .get_or_init(|| open_direct(&self.path, self.id))
            .as_ref()?;
        let first = start / ALIGN * ALIGN;
        let last = end.checked_next_multiple_of(ALIGN)?;
        let dst = buf.get(last - first)?;
        let need = end - first;
        let mut done = 0;
        while done < need {
            // Each read but one at the file's end returns whole blocks, so `done` stays
            // aligned; a short one elsewhere makes the next fail (EINVAL): `None`.
            match read_at(file, &mut dst[done..], first + done) {
                Ok(0) => return None,
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
        DIRECT_READS.fetch_add(1, Ordering::Relaxed);
        dst.get(start - first..need)
    }

    /// The fraction of `part`'s pages (a slice of [`Self::bytes`]) in the page cache, when
    /// `mincore` reports it for this file; `None` otherwise (another's read-only file, a
    /// part outside the map, a failed call, a non-Unix system).
    pub(crate) fn cached_fraction(&self, part: &[u8]) -> Option<f64> {
        if !self.mincore_sees_cache {
            return None;
        }
        let start = self.offset_of(part)?;
        #[cfg(unix)]
        {
            let (first, end) = (start / PAGE * PAGE, start + part.len());
            let pages = (end - first).div_ceil(PAGE);
            if pages == 0 {
                return None;
            }
            // In runs of at most 64 Ki pages: the status vector stays at 64 KiB.
            const RUN: usize = 1 << 16;
            let mut status = vec![0u8; pages.min(RUN)];
            let mut cached = 0usize;
            for r in (0..pages).step_by(RUN) {
                let n = RUN.min(pages - r);
                let at = first + r * PAGE;
                let bytes = (n * PAGE).min(self.map.len() - at);
                // SAFETY: `at` is a page-aligned offset inside the map (the map is
                // page-aligned) and `at + bytes` lies within it; `status` holds at least the
                // `n ≥ ⌈bytes / PAGE⌉` bytes `mincore` writes.
                let rc = unsafe {
                    libc::mincore(
                        self.map.as_ptr().add(at) as *mut libc::c_void,
                        bytes,
                        status.as_mut_ptr(),
                    )
                };
                if rc != 0 {
                    return None;
                }
                cached += status[..n].iter().filter(|&&s| s & 1 == 1).count();
            }
            Some(cached as f64 / pages as f64)
        }
        #[cfg(not(unix))]
        {
            let _ = start;
            None
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// Tells the kernel this process is done with `part` (a slice of [`Self::bytes`]) for now:
    /// its pages are unmapped from this process (`MADV_DONTNEED`) and stop counting towards
    /// its resident memory. They stay in the page cache, and a later read of them simply
    /// faults them back in with the same contents, so this is only ever a memory hint,
    /// whatever else reads the pages meanwhile. Pages go back in whole, aligned 2 MiB blocks
    /// (a huge page: handing back part of one splits it, and every split interrupts every
    /// CPU running the process), 16 MiB of them at a time: a block whose other bytes are not
    /// yet released (a neighbouring tensor) waits for them, at most 16 blocks per file (then
    /// the least recently released goes back in pages). A part outside the map, a failed
    /// call, or a non-Unix system changes nothing.
    pub fn release(&self, part: &[u8]) {
        let Some(start) = self.offset_of(part) else {
            return;
        };
        let ranges = {
            let mut released = self.released.lock().unwrap_or_else(|e| e.into_inner());
            released.release(
                self.map.as_ptr() as usize,
                self.map.len(),
                start,
                start + part.len(),
            )
        };
        for (s, e) in ranges {
            release_pages(&self.map, s, e);
        }
    }

    /// Tells the kernel `part` (a slice of [`Self::bytes`]) will be read soon
    /// (`MADV_WILLNEED`): it starts reading those pages into the page cache in the
    /// background, so a pass that asks a window ahead overlaps disk reads with decoding
    /// instead of waiting on each page fault (a cold file read through faults alone arrives
    /// a read-ahead window at a time). A hint only: a part outside the map, a failed call or
    /// a non-Unix system changes nothing.
    pub fn will_need(&self, part: &[u8]) {
        if let Some(start) = self.offset_of(part) {
            self.will_need_at(start, part.len());
        }
    }

    /// [`Self::will_need`] for the file's bytes `start .. start + len`, cut at the end of the
    /// file: a pass reading a tensor near its end asks for the bytes after it (in a file
    /// written tensor after tensor, the next tensor it will read), so a cold read does not
    /// stall at every tensor's first page.
    pub fn will_need_at(&self, start: usize, len: usize) {
        #[cfg(unix)]
        {
            let end = start.saturating_add(len).min(self.map.len());
            let first = start / PAGE * PAGE;
            // Already in the page cache (its first and last pages, the usual case for a
            // warm file): asking anyway costs a page-cache lookup per page
            // (`force_page_cache_ra`), 3–6 % of a warm pass's time.
            if end > first && !(self.resident(first) && self.resident(end - 1)) {
                let _ = self
                    .map
                    .advise_range(memmap2::Advice::WillNeed, first, end - first);
            }
        }
        #[cfg(not(unix))]
        let _ = (start, len);
    }

    /// Asks the kernel for no read-ahead on `part` (a slice of [`Self::bytes`]; `MADV_RANDOM`)
    /// instead of the long sequential read-ahead the whole map asks for: for a tensor a pass
    /// reads with `O_DIRECT`, whose map then only serves a few small reads (a table check's
    /// blocks), each of which would otherwise pull in the device's whole read-ahead window
    /// (8 MiB on the benchmark machine's disk). A hint only.
    pub(crate) fn no_read_ahead(&self, part: &[u8]) {
        #[cfg(unix)]
        if let Some(start) = self.offset_of(part) {
            let first = start / PAGE * PAGE;
            let end = start + part.len();
            if end > first {
                let _ = self
                    .map
                    .advise_range(memmap2::Advice::Random, first, end - first);
            }
        }
        #[cfg(not(unix))]
        let _ = part;
    }

    /// Whether the page holding byte `at` is in the page cache (`mincore`). `false` when it
    /// cannot tell: Linux reports only this process's own mappings of a file it may not
    /// write, and other systems are not asked. A hint for [`Self::will_need_at`] only.
    #[cfg(unix)]
    fn resident(&self, at: usize) -> bool {
        if at >= self.map.len() {
            return false;
        }
        let page = at / PAGE * PAGE;
        let mut vec = 0u8;
        // SAFETY: `page` is a page-aligned offset inside the map (the map itself is
        // page-aligned), one page is asked for, and `vec` holds the one status byte
        // `mincore` writes for it.
        let rc = unsafe {
            libc::mincore(
                self.map.as_ptr().add(page) as *mut libc::c_void,
                1,
                &mut vec,
            )
        };
        rc == 0 && vec & 1 == 1
    }

    /// Where `part` starts in the file, if it is a slice of [`Self::bytes`].
    pub fn offset_of(&self, part: &[u8]) -> Option<usize> {
        let base = self.map.as_ptr() as usize;
        let start = (part.as_ptr() as usize).wrapping_sub(base);
        let end = start.checked_add(part.len())?;
        (end <= self.map.len()).then_some(start)
    }

    /// The file's length in bytes.
    pub fn len(&self) -> u64 {
        self.map.len() as u64
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::{Released, BLOCK, FLUSH, PENDING, SLACK};

    impl Released {
        /// [`Released::release`] with whatever whole blocks are ready handed back at once
        /// (as if [`FLUSH`] were 0).
        fn now(&mut self, base: usize, len: usize, s: usize, e: usize) -> Vec<(usize, usize)> {
            let mut out = self.release(base, len, s, e);
            out.append(&mut self.ready);
            out
        }
    }

    /// Every byte handed back, as sorted disjoint intervals.
    fn union(ranges: &[(usize, usize)]) -> Vec<(usize, usize)> {
        let mut all = Vec::new();
        for &(s, e) in ranges {
            super::merge(&mut all, s, e);
        }
        all
    }

    #[test]
    fn tensors_released_in_file_order_go_back_in_whole_blocks() {
        // A 2 MiB-aligned map of 10.5 blocks cut into tensors of awkward sizes.
        let base = 64 * BLOCK;
        let len = 10 * BLOCK + BLOCK / 2;
        let cuts = [
            0,
            3000,
            BLOCK + 77,
            3 * BLOCK,
            3 * BLOCK + 2048,
            7 * BLOCK - 5,
            len,
        ];
        let mut r = Released::default();
        let mut out = Vec::new();
        for w in cuts.windows(2) {
            let got = r.now(base, len, w[0], w[1]);
            for &(s, e) in &got {
                // Whole blocks only: every range starts and ends on a block boundary or the
                // map's end — but for the remnant of block 6, handed back with its last 5
                // bytes unreleased, and released by the last tensor (the map's last block
                // hands back everything kept).
                if (s, e) == (7 * BLOCK - 5, 7 * BLOCK) {
                    continue;
                }
                assert_eq!((base + s) % BLOCK, 0, "{got:?}");
                assert!((base + e).is_multiple_of(BLOCK) || e == len, "{got:?}");
            }
            out.extend(got);
        }
        assert_eq!(union(&out), vec![(0, len)]);
        assert_eq!(r, Released::default());
    }

    #[test]
    fn a_block_waits_for_its_other_bytes_then_goes_back_whole() {
        let base = 3 * BLOCK;
        let len = 5 * BLOCK;
        let mut r = Released::default();
        // The second half of block 0 and the first of block 1: nothing whole yet.
        assert_eq!(r.now(base, len, BLOCK / 2, BLOCK + BLOCK / 2), vec![]);
        assert_eq!(r.pending.len(), 2);
        // The rest of block 1 and all of block 2.
        assert_eq!(
            r.now(base, len, BLOCK + BLOCK / 2, 3 * BLOCK),
            vec![(BLOCK, 3 * BLOCK)]
        );
        // Block 0's first half, leaving less than `SLACK` unreleased (padding nobody reads).
        assert_eq!(
            r.now(base, len, 0, BLOCK / 2 - (SLACK - 1)),
            vec![(0, BLOCK)]
        );
        assert!(r.pending.is_empty());
        // A gap of `SLACK` bytes keeps a block waiting.
        assert_eq!(r.now(base, len, 3 * BLOCK, 4 * BLOCK - SLACK), vec![]);
        assert_eq!(r.pending.len(), 1);
        // Released again whole (another read of it): nothing waits any more.
        assert_eq!(r.now(base, len, 0, len), vec![(0, len)]);
        assert!(r.pending.is_empty());
    }

    #[test]
    fn a_map_not_aligned_to_blocks_counts_its_partial_blocks() {
        // The map starts 4 KiB before a block boundary and ends 8 KiB after one.
        let base = 5 * BLOCK - 4096;
        let len = 4096 + 2 * BLOCK + 8192;
        let mut r = Released::default();
        let out = r.now(base, len, 0, len);
        assert_eq!(out, vec![(0, len)]);
        let mut r = Released::default();
        assert_eq!(r.now(base, len, 0, 4096), vec![(0, 4096)]);
        assert_eq!(
            r.now(base, len, 4096, 4096 + BLOCK),
            vec![(4096, 4096 + BLOCK)]
        );
        // Past the map's end is cut at it.
        assert_eq!(
            r.now(base, len, 4096 + BLOCK, usize::MAX),
            vec![(4096 + BLOCK, len)]
        );
        assert!(r.pending.is_empty());
        assert_eq!(r.now(base, len, len, len + 5), vec![]);
    }

    #[test]
    fn more_than_pending_waiting_blocks_hand_the_least_recently_released_back() {
        let base = 0;
        let len = 4 * PENDING * BLOCK;
        let mut r = Released::default();
        // A piece of each of PENDING blocks (the even ones), then block 0 again.
        for b in 0..PENDING {
            let at = 2 * b * BLOCK;
            assert_eq!(r.release(base, len, at + 100, at + 900_000), vec![]);
        }
        assert_eq!(r.release(base, len, 950_000, 960_000), vec![]);
        // One too many wait: the block released least recently (block 2) goes back now,
        // in pages by the caller, as far as released.
        let out = r.release(base, len, 3 * BLOCK, 3 * BLOCK + 900_000);
        assert_eq!(out, vec![(2 * BLOCK + 100, 2 * BLOCK + 900_000)]);
        let out = r.release(base, len, 5 * BLOCK, 5 * BLOCK + 900_000);
        assert_eq!(out, vec![(4 * BLOCK + 100, 4 * BLOCK + 900_000)]);
        assert_eq!(r.pending.len(), PENDING);
        assert!(r.pending.iter().any(|(b, _)| *b == 0));
    }

    #[test]
    fn whole_blocks_go_back_together_once_enough_are_ready() {
        let (base, len) = (0, 64 * BLOCK);
        let mut r = Released::default();
        let window = 2 * BLOCK;
        let mut at = 0;
        // Windows read front to back: nothing handed back until `FLUSH` bytes are ready,
        // then all of them in one range.
        while at + window < FLUSH {
            assert_eq!(r.release(base, len, at, at + window), vec![]);
            at += window;
        }
        assert_eq!(
            r.release(base, len, at, at + window),
            vec![(0, at + window)]
        );
        assert!(r.ready.is_empty());
        // Two threads' runs apart in the file: two ranges.
        let half = 32 * BLOCK;
        let mut got = Vec::new();
        for k in 0..FLUSH / window / 2 {
            got.extend(r.release(base, len, half + k * window, half + (k + 1) * window));
            got.extend(r.release(base, len, FLUSH + k * window, FLUSH + (k + 1) * window));
        }
        assert_eq!(
            got,
            vec![(FLUSH, FLUSH + FLUSH / 2), (half, half + FLUSH / 2)]
        );
    }

    #[test]
    fn a_release_in_the_last_block_hands_back_everything_kept() {
        let (base, len) = (0, 8 * BLOCK + 100);
        let mut r = Released::default();
        // A block ready, and one partly released (waiting).
        assert_eq!(r.release(base, len, 0, BLOCK), vec![]);
        assert_eq!(r.release(base, len, 3 * BLOCK, 3 * BLOCK + 50_000), vec![]);
        assert_eq!((r.ready.len(), r.pending.len()), (1, 1));
        // The file's last piece (a shard's last tensor): both go back now, with the last
        // blocks (block 7 lacks only 10 bytes: it goes back whole).
        let out = r.release(base, len, 7 * BLOCK + 10, len);
        assert_eq!(
            out,
            vec![
                (0, BLOCK),
                (7 * BLOCK, len),
                (3 * BLOCK, 3 * BLOCK + 50_000)
            ]
        );
        assert_eq!(r, Released::default());
    }

    /// Direct reads give the file's bytes at any offset and length (rounded out to whole
    /// blocks and cut back), refuse a range past the map, and answer `None` — no panic, no
    /// fault — for bytes a file that shrank no longer has and for a file replaced at its path;
    /// `cached_fraction` sees what a read through the map brought in. Where the file system refuses `O_DIRECT`, every
    /// read is `None`.
    #[test]
    #[allow(clippy::unwrap_used)]
    fn direct_reads_match_the_map_and_survive_a_shrunken_file() {
        use super::{MappedFile, PAGE};
        use crate::direct::{AlignedBuf, ALIGN};
        let n = 5 * ALIGN + 123;
        let data: Vec<u8> = (0..n).map(|i| (i * 7 + i / 251) as u8).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, &data).unwrap();
        let map = MappedFile::open(&path).unwrap();
        let mut buf = AlignedBuf::new();
        if !map.can_read_direct() {
            assert_eq!(map.read_direct(0, 10, &mut buf), None);
            return; // this file system takes no O_DIRECT; the pass reads the map
        }
        for (start, len) in [
            (0, n),
            (1, 10),
            (ALIGN - 1, 2),
            (ALIGN, ALIGN),
            (3 * ALIGN + 5, 2 * ALIGN + 118),
            (n - 1, 1),
            (n, 0),
        ] {
            let got = map.read_direct(start, len, &mut buf);
            assert_eq!(got, Some(&data[start..start + len]), "{start} {len}");
        }
        assert_eq!(map.read_direct(n - 1, 2, &mut buf), None);
        assert_eq!(map.read_direct(usize::MAX, 2, &mut buf), None);
        // Read through the map: its pages are cached (this process owns the file).
        let sum: u64 = map.bytes().iter().map(|&b| u64::from(b)).sum();
        assert!(sum > 0);
        assert_eq!(map.cached_fraction(map.bytes()), Some(1.0));
        assert!(map.cached_fraction(&data).is_none()); // not a slice of the map
                                                       // The file shrinks under the map: what it still has reads, the rest is `None`.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len((2 * PAGE) as u64)
            .unwrap();
        assert_eq!(map.read_direct(10, 100, &mut buf), Some(&data[10..110]));
        assert_eq!(map.read_direct(PAGE, 3 * PAGE, &mut buf), None);
        // Another file put at the path before the first direct read: not read at all.
        let other = dir.path().join("g");
        std::fs::write(&other, &data).unwrap();
        let map = MappedFile::open(&other).unwrap();
        let newer = dir.path().join("h");
        std::fs::write(&newer, vec![0u8; n]).unwrap();
        std::fs::rename(&newer, &other).unwrap();
        assert!(!map.can_read_direct());
        assert_eq!(map.read_direct(0, 10, &mut buf), None);
    }
}
