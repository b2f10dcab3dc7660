//! `weightkin-format-gguf`: GGUF, the file format of llama.cpp, as a weightkin [`Format`].
//!
//! A quantized GGUF upload is the most common derived artefact on a model hub, so a GGUF file
//! must compare against its Hugging Face safetensors parent as naturally as two safetensors
//! files do. That takes four things, each a module here:
//!
//! * **the header** (`header`): GGUF v2/v3 metadata of every value type, nested arrays up to
//!   a fixed depth, alignment, tensor infos; every count and length is bounded by the bytes
//!   present and by [`Limits`] before anything is allocated (v1 and big-endian files, and one
//!   shard of a model split across files, are refused with a clear error rather than read
//!   partially); tensors must not share bytes or hide bytes between them;
//! * **every GGML type decoded to f32** ([`dequant`]), block by block, for exactly the blocks a
//!   caller's chunk covers, bit-identical to gguf-py's `quants.dequantize` (checked against
//!   golden files it generated); integer tensors are listed and not compared;
//! * **Hugging Face names and row-major shapes** (`names`): `blk.0.attn_q.weight` is presented
//!   as `model.layers.0.self_attn.q_proj.weight` (with `stored_name` keeping the original) for
//!   the llama/mistral, qwen2/qwen2-vl/qwen3, gemma/gemma2/gemma3, phi3 and bert families, and
//!   GGML's fastest-first dimensions are reversed;
//! * **the converter's value conventions undone** (`convention`): the RoPE row permutation of
//!   llama q/k projections (as a row remap while streaming) and the `+1` in Gemma norm weights.
//!
//! Each of these steps is listed as a [`weightkin_core::Transform`] by
//! [`WeightSource::transforms`], so a report shows every step between the bytes on disk and
//! the numbers compared. [`WeightSource::metadata`] holds the file's key/values as text, with
//! long arrays summarised, plus `gguf.version`, `gguf.alignment` and a histogram of tensor
//! types (`gguf.tensor_types`).
//!
//! The file is memory-mapped (one [`weightkin_core::MappedFile`]); opening reads the header
//! only and tensor data is decoded on demand. Nothing here is borrowed from candle: its GGUF
//! reader rejects whole files over one unknown tensor type and copies tensors instead of
//! mapping them, and its kernels cover 15 of the 31 types decoded here.
//!
//! Errors are `weightkin-core`'s, except those only GGUF can have (magic bytes, metadata
//! keys, GGML blocks and alignment, head counts): those are this crate's [`Problem`].
//!
//! With feature `testing`, the `testing` module offers a GGUF writer and gguf-py's reference
//! Q8_0 and Q4_0 quantizers, for fixtures built in code (both byte-identical to gguf-py's
//! output). With feature `fuzzing`, `fuzz()` is the entry point of the cargo-fuzz target in
//! `fuzz/` (outside the workspace).

use std::path::Path;

use weightkin_core::{Format, Limits, Result, WeightSource};

mod convention;
pub mod dequant;
mod error;
mod ggml;
mod header;
mod metadata;
mod names;
mod source;
#[cfg(feature = "testing")]
pub mod testing;
pub mod vocab;

pub use error::Problem;
pub use ggml::{dtype as ggml_dtype, type_id as ggml_type_id};
pub use header::{DEFAULT_ALIGNMENT, MAGIC, MAX_ARRAY_DEPTH};

/// The format's name, as used in recipes and reports.
pub const NAME: &str = "gguf";

/// The GGUF [`Format`]. Register [`FORMAT`].
#[derive(Debug, Clone, Copy, Default)]
pub struct GgufFormat;

/// The one instance to register.
pub static FORMAT: GgufFormat = GgufFormat;

impl Format for GgufFormat {
    fn name(&self) -> &'static str {
        NAME
    }

    fn doc(&self) -> &'static str {
        "GGUF (llama.cpp): every GGML type decoded to f32, tensors under Hugging Face names \
         with llama.cpp's converter conventions undone"
    }

    fn sniff(&self, _path: &Path, head: &[u8]) -> bool {
        head.starts_with(MAGIC)
    }

    fn open(&self, path: &Path, limits: &Limits) -> Result<Box<dyn WeightSource>> {
        Ok(Box::new(source::Source::open(path, limits)?))
    }
}

/// Entry point of the cargo-fuzz target (`fuzz/fuzz_targets/parse.rs`): validates `bytes`
/// as a GGUF file and, if it opens, reads the first and last chunk of every tensor. Must
/// never panic, whatever the bytes. Not a stable API.
#[cfg(feature = "fuzzing")]
pub fn fuzz(bytes: &[u8]) {
    let limits = Limits::default();
    if let Ok(layout) = source::layout(Path::new("fuzz.gguf"), bytes, &limits) {
        for (i, t) in layout.table.tensors().iter().enumerate() {
            let n = t.numel.min(4096);
            let mut out = vec![0f32; n];
            let _ = source::read(&layout, bytes, i, 0, &mut out);
            let _ = source::read(&layout, bytes, i, t.numel - n, &mut out);
        }
        if let Some(at) = layout.tokens {
            let _ = vocab::tokens(bytes, at);
        }
    }
}
