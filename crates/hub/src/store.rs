//! The fetched-bytes store: hub files kept as sparse local files, with an index of the byte
//! ranges actually fetched, so that a re-run reads nothing from the network again and a
//! partial file can be opened by the ordinary format readers.
//!
//! # Layout
//!
//! ```text
//! {root}/models--{org}--{name}/refs/{revision}          the commit a branch or tag resolved to
//! {root}/models--{org}--{name}/{commit}/select/{key}.json  which files a reference opens
//! {root}/models--{org}--{name}/{commit}/files/{path}     the file, full size, sparse
//! {root}/models--{org}--{name}/{commit}/ranges/{path}.json  byte ranges present, size, hashes
//! ```
//!
//! # Never zeros
//!
//! A data file is created at its full size, so its unfetched ranges read as zeros. Nothing
//! may read them: every reader goes through [`StoredFile::missing`] first (the source wrapper
//! fetches or errors), and a range enters the index only after its bytes are written and
//! synced to disk ([`StoredFile::commit`]). A crash between the two leaves bytes that the
//! index does not list; they are fetched again. The index is replaced atomically (a
//! temporary file renamed over it), merged with what is on disk first, so two processes
//! filling one file lose at most a range the other then re-fetches, and never list a range
//! that was not written.
//!
//! # Trust
//!
//! Fetched bytes become evidence (and per-tensor hashes in reports), so the store is used
//! only when its root is owned by the current user and writable by nobody else; it is
//! created `0700` (the hash cache's rule, `weightkin-runner`'s `hashcache`).

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::io;
use crate::reference::HfRef;
use crate::{Error, Result};

/// Version of the range index format; another number is an empty index.
const INDEX_VERSION: u32 = 1;
/// Largest index or selection file read (they list ranges and file names).
const MAX_META: u64 = 64 << 20;

/// Sorted, disjoint, non-empty half-open byte ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSet(Vec<(u64, u64)>);

impl RangeSet {
    /// Adds `r`, merging with what it touches or overlaps.
    pub fn insert(&mut self, r: Range<u64>) {
        if r.start >= r.end {
            return;
        }
        let (mut start, mut end) = (r.start, r.end);
        let mut out = Vec::with_capacity(self.0.len() + 1);
        let mut placed = false;
        for &(s, e) in &self.0 {
            if e < start {
                out.push((s, e));
            } else if s > end {
                if !placed {
                    out.push((start, end));
                    placed = true;
                }
                out.push((s, e));
            } else {
                start = start.min(s);
                end = end.max(e);
            }
        }
        if !placed {
            out.push((start, end));
        }
        self.0 = out;
    }

    /// The parts of `want` not in the set, in order.
    pub fn missing(&self, want: Range<u64>) -> Vec<Range<u64>> {
        let mut out = Vec::new();
        let mut at = want.start;
        for &(s, e) in &self.0 {
            if e <= at {
                continue;
            }
            if s >= want.end {
                break;
            }
            if s > at {
                out.push(at..s);
            }
            at = at.max(e);
            if at >= want.end {
                break;
            }
        }
        if at < want.end {
            out.push(at..want.end);
        }
        out
    }

    /// Total bytes held.
    pub fn bytes(&self) -> u64 {
        self.0.iter().map(|(s, e)| e - s).sum()
    }

    /// A set from untrusted pairs: `None` unless sorted, disjoint, non-empty, within `size`.
    fn checked(pairs: Vec<(u64, u64)>, size: u64) -> Option<RangeSet> {
        let mut last = 0u64;
        for (i, &(s, e)) in pairs.iter().enumerate() {
            if s >= e || e > size || (i > 0 && s <= last) {
                return None;
            }
            last = e;
        }
        Some(RangeSet(pairs))
    }
}

/// The on-disk range index of one file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Index {
    version: u32,
    size: u64,
    ranges: Vec<(u64, u64)>,
    /// BLAKE3 of the whole file, once every byte is present and verified.
    #[serde(default)]
    blake3: Option<String>,
}

/// What a reference opens at one commit: its files and the one the format opens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    /// Repository path to open (a file, or an index beside its shards).
    pub open: String,
    /// Every file it needs, in a stable order.
    pub files: Vec<FileMeta>,
}

/// A repository file as the hub lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    /// Path inside the repository.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// The LFS object id (SHA-256 of the whole file), when the file is in LFS.
    pub sha256: Option<String>,
}

/// The store's root directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// The store at `root`, created `0700` if missing; refused unless owned by this user
    /// and writable by nobody else.
    pub fn open(root: &Path) -> Result<Store> {
        create_private(root)?;
        check_private(root)?;
        Ok(Store {
            root: root.to_owned(),
        })
    }

    fn repo(&self, r: &HfRef) -> PathBuf {
        self.root.join(crate::hfcache::repo_folder(r))
    }

    /// The commit `revision` resolved to when last fetched.
    pub fn read_ref(&self, r: &HfRef, revision: &str) -> Option<String> {
        crate::hfcache::commit_of(&self.repo(r), revision).ok()
    }

    /// Records that `revision` resolved to `commit`.
    pub fn write_ref(&self, r: &HfRef, revision: &str, commit: &str) -> Result<()> {
        write_atomic(&self.repo(r).join("refs").join(revision), commit.as_bytes())
    }

    fn selection_path(&self, r: &HfRef, commit: &str) -> PathBuf {
        let key = match &r.subpath {
            None => "root".to_owned(),
            Some(s) => blake3::hash(s.as_bytes()).to_hex()[..32].to_owned(),
        };
        self.repo(r)
            .join(commit)
            .join("select")
            .join(format!("{key}.json"))
    }

    /// What `r` opened at `commit` before, if recorded.
    pub fn read_selection(&self, r: &HfRef, commit: &str) -> Option<Selection> {
        let text = read_capped(&self.selection_path(r, commit))?;
        serde_json::from_slice(&text).ok()
    }

    /// Records what `r` opens at `commit`.
    pub fn write_selection(&self, r: &HfRef, commit: &str, s: &Selection) -> Result<()> {
        let text = serde_json::to_vec(s).unwrap_or_default();
        write_atomic(&self.selection_path(r, commit), &text)
    }

    /// The directory holding `r`'s files at `commit`.
    pub fn files_dir(&self, r: &HfRef, commit: &str) -> PathBuf {
        self.repo(r).join(commit).join("files")
    }

    /// The stored copy of repository file `meta` at `commit`, created (sparse, full size)
    /// if missing.
    pub fn file(&self, r: &HfRef, commit: &str, meta: &FileMeta) -> Result<StoredFile> {
        let data = self.files_dir(r, commit).join(&meta.path);
        let index = self
            .repo(r)
            .join(commit)
            .join("ranges")
            .join(format!("{}.json", meta.path));
        let dir = data.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir).map_err(|e| io(dir, "create directory", e))?;
        let existing = std::fs::metadata(&data).ok().map(|m| m.len());
        if existing.is_some_and(|len| len != meta.size) {
            // Another size: a stale or broken copy. Its index cannot be trusted either.
            let _ = std::fs::remove_file(&index);
            std::fs::remove_file(&data).map_err(|e| io(&data, "remove stale copy", e))?;
        }
        if existing != Some(meta.size) {
            let tmp =
                tempfile::NamedTempFile::new_in(dir).map_err(|e| io(dir, "create file", e))?;
            tmp.as_file()
                .set_len(meta.size)
                .map_err(|e| io(tmp.path(), "size file", e))?;
            // Another process may have created it meanwhile: theirs is as good.
            let _ = tmp.persist_noclobber(&data);
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&data)
            .map_err(|e| io(&data, "open", e))?;
        let loaded = load_index(&index, meta.size);
        Ok(StoredFile {
            repo_path: meta.path.clone(),
            data,
            index,
            size: meta.size,
            file,
            state: Mutex::new(loaded),
        })
    }
}

/// What the index of one file says.
#[derive(Debug, Clone, Default)]
struct State {
    ranges: RangeSet,
    blake3: Option<String>,
}

/// One repository file in the store. See the module documentation.
#[derive(Debug)]
pub struct StoredFile {
    /// Path inside the repository.
    pub repo_path: String,
    /// The local data file.
    pub data: PathBuf,
    index: PathBuf,
    /// Size in bytes.
    pub size: u64,
    file: File,
    state: Mutex<State>,
}

impl StoredFile {
    /// The parts of `want` not yet fetched.
    pub fn missing(&self, want: Range<u64>) -> Vec<Range<u64>> {
        self.lock().ranges.missing(want)
    }

    /// Whether every byte is present.
    pub fn complete(&self) -> bool {
        self.missing(0..self.size).is_empty()
    }

    /// Bytes present.
    pub fn present(&self) -> u64 {
        self.lock().ranges.bytes()
    }

    /// The whole file's BLAKE3, once verified complete.
    pub fn blake3(&self) -> Option<String> {
        self.lock().blake3.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes `bytes` at `offset` (not yet listed as present: see [`Self::commit`]).
    pub fn write_at(&self, offset: u64, bytes: &[u8]) -> Result<()> {
        let end = offset.checked_add(bytes.len() as u64);
        if end.is_none_or(|e| e > self.size) {
            return Err(Error::BadResponse {
                url: self.repo_path.clone(),
                problem: format!("bytes past the end of the {}-byte file", self.size),
            });
        }
        write_all_at(&self.file, bytes, offset).map_err(|e| io(&self.data, "write", e))
    }

    /// Reads `buf.len()` bytes at `offset`; only for ranges known present.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let end = offset.saturating_add(buf.len() as u64);
        if let Some(gap) = self.missing(offset..end).first() {
            return Err(Error::NotFetched {
                file: self.repo_path.clone(),
                start: gap.start,
                end: gap.end,
            });
        }
        read_exact_at(&self.file, buf, offset).map_err(|e| io(&self.data, "read", e))
    }

    /// Lists `range` (already written) as present: syncs the data to disk, then replaces
    /// the index with the union of its on-disk state and this range.
    pub fn commit(&self, range: Range<u64>) -> Result<()> {
        if range.start >= range.end {
            return Ok(());
        }
        self.file
            .sync_data()
            .map_err(|e| io(&self.data, "sync", e))?;
        let mut state = self.lock();
        let on_disk = load_index(&self.index, self.size);
        for &(s, e) in &on_disk.ranges.0 {
            state.ranges.insert(s..e);
        }
        state.ranges.insert(range);
        if state.blake3.is_none() {
            state.blake3 = on_disk.blake3;
        }
        self.save(&state)
    }

    /// Records the whole file's BLAKE3 (after verifying it).
    pub fn set_blake3(&self, blake3: String) -> Result<()> {
        let mut state = self.lock();
        state.blake3 = Some(blake3);
        self.save(&state)
    }

    /// Forgets everything fetched (after a failed verification).
    pub fn forget(&self) -> Result<()> {
        let mut state = self.lock();
        *state = State::default();
        self.save(&state)
    }

    fn save(&self, state: &State) -> Result<()> {
        let index = Index {
            version: INDEX_VERSION,
            size: self.size,
            ranges: state.ranges.0.clone(),
            blake3: state.blake3.clone(),
        };
        let text = serde_json::to_vec(&index).unwrap_or_default();
        write_atomic(&self.index, &text)
    }

    /// SHA-256 and BLAKE3 of the whole file (every byte must be present).
    pub fn hashes(&self) -> Result<(String, String)> {
        use sha2::Digest;
        let mut sha = sha2::Sha256::new();
        let mut b3 = blake3::Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut at = 0u64;
        while at < self.size {
            let n = usize::try_from((self.size - at).min(buf.len() as u64)).unwrap_or(buf.len());
            let part = &mut buf[..n];
            self.read_at(at, part)?;
            sha.update(&*part);
            b3.update(part);
            at += n as u64;
        }
        let sha: String = sha.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Ok((sha, b3.finalize().to_hex().to_string()))
    }
}

fn load_index(path: &Path, size: u64) -> State {
    let Some(text) = read_capped(path) else {
        return State::default();
    };
    match serde_json::from_slice::<Index>(&text) {
        Ok(i) if i.version == INDEX_VERSION && i.size == size => {
            match RangeSet::checked(i.ranges, size) {
                Some(ranges) => State {
                    ranges,
                    blake3: i.blake3,
                },
                None => State::default(),
            }
        }
        _ => State::default(),
    }
}

fn read_capped(path: &Path) -> Option<Vec<u8>> {
    let file = File::open(path).ok()?;
    let mut out = Vec::new();
    file.take(MAX_META).read_to_end(&mut out).ok()?;
    Some(out)
}

/// Writes `bytes` to `path` through a temporary file renamed over it.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| io(dir, "create directory", e))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| io(dir, "create file", e))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_data())
        .map_err(|e| io(path, "write", e))?;
    tmp.persist(path)
        .map_err(|e| io(path, "replace", e.error))?;
    Ok(())
}

#[cfg(unix)]
fn write_all_at(file: &File, bytes: &[u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, bytes, offset)
}

#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(not(unix))]
fn write_all_at(file: &File, bytes: &[u8], offset: u64) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = file;
    f.seek(SeekFrom::Start(offset))?;
    f.write_all(bytes)
}

#[cfg(not(unix))]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom};
    let mut f = file;
    f.seek(SeekFrom::Start(offset))?;
    f.read_exact(buf)
}

fn create_private(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io(dir, "create directory", e))
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, "create directory", e))
    }
}

fn check_private(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(dir).map_err(|e| io(dir, "read metadata", e))?;
        // SAFETY: `geteuid` has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me {
            return Err(Error::NoStore("the directory belongs to another user"));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(Error::NoStore(
                "the directory is writable by other users (chmod 700 it)",
            ));
        }
    }
    let _ = dir;
    Ok(())
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::single_range_in_vec_init
)]
mod tests {
    use super::*;

    #[test]
    fn range_set_merges_and_reports_gaps() {
        let mut s = RangeSet::default();
        s.insert(10..20);
        s.insert(30..40);
        s.insert(20..25);
        s.insert(5..5);
        assert_eq!(s.0, [(10, 25), (30, 40)]);
        assert_eq!(s.missing(0..50), [0..10, 25..30, 40..50]);
        assert_eq!(s.missing(12..24), Vec::<Range<u64>>::new());
        assert_eq!(s.missing(24..31), [25..30]);
        s.insert(0..100);
        assert_eq!(s.0, [(0, 100)]);
        assert_eq!(s.bytes(), 100);
        assert!(RangeSet::checked(vec![(0, 5), (5, 6)], 10).is_none());
        assert!(RangeSet::checked(vec![(0, 5), (6, 11)], 10).is_none());
        assert!(RangeSet::checked(vec![(3, 3)], 10).is_none());
    }

    #[test]
    fn unfetched_bytes_are_an_error_and_commits_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s")).unwrap();
        let r = HfRef::parse("hf://o/n").unwrap();
        let meta = FileMeta {
            path: "sub/f.bin".to_owned(),
            size: 100,
            sha256: None,
        };
        let f = store.file(&r, "c", &meta).unwrap();
        assert_eq!(std::fs::metadata(&f.data).unwrap().len(), 100);
        let mut buf = [0u8; 4];
        assert!(matches!(
            f.read_at(10, &mut buf),
            Err(Error::NotFetched {
                start: 10,
                end: 14,
                ..
            })
        ));
        f.write_at(10, b"abcd").unwrap();
        // Written but not committed: still refused.
        assert!(f.read_at(10, &mut buf).is_err());
        f.commit(10..14).unwrap();
        f.read_at(10, &mut buf).unwrap();
        assert_eq!(&buf, b"abcd");
        assert!(f.write_at(98, b"abc").is_err());
        drop(f);
        let f = store.file(&r, "c", &meta).unwrap();
        assert_eq!(f.missing(0..100), [0..10, 14..100]);
        // Another size: the old copy and its index are dropped.
        let f = store.file(&r, "c", &FileMeta { size: 50, ..meta }).unwrap();
        assert_eq!(f.missing(0..50), [0..50]);
    }

    #[test]
    fn refs_and_selections_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let r = HfRef::parse("hf://o/n/sub").unwrap();
        let commit = "a".repeat(40);
        store.write_ref(&r, "main", &commit).unwrap();
        assert_eq!(store.read_ref(&r, "main"), Some(commit.clone()));
        assert_eq!(store.read_ref(&r, "v1"), None);
        let s = Selection {
            open: "sub/model.safetensors".to_owned(),
            files: vec![],
        };
        store.write_selection(&r, &commit, &s).unwrap();
        assert_eq!(store.read_selection(&r, &commit), Some(s));
        let root = HfRef::parse("hf://o/n").unwrap();
        assert_eq!(store.read_selection(&root, &commit), None);
    }
}
