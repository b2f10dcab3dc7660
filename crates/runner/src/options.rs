//! Knobs that are not part of a recipe and do not change the report: limits, progress, the
//! hash cache, the hub.

use std::sync::Arc;

use weightkin_core::Limits;
use weightkin_hub::Hub;

use crate::hashcache::HashCache;

/// Receives progress events; the CLI draws a bar from them. Calls are cheap and may come from
/// any thread.
pub trait Progress: Sync {
    /// A phase starts with `total` units of work (`unit` names them: "bytes", "elements").
    fn start(&self, phase: &str, total: u64, unit: &str) {
        let _ = (phase, total, unit);
    }
    /// `n` more units are done.
    fn advance(&self, n: u64) {
        let _ = n;
    }
    /// The phase is over.
    fn finish(&self) {}
}

/// A [`Progress`] that ignores everything.
pub struct NoProgress;
impl Progress for NoProgress {}

/// Knobs that are not part of a recipe (they do not change the report).
pub struct RunOptions<'a> {
    /// Resource caps for opening model files.
    pub limits: Limits,
    /// Progress sink.
    pub progress: &'a dyn Progress,
    /// Where model files' BLAKE3 hashes are looked up before hashing them, and stored after
    /// (see [`HashCache`]); `None` hashes every file. A cached hash is the same string the
    /// hash pass would give, so reports are byte-identical either way.
    pub hash_cache: Option<HashCache>,
    /// How `hf://` models are reached (the Hugging Face cache, the fetched-bytes store, the
    /// hub; `--offline`). `None`: settings from the environment with default options, made
    /// when a recipe first names an `hf://` model.
    pub hub: Option<Arc<Hub>>,
}

impl Default for RunOptions<'_> {
    /// No progress, default limits, and no hash cache (so that library callers and tests
    /// neither read nor write anything outside their inputs; the CLI turns the cache on).
    fn default() -> Self {
        RunOptions {
            limits: Limits::default(),
            progress: &NoProgress,
            hash_cache: None,
            hub: None,
        }
    }
}
