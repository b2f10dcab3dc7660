//! The remote [`WeightSource`]: the format's own source over the sparse local copy, with
//! every read guarded by the fetched-range index — a tensor's bytes are fetched before it is
//! read (all of an audit's at once by [`WeightSource::prefetch`], else one by one), and a
//! read that cannot be satisfied is an error, never zeros.
//!
//! The format's source memory-maps the sparse file when it is opened, and the bytes fetched
//! later are written into the same file. A read-only private mapping that the process never
//! writes shares the page cache with the file on Linux and macOS, so it sees those bytes;
//! and no byte is read through the map before the index lists it (written and synced).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use weightkin_core::{
    FetchProgress, NoFetchProgress, RawTensor, StoredRange, StoredRows, TensorTable, WeightSource,
};

use crate::http::Client;
use crate::reference::HfRef;
use crate::remote::{fetch_range, HubOptions};
use crate::store::StoredFile;
use crate::{Error, Result};

/// Where a model's bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// A complete snapshot in the local Hugging Face cache.
    HfCache,
    /// The hub, by range requests (possibly from earlier runs, kept in the store).
    Hub,
}

/// What identifies an `hf://` model's audited bytes (see the crate documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// `org/name`.
    pub repo: String,
    /// The revision asked for.
    pub revision: String,
    /// The commit it resolved to.
    pub commit: String,
    /// Where the bytes came from.
    pub origin: Origin,
    /// The model's files, parallel to the source's [`WeightSource::files`].
    pub files: Vec<FileProvenance>,
    /// Tensor name → BLAKE3 of its stored bytes, for every tensor the audit read from a
    /// file that is not wholly present (sorted by name).
    pub tensors: BTreeMap<String, String>,
}

/// One file of an `hf://` model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProvenance {
    /// Path inside the repository.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// The hub's SHA-256 of the whole file (its LFS object id), when it has one.
    pub sha256: Option<String>,
    /// Whether every byte of the file is present locally (and, with a SHA-256, verified).
    pub complete: bool,
    /// BLAKE3 of the whole file, when complete and hashed here (`None` for an HF cache
    /// file: the caller hashes it as any local file).
    pub blake3: Option<String>,
}

/// An HF cache snapshot.
pub(crate) struct CacheModel {
    pub repo: String,
    pub revision: String,
    pub commit: String,
    pub snapshot: PathBuf,
}

/// One file of a remote model.
pub(crate) struct RemoteFile {
    pub stored: StoredFile,
    pub url: String,
    pub sha256: Option<String>,
}

/// A remote model: its stored files and the client that fills them.
pub(crate) struct RemoteModel {
    repo: String,
    revision: String,
    commit: String,
    files: Vec<RemoteFile>,
    client: Option<Client>,
    opts: HubOptions,
    /// Set once by [`Handle::wrap`]: where each tensor of the opened source is.
    layout: OnceLock<Layout>,
    /// Tensors the audit asked for (prefetched or read).
    used: Mutex<BTreeSet<usize>>,
    /// Held while fetching, so two readers never fetch the same bytes.
    fetching: Mutex<()>,
}

struct Layout {
    names: Vec<String>,
    /// Per tensor: file index into `files`, and byte range (`None`: its file is not one of
    /// the fetched files, which cannot happen for a source opened from the store).
    at: Vec<Option<(usize, Range<u64>)>>,
    /// Per inner file: index into `files`.
    files: Vec<usize>,
    /// Per tensor: known to be present (the fast path of every read).
    ready: Vec<AtomicBool>,
}

impl RemoteModel {
    pub(crate) fn new(
        r: &HfRef,
        commit: &str,
        files: Vec<RemoteFile>,
        client: Option<Client>,
        opts: HubOptions,
    ) -> RemoteModel {
        RemoteModel {
            repo: r.repo(),
            revision: r.revision().to_owned(),
            commit: commit.to_owned(),
            files,
            client,
            opts,
            layout: OnceLock::new(),
            used: Mutex::new(BTreeSet::new()),
            fetching: Mutex::new(()),
        }
    }

    /// Makes tensors `tensors` readable: fetches what the store lacks.
    fn ensure(&self, tensors: &[usize], progress: &dyn FetchProgress) -> Result<()> {
        let Some(layout) = self.layout.get() else {
            return Err(Error::Internal(
                "a remote source was read before it was wrapped",
            ));
        };
        let is_ready = |i: usize| {
            layout
                .ready
                .get(i)
                .is_some_and(|r| r.load(Ordering::Acquire))
        };
        if tensors.iter().all(|&i| is_ready(i)) {
            return Ok(());
        }
        lock(&self.used).extend(tensors.iter().copied());
        let _one_fetch_at_a_time = lock(&self.fetching);
        let mut wants: Vec<(usize, Range<u64>)> = Vec::new();
        for &i in tensors.iter().filter(|&&i| !is_ready(i)) {
            let at = layout.at.get(i).cloned().flatten().ok_or(Error::Internal(
                "a tensor of a remote source lies in no fetched file",
            ))?;
            wants.push(at);
        }
        let pieces = self.plan(&wants);
        if !pieces.is_empty() {
            let Some(client) = &self.client else {
                let (f, r) = &pieces[0];
                return Err(Error::NotFetched {
                    file: self.files[*f].stored.repo_path.clone(),
                    start: r.start,
                    end: r.end,
                });
            };
            progress.planned(pieces.iter().map(|(_, r)| r.end - r.start).sum());
            self.fetch_all(client, &pieces, progress)?;
        }
        let touched: BTreeSet<usize> = wants.iter().map(|(f, _)| *f).collect();
        for f in touched {
            self.verify_if_complete(f)?;
        }
        for &i in tensors {
            if let Some(r) = layout.ready.get(i) {
                r.store(true, Ordering::Release);
            }
        }
        Ok(())
    }

    /// The requests that fetch what `wants` lacks: per file, missing parts sorted, merged
    /// across gaps up to `merge_gap` (or all of them, from a server that ignores `Range`),
    /// and split at `max_request`.
    fn plan(&self, wants: &[(usize, Range<u64>)]) -> Vec<(usize, Range<u64>)> {
        let mut by_file: BTreeMap<usize, Vec<Range<u64>>> = BTreeMap::new();
        for (f, r) in wants {
            if let Some(file) = self.files.get(*f) {
                by_file
                    .entry(*f)
                    .or_default()
                    .extend(file.stored.missing(r.clone()));
            }
        }
        let whole = self.client.as_ref().is_some_and(Client::range_ignored);
        let mut out = Vec::new();
        for (f, mut ranges) in by_file {
            ranges.sort_by_key(|r| r.start);
            let mut merged: Vec<Range<u64>> = Vec::new();
            for r in ranges {
                match merged.last_mut() {
                    Some(last)
                        if whole || r.start <= last.end.saturating_add(self.opts.merge_gap) =>
                    {
                        last.end = last.end.max(r.end);
                    }
                    _ => merged.push(r),
                }
            }
            let max = self.opts.max_request.max(1);
            for r in merged {
                let mut at = r.start;
                while at < r.end {
                    let end = if whole {
                        r.end
                    } else {
                        r.end.min(at.saturating_add(max))
                    };
                    out.push((f, at..end));
                    at = end;
                }
            }
        }
        out
    }

    /// Runs `pieces` on up to `connections` threads; the first error stops the rest.
    fn fetch_all(
        &self,
        client: &Client,
        pieces: &[(usize, Range<u64>)],
        progress: &dyn FetchProgress,
    ) -> Result<()> {
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let first_error: Mutex<Option<Error>> = Mutex::new(None);
        let threads = self.opts.connections.clamp(1, 16).min(pieces.len());
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((f, range)) = pieces.get(i) else {
                        break;
                    };
                    if failed.load(Ordering::Relaxed) {
                        break;
                    }
                    let Some(file) = self.files.get(*f) else {
                        break;
                    };
                    let done = fetch_range(client, &file.stored, &file.url, range.clone(), &|n| {
                        progress.fetched(n);
                    });
                    if let Err(e) = done {
                        failed.store(true, Ordering::Relaxed);
                        lock(&first_error).get_or_insert(e);
                        break;
                    }
                });
            }
        });
        match first_error
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// A file every byte of which is present is hashed once: its SHA-256 checked against
    /// the hub's (a mismatch forgets the bytes), its BLAKE3 recorded.
    fn verify_if_complete(&self, f: usize) -> Result<()> {
        let Some(file) = self.files.get(f) else {
            return Ok(());
        };
        if file.stored.blake3().is_some() || !file.stored.complete() {
            return Ok(());
        }
        let (sha256, blake3) = file.stored.hashes()?;
        if let Some(expected) = &file.sha256 {
            if *expected != sha256 {
                file.stored.forget()?;
                return Err(Error::HashMismatch {
                    file: file.stored.repo_path.clone(),
                    expected: expected.clone(),
                    actual: sha256,
                });
            }
        }
        file.stored.set_blake3(blake3)
    }

    fn provenance(&self) -> Result<Provenance> {
        let Some(layout) = self.layout.get() else {
            return Err(Error::Internal(
                "provenance of a remote source never wrapped",
            ));
        };
        let mut files = Vec::new();
        for &f in &layout.files {
            let Some(file) = self.files.get(f) else {
                continue;
            };
            let blake3 = file.stored.blake3();
            files.push(FileProvenance {
                path: file.stored.repo_path.clone(),
                size: file.stored.size,
                sha256: file.sha256.clone(),
                complete: blake3.is_some(),
                blake3,
            });
        }
        let mut tensors = BTreeMap::new();
        for &i in lock(&self.used).iter() {
            let (Some(name), Some(Some((f, range)))) = (layout.names.get(i), layout.at.get(i))
            else {
                continue;
            };
            let Some(file) = self.files.get(*f) else {
                continue;
            };
            if file.stored.blake3().is_some() {
                continue; // the whole file's hash identifies it
            }
            tensors.insert(name.clone(), hash_range(&file.stored, range.clone())?);
        }
        Ok(Provenance {
            repo: self.repo.clone(),
            revision: self.revision.clone(),
            commit: self.commit.clone(),
            origin: Origin::Hub,
            files,
            tensors,
        })
    }
}

fn hash_range(stored: &StoredFile, range: Range<u64>) -> Result<String> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = range.start;
    while at < range.end {
        let n = usize::try_from((range.end - at).min(buf.len() as u64)).unwrap_or(buf.len());
        stored.read_at(at, &mut buf[..n])?;
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    Ok(hasher.finalize().to_hex().to_string())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Where an `hf://` model's provenance comes from; cheap to clone.
#[derive(Clone)]
pub struct Handle(Kind);

#[derive(Clone)]
enum Kind {
    Cache(Arc<CacheModel>),
    Remote(Arc<RemoteModel>),
}

impl Handle {
    pub(crate) fn cache(model: CacheModel) -> Handle {
        Handle(Kind::Cache(Arc::new(model)))
    }

    pub(crate) fn remote(model: RemoteModel) -> Handle {
        Handle(Kind::Remote(Arc::new(model)))
    }

    /// Where the bytes come from.
    pub fn origin(&self) -> Origin {
        match &self.0 {
            Kind::Cache(_) => Origin::HfCache,
            Kind::Remote(_) => Origin::Hub,
        }
    }

    /// The resolved commit.
    pub fn commit(&self) -> &str {
        match &self.0 {
            Kind::Cache(c) => &c.commit,
            Kind::Remote(r) => &r.commit,
        }
    }

    pub(crate) fn wrap(
        &self,
        inner: Box<dyn WeightSource>,
    ) -> Result<(Box<dyn WeightSource>, Handle)> {
        let Kind::Remote(remote) = &self.0 else {
            return Ok((inner, self.clone()));
        };
        let mut file_map = Vec::new();
        for f in inner.files() {
            let found = remote.files.iter().position(|rf| rf.stored.data == f.path);
            file_map.push(found.ok_or_else(|| Error::Io {
                path: f.path.clone(),
                action: "match the opened file to a fetched one",
                source: std::io::ErrorKind::NotFound.into(),
            })?);
        }
        let mut at = Vec::with_capacity(inner.tensors().len());
        for (i, t) in inner.tensors().iter().enumerate() {
            let here = match inner.stored_range(i) {
                Some(StoredRange { file, start, end }) => {
                    file_map.get(file).map(|&f| (f, start..end))
                }
                None => None,
            };
            // Unknown: the whole file.
            let here = here.or_else(|| {
                let f = *file_map.get(t.file)?;
                Some((f, 0..remote.files.get(f)?.stored.size))
            });
            at.push(here);
        }
        let layout = Layout {
            names: inner.tensors().iter().map(|t| t.name.clone()).collect(),
            ready: at.iter().map(|_| AtomicBool::new(false)).collect(),
            at,
            files: file_map,
        };
        if remote.layout.set(layout).is_err() {
            return Err(Error::Internal("a remote model was wrapped twice"));
        }
        let source = HubSource {
            inner,
            remote: remote.clone(),
        };
        Ok((Box::new(source), self.clone()))
    }

    /// What identifies the audited bytes: for a remote model, hashes the tensors the audit
    /// read (from the store, not the network).
    pub fn provenance(&self, files: &[weightkin_core::FileInfo]) -> Result<Provenance> {
        match &self.0 {
            Kind::Remote(r) => r.provenance(),
            Kind::Cache(c) => Ok(Provenance {
                repo: c.repo.clone(),
                revision: c.revision.clone(),
                commit: c.commit.clone(),
                origin: Origin::HfCache,
                files: files
                    .iter()
                    .map(|f| FileProvenance {
                        path: f
                            .path
                            .strip_prefix(&c.snapshot)
                            .unwrap_or(&f.path)
                            .to_string_lossy()
                            .replace('\\', "/"),
                        size: f.size,
                        sha256: crate::hfcache::blob_sha256(&f.path),
                        complete: true,
                        blake3: None,
                    })
                    .collect(),
                tensors: BTreeMap::new(),
            }),
        }
    }
}

/// The format's source over a sparse copy, reading only what is fetched.
struct HubSource {
    inner: Box<dyn WeightSource>,
    remote: Arc<RemoteModel>,
}

impl HubSource {
    fn ensure(&self, index: usize) -> weightkin_core::Result<()> {
        self.remote
            .ensure(&[index], &NoFetchProgress)
            .map_err(|e| weightkin_core::Error::Remote {
                tensor: self
                    .inner
                    .tensors()
                    .get(index)
                    .map(|t| t.name.clone())
                    .unwrap_or_default(),
                source: Box::new(e),
            })
    }
}

impl WeightSource for HubSource {
    fn table(&self) -> &TensorTable {
        self.inner.table()
    }

    fn read_f32(&self, index: usize, start: usize, out: &mut [f32]) -> weightkin_core::Result<()> {
        self.ensure(index)?;
        self.inner.read_f32(index, start, out)
    }

    fn raw(&self, index: usize) -> Option<RawTensor<'_>> {
        // Without the bytes there is no raw view; the caller then reads through
        // `read_f32`, which reports why.
        self.ensure(index).ok()?;
        self.inner.raw(index)
    }

    fn blocks(&self, index: usize) -> Option<RawTensor<'_>> {
        self.ensure(index).ok()?;
        self.inner.blocks(index)
    }

    fn stored_rows(&self, index: usize) -> Option<StoredRows<'_>> {
        self.ensure(index).ok()?;
        self.inner.stored_rows(index)
    }

    fn stored_range(&self, index: usize) -> Option<StoredRange> {
        self.inner.stored_range(index)
    }

    fn release(&self, index: usize, start: usize, end: usize) {
        self.inner.release(index, start, end);
    }

    /// The format's: a vocabulary stored in the file lies in its header, which the sparse
    /// copy holds (the format read it to open the model).
    fn vocabulary(&self) -> Option<&[String]> {
        self.inner.vocabulary()
    }

    fn prefetch(
        &self,
        tensors: &[usize],
        progress: &dyn FetchProgress,
    ) -> weightkin_core::Result<()> {
        self.remote
            .ensure(tensors, progress)
            .map_err(|e| weightkin_core::Error::Remote {
                tensor: format!("{} tensors of {}", tensors.len(), self.remote.repo),
                source: Box::new(e),
            })
    }
}
