//! [`Problem`]: what can be wrong with a GGUF file that no other format has.
//!
//! Problems every format shares (a truncated header, a tensor past the end of the file, an
//! overflowing shape) are `weightkin-core`'s [`HeaderProblem`] and [`TensorProblem`]
//! variants. The GGUF-only ones — magic bytes, metadata keys and value types, GGML block and
//! alignment rules, the head counts that undoing a converter's RoPE permutation needs — are
//! variants here, carried by core's `Format` variants (see [`FormatSpecific`]) so that core
//! names no GGUF concept. Callers match them with [`Error::format_problem`]`::<Problem>()`.

use weightkin_core::{Dtype, FormatSpecific};
#[cfg(doc)]
use weightkin_core::{Error, HeaderProblem, TensorProblem};

/// What is wrong with a GGUF file, beyond what every format can get wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
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
    /// A tensor's data offset is not a multiple of the file's alignment (GGUF requires it).
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

impl FormatSpecific for Problem {}
