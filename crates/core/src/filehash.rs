//! BLAKE3 of a file, computed piecewise while the comparison reads it.
//!
//! A report records the BLAKE3 hash of every model file. Hashing in a separate pass reads
//! every byte twice; instead a [`FileHasher`] splits the file into fixed *units* (a power of
//! two of BLAKE3's 1 KiB chunks, aligned to the file start) and takes the chaining value of
//! each unit from whichever pass happens to read it whole ([`FileHasher::absorb`]). At the
//! end, [`FileHasher::finish`] hashes the units nobody read (the header, unpaired tensors,
//! pieces at the edges of what was read) and merges all chaining values along BLAKE3's tree,
//! giving exactly `blake3::hash` of the file — checked against it in the tests for sizes
//! around every boundary.
//!
//! Why this is a valid BLAKE3 tree: BLAKE3's tree over `n` chunks puts the largest power of
//! two smaller than `n` on the left, recursively. Units are a power of two chunks, so a split
//! at the largest power of two *units* smaller than the unit count is the same split, every
//! full unit is a complete subtree, and the last (possibly short) unit is the right-most
//! subtree of its parent ([`blake3::hazmat`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use blake3::hazmat::{
    merge_subtrees_non_root, merge_subtrees_root, ChainingValue, HasherExt, Mode,
};
use rayon::prelude::*;

use crate::{DirectReads, MappedFile, WindowObserver};

/// Smallest unit: 64 KiB (64 chunks, enough for BLAKE3's widest SIMD to run at full speed).
const MIN_UNIT: u64 = 64 << 10;

/// Most units per file: the unit doubles until the file fits (16 Ki units: at most 0.6 MB of
/// chaining values per file, so even a checkpoint of hundreds of shards keeps them under
/// 100 MB; 64 KiB units up to 1 GiB, 256 KiB up to 4 GiB, …). A larger unit only means more
/// of the bytes at the edges of the pass's windows are hashed again by [`FileHasher::finish`].
const MAX_UNITS: u64 = 16 << 10;

/// Bytes hashed between page releases in [`FileHasher::finish`].
const FINISH_WINDOW: usize = 16 << 20;

/// Collects the chaining values of one file's units (see the module docs).
#[derive(Debug)]
pub struct FileHasher {
    len: u64,
    unit: u64,
    cvs: Vec<OnceLock<ChainingValue>>,
}

impl FileHasher {
    /// A hasher for a file of `len` bytes.
    pub fn new(len: u64) -> FileHasher {
        let mut unit = MIN_UNIT;
        while len.div_ceil(unit) > MAX_UNITS {
            unit *= 2;
        }
        let units = len.div_ceil(unit).max(1);
        FileHasher {
            len,
            unit,
            cvs: (0..units).map(|_| OnceLock::new()).collect(),
        }
    }

    /// The file's length this hasher was made for.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Units hashed so far, and units in all.
    pub fn progress(&self) -> (usize, usize) {
        let done = self.cvs.iter().filter(|c| c.get().is_some()).count();
        (done, self.cvs.len())
    }

    /// Bytes of unit `u` (the last one may be short).
    fn unit_range(&self, u: usize) -> (u64, u64) {
        let start = u as u64 * self.unit;
        (start, self.len.min(start + self.unit))
    }

    /// The chaining value of unit `u`, whose bytes are `bytes`.
    fn unit_cv(&self, u: usize, bytes: &[u8]) -> ChainingValue {
        blake3::Hasher::new()
            .set_input_offset(u as u64 * self.unit)
            .update(bytes)
            .finalize_non_root()
    }

    /// Takes the chaining values of the units lying wholly inside `bytes`, which are the
    /// file's bytes from `offset` on (the rest is left for [`Self::finish`]). A unit already
    /// taken is not hashed again. A file of one unit is left to [`Self::finish`] (its hash is
    /// a root, not a chaining value).
    pub fn absorb(&self, offset: u64, bytes: &[u8]) {
        if self.cvs.len() < 2 {
            return;
        }
        let end = offset.saturating_add(bytes.len() as u64).min(self.len);
        let first = offset.div_ceil(self.unit) as usize;
        for u in first..self.cvs.len() {
            let (s, e) = self.unit_range(u);
            if e > end {
                break;
            }
            let Some(slot) = self.cvs.get(u) else { break };
            if slot.get().is_some() {
                continue;
            }
            let (lo, hi) = ((s - offset) as usize, (e - offset) as usize);
            if let Some(part) = bytes.get(lo..hi) {
                let _ = slot.set(self.unit_cv(u, part));
            }
        }
    }

    /// Hashes the units nobody absorbed from `map` (the same file; its length must match, else
    /// `None`), in parallel, handing pages back as it goes, and returns the file's BLAKE3 as
    /// 64 lowercase hex digits.
    pub fn finish(&self, map: &MappedFile) -> Option<String> {
        self.finish_with(map, DirectReads::Auto)
    }

    /// [`Self::finish`], reading the units nobody absorbed with `O_DIRECT` where `direct`
    /// says so for the file ([`DirectReads`]: a cold file too large to stay cached, whose
    /// scattered units read through the map would each pull in the kernel's read-ahead), else
    /// through the map. The same hash either way.
    pub fn finish_with(&self, map: &MappedFile, direct: DirectReads) -> Option<String> {
        let bytes = map.bytes();
        if bytes.len() as u64 != self.len {
            return None;
        }
        if self.cvs.len() < 2 {
            let mut h = blake3::Hasher::new();
            h.update(bytes);
            map.release(bytes);
            return Some(h.finalize().to_hex().to_string());
        }
        // Windows of whole units, each hashed by one thread and then released.
        let per_window = (FINISH_WINDOW as u64 / self.unit).max(1) as usize;
        let missing: Vec<usize> = (0..self.cvs.len())
            .filter(|&u| self.cvs[u].get().is_none())
            .collect();
        let direct = crate::direct::wanted(map, bytes, direct);
        missing.par_chunks(per_window).for_each(|units| {
            crate::direct::with_buffers(|bufs| {
                let mut buf = bufs.filter(|_| direct).map(|[buf, _]| buf);
                // Runs of consecutive units (all of them, for a file nobody read), each read
                // at once: directly where it can be, else (or after a failed read) from the
                // map.
                for run in units.chunk_by(|&x, &y| y == x + 1) {
                    let (Some(&u0), Some(&u1)) = (run.first(), run.last()) else {
                        continue;
                    };
                    let (s, e) = (self.unit_range(u0).0, self.unit_range(u1).1);
                    let Some(all) = bytes.get(s as usize..e as usize) else {
                        continue;
                    };
                    let read = buf
                        .as_deref_mut()
                        .and_then(|b| map.read_direct(s as usize, all.len(), b));
                    let from = read.unwrap_or(all);
                    for &u in run {
                        let (us, ue) = self.unit_range(u);
                        if let Some(part) = from.get((us - s) as usize..(ue - s) as usize) {
                            let _ = self.cvs[u].set(self.unit_cv(u, part));
                        }
                    }
                    map.release(all);
                }
            });
        });
        let cvs: Vec<ChainingValue> = self
            .cvs
            .iter()
            .map(|c| c.get().copied())
            .collect::<Option<_>>()?;
        let (left, right) = split(cvs.len());
        let root = merge_subtrees_root(&tree(&cvs[..left]), &tree(&cvs[left..right]), Mode::Hash);
        Some(root.to_hex().to_string())
    }
}

/// Where BLAKE3 splits `n ≥ 2` subtrees of equal power-of-two size: the largest power of two
/// smaller than `n` on the left. Returns `(left, n)`.
fn split(n: usize) -> (usize, usize) {
    let left = if n.is_power_of_two() {
        n / 2
    } else {
        1 << n.ilog2()
    };
    (left, n)
}

/// The non-root chaining value of the subtree made of `cvs` (at least one).
fn tree(cvs: &[ChainingValue]) -> ChainingValue {
    match cvs {
        [] => [0; 32], // not reached: callers split n ≥ 2 into two non-empty parts
        [one] => *one,
        _ => {
            let (left, n) = split(cvs.len());
            merge_subtrees_non_root(&tree(&cvs[..left]), &tree(&cvs[left..n]), Mode::Hash)
        }
    }
}

/// The [`FileHasher`]s of a run, by file path. A pass shows them the bytes it reads as their
/// [`WindowObserver`] ([`crate::Taps::observer`]).
#[derive(Debug, Default)]
pub struct FileHashers {
    by_path: BTreeMap<PathBuf, FileHasher>,
    /// Hashes known before the run read anything (a hash cache's hits), by file path.
    known: BTreeMap<PathBuf, String>,
}

impl FileHashers {
    /// No files.
    pub fn new() -> FileHashers {
        FileHashers::default()
    }

    /// Starts collecting for the file at `path`, `len` bytes long (again: no change).
    pub fn add(&mut self, path: &Path, len: u64) {
        self.by_path
            .entry(path.to_owned())
            .or_insert_with(|| FileHasher::new(len));
    }

    /// The hasher of the file at `path`.
    pub fn get(&self, path: &Path) -> Option<&FileHasher> {
        self.by_path.get(path)
    }

    /// Records that the file at `path` is known to hash to `blake3` (from a hash cache that
    /// checked it against the file's current `stat`), so that [`Self::same_bytes`] can
    /// answer for it without reading it.
    pub fn known(&mut self, path: &Path, blake3: &str) {
        self.known.insert(path.to_owned(), blake3.to_owned());
    }

    /// Whether the two mapped files are known to hold the same bytes: both hashes known
    /// ([`Self::known`]), equal, and the maps equally long. `false` whenever that is not
    /// known, whatever the files hold.
    pub fn same_bytes(&self, x: &MappedFile, y: &MappedFile) -> bool {
        match (self.known.get(x.path()), self.known.get(y.path())) {
            (Some(hx), Some(hy)) => !hx.is_empty() && hx == hy && x.len() == y.len(),
            _ => false,
        }
    }
}

impl WindowObserver for FileHashers {
    /// Hands `bytes`, `file`'s bytes at `at`, to the hasher of that file, if there is one
    /// (and it was made for a file of the map's length).
    fn window(&self, file: &MappedFile, at: usize, bytes: &[u8]) {
        let Some(h) = self.by_path.get(file.path()) else {
            return;
        };
        let inside = at
            .checked_add(bytes.len())
            .is_some_and(|e| e as u64 <= file.len());
        if inside && h.len == file.len() {
            h.absorb(at as u64, bytes);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn data(n: usize) -> Vec<u8> {
        let mut rng = crate::rng::Rng::new(0x9E37_79B9);
        (0..n).map(|_| (rng.next_u64() >> 56) as u8).collect()
    }

    fn mapped(bytes: &[u8]) -> (tempfile::TempDir, MappedFile) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, bytes).unwrap();
        let map = MappedFile::open(&path).unwrap();
        (dir, map)
    }

    /// Every size around the unit and chunk boundaries, with nothing absorbed, everything
    /// absorbed at once, and ragged pieces absorbed: always `blake3::hash`.
    #[test]
    fn matches_blake3_for_any_size_and_any_absorbed_pieces() {
        let u = MIN_UNIT as usize;
        let sizes = [
            0,
            1,
            1023,
            1024,
            1025,
            u - 1,
            u,
            u + 1,
            2 * u,
            2 * u + 1,
            3 * u - 5,
            3 * u,
            4 * u + 1024,
            5 * u + 17,
            8 * u,
            13 * u + 999,
        ];
        for n in sizes {
            let bytes = data(n);
            let want = blake3::hash(&bytes).to_hex().to_string();
            let (_dir, map) = mapped(&bytes);
            // Units left over read through the map, or with O_DIRECT in runs (the file
            // system permitting; the map otherwise): the same hash.
            for direct in [DirectReads::Never, DirectReads::Always] {
                let fresh = FileHasher::new(n as u64);
                assert_eq!(
                    fresh.finish_with(&map, direct).unwrap(),
                    want,
                    "size {n}, nothing absorbed, {direct:?}"
                );
                let all = FileHasher::new(n as u64);
                all.absorb(0, &bytes);
                let got = all.finish_with(&map, direct).unwrap();
                assert_eq!(got, want, "size {n}, all absorbed, {direct:?}");
                let ragged = FileHasher::new(n as u64);
                let mut at = 0;
                for step in [7, u + 3, 2 * u - 1, 100, 3 * u] {
                    let end = n.min(at + step);
                    ragged.absorb(at as u64, &bytes[at..end]);
                    at = end;
                }
                let got = ragged.finish_with(&map, direct).unwrap();
                assert_eq!(got, want, "size {n}, ragged, {direct:?}");
                // Every other unit absorbed: runs of one unit left.
                let gaps = FileHasher::new(n as u64);
                for s in (0..n).step_by(2 * u) {
                    gaps.absorb(s as u64, &bytes[s..n.min(s + u)]);
                }
                let got = gaps.finish_with(&map, direct).unwrap();
                assert_eq!(got, want, "size {n}, gaps, {direct:?}");
            }
        }
        // Where the file system takes O_DIRECT, the left-over units were read that way.
        let (_dir, map) = mapped(&data(5 * u));
        if map.can_read_direct() {
            let before = crate::mmap::direct_reads();
            FileHasher::new(5 * u as u64).finish_with(&map, DirectReads::Always);
            assert!(crate::mmap::direct_reads() > before);
        }
    }

    #[test]
    fn large_files_use_larger_units_and_a_wrong_map_is_refused() {
        let h = FileHasher::new(1 << 40);
        assert!(h.cvs.len() as u64 <= MAX_UNITS);
        assert!(h.unit.is_power_of_two() && h.unit >= MIN_UNIT);
        let (_dir, map) = mapped(&data(10));
        assert_eq!(FileHasher::new(11).finish(&map), None);
    }
}
