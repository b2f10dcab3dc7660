//! Hiding a model's tensor names, to validate automatic pairing (`pairing = "auto"`) on
//! trained models whose true correspondence is known.
//!
//! [`Naming::Opaque`] is the hardest case: every tensor gets a name that says nothing —
//! `t0000.weight`, `t0001.bias`, … in a shuffled order seeded by the model's name, with no
//! layer number and no role word (the leaf is `bias` for biases and `weight` for everything
//! else, BatchNorm statistics included), so every pair must be found by shape or content.
//! [`Naming::Convention`] is a milder one: layer numbers are kept, but the stack and the roles
//! are renamed to another convention (`blocks.N.attn.qkv` with q, k and v **fused** along
//! rows, timm-style `layerS.L.convK` for the ResNet), so stack matching, the fused-tensor
//! split and role matching within stacks are exercised.
//!
//! Each renaming also returns its truth: which of B's presented names (the view name, with
//! `#q`/`#k`/`#v` for a fused part) holds which original tensor.

use std::collections::BTreeMap;

use crate::arch::Architecture;
use crate::rng::Stream;
use crate::weights::{Tensor, Values, Weights};

/// How B's tensor names are presented to the search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Naming {
    /// The names the zoo wrote (equal names pair everything).
    Original,
    /// Opaque names in a shuffled order: shape and content only.
    Opaque,
    /// Another naming convention, with layer numbers kept and Llama's q, k, v fused.
    Convention,
}

impl Naming {
    /// Its name on the command line and in tables.
    pub fn name(self) -> &'static str {
        match self {
            Naming::Original => "original",
            Naming::Opaque => "opaque",
            Naming::Convention => "convention",
        }
    }
}

/// A renamed model and where each original tensor went.
#[derive(Debug, Clone, PartialEq)]
pub struct Renamed {
    /// The renamed tensors.
    pub weights: Weights,
    /// Original name → the name the search sees it under (a fused part's view name,
    /// `…qkv.weight#q`, for the Llama's q, k and v under [`Naming::Convention`]).
    pub truth: BTreeMap<String, String>,
}

/// Renames `w` (a model of `arch`, called `model` in the manifest: the seed of the opaque
/// order) under `naming`.
pub fn rename(w: &Weights, arch: Architecture, model: &str, naming: Naming) -> Renamed {
    match naming {
        Naming::Original => Renamed {
            weights: w.clone(),
            truth: w.keys().map(|n| (n.clone(), n.clone())).collect(),
        },
        Naming::Opaque => opaque(w, model),
        Naming::Convention => convention(w, arch),
    }
}

fn opaque(w: &Weights, model: &str) -> Renamed {
    let mut order: Vec<&String> = w.keys().collect();
    let mut s = Stream::new(&[model, "opaque names"]);
    // Fisher-Yates.
    for i in (1..order.len()).rev() {
        order.swap(i, s.below(i + 1));
    }
    let mut out = Renamed {
        weights: Weights::new(),
        truth: BTreeMap::new(),
    };
    for (i, name) in order.into_iter().enumerate() {
        let leaf = if name.ends_with(".bias") {
            "bias"
        } else {
            "weight"
        };
        let new = format!("t{i:04}.{leaf}");
        out.weights.insert(new.clone(), w[name].clone());
        out.truth.insert(name.clone(), new);
    }
    out
}

fn convention(w: &Weights, arch: Architecture) -> Renamed {
    let mut out = Renamed {
        weights: Weights::new(),
        truth: BTreeMap::new(),
    };
    // Llama: q, k and v of each layer fused into `blocks.N.attn.qkv.weight`, rows [q; k; v].
    let mut fused: BTreeMap<String, [Option<&Tensor>; 3]> = BTreeMap::new();
    for (name, t) in w {
        if arch == Architecture::Llama {
            if let Some((layer, role)) = llama_layer(name) {
                let part = match role {
                    "self_attn.q_proj.weight" => Some(0),
                    "self_attn.k_proj.weight" => Some(1),
                    "self_attn.v_proj.weight" => Some(2),
                    _ => None,
                };
                if let Some(p) = part {
                    let key = format!("blocks.{layer}.attn.qkv.weight");
                    fused.entry(key.clone()).or_default()[p] = Some(t);
                    let view = ["#q", "#k", "#v"][p];
                    out.truth.insert(name.clone(), format!("{key}{view}"));
                    continue;
                }
            }
        }
        let new = convention_name(arch, name).unwrap_or_else(|| format!("other.{name}"));
        out.weights.insert(new.clone(), t.clone());
        out.truth.insert(name.clone(), new);
    }
    for (key, parts) in fused {
        if let [Some(q), Some(k), Some(v)] = parts {
            let mut rows = 0;
            let mut data = Vec::new();
            for t in [q, k, v] {
                rows += t.shape.first().copied().unwrap_or(0);
                if let Values::F32(x) = &t.values {
                    data.extend_from_slice(x);
                }
            }
            let cols = q.shape.get(1).copied().unwrap_or(0);
            out.weights.insert(key, Tensor::f32(vec![rows, cols], data));
        }
    }
    out
}

/// `model.layers.N.rest` → (N, rest).
fn llama_layer(name: &str) -> Option<(usize, &str)> {
    let (n, rest) = name.strip_prefix("model.layers.")?.split_once('.')?;
    Some((n.parse().ok()?, rest))
}

/// The convention's name for a tensor (not the fused q, k, v).
fn convention_name(arch: Architecture, name: &str) -> Option<String> {
    match arch {
        Architecture::Llama => {
            if let Some((layer, role)) = llama_layer(name) {
                let role = match role {
                    "self_attn.o_proj.weight" => "attn.proj.weight",
                    "mlp.gate_proj.weight" => "mlp.w1.weight",
                    "mlp.up_proj.weight" => "mlp.w3.weight",
                    "mlp.down_proj.weight" => "mlp.w2.weight",
                    "input_layernorm.weight" => "norm1.weight",
                    "post_attention_layernorm.weight" => "norm2.weight",
                    _ => return None,
                };
                return Some(format!("blocks.{layer}.{role}"));
            }
            Some(
                match name {
                    "model.embed_tokens.weight" => "wte.weight",
                    "model.norm.weight" => "ln_f.weight",
                    "lm_head.weight" => "head.weight",
                    _ => return None,
                }
                .to_owned(),
            )
        }
        Architecture::Mlp => {
            if let Some((layer, role)) = llama_layer(name) {
                let (module, leaf) = role.split_once('.')?;
                let module = match module {
                    "fc" => "linear",
                    "norm" => "ln",
                    _ => return None,
                };
                return Some(format!("blocks.{layer}.{module}.{leaf}"));
            }
            let (module, leaf) = name.rsplit_once('.')?;
            let module = match module {
                "model.embed" => "stem",
                "model.norm" => "ln_f",
                "classifier" => "head",
                _ => return None,
            };
            Some(format!("{module}.{leaf}"))
        }
        Architecture::Resnet => resnet_name(name),
    }
}

/// HF ResNet names → timm-style names: `resnet.embedder.embedder.{convolution,normalization}`
/// → `conv1` / `bn1`; `resnet.encoder.stages.S.layers.L.layer.K.*` → `layer{S+1}.L.conv{K+1}`
/// / `bn{K+1}`; the shortcut → `layer{S+1}.L.downsample.{0,1}`; `classifier.1` → `fc`.
fn resnet_name(name: &str) -> Option<String> {
    let (module, leaf) = name.rsplit_once('.')?;
    let conv_or_bn = |m: &str, conv: &str, bn: &str| match m {
        "convolution" => Some(conv.to_owned()),
        "normalization" => Some(bn.to_owned()),
        _ => None,
    };
    if let Some(m) = module.strip_prefix("resnet.embedder.embedder.") {
        return Some(format!("{}.{leaf}", conv_or_bn(m, "conv1", "bn1")?));
    }
    if module == "classifier.1" {
        return Some(format!("fc.{leaf}"));
    }
    let rest = module.strip_prefix("resnet.encoder.stages.")?;
    let segs: Vec<&str> = rest.split('.').collect();
    let stage: usize = segs.first()?.parse().ok()?;
    let block: usize = segs.get(2)?.parse().ok()?;
    let inner = match segs.get(3..)? {
        ["layer", k, m] => {
            let k: usize = k.parse().ok()?;
            conv_or_bn(m, &format!("conv{}", k + 1), &format!("bn{}", k + 1))?
        }
        ["shortcut", m] => conv_or_bn(m, "downsample.0", "downsample.1")?,
        _ => return None,
    };
    Some(format!("layer{}.{block}.{inner}.{leaf}", stage + 1))
}

/// The layers of the root base that each layer of `model`'s `model.layers` stack came from
/// (identity for every transform but layer subsets, which compose their `keep`), so that the
/// true counterpart of B's layer i in A is A's layer j with the same origin.
pub fn layer_origins(
    m: &crate::manifest::Manifest,
    model: &crate::manifest::Model,
) -> Option<Vec<usize>> {
    use crate::manifest::Transform;
    let layers = model.architecture.layers()?;
    let mut chain = vec![model];
    while let Some(p) = chain.last().and_then(|x| x.parents.first()) {
        chain.push(m.model(p)?);
    }
    let mut origin: Vec<usize> = (0..layers).collect();
    for x in chain.iter().rev() {
        if let Transform::LayerSubset { keep } = &x.transform {
            origin = keep
                .iter()
                .filter_map(|&k| origin.get(k).copied())
                .collect();
        }
    }
    Some(origin)
}

/// Maps A's tensor names to the original names of their true counterparts in B, given each
/// side's layer origins (see [`layer_origins`]): same role, layer of the same origin.
pub fn counterpart(
    a_name: &str,
    a_origin: Option<&[usize]>,
    b_origin: Option<&[usize]>,
) -> Option<String> {
    let (Some(ao), Some(bo)) = (a_origin, b_origin) else {
        return Some(a_name.to_owned());
    };
    let Some((layer, rest)) = llama_layer(a_name) else {
        return Some(a_name.to_owned());
    };
    let origin = ao.get(layer)?;
    let bl = bo.iter().position(|o| o == origin)?;
    Some(format!("model.layers.{bl}.{rest}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn t(shape: &[usize], start: f32) -> Tensor {
        let n = shape.iter().product();
        Tensor::f32(shape.to_vec(), (0..n).map(|i| start + i as f32).collect())
    }

    #[test]
    fn opaque_names_hide_layers_and_roles_and_keep_values() {
        let mut w = Weights::new();
        w.insert("model.layers.0.fc.weight".into(), t(&[2, 2], 0.0));
        w.insert("model.layers.0.fc.bias".into(), t(&[2], 10.0));
        w.insert("model.layers.1.fc.weight".into(), t(&[2, 2], 20.0));
        let r = rename(&w, Architecture::Mlp, "mlp/base-0", Naming::Opaque);
        assert_eq!(r.weights.len(), 3);
        for (orig, new) in &r.truth {
            assert_eq!(r.weights[new], w[orig]);
            assert!(new.starts_with('t') && !new.contains("layers"), "{new}");
            assert_eq!(new.ends_with(".bias"), orig.ends_with(".bias"));
        }
        // Seeded: the same model gets the same names; the order is a permutation.
        assert_eq!(
            r,
            rename(&w, Architecture::Mlp, "mlp/base-0", Naming::Opaque)
        );
    }

    #[test]
    fn convention_fuses_q_k_v_along_rows() {
        let mut w = Weights::new();
        w.insert(
            "model.layers.1.self_attn.q_proj.weight".into(),
            t(&[4, 2], 0.0),
        );
        w.insert(
            "model.layers.1.self_attn.k_proj.weight".into(),
            t(&[2, 2], 100.0),
        );
        w.insert(
            "model.layers.1.self_attn.v_proj.weight".into(),
            t(&[2, 2], 200.0),
        );
        w.insert("model.layers.1.mlp.up_proj.weight".into(), t(&[3, 2], 0.0));
        w.insert("lm_head.weight".into(), t(&[5, 2], 0.0));
        let r = rename(&w, Architecture::Llama, "llama/x", Naming::Convention);
        let qkv = &r.weights["blocks.1.attn.qkv.weight"];
        assert_eq!(qkv.shape, vec![8, 2]);
        let v = qkv.floats().unwrap();
        assert_eq!((v[0], v[8], v[12]), (0.0, 100.0, 200.0));
        assert_eq!(
            r.truth["model.layers.1.self_attn.k_proj.weight"],
            "blocks.1.attn.qkv.weight#k"
        );
        assert_eq!(
            r.truth["model.layers.1.mlp.up_proj.weight"],
            "blocks.1.mlp.w3.weight"
        );
        assert_eq!(r.truth["lm_head.weight"], "head.weight");
    }

    #[test]
    fn resnet_convention_names() {
        assert_eq!(
            resnet_name("resnet.encoder.stages.1.layers.0.shortcut.normalization.running_var"),
            Some("layer2.0.downsample.1.running_var".into())
        );
        assert_eq!(
            resnet_name("resnet.encoder.stages.0.layers.1.layer.1.convolution.weight"),
            Some("layer1.1.conv2.weight".into())
        );
        assert_eq!(
            resnet_name("resnet.embedder.embedder.normalization.bias"),
            Some("bn1.bias".into())
        );
        assert_eq!(resnet_name("classifier.1.weight"), Some("fc.weight".into()));
    }

    #[test]
    fn counterparts_follow_layer_subsets() {
        let a = [0, 1, 2, 3];
        let b = [0, 2];
        assert_eq!(
            counterpart("model.layers.2.fc.weight", Some(&a), Some(&b)),
            Some("model.layers.1.fc.weight".into())
        );
        assert_eq!(
            counterpart("model.layers.1.fc.weight", Some(&a), Some(&b)),
            None
        );
        assert_eq!(
            counterpart("lm_head.weight", Some(&a), Some(&b)),
            Some("lm_head.weight".into())
        );
    }
}
