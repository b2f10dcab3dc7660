//! llama.cpp's converter conventions undone: RoPE row permutation (llama) and `+1` in norm
//! weights (Gemma), on files built in code.

use weightkin_core::{Error, HeaderProblem, TensorProblem};
use weightkin_format_gguf::testing::{GgufBuilder, Meta};
use weightkin_format_gguf::Problem;

use crate::{failure, open_bytes, read_all};

/// `LlamaModel.permute(w, n_head, n_head_kv)` of `convert_hf_to_gguf.py`, written out with
/// explicit indices: `w.reshape(n, 2, rows / n / 2, cols).swapaxes(1, 2).reshape(rows, cols)`.
fn permute(w: &[f32], rows: usize, n_head: usize, n_head_kv: usize) -> Vec<f32> {
    let n = if n_head_kv != n_head {
        n_head_kv
    } else {
        n_head
    };
    let cols = w.len() / rows;
    let half = rows / n / 2;
    let mut out = Vec::with_capacity(w.len());
    // Output index order: (h, j, i, c) — after swapaxes the (half, 2) axes are (j, i).
    for h in 0..n {
        for j in 0..half {
            for i in 0..2 {
                let src = h * 2 * half + i * half + j;
                out.extend_from_slice(&w[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

/// The inverse of [`permute`], from the same index formula.
fn unpermute(p: &[f32], rows: usize, heads: usize) -> Vec<f32> {
    let cols = p.len() / rows;
    let half = rows / heads / 2;
    let mut out = vec![0f32; p.len()];
    let mut dst = 0;
    for h in 0..heads {
        for j in 0..half {
            for i in 0..2 {
                let row = h * 2 * half + i * half + j;
                out[row * cols..(row + 1) * cols].copy_from_slice(&p[dst * cols..(dst + 1) * cols]);
                dst += 1;
            }
        }
    }
    out
}

fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n as u32)
        .map(|i| ((i.wrapping_mul(2_654_435_761) ^ seed) % 1000) as f32 / 100.0 - 5.0)
        .collect()
}

const N_HEAD: usize = 4;
const N_HEAD_KV: usize = 2;
const HEAD_DIM: usize = 8;
const COLS: usize = 64;

/// A llama file whose q/k tensors were permuted as the converter does, F32 and Q8_0.
fn llama_file(arch: &str, heads: Meta, heads_kv: Meta) -> (Vec<u8>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let (q_rows, k_rows) = (N_HEAD * HEAD_DIM, N_HEAD_KV * HEAD_DIM);
    let q = values(q_rows * COLS, 1);
    let k = values(k_rows * COLS, 2);
    let bias = values(q_rows, 3);
    let bytes = GgufBuilder::new(arch)
        .kv(&format!("{arch}.attention.head_count"), heads)
        .kv(&format!("{arch}.attention.head_count_kv"), heads_kv)
        .tensor_f32(
            "blk.0.attn_q.weight",
            &[q_rows, COLS],
            &permute(&q, q_rows, N_HEAD, N_HEAD),
        )
        .tensor_f32(
            "blk.0.attn_k.weight",
            &[k_rows, COLS],
            &permute(&k, k_rows, N_HEAD, N_HEAD_KV),
        )
        .tensor_f32(
            "blk.0.attn_q.bias",
            &[q_rows],
            &permute(&bias, q_rows, N_HEAD, N_HEAD),
        )
        .tensor_f32("blk.0.attn_v.weight", &[k_rows, COLS], &k)
        .tensor_q8_0(
            "blk.1.attn_q.weight",
            &[q_rows, COLS],
            &permute(&q, q_rows, N_HEAD, N_HEAD),
        )
        .tensor_q8_0(
            "blk.1.attn_k.weight",
            &[k_rows, COLS],
            &permute(&k, k_rows, N_HEAD, N_HEAD_KV),
        )
        .to_bytes()
        .unwrap();
    (bytes, q, k, bias)
}

#[test]
fn llama_q_and_k_rows_are_unpermuted() {
    let (bytes, q, k, bias) = llama_file(
        "llama",
        Meta::U32(N_HEAD as u32),
        Meta::U32(N_HEAD_KV as u32),
    );
    let source = open_bytes(&bytes).unwrap();
    assert_eq!(
        read_all(source.as_ref(), "model.layers.0.self_attn.q_proj.weight"),
        q
    );
    assert_eq!(
        read_all(source.as_ref(), "model.layers.0.self_attn.k_proj.weight"),
        k
    );
    assert_eq!(
        read_all(source.as_ref(), "model.layers.0.self_attn.q_proj.bias"),
        bias
    );
    // v is not permuted by the converter, and is not un-permuted.
    assert_eq!(
        read_all(source.as_ref(), "model.layers.0.self_attn.v_proj.weight"),
        k
    );
    let t = &source
        .transforms()
        .iter()
        .find(|t| t.name == "rope-unpermute")
        .unwrap();
    assert_eq!(t.tensors, 5);

    // Quantized rows move whole: the un-permuted tensor is the stored one, dequantized, with
    // its rows reordered. The stored layout is read from the same bytes under an architecture
    // without conventions.
    let raw = open_bytes(&llama_file("other", Meta::U32(4), Meta::U32(2)).0).unwrap();
    for (name, hf, rows, heads) in [
        (
            "blk.1.attn_q.weight",
            "model.layers.1.self_attn.q_proj.weight",
            N_HEAD * HEAD_DIM,
            N_HEAD,
        ),
        (
            "blk.1.attn_k.weight",
            "model.layers.1.self_attn.k_proj.weight",
            N_HEAD_KV * HEAD_DIM,
            N_HEAD_KV,
        ),
    ] {
        let stored = read_all(raw.as_ref(), name);
        let got = read_all(source.as_ref(), hf);
        assert_eq!(got, unpermute(&stored, rows, heads), "{hf}");
        // And close to the original values (Q8_0 error).
        let original = if hf.contains("q_proj") { &q } else { &k };
        assert!(
            got.iter().zip(original).all(|(a, b)| (a - b).abs() < 0.03),
            "{hf}"
        );
    }
}

#[test]
fn unpermuted_reads_work_at_any_offset() {
    let (bytes, ..) = llama_file(
        "llama",
        Meta::U32(N_HEAD as u32),
        Meta::U32(N_HEAD_KV as u32),
    );
    let source = open_bytes(&bytes).unwrap();
    for name in [
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.1.self_attn.q_proj.weight",
        "model.layers.1.self_attn.k_proj.weight",
    ] {
        let i = source.find(name).unwrap();
        let whole = read_all(source.as_ref(), name);
        for chunk in [1, 5, 37, 64, 65, 200] {
            let mut start = 0;
            let mut got = Vec::new();
            while start < whole.len() {
                let mut out = vec![0f32; chunk.min(whole.len() - start)];
                source.read_f32(i, start, &mut out).unwrap();
                start += out.len();
                got.extend(out);
            }
            assert_eq!(got, whole, "{name} in chunks of {chunk}");
        }
    }
}

#[test]
fn per_layer_head_counts_are_used() {
    let heads = Meta::Array(4, vec![Meta::U32(N_HEAD as u32); 2]);
    let heads_kv = Meta::Array(4, vec![Meta::U32(N_HEAD_KV as u32); 2]);
    let (bytes, q, k, _) = llama_file("llama", heads, heads_kv);
    let source = open_bytes(&bytes).unwrap();
    assert_eq!(
        read_all(source.as_ref(), "model.layers.0.self_attn.q_proj.weight"),
        q
    );
    assert_eq!(
        read_all(source.as_ref(), "model.layers.0.self_attn.k_proj.weight"),
        k
    );
}

#[test]
fn head_count_kv_defaults_to_head_count() {
    let rows = 16;
    let q = values(rows * 4, 9);
    let bytes = GgufBuilder::new("llama")
        .kv("llama.attention.head_count", Meta::U32(2))
        .tensor_f32("blk.0.attn_k.weight", &[rows, 4], &permute(&q, rows, 2, 2))
        .to_bytes()
        .unwrap();
    let source = open_bytes(&bytes).unwrap();
    assert_eq!(
        read_all(source.as_ref(), "model.layers.0.self_attn.k_proj.weight"),
        q
    );
}

#[test]
fn missing_or_inconsistent_head_counts_are_errors() {
    let no_heads = GgufBuilder::new("llama")
        .tensor_f32("blk.0.attn_q.weight", &[4, 2], &[0.0; 8])
        .to_bytes()
        .unwrap();
    let err = failure(open_bytes(&no_heads));
    assert!(
        matches!(
            (&err, err.format_problem()),
            (
                Error::InvalidHeader { problem: HeaderProblem::Format(_), .. },
                Some(Problem::MissingKey { key, .. }),
            ) if key == "llama.attention.head_count"
        ),
        "{err}"
    );

    let odd = GgufBuilder::new("llama")
        .kv("llama.attention.head_count", Meta::U32(4))
        .tensor_f32("blk.0.attn_q.weight", &[12, 2], &[0.0; 24])
        .to_bytes()
        .unwrap();
    let err = failure(open_bytes(&odd));
    assert!(
        matches!(
            (&err, err.format_problem()),
            (
                Error::InvalidTensor { tensor, problem: TensorProblem::Format(_), .. },
                Some(Problem::HeadsMismatch { rows: 12, heads: 4 }),
            ) if tensor == "blk.0.attn_q.weight"
        ),
        "{err}"
    );

    let zero = GgufBuilder::new("llama")
        .kv("llama.attention.head_count", Meta::U32(0))
        .tensor_f32("blk.0.attn_q.weight", &[4, 2], &[0.0; 8])
        .to_bytes()
        .unwrap();
    let err = failure(open_bytes(&zero));
    assert!(
        matches!(
            (&err, err.format_problem()),
            (
                Error::InvalidHeader {
                    problem: HeaderProblem::Format(_),
                    ..
                },
                Some(Problem::BadValue { .. })
            )
        ),
        "{err}"
    );

    let short_array = GgufBuilder::new("llama")
        .kv(
            "llama.attention.head_count",
            Meta::Array(4, vec![Meta::U32(1)]),
        )
        .tensor_f32("blk.3.attn_q.weight", &[4, 2], &[0.0; 8])
        .to_bytes()
        .unwrap();
    let err = failure(open_bytes(&short_array));
    assert!(
        matches!(
            (&err, err.format_problem()),
            (
                Error::InvalidHeader {
                    problem: HeaderProblem::Format(_),
                    ..
                },
                Some(Problem::BadValue { .. })
            )
        ),
        "{err}"
    );
}

#[test]
fn other_architectures_are_not_unpermuted() {
    // Qwen2 uses NeoX-style RoPE; its converter does not permute.
    let q = values(32 * 4, 5);
    let bytes = GgufBuilder::new("qwen2")
        .kv("qwen2.attention.head_count", Meta::U32(4))
        .tensor_f32("blk.0.attn_q.weight", &[32, 4], &q)
        .to_bytes()
        .unwrap();
    let source = open_bytes(&bytes).unwrap();
    assert_eq!(
        read_all(source.as_ref(), "model.layers.0.self_attn.q_proj.weight"),
        q
    );
    assert!(source
        .transforms()
        .iter()
        .all(|t| t.name != "rope-unpermute"));
}

#[test]
fn gemma_norm_weights_lose_the_converters_plus_one() {
    // w, and what the converter stores: f32(w) + 1 (exact for these values).
    let w = [0.25f32, -0.5, 1.5, -0.0078125];
    let stored: Vec<f32> = w.iter().map(|v| v + 1.0).collect();
    for (arch, norms) in [
        (
            "gemma",
            &[
                "blk.0.attn_norm.weight",
                "blk.0.ffn_norm.weight",
                "output_norm.weight",
            ][..],
        ),
        (
            "gemma2",
            &[
                "blk.0.attn_norm.weight",
                "blk.0.post_attention_norm.weight",
                "blk.0.ffn_norm.weight",
                "blk.0.post_ffw_norm.weight",
                "output_norm.weight",
            ][..],
        ),
        (
            "gemma3",
            &[
                "blk.0.attn_norm.weight",
                "blk.0.attn_q_norm.weight",
                "blk.0.attn_k_norm.weight",
                "blk.0.post_ffw_norm.weight",
                "output_norm.weight",
            ][..],
        ),
    ] {
        let mut builder = GgufBuilder::new(arch).tensor_f32("blk.0.attn_q.weight", &[4], &stored);
        for n in norms {
            builder = builder.tensor_f32(n, &[4], &stored);
        }
        let source = open_bytes(&builder.to_bytes().unwrap()).unwrap();
        for t in source.tensors() {
            let got = read_all(source.as_ref(), &t.name);
            if t.name.ends_with("norm.weight") {
                assert_eq!(got, w, "{arch} {}", t.name);
            } else {
                assert_eq!(got, stored, "{arch} {}", t.name);
            }
        }
        let t = source
            .transforms()
            .iter()
            .find(|t| t.name == "gemma-norm-minus-one")
            .unwrap();
        assert_eq!(t.tensors, norms.len(), "{arch}");
        // Partial reads subtract too.
        let i = source.find("model.norm.weight").unwrap();
        let mut out = [0f32; 2];
        source.read_f32(i, 1, &mut out).unwrap();
        assert_eq!(out, [w[1], w[2]]);
    }

    // Llama norms are stored as they are.
    let source = open_bytes(
        &GgufBuilder::new("llama")
            .tensor_f32("output_norm.weight", &[4], &stored)
            .to_bytes()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(read_all(source.as_ref(), "model.norm.weight"), stored);
}

/// Stored bytes are handed out only for float tensors read unchanged; they decode to exactly
/// what `read_f32` returns. Un-permuted q/k rows, quantized blocks and Gemma's `+1` norms are
/// read through `read_f32` only.
#[test]
fn raw_bytes_only_for_unchanged_float_tensors() {
    let (bytes, ..) = llama_file(
        "llama",
        Meta::U32(N_HEAD as u32),
        Meta::U32(N_HEAD_KV as u32),
    );
    let src = open_bytes(&bytes).unwrap();
    let raw_of = |name: &str| src.raw(src.find(name).unwrap());
    assert!(raw_of("model.layers.0.self_attn.q_proj.weight").is_none());
    assert!(raw_of("model.layers.0.self_attn.k_proj.weight").is_none());
    assert!(raw_of("model.layers.1.self_attn.q_proj.weight").is_none());
    let v = src.find("model.layers.0.self_attn.v_proj.weight").unwrap();
    let raw = src.raw(v).unwrap();
    let numel = src.tensors()[v].numel;
    let (mut a, mut b) = (vec![0f32; numel], vec![0f32; numel]);
    weightkin_core::to_f32(raw.dtype, raw.bytes, 0, &mut a).unwrap();
    src.read_f32(v, 0, &mut b).unwrap();
    assert_eq!(a, b);

    let norm = values(8, 4);
    let gemma = GgufBuilder::new("gemma3")
        .tensor_f32("blk.0.attn_norm.weight", &[8], &norm)
        .to_bytes()
        .unwrap();
    let src = open_bytes(&gemma).unwrap();
    assert!(
        src.raw(0).is_none(),
        "Gemma norms lose the converter's +1 on read"
    );
}

/// RoPE-permuted rows (F32, F16, BF16, Q8_0) are gathered and reduced in the fused kernels
/// (`WeightSource::stored_rows`): the same moments, magnitudes and kept samples as reading
/// them through `read_f32`, against permuted rows, against a tensor stored as presented and
/// (Q8_0) against floats, over rows that do not end on a lane boundary (floats), with ∞ and
/// NaN among the values.
#[test]
fn permuted_rows_give_the_same_pass_gathered_or_read() {
    use weightkin_core::{pair_pass, Dtype, Side, Taps, CHUNK};
    let bits = crate::moment_bits;
    let rows = N_HEAD * HEAD_DIM;
    let encode = |v: &[f32], dtype: Dtype| -> Vec<u8> {
        match dtype {
            Dtype::F32 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Dtype::F16 => v
                .iter()
                .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
                .collect(),
            _ => v
                .iter()
                .flat_map(|x| ((x.to_bits() >> 16) as u16).to_le_bytes())
                .collect(),
        }
    };
    let taps = Taps {
        samples: Some(2 * CHUNK),
        ulp: Some(CHUNK),
        observer: None,
        magnitudes: true,
        ..Default::default()
    };
    // Float rows of 1573 elements (not a multiple of 8); Q8_0 rows of 1568 (49 blocks),
    // where F16 tensors of the same shape stand beside them.
    for (cols, layers) in [
        (
            3 * CHUNK / rows + 37,
            vec![Dtype::F32, Dtype::F16, Dtype::BF16],
        ),
        (3 * CHUNK / rows + 32, vec![Dtype::Q8_0, Dtype::F16]),
    ] {
        let numel = rows * cols;
        let a = values(numel, 11);
        let mut b: Vec<f32> = a
            .iter()
            .enumerate()
            .map(|(i, v)| if i % 3 == 0 { v + 0.01 } else { *v })
            .collect();
        if !layers.contains(&Dtype::Q8_0) {
            (b[5], b[CHUNK + 3], b[2 * CHUNK + 1]) = (f32::INFINITY, f32::NAN, f32::NEG_INFINITY);
        }
        let shape = [rows, cols];
        let mut builder = GgufBuilder::new("llama")
            .kv("llama.attention.head_count", Meta::U32(N_HEAD as u32))
            .kv("llama.attention.head_count_kv", Meta::U32(N_HEAD as u32));
        for (layer, &dtype) in layers.iter().enumerate() {
            for (name, v) in [("attn_q", &a), ("attn_k", &b), ("attn_v", &b)] {
                // q and k permuted as the converter does; v stored as presented.
                let stored = if name == "attn_v" {
                    v.clone()
                } else {
                    permute(v, rows, N_HEAD, N_HEAD)
                };
                let name = format!("blk.{layer}.{name}.weight");
                builder = if dtype == Dtype::Q8_0 {
                    builder.tensor_q8_0(&name, &shape, &stored)
                } else {
                    builder.tensor_raw(&name, dtype, &shape, encode(&stored, dtype))
                };
            }
        }
        let source = open_bytes(&builder.to_bytes().unwrap()).unwrap();
        let src = source.as_ref();
        let plain = crate::source::Buffered(src);
        let find = |layer: usize, p: &str| {
            src.find(&format!("model.layers.{layer}.self_attn.{p}_proj.weight"))
                .unwrap()
        };
        let mut pairs = Vec::new();
        for layer in 0..layers.len() {
            let (q, k, v) = (find(layer, "q"), find(layer, "k"), find(layer, "v"));
            assert!(src.stored_rows(q).is_some() && src.stored_rows(v).is_none());
            pairs.extend([(q, k), (k, q), (q, v), (v, k)]);
        }
        if layers.contains(&Dtype::Q8_0) {
            // Q8_0 rows against F16 rows and an F16 tensor as presented, and the reverse.
            let (q8, f16) = ((find(0, "q"), find(0, "v")), (find(1, "k"), find(1, "v")));
            pairs.extend([(q8.0, f16.0), (f16.0, q8.0), (q8.0, f16.1), (f16.1, q8.0)]);
            pairs.extend([(q8.1, f16.0), (f16.0, q8.1)]);
        }
        for (x, y) in pairs {
            let gathered = pair_pass(Side::new(src, x), Side::new(src, y), numel, &taps).unwrap();
            let read = pair_pass(Side::new(&plain, x), Side::new(&plain, y), numel, &taps).unwrap();
            assert_eq!(bits(gathered.moments), bits(read.moments), "{cols} {x} {y}");
            assert_eq!(gathered.magnitudes, read.magnitudes, "{cols} {x} {y}");
            assert!(gathered.samples.is_some());
            assert_eq!(gathered.samples, read.samples, "{cols} {x} {y}");
        }
    }
}
