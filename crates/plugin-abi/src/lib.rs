//! `weightkin-plugin-abi`: the C ABI of weightkin's shared-library metric plugins.
//!
//! A lab with its own statistic ships it as a `.so` / `.dylib` / `.dll`; `weightkin --plugin
//! PATH` loads it and recipes use its metrics by name, without rebuilding weightkin and
//! whatever rustc built either side. That is only sound if nothing but plain C data crosses
//! the line, so this crate is nothing but `#[repr(C)]` structs, integer constants and
//! `extern "C"` function-pointer types — no `dyn Trait`, `String`, `Vec` or panic ever crosses
//! it (bevy removed its Rust-ABI dylib plugins as unsound for exactly that, bevyengine/bevy
//! #11969). It has no dependencies, so a plugin agrees with weightkin on this crate's ABI
//! version and on nothing else.
//!
//! # The contract
//!
//! * A plugin exports one symbol, [`ENTRY_SYMBOL`] (`weightkin_plugin_entry`), an
//!   `extern "C" fn() -> *const PluginDescriptor` ([`EntryFn`]) that returns a pointer to
//!   static, immutable data and does nothing else.
//! * The descriptor starts with its ABI version ([`AbiPrefix`]); the host reads that `u32`
//!   *first* and refuses the library unless it supports the version, before it reads any other
//!   field or calls any other function (tree-sitter checks `ts_language_version` the same
//!   way). A change to any type here that is not a pure addition at the end of the list of
//!   constants bumps [`ABI_VERSION`].
//! * Each [`MetricDescriptor`] names a metric (NUL-terminated UTF-8, validated by the host),
//!   documents it in one line, declares its properties — the closed range every value lies in,
//!   whether it is symmetric, its value on identical inputs — the parameter names it accepts,
//!   and points to its [`ComputeFn`] (and optionally a [`CheckParamsFn`]).
//! * [`ComputeFn`] receives both tensors as f32 buffers with their shared shape and the
//!   recipe's `params` table as JSON bytes, and returns a [`status`]: a value, "undefined" with
//!   a [`reason`] code, or an error whose message it writes into a buffer the host owns
//!   ([`Message`]). It may be called concurrently from several threads, and must not unwind:
//!   [`export_plugin!`] wraps the author's function in `catch_unwind`, so a Rust panic becomes
//!   [`status::ERROR`] with the panic message. Plugins must therefore be built with the default
//!   `panic = "unwind"`.
//! * Tensors larger than 2²⁴ elements each arrive as the same evenly strided subset of whole
//!   rows of both (`shape[0]` reduced to the rows kept; a 1-D tensor's elements), at most 2²⁴
//!   elements each, which bounds the host's memory; its report marks such a value as
//!   subsampled.
//! * The host never unloads a plugin, so every pointer in the descriptor must stay valid for
//!   the life of the process (string literals and statics do).
//! * The host checks every value it gets back: NaN, infinities and values outside the declared
//!   range are reported as errors and never reach a report.
//!
//! # Writing a plugin in Rust
//!
//! Depend on this crate, set `crate-type = ["cdylib"]`, write an ordinary function from
//! ([`Input`], [`Params`]) to `Result<f64, `[`Failure`]`>` and export it with
//! [`export_plugin!`]. `plugins/example-dylib` (Spearman rank correlation) is a complete,
//! tested example; a minimal one:
//!
//! ```
//! use weightkin_plugin_abi::{export_plugin, Failure, Input, Params, Undefined};
//!
//! /// Fraction of positions where both tensors have the same sign.
//! fn sign_agreement(input: &Input<'_>, _params: &Params) -> Result<f64, Failure> {
//!     if input.a.is_empty() {
//!         return Err(Failure::Undefined(Undefined::Empty));
//!     }
//!     let same = input.a.iter().zip(input.b).filter(|(x, y)| x.signum() == y.signum());
//!     Ok(same.count() as f64 / input.a.len() as f64)
//! }
//!
//! export_plugin! {
//!     name: "sign-agreement-plugin",
//!     version: "0.1.0",
//!     metrics: [{
//!         name: "sign-agreement",
//!         doc: "fraction of positions where both tensors have the same sign",
//!         range: (0.0, 1.0),
//!         symmetric: true,
//!         identity: Some(1.0),
//!         params: [],
//!         compute: sign_agreement,
//!     }],
//! }
//! # fn main() {
//! #     let d = unsafe { &*weightkin_plugin_entry() };
//! #     assert_eq!(d.abi_version, weightkin_plugin_abi::ABI_VERSION);
//! # }
//! ```
//!
//! Plugins in other languages implement the same structs by hand (they are plain C); the
//! parameter blob is a flat JSON object whose values are booleans, integers, floats or strings.

use std::ffi::c_char;
use std::fmt;

mod params;

pub use params::{ParamError, ParamValue, Params};

/// The ABI version this crate describes. The host accepts a range of versions and checks this
/// number before anything else.
pub const ABI_VERSION: u32 = 1;

/// Name of the one symbol a plugin exports: an [`EntryFn`].
pub const ENTRY_SYMBOL: &str = "weightkin_plugin_entry";

/// Type of [`ENTRY_SYMBOL`]. Must return a pointer to static data and have no side effects:
/// the host calls it before it knows whether it can read what it returns.
pub type EntryFn = unsafe extern "C" fn() -> *const PluginDescriptor;

/// Computes a metric on one tensor pair. Returns a [`status`] code; on [`status::OK`] it has
/// set `output.value`, on [`status::UNDEFINED`] `output.reason`, and on [`status::ERROR`] it
/// may have written a message through `output.message`. Must be thread-safe and must not
/// unwind.
pub type ComputeFn =
    unsafe extern "C" fn(input: *const ComputeInput, output: *mut ComputeOutput) -> i32;

/// Checks a `params` blob when a recipe is validated, so that a bad value is reported with the
/// recipe's other problems instead of in the middle of an audit. Returns [`status::OK`] or
/// [`status::ERROR`] with a message.
pub type CheckParamsFn =
    unsafe extern "C" fn(params: *const u8, params_len: usize, message: *mut Message) -> i32;

/// Return codes of [`ComputeFn`] and [`CheckParamsFn`]. Plain integers, not a Rust enum: a
/// foreign value outside a Rust enum's discriminants would be undefined behaviour, an unknown
/// integer is just an error the host reports.
pub mod status {
    /// A value was written to `ComputeOutput::value`.
    pub const OK: i32 = 0;
    /// The metric has no value for this pair; the [`reason`](crate::reason) is in
    /// `ComputeOutput::reason`.
    pub const UNDEFINED: i32 = 1;
    /// The computation failed; a message may be in `ComputeOutput::message`.
    pub const ERROR: i32 = 2;
}

/// Why a metric is undefined for a pair (`ComputeOutput::reason` with
/// [`status::UNDEFINED`]). The same reasons weightkin's built-in metrics report.
pub mod reason {
    /// The tensors have no elements.
    pub const EMPTY: u32 = 1;
    /// A tensor contains NaN or infinity.
    pub const NON_FINITE: u32 = 2;
    /// A tensor is all zeros.
    pub const ZERO_NORM: u32 = 3;
    /// A tensor is constant (zero variance).
    pub const CONSTANT: u32 = 4;
    /// The metric compares matrices and the tensors are one-dimensional.
    pub const NOT_A_MATRIX: u32 = 5;
    /// Too few examples (rows) for the estimator.
    pub const TOO_FEW_EXAMPLES: u32 = 6;
}

/// Bits of [`MetricDescriptor::flags`]. The host refuses unknown bits.
pub mod flags {
    /// m(a, b) = m(b, a).
    pub const SYMMETRIC: u32 = 1 << 0;
    /// [`MetricDescriptor::identity`](crate::MetricDescriptor::identity) holds m(a, a).
    pub const HAS_IDENTITY: u32 = 1 << 1;
    /// Every bit this ABI version defines.
    pub const ALL: u32 = SYMMETRIC | HAS_IDENTITY;
}

/// The first field of every version of [`PluginDescriptor`]: what the host reads before it
/// knows which version it is looking at.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct AbiPrefix {
    /// The plugin's ABI version ([`ABI_VERSION`] when built against this crate).
    pub abi_version: u32,
}

/// What [`ENTRY_SYMBOL`] returns: the plugin and its metrics.
#[repr(C)]
#[derive(Debug)]
pub struct PluginDescriptor {
    /// Must be first: see [`AbiPrefix`].
    pub abi_version: u32,
    /// Plugin name, NUL-terminated UTF-8.
    pub name: *const c_char,
    /// Plugin version, NUL-terminated UTF-8.
    pub version: *const c_char,
    /// The metrics, `metric_count` of them.
    pub metrics: *const MetricDescriptor,
    /// Number of metrics.
    pub metric_count: usize,
}

/// One metric of a plugin.
#[repr(C)]
#[derive(Debug)]
pub struct MetricDescriptor {
    /// Name used in recipes: NUL-terminated, lower-case ASCII letters, digits, `-` and `_`.
    pub name: *const c_char,
    /// One-line description, NUL-terminated UTF-8.
    pub doc: *const c_char,
    /// Lower end of the closed range every defined value lies in (may be `-inf`).
    pub range_lo: f64,
    /// Upper end of that range (may be `+inf`).
    pub range_hi: f64,
    /// [`flags`] bits.
    pub flags: u32,
    /// m(a, a) for any non-degenerate `a`, if [`flags::HAS_IDENTITY`] is set.
    pub identity: f64,
    /// Accepted parameter names (NUL-terminated), `param_count` of them; may be null if zero.
    pub params: *const *const c_char,
    /// Number of accepted parameter names.
    pub param_count: usize,
    /// Optional early check of parameter values.
    pub check_params: Option<CheckParamsFn>,
    /// The computation; must not be null.
    pub compute: Option<ComputeFn>,
}

/// The arguments of one [`ComputeFn`] call. All memory is the host's and valid for the call.
#[repr(C)]
#[derive(Debug)]
pub struct ComputeInput {
    /// Tensor A, `len` f32 values, row-major (may be null when `len` is 0).
    pub a: *const f32,
    /// Tensor B, `len` f32 values, same shape as A (may be null when `len` is 0).
    pub b: *const f32,
    /// Number of elements of each tensor (the product of `shape`).
    pub len: usize,
    /// The shared shape, `rank` dimensions.
    pub shape: *const usize,
    /// Number of dimensions.
    pub rank: usize,
    /// The recipe's `params` table for this metric as a JSON object (UTF-8, not
    /// NUL-terminated), `params_len` bytes.
    pub params: *const u8,
    /// Length of `params`.
    pub params_len: usize,
}

/// A buffer the host owns, for an error message: the plugin writes at most `cap` bytes of
/// UTF-8 to `ptr` and stores how many in `len`. The host reads `min(len, cap)` bytes, so a
/// plugin that overstates `len` cannot make it read past the buffer.
#[repr(C)]
#[derive(Debug)]
pub struct Message {
    /// Start of the buffer.
    pub ptr: *mut u8,
    /// Its capacity in bytes.
    pub cap: usize,
    /// Bytes written (set by the plugin).
    pub len: usize,
}

impl Message {
    /// Writes `text`, truncated to the capacity at a character boundary so that the bytes
    /// stay valid UTF-8.
    ///
    /// # Safety
    /// `self.ptr` must be valid for writes of `self.cap` bytes (or `cap` must be 0).
    pub unsafe fn write(&mut self, text: &str) {
        let mut n = text.len().min(self.cap);
        while !text.is_char_boundary(n) {
            n -= 1;
        }
        if n > 0 && !self.ptr.is_null() {
            // SAFETY: the caller guarantees `cap` writable bytes at `ptr`, and n <= cap.
            unsafe { std::ptr::copy_nonoverlapping(text.as_ptr(), self.ptr, n) };
        }
        self.len = n;
    }
}

/// Where [`ComputeFn`] puts its result.
#[repr(C)]
#[derive(Debug)]
pub struct ComputeOutput {
    /// The value, on [`status::OK`].
    pub value: f64,
    /// The [`reason`] code, on [`status::UNDEFINED`].
    pub reason: u32,
    /// The error message buffer, for [`status::ERROR`].
    pub message: Message,
}

/// A borrowed view of one [`ComputeInput`], as [`export_plugin!`] hands it to the author's
/// function: both tensors with the same length, and a shape whose product is that length.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// Tensor A, row-major.
    pub a: &'a [f32],
    /// Tensor B, same shape as A.
    pub b: &'a [f32],
    /// The shared shape.
    pub shape: &'a [usize],
}

/// Why a metric has no value: the Rust side of [`reason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undefined {
    /// The tensors have no elements.
    Empty,
    /// A tensor contains NaN or infinity.
    NonFinite,
    /// A tensor is all zeros.
    ZeroNorm,
    /// A tensor is constant.
    Constant,
    /// The metric compares matrices and the tensors are one-dimensional.
    NotAMatrix,
    /// Too few examples (rows) for the estimator.
    TooFewExamples,
}

impl Undefined {
    /// The [`reason`] code.
    pub const fn code(self) -> u32 {
        match self {
            Undefined::Empty => reason::EMPTY,
            Undefined::NonFinite => reason::NON_FINITE,
            Undefined::ZeroNorm => reason::ZERO_NORM,
            Undefined::Constant => reason::CONSTANT,
            Undefined::NotAMatrix => reason::NOT_A_MATRIX,
            Undefined::TooFewExamples => reason::TOO_FEW_EXAMPLES,
        }
    }

    /// The reason for a code, if this ABI version defines it.
    pub const fn from_code(code: u32) -> Option<Undefined> {
        match code {
            reason::EMPTY => Some(Undefined::Empty),
            reason::NON_FINITE => Some(Undefined::NonFinite),
            reason::ZERO_NORM => Some(Undefined::ZeroNorm),
            reason::CONSTANT => Some(Undefined::Constant),
            reason::NOT_A_MATRIX => Some(Undefined::NotAMatrix),
            reason::TOO_FEW_EXAMPLES => Some(Undefined::TooFewExamples),
            _ => None,
        }
    }
}

/// Why a plugin function returned no value: a stated [`Undefined`] reason, or an error with a
/// message for the user.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// No value for a documented reason ([`status::UNDEFINED`]).
    Undefined(Undefined),
    /// Something went wrong ([`status::ERROR`]).
    Error(String),
}

impl From<Undefined> for Failure {
    fn from(u: Undefined) -> Failure {
        Failure::Undefined(u)
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure::Error(message)
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Failure {
        Failure::Error(message.to_owned())
    }
}

impl From<ParamError> for Failure {
    fn from(e: ParamError) -> Failure {
        Failure::Error(e.to_string())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Undefined(u) => write!(f, "undefined ({u:?})"),
            Failure::Error(m) => f.write_str(m),
        }
    }
}

/// Exports a plugin: generates the static [`PluginDescriptor`] and the `extern "C"`
/// [`ENTRY_SYMBOL`], and wraps each metric's function in an [`ComputeFn`] that converts the
/// raw input to an [`Input`], parses the parameters to [`Params`], and catches panics.
///
/// Invoke it once, at the root of a `cdylib` crate. Each metric's `compute` is a path to a
/// `fn(&Input<'_>, &Params) -> Result<f64, Failure>`; the optional `check_params` is a path to
/// a `fn(&Params) -> Result<(), String>` run when a recipe is validated. Names, docs and
/// parameter names are string literals (a literal containing NUL does not compile).
///
/// ```
/// # use weightkin_plugin_abi::{export_plugin, Failure, Input, Params};
/// fn max_abs_diff(input: &Input<'_>, params: &Params) -> Result<f64, Failure> {
///     let scale = params.float("scale")?.unwrap_or(1.0);
///     let d = input.a.iter().zip(input.b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
///     Ok(f64::from(d) * scale)
/// }
/// fn check(params: &Params) -> Result<(), String> {
///     match params.float("scale").map_err(|e| e.to_string())? {
///         Some(s) if !(s > 0.0) => Err("`scale` must be positive".into()),
///         _ => Ok(()),
///     }
/// }
/// export_plugin! {
///     name: "diff-plugin",
///     version: env!("CARGO_PKG_VERSION"),
///     metrics: [{
///         name: "max-abs-diff",
///         doc: "largest absolute elementwise difference, times `scale`",
///         range: (0.0, f64::INFINITY),
///         symmetric: true,
///         identity: Some(0.0),
///         params: ["scale"],
///         check_params: check,
///         compute: max_abs_diff,
///     }],
/// }
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_plugin {
    (
        name: $name:literal,
        version: $version:expr,
        metrics: [ $( {
            name: $mname:literal,
            doc: $doc:literal,
            range: ($lo:expr, $hi:expr),
            symmetric: $sym:expr,
            identity: $id:expr,
            params: [ $( $param:literal ),* $(,)? ],
            $( check_params: $check:path, )?
            compute: $compute:path $(,)?
        } ),* $(,)? ] $(,)?
    ) => {
        /// The plugin's entry point for weightkin (generated by
        /// `weightkin_plugin_abi::export_plugin!`): returns its static descriptor.
        #[no_mangle]
        pub extern "C" fn weightkin_plugin_entry() -> *const $crate::PluginDescriptor {
            static DESCRIPTOR: $crate::__private::Static<$crate::PluginDescriptor> =
                $crate::__private::Static($crate::PluginDescriptor {
                    abi_version: $crate::ABI_VERSION,
                    name: $crate::__private::cstr(concat!($name, "\0")),
                    version: $crate::__private::cstr(concat!($version, "\0")),
                    metrics: METRICS.as_ptr(),
                    metric_count: METRICS.len(),
                });
            const METRICS: &[$crate::MetricDescriptor] = &[ $( {
                const PARAMS: &[$crate::__private::CStrPtr] = &[
                    $( $crate::__private::CStrPtr($crate::__private::cstr(concat!($param, "\0"))) ),*
                ];
                const IDENTITY: Option<f64> = $id;
                $crate::MetricDescriptor {
                    name: $crate::__private::cstr(concat!($mname, "\0")),
                    doc: $crate::__private::cstr(concat!($doc, "\0")),
                    range_lo: $lo,
                    range_hi: $hi,
                    flags: (if $sym { $crate::flags::SYMMETRIC } else { 0 })
                        | (if IDENTITY.is_some() { $crate::flags::HAS_IDENTITY } else { 0 }),
                    identity: match IDENTITY { Some(v) => v, None => 0.0 },
                    params: PARAMS.as_ptr().cast(),
                    param_count: PARAMS.len(),
                    check_params: $crate::__export_check!($($check)?),
                    compute: {
                        // Named so that it cannot shadow the author's function.
                        unsafe extern "C" fn __weightkin_compute(
                            input: *const $crate::ComputeInput,
                            output: *mut $crate::ComputeOutput,
                        ) -> i32 {
                            // SAFETY: forwarded from the host, which upholds `ComputeFn`'s
                            // contract.
                            unsafe { $crate::__private::compute(input, output, $compute) }
                        }
                        Some(__weightkin_compute)
                    },
                }
            } ),* ];
            &DESCRIPTOR.0
        }
    };
}

/// Implementation detail of [`export_plugin!`]: the optional `check_params` wrapper.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_check {
    () => {
        None
    };
    ($check:path) => {{
        // Named so that it cannot shadow the author's function.
        unsafe extern "C" fn __weightkin_check_params(
            params: *const u8,
            params_len: usize,
            message: *mut $crate::Message,
        ) -> i32 {
            // SAFETY: forwarded from the host, which upholds `CheckParamsFn`'s contract.
            unsafe { $crate::__private::check_params(params, params_len, message, $check) }
        }
        Some(__weightkin_check_params)
    }};
}

/// Implementation details of [`export_plugin!`]; not a stable API.
#[doc(hidden)]
pub mod __private {
    use std::ffi::{c_char, CStr};
    use std::panic::{catch_unwind, AssertUnwindSafe};

    use crate::{status, ComputeInput, ComputeOutput, Failure, Input, Message, Params};

    /// Makes a descriptor `Sync` so it can live in a `static`. Sound because the macro builds
    /// it only from pointers to immutable static data (literals and consts), and nothing
    /// ever writes through them.
    #[repr(transparent)]
    pub struct Static<T>(pub T);
    // SAFETY: see the type's doc: the wrapped value is immutable and points only to immutable
    // 'static data.
    unsafe impl<T> Sync for Static<T> {}

    /// A C string pointer that may sit in a `const` array.
    #[repr(transparent)]
    #[derive(Clone, Copy)]
    pub struct CStrPtr(pub *const c_char);

    /// A NUL-terminated literal as a C string pointer; a literal with an interior NUL fails to
    /// compile (the panic happens during constant evaluation).
    #[allow(clippy::panic)]
    pub const fn cstr(with_nul: &'static str) -> *const c_char {
        match CStr::from_bytes_with_nul(with_nul.as_bytes()) {
            Ok(c) => c.as_ptr(),
            Err(_) => panic!("plugin strings must not contain NUL"),
        }
    }

    /// Turns a raw [`ComputeInput`] into an [`Input`], checking what a careless host could get
    /// wrong.
    ///
    /// # Safety
    /// The pointers in `raw` must be valid for the lengths it states.
    unsafe fn view<'a>(raw: &'a ComputeInput) -> Result<(Input<'a>, &'a [u8]), Failure> {
        // The host guarantees `len`/`rank`/`params_len` readable items at non-null, aligned
        // pointers; null or misaligned pointers are refused first.
        let slice = |p: *const f32, which: &str| -> Result<&'a [f32], Failure> {
            if raw.len == 0 {
                Ok(&[])
            } else if p.is_null() || !p.is_aligned() {
                Err(Failure::Error(format!(
                    "tensor {which}: null or misaligned buffer"
                )))
            } else {
                // SAFETY: non-null and aligned (checked above), `len` readable f32s (the
                // host's guarantee).
                Ok(unsafe { std::slice::from_raw_parts(p, raw.len) })
            }
        };
        let (a, b) = (slice(raw.a, "A")?, slice(raw.b, "B")?);
        let shape: &[usize] = if raw.rank == 0 {
            &[]
        } else if raw.shape.is_null() || !raw.shape.is_aligned() {
            return Err("null or misaligned shape".into());
        } else {
            // SAFETY: non-null and aligned (checked above), `rank` readable dimensions.
            unsafe { std::slice::from_raw_parts(raw.shape, raw.rank) }
        };
        let numel = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        if numel != Some(raw.len) {
            return Err(Failure::Error(format!(
                "shape {shape:?} does not hold {} elements",
                raw.len
            )));
        }
        let params: &[u8] = if raw.params_len == 0 {
            &[]
        } else if raw.params.is_null() {
            return Err("null params buffer".into());
        } else {
            // SAFETY: non-null (checked above; bytes need no alignment), `params_len`
            // readable bytes.
            unsafe { std::slice::from_raw_parts(raw.params, raw.params_len) }
        };
        Ok((Input { a, b, shape }, params))
    }

    /// The message of a caught panic.
    fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
        let text = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a non-string payload".to_owned());
        // Dropping a payload can itself panic; that must not unwind out of here either.
        let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
        format!("panicked: {text}")
    }

    /// Body of every generated [`crate::ComputeFn`].
    ///
    /// # Safety
    /// `input` and `output` must satisfy [`crate::ComputeFn`]'s contract.
    pub unsafe fn compute<F>(input: *const ComputeInput, output: *mut ComputeOutput, f: F) -> i32
    where
        F: Fn(&Input<'_>, &Params) -> Result<f64, Failure>,
    {
        if input.is_null() || output.is_null() {
            return status::ERROR;
        }
        // SAFETY: non-null, and the host passes valid, exclusive pointers for the call.
        let (raw, out) = unsafe { (&*input, &mut *output) };
        let result = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: the host upholds the buffer lengths it states.
            let (input, params) = unsafe { view(raw) }?;
            let params = Params::parse(params)?;
            f(&input, &params)
        }));
        let failure = match result {
            Ok(Ok(v)) => {
                out.value = v;
                return status::OK;
            }
            Ok(Err(Failure::Undefined(u))) => {
                out.reason = u.code();
                return status::UNDEFINED;
            }
            Ok(Err(Failure::Error(m))) => m,
            Err(payload) => panic_message(payload),
        };
        // SAFETY: the host owns `cap` writable bytes at `message.ptr`.
        unsafe { out.message.write(&failure) };
        status::ERROR
    }

    /// Body of every generated [`crate::CheckParamsFn`].
    ///
    /// # Safety
    /// Arguments as in [`crate::CheckParamsFn`]'s contract.
    pub unsafe fn check_params<F>(
        params: *const u8,
        params_len: usize,
        message: *mut Message,
        f: F,
    ) -> i32
    where
        F: Fn(&Params) -> Result<(), String>,
    {
        if message.is_null() || (params.is_null() && params_len != 0) {
            return status::ERROR;
        }
        let result = catch_unwind(AssertUnwindSafe(|| {
            let bytes: &[u8] = if params_len == 0 {
                &[]
            } else {
                // SAFETY: non-null, and the host guarantees `params_len` readable bytes.
                unsafe { std::slice::from_raw_parts(params, params_len) }
            };
            let params = Params::parse(bytes).map_err(|e| e.to_string())?;
            f(&params)
        }));
        let text = match result {
            Ok(Ok(())) => return status::OK,
            Ok(Err(m)) => m,
            Err(payload) => panic_message(payload),
        };
        // SAFETY: non-null; the host owns `cap` writable bytes at its `ptr`.
        unsafe { (*message).write(&text) };
        status::ERROR
    }
}

#[cfg(test)]
mod tests;
