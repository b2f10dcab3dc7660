//! A persistent cache of model files' BLAKE3 hashes, so that auditing the same files again
//! skips the hash pass (like git's stat cache).
//!
//! # Key and validity
//!
//! An entry records a file's canonical absolute path, device, inode, size, modification time
//! and status-change time (both in nanoseconds), and the hash of its bytes. A lookup is a hit
//! only when every one of those fields equals the file's current `stat`; anything else —
//! no entry, an unreadable, truncated or corrupt one, one for another key — is a miss, never
//! an error. Rewriting a file changes its ctime even when its size and mtime are put back
//! (`touch -d`, `cp -p`, `rsync -t`), and ctime cannot be set from user space, so a changed
//! file never matches an old entry.
//!
//! # Racy entries
//!
//! A file modified within the same timestamp tick as it was hashed could keep its size and
//! timestamps while its bytes change. So a hash is stored only when the file's `stat` is the
//! same before and after hashing, and its mtime and ctime are both at least
//! [`DEFAULT_MIN_AGE`] (3 s) older than the moment hashing started: any later write then
//! gives the file a newer timestamp than the one recorded. A file that is too recent is
//! simply hashed again next time.
//!
//! # Layout and concurrency
//!
//! One small text file per model file, in the cache directory, named by the BLAKE3 of the
//! file's canonical path (so the cache holds at most one entry per path, and a rewritten file
//! replaces its old entry instead of leaving it behind). Entries are written to a temporary
//! file in the same directory and renamed into place, so concurrent processes only ever see
//! whole entries; the last writer wins, and every entry is checked against the full key on
//! read. Write failures are ignored: the cache is only an optimisation. Deleting the
//! directory at any time is safe.
//!
//! # Trust
//!
//! Cached hashes go into reports as provenance records, so the directory is used only if it
//! is owned by the current user and writable by nobody else (it is created `0700`);
//! otherwise the cache is silently off. The cache exists on Unix only; elsewhere every lookup
//! is a miss and nothing is stored.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How much older than the start of hashing a file's mtime and ctime must be for its hash to
/// be stored (see the module docs).
pub const DEFAULT_MIN_AGE: Duration = Duration::from_secs(3);

/// First line of every entry; a format change bumps the number and turns old entries into
/// misses.
const MAGIC: &str = "weightkin blake3 cache 1\n";

/// A BLAKE3 hash cache in one directory. Cheap to create: nothing is read or created until
/// the first lookup.
#[derive(Debug, Clone)]
pub struct HashCache {
    dir: PathBuf,
    min_age: Duration,
}

/// The result of [`HashCache::get_or_hash`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hashed {
    /// The file's BLAKE3 hash, 64 lowercase hex digits.
    pub blake3: String,
    /// Whether it came from the cache (the compute function was not called).
    pub cached: bool,
}

/// The result of [`HashCache::begin`].
#[derive(Debug)]
pub enum Lookup {
    /// The cached hash (64 lowercase hex digits).
    Hit(String),
    /// No usable entry; hash the file, then hand this to [`HashCache::complete`].
    Miss(Pending),
}

/// A missed lookup waiting for its hash (see [`HashCache::begin`]).
#[derive(Debug)]
pub struct Pending {
    /// The file's key when it was looked up (`None`: no key, nothing will be stored).
    key: Option<Key>,
    /// When the lookup began: the file must be older than this by the minimum age.
    started: SystemTime,
}

impl Pending {
    /// The file's canonical path, when it has a key.
    pub fn path(&self) -> Option<&Path> {
        self.key.as_ref().map(|k| k.path.as_path())
    }
}

impl HashCache {
    /// A cache whose entries live directly in `dir` (created on the first store).
    pub fn new(dir: impl Into<PathBuf>) -> HashCache {
        HashCache {
            dir: dir.into(),
            min_age: DEFAULT_MIN_AGE,
        }
    }

    /// The default cache directory: `$WEIGHTKIN_CACHE_DIR/blake3`, else
    /// `$XDG_CACHE_HOME/weightkin/blake3` (when absolute, as the XDG spec requires), else
    /// `$HOME/.cache/weightkin/blake3`; `None` when none of them is set.
    pub fn default_dir() -> Option<PathBuf> {
        dir_from(|name| std::env::var_os(name))
    }

    /// A cache in [`Self::default_dir`], or `None` where there is none (or not on Unix).
    pub fn from_env() -> Option<HashCache> {
        if cfg!(unix) {
            Self::default_dir().map(HashCache::new)
        } else {
            None
        }
    }

    /// Sets how much older than the start of hashing a file's timestamps must be for its hash
    /// to be stored (default [`DEFAULT_MIN_AGE`]). Lowering it lets a file modified right
    /// after hashing, within one timestamp tick, keep a stale entry: only tests should.
    #[must_use]
    pub fn with_min_age(mut self, min_age: Duration) -> HashCache {
        self.min_age = min_age;
        self
    }

    /// The directory holding the entries.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The BLAKE3 hash of the file at `path`: from the cache if an entry matches the file's
    /// current `stat`, else from `compute` (given the path to read, the canonical one where it
    /// resolves), which is then stored if the file is old enough and did not change while
    /// hashed. `compute` must return 64 lowercase hex digits; its errors are passed on.
    pub fn get_or_hash<E>(
        &self,
        path: &Path,
        compute: impl FnOnce(&Path) -> Result<String, E>,
    ) -> Result<Hashed, E> {
        match self.begin(path) {
            Lookup::Hit(blake3) => Ok(Hashed {
                blake3,
                cached: true,
            }),
            Lookup::Miss(pending) => {
                let blake3 = compute(pending.path().unwrap_or(path))?;
                self.complete(pending, &blake3);
                Ok(Hashed {
                    blake3,
                    cached: false,
                })
            }
        }
    }

    /// The first half of [`Self::get_or_hash`], for callers that compute the hash later (or
    /// piecewise): the cached hash of the file at `path`, or what [`Self::complete`] needs to
    /// store it once computed.
    pub fn begin(&self, path: &Path) -> Lookup {
        let started = SystemTime::now();
        let key = Key::of(path);
        if let Some(blake3) = key.as_ref().and_then(|k| self.lookup(k)) {
            return Lookup::Hit(blake3);
        }
        Lookup::Miss(Pending { key, started })
    }

    /// The second half of [`Self::get_or_hash`]: stores `blake3`, the hash of the file a
    /// missed lookup was for, if the file is old enough and its `stat` has not changed since
    /// the lookup (so it did not change while it was hashed).
    pub fn complete(&self, pending: Pending, blake3: &str) {
        let Some(before) = pending.key else { return };
        let unchanged = Key::of(&before.path).is_some_and(|after| after == before);
        if unchanged && before.older_than(pending.started, self.min_age) && is_hex_hash(blake3) {
            // Ignored on failure: a missing entry only costs a hash next time.
            let _ = self.store(&before, blake3);
        }
    }

    /// The entry file for `key`'s path.
    fn entry(&self, key: &Key) -> PathBuf {
        let mut h = blake3::Hasher::new();
        h.update(MAGIC.as_bytes());
        h.update(&path_bytes(&key.path));
        self.dir.join(h.finalize().to_hex().as_str())
    }

    fn lookup(&self, key: &Key) -> Option<String> {
        use std::io::Read;
        if !trusted(&self.dir) {
            return None;
        }
        let expected = key.serialize();
        // The whole entry is the key text, then `blake3 <64 hex>\n`: read one byte more than
        // that, so a longer file is recognised without reading all of it.
        let len = expected.len() + "blake3 \n".len() + 64;
        let mut text = Vec::with_capacity(len + 1);
        std::fs::File::open(self.entry(key))
            .ok()?
            .take(len as u64 + 1)
            .read_to_end(&mut text)
            .ok()?;
        let rest = text.strip_prefix(expected.as_bytes())?;
        let hex = rest.strip_prefix(b"blake3 ")?.strip_suffix(b"\n")?;
        let hex = std::str::from_utf8(hex).ok()?;
        is_hex_hash(hex).then(|| hex.to_owned())
    }

    fn store(&self, key: &Key, blake3: &str) -> std::io::Result<()> {
        use std::io::Write;
        create_private_dir(&self.dir)?;
        if !trusted(&self.dir) {
            return Ok(());
        }
        // A unique name in the same directory (created exclusively, mode 0600), renamed over
        // the entry: readers see the old entry or the new one, never part of one.
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!(".tmp-{}-", std::process::id()))
            .tempfile_in(&self.dir)?;
        tmp.write_all(format!("{}blake3 {blake3}\n", key.serialize()).as_bytes())?;
        tmp.persist(self.entry(key)).map_err(|e| e.error)?;
        Ok(())
    }
}

/// [`HashCache::default_dir`] with the environment read through `var`.
fn dir_from(var: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let var = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = var("WEIGHTKIN_CACHE_DIR") {
        return Some(dir.join("blake3"));
    }
    if let Some(dir) = var("XDG_CACHE_HOME").filter(|p| p.is_absolute()) {
        return Some(dir.join("weightkin").join("blake3"));
    }
    var("HOME").map(|home| home.join(".cache").join("weightkin").join("blake3"))
}

/// Whether `s` is a BLAKE3 hash as reports write it: 64 lowercase hex digits.
fn is_hex_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// What identifies one version of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    /// Canonical absolute path.
    path: PathBuf,
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Key {
    /// The key of the regular file at `path` (resolved to its canonical path), or `None`.
    #[cfg(unix)]
    fn of(path: &Path) -> Option<Key> {
        use std::os::unix::fs::MetadataExt;
        let path = std::fs::canonicalize(path).ok()?;
        let m = std::fs::metadata(&path).ok()?;
        if !m.is_file() {
            return None;
        }
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Some(Key {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: ns(m.mtime(), m.mtime_nsec()),
            ctime_ns: ns(m.ctime(), m.ctime_nsec()),
            path,
        })
    }

    /// No cache off Unix: no file has a key.
    #[cfg(not(unix))]
    fn of(_path: &Path) -> Option<Key> {
        None
    }

    /// Whether both timestamps are at least `min_age` before `started`.
    fn older_than(&self, started: SystemTime, min_age: Duration) -> bool {
        let Some(limit) = started
            .checked_sub(min_age)
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        else {
            return false;
        };
        let limit = i128::try_from(limit.as_nanos()).unwrap_or(i128::MAX);
        self.mtime_ns <= limit && self.ctime_ns <= limit
    }

    /// The entry text before the hash line. The path is hex-encoded (paths are bytes and may
    /// hold newlines), so equal texts mean equal keys.
    fn serialize(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::from(MAGIC);
        s.push_str("path ");
        for b in path_bytes(&self.path) {
            let _ = write!(s, "{b:02x}");
        }
        let _ = write!(
            s,
            "\ndev {}\nino {}\nsize {}\nmtime_ns {}\nctime_ns {}\n",
            self.dev, self.ino, self.size, self.mtime_ns, self.ctime_ns
        );
        s
    }
}

#[cfg(unix)]
fn path_bytes(path: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str().as_bytes().to_vec()
}

#[cfg(not(unix))]
fn path_bytes(path: &Path) -> Vec<u8> {
    path.to_string_lossy().into_owned().into_bytes()
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(_dir: &Path) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// Whether `dir` is a directory owned by this process's user and writable by no one else, so
/// that every entry in it was written by this user.
#[cfg(unix)]
fn trusted(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: `geteuid` takes no arguments, has no preconditions and always succeeds.
    let uid = unsafe { libc::geteuid() };
    std::fs::metadata(dir).is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & 0o022 == 0)
}

#[cfg(not(unix))]
fn trusted(_dir: &Path) -> bool {
    false
}

#[cfg(all(test, unix))]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::cell::Cell;
    use std::fs;

    /// A cache in a fresh temporary directory that stores any file, however recent.
    fn cache(tmp: &tempfile::TempDir) -> HashCache {
        HashCache::new(tmp.path().join("cache")).with_min_age(Duration::ZERO)
    }

    /// Hashes `path` through `cache`, counting calls to the compute function.
    fn hash(cache: &HashCache, path: &Path, calls: &Cell<u32>) -> Hashed {
        cache
            .get_or_hash(path, |p| {
                calls.set(calls.get() + 1);
                fs::read(p).map(|b| blake3::hash(&b).to_hex().to_string())
            })
            .unwrap()
    }

    fn entries(cache: &HashCache) -> Vec<PathBuf> {
        match fs::read_dir(cache.dir()) {
            Ok(d) => d.map(|e| e.unwrap().path()).collect(),
            Err(_) => Vec::new(),
        }
    }

    #[test]
    fn round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let (c, calls) = (cache(&tmp), Cell::new(0));
        let file = tmp.path().join("m.bin");
        fs::write(&file, b"weights").unwrap();
        let expected = blake3::hash(b"weights").to_hex().to_string();

        let first = hash(&c, &file, &calls);
        assert_eq!((first.blake3.as_str(), first.cached), (&*expected, false));
        assert_eq!(entries(&c).len(), 1);
        let second = hash(&c, &file, &calls);
        assert_eq!((second.blake3.as_str(), second.cached), (&*expected, true));
        assert_eq!(calls.get(), 1);
        // Other paths to the same file resolve to the same entry.
        let other = tmp.path().join(".").join("m.bin");
        assert!(hash(&c, &other, &calls).cached);
        let link = tmp.path().join("link.bin");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(hash(&c, &link, &calls).cached);
        assert_eq!(entries(&c).len(), 1);
        // The directory and entries are private to the user.
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(c.dir()).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let entry = &entries(&c)[0];
        assert_eq!(fs::metadata(entry).unwrap().permissions().mode() & 0o077, 0);
    }

    #[test]
    fn a_corrupt_entry_is_a_miss() {
        let tmp = tempfile::tempdir().unwrap();
        let (c, calls) = (cache(&tmp), Cell::new(0));
        let file = tmp.path().join("m.bin");
        fs::write(&file, b"weights").unwrap();
        let expected = hash(&c, &file, &calls).blake3;
        let entry = entries(&c).pop().unwrap();
        let good = fs::read_to_string(&entry).unwrap();

        let hash_line = format!("blake3 {expected}\n");
        let corruptions = [
            String::new(),
            good[..good.len() / 2].to_owned(),
            good[..good.len() - 1].to_owned(),
            format!("{good}x"),
            good.replace(&hash_line, &format!("blake3 {}\n", expected.to_uppercase())),
            good.replace(&hash_line, &format!("blake3 {}\n", &expected[1..])),
            good.replace(&hash_line, "blake3 not-a-hash\n"),
            good.replace("size 7\n", "size 8\n"),
            good.replace("weightkin blake3 cache 1", "weightkin blake3 cache 0"),
            "\u{0}".repeat(good.len()),
        ];
        for (i, bad) in corruptions.iter().enumerate() {
            assert_ne!(bad, &good, "corruption {i}");
            fs::write(&entry, bad).unwrap();
            let before = calls.get();
            let got = hash(&c, &file, &calls);
            assert_eq!(got.blake3, expected, "corruption {i}");
            assert!(!got.cached, "corruption {i}");
            assert_eq!(calls.get(), before + 1, "corruption {i}");
            // The miss rewrote the entry.
            assert_eq!(fs::read_to_string(&entry).unwrap(), good, "corruption {i}");
        }
        // A directory where the entry should be: a miss, and nothing breaks.
        fs::remove_file(&entry).unwrap();
        fs::create_dir(&entry).unwrap();
        assert!(!hash(&c, &file, &calls).cached);
        assert!(!hash(&c, &file, &calls).cached);
    }

    #[test]
    fn a_forged_entry_with_the_right_key_is_used() {
        // Shows lookups really return the stored hash (the compute function is skipped).
        let tmp = tempfile::tempdir().unwrap();
        let (c, calls) = (cache(&tmp), Cell::new(0));
        let file = tmp.path().join("m.bin");
        fs::write(&file, b"weights").unwrap();
        let real = hash(&c, &file, &calls).blake3;
        let entry = entries(&c).pop().unwrap();
        let forged = "0".repeat(64);
        let text = fs::read_to_string(&entry).unwrap().replace(&real, &forged);
        fs::write(&entry, text).unwrap();
        let got = hash(&c, &file, &calls);
        assert_eq!((got.blake3, got.cached), (forged, true));
    }

    #[test]
    fn a_changed_file_is_a_miss() {
        let tmp = tempfile::tempdir().unwrap();
        let (c, calls) = (cache(&tmp), Cell::new(0));
        let file = tmp.path().join("m.bin");
        fs::write(&file, b"weights").unwrap();
        let old = hash(&c, &file, &calls);
        let stat = |f: &Path| {
            let m = fs::metadata(f).unwrap();
            (m.len(), m.modified().unwrap())
        };
        let (_, mtime) = stat(&file);
        // With a zero minimum age, a change within the filesystem's timestamp tick would be
        // invisible (the racy case the real minimum age exists for): wait out the tick.
        let tick = || std::thread::sleep(Duration::from_millis(50));

        // Same size, mtime put back: only the ctime differs.
        tick();
        fs::write(&file, b"WEIGHTS").unwrap();
        fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert_eq!(stat(&file), (7, mtime));
        let got = hash(&c, &file, &calls);
        assert!(!got.cached);
        assert_eq!(got.blake3, blake3::hash(b"WEIGHTS").to_hex().to_string());
        assert_ne!(got.blake3, old.blake3);
        assert!(hash(&c, &file, &calls).cached);
        assert_eq!(entries(&c).len(), 1, "one entry per path");

        // Size changed.
        tick();
        fs::write(&file, b"weights!").unwrap();
        let got = hash(&c, &file, &calls);
        assert!(!got.cached);
        assert_eq!(got.blake3, blake3::hash(b"weights!").to_hex().to_string());

        // The mtime changed.
        tick();
        fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(mtime - Duration::from_secs(60))
            .unwrap();
        assert!(!hash(&c, &file, &calls).cached);

        // Replaced by another file (new inode) with the same bytes.
        let other = tmp.path().join("n.bin");
        fs::write(&other, b"weights!").unwrap();
        fs::rename(&other, &file).unwrap();
        assert!(!hash(&c, &file, &calls).cached);
        assert!(hash(&c, &file, &calls).cached);
    }

    #[test]
    fn a_recent_file_is_not_stored() {
        let tmp = tempfile::tempdir().unwrap();
        let c = HashCache::new(tmp.path().join("cache"));
        let calls = Cell::new(0);
        let file = tmp.path().join("m.bin");
        fs::write(&file, b"weights").unwrap();
        // Backdating the mtime is not enough: the ctime is now.
        fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(3600))
            .unwrap();
        assert!(!hash(&c, &file, &calls).cached);
        assert!(!hash(&c, &file, &calls).cached);
        assert_eq!(calls.get(), 2);
        assert!(entries(&c).is_empty());
    }

    #[test]
    fn a_file_changed_while_hashed_is_not_stored() {
        let tmp = tempfile::tempdir().unwrap();
        let c = cache(&tmp);
        let file = tmp.path().join("m.bin");
        fs::write(&file, b"weights").unwrap();
        let got = c
            .get_or_hash(&file, |p| {
                let h = blake3::hash(&fs::read(p)?).to_hex().to_string();
                // A different size: visible whatever the timestamp granularity.
                fs::write(p, b"changed!")?;
                Ok::<_, std::io::Error>(h)
            })
            .unwrap();
        assert!(!got.cached);
        assert!(entries(&c).is_empty());
    }

    #[test]
    fn errors_pass_through_and_are_not_stored() {
        let tmp = tempfile::tempdir().unwrap();
        let c = cache(&tmp);
        let file = tmp.path().join("m.bin");
        fs::write(&file, b"weights").unwrap();
        let err = c.get_or_hash(&file, |_| Err::<String, _>("broken"));
        assert_eq!(err, Err("broken"));
        // A compute function returning something that is not a hash: passed on, not stored.
        let got = c
            .get_or_hash(&file, |_| Ok::<_, ()>("nope".to_owned()))
            .unwrap();
        assert_eq!(got.blake3, "nope");
        assert!(entries(&c).is_empty());
        // A missing file: the compute function sees the path as given.
        let missing = tmp.path().join("missing.bin");
        let seen = c
            .get_or_hash(&missing, |p| Ok::<_, ()>(p.display().to_string()))
            .unwrap();
        assert_eq!(seen.blake3, missing.display().to_string());
    }

    #[test]
    fn an_untrusted_directory_is_not_used() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let (c, calls) = (cache(&tmp), Cell::new(0));
        let file = tmp.path().join("m.bin");
        fs::write(&file, b"weights").unwrap();
        hash(&c, &file, &calls);
        assert!(hash(&c, &file, &calls).cached);
        // Writable by others: neither read nor written.
        fs::set_permissions(c.dir(), fs::Permissions::from_mode(0o777)).unwrap();
        assert!(!hash(&c, &file, &calls).cached);
        fs::remove_file(entries(&c).pop().unwrap()).unwrap();
        hash(&c, &file, &calls);
        assert!(entries(&c).is_empty());
        // Private again: used again.
        fs::set_permissions(c.dir(), fs::Permissions::from_mode(0o700)).unwrap();
        hash(&c, &file, &calls);
        assert!(hash(&c, &file, &calls).cached);
    }

    #[test]
    fn default_dir_order() {
        fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
            move |name| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| OsString::from(v))
            }
        }
        let all = [
            ("WEIGHTKIN_CACHE_DIR", "/w"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(dir_from(env(&all)), Some(PathBuf::from("/w/blake3")));
        assert_eq!(
            dir_from(env(&[
                ("WEIGHTKIN_CACHE_DIR", ""),
                ("XDG_CACHE_HOME", "/x")
            ])),
            Some(PathBuf::from("/x/weightkin/blake3"))
        );
        // A relative XDG_CACHE_HOME is invalid (XDG base directory spec) and ignored.
        assert_eq!(
            dir_from(env(&[("XDG_CACHE_HOME", "x"), ("HOME", "/h")])),
            Some(PathBuf::from("/h/.cache/weightkin/blake3"))
        );
        assert_eq!(dir_from(env(&[("HOME", "")])), None);
        assert_eq!(dir_from(env(&[])), None);
    }
}
