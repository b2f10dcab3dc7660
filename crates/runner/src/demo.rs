//! `weightkin demo`: a small, fully synthetic model family and the recipe that audits it.
//!
//! Everything is generated from fixed seeds with a self-contained PRNG, so the files, and
//! therefore the report, are byte-identical on every machine. The family:
//!
//! * `base` — an 8-layer Llama-shaped model (F32) with "trained-looking" weights: Gaussian
//!   matrices and norm weights near 1.0 (1 + N(0, 0.1²)), plus a non-learned `position_ids`
//!   buffer (I64);
//! * `finetuned` — base plus small noise (10 % of each tensor's spread), stored as BF16;
//! * `independent` — the same architecture and init statistics from another seed (F16);
//! * `subset` — every second layer of base (layers 0, 2, 4, 6 renumbered 0–3), plus 5 % noise:
//!   a layer-dropping distillation, which the grid and alignment recover.
//!
//! The report shows the lesson the README opens with: the independent model's norm weights
//! have cosine ≈ 0.99 with base's (they all sit near 1), while Pearson is ≈ 0.

use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype as StDtype, TensorView};

/// The recipe the demo runs (also `configs/demo.toml`, which is snapshot-tested).
pub const RECIPE: &str = include_str!("../../../configs/demo.toml");

/// File name of the recipe written beside the models.
pub const RECIPE_FILE: &str = "demo.toml";

const HIDDEN: usize = 128;
const INTERMEDIATE: usize = 344;
const VOCAB: usize = 512;
const LAYERS: usize = 8;
const POSITIONS: usize = 64;

/// SplitMix64 (Steele, Lea & Flood 2014): tiny, fast, and fully specified, so the demo does
/// not depend on a PRNG crate's version-to-version stream stability.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller; one of the pair is discarded for simplicity).
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// One generated tensor.
struct Tensor {
    name: String,
    shape: Vec<usize>,
    data: Vec<f32>,
}

/// The architecture: (name, shape, kind) where kind says how to initialise.
fn architecture() -> Vec<(String, Vec<usize>, bool)> {
    let mut t = vec![(
        "model.embed_tokens.weight".to_owned(),
        vec![VOCAB, HIDDEN],
        false,
    )];
    for i in 0..LAYERS {
        let p = format!("model.layers.{i}");
        t.push((format!("{p}.input_layernorm.weight"), vec![HIDDEN], true));
        for proj in ["q_proj", "k_proj", "v_proj", "o_proj"] {
            t.push((
                format!("{p}.self_attn.{proj}.weight"),
                vec![HIDDEN, HIDDEN],
                false,
            ));
        }
        t.push((
            format!("{p}.post_attention_layernorm.weight"),
            vec![HIDDEN],
            true,
        ));
        for proj in ["gate_proj", "up_proj"] {
            t.push((
                format!("{p}.mlp.{proj}.weight"),
                vec![INTERMEDIATE, HIDDEN],
                false,
            ));
        }
        t.push((
            format!("{p}.mlp.down_proj.weight"),
            vec![HIDDEN, INTERMEDIATE],
            false,
        ));
    }
    t.push(("model.norm.weight".to_owned(), vec![HIDDEN], true));
    t.push(("lm_head.weight".to_owned(), vec![VOCAB, HIDDEN], false));
    t
}

fn init(seed: u64) -> Vec<Tensor> {
    let mut rng = Rng(seed);
    architecture()
        .into_iter()
        .map(|(name, shape, is_norm)| {
            let n: usize = shape.iter().product();
            let data = if is_norm {
                (0..n).map(|_| (1.0 + 0.1 * rng.normal()) as f32).collect()
            } else {
                let fan_in = shape.last().copied().unwrap_or(1) as f64;
                let sd = 1.0 / fan_in.sqrt();
                (0..n).map(|_| (sd * rng.normal()) as f32).collect()
            };
            Tensor { name, shape, data }
        })
        .collect()
}

/// Keeps every second layer of `base`, renumbering them 0, 1, 2, …
fn every_second_layer(base: &[Tensor]) -> Vec<Tensor> {
    base.iter()
        .filter_map(|t| match crate::pairing::layer_and_class(&t.name) {
            (None, _) => Some(Tensor {
                name: t.name.clone(),
                shape: t.shape.clone(),
                data: t.data.clone(),
            }),
            (Some(layer), class) if layer % 2 == 0 => Some(Tensor {
                name: class.replacen('*', &(layer / 2).to_string(), 1),
                shape: t.shape.clone(),
                data: t.data.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// `base` plus Gaussian noise of `scale` times each tensor's standard deviation.
fn fine_tune(base: &[Tensor], seed: u64, scale: f64) -> Vec<Tensor> {
    let mut rng = Rng(seed);
    base.iter()
        .map(|t| {
            let n = t.data.len() as f64;
            let mean = t.data.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
            let var = t
                .data
                .iter()
                .map(|&x| (f64::from(x) - mean).powi(2))
                .sum::<f64>()
                / n;
            let sd = scale * var.sqrt();
            Tensor {
                name: t.name.clone(),
                shape: t.shape.clone(),
                data: t
                    .data
                    .iter()
                    .map(|&x| (f64::from(x) + sd * rng.normal()) as f32)
                    .collect(),
            }
        })
        .collect()
}

/// f32 → bf16 with round-to-nearest-even (inputs here are finite).
fn bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    let rounded = b.wrapping_add(0x7FFF + ((b >> 16) & 1));
    (rounded >> 16) as u16
}

#[derive(Clone, Copy)]
enum Store {
    F32,
    Bf16,
    F16,
}

fn write_model(path: &Path, tensors: &[Tensor], store: Store) -> std::io::Result<()> {
    let mut buffers: Vec<(String, StDtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|t| {
            let (dtype, bytes): (StDtype, Vec<u8>) = match store {
                Store::F32 => (
                    StDtype::F32,
                    t.data.iter().flat_map(|x| x.to_le_bytes()).collect(),
                ),
                Store::Bf16 => (
                    StDtype::BF16,
                    t.data
                        .iter()
                        .flat_map(|&x| bf16_bits(x).to_le_bytes())
                        .collect(),
                ),
                Store::F16 => (
                    StDtype::F16,
                    t.data
                        .iter()
                        .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
                        .collect(),
                ),
            };
            (t.name.clone(), dtype, t.shape.clone(), bytes)
        })
        .collect();
    // A non-learned buffer that is identical in every model of this architecture.
    buffers.push((
        "model.position_ids".to_owned(),
        StDtype::I64,
        vec![1, POSITIONS],
        (0..POSITIONS as i64)
            .flat_map(|i| i.to_le_bytes())
            .collect(),
    ));
    let views = buffers
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            TensorView::new(*dtype, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(std::io::Error::other)
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    let bytes = safetensors::serialize(views, None).map_err(std::io::Error::other)?;
    std::fs::write(path, bytes)
}

/// Writes the demo family and [`RECIPE`] into `dir` (created if missing); returns the
/// recipe's path.
pub fn generate(dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let base = init(1);
    write_model(&dir.join("base.safetensors"), &base, Store::F32)?;
    write_model(
        &dir.join("finetuned.safetensors"),
        &fine_tune(&base, 2, 0.1),
        Store::Bf16,
    )?;
    write_model(&dir.join("independent.safetensors"), &init(3), Store::F16)?;
    write_model(
        &dir.join("subset.safetensors"),
        &fine_tune(&every_second_layer(&base), 4, 0.05),
        Store::F32,
    )?;
    let recipe = dir.join(RECIPE_FILE);
    std::fs::write(&recipe, RECIPE)?;
    Ok(recipe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounding() {
        assert_eq!(bf16_bits(1.0), 0x3F80);
        // 1 + 2^-8 is halfway between two bf16 values; ties go to even (1.0).
        assert_eq!(bf16_bits(1.0 + 1.0 / 256.0), 0x3F80);
        assert_eq!(bf16_bits(1.0 + 3.0 / 256.0), 0x3F82);
    }

    #[test]
    fn rng_is_standard_normal_ish() {
        let mut r = Rng(42);
        let xs: Vec<f64> = (0..100_000).map(|_| r.normal()).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(
            mean.abs() < 0.02 && (var - 1.0).abs() < 0.02,
            "{mean} {var}"
        );
    }
}
