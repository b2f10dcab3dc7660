//! Knobs that are not part of a recipe and do not change the report: limits, progress and
//! cancellation, the hash cache, the hub.
//!
//! Cancellation: a front end that lets its user stop an audit (the Python package's Ctrl-C)
//! answers [`Progress::cancelled`]; the pipeline asks through [`RunOptions::checkpoint`]
//! before each unit of work it schedules (a tensor pair, a grid cell or slab, a null sample,
//! a file to hash) and, once told to stop, returns [`Error::Cancelled`] instead of a report.
//! A unit already running is finished, so a stop takes effect within one tensor pair's pass
//! per worker thread; nothing is written, and no thread is left behind. Polling an atomic
//! flag per tensor pair costs nothing next to streaming the pair.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use weightkin_core::{DirectReads, Limits};
use weightkin_hub::{Hub, HubEnv, HubOptions, WarningSink};

use crate::hashcache::HashCache;
use crate::Error;

/// Environment variable naming a directory, for tests of cancellation only: with it set, the
/// first tensor pair a process measures, once measured, creates `DIR/paused` and waits until
/// [`Progress::cancelled`] says stop. A test can then interrupt an audit that is certainly in
/// the middle of its work, without timing.
pub const CANCEL_PAUSE_ENV: &str = "WEIGHTKIN_TEST_CANCEL_PAUSE";

/// Receives progress events and may ask the audit to stop; the CLI draws a bar from them.
/// Calls are cheap and may come from any thread.
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
    /// Whether the audit should stop: polled before each unit of work (see the module
    /// documentation). Once it returns `true` it should keep returning `true`.
    fn cancelled(&self) -> bool {
        false
    }
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
    /// Whether passes may read cold tensors with `O_DIRECT` instead of through the page cache
    /// ([`DirectReads`]: by default where the models are too large to stay cached). Reports
    /// are byte-identical either way.
    pub direct: DirectReads,
}

/// The environment variable that sets [`RunOptions::direct`] for a front end: `auto` (the
/// default), `always` or `never`.
pub const DIRECT_READS_ENV: &str = "WEIGHTKIN_DIRECT_READS";

/// [`RunOptions::direct`] from [`DIRECT_READS_ENV`]; any other value than the three is said on
/// stderr and taken as `auto`.
fn direct_from_env() -> DirectReads {
    let Some(v) = std::env::var_os(DIRECT_READS_ENV) else {
        return DirectReads::Auto;
    };
    match v.to_str() {
        Some("auto") | Some("") => DirectReads::Auto,
        Some("always") => DirectReads::Always,
        Some("never") => DirectReads::Never,
        _ => {
            #[allow(clippy::print_stderr)] // a front end's setting: said where it is read
            {
                eprintln!(
                    "weightkin: {DIRECT_READS_ENV}={v:?} is not auto, always or never; using auto"
                );
            }
            DirectReads::Auto
        }
    }
}

impl<'a> RunOptions<'a> {
    /// Options as the environment sets them up for a front end: default limits, `progress`,
    /// the hash cache from `$WEIGHTKIN_CACHE_DIR` (or `~/.cache/weightkin`) when
    /// `hash_cache`, and the hub from the environment ([`hub_from_env`]), offline when
    /// `offline`.
    pub fn from_env(progress: &'a dyn Progress, hash_cache: bool, offline: bool) -> Self {
        RunOptions {
            limits: Limits::default(),
            progress,
            hash_cache: if hash_cache {
                HashCache::from_env()
            } else {
                None
            },
            hub: Some(hub_from_env(offline)),
            direct: direct_from_env(),
        }
    }

    /// `Err(`[`Error::Cancelled`]`)` once [`Progress::cancelled`] says stop; called before
    /// each unit of work.
    pub(crate) fn checkpoint(&self) -> Result<(), Error> {
        if self.progress.cancelled() {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// The hub as the environment sets it up (`HF_ENDPOINT`, `HF_TOKEN`, `HF_HUB_OFFLINE`, the
/// caches), offline when `offline`; its warnings are printed on stderr.
pub fn hub_from_env(offline: bool) -> Arc<Hub> {
    let warn: WarningSink = Arc::new(|w| eprintln!("warning: {w}"));
    let opts = HubOptions {
        offline,
        warn,
        ..HubOptions::default()
    };
    Arc::new(Hub::new(HubEnv::from_env(), opts))
}

/// The [`CANCEL_PAUSE_ENV`] hook, called when a tensor pair has been measured: nothing
/// unless the variable is set; then, the first time in the process, waits for cancellation.
pub(crate) fn test_pause(progress: &dyn Progress) {
    static DIR: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();
    static PAUSED: AtomicBool = AtomicBool::new(false);
    let Some(dir) = DIR.get_or_init(|| std::env::var_os(CANCEL_PAUSE_ENV).map(Into::into)) else {
        return;
    };
    if PAUSED.swap(true, Ordering::Relaxed) || std::fs::write(dir.join("paused"), b"").is_err() {
        return;
    }
    while !progress.cancelled() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
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
            direct: DirectReads::Auto,
        }
    }
}
