//! Synthetic model families, generated from fixed seeds: the demo's models and the verdict
//! validation suite's cases.
//!
//! Everything comes from the workspace's seeded PRNG ([`Rng`]: SplitMix64, normals by
//! Box–Muller), so the same seed gives the same bytes on every machine and with every
//! version of every dependency.
//! Weights look "trained" only in their statistics: Gaussian matrices with 1/√fan-in
//! spread, norm weights 1 + N(0, 0.1²). That is all the verdict needs: shared ancestry is
//! shared values, and independence is independent draws.

use std::path::Path;

use safetensors::tensor::{Dtype as StDtype, TensorView};

/// The generator everything here is drawn from: the workspace's one seeded PRNG, SplitMix64,
/// owned by `weightkin-core` (re-exported here, where it was first defined, so that
/// `synth::Rng` keeps working).
pub use weightkin_core::rng::Rng;

/// Shape of a synthetic Llama-style model, optionally with a ViT-style vision tower.
#[derive(Debug, Clone, Copy)]
pub struct Arch {
    /// Decoder layers.
    pub layers: usize,
    /// Hidden size.
    pub hidden: usize,
    /// MLP size.
    pub intermediate: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// Vision tower blocks (0: none).
    pub vision_layers: usize,
    /// Vision hidden size.
    pub vision_hidden: usize,
}

impl Default for Arch {
    /// The demo's architecture: 8 layers, hidden 128, no vision tower.
    fn default() -> Arch {
        Arch {
            layers: 8,
            hidden: 128,
            intermediate: 344,
            vocab: 512,
            vision_layers: 0,
            vision_hidden: 96,
        }
    }
}

/// One tensor of a synthetic model.
#[derive(Debug, Clone)]
pub struct Tensor {
    /// Name.
    pub name: String,
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// Values.
    pub data: Vec<f32>,
}

/// How a synthetic model's float tensors are stored.
#[derive(Debug, Clone, Copy)]
pub enum Store {
    /// f32.
    F32,
    /// bfloat16, round to nearest even.
    Bf16,
    /// IEEE half.
    F16,
}

/// A synthetic model: float tensors plus (for a model with a language model) the integer
/// `model.position_ids` buffer every
/// model of the family shares.
#[derive(Debug, Clone)]
pub struct Model {
    /// Float tensors, in architecture order.
    pub tensors: Vec<Tensor>,
}

/// Positions in the shared `model.position_ids` buffer.
const POSITIONS: usize = 64;

fn architecture(arch: &Arch) -> Vec<(String, Vec<usize>, bool)> {
    let (h, m) = (arch.hidden, arch.intermediate);
    let mut t = vec![(
        "model.embed_tokens.weight".to_owned(),
        vec![arch.vocab, h],
        false,
    )];
    for i in 0..arch.layers {
        let p = format!("model.layers.{i}");
        t.push((format!("{p}.input_layernorm.weight"), vec![h], true));
        for proj in ["q_proj", "k_proj", "v_proj", "o_proj"] {
            t.push((format!("{p}.self_attn.{proj}.weight"), vec![h, h], false));
        }
        t.push((
            format!("{p}.post_attention_layernorm.weight"),
            vec![h],
            true,
        ));
        for proj in ["gate_proj", "up_proj"] {
            t.push((format!("{p}.mlp.{proj}.weight"), vec![m, h], false));
        }
        t.push((format!("{p}.mlp.down_proj.weight"), vec![h, m], false));
    }
    t.push(("model.norm.weight".to_owned(), vec![h], true));
    let vh = arch.vision_hidden;
    for i in 0..arch.vision_layers {
        let p = format!("visual.blocks.{i}");
        t.push((format!("{p}.norm1.weight"), vec![vh], true));
        t.push((format!("{p}.attn.qkv.weight"), vec![3 * vh, vh], false));
        t.push((format!("{p}.attn.proj.weight"), vec![vh, vh], false));
        t.push((format!("{p}.norm2.weight"), vec![vh], true));
        t.push((format!("{p}.mlp.fc1.weight"), vec![4 * vh, vh], false));
        t.push((format!("{p}.mlp.fc2.weight"), vec![vh, 4 * vh], false));
    }
    t.push(("lm_head.weight".to_owned(), vec![arch.vocab, h], false));
    t
}

impl Model {
    /// An independently initialised model of architecture `arch`.
    pub fn init(arch: &Arch, seed: u64) -> Model {
        let mut rng = Rng::new(seed);
        let tensors = architecture(arch)
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
            .collect();
        Model { tensors }
    }

    /// This model plus Gaussian noise of `scale` times each tensor's standard deviation:
    /// a fine-tune whose expected Pearson with the original is 1/√(1 + scale²).
    pub fn fine_tune(&self, seed: u64, scale: f64) -> Model {
        let mut rng = Rng::new(seed);
        let tensors = self
            .tensors
            .iter()
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
                    data: t
                        .data
                        .iter()
                        .map(|&x| (f64::from(x) + sd * rng.normal()) as f32)
                        .collect(),
                    ..t.clone()
                }
            })
            .collect();
        Model { tensors }
    }

    /// Keeps every second decoder layer, renumbering them 0, 1, 2, …
    pub fn every_second_layer(&self) -> Model {
        let tensors = self
            .tensors
            .iter()
            .filter_map(|t| match crate::plan::layer_and_class(&t.name) {
                (Some(layer), class) if class.starts_with("model.layers.") => (layer % 2 == 0)
                    .then(|| Tensor {
                        name: class.replacen('*', &(layer / 2).to_string(), 1),
                        ..t.clone()
                    }),
                _ => Some(t.clone()),
            })
            .collect();
        Model { tensors }
    }

    /// Replaces every tensor whose name starts with `prefix` by `other`'s tensor of the same
    /// name: a component transplanted from another model.
    pub fn with_component_from(&self, other: &Model, prefix: &str) -> Model {
        let tensors = self
            .tensors
            .iter()
            .map(|t| match other.tensors.iter().find(|o| o.name == t.name) {
                Some(o) if t.name.starts_with(prefix) => o.clone(),
                _ => t.clone(),
            })
            .collect();
        Model { tensors }
    }

    /// Permutes the MLP hidden units of every decoder layer (rows of gate/up, columns of
    /// down) with a random permutation per layer: the same function, different element order.
    pub fn permute_mlp_units(&self, seed: u64) -> Model {
        let mut rng = Rng::new(seed);
        let mut perms: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
        let tensors = self
            .tensors
            .iter()
            .map(|t| {
                let Some((layer, kind)) = t
                    .name
                    .strip_suffix(".weight")
                    .and_then(|n| n.rsplit_once(".mlp."))
                else {
                    return t.clone();
                };
                let (rows, cols) = (t.shape[0], t.shape[1]);
                let units = if kind == "down_proj" { cols } else { rows };
                let p = perms
                    .entry(layer.to_owned())
                    .or_insert_with(|| rng.permutation(units))
                    .clone();
                let mut data = vec![0f32; t.data.len()];
                for r in 0..rows {
                    for c in 0..cols {
                        let (sr, sc) = if kind == "down_proj" {
                            (r, p[c])
                        } else {
                            (p[r], c)
                        };
                        data[r * cols + c] = t.data[sr * cols + sc];
                    }
                }
                Tensor { data, ..t.clone() }
            })
            .collect();
        Model { tensors }
    }

    /// The model's vision tower (`visual.blocks.*`, Qwen-VL names, q, k and v fused in one
    /// `attn.qkv`) as a standalone vision encoder under Hugging Face CLIP/SigLIP names, q, k
    /// and v unfused: `attn.qkv` `[3d, d]` → `self_attn.{q,k,v}_proj` `[d, d]`, `attn.proj` →
    /// `self_attn.out_proj`, `norm1`/`norm2` → `layer_norm1`/`layer_norm2`, `mlp.fc1`/`fc2`
    /// unchanged, under `vision_model.encoder.layers.N`. The same values under another
    /// convention: what a model that took an encoder and renamed and fused it looks like.
    pub fn vision_encoder_hf(&self) -> Model {
        let mut tensors = Vec::new();
        for t in &self.tensors {
            let Some(rest) = t.name.strip_prefix("visual.blocks.") else {
                continue;
            };
            let Some((layer, role)) = rest.split_once('.') else {
                continue;
            };
            let p = format!("vision_model.encoder.layers.{layer}");
            if role == "attn.qkv.weight" {
                let d = t.shape[1];
                for (k, proj) in ["q_proj", "k_proj", "v_proj"].iter().enumerate() {
                    tensors.push(Tensor {
                        name: format!("{p}.self_attn.{proj}.weight"),
                        shape: vec![d, d],
                        data: t.data[k * d * d..(k + 1) * d * d].to_vec(),
                    });
                }
                continue;
            }
            let role = match role {
                "attn.proj.weight" => "self_attn.out_proj.weight",
                "norm1.weight" => "layer_norm1.weight",
                "norm2.weight" => "layer_norm2.weight",
                other => other,
            };
            tensors.push(Tensor {
                name: format!("{p}.{role}"),
                ..t.clone()
            });
        }
        Model { tensors }
    }

    /// Adds (or replaces) a float tensor.
    pub fn with_tensor(mut self, name: &str, shape: Vec<usize>, data: Vec<f32>) -> Model {
        self.tensors.retain(|t| t.name != name);
        self.tensors.push(Tensor {
            name: name.to_owned(),
            shape,
            data,
        });
        self
    }

    /// Writes the model as safetensors.
    pub fn write(&self, path: &Path, store: Store) -> std::io::Result<()> {
        let mut buffers: Vec<(String, StDtype, Vec<usize>, Vec<u8>)> = self
            .tensors
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
        // A non-learned buffer that is identical in every language model of this family (a
        // standalone vision encoder has none).
        let language_model = self.tensors.iter().any(|t| t.name.starts_with("model."));
        buffers.extend(language_model.then(|| {
            (
                "model.position_ids".to_owned(),
                StDtype::I64,
                vec![1, POSITIONS],
                (0..POSITIONS as i64)
                    .flat_map(|i| i.to_le_bytes())
                    .collect(),
            )
        }));
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
}

/// f32 → bf16 with round-to-nearest-even (inputs here are finite).
fn bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    let rounded = b.wrapping_add(0x7FFF + ((b >> 16) & 1));
    (rounded >> 16) as u16
}

/// Writes `a` and `b` (F32 safetensors) into a temporary directory and audits them with one
/// `[[compare]]`, `extra` lines added to its table: how the validation suite and the
/// false-positive examples judge a synthetic pair.
pub fn audit_pair(
    a: &Model,
    b: &Model,
    extra: &str,
) -> Result<crate::report::Comparison, Box<dyn std::error::Error + Send + Sync>> {
    let dir = tempfile::tempdir()?;
    a.write(&dir.path().join("a.safetensors"), Store::F32)?;
    b.write(&dir.path().join("b.safetensors"), Store::F32)?;
    let text = format!(
        "[audit]\nname = \"pair\"\n[models.a]\npath = \"a.safetensors\"\n\
         [models.b]\npath = \"b.safetensors\"\n[[compare]]\na = \"a\"\nb = \"b\"\n{extra}\n"
    );
    let reg = crate::registry::builtin()?;
    let recipe = crate::recipe::parse(&dir.path().join("r.toml"), &text, &reg)?;
    let report = crate::run(&recipe, &reg, &crate::RunOptions::default())?;
    report
        .comparisons
        .into_iter()
        .next()
        .ok_or_else(|| "the audit returned no comparison".into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_vision_encoder_under_hf_names_holds_the_towers_values_unfused() {
        let arch = Arch {
            layers: 1,
            vision_layers: 2,
            vision_hidden: 8,
            ..Arch::default()
        };
        let m = Model::init(&arch, 5);
        let enc = m.vision_encoder_hf();
        let get = |m: &Model, n: &str| m.tensors.iter().find(|t| t.name == n).unwrap().clone();
        let qkv = get(&m, "visual.blocks.1.attn.qkv.weight");
        let k = get(
            &enc,
            "vision_model.encoder.layers.1.self_attn.k_proj.weight",
        );
        assert_eq!(k.shape, vec![8, 8]);
        assert_eq!(k.data, qkv.data[64..128].to_vec());
        assert_eq!(
            get(&enc, "vision_model.encoder.layers.0.layer_norm2.weight").data,
            get(&m, "visual.blocks.0.norm2.weight").data
        );
        // Only the tower: 2 blocks × (q, k, v, out, 2 norms, fc1, fc2).
        assert_eq!(enc.tensors.len(), 16);
    }

    #[test]
    fn bf16_rounding() {
        assert_eq!(bf16_bits(1.0), 0x3F80);
        // 1 + 2^-8 is halfway between two bf16 values; ties go to even (1.0).
        assert_eq!(bf16_bits(1.0 + 1.0 / 256.0), 0x3F80);
        assert_eq!(bf16_bits(1.0 + 3.0 / 256.0), 0x3F82);
    }

    #[test]
    fn permuting_mlp_units_keeps_values_and_moves_them() {
        let arch = Arch {
            layers: 1,
            ..Arch::default()
        };
        let m = Model::init(&arch, 1);
        let p = m.permute_mlp_units(2);
        for (a, b) in m.tensors.iter().zip(&p.tensors) {
            let mut x = a.data.clone();
            let mut y = b.data.clone();
            x.sort_by(f32::total_cmp);
            y.sort_by(f32::total_cmp);
            assert_eq!(x, y, "{}", a.name);
            assert_eq!(a.data == b.data, !a.name.contains(".mlp."), "{}", a.name);
        }
    }
}
