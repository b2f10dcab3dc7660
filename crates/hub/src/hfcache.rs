//! Resolving an `hf://` reference in the local Hugging Face cache.
//!
//! The cache layout is `huggingface_hub`'s (`file_download.py`): a repository lives in
//! `models--{org}--{name}/`; `refs/{revision}` holds the commit a branch or tag pointed to
//! when it was last downloaded; `snapshots/{commit}/` mirrors the repository's files at that
//! commit (as symbolic links into `blobs/`, named by the file's ETag — the SHA-256 for LFS
//! files). A revision that is a full commit hash names its snapshot directly.
//!
//! A reference resolves here only when the snapshot holds the weights: the file named, or for
//! a directory, every shard its `*.safetensors.index.json` lists (or, without an index, some
//! weight file). Anything less is a [`Miss`] that says what is missing, so the caller can
//! fetch it, or refuse with that text when offline.

use std::path::{Path, PathBuf};

use crate::reference::{is_commit, HfRef};

/// Largest shard index read from the cache to check its shards are present.
const MAX_INDEX: u64 = 64 << 20;
/// File endings of weight files, for a snapshot directory without an index.
const WEIGHT_SUFFIXES: &[&str] = &[
    ".safetensors",
    ".gguf",
    ".bin",
    ".pt",
    ".pth",
    ".onnx",
    ".jit",
];

/// A reference found in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cached {
    /// The resolved commit (40 lowercase hex digits).
    pub commit: String,
    /// The file or directory to open (inside the snapshot).
    pub path: PathBuf,
    /// The snapshot directory.
    pub snapshot: PathBuf,
}

/// Why a reference did not resolve in the cache: the first thing missing, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Miss(pub String);

/// The cache folder name of `org/name`.
pub fn repo_folder(r: &HfRef) -> String {
    format!("models--{}--{}", r.org, r.name)
}

/// Looks `r` up in each of `caches` in turn; the first that holds its weights wins.
pub fn resolve(caches: &[PathBuf], r: &HfRef) -> Result<Cached, Miss> {
    let mut first_miss = None;
    for cache in caches {
        match resolve_in(cache, r) {
            Ok(hit) => return Ok(hit),
            Err(miss) => {
                // The most specific miss (the repository was there) is the useful one.
                let found_repo = cache.join(repo_folder(r)).is_dir();
                if first_miss.is_none() || found_repo {
                    first_miss = Some((miss, found_repo));
                }
                if found_repo {
                    break;
                }
            }
        }
    }
    Err(first_miss.map_or_else(
        || Miss("no Hugging Face cache directory is set".to_owned()),
        |(m, _)| m,
    ))
}

/// The commit `revision` names in the repository folder `repo` (a commit hash directly; a
/// branch or tag through `refs/`).
pub fn commit_of(repo: &Path, revision: &str) -> Result<String, Miss> {
    if is_commit(revision) {
        return Ok(revision.to_ascii_lowercase());
    }
    let file = repo.join("refs").join(revision);
    let text = std::fs::read_to_string(&file).map_err(|_| {
        Miss(format!(
            "the cache has no ref `{revision}` ({} is missing)",
            file.display()
        ))
    })?;
    let commit = text.trim();
    if is_commit(commit) {
        Ok(commit.to_ascii_lowercase())
    } else {
        Err(Miss(format!(
            "{} does not hold a commit hash",
            file.display()
        )))
    }
}

fn resolve_in(cache: &Path, r: &HfRef) -> Result<Cached, Miss> {
    let repo = cache.join(repo_folder(r));
    if !repo.is_dir() {
        return Err(Miss(format!("the cache has no {}", repo_folder(r))));
    }
    let commit = commit_of(&repo, r.revision())?;
    let snapshot = repo.join("snapshots").join(&commit);
    if !snapshot.is_dir() {
        return Err(Miss(format!(
            "the cache has no snapshot of commit {commit} ({} is missing)",
            snapshot.display()
        )));
    }
    let path = match &r.subpath {
        Some(sub) => snapshot.join(sub),
        None => snapshot.clone(),
    };
    if path.is_file() {
        return Ok(Cached {
            commit,
            path,
            snapshot,
        });
    }
    if !path.is_dir() {
        return Err(Miss(format!(
            "snapshot {commit} lacks `{}`",
            r.subpath.as_deref().unwrap_or("")
        )));
    }
    weights_present(&path).map_err(|what| Miss(format!("snapshot {commit}: {what}")))?;
    Ok(Cached {
        commit,
        path,
        snapshot,
    })
}

/// Whether directory `dir` holds complete weights: every shard of its index, or (without an
/// index) at least one weight file.
fn weights_present(dir: &Path) -> Result<(), String> {
    let entries =
        std::fs::read_dir(dir).map_err(|_| format!("{} cannot be listed", dir.display()))?;
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let index = names
        .iter()
        .find(|n| n.as_str() == "model.safetensors.index.json")
        .or_else(|| {
            names
                .iter()
                .find(|n| n.ends_with(".safetensors.index.json"))
        });
    if let Some(index) = index {
        for shard in index_shards(&dir.join(index))? {
            if !dir.join(&shard).is_file() {
                return Err(format!("`{shard}` (listed by {index}) is not in the cache"));
            }
        }
        return Ok(());
    }
    if names
        .iter()
        .any(|n| WEIGHT_SUFFIXES.iter().any(|s| n.ends_with(s)))
    {
        Ok(())
    } else {
        Err(format!("{} holds no weight file", dir.display()))
    }
}

/// The shard file names an index's `weight_map` lists (sorted, unique).
pub(crate) fn index_shards(path: &Path) -> Result<Vec<String>, String> {
    use std::io::Read;
    let file =
        std::fs::File::open(path).map_err(|_| format!("{} cannot be read", path.display()))?;
    let mut text = String::new();
    file.take(MAX_INDEX)
        .read_to_string(&mut text)
        .map_err(|_| format!("{} cannot be read", path.display()))?;
    parse_index(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The shard names of a `*.safetensors.index.json` text: sorted, unique, each a plain file
/// name (no `/`, `\`, `..`), since shards must sit beside their index.
pub(crate) fn parse_index(text: &str) -> Result<Vec<String>, String> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: std::collections::BTreeMap<String, String>,
    }
    let index: Index = serde_json::from_str(text).map_err(|e| format!("not a shard index: {e}"))?;
    let mut shards: Vec<String> = index.weight_map.into_values().collect();
    shards.sort();
    shards.dedup();
    for s in &shards {
        let plain = !s.is_empty()
            && s != "."
            && s != ".."
            && !s.contains(['/', '\\', ':'])
            && !s.chars().any(char::is_control);
        if !plain {
            return Err(format!("shard name `{s}` is not a plain file name"));
        }
    }
    Ok(shards)
}

/// The SHA-256 the cache's blob name gives for `file` (a snapshot entry is a link to
/// `blobs/{etag}`, and an LFS file's ETag is its SHA-256), if it is one.
pub fn blob_sha256(file: &Path) -> Option<String> {
    let target = std::fs::read_link(file).ok()?;
    let name = target.file_name()?.to_str()?;
    (name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| name.to_ascii_lowercase())
}
