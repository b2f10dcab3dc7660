//! The one memory-mapping helper every format uses.

use std::fs::File;
use std::path::{Path, PathBuf};

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

/// A read-only memory-mapped file.
#[derive(Debug)]
pub struct MappedFile {
    path: PathBuf,
    /// Turns faults past a shrunken file's end into zero reads, recorded ([`crate::guard`]).
    /// Declared before `map`: unregistered before the map is unmapped.
    _guard: crate::guard::Registration,
    map: Mmap,
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
        Ok(MappedFile {
            path: path.to_owned(),
            _guard: crate::guard::register(map.as_ptr(), map.len(), path),
            map,
        })
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
    /// the whole pages inside it are unmapped from this process (`MADV_DONTNEED`) and stop
    /// counting towards its resident memory. They stay in the page cache, and a later read
    /// of them simply faults them back in with the same contents, so this is only ever a
    /// memory hint, whatever else reads the pages meanwhile. A part outside the map, a
    /// failed call, or a non-Unix system changes nothing.
    pub fn release(&self, part: &[u8]) {
        if let Some(start) = self.offset_of(part) {
            release_pages(&self.map, start, start + part.len());
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
