//! `weightkin-plugin-host`: loading metric plugins from shared libraries
//! (`weightkin --plugin PATH`).
//!
//! A plugin is a `.so` / `.dylib` / `.dll` built against `weightkin-plugin-abi` (see that
//! crate for the contract). [`load`] adds its metrics to a [`Registry`], after which recipes
//! use them by name like the built-ins.
//!
//! This is a crate of its own because it is where weightkin's trust boundary with foreign
//! code lies: it is the only crate that opens libraries and calls through C function pointers,
//! and the only one that needs `libloading`. The pipeline (`weightkin-runner`) sees plugin
//! metrics only as ordinary [`MetricSpec`]s in the registry. In stages:
//!
//! * `object_check`: is the file a shared library for this platform ([`check_header`])?
//! * `descriptor`: the ABI checks: the version first ([`check_abi_version`]), then every field
//!   of the descriptor the plugin's entry point returns;
//! * `adapter`: each plugin metric as a [`weightkin_core::Metric`], with every value it
//!   returns checked;
//! * this file: explicit paths, opening, registering all or nothing, and [`Error`].
//!
//! # Trust
//!
//! **Loading a plugin runs its code.** The dynamic loader runs a library's initialisers as it
//! opens it, before weightkin can look at anything, and the plugin's functions then run inside
//! this process with its permissions. A plugin is therefore trusted code, like weightkin
//! itself; model files are the untrusted input. What this crate does is make the boundary
//! *sound* and a wrong library *obvious*, not make a malicious library harmless:
//!
//! * plugins come only from explicit paths — `--plugin PATH` and [`PLUGIN_PATH_ENV`] — never
//!   from a search of directories, and a path is made absolute before the loader sees it, so
//!   the system's library search path is never consulted;
//! * before opening a file, its header is checked: a file that is not a shared library, or is
//!   one for another architecture or operating system, is refused with a message that says so
//!   ([`check_header`]);
//! * the ABI version is the first thing read from the descriptor and is range-checked
//!   ([`OLDEST_ABI`]..=[`NEWEST_ABI`]) before any other field is read or any other function
//!   called; every other field is then validated (names, UTF-8, one-line docs, ranges, flags)
//!   and the plugin is registered whole or not at all;
//! * only `#[repr(C)]` data and `extern "C"` calls cross the boundary; error messages come back
//!   through a buffer this side owns and bounds ([`MESSAGE_CAP`]);
//! * every value a plugin returns is checked: NaN, infinities and values outside the declared
//!   range become [`MetricFailure`](weightkin_core::MetricFailure) errors and never reach a
//!   report;
//! * libraries are never unloaded (the handle is leaked), so the `'static` metric specs and
//!   function pointers this crate hands out stay valid for the life of the process.

mod adapter;
mod descriptor;
mod object_check;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use weightkin_core::{Error as CoreError, MetricSpec, Origin, Registry};
use weightkin_plugin_abi as abi;

pub use descriptor::check_abi_version;
pub use object_check::check_header;

use descriptor::{read_descriptor, Descriptor};
use object_check::HEADER_BYTES;

/// Environment variable with plugin paths, separated like `PATH` (`:` on Unix, `;` on
/// Windows). Loaded before any `--plugin` flag.
pub const PLUGIN_PATH_ENV: &str = "WEIGHTKIN_PLUGIN_PATH";

/// Oldest plugin ABI version this weightkin loads.
pub const OLDEST_ABI: u32 = 1;

/// Newest plugin ABI version this weightkin loads (the version of its `weightkin-plugin-abi`).
pub const NEWEST_ABI: u32 = abi::ABI_VERSION;

/// Most metrics one plugin may declare: a bound on what a corrupt descriptor can make the host
/// read, far above any real plugin.
pub const MAX_METRICS: usize = 1024;

/// Most parameter names one metric may declare.
pub const MAX_PARAMS: usize = 256;

/// Longest metric, parameter or plugin name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// Longest doc or version string, in bytes.
pub const MAX_TEXT_LEN: usize = 4096;

/// Capacity of the buffer a plugin writes an error message into; longer messages are cut.
pub const MESSAGE_CAP: usize = 1024;

/// Errors from loading a plugin.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The plugin at `path` could not be loaded; the [`LoadProblem`] says why.
    #[error("cannot load plugin {}", path.display())]
    Load {
        /// The library, as given.
        path: PathBuf,
        /// Why.
        #[source]
        problem: Box<LoadProblem>,
    },
}

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadProblem {
    /// The file could not be read.
    #[error("cannot read it")]
    Read(#[source] std::io::Error),
    /// The file is not a shared library.
    #[error("not a shared library: {0}")]
    NotSharedLibrary(&'static str),
    /// The file is a shared library for another architecture or operating system.
    #[error("built for {found}, but this weightkin needs {expected}")]
    WrongArchitecture {
        /// What the header says.
        found: String,
        /// What this build of weightkin can load.
        expected: String,
    },
    /// The dynamic loader refused the library (missing dependency, bad relocation, …).
    #[error("the dynamic loader refused it")]
    Open(#[source] libloading::Error),
    /// The library does not export [`abi::ENTRY_SYMBOL`].
    #[error("it exports no `{symbol}` symbol, so it is not a weightkin plugin")]
    MissingEntry {
        /// The symbol looked for.
        symbol: &'static str,
        /// The loader's error.
        #[source]
        source: libloading::Error,
    },
    /// The entry point returned a null or misaligned pointer.
    #[error("its entry point returned a null or misaligned descriptor")]
    BadDescriptor,
    /// The plugin was built for an ABI version older than this weightkin supports.
    #[error(
        "it was built for plugin ABI version {found}, older than the oldest this weightkin \
         loads ({oldest}); rebuild it against weightkin-plugin-abi with ABI version {newest}"
    )]
    AbiTooOld {
        /// The plugin's version.
        found: u32,
        /// [`OLDEST_ABI`].
        oldest: u32,
        /// [`NEWEST_ABI`].
        newest: u32,
    },
    /// The plugin was built for an ABI version newer than this weightkin supports.
    #[error(
        "it was built for plugin ABI version {found}, newer than the newest this weightkin \
         loads ({newest}); upgrade weightkin or rebuild the plugin against an older ABI"
    )]
    AbiTooNew {
        /// The plugin's version.
        found: u32,
        /// [`NEWEST_ABI`].
        newest: u32,
    },
    /// A field of the descriptor is invalid.
    #[error("{field}: {problem}")]
    InvalidDescriptor {
        /// Which field (`metric #2 name`, `metric \`x\` range`, …).
        field: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// A metric could not be registered (its name is taken: the error names the owner).
    #[error("cannot register its metrics")]
    Register(#[source] CoreError),
}

/// A loaded plugin.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The library, as an absolute path.
    pub path: PathBuf,
    /// Plugin name, from its descriptor.
    pub name: String,
    /// Plugin version, from its descriptor.
    pub version: String,
    /// Its metrics, as registered.
    pub metrics: Vec<&'static MetricSpec>,
}

/// The paths listed in [`PLUGIN_PATH_ENV`], empty entries skipped.
pub fn env_paths() -> Vec<PathBuf> {
    std::env::var_os(PLUGIN_PATH_ENV)
        .map(|v| {
            std::env::split_paths(&v)
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Loads every plugin in `paths`, in order, into `registry`; stops at the first failure.
pub fn load_all<P: AsRef<Path>>(
    registry: &mut Registry,
    paths: impl IntoIterator<Item = P>,
) -> Result<Vec<Loaded>, Error> {
    paths
        .into_iter()
        .map(|p| load(registry, p.as_ref()))
        .collect()
}

/// Loads the plugin at `path` and registers its metrics. Loading the same file twice (by
/// any path that resolves to it) returns the plugin already loaded.
///
/// This runs the library's code: see the [crate docs](crate).
pub fn load(registry: &mut Registry, path: &Path) -> Result<Loaded, Error> {
    let fail = |problem| Error::Load {
        path: path.to_owned(),
        problem: Box::new(problem),
    };
    // Absolute, so that the dynamic loader opens exactly this file and never searches.
    let path = std::fs::canonicalize(path).map_err(|e| fail(LoadProblem::Read(e)))?;
    if let Some(loaded) = already_loaded(registry, &path) {
        return Ok(loaded);
    }
    let mut head = Vec::new();
    File::open(&path)
        .and_then(|f| f.take(HEADER_BYTES).read_to_end(&mut head))
        .map_err(|e| fail(LoadProblem::Read(e)))?;
    check_header(&head).map_err(fail)?;
    let library = open(&path).map_err(fail)?;
    // SAFETY: the symbol is declared with the type the ABI gives it; a library that exports
    // something else under this name breaks the plugin contract (see the crate docs: a
    // plugin is trusted code).
    let entry = unsafe { library.get::<abi::EntryFn>(abi::ENTRY_SYMBOL.as_bytes()) }
        .map(|symbol| *symbol)
        .map_err(|source| {
            fail(LoadProblem::MissingEntry {
                symbol: abi::ENTRY_SYMBOL,
                source,
            })
        })?;
    // SAFETY: `entry` has the ABI's entry type, takes no arguments and returns a pointer to
    // static data; the pointer is checked before use.
    let descriptor = unsafe { read_descriptor(entry()) }.map_err(fail)?;
    // Never unloaded: the specs registered below hold function pointers into the library.
    std::mem::forget(library);
    register(registry, path, descriptor)
}

/// The plugin already loaded from `path` (absolute), if any.
fn already_loaded(registry: &Registry, path: &Path) -> Option<Loaded> {
    let mut found: Option<Loaded> = None;
    for (spec, origin) in registry.metrics_with_origin() {
        if let Origin::Library {
            path: p,
            plugin,
            version,
        } = origin
        {
            if p == path {
                found
                    .get_or_insert_with(|| Loaded {
                        path: p.clone(),
                        name: plugin.clone(),
                        version: version.clone(),
                        metrics: Vec::new(),
                    })
                    .metrics
                    .push(spec);
            }
        }
    }
    found
}

#[cfg(unix)]
fn open(path: &Path) -> Result<libloading::Library, LoadProblem> {
    use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
    // RTLD_NOW: resolve every symbol now, so a library with a missing dependency fails here
    // rather than in the middle of an audit. RTLD_LOCAL: its symbols stay out of the global
    // namespace, so two plugins' entry points cannot clash.
    // SAFETY: opening a library runs its initialisers; plugins are trusted code by contract
    // (crate docs), and the path is an explicit, absolute one the user gave.
    unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }
        .map(Into::into)
        .map_err(LoadProblem::Open)
}

#[cfg(not(unix))]
fn open(path: &Path) -> Result<libloading::Library, LoadProblem> {
    // SAFETY: as above.
    unsafe { libloading::Library::new(path) }.map_err(LoadProblem::Open)
}

/// Registers a validated plugin's metrics, all or none.
fn register(registry: &mut Registry, path: PathBuf, d: Descriptor) -> Result<Loaded, Error> {
    let fail = |problem| Error::Load {
        path: path.clone(),
        problem: Box::new(problem),
    };
    for m in &d.metrics {
        registry
            .check_metric_name(&m.name)
            .map_err(|e| fail(LoadProblem::Register(e)))?;
    }
    let origin = Origin::Library {
        path: path.clone(),
        plugin: d.name.clone(),
        version: d.version.clone(),
    };
    let mut metrics = Vec::with_capacity(d.metrics.len());
    for m in d.metrics {
        let spec = adapter::leak_spec(m);
        registry
            .add_metric_from(spec, origin.clone())
            .map_err(|e| fail(LoadProblem::Register(e)))?;
        metrics.push(spec);
    }
    Ok(Loaded {
        path: path.clone(),
        name: d.name,
        version: d.version,
        metrics,
    })
}

#[cfg(test)]
mod tests;
