//! The `Format` / `WeightSource` API on files built in code: sniffing, shapes, dtypes,
//! metadata, transforms, reads and read errors.

use std::path::Path;

use weightkin_core::{Dtype, Error, Format};
use weightkin_format_gguf::testing::{GgufBuilder, Meta};
use weightkin_format_gguf::{FORMAT, NAME};

use crate::{failure, open_bytes, read_all};

#[test]
fn sniffs_by_magic_only() {
    assert_eq!(FORMAT.name(), NAME);
    assert!(!FORMAT.doc().is_empty());
    assert!(FORMAT.sniff(Path::new("x.bin"), b"GGUF\x03\0\0\0"));
    assert!(!FORMAT.sniff(Path::new("x.gguf"), b"GGML"));
    assert!(!FORMAT.sniff(Path::new("x.gguf"), b""));
    assert!(!FORMAT.sniff(Path::new("x.safetensors"), b"\x10\0\0\0\0\0\0\0{\"a\""));
}

#[test]
fn shapes_are_row_major_and_bytes_stay_in_place() {
    let v: Vec<f32> = (0..24).map(|i| i as f32).collect();
    let bytes = GgufBuilder::new("other")
        .tensor_f32("cube", &[2, 3, 4], &v)
        .tensor_f32("vec", &[5], &v[..5])
        .to_bytes()
        .unwrap();
    // The writer stores ne = [4, 3, 2]: check the file really is fastest-first.
    let at = bytes.windows(4).position(|w| w == b"cube").unwrap() + 4;
    assert_eq!(&bytes[at..at + 4], &3u32.to_le_bytes()); // n_dims
    assert_eq!(&bytes[at + 4..at + 12], &4u64.to_le_bytes()); // ne[0]
    let source = open_bytes(&bytes).unwrap();
    let t = &source.tensors()[source.find("cube").unwrap()];
    assert_eq!(t.shape, vec![2, 3, 4]);
    assert_eq!((t.numel, t.byte_len, t.dtype), (24, 96, Dtype::F32));
    assert_eq!(t.stored_name, None);
    assert_eq!(read_all(source.as_ref(), "cube"), v);
    let tr = source
        .transforms()
        .iter()
        .find(|t| t.name == "gguf-row-major-shape")
        .unwrap();
    assert_eq!(tr.tensors, 1);
}

#[test]
fn float_dtypes_read_and_integer_dtypes_are_listed_not_converted() {
    let f64s = [1.5f64, -1e-50, 3e40];
    let bf16 = [0x3f80u16, 0xc000]; // 1.0, -2.0
    let bytes = GgufBuilder::new("other")
        .tensor_raw(
            "f64",
            Dtype::F64,
            &[3],
            f64s.iter().flat_map(|v| v.to_le_bytes()).collect(),
        )
        .tensor_raw(
            "bf16",
            Dtype::BF16,
            &[2],
            bf16.iter().flat_map(|v| v.to_le_bytes()).collect(),
        )
        .tensor_raw("i8", Dtype::I8, &[2], vec![1, 2])
        .tensor_raw("i16", Dtype::I16, &[1], vec![1, 0])
        .tensor_raw("i32", Dtype::I32, &[1], vec![1, 0, 0, 0])
        .tensor_raw("i64", Dtype::I64, &[1], vec![0; 8])
        .to_bytes()
        .unwrap();
    let source = open_bytes(&bytes).unwrap();
    assert_eq!(read_all(source.as_ref(), "f64"), [1.5, -0.0, f32::INFINITY]);
    assert_eq!(read_all(source.as_ref(), "bf16"), [1.0, -2.0]);
    for (name, dtype) in [
        ("i8", Dtype::I8),
        ("i16", Dtype::I16),
        ("i32", Dtype::I32),
        ("i64", Dtype::I64),
    ] {
        let i = source.find(name).unwrap();
        assert_eq!(source.tensors()[i].dtype, dtype);
        let err = source.read_f32(i, 0, &mut [0.0]).unwrap_err();
        assert!(
            matches!(err, Error::NotConvertible { dtype: d, .. } if d == dtype),
            "{err}"
        );
    }
}

#[test]
fn read_errors_are_structured() {
    let bytes = GgufBuilder::new("other")
        .tensor_q8_0("q", &[64], &[0.5; 64])
        .to_bytes()
        .unwrap();
    let source = open_bytes(&bytes).unwrap();
    let err = source.read_f32(1, 0, &mut [0.0]).unwrap_err();
    assert!(
        matches!(err, Error::NoSuchTensor { index: 1, count: 1 }),
        "{err}"
    );
    let err = source.read_f32(0, 60, &mut [0.0; 5]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ReadOutOfRange {
                start: 60,
                len: 5,
                numel: 64,
                ..
            }
        ),
        "{err}"
    );
    let err = source.read_f32(0, usize::MAX, &mut [0.0; 2]).unwrap_err();
    assert!(matches!(err, Error::ReadOutOfRange { .. }), "{err}");
    let mut out = [0f32; 3];
    source.read_f32(0, 61, &mut out).unwrap();
    assert!(out.iter().all(|&v| (v - 0.5).abs() < 1e-3));
    source.read_f32(0, 64, &mut []).unwrap();
}

#[test]
fn metadata_is_readable_and_summarises_big_arrays() {
    let vocab: Vec<Meta> = (0..2000).map(|i| Meta::Str(format!("tok{i}"))).collect();
    let scores: Vec<Meta> = (0..2000).map(|i| Meta::F32(i as f32)).collect();
    let bytes = GgufBuilder::new("llama")
        .kv("general.file_type", Meta::U32(3))
        .kv("llama.attention.head_count", Meta::U32(9))
        .kv(
            "llama.rope.dimension_sections",
            Meta::Array(5, vec![Meta::I32(16), Meta::I32(24)]),
        )
        .kv("tokenizer.ggml.tokens", Meta::Array(8, vocab))
        .kv("tokenizer.ggml.scores", Meta::Array(6, scores))
        .kv(
            "tokenizer.chat_template",
            Meta::Str("{% for m in messages %}\n".repeat(40)),
        )
        .tensor_q4_0("blk.0.ffn_up.weight", &[2, 32], &[1.0; 64])
        .tensor_q4_0("blk.0.ffn_down.weight", &[2, 32], &[1.0; 64])
        .tensor_f32("output_norm.weight", &[2], &[1.0; 2])
        .to_bytes()
        .unwrap();
    let source = open_bytes(&bytes).unwrap();
    let m = source.metadata();
    let get = |k: &str| m.get(k).map(String::as_str);
    assert_eq!(get("general.architecture"), Some("\"llama\""));
    assert_eq!(get("general.file_type"), Some("3 (MOSTLY_Q4_1)"));
    assert_eq!(get("llama.attention.head_count"), Some("9"));
    assert_eq!(get("llama.rope.dimension_sections"), Some("[16, 24]"));
    assert_eq!(get("tokenizer.ggml.tokens"), Some("array of 2000 strings"));
    assert_eq!(
        get("tokenizer.ggml.scores"),
        Some("array of 2000 f32 values")
    );
    let template = get("tokenizer.chat_template").unwrap();
    assert!(
        template.starts_with("\"{% for m in messages %}\\n"),
        "{template}"
    );
    assert!(template.ends_with("(960 bytes)"), "{template}");
    assert_eq!(get("gguf.tensor_types"), Some("F32: 1, Q4_0: 2"));
    assert_eq!(get("gguf.version"), Some("3"));
    assert_eq!(get("gguf.trailing_bytes"), None);

    let names: Vec<_> = source
        .transforms()
        .iter()
        .map(|t| (t.name.as_str(), t.tensors))
        .collect();
    assert_eq!(
        names,
        [
            ("gguf-row-major-shape", 2),
            ("gguf-hf-names", 3),
            ("gguf-dequantize", 2)
        ]
    );
    for t in source.tensors() {
        assert!(t
            .stored_name
            .as_deref()
            .is_some_and(|s| s.starts_with("blk.") || s == "output_norm.weight"));
    }
    let names: Vec<_> = source.tensors().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "model.layers.0.mlp.down_proj.weight",
            "model.layers.0.mlp.up_proj.weight",
            "model.norm.weight"
        ]
    );
}

#[test]
fn unmapped_names_are_kept_and_counted() {
    let bytes = GgufBuilder::new("qwen2")
        .tensor_f32("blk.0.attn_norm.weight", &[2], &[1.0; 2])
        .tensor_f32("rope_freqs.weight", &[2], &[1.0; 2])
        .tensor_f32("blk.0.ffn_gate_exps.weight", &[2], &[1.0; 2])
        .to_bytes()
        .unwrap();
    let source = open_bytes(&bytes).unwrap();
    let names: Vec<_> = source
        .tensors()
        .iter()
        .map(|t| (t.name.as_str(), t.stored_name.as_deref()))
        .collect();
    assert_eq!(
        names,
        [
            ("blk.0.ffn_gate_exps.weight", None),
            (
                "model.layers.0.input_layernorm.weight",
                Some("blk.0.attn_norm.weight")
            ),
            ("rope_freqs.weight", None),
        ]
    );
    let t = source
        .transforms()
        .iter()
        .find(|t| t.name == "gguf-hf-names")
        .unwrap();
    assert_eq!(t.tensors, 1);
    assert!(t.detail.contains("2 tensor(s)"), "{}", t.detail);
}

#[test]
fn a_stored_name_colliding_with_a_renamed_one_is_an_error() {
    let bytes = GgufBuilder::new("qwen2")
        .tensor_f32("blk.0.attn_norm.weight", &[2], &[1.0; 2])
        .tensor_f32("model.layers.0.input_layernorm.weight", &[2], &[1.0; 2])
        .to_bytes()
        .unwrap();
    let err = failure(open_bytes(&bytes));
    assert!(
        matches!(&err, Error::DuplicateTensor { tensor, .. } if tensor == "model.layers.0.input_layernorm.weight"),
        "{err}"
    );
}

#[test]
fn version_2_custom_alignment_empty_tensors_and_trailing_bytes() {
    let bytes = GgufBuilder::new("other")
        .version(2)
        .alignment(256)
        .tensor_f32("a", &[3], &[1.0, 2.0, 3.0])
        .tensor_f32("empty", &[0, 4], &[])
        .tensor_f32("b", &[1], &[4.0])
        .to_bytes()
        .unwrap();
    assert_eq!(bytes.len() % 256, 0);
    let source = open_bytes(&bytes).unwrap();
    assert_eq!(source.metadata().get("gguf.version").unwrap(), "2");
    assert_eq!(source.metadata().get("gguf.alignment").unwrap(), "256");
    assert_eq!(read_all(source.as_ref(), "b"), [4.0]);
    assert_eq!(read_all(source.as_ref(), "empty"), Vec::<f32>::new());
    assert_eq!(
        source.tensors()[source.find("empty").unwrap()].shape,
        vec![0, 4]
    );

    // Bytes after the last tensor's padding are reported, not hidden.
    let mut longer = bytes.clone();
    longer.extend([7u8; 300]);
    let source = open_bytes(&longer).unwrap();
    assert_eq!(source.metadata().get("gguf.trailing_bytes").unwrap(), "300");
}

#[test]
fn a_file_without_tensors_or_keys_opens_empty() {
    let source = open_bytes(&GgufBuilder::bare().to_bytes().unwrap()).unwrap();
    assert!(source.tensors().is_empty());
    assert!(source.transforms().is_empty());
    assert_eq!(source.format(), NAME);
    assert_eq!(source.files().len(), 1);
}

#[test]
fn vocabulary_is_the_token_array_long_or_short() {
    use weightkin_format_gguf::vocab::TOKENS_KEY;
    let strings =
        |tokens: &[String]| Meta::Array(8, tokens.iter().map(|t| Meta::Str(t.clone())).collect());
    // Longer than the header keeps (1024), with a tensor after the metadata.
    let long: Vec<String> = (0..3000).map(|i| format!("Ġtok{i}")).collect();
    let bytes = GgufBuilder::new("llama")
        .kv(TOKENS_KEY, strings(&long))
        .kv(
            "tokenizer.ggml.scores",
            Meta::Array(6, vec![Meta::F32(0.5); 3000]),
        )
        .tensor_f32("token_embd.weight", &[2, 2], &[1.0, 2.0, 3.0, 4.0])
        .to_bytes()
        .unwrap();
    let source = open_bytes(&bytes).unwrap();
    assert_eq!(source.vocabulary(), Some(long.as_slice()));
    // Asked twice: the same (decoded once).
    assert_eq!(source.vocabulary().map(<[String]>::len), Some(3000));

    let short = vec!["<s>".to_owned(), "▁a".to_owned()];
    let bytes = GgufBuilder::new("llama")
        .kv(TOKENS_KEY, strings(&short))
        .to_bytes()
        .unwrap();
    assert_eq!(
        open_bytes(&bytes).unwrap().vocabulary(),
        Some(short.as_slice())
    );

    // No tokens, or tokens that are not strings: no vocabulary.
    let bytes = GgufBuilder::new("llama").to_bytes().unwrap();
    assert_eq!(open_bytes(&bytes).unwrap().vocabulary(), None);
    let bytes = GgufBuilder::new("llama")
        .kv(TOKENS_KEY, Meta::Array(4, vec![Meta::U32(1)]))
        .to_bytes()
        .unwrap();
    assert_eq!(open_bytes(&bytes).unwrap().vocabulary(), None);
}

/// Q8_0 blocks with every kind of scale (normal, subnormal, ±0, the largest f16, and with
/// `nonfinite` ∞ and NaN) and random codes; `like` makes every third block a copy of its
/// block, and every fifth the same codes under another scale.
fn q8_0_blocks(blocks: usize, seed: u64, nonfinite: bool, like: Option<&[u8]>) -> Vec<u8> {
    let mut rng = weightkin_core::rng::Rng::new(seed);
    let mut out = Vec::with_capacity(blocks * 34);
    for i in 0..blocks {
        if let Some(other) = like.filter(|_| i % 3 == 0) {
            out.extend_from_slice(&other[i * 34..(i + 1) * 34]);
            continue;
        }
        let r = rng.next_u32();
        let d: u16 = match r % 16 {
            0 => 0x0000,
            1 => 0x8000,
            2 => 0x0001 + (r >> 8) as u16 % 0x3ff, // subnormal
            3 => 0x7bff,                           // largest finite
            4 if nonfinite => 0x7c00,              // ∞
            5 if nonfinite => 0x7e01,              // NaN
            _ => (0x1800 + (r >> 8) as u16 % 0x1000) | (r as u16 & 0x8000),
        };
        out.extend_from_slice(&d.to_le_bytes());
        match like.filter(|_| i % 5 == 0) {
            Some(other) => out.extend_from_slice(&other[i * 34 + 2..(i + 1) * 34]),
            None => out.extend((0..32).map(|_| rng.next_u32() as u8)),
        }
    }
    out
}

/// A source that hides the blocks, so that the pass decodes through `read_f32`.
pub(crate) struct Buffered<'a>(pub(crate) &'a dyn weightkin_core::WeightSource);

impl weightkin_core::WeightSource for Buffered<'_> {
    fn table(&self) -> &weightkin_core::TensorTable {
        self.0.table()
    }
    fn read_f32(&self, index: usize, start: usize, out: &mut [f32]) -> weightkin_core::Result<()> {
        self.0.read_f32(index, start, out)
    }
}

/// A pair of Q8_0 tensors reduced by the kernel that decodes the blocks itself (where the CPU
/// has one) gives the same bits as decoding to f32 first, whole and sampled, on hostile
/// scales, ragged last windows included.
#[test]
fn q8_0_pairs_give_the_same_bits_with_or_without_blocks() {
    use weightkin_core::{pair_moments, pair_moments_sampled, Side, CHUNK};
    let bits = crate::moment_bits;
    let numel = 3 * CHUNK + 64 * 5;
    let blocks = numel / 32;
    let (fa, na) = (
        q8_0_blocks(blocks, 1, false, None),
        q8_0_blocks(blocks, 3, true, None),
    );
    let (fb, nb) = (
        q8_0_blocks(blocks, 2, false, Some(&fa)),
        q8_0_blocks(blocks, 4, true, Some(&na)),
    );
    let shape = [numel / 64, 64];
    let bytes = GgufBuilder::new("other")
        .tensor_raw("fa", Dtype::Q8_0, &shape, fa)
        .tensor_raw("fb", Dtype::Q8_0, &shape, fb)
        .tensor_raw("na", Dtype::Q8_0, &shape, na)
        .tensor_raw("nb", Dtype::Q8_0, &shape, nb)
        .to_bytes()
        .unwrap();
    let source = open_bytes(&bytes).unwrap();
    let src = source.as_ref();
    let plain = Buffered(src);
    for (x, y) in [("fa", "fb"), ("na", "nb"), ("fa", "fa")] {
        let (ix, iy) = (src.find(x).unwrap(), src.find(y).unwrap());
        assert!(src.blocks(ix).is_some());
        assert!(weightkin_core::WeightSource::blocks(&plain, ix).is_none());
        let direct = pair_moments(Side::new(src, ix), Side::new(src, iy), numel).unwrap();
        let buffered = pair_moments(Side::new(&plain, ix), Side::new(&plain, iy), numel).unwrap();
        assert_eq!(bits(direct), bits(buffered), "{x} vs {y}");
        assert_eq!(direct.n, numel as u64);
        if x == "fa" {
            assert!(direct.mean_a.is_finite() && direct.sum_sq_diff.is_finite());
        }
        for budget in [CHUNK, 2 * CHUNK] {
            let sample = |s: &dyn weightkin_core::WeightSource| {
                pair_moments_sampled(Side::new(s, ix), Side::new(s, iy), numel, budget).unwrap()
            };
            assert_eq!(
                bits(sample(src)),
                bits(sample(&plain)),
                "{x} vs {y}, {budget}"
            );
        }
    }
}

/// A Q8_0 tensor against BF16, F16 and F32 tensors of its shape (either side first), through
/// the pass that decodes both inside the kernel where the CPU has it: the moments, both
/// sides' magnitudes and the kept samples are those of decoding both to f32 first — with
/// finite values, and with an ∞ and a NaN among them (those chunks take the buffers).
#[test]
fn q8_0_against_floats_gives_the_same_pass_with_or_without_blocks() {
    use weightkin_core::{pair_pass, Side, Taps, CHUNK};
    let bits = crate::moment_bits;
    let numel = 3 * CHUNK + 64 * 5;
    let shape = [numel / 64, 64];
    let q = q8_0_blocks(numel / 32, 5, false, None);
    let mut rng = weightkin_core::rng::Rng::new(9);
    let mut values: Vec<f32> = (0..numel)
        .map(|_| (rng.next_u32() >> 8) as f32 / (1 << 24) as f32 - 0.5)
        .collect();
    let mut builder = GgufBuilder::new("other").tensor_raw("q", Dtype::Q8_0, &shape, q);
    for nonfinite in [false, true] {
        if nonfinite {
            (values[7], values[CHUNK + 9]) = (f32::INFINITY, f32::NAN);
        }
        let tag = if nonfinite { "n" } else { "f" };
        let bf16: Vec<u8> = values
            .iter()
            .flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes())
            .collect();
        let f16: Vec<u8> = values
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect();
        builder = builder
            .tensor_raw(&format!("bf16{tag}"), Dtype::BF16, &shape, bf16)
            .tensor_raw(&format!("f16{tag}"), Dtype::F16, &shape, f16)
            .tensor_f32(&format!("f32{tag}"), &shape, &values);
    }
    let source = open_bytes(&builder.to_bytes().unwrap()).unwrap();
    let src = source.as_ref();
    let plain = Buffered(src);
    let taps = Taps {
        samples: Some(2 * CHUNK),
        ulp: Some(CHUNK),
        observer: None,
        magnitudes: true,
        ..Default::default()
    };
    let iq = src.find("q").unwrap();
    for name in ["bf16f", "f16f", "f32f", "bf16n", "f16n", "f32n"] {
        let i = src.find(name).unwrap();
        for (x, y) in [(iq, i), (i, iq)] {
            let direct = pair_pass(Side::new(src, x), Side::new(src, y), numel, &taps).unwrap();
            let buffered =
                pair_pass(Side::new(&plain, x), Side::new(&plain, y), numel, &taps).unwrap();
            assert_eq!(bits(direct.moments), bits(buffered.moments), "{name}");
            assert_eq!(direct.magnitudes, buffered.magnitudes, "{name}");
            assert!(direct.samples.is_some());
            assert_eq!(direct.samples, buffered.samples, "{name}");
        }
    }
}
