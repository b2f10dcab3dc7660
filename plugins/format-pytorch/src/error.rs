//! [`Problem`]: what can be wrong with a PyTorch checkpoint that no other format has.
//!
//! Problems every format shares (a truncated header, too many tensors, an overflowing shape,
//! an unsupported container) are `weightkin-core`'s [`HeaderProblem`] and [`TensorProblem`]
//! variants. The PyTorch-only ones — a refused pickle global, a malformed pickle stream
//! ([`PickleProblem`]) or zip container ([`ArchiveProblem`]), storage records and tensor
//! views that do not fit — are variants here, carried by core's `Format` variants (see
//! [`FormatSpecific`]) so that core names no pickle or zip concept. Callers match them with
//! [`Error::format_problem`]`::<Problem>()`.

use weightkin_core::FormatSpecific;
#[cfg(doc)]
use weightkin_core::{Error, HeaderProblem, TensorProblem};

/// What is wrong with a PyTorch checkpoint, beyond what every format can get wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
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
        /// legacy stream (`legacy object`, …).
        stream: &'static str,
        /// Offset of the offending opcode within the stream.
        offset: u64,
        /// What is wrong.
        problem: PickleProblem,
    },
    /// A zip container is malformed or uses a feature weightkin does not read.
    #[error("archive: {0}")]
    Archive(ArchiveProblem),
    /// A record (archive member or stream part) the format requires is absent.
    #[error("missing record `{0}`")]
    MissingRecord(String),
    /// Walking a file's object graph reached more objects than allowed. Shared references
    /// are followed once per path, so a small file of nested shared containers could
    /// otherwise expand exponentially.
    #[error("the object graph reaches more than {limit} objects (shared references expanded)")]
    TooManyObjects {
        /// The limit.
        limit: u64,
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
        /// The first declaration.
        first: String,
        /// The conflicting one.
        second: String,
    },
    /// The tensor's data could not be decompressed or failed its checksum.
    #[error("data record `{record}` is corrupt: {reason}")]
    CorruptData {
        /// The record (archive member) name.
        record: String,
        /// What failed.
        reason: &'static str,
    },
}

impl FormatSpecific for Problem {}

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
