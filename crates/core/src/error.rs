//! The one error type of `weightkin-core`.
//!
//! Every variant names the file (and, where there is one, the tensor) it is about, so that a
//! user who fed a broken model sees *which* file and *what* was expected. Variants are
//! structured so that tests match them with `matches!` rather than on message text.
//!
//! Only problems that more than one format can have (or that the safetensors reader in this
//! crate has) are variants here. A problem only one format has — a pickle opcode, a zip
//! entry, a GGUF metadata key — is a variant of that format crate's own error type, carried
//! boxed by [`HeaderProblem::Format`] or [`TensorProblem::Format`] and recovered with
//! [`Error::format_problem`]. Core thereby stays ignorant of every format but its own.
//!
//! A problem is part of its error's one-line message, not a separate cause: the CLI prints
//! an error's `source()` chain one cause per line, and `path: invalid gguf header: what is
//! wrong` reads as one statement. So [`Error::InvalidHeader`] and [`Error::InvalidTensor`]
//! show their problem's text and do not return it from `source()`. A problem that wraps
//! another error (the JSON parser's, a format crate's) shows that error's text too, and also
//! returns it from `source()`, so that a caller can reach the typed value.

use std::path::PathBuf;

use crate::Dtype;

/// Errors raised while opening, validating or reading model files, or while building metrics.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation on `path` failed.
    #[error("{}: cannot {action}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What we were doing ("open", "read", "map into memory", …).
        action: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// No registered format recognises the file.
    #[error("{}: no registered format recognises this {kind} (known formats: {known})", path.display())]
    UnknownFormat {
        /// The file or directory.
        path: PathBuf,
        /// "file" or "directory".
        kind: &'static str,
        /// Comma-separated list of the registered format names.
        known: String,
    },
    /// A format was named explicitly but is not registered.
    #[error("no format named `{name}` is registered (known formats: {known})")]
    NoSuchFormat {
        /// The name asked for.
        name: String,
        /// Comma-separated list of the registered format names.
        known: String,
    },
    /// A file's header (or a format's index file) is malformed.
    #[error("{}: invalid {format} header: {problem}", path.display())]
    InvalidHeader {
        /// The file.
        path: PathBuf,
        /// The format whose header this is.
        format: &'static str,
        /// What is wrong.
        problem: HeaderProblem,
    },
    /// One tensor's entry in a header is inconsistent.
    #[error("{}: tensor `{tensor}`: {problem}", path.display())]
    InvalidTensor {
        /// The file.
        path: PathBuf,
        /// The tensor's name as stored in the file.
        tensor: String,
        /// What is wrong.
        problem: TensorProblem,
    },
    /// Two files of one model (or one file twice) define the same tensor name.
    #[error("tensor `{tensor}` is defined twice: in {} and in {}", first.display(), second.display())]
    DuplicateTensor {
        /// The tensor's name.
        tensor: String,
        /// Where it was seen first.
        first: PathBuf,
        /// Where it was seen again.
        second: PathBuf,
    },
    /// A read asked for elements outside a tensor.
    #[error(
        "tensor `{tensor}`: read of {len} elements at {start} is outside its {numel} elements"
    )]
    ReadOutOfRange {
        /// The tensor.
        tensor: String,
        /// First element asked for.
        start: usize,
        /// Number of elements asked for.
        len: usize,
        /// Number of elements in the tensor.
        numel: usize,
    },
    /// A tensor of this dtype cannot be converted to f32 for comparison.
    #[error("tensor `{tensor}`: dtype {dtype} cannot be converted to f32")]
    NotConvertible {
        /// The tensor.
        tensor: String,
        /// Its dtype.
        dtype: Dtype,
    },
    /// A tensor index passed to [`crate::WeightSource::read_f32`] does not exist.
    #[error("no tensor with index {index} (the source has {count})")]
    NoSuchTensor {
        /// The index asked for.
        index: usize,
        /// The number of tensors.
        count: usize,
    },
    /// Two plugins registered under one name.
    #[error("a {kind} named `{name}` is already registered")]
    DuplicatePlugin {
        /// "format" or "metric".
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// A metric was given a parameter it does not know or a value of the wrong type.
    #[error("metric `{metric}`: parameter `{param}`: {problem}")]
    InvalidParam {
        /// The metric.
        metric: &'static str,
        /// The parameter.
        param: String,
        /// What is wrong.
        problem: ParamProblem,
    },
    /// A metric from a shared-library plugin tried to register a name that is taken. Unlike
    /// [`Error::DuplicatePlugin`] (two built-ins, a bug in weightkin), this names the owner,
    /// because the fix is to drop one of the plugins.
    #[error("a {kind} named `{name}` is already registered by {owner}")]
    NameTaken {
        /// "format" or "metric".
        kind: &'static str,
        /// The name.
        name: String,
        /// Who registered it first (boxed: it is large, and this error is rare).
        owner: Box<crate::Origin>,
    },
    /// A shared-library plugin's own check refused a metric's parameters; the message is the
    /// plugin's.
    #[error("metric `{metric}`: parameters rejected by its plugin: {message}")]
    ParamsRejected {
        /// The metric.
        metric: &'static str,
        /// What the plugin said.
        message: String,
    },
    /// A remote source could not supply a tensor's bytes (a fetch failed, or the network is
    /// off and the bytes are not cached). `source` is the remote crate's own error (e.g.
    /// `weightkin_hub::Error`), reachable by downcasting.
    #[error("tensor `{tensor}`: its bytes could not be fetched")]
    Remote {
        /// The tensor.
        tensor: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A metric's code failed on a pair ([`crate::Metric::try_evaluate`]).
    #[error("metric `{metric}` failed: {problem}")]
    MetricFailed {
        /// The metric.
        metric: &'static str,
        /// What went wrong.
        problem: MetricFailure,
    },
}

/// How a metric implemented by a shared-library plugin failed on a pair. The host checks
/// every result a plugin returns; none of these reaches a report as a value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MetricFailure {
    /// The plugin returned its error status; the text is its message (a caught panic reads
    /// "panicked: …").
    #[error("the plugin reported: {0}")]
    Reported(String),
    /// The plugin returned NaN or an infinity as a value.
    #[error("the plugin returned {0}, which is not a finite number")]
    NotFinite(f64),
    /// The plugin returned a value outside the range it declared.
    #[error("the plugin returned {value}, outside its declared range [{lo}, {hi}]")]
    OutOfRange {
        /// The value.
        value: f64,
        /// Declared lower end.
        lo: f64,
        /// Declared upper end.
        hi: f64,
    },
    /// The plugin returned a status code the ABI does not define.
    #[error("the plugin returned status {0}, which the plugin ABI does not define")]
    UnknownStatus(i32),
    /// The plugin said "undefined" with a reason code the ABI does not define.
    #[error("the plugin returned undefined-reason code {0}, which the plugin ABI does not define")]
    UnknownReason(u32),
    /// The metric needs whole tensors and was given only moments.
    #[error("it needs both whole tensors, but was given only their moments")]
    NoTensors,
    /// The two tensors do not have the same number of elements as their shape; the host
    /// refuses to pass such buffers across the plugin boundary.
    #[error("tensors of {a} and {b} elements do not both match shape {shape:?}")]
    ShapeMismatch {
        /// Elements of tensor A.
        a: usize,
        /// Elements of tensor B.
        b: usize,
        /// The shape given.
        shape: Vec<usize>,
    },
}

impl Error {
    /// An [`Error::InvalidHeader`]: `path`'s `format` header is wrong in the way `problem`
    /// says. The one constructor every format's parser uses.
    pub fn header(path: &std::path::Path, format: &'static str, problem: HeaderProblem) -> Error {
        Error::InvalidHeader {
            path: path.to_owned(),
            format,
            problem,
        }
    }

    /// An [`Error::InvalidTensor`]: tensor `name` of `path` is wrong as `problem` says.
    pub fn tensor(path: &std::path::Path, name: &str, problem: TensorProblem) -> Error {
        Error::InvalidTensor {
            path: path.to_owned(),
            tensor: name.to_owned(),
            problem,
        }
    }

    /// The file this error is about, if it names one (for a tensor defined twice, the second
    /// file). Front ends use it to say which file is at fault without parsing the message
    /// (the Python package's `ModelFileError.file`).
    pub fn file_path(&self) -> Option<&std::path::Path> {
        match self {
            Error::Io { path, .. }
            | Error::UnknownFormat { path, .. }
            | Error::InvalidHeader { path, .. }
            | Error::InvalidTensor { path, .. }
            | Error::DuplicateTensor { second: path, .. } => Some(path),
            _ => None,
        }
    }

    /// The tensor this error is about, if it names one (its name as stored, or as presented
    /// where no stored name is known).
    pub fn tensor_name(&self) -> Option<&str> {
        match self {
            Error::InvalidTensor { tensor, .. }
            | Error::DuplicateTensor { tensor, .. }
            | Error::ReadOutOfRange { tensor, .. }
            | Error::NotConvertible { tensor, .. }
            | Error::Remote { tensor, .. } => Some(tensor),
            _ => None,
        }
    }

    /// The format crate's own problem `P` this error carries ([`HeaderProblem::Format`] or
    /// [`TensorProblem::Format`]), if it carries one of that type. How callers and tests
    /// match on a format's variants, e.g. `weightkin_format_pytorch::Problem::RefusedGlobal`.
    pub fn format_problem<P: std::error::Error + 'static>(&self) -> Option<&P> {
        match self {
            Error::InvalidHeader {
                problem: HeaderProblem::Format(p),
                ..
            }
            | Error::InvalidTensor {
                problem: TensorProblem::Format(p),
                ..
            } => p.downcast_ref(),
            _ => None,
        }
    }
}

/// What is wrong with a header or index file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderProblem {
    /// The file is shorter than its header says.
    #[error("file is {actual} bytes, but its header needs at least {needed}")]
    Truncated {
        /// Bytes needed.
        needed: u64,
        /// Bytes present.
        actual: u64,
    },
    /// The header is larger than [`crate::Limits`] allows.
    #[error("header declares {declared} bytes, more than the limit of {limit}")]
    TooLarge {
        /// The declared size.
        declared: u64,
        /// The limit.
        limit: u64,
    },
    /// More tensors than [`crate::Limits`] allows.
    #[error("{count} tensors, more than the limit of {limit}")]
    TooManyTensors {
        /// Number declared.
        count: u64,
        /// The limit.
        limit: u64,
    },
    /// More shard files than [`crate::Limits`] allows.
    #[error("{count} shard files, more than the limit of {limit}")]
    TooManyFiles {
        /// Number found.
        count: u64,
        /// The limit.
        limit: u64,
    },
    /// The header is not UTF-8 text (a safetensors header is JSON).
    #[error("header is not UTF-8: {0}")]
    NotUtf8(#[source] std::str::Utf8Error),
    /// A JSON document (a safetensors header or shard index) does not parse, or is not the
    /// structure the format defines.
    #[error("{document} is not valid JSON: {source}")]
    Json {
        /// Which document: `header` or `index`.
        document: &'static str,
        /// What the parser said.
        source: serde_json::Error,
    },
    /// A header that passed weightkin's checks was refused by the reference `safetensors`
    /// crate (see [`crate::safetensors`], step 5).
    #[error("rejected by the safetensors crate: {0}")]
    Rejected(#[source] safetensors::SafeTensorError),
    /// A shard listed in an index is missing or escapes the model directory.
    #[error("shard `{shard}` listed for tensor `{tensor}` {reason}")]
    BadShard {
        /// The shard file name as written in the index.
        shard: String,
        /// A tensor that names it.
        tensor: String,
        /// Why it is unusable.
        reason: &'static str,
    },
    /// An index lists a tensor that the shard it names does not contain.
    #[error("index says tensor `{tensor}` is in `{shard}`, but that shard does not contain it")]
    MissingFromShard {
        /// The tensor.
        tensor: String,
        /// The shard.
        shard: String,
    },
    /// A directory contains no files of this format.
    #[error("directory contains no {0} files")]
    EmptyDirectory(&'static str),
    /// Part of the data section belongs to no tensor. safetensors forbids such holes (and
    /// trailing bytes) because hidden bytes make polyglot files possible; the `safetensors`
    /// crate refuses them too.
    #[error("data bytes {start}..{end} belong to no tensor")]
    Gap {
        /// First uncovered byte, relative to the start of the data section.
        start: u64,
        /// End of the uncovered bytes.
        end: u64,
    },
    /// A directory holds several shard indexes and none is the default one, so which model
    /// it holds is ambiguous. Opening one index file directly resolves it.
    #[error("several shard indexes and no default one; open one of them directly: {}", .0.join(", "))]
    AmbiguousIndex(Vec<String>),
    /// Objects nest deeper than the format reader allows (a guard against stack exhaustion).
    #[error("objects nest {depth} levels deep, more than the limit of {limit}")]
    TooDeep {
        /// Depth reached.
        depth: usize,
        /// The limit.
        limit: usize,
    },
    /// The file holds something the format recognises but weightkin cannot represent, such
    /// as a quantized or sparse tensor or an old container version.
    #[error("unsupported {what}: {reason}")]
    Unsupported {
        /// What was found.
        what: String,
        /// Why it cannot be read.
        reason: &'static str,
    },
    /// A problem only one format has (a pickle opcode, a zip entry, a GGUF metadata key),
    /// described by that format crate's own error type. [`Error::format_problem`] recovers
    /// it.
    #[error("{0}")]
    Format(#[source] FormatProblem),
}

/// What is wrong with one tensor's header entry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TensorProblem {
    /// The data range ends past the end of the file.
    #[error("data ends at byte {end} of the data section, which has only {available} bytes")]
    PastEnd {
        /// End offset declared.
        end: u64,
        /// Bytes available.
        available: u64,
    },
    /// The data ranges of two tensors overlap.
    #[error("data bytes {start}..{end} overlap tensor `{other}`")]
    Overlap {
        /// Start offset.
        start: u64,
        /// End offset.
        end: u64,
        /// The other tensor.
        other: String,
    },
    /// The byte length does not match shape × dtype size.
    #[error("shape {shape:?} of {dtype} needs {expected} bytes, but {actual} bytes are declared")]
    SizeMismatch {
        /// The shape.
        shape: Vec<usize>,
        /// The dtype.
        dtype: Dtype,
        /// Bytes the shape implies.
        expected: u64,
        /// Bytes declared.
        actual: u64,
    },
    /// The element count or byte length overflows.
    #[error("shape {0:?} overflows the element count")]
    ShapeOverflow(Vec<usize>),
    /// Rank exceeds [`crate::Limits::max_rank`].
    #[error("rank {rank} exceeds the limit of {limit}")]
    RankTooLarge {
        /// Declared rank.
        rank: usize,
        /// The limit.
        limit: usize,
    },
    /// The dtype string is not one we know.
    #[error("unknown dtype `{0}`")]
    UnknownDtype(String),
    /// Start offset after end offset.
    #[error("data offsets [{start}, {end}] are reversed")]
    ReversedOffsets {
        /// Start.
        start: u64,
        /// End.
        end: u64,
    },
    /// A problem only one format has (a storage record, a GGML block), described by that
    /// format crate's own error type. [`Error::format_problem`] recovers it.
    #[error("{0}")]
    Format(#[source] FormatProblem),
}

/// A format crate's own description of a problem, carried by [`HeaderProblem::Format`] and
/// [`TensorProblem::Format`] (boxed: rare, and it keeps [`Error`] small).
pub type FormatProblem = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Marks a format crate's own problem type (one per format crate). It then converts into
/// [`HeaderProblem::Format`] and [`TensorProblem::Format`] with `into()`, so the format's
/// parser passes its problems to [`Error::header`] and [`Error::tensor`] like core's own.
pub trait FormatSpecific: std::error::Error + Send + Sync + 'static {}

impl<P: FormatSpecific> From<P> for HeaderProblem {
    fn from(p: P) -> HeaderProblem {
        HeaderProblem::Format(Box::new(p))
    }
}

impl<P: FormatSpecific> From<P> for TensorProblem {
    fn from(p: P) -> TensorProblem {
        TensorProblem::Format(Box::new(p))
    }
}

/// What is wrong with a metric parameter.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParamProblem {
    /// The metric has no such parameter.
    #[error("unknown parameter (this metric accepts: {accepted})")]
    Unknown {
        /// Comma-separated accepted parameter names, or "none".
        accepted: String,
    },
    /// The value has the wrong type or is out of range.
    #[error("expected {expected}")]
    BadValue {
        /// What was expected.
        expected: &'static str,
    },
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
