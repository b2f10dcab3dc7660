//! The one error type of `weightkin-core`.
//!
//! Every variant names the file (and, where there is one, the tensor) it is about, so that a
//! user who fed a broken model sees *which* file and *what* was expected. Variants are
//! structured so that tests match them with `matches!` rather than on message text.

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
    /// The header was rejected by a parser; the source says why.
    #[error("{0}")]
    Parse(String),
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
