//! Locating a reference: the Hugging Face cache, else the fetched-bytes store and the hub —
//! resolving the revision to a commit, choosing the files to open, and fetching their
//! headers into sparse local copies.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use serde::Deserialize;

use crate::env::HubEnv;
use crate::gguf::{self, Scan};
use crate::hfcache::{self, parse_index};
use crate::http::{Client, Retry, WarningSink};
use crate::reference::{check_path, encode_path, encode_segment, is_commit, HfRef};
use crate::source::{CacheModel, Handle, RemoteFile, RemoteModel};
use crate::store::{FileMeta, Selection, Store, StoredFile};
use crate::{Error, Result};

/// Largest API answer or shard index read (a repository's file list; ~100 KB typically).
const MAX_DOCUMENT: u64 = 64 << 20;
/// First GGUF prefix fetched; grown 4× until the header fits.
const GGUF_FIRST: u64 = 1 << 20;
/// Largest GGUF header fetched (tokenizer arrays of large vocabularies are ~10 MB).
const GGUF_MAX: u64 = 256 << 20;
/// Bytes of a safetensors length prefix.
const ST_PREFIX: u64 = 8;

/// How the hub is used.
#[derive(Clone)]
pub struct HubOptions {
    /// Refuse the network (also set by `HF_HUB_OFFLINE`).
    pub offline: bool,
    /// Retry policy for failed requests.
    pub retry: Retry,
    /// Parallel connections per prefetch.
    pub connections: usize,
    /// Unfetched gaps up to this many bytes between two needed ranges are fetched too, to
    /// make one request of two. Default 0: only touching ranges merge, so an audit fetches
    /// exactly the bytes of the tensors it reads (tensors of one component are contiguous in
    /// safetensors files, which store tensors in name order, so little is lost).
    pub merge_gap: u64,
    /// Largest single request; longer ranges are split (parallelism, resume granularity).
    pub max_request: u64,
    /// Largest safetensors header fetched (the format's limit applies again at open).
    pub max_header: u64,
    /// Where warnings go.
    pub warn: WarningSink,
}

impl Default for HubOptions {
    fn default() -> Self {
        HubOptions {
            offline: false,
            retry: Retry::default(),
            connections: 4,
            merge_gap: 0,
            max_request: 64 << 20,
            max_header: weightkin_core::Limits::default().max_header_bytes,
            warn: Arc::new(|_| {}),
        }
    }
}

/// The hub as this process sees it: settings, the store, and one shared HTTP client.
pub struct Hub {
    env: HubEnv,
    opts: HubOptions,
    client: OnceLock<std::result::Result<Client, String>>,
}

/// A located reference: the local path its format opens, and what [`Located::wrap`] needs.
pub struct Located {
    /// The file or directory to open.
    pub path: PathBuf,
    handle: Handle,
}

impl Located {
    /// The provenance handle (also returned by [`Located::wrap`]).
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Wraps the source a format opened from [`Located::path`]: for a remote model, a source
    /// that fetches each tensor's bytes before it is read ([`crate::Handle`]); for the HF
    /// cache, the source itself.
    pub fn wrap(
        self,
        inner: Box<dyn weightkin_core::WeightSource>,
    ) -> Result<(Box<dyn weightkin_core::WeightSource>, Handle)> {
        self.handle.wrap(inner)
    }
}

#[derive(Deserialize)]
struct ApiRevision {
    sha: String,
    #[serde(default)]
    siblings: Vec<Sibling>,
}

#[derive(Deserialize)]
struct Sibling {
    rfilename: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    lfs: Option<Lfs>,
}

#[derive(Deserialize)]
struct Lfs {
    sha256: String,
    #[serde(default)]
    size: Option<u64>,
}

impl Hub {
    /// The hub with settings `env` (see [`HubEnv::from_env`]).
    pub fn new(env: HubEnv, mut opts: HubOptions) -> Hub {
        opts.offline |= env.offline;
        Hub {
            env,
            opts,
            client: OnceLock::new(),
        }
    }

    /// Whether the network is off.
    pub fn offline(&self) -> bool {
        self.opts.offline
    }

    fn client(&self) -> Result<Client> {
        let made = self.client.get_or_init(|| {
            Client::new(
                &self.env.endpoint,
                self.env.token.clone(),
                self.opts.retry,
                self.opts.warn.clone(),
            )
            .map_err(|e| e.to_string())
        });
        made.clone().map_err(|problem| Error::BadResponse {
            url: self.env.endpoint.clone(),
            problem,
        })
    }

    fn store(&self) -> Result<Store> {
        let root = self
            .env
            .store
            .as_ref()
            .ok_or(Error::NoStore("set WEIGHTKIN_CACHE_DIR or HOME"))?;
        Store::open(root)
    }

    /// Finds `r`: in the Hugging Face cache, else in the store and on the hub (fetching the
    /// headers). See the crate documentation for the order.
    pub fn locate(&self, r: &HfRef) -> Result<Located> {
        let cache_miss = match hfcache::resolve(&self.env.hf_caches, r) {
            Ok(hit) => return Ok(cached(r, hit)),
            Err(miss) => miss.0,
        };
        let store = self.store()?;
        if self.opts.offline {
            return self
                .locate_offline(r, &store)
                .map_err(|store_miss| Error::Offline {
                    reference: r.to_string(),
                    missing: format!("{cache_miss}; the fetched-bytes store: {store_miss}"),
                    searched: self.searched(),
                });
        }
        self.locate_remote(r, &store)
    }

    fn searched(&self) -> String {
        let mut dirs: Vec<String> = self
            .env
            .hf_caches
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        if let Some(s) = &self.env.store {
            dirs.push(s.display().to_string());
        }
        dirs.join(", ")
    }

    /// From the store alone: the commit, selection and headers an earlier run fetched.
    fn locate_offline(&self, r: &HfRef, store: &Store) -> std::result::Result<Located, String> {
        let commit = r
            .commit()
            .or_else(|| store.read_ref(r, r.revision()))
            .ok_or_else(|| format!("no commit recorded for revision `{}`", r.revision()))?;
        let selection = store
            .read_selection(r, &commit)
            .ok_or_else(|| format!("nothing of commit {commit} was fetched"))?;
        self.finish(r, store, &commit, &selection, None)
            .map_err(|e| e.to_string())
    }

    fn locate_remote(&self, r: &HfRef, store: &Store) -> Result<Located> {
        let client = self.client()?;
        let known = r
            .commit()
            .and_then(|c| store.read_selection(r, &c).map(|s| (c, s)));
        let (commit, selection) = match known {
            Some(found) => found,
            None => {
                let (commit, files) = self.revision(&client, r)?;
                store.write_ref(r, r.revision(), &commit)?;
                match store.read_selection(r, &commit) {
                    Some(s) => (commit, s),
                    None => {
                        let s = self.select(&client, store, r, &commit, &files)?;
                        store.write_selection(r, &commit, &s)?;
                        (commit, s)
                    }
                }
            }
        };
        self.finish(r, store, &commit, &selection, Some(client))
    }

    /// `GET /api/models/{repo}/revision/{rev}?blobs=true`: the commit and the file list.
    fn revision(&self, client: &Client, r: &HfRef) -> Result<(String, BTreeMap<String, FileMeta>)> {
        let mut rev = String::new();
        encode_segment(r.revision(), &mut rev);
        let url = format!(
            "{}/api/models/{}/{}/revision/{rev}?blobs=true",
            self.env.endpoint, r.org, r.name
        );
        let body = client.get_small(&url, MAX_DOCUMENT)?;
        let api: ApiRevision = serde_json::from_slice(&body).map_err(|e| Error::BadResponse {
            url: url.clone(),
            problem: format!("not the hub's revision document: {e}"),
        })?;
        if !is_commit(&api.sha) {
            return Err(Error::BadResponse {
                url,
                problem: "the revision's `sha` is not a commit hash".to_owned(),
            });
        }
        let mut files = BTreeMap::new();
        for s in api.siblings {
            if check_path(&s.rfilename, "file").is_err() {
                continue; // a name weightkin could not store safely is never chosen
            }
            let lfs_size = s.lfs.as_ref().and_then(|l| l.size);
            let sha256 = s
                .lfs
                .map(|l| l.sha256.to_ascii_lowercase())
                .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
            files.insert(
                s.rfilename.clone(),
                FileMeta {
                    path: s.rfilename,
                    size: s.size.or(lfs_size).unwrap_or(u64::MAX),
                    sha256,
                },
            );
        }
        Ok((api.sha.to_ascii_lowercase(), files))
    }

    fn url(&self, r: &HfRef, commit: &str, path: &str) -> String {
        format!(
            "{}/{}/{}/resolve/{commit}/{}",
            self.env.endpoint,
            r.org,
            r.name,
            encode_path(path)
        )
    }

    /// Which files `r` opens at `commit`, given the repository's file list.
    fn select(
        &self,
        client: &Client,
        store: &Store,
        r: &HfRef,
        commit: &str,
        files: &BTreeMap<String, FileMeta>,
    ) -> Result<Selection> {
        let no = |problem: String| Error::NoWeights {
            reference: r.to_string(),
            problem,
        };
        let open =
            match &r.subpath {
                Some(sub) if files.contains_key(sub) => sub.clone(),
                sub => {
                    let prefix = sub.as_ref().map(|s| format!("{s}/")).unwrap_or_default();
                    let level: Vec<&str> = files
                        .keys()
                        .filter_map(|k| k.strip_prefix(&prefix))
                        .filter(|k| !k.contains('/'))
                        .collect();
                    if level.is_empty() && sub.is_some() {
                        return Err(no(format!(
                            "commit {commit} has no file or directory `{}`",
                            sub.as_deref().unwrap_or("")
                        )));
                    }
                    pick(&level)
                        .map(|f| format!("{prefix}{f}"))
                        .ok_or_else(|| {
                            let weights: Vec<&str> = level
                                .iter()
                                .copied()
                                .filter(|f| f.ends_with(".safetensors") || f.ends_with(".gguf"))
                                .take(8)
                                .collect();
                            no(if weights.is_empty() {
                                format!(
                                    "commit {commit} has no safetensors or GGUF file at `{prefix}`"
                                )
                            } else {
                                format!(
                            "several weight files and no index; name one, e.g. {}/{prefix}{}",
                            r.to_string().split('/').take(4).collect::<Vec<_>>().join("/"),
                            weights.join(", ")
                        )
                            })
                        })?
                }
            };
        let meta = |path: &str| {
            files
                .get(path)
                .cloned()
                .ok_or_else(|| no(format!("commit {commit} lists no file `{path}`")))
        };
        let mut needed = vec![self.sized(client, r, commit, meta(&open)?)?];
        if open.ends_with(".safetensors.index.json") {
            let url = self.url(r, commit, &open);
            if needed[0].size > MAX_DOCUMENT {
                return Err(Error::BadResponse {
                    url,
                    problem: format!("the shard index is larger than {MAX_DOCUMENT} bytes"),
                });
            }
            let index = store.file(r, commit, &needed[0])?;
            fetch(Some(client), &index, &url, 0..index.size)?;
            let text = read_all(&index)?;
            let dir = open.rfind('/').map_or("", |i| &open[..=i]);
            let shards =
                parse_index(&String::from_utf8_lossy(&text)).map_err(|p| Error::BadResponse {
                    url: url.clone(),
                    problem: p,
                })?;
            for shard in shards {
                needed.push(self.sized(client, r, commit, meta(&format!("{dir}{shard}"))?)?);
            }
        }
        Ok(Selection {
            open,
            files: needed,
        })
    }

    /// `meta` with its size, asked of the server (`Range: bytes=0-0`) when the list had none.
    fn sized(
        &self,
        client: &Client,
        r: &HfRef,
        commit: &str,
        mut meta: FileMeta,
    ) -> Result<FileMeta> {
        if meta.size == u64::MAX {
            let url = self.url(r, commit, &meta.path);
            let total = client.get_range(&url, 0..1, None, &mut |_, _| Ok(()))?;
            meta.size = total.ok_or_else(|| Error::BadResponse {
                url,
                problem: "the server did not say the file's size".to_owned(),
            })?;
        }
        Ok(meta)
    }

    /// Opens the selection's stored files and makes sure their headers are present
    /// (fetching them with `client`, or failing without one).
    fn finish(
        &self,
        r: &HfRef,
        store: &Store,
        commit: &str,
        selection: &Selection,
        client: Option<Client>,
    ) -> Result<Located> {
        let mut files = Vec::new();
        for meta in &selection.files {
            let stored = store.file(r, commit, meta)?;
            let url = self.url(r, commit, &meta.path);
            self.fetch_header(client.as_ref(), &stored, &url)?;
            files.push(RemoteFile {
                stored,
                url,
                sha256: meta.sha256.clone(),
            });
        }
        let path = store.files_dir(r, commit).join(&selection.open);
        let model = RemoteModel::new(r, commit, files, client, self.opts.clone());
        Ok(Located {
            path,
            handle: Handle::remote(model),
        })
    }

    /// Fetches what the format needs to open `stored`: a safetensors header, a GGUF header,
    /// or (any other file) all of it.
    fn fetch_header(&self, client: Option<&Client>, stored: &StoredFile, url: &str) -> Result<()> {
        let size = stored.size;
        let path = &stored.repo_path;
        if path.ends_with(".safetensors") && size >= ST_PREFIX {
            fetch(client, stored, url, 0..ST_PREFIX)?;
            let mut len = [0u8; 8];
            stored.read_at(0, &mut len)?;
            let declared = u64::from_le_bytes(len);
            // A length past the limit or the file is left for the format to refuse (it checks
            // both before reading a byte of the header).
            if declared <= self.opts.max_header && ST_PREFIX.saturating_add(declared) <= size {
                fetch(client, stored, url, ST_PREFIX..ST_PREFIX + declared)?;
            }
            return Ok(());
        }
        if path.ends_with(".gguf") {
            let mut want = GGUF_FIRST.min(size);
            loop {
                fetch(client, stored, url, 0..want)?;
                let mut prefix = vec![0u8; usize::try_from(want).unwrap_or(0)];
                stored.read_at(0, &mut prefix)?;
                match gguf::scan(&prefix) {
                    Scan::DataStart(end) => {
                        return fetch(client, stored, url, 0..end.min(size));
                    }
                    Scan::NeedMore if want < size && want < GGUF_MAX => {
                        want = want.saturating_mul(4).min(size).min(GGUF_MAX);
                    }
                    Scan::NeedMore => return Ok(()), // the format reports the truncation
                    Scan::Unknown => break,
                }
            }
        }
        fetch(client, stored, url, 0..size)
    }
}

/// The file a directory level opens: the default index, the default file, a single index, a
/// single safetensors file, a single GGUF file.
fn pick<'a>(level: &[&'a str]) -> Option<&'a str> {
    let find = |name: &str| level.iter().copied().find(|f| *f == name);
    let single = |suffix: &str| {
        let mut it = level.iter().copied().filter(|f| f.ends_with(suffix));
        match (it.next(), it.next()) {
            (Some(one), None) => Some(one),
            _ => None,
        }
    };
    find("model.safetensors.index.json")
        .or_else(|| find("model.safetensors"))
        .or_else(|| single(".safetensors.index.json"))
        .or_else(|| single(".safetensors"))
        .or_else(|| single(".gguf"))
}

/// Fetches the parts of `range` the store lacks (an error naming them without a client).
pub(crate) fn fetch(
    client: Option<&Client>,
    stored: &StoredFile,
    url: &str,
    range: std::ops::Range<u64>,
) -> Result<()> {
    for gap in stored.missing(range) {
        let Some(client) = client else {
            return Err(Error::NotFetched {
                file: stored.repo_path.clone(),
                start: gap.start,
                end: gap.end,
            });
        };
        fetch_range(client, stored, url, gap, &|_| {})?;
    }
    Ok(())
}

/// Fetches `range` into the store, committing whatever arrived even when the fetch fails
/// (a later attempt resumes there).
pub(crate) fn fetch_range(
    client: &Client,
    stored: &StoredFile,
    url: &str,
    range: std::ops::Range<u64>,
    progress: &dyn Fn(u64),
) -> Result<()> {
    let mut done_to = range.start;
    let result = client.get_range(url, range.clone(), Some(stored.size), &mut |at, bytes| {
        stored.write_at(at, bytes)?;
        done_to = at + bytes.len() as u64;
        progress(bytes.len() as u64);
        Ok(())
    });
    stored.commit(range.start..done_to)?;
    result.map(|_| ())
}

fn read_all(stored: &StoredFile) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; usize::try_from(stored.size.min(MAX_DOCUMENT)).unwrap_or(0)];
    stored.read_at(0, &mut buf)?;
    Ok(buf)
}

/// A reference the HF cache holds.
fn cached(r: &HfRef, hit: hfcache::Cached) -> Located {
    Located {
        path: hit.path.clone(),
        handle: Handle::cache(CacheModel {
            repo: r.repo(),
            revision: r.revision().to_owned(),
            commit: hit.commit,
            snapshot: hit.snapshot,
        }),
    }
}
