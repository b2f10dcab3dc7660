//! Caps on what an untrusted model file may make us do.
//!
//! Each default cites where it comes from. A `Limits` value is passed explicitly to every
//! `Format::open`, never read from a global, so that tests can tighten it.

/// Resource caps applied while opening model files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest header (JSON for safetensors) we parse, in bytes. Default 100 MB: the
    /// `safetensors` crate's own `MAX_HEADER_SIZE` (safetensors `src/tensor.rs`).
    pub max_header_bytes: u64,
    /// Largest shard index (`model.safetensors.index.json`) we read, in bytes. Default 64 MiB;
    /// the index of a 671B-parameter checkpoint (DeepSeek-V3, ~91k tensors) is ~9 MB.
    pub max_index_bytes: u64,
    /// Most tensors in one model. Default 2²⁰: an order of magnitude above the largest public
    /// checkpoints (~91k tensors for DeepSeek-V3), far below what could exhaust memory.
    pub max_tensors: u64,
    /// Most files in one sharded model. Default 65 536 (DeepSeek-V3 ships 163 shards).
    pub max_files: u64,
    /// Highest tensor rank. Default 16; candle's GGUF reader caps at 4 and real checkpoints
    /// rarely exceed 5 (conv3d weights).
    pub max_rank: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 100_000_000,
            max_index_bytes: 64 << 20,
            max_tensors: 1 << 20,
            max_files: 1 << 16,
            max_rank: 16,
        }
    }
}
