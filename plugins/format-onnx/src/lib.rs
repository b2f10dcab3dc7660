//! `weightkin-format-onnx`: ONNX models as a weightkin [`Format`].
//!
//! Many small published models ship only as ONNX (sentence-embedding and VAD models on PyPI,
//! edge deployments, `optimum` exports), and an ONNX export is a natural way to launder where
//! weights came from: the exporter renames and transposes them. This crate reads an ONNX
//! file so that it compares with a safetensors, GGUF or PyTorch twin like any other format:
//!
//! * **the protobuf** (`wire`, `proto`): `ModelProto` and its graphs are decoded in place
//!   from the memory map by a small hand-written wire-format reader (see below), nested
//!   graphs included (`If`/`Loop`/`Scan` bodies), at most [`MAX_GRAPH_DEPTH`] deep and
//!   [`MAX_GRAPH_ITEMS`] items large;
//! * **tensors** (`source`): every initializer, and the float tensors `Constant` nodes hold,
//!   with every data type that converts to f32 (FLOAT, FLOAT16, BFLOAT16, DOUBLE, the FLOAT8
//!   types, FLOAT4E2M1, the FLOAT6 types) from `raw_data`, from the typed fields
//!   (`float_data`, `int32_data` bit patterns, `double_data`, packed or not), or from
//!   external data files (`data_location = EXTERNAL`) beside the model — absolute paths,
//!   `..` and links leaving the model's directory are refused. Integer, bool and COMPLEX64
//!   tensors are listed, not compared; strings, 4- and 2-bit integers, COMPLEX128 and sparse
//!   tensors are named in the metadata (`onnx.not_listed`);
//! * **names** (`names`): weights an exporter stored under generated names
//!   (`onnx::MatMul_1234`) are presented under the parameter name recovered from the graph,
//!   in the parameter's orientation (a MatMul weight transposed back to [out, in], RNN gate
//!   blocks back in PyTorch's order); what cannot be recovered keeps its stored name and is
//!   listed in `onnx.names_unrecovered` and as the transform `onnx-names-unrecovered`.
//!
//! Each renaming and layout change is a [`weightkin_core::Transform`]; `inspect` also shows
//! the IR version, producer, opsets, op histogram and `metadata_props`.
//!
//! # Why a hand-written wire reader, not code generated from `onnx.proto`
//!
//! weightkin needs 6 of `onnx.proto`'s messages and 40 of their fields. Generated code
//! (prost) would decode every field of every message into owned values — `raw_data` copied
//! out of the map, so opening a 2 GB model would allocate 2 GB — with no say over how many
//! nodes, names and dimensions a hostile file makes it allocate, and bring a code generator,
//! a committed generated file and its script, and two dependencies. The wire format itself is
//! four value encodings; reading it in place is ~200 lines (`wire`) that borrow every string
//! and payload from the map, check every length against the bytes present, and count what
//! they keep against a budget. Unknown fields are skipped, as protobuf requires, so newer
//! ONNX versions open.
//!
//! Errors are `weightkin-core`'s, except those only ONNX can have (the protobuf encoding,
//! duplicate value names, external data paths): those are this crate's [`Problem`].
//!
//! With feature `testing`, the `testing` module writes small ONNX models for fixtures built
//! in code. With feature `fuzzing`, `fuzz()` is the entry point of the cargo-fuzz target in
//! `fuzz/` (outside the workspace).

use std::path::Path;

use weightkin_core::{Format, Limits, Result, WeightSource};

mod error;
mod names;
mod proto;
mod source;
#[cfg(feature = "testing")]
pub mod testing;
mod wire;

pub use error::{Problem, WireFault};
pub use proto::{MAX_GRAPH_DEPTH, MAX_GRAPH_ITEMS};

/// The format's name, as used in recipes and reports.
pub const NAME: &str = "onnx";

/// The ONNX [`Format`]. Register [`FORMAT`].
#[derive(Debug, Clone, Copy, Default)]
pub struct OnnxFormat;

/// The one instance to register.
pub static FORMAT: OnnxFormat = OnnxFormat;

/// The `ModelProto` fields (number, wire type) a file may start with.
const MODEL_FIELDS: &[(u64, u64)] = &[
    (1, 0),  // ir_version
    (2, 2),  // producer_name
    (3, 2),  // producer_version
    (4, 2),  // domain
    (5, 0),  // model_version
    (6, 2),  // doc_string
    (7, 2),  // graph
    (8, 2),  // opset_import
    (14, 2), // metadata_props
    (20, 2), // training_info
    (25, 2), // functions
    (26, 2), // configuration
];

/// Whether `head` (a file's first bytes) reads as the start of a `ModelProto`: its first
/// field is `ir_version` with a plausible value (1 ..= 100; ONNX is at 11), as every
/// serializer writes fields in number order, and every further field that fits in `head` is
/// a `ModelProto` field of its wire type. A protobuf has no magic bytes, so this is the
/// check onnx's own format detection relies on too: that the bytes parse as the message.
pub fn sniff_head(head: &[u8]) -> bool {
    let mut pos = 0;
    let mut keys = 0;
    while pos < head.len() {
        let Ok(key) = wire::varint(head, &mut pos, 0) else {
            break;
        };
        let (number, wire_type) = (key >> 3, key & 7);
        if !MODEL_FIELDS.contains(&(number, wire_type)) || (keys == 0 && number != 1) {
            return false;
        }
        keys += 1;
        let Ok(value) = wire::varint(head, &mut pos, 0) else {
            break;
        };
        match wire_type {
            0 if number == 1 && !(1..=100).contains(&value) => return false,
            0 => {}
            _ => pos = pos.saturating_add(usize::try_from(value).unwrap_or(usize::MAX)),
        }
    }
    keys >= 2
}

impl Format for OnnxFormat {
    fn name(&self) -> &'static str {
        NAME
    }

    fn doc(&self) -> &'static str {
        "ONNX: initializers and Constant-node weights (raw, typed or external data), \
         exporter-generated names recovered from the graph"
    }

    fn sniff(&self, _path: &Path, head: &[u8]) -> bool {
        sniff_head(head)
    }

    fn open(&self, path: &Path, limits: &Limits) -> Result<Box<dyn WeightSource>> {
        Ok(Box::new(source::Source::open(path, limits)?))
    }
}

/// Entry point of the cargo-fuzz target (`fuzz/fuzz_targets/parse.rs`): validates `bytes` as
/// an ONNX model (external data refused: there is no directory) and, if it opens, reads the
/// first and last chunk of every tensor. Must never panic, whatever the bytes. Not a stable
/// API.
#[cfg(feature = "fuzzing")]
pub fn fuzz(bytes: &[u8]) {
    let _ = sniff_head(bytes.get(..64).unwrap_or(bytes));
    let limits = Limits::default();
    let mut externals = source::Externals::new(None);
    if let Ok(layout) = source::layout(Path::new("fuzz.onnx"), bytes, &limits, &mut externals) {
        for (i, t) in layout.table.tensors().iter().enumerate() {
            let data = match &layout.entries[i].storage {
                source::Storage::Mapped { range, .. } => bytes.get(range.clone()),
                source::Storage::Owned(b) => layout.buffers.get(*b).map(Vec::as_slice),
                source::Storage::None => Some(&[][..]),
            };
            let data = data.unwrap_or(&[]);
            let n = t.numel.min(4096);
            let mut out = vec![0f32; n];
            let _ = source::read(&layout, data, i, 0, &mut out);
            let _ = source::read(&layout, data, i, t.numel - n, &mut out);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn sniffing() {
        // ir_version 8, producer_name "pytorch".
        assert!(sniff_head(b"\x08\x08\x12\x07pytorch\x1a\x052.3.1"));
        // ir_version then graph whose length runs past the window.
        assert!(sniff_head(b"\x08\x07\x3a\xff\xff\x01\x0a"));
        // safetensors, GGUF, zip, text.
        assert!(!sniff_head(b"\x08\x01\x00\x00\x00\x00\x00\x00{\"a\""));
        assert!(!sniff_head(b"GGUF\x03\x00\x00\x00"));
        assert!(!sniff_head(b"PK\x03\x04"));
        assert!(!sniff_head(b"hello world"));
        // ir_version 0 or absurd; a first field other than ir_version.
        assert!(!sniff_head(b"\x08\x00\x12\x01a"));
        assert!(!sniff_head(b"\x08\xc8\x01\x12\x01a"));
        assert!(!sniff_head(b"\x12\x07pytorch"));
        assert!(!sniff_head(b""));
    }
}
