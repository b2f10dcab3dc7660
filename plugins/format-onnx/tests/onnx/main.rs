//! Tests of the ONNX format: committed fixtures made by `tools/gen_fixtures.py` with the onnx
//! package (the oracle), hostile files built in code, and the real models of the fixture
//! wheels (`scripts/fetch-fixtures.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// The generated fixtures: recovered names and orientations, external data, every float
/// data type in raw and typed fields, against values onnx itself decoded.
mod fixtures;

/// Hostile files: truncation, lengths past the end, external data outside the directory,
/// duplicate names, recursion bombs — each a clear error, never a panic.
mod hostile;

/// The real ONNX files of the akiki and silero-vad wheels against their PyTorch and
/// safetensors twins.
mod real;

use std::path::{Path, PathBuf};

use weightkin_core::{Format, Limits, WeightSource};

/// The committed fixtures directory.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Opens `path` with the format that sniffs it (ONNX or safetensors).
pub fn open(path: &Path) -> Box<dyn WeightSource> {
    let head = std::fs::read(path).unwrap();
    let head = &head[..head.len().min(64)];
    if weightkin_format_onnx::FORMAT.sniff(path, head) {
        weightkin_format_onnx::FORMAT
            .open(path, &Limits::default())
            .unwrap()
    } else {
        weightkin_core::safetensors::FORMAT
            .open(path, &Limits::default())
            .unwrap()
    }
}

/// Tensor `name` of `s`, whole, as f32.
pub fn values(s: &dyn WeightSource, name: &str) -> Vec<f32> {
    let i = s.find(name).unwrap_or_else(|| panic!("no tensor `{name}`"));
    let mut out = vec![0f32; s.tensors()[i].numel];
    s.read_f32(i, 0, &mut out).unwrap();
    out
}

/// Asserts every float tensor of `b` has a twin in `a` (named `prefix` + its name) with the
/// same shape and bit-identical values, read whole and in odd-sized chunks. Returns how many
/// tensors were checked.
pub fn assert_same(a: &dyn WeightSource, b: &dyn WeightSource, prefix: &str) -> usize {
    let mut n = 0;
    for t in b.tensors().iter().filter(|t| t.dtype.is_float()) {
        let name = format!("{prefix}{}", t.name);
        let i = a
            .find(&name)
            .unwrap_or_else(|| panic!("no tensor `{name}`"));
        assert_eq!(a.tensors()[i].shape, t.shape, "{name}");
        let want = values(b, &t.name);
        let got = values(a, &name);
        assert!(
            want.iter()
                .zip(&got)
                .all(|(x, y)| x.to_bits() == y.to_bits()),
            "{name} differs"
        );
        // Chunked reads cross segment and row boundaries.
        let mut chunked = Vec::new();
        let mut buf = [0f32; 7];
        while chunked.len() < got.len() {
            let k = buf.len().min(got.len() - chunked.len());
            a.read_f32(i, chunked.len(), &mut buf[..k]).unwrap();
            chunked.extend_from_slice(&buf[..k]);
        }
        assert!(
            chunked
                .iter()
                .zip(&got)
                .all(|(x, y)| x.to_bits() == y.to_bits()),
            "{name} chunked"
        );
        n += 1;
    }
    n
}
