//! Decoders, writer and name maps against files made by llama.cpp's gguf-py
//! (`tests/golden/gen.py`).

use std::collections::BTreeMap;

use weightkin_core::Dtype;
use weightkin_format_gguf::testing::{GgufBuilder, Meta};

use crate::{golden, open, read_all};

/// Distance in units of the last place between two f32 values (0 for equal bits, for two NaNs,
/// and for +0 / -0).
fn ulps(a: f32, b: f32) -> u64 {
    if a.is_nan() && b.is_nan() {
        return 0;
    }
    if a.is_nan() || b.is_nan() {
        return u64::MAX;
    }
    // Map the sign-magnitude bits onto a monotonic integer line.
    let key = |x: f32| -> i64 {
        let bits = i64::from(x.to_bits());
        if bits & 0x8000_0000 != 0 {
            -(bits & 0x7fff_ffff)
        } else {
            bits
        }
    };
    key(a).abs_diff(key(b))
}

/// Every type gguf-py's `gguf.quants.dequantize` decodes (gguf 0.19), plus F64: the golden
/// file must hold exactly these.
const GOLDEN_TYPES: &[&str] = &[
    "f32", "f16", "bf16", "f64", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k", "q3_k", "q4_k",
    "q5_k", "q6_k", "iq2_xxs", "iq2_xs", "iq3_xxs", "iq1_s", "iq4_nl", "iq3_s", "iq2_s", "iq4_xs",
    "iq1_m", "tq1_0", "tq2_0", "mxfp4", "nvfp4",
];

#[test]
fn every_type_decodes_bit_identically_to_gguf_py() {
    let blocks = open(&golden("dequant_blocks.gguf")).unwrap();
    let want = open(&golden("dequant_expected.gguf")).unwrap();
    let mut names: Vec<&str> = blocks.tensors().iter().map(|t| t.name.as_str()).collect();
    let mut expected_names = GOLDEN_TYPES.to_vec();
    names.sort_unstable();
    expected_names.sort_unstable();
    assert_eq!(names, expected_names);

    let mut report = BTreeMap::new();
    for t in blocks.tensors() {
        assert_eq!(
            t.dtype.as_str().to_lowercase(),
            t.name,
            "dtype of {}",
            t.name
        );
        assert_eq!(t.shape, vec![4, 1024], "{}", t.name);
        assert!(t.dtype.is_float(), "{}", t.name);
        let got = read_all(blocks.as_ref(), &t.name);
        let reference = read_all(want.as_ref(), &t.name);
        assert_eq!(got.len(), reference.len());
        let max = got
            .iter()
            .zip(&reference)
            .map(|(&a, &b)| ulps(a, b))
            .max()
            .unwrap();
        let finite = reference.iter().filter(|v| v.is_finite()).count();
        report.insert(t.name.clone(), (max, finite));
    }
    eprintln!("max ulp vs gguf.quants.dequantize (finite reference values):");
    for (name, (max, finite)) in &report {
        eprintln!("  {name:8} {max} ulp ({finite} finite of 4096)");
    }
    // The issue allows 1 ulp; the decoders mirror gguf-py's operation order, so they match
    // bit for bit, and a regression to "close" would hide an ordering change.
    for (name, (max, finite)) in &report {
        assert_eq!(*max, 0, "{name} differs from gguf-py by up to {max} ulp");
        assert!(*finite > 4000, "{name}: golden values should be finite");
    }
}

#[test]
fn chunked_reads_at_any_offset_equal_the_whole_read() {
    let blocks = open(&golden("dequant_blocks.gguf")).unwrap();
    for (i, t) in blocks.tensors().iter().enumerate() {
        let whole = read_all(blocks.as_ref(), &t.name);
        // Chunks that start and end inside blocks of every size.
        for chunk in [1usize, 7, 33, 255, 1000] {
            let mut start = 3.min(t.numel);
            while start < t.numel {
                let len = chunk.min(t.numel - start);
                let mut out = vec![f32::NAN; len];
                blocks.read_f32(i, start, &mut out).unwrap();
                for (k, (a, b)) in out.iter().zip(&whole[start..start + len]).enumerate() {
                    assert_eq!(a.to_bits(), b.to_bits(), "{} at {}", t.name, start + k);
                }
                start += len;
            }
        }
    }
}

/// The writer fixture's input: values every language computes identically.
fn deterministic(n: usize, seed: i64) -> Vec<f32> {
    let mut v: Vec<f32> = (0..n as i64)
        .map(|i| (((i * 7919 + seed * 104_729) % 2001) - 1000) as f32 / 256.0)
        .collect();
    if n >= 96 {
        v[32..64].fill(0.0);
        for (k, x) in v[64..96].iter_mut().enumerate() {
            *x = 0.5 * (k as f32 - 16.0);
        }
    }
    v
}

/// The same file as `writer.gguf`, built by weightkin's test writer and quantizers.
fn writer_fixture() -> GgufBuilder {
    let f16: Vec<u8> = deterministic(3, 2)
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
        .collect();
    GgufBuilder::new("weightkin-test")
        .alignment(64)
        .kv("t.u8", Meta::U8(200))
        .kv("t.i8", Meta::I8(-100))
        .kv("t.u16", Meta::U16(60000))
        .kv("t.i16", Meta::I16(-30000))
        .kv("t.u32", Meta::U32(4_000_000_000))
        .kv("t.i32", Meta::I32(-2_000_000_000))
        .kv("t.f32", Meta::F32(0.15625))
        .kv("t.bool", Meta::Bool(true))
        .kv("t.string", Meta::str("héllo\nworld"))
        .kv("t.u64", Meta::U64((1 << 63) + 5))
        .kv("t.i64", Meta::I64(-(1 << 62)))
        .kv("t.f64", Meta::F64(-2.5e-300))
        .kv(
            "t.array_i32",
            Meta::Array(5, vec![Meta::I32(1), Meta::I32(2), Meta::I32(3)]),
        )
        .kv(
            "t.array_f32",
            Meta::Array(6, vec![Meta::F32(0.5), Meta::F32(-1.0)]),
        )
        .kv(
            "t.array_str",
            Meta::Array(8, vec![Meta::str("a"), Meta::str("bc"), Meta::str("")]),
        )
        .kv(
            "t.nested",
            Meta::Array(
                9,
                vec![
                    Meta::Array(5, vec![Meta::I32(1), Meta::I32(2)]),
                    Meta::Array(5, vec![Meta::I32(3)]),
                ],
            ),
        )
        .tensor_f32("f32", &[2, 40], &deterministic(80, 1))
        .tensor_raw("f16", Dtype::F16, &[3], f16)
        .tensor_q8_0("q8_0", &[6, 64], &deterministic(384, 3))
        .tensor_q4_0("q4_0", &[6, 64], &deterministic(384, 4))
}

#[test]
fn writer_and_quantizers_reproduce_gguf_py_byte_for_byte() {
    let want = std::fs::read(golden("writer.gguf")).unwrap();
    let got = writer_fixture().to_bytes().unwrap();
    assert_eq!(got.len(), want.len());
    if let Some(at) = got.iter().zip(&want).position(|(a, b)| a != b) {
        panic!("first difference at byte {at}");
    }
}

#[test]
fn reads_gguf_py_metadata_of_every_type() {
    let source = open(&golden("writer.gguf")).unwrap();
    let m = source.metadata();
    let expect = [
        ("general.architecture", "\"weightkin-test\""),
        ("general.alignment", "64"),
        ("gguf.alignment", "64"),
        ("gguf.version", "3"),
        ("gguf.tensor_types", "F16: 1, F32: 1, Q4_0: 1, Q8_0: 1"),
        ("t.u8", "200"),
        ("t.i8", "-100"),
        ("t.u16", "60000"),
        ("t.i16", "-30000"),
        ("t.u32", "4000000000"),
        ("t.i32", "-2000000000"),
        ("t.f32", "0.15625"),
        ("t.bool", "true"),
        ("t.string", "\"héllo\\nworld\""),
        ("t.u64", "9223372036854775813"),
        ("t.i64", "-4611686018427387904"),
        ("t.f64", "-2.5e-300"),
        ("t.array_i32", "[1, 2, 3]"),
        ("t.array_f32", "[0.5, -1]"),
        ("t.array_str", "[\"a\", \"bc\", \"\"]"),
        ("t.nested", "[[1, 2], [3]]"),
    ];
    for (k, v) in expect {
        assert_eq!(m.get(k).map(String::as_str), Some(v), "{k}");
    }
    assert_eq!(m.len(), expect.len(), "{m:#?}");

    // Values: F32 and F16 exactly, the quantized ones within half a quantization step.
    assert_eq!(read_all(source.as_ref(), "f32"), deterministic(80, 1));
    let f16 = read_all(source.as_ref(), "f16");
    for (a, b) in f16.iter().zip(deterministic(3, 2)) {
        assert_eq!(*a, half::f16::from_f32(b).to_f32());
    }
    // Q8_0 rounds to the nearest of ±127 steps; Q4_0 has 8 negative and 7 positive steps of
    // d = max / −8, so a positive value near |max| is clipped by up to a whole step.
    for (name, seed, step) in [("q8_0", 3, 0.5f32 / 127.0), ("q4_0", 4, 1.0 / 8.0)] {
        let got = read_all(source.as_ref(), name);
        let want = deterministic(384, seed);
        for (block, (g, w)) in got.chunks(32).zip(want.chunks(32)).enumerate() {
            let amax = w.iter().fold(0f32, |m, v| m.max(v.abs()));
            // The rounding error, plus the f16 rounding of the scale.
            let tol = amax * step + amax * 2e-3 + f32::EPSILON;
            for (a, b) in g.iter().zip(w) {
                assert!((a - b).abs() <= tol, "{name} block {block}: {a} vs {b}");
            }
        }
    }
}

#[test]
fn name_maps_invert_gguf_py_tensor_mapping() {
    let text = std::fs::read_to_string(golden("names.tsv")).unwrap();
    let mut by_arch: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    for line in text.lines() {
        let mut parts = line.split('\t');
        let (arch, gguf, hf) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        by_arch.entry(arch).or_default().push((gguf, hf));
    }
    assert_eq!(
        by_arch.keys().copied().collect::<Vec<_>>(),
        ["bert", "gemma", "gemma2", "gemma3", "llama", "phi3", "qwen2", "qwen2vl", "qwen3"]
    );
    for (arch, pairs) in &by_arch {
        let mut builder = GgufBuilder::new(arch)
            .kv(&format!("{arch}.attention.head_count"), Meta::U32(2))
            .kv(&format!("{arch}.attention.head_count_kv"), Meta::U32(1));
        for (gguf, _) in pairs {
            builder = builder.tensor_f32(gguf, &[4], &[1.0, 2.0, 3.0, 4.0]);
        }
        let source = crate::open_bytes(&builder.to_bytes().unwrap()).unwrap();
        for (gguf, hf) in pairs {
            let i = source
                .find(hf)
                .unwrap_or_else(|| panic!("{arch}: {gguf} is not presented as {hf}"));
            assert_eq!(
                source.tensors()[i].stored_name.as_deref(),
                Some(*gguf),
                "{arch}"
            );
        }
        assert_eq!(source.tensors().len(), pairs.len(), "{arch}");
    }
}
