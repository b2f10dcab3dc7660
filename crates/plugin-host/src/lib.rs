//! Loading metric plugins from shared libraries (`weightkin --plugin PATH`).
//!
//! A plugin is a `.so` / `.dylib` / `.dll` built against `weightkin-plugin-abi` (see that
//! crate for the contract). [`load`] adds its metrics to a [`Registry`], after which recipes
//! use them by name like the built-ins.
//!
//! # Trust
//!
//! **Loading a plugin runs its code.** The dynamic loader runs a library's initialisers as it
//! opens it, before weightkin can look at anything, and the plugin's functions then run inside
//! this process with its permissions. A plugin is therefore trusted code, like weightkin
//! itself; model files are the untrusted input. What this module does is make the boundary
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
//!   range become [`MetricFailure`] errors and never reach a report;
//! * libraries are never unloaded (the handle is leaked), so the `'static` metric specs and
//!   function pointers this module hands out stay valid for the life of the process.

use std::ffi::{c_char, CStr};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use weightkin_core::{
    Error as CoreError, Input, Metric, MetricFailure, MetricSpec, MetricValue, Needs, Origin,
    ParamProblem, ParamValue, Params, Registry, Undefined,
};
use weightkin_plugin_abi as abi;

use crate::Error;

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

/// How many leading bytes [`check_header`] reads (a PE header sits at an offset stored at
/// byte 0x3C, in practice well inside the first KiB).
const HEADER_BYTES: u64 = 4096;

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
/// This runs the library's code: see the [module docs](self).
pub fn load(registry: &mut Registry, path: &Path) -> Result<Loaded, Error> {
    let fail = |problem| Error::Plugin {
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
    // something else under this name breaks the plugin contract (see the module docs: a
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
    // (module docs), and the path is an explicit, absolute one the user gave.
    unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }
        .map(Into::into)
        .map_err(LoadProblem::Open)
}

#[cfg(not(unix))]
fn open(path: &Path) -> Result<libloading::Library, LoadProblem> {
    // SAFETY: as above.
    unsafe { libloading::Library::new(path) }.map_err(LoadProblem::Open)
}

/// One metric of a validated descriptor.
struct MetricDesc {
    name: String,
    doc: String,
    range: (f64, f64),
    symmetric: bool,
    identity: Option<f64>,
    params: Vec<String>,
    check_params: Option<abi::CheckParamsFn>,
    compute: abi::ComputeFn,
}

/// A validated descriptor.
struct Descriptor {
    name: String,
    version: String,
    metrics: Vec<MetricDesc>,
}

/// Checks the ABI version, then reads and validates the rest of the descriptor.
///
/// # Safety
/// `ptr` must be null or point to a descriptor that starts with an [`abi::AbiPrefix`] and,
/// if its version is [`abi::ABI_VERSION`], is a valid [`abi::PluginDescriptor`] whose pointers
/// are valid for the lengths it states and live forever.
unsafe fn read_descriptor(ptr: *const abi::PluginDescriptor) -> Result<Descriptor, LoadProblem> {
    if ptr.is_null() || !ptr.is_aligned() {
        return Err(LoadProblem::BadDescriptor);
    }
    // The version first, through the prefix every ABI version shares.
    // SAFETY: non-null and aligned (the prefix's alignment is at most the descriptor's); every
    // version of the descriptor starts with this u32.
    let version = unsafe { (*ptr.cast::<abi::AbiPrefix>()).abi_version };
    check_abi_version(version)?;
    // SAFETY: the version is one we know, so the pointer is to a descriptor of this layout.
    let d = unsafe { &*ptr };
    // SAFETY (strings): pointers from a descriptor of a known version; checked for null.
    let name = unsafe { text(d.name, MAX_NAME_LEN, || "plugin name".to_owned()) }?;
    let version = unsafe { text(d.version, MAX_TEXT_LEN, || "plugin version".to_owned()) }?;
    if d.metric_count > MAX_METRICS {
        return Err(invalid(
            "metric count",
            "more metrics than weightkin accepts",
        ));
    }
    if d.metric_count > 0 && (d.metrics.is_null() || !d.metrics.is_aligned()) {
        return Err(invalid("metrics", "null or misaligned array"));
    }
    let raw: &[abi::MetricDescriptor] = if d.metric_count == 0 {
        return Err(invalid("metrics", "the plugin declares no metrics"));
    } else {
        // SAFETY: non-null, aligned, `metric_count` entries by the descriptor's contract.
        unsafe { std::slice::from_raw_parts(d.metrics, d.metric_count) }
    };
    let mut metrics: Vec<MetricDesc> = Vec::with_capacity(raw.len());
    for (i, m) in raw.iter().enumerate() {
        // SAFETY: an entry of a descriptor of a known version.
        let desc = unsafe { read_metric(i, m) }?;
        if metrics.iter().any(|other| other.name == desc.name) {
            return Err(invalid(
                &format!("metric `{}`", desc.name),
                "declared twice by this plugin",
            ));
        }
        metrics.push(desc);
    }
    Ok(Descriptor {
        name,
        version,
        metrics,
    })
}

/// Range-checks a plugin's ABI version.
pub fn check_abi_version(version: u32) -> Result<(), LoadProblem> {
    if version < OLDEST_ABI {
        Err(LoadProblem::AbiTooOld {
            found: version,
            oldest: OLDEST_ABI,
            newest: NEWEST_ABI,
        })
    } else if version > NEWEST_ABI {
        Err(LoadProblem::AbiTooNew {
            found: version,
            newest: NEWEST_ABI,
        })
    } else {
        Ok(())
    }
}

fn invalid(field: &str, problem: &'static str) -> LoadProblem {
    LoadProblem::InvalidDescriptor {
        field: field.to_owned(),
        problem,
    }
}

/// A NUL-terminated UTF-8 string of at most `max` bytes, non-empty, without control
/// characters.
///
/// # Safety
/// `p` must be null or point to a NUL-terminated string.
unsafe fn text(
    p: *const c_char,
    max: usize,
    field: impl Fn() -> String,
) -> Result<String, LoadProblem> {
    let bad = |problem| LoadProblem::InvalidDescriptor {
        field: field(),
        problem,
    };
    if p.is_null() {
        return Err(bad("null pointer"));
    }
    // SAFETY: non-null and NUL-terminated by the caller's contract.
    let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
    if bytes.len() > max {
        return Err(bad("too long"));
    }
    let s = std::str::from_utf8(bytes).map_err(|_| bad("not valid UTF-8"))?;
    if s.trim().is_empty() {
        return Err(bad("empty"));
    }
    if s.chars().any(char::is_control) {
        return Err(bad("contains a line break or control character"));
    }
    Ok(s.to_owned())
}

/// Whether `s` is usable as a metric or parameter name in a recipe: lower-case ASCII
/// letters, digits, `-` and `_`, starting with a letter.
fn is_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Reads and validates metric `i`.
///
/// # Safety
/// `m` must come from a descriptor of a known ABI version.
unsafe fn read_metric(i: usize, m: &abi::MetricDescriptor) -> Result<MetricDesc, LoadProblem> {
    // SAFETY: pointers of a known-version descriptor.
    let name = unsafe { text(m.name, MAX_NAME_LEN, || format!("metric #{} name", i + 1)) }?;
    if !is_name(&name) {
        return Err(invalid(
            &format!("metric #{} name `{name}`", i + 1),
            "must be lower-case ASCII letters, digits, `-` or `_`, starting with a letter",
        ));
    }
    let field = |what: &str| format!("metric `{name}` {what}");
    // SAFETY: as above.
    let doc = unsafe { text(m.doc, MAX_TEXT_LEN, || field("doc")) }?;
    let (lo, hi) = (m.range_lo, m.range_hi);
    if lo.is_nan() || hi.is_nan() || lo >= hi {
        return Err(invalid(
            &field("range"),
            "not an interval (NaN, or low ≥ high)",
        ));
    }
    if m.flags & !abi::flags::ALL != 0 {
        return Err(invalid(&field("flags"), "unknown flag bits (a newer ABI?)"));
    }
    let identity = (m.flags & abi::flags::HAS_IDENTITY != 0).then_some(m.identity);
    if let Some(id) = identity {
        if !(id.is_finite() && lo <= id && id <= hi) {
            return Err(invalid(
                &field("identity"),
                "not a finite value within its range",
            ));
        }
    }
    if m.param_count > MAX_PARAMS {
        return Err(invalid(&field("parameters"), "more than weightkin accepts"));
    }
    let mut params: Vec<String> = Vec::with_capacity(m.param_count);
    if m.param_count > 0 {
        if m.params.is_null() || !m.params.is_aligned() {
            return Err(invalid(&field("parameters"), "null or misaligned array"));
        }
        // SAFETY: non-null, aligned, `param_count` entries by the descriptor's contract.
        let raw = unsafe { std::slice::from_raw_parts(m.params, m.param_count) };
        for (j, &p) in raw.iter().enumerate() {
            // SAFETY: as above.
            let p = unsafe { text(p, MAX_NAME_LEN, || field(&format!("parameter #{}", j + 1))) }?;
            if !is_name(&p) || params.contains(&p) {
                return Err(invalid(
                    &field(&format!("parameter `{p}`")),
                    "not a valid name, or declared twice",
                ));
            }
            params.push(p);
        }
    }
    let Some(compute) = m.compute else {
        return Err(invalid(&field("compute"), "null function pointer"));
    };
    Ok(MetricDesc {
        name,
        doc,
        range: (lo, hi),
        symmetric: m.flags & abi::flags::SYMMETRIC != 0,
        identity,
        params,
        check_params: m.check_params,
        compute,
    })
}

/// Registers a validated plugin's metrics, all or none.
fn register(registry: &mut Registry, path: PathBuf, d: Descriptor) -> Result<Loaded, Error> {
    let fail = |problem| Error::Plugin {
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
        let spec = leak_spec(m);
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

/// A `'static` [`MetricSpec`] for a plugin metric. Leaked on purpose: plugins are never
/// unloaded, and a spec lives as long as the registry that may hand it out.
fn leak_spec(m: MetricDesc) -> &'static MetricSpec {
    let name: &'static str = Box::leak(m.name.into_boxed_str());
    let params: &'static [&'static str] = Box::leak(
        m.params
            .into_iter()
            .map(|p| &*Box::leak(p.into_boxed_str()))
            .collect::<Box<[&'static str]>>(),
    );
    // The builder needs its own spec (to check parameter names the way built-ins do); the
    // spec needs the builder. The cell is filled right after the spec is made, before the
    // spec is registered, so `get` never finds it empty.
    let cell: &'static OnceLock<&'static MetricSpec> = Box::leak(Box::new(OnceLock::new()));
    let (range, compute, check_params) = (m.range, m.compute, m.check_params);
    let build = move |p: &Params| -> weightkin_core::Result<Box<dyn Metric>> {
        if let Some(spec) = cell.get() {
            spec.check_param_names(p)?;
        }
        let params_json = params_json(name, p)?;
        if let Some(check) = check_params {
            check_with_plugin(name, check, &params_json)?;
        }
        Ok(Box::new(PluginMetric {
            name,
            range,
            compute,
            params_json,
        }))
    };
    let spec: &'static MetricSpec = Box::leak(Box::new(MetricSpec {
        name,
        doc: Box::leak(m.doc.into_boxed_str()),
        range: m.range,
        symmetric: m.symmetric,
        identity: m.identity,
        params,
        // The ABI passes f32 buffers, so a plugin metric always reads the whole tensors.
        needs: Needs::Tensors,
        build: Box::leak(Box::new(build)),
    }));
    let _ = cell.set(spec);
    spec
}

/// The recipe's parameters as the JSON object the ABI passes. JSON has no NaN or infinity,
/// so such floats are refused here rather than silently becoming `null`.
fn params_json(metric: &'static str, p: &Params) -> weightkin_core::Result<Vec<u8>> {
    if let Some((k, _)) = p
        .iter()
        .find(|(_, v)| matches!(v, ParamValue::Float(f) if !f.is_finite()))
    {
        return Err(CoreError::InvalidParam {
            metric,
            param: k.clone(),
            problem: ParamProblem::BadValue {
                expected: "a finite number (plugins receive parameters as JSON)",
            },
        });
    }
    serde_json::to_vec(p).map_err(|e| CoreError::ParamsRejected {
        metric,
        message: format!("cannot encode the parameters as JSON: {e}"),
    })
}

/// Runs a plugin's own parameter check.
fn check_with_plugin(
    metric: &'static str,
    check: abi::CheckParamsFn,
    params_json: &[u8],
) -> weightkin_core::Result<()> {
    let mut buf = [0u8; MESSAGE_CAP];
    let mut message = abi::Message {
        ptr: buf.as_mut_ptr(),
        cap: buf.len(),
        len: 0,
    };
    // SAFETY: `params_json` is valid for its length and `message` points to `MESSAGE_CAP`
    // writable bytes, as `CheckParamsFn` requires.
    let status = unsafe { check(params_json.as_ptr(), params_json.len(), &mut message) };
    if status == abi::status::OK {
        return Ok(());
    }
    Err(CoreError::ParamsRejected {
        metric,
        message: message_text(&buf, message.len, status),
    })
}

/// The message a plugin wrote into `buf`, bounded by the buffer whatever `len` it claims.
fn message_text(buf: &[u8], len: usize, status: i32) -> String {
    let text = String::from_utf8_lossy(&buf[..len.min(buf.len())]).into_owned();
    if text.is_empty() {
        format!("(no message; status {status})")
    } else {
        text
    }
}

/// A plugin metric, built with its parameters.
///
/// It keeps the [`Metric`] defaults for [`Metric::example_axis`] (rows) and
/// [`Metric::max_elements`] ([`weightkin_core::DEFAULT_MAX_ELEMENTS`]): the ABI has no way to
/// declare either, so a pair larger than the bound reaches the plugin as an evenly strided
/// subset of whole rows of both tensors, with `shape[0]` reduced to match.
struct PluginMetric {
    name: &'static str,
    range: (f64, f64),
    compute: abi::ComputeFn,
    params_json: Vec<u8>,
}

impl Metric for PluginMetric {
    fn evaluate(&self, input: &Input<'_>) -> MetricValue {
        self.try_evaluate(input)
            .unwrap_or(MetricValue::Undefined(Undefined::PluginFailed))
    }

    fn try_evaluate(&self, input: &Input<'_>) -> weightkin_core::Result<MetricValue> {
        let fail = |problem| CoreError::MetricFailed {
            metric: self.name,
            problem,
        };
        let t = input
            .tensors
            .ok_or_else(|| fail(MetricFailure::NoTensors))?;
        let numel = t.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        // The ABI passes one length for both buffers: never hand the plugin buffers that
        // disagree with it.
        if t.a.len() != t.b.len() || numel != Some(t.a.len()) {
            return Err(fail(MetricFailure::ShapeMismatch {
                a: t.a.len(),
                b: t.b.len(),
                shape: t.shape.to_vec(),
            }));
        }
        let mut buf = [0u8; MESSAGE_CAP];
        let mut out = abi::ComputeOutput {
            value: f64::NAN,
            reason: 0,
            message: abi::Message {
                ptr: buf.as_mut_ptr(),
                cap: buf.len(),
                len: 0,
            },
        };
        let raw = abi::ComputeInput {
            a: t.a.as_ptr(),
            b: t.b.as_ptr(),
            len: t.a.len(),
            shape: t.shape.as_ptr(),
            rank: t.shape.len(),
            params: self.params_json.as_ptr(),
            params_len: self.params_json.len(),
        };
        // SAFETY: every pointer in `raw` is valid for the length it states for the duration
        // of the call, `out` is exclusively ours with `MESSAGE_CAP` writable bytes behind its
        // message, and the library is never unloaded.
        let status = unsafe { (self.compute)(&raw, &mut out) };
        let (lo, hi) = self.range;
        match status {
            abi::status::OK => {
                let v = out.value;
                if !v.is_finite() {
                    Err(fail(MetricFailure::NotFinite(v)))
                } else if v < lo || v > hi {
                    Err(fail(MetricFailure::OutOfRange { value: v, lo, hi }))
                } else {
                    Ok(MetricValue::Value(v))
                }
            }
            abi::status::UNDEFINED => undefined(out.reason)
                .map(MetricValue::Undefined)
                .ok_or_else(|| fail(MetricFailure::UnknownReason(out.reason))),
            abi::status::ERROR => Err(fail(MetricFailure::Reported(message_text(
                &buf,
                out.message.len,
                status,
            )))),
            other => Err(fail(MetricFailure::UnknownStatus(other))),
        }
    }
}

/// The core reason for an ABI reason code.
fn undefined(code: u32) -> Option<Undefined> {
    Some(match abi::Undefined::from_code(code)? {
        abi::Undefined::Empty => Undefined::Empty,
        abi::Undefined::NonFinite => Undefined::NonFinite,
        abi::Undefined::ZeroNorm => Undefined::ZeroNorm,
        abi::Undefined::Constant => Undefined::Constant,
        abi::Undefined::NotAMatrix => Undefined::NotAMatrix,
        abi::Undefined::TooFewExamples => Undefined::TooFewExamples,
    })
}

/// Object formats of shared libraries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ObjectFormat {
    Elf,
    MachO,
    Pe,
}

impl ObjectFormat {
    const fn phrase(self) -> &'static str {
        match self {
            ObjectFormat::Elf => "an ELF shared library",
            ObjectFormat::MachO => "a Mach-O dylib",
            ObjectFormat::Pe => "a Windows DLL",
        }
    }
}

/// This platform's object format.
const HOST_FORMAT: ObjectFormat = if cfg!(target_vendor = "apple") {
    ObjectFormat::MachO
} else if cfg!(windows) {
    ObjectFormat::Pe
} else {
    ObjectFormat::Elf
};

/// Architectures the header check knows: (name, ELF `e_machine`, Mach-O `cputype`, PE
/// `Machine`), from the ELF gABI, `<mach/machine.h>` and the PE/COFF "Machine Types" table.
const ARCHES: &[(&str, u32, u32, u32)] = &[
    ("x86-64", 62, 0x0100_0007, 0x8664),
    ("aarch64", 183, 0x0100_000C, 0xAA64),
    ("x86", 3, 7, 0x014C),
    ("arm", 40, 12, 0x01C4),
    ("riscv", 243, 0x0100_0018, 0x5064),
    ("powerpc64", 21, 0x0100_0012, u32::MAX),
    ("s390x", 22, u32::MAX, u32::MAX),
];

/// This build's architecture name, if [`ARCHES`] has it (elsewhere the header check leaves
/// the architecture to the dynamic loader).
const HOST_ARCH: Option<&str> = if cfg!(target_arch = "x86_64") {
    Some("x86-64")
} else if cfg!(target_arch = "aarch64") {
    Some("aarch64")
} else if cfg!(target_arch = "x86") {
    Some("x86")
} else if cfg!(target_arch = "arm") {
    Some("arm")
} else if cfg!(any(target_arch = "riscv64", target_arch = "riscv32")) {
    Some("riscv")
} else if cfg!(target_arch = "powerpc64") {
    Some("powerpc64")
} else if cfg!(target_arch = "s390x") {
    Some("s390x")
} else {
    None
};

/// The architecture called `machine` in `format`'s numbering.
fn arch_name(format: ObjectFormat, machine: u32) -> Option<&'static str> {
    ARCHES
        .iter()
        .find(|(_, elf, macho, pe)| {
            machine
                == match format {
                    ObjectFormat::Elf => *elf,
                    ObjectFormat::MachO => *macho,
                    ObjectFormat::Pe => *pe,
                }
        })
        .map(|(name, ..)| *name)
}

/// What this weightkin loads, in words.
fn host_description() -> String {
    let bits = if cfg!(target_pointer_width = "64") {
        "64"
    } else {
        "32"
    };
    match HOST_ARCH {
        Some(arch) => format!("{} for {arch} ({bits}-bit)", HOST_FORMAT.phrase()),
        None => format!("{} ({bits}-bit)", HOST_FORMAT.phrase()),
    }
}

fn u16_at(b: &[u8], at: usize, big_endian: bool) -> Option<u16> {
    let bytes: [u8; 2] = b.get(at..at.checked_add(2)?)?.try_into().ok()?;
    Some(if big_endian {
        u16::from_be_bytes(bytes)
    } else {
        u16::from_le_bytes(bytes)
    })
}

fn u32_le_at(b: &[u8], at: usize) -> Option<u32> {
    let bytes: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(bytes))
}

/// Checks the leading bytes of a file: it must be a shared library (ELF `ET_DYN`, Mach-O
/// `MH_DYLIB`/`MH_BUNDLE`, or a PE DLL) in this platform's object format, for this
/// architecture, word size and byte order. Offsets: ELF gABI ch. 4 (`e_ident`, `e_type` at 16,
/// `e_machine` at 18), `<mach-o/loader.h>` (`cputype` at 4, `filetype` at 12), PE/COFF spec
/// (signature offset at 0x3C, then `Machine` at +4 and `Characteristics` at +22).
pub fn check_header(head: &[u8]) -> Result<(), LoadProblem> {
    const TRUNCATED: LoadProblem = LoadProblem::NotSharedLibrary("its header is truncated");
    let host_64 = cfg!(target_pointer_width = "64");
    // (format, machine number, 64-bit, big-endian)
    let (format, machine, wide, big) = if head.starts_with(b"\x7fELF") {
        let (Some(&class), Some(&data)) = (head.get(4), head.get(5)) else {
            return Err(TRUNCATED);
        };
        let big = data == 2;
        let (Some(e_type), Some(e_machine)) = (u16_at(head, 16, big), u16_at(head, 18, big)) else {
            return Err(TRUNCATED);
        };
        if e_type != 3 {
            return Err(LoadProblem::NotSharedLibrary(
                "an ELF executable, object or core file, not a shared library (ET_DYN)",
            ));
        }
        (ObjectFormat::Elf, u32::from(e_machine), class == 2, big)
    } else if let Some(wide) = match head.get(..4) {
        Some([0xCF, 0xFA, 0xED, 0xFE]) => Some(true),
        Some([0xCE, 0xFA, 0xED, 0xFE]) => Some(false),
        _ => None,
    } {
        let (Some(cputype), Some(filetype)) = (u32_le_at(head, 4), u32_le_at(head, 12)) else {
            return Err(TRUNCATED);
        };
        // MH_DYLIB = 6, MH_BUNDLE = 8.
        if filetype != 6 && filetype != 8 {
            return Err(LoadProblem::NotSharedLibrary(
                "a Mach-O file that is not a dylib or bundle",
            ));
        }
        (ObjectFormat::MachO, cputype, wide, false)
    } else if head.starts_with(&[0xCA, 0xFE, 0xBA, 0xBE]) {
        // A universal (fat) Mach-O binary: the loader picks this machine's slice.
        if HOST_FORMAT == ObjectFormat::MachO {
            return Ok(());
        }
        return Err(LoadProblem::WrongArchitecture {
            found: "a universal Mach-O binary".to_owned(),
            expected: host_description(),
        });
    } else if head.starts_with(b"MZ") {
        let at = u32_le_at(head, 0x3C).ok_or(TRUNCATED)?;
        let at = usize::try_from(at).unwrap_or(usize::MAX);
        if head.get(at..at.saturating_add(4)) != Some(b"PE\0\0") {
            return Err(LoadProblem::NotSharedLibrary(
                "an MS-DOS executable without a PE header",
            ));
        }
        let (Some(machine), Some(characteristics)) = (
            u16_at(head, at.saturating_add(4), false),
            u16_at(head, at.saturating_add(22), false),
        ) else {
            return Err(TRUNCATED);
        };
        // IMAGE_FILE_DLL.
        if characteristics & 0x2000 == 0 {
            return Err(LoadProblem::NotSharedLibrary("a PE executable, not a DLL"));
        }
        // IMAGE_FILE_32BIT_MACHINE (0x0100) marks 32-bit images.
        (
            ObjectFormat::Pe,
            u32::from(machine),
            characteristics & 0x0100 == 0,
            false,
        )
    } else {
        return Err(LoadProblem::NotSharedLibrary(
            "it has no ELF, Mach-O or PE header",
        ));
    };
    let arch = arch_name(format, machine);
    let matches = format == HOST_FORMAT
        && wide == host_64
        && big == cfg!(target_endian = "big")
        && (HOST_ARCH.is_none() || arch == HOST_ARCH);
    if matches {
        return Ok(());
    }
    let arch = arch.map_or_else(|| format!("machine {machine:#x}"), str::to_owned);
    let bits = if wide { 64 } else { 32 };
    let order = if big { ", big-endian" } else { "" };
    Err(LoadProblem::WrongArchitecture {
        found: format!("{} for {arch} ({bits}-bit{order})", format.phrase()),
        expected: host_description(),
    })
}

#[cfg(test)]
mod tests;
