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
    /// A pickle names a global (a Python function or class) that is not on the format's
    /// allowlist. Unpickling the file in Python would import it and could call it
    /// (`os.system`, `builtins.eval`, a class's `__reduce__`); weightkin never imports or
    /// calls anything, and refuses the file instead of guessing what the object meant.
    #[error(
        "refusing global {module}.{name}: not on the allowlist of tensor-rebuild functions, \
         storage types and containers (unpickling this file in Python would import it and \
         could run code)"
    )]
    RefusedGlobal {
        /// The module part of the global, as written in the pickle (`os`, `builtins`, …).
        module: String,
        /// The attribute part (`system`, `eval`, …).
        name: String,
    },
    /// A pickle stream is malformed.
    #[error("pickle `{stream}`, byte {offset}: {problem}")]
    Pickle {
        /// Which pickle: the archive record (`data.pkl`, `constants.pkl`) or the part of a
        /// legacy stream (`legacy object`, …). A static name keeps [`Error`] small.
        stream: &'static str,
        /// Offset of the offending opcode within the stream.
        offset: u64,
        /// What is wrong (boxed to keep [`Error`] small).
        problem: Box<PickleProblem>,
    },
    /// A zip container is malformed or uses a feature weightkin does not read.
    #[error("archive: {0}")]
    Archive(ArchiveProblem),
    /// A record (archive member or stream part) the format requires is absent.
    #[error("missing record `{0}`")]
    MissingRecord(String),
    /// Objects nest deeper than the format reader allows (a guard against stack exhaustion).
    #[error("objects nest {depth} levels deep, more than the limit of {limit}")]
    TooDeep {
        /// Depth reached.
        depth: usize,
        /// The limit.
        limit: usize,
    },
    /// Walking a file's object graph reached more objects than allowed. Shared references
    /// are followed once per path, so a small file of nested shared containers could
    /// otherwise expand exponentially.
    #[error("the object graph reaches more than {limit} objects (shared references expanded)")]
    TooManyObjects {
        /// The limit.
        limit: u64,
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
    /// The file does not start with the format's magic bytes.
    #[error("expected magic bytes \"{}\", found \"{}\"", expected.escape_ascii(), found.escape_ascii())]
    BadMagic {
        /// The magic the format requires.
        expected: &'static [u8],
        /// The bytes found instead.
        found: Vec<u8>,
    },
    /// A metadata key appears twice. llama.cpp's GGUF reader refuses this too
    /// (`gguf_init_from_file_impl` in `ggml/src/gguf.cpp`: "duplicate key").
    #[error("metadata key `{0}` appears twice")]
    DuplicateKey(String),
    /// A metadata value has a type code the format does not define.
    #[error("metadata key `{key}` has unknown value type {type_id}")]
    UnknownValueType {
        /// The key.
        key: String,
        /// The type code read.
        type_id: u32,
    },
    /// A metadata value the reader relies on has the wrong type or an invalid value.
    #[error("metadata key `{key}` must be {expected}")]
    BadValue {
        /// The key.
        key: String,
        /// What it must be.
        expected: &'static str,
    },
    /// A metadata key the reader needs is absent.
    #[error("metadata key `{key}` is missing; it is needed {why}")]
    MissingKey {
        /// The key.
        key: String,
        /// What it is needed for.
        why: &'static str,
    },
}

/// What is wrong with a pickle stream (PyTorch checkpoints). The reader interprets opcodes
/// on a stack machine and never executes anything, so every problem is one of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PickleProblem {
    /// The stream ends inside an opcode's argument, or without a `STOP`.
    #[error("stream ends inside an opcode or before STOP")]
    Truncated,
    /// A byte that is no pickle opcode.
    #[error("unknown opcode 0x{0:02x}")]
    UnknownOpcode(u8),
    /// A valid opcode the reader deliberately does not implement (extension registry,
    /// out-of-band buffers); PyTorch never writes it.
    #[error("opcode {0} is not supported (PyTorch does not write it)")]
    UnsupportedOpcode(&'static str),
    /// `PROTO` names a protocol newer than 5.
    #[error("unsupported pickle protocol {0}")]
    Protocol(u8),
    /// An opcode needs more values than the stack holds.
    #[error("{0}: stack underflow")]
    StackUnderflow(&'static str),
    /// An opcode needs a `MARK` and there is none.
    #[error("{0}: no MARK on the stack")]
    NoMark(&'static str),
    /// A memo lookup of a key that was never stored.
    #[error("{opcode}: memo key {key} was never stored")]
    MissingMemo {
        /// The opcode.
        opcode: &'static str,
        /// The key.
        key: u64,
    },
    /// An opcode or an allowlisted call got a value of the wrong kind.
    #[error("{opcode}: expected {expected}, found {found}")]
    WrongType {
        /// The opcode or call.
        opcode: &'static str,
        /// What it needs.
        expected: &'static str,
        /// What it got.
        found: &'static str,
    },
    /// A text argument (protocol 0 number, string literal, global name) is malformed.
    #[error("{0}: malformed text argument")]
    BadText(&'static str),
    /// A length prefix is larger than the rest of the stream.
    #[error("{opcode} declares {declared} bytes, but only {available} remain")]
    LengthPastEnd {
        /// The opcode.
        opcode: &'static str,
        /// Declared length.
        declared: u64,
        /// Bytes left in the stream.
        available: u64,
    },
}

/// What is wrong with a zip container (PyTorch archives). Cited fields are those of the zip
/// application note (PKWARE APPNOTE.TXT, sections 4.3.12–4.3.16).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveProblem {
    /// No end-of-central-directory record in the last 64 KiB + 22 bytes.
    #[error("no end-of-central-directory record (not a zip file, or truncated)")]
    NoEndRecord,
    /// The archive spans several disks.
    #[error("multi-disk archives are not supported")]
    MultiDisk,
    /// A zip64 field is needed but its record is absent or malformed.
    #[error("malformed zip64 record: {0}")]
    BadZip64(&'static str),
    /// The central directory does not lie inside the file.
    #[error("central directory (offset {offset}, {size} bytes) lies outside the file")]
    DirectoryOutside {
        /// Declared offset.
        offset: u64,
        /// Declared size.
        size: u64,
    },
    /// A central-directory or local header entry is malformed.
    #[error("entry {index}: {reason}")]
    BadEntry {
        /// Position of the entry in the central directory.
        index: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A member's data lies outside the file.
    #[error("member `{name}`: data (offset {offset}, {size} bytes) lies outside the file")]
    DataOutside {
        /// Member name.
        name: String,
        /// Offset of the data.
        offset: u64,
        /// Compressed size.
        size: u64,
    },
    /// A member is encrypted.
    #[error("member `{0}` is encrypted")]
    Encrypted(String),
    /// A member uses a compression method other than stored (0) or deflate (8).
    #[error("member `{name}` uses compression method {method}; only stored (0) and deflate (8) are read")]
    UnsupportedCompression {
        /// Member name.
        name: String,
        /// The method number.
        method: u16,
    },
    /// Two members share a name (a zip parser would pick one; which one differs between
    /// parsers, a known way to hide content).
    #[error("member `{0}` appears twice")]
    DuplicateMember(String),
    /// A member's contents do not match its recorded size or CRC-32.
    #[error("member `{name}` is corrupt: {reason}")]
    Corrupt {
        /// Member name.
        name: String,
        /// What failed.
        reason: &'static str,
    },
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
    /// The storage (data record) a tensor refers to is not in the file.
    #[error("storage `{0}` is missing from the file")]
    MissingStorage(String),
    /// A tensor's view (offset, shape, strides) reaches past the end of its storage, or a
    /// storage's data is shorter than the storage declares.
    #[error("needs {needed} bytes of storage `{storage}`, which has {available}")]
    StorageTooShort {
        /// The storage key.
        storage: String,
        /// Bytes needed.
        needed: u64,
        /// Bytes present.
        available: u64,
    },
    /// Shape and strides have different ranks.
    #[error("shape {shape:?} and strides {stride:?} have different ranks")]
    StrideMismatch {
        /// The shape.
        shape: Vec<usize>,
        /// The strides.
        stride: Vec<usize>,
    },
    /// An element type the file names but weightkin cannot represent.
    #[error("unsupported element type `{dtype}`: {reason}")]
    UnsupportedDtype {
        /// The type as the file names it (`ComplexDoubleStorage`, `torch.quint8`, …).
        dtype: String,
        /// Why.
        reason: &'static str,
    },
    /// A tensor description (the arguments of a tensor-rebuild call) is malformed.
    #[error("malformed {what}: expected {expected}")]
    Malformed {
        /// What part.
        what: &'static str,
        /// What was expected.
        expected: &'static str,
    },
    /// Two references to one storage disagree on its element type or size.
    #[error("storage `{storage}` is declared both as {first} and as {second}")]
    StorageConflict {
        /// The storage key.
        storage: String,
        /// The first declaration (boxed text keeps [`Error`] small).
        first: Box<str>,
        /// The conflicting one.
        second: Box<str>,
    },
    /// The tensor's data could not be decompressed or failed its checksum.
    #[error("data record `{record}` is corrupt: {reason}")]
    CorruptData {
        /// The record (archive member) name.
        record: String,
        /// What failed.
        reason: &'static str,
    },
    /// The data offset is not a multiple of the file's alignment (GGUF requires it).
    #[error("data offset {offset} is not a multiple of the alignment {alignment}")]
    Misaligned {
        /// The offset declared.
        offset: u64,
        /// The alignment required.
        alignment: u64,
    },
    /// A row (the fastest-varying dimension) is not a whole number of blocks of a
    /// block-quantized dtype; GGML stores whole blocks per row.
    #[error("rows of {row} elements are not a whole number of {dtype} blocks of {block}")]
    PartialBlock {
        /// Elements per row.
        row: u64,
        /// The dtype.
        dtype: Dtype,
        /// Elements per block.
        block: u64,
    },
    /// A layout transform needs the rows split evenly among attention heads, and they are not
    /// (undoing llama.cpp's RoPE row permutation needs `rows` divisible by 2 × `heads`).
    #[error("{rows} rows cannot be split into {heads} heads of paired halves")]
    HeadsMismatch {
        /// Rows of the tensor.
        rows: u64,
        /// Heads declared by the file's metadata.
        heads: u64,
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
